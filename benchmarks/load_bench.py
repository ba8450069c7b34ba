"""What loading a model folder costs a process that serves it: seconds to load and peak resident
memory, per format, against the fp32 folder in the same run.

    python benchmarks/load_bench.py                      # the folders compression_bench.py built
    python benchmarks/load_bench.py --work /tmp/cb --repeats 3
    python benchmarks/load_bench.py fp32=DIR int8=DIR    # any folders (the first is the baseline)

Each measurement is a fresh Python process (its VmHWM is its own): it imports torch, transformers
and core.models, notes its resident memory, loads the folder with core.models.load_model (what
evaluation and serving call), notes the peak, then greedily decodes --new-tokens tokens and notes
the peak again. Per folder the median of --repeats processes. Memory above the imports is what the
model costs; the imports (~0.5 GB) are the same for every format.
"""

from __future__ import annotations

import argparse
import datetime
import json
import platform
import statistics
import subprocess
import sys
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parent.parent

CHILD = r"""
import json, sys, time
from pathlib import Path

def mib(field):
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1]) / 1024

import torch
torch.set_num_threads(int(sys.argv[3]))
import transformers  # noqa: F401
from core.models import load_model

imports = mib("VmRSS")
started = time.perf_counter()
model, tokenizer = load_model(Path(sys.argv[1]))
seconds = time.perf_counter() - started
after_load = mib("VmHWM")
ids = tokenizer("It is a truth universally acknowledged", return_tensors="pt").input_ids
with torch.inference_mode():
    model.generate(ids, attention_mask=torch.ones_like(ids), max_new_tokens=int(sys.argv[2]),
                   min_new_tokens=int(sys.argv[2]), do_sample=False, pad_token_id=tokenizer.eos_token_id)
print("load-result: " + json.dumps({"imports_mib": imports, "load_s": seconds, "peak_after_load_mib": after_load,
                                    "peak_after_decode_mib": mib("VmHWM"), "rss_after_decode_mib": mib("VmRSS")}))
"""


def measure_once(folder: Path, new_tokens: int, threads: int) -> dict:
    done = subprocess.run([sys.executable, "-c", CHILD, str(folder), str(new_tokens), str(threads)],
                          cwd=REPO_ROOT, capture_output=True, text=True, check=False)
    lines = [line for line in done.stdout.splitlines() if line.startswith("load-result: ")]
    if done.returncode or not lines:
        raise SystemExit(f"loading {folder} failed:\n{done.stderr[-2000:]}")
    return json.loads(lines[-1].removeprefix("load-result: "))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("folders", nargs="*", help="NAME=DIR pairs; the first is the baseline "
                        "(default: fp32 and the variants under --work)")
    parser.add_argument("--work", type=Path, default=REPO_ROOT / ".conveyor" / "bench" / "compression")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--new-tokens", type=int, default=16)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--out", type=Path, default=None)
    args = parser.parse_args()

    if args.folders:
        folders = {name: Path(path) for name, path in (pair.split("=", 1) for pair in args.folders)}
    else:
        variants = args.work / "variants"
        folders = {"fp32": args.work / "fp32", **{path.name: path for path in sorted(variants.iterdir())
                                                   if (path / "conveyor.json").is_file()}}
    results = {}
    for name, folder in folders.items():
        runs = [measure_once(folder, args.new_tokens, args.threads) for _ in range(args.repeats)]
        results[name] = {key: round(statistics.median(run[key] for run in runs), 2) for key in runs[0]}
        print(f"{name}: {results[name]}", flush=True)
    base = next(iter(results.values()))
    print(f"{'folder':16} {'load s':>7} {'x':>5} {'imports MiB':>12} {'peak load MiB':>14} {'x':>5} "
          f"{'peak decode MiB':>16} {'x':>5} {'model MiB':>10}")
    for name, r in results.items():
        model = r["peak_after_decode_mib"] - r["imports_mib"]
        print(f"{name:16} {r['load_s']:7.2f} {r['load_s'] / base['load_s']:5.2f} {r['imports_mib']:12.0f} "
              f"{r['peak_after_load_mib']:14.0f} {r['peak_after_load_mib'] / base['peak_after_load_mib']:5.2f} "
              f"{r['peak_after_decode_mib']:16.0f} {r['peak_after_decode_mib'] / base['peak_after_decode_mib']:5.2f} "
              f"{model:10.0f}")
    if args.out:
        args.out.write_text(json.dumps({"date": datetime.date.today().isoformat(),
                                        "machine": platform.processor() or platform.machine(),
                                        "args": {k: str(v) for k, v in vars(args).items()}, "results": results},
                                       indent=2))


if __name__ == "__main__":
    main()
