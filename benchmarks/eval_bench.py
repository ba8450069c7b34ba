"""What each model can do, measured exactly as the pipeline's evaluation stage measures it.

    python benchmarks/eval_bench.py --dataset DEMO_CLONE/.conveyor/data/curated [--limit 200] \\
        smollm2=.conveyor/bench/compression/fp32 base=DEMO_RUN/model/base int8=DEMO_RUN/model/int8 ...

Each NAME=FOLDER is a model folder (any format core.models loads). Prints one row per model (bits
per byte on the reference text, task accuracy with its standard error, speed, memory, size, and how
long its evaluation took) and writes the JSON with --out.
"""

from __future__ import annotations

import argparse
import datetime
import json
import platform
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("models", nargs="+", help="NAME=FOLDER")
    parser.add_argument("--dataset", type=Path, required=True, help="curated dataset folder (validation.jsonl)")
    parser.add_argument("--profile", default="demo", help="whose evaluation settings to use")
    parser.add_argument("--limit", type=int, default=None, help="items per task (default: the profile's)")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--out", type=Path, default=None)
    args = parser.parse_args()

    import torch

    import evaluation
    from flows.config import load_config

    torch.set_num_threads(args.threads)
    config = load_config(args.profile).evaluation
    if args.limit:
        config = config.model_copy(update={"task_limit": args.limit})
    results = {}
    with tempfile.TemporaryDirectory() as work:
        for item in args.models:
            name, folder = item.split("=", 1)
            results[name] = evaluation.run(config, Path(folder), args.dataset, Path(work) / f"{name}.json")
            print(f"{name}: {json.dumps(results[name])}", flush=True)

    def acc(m, task):
        return f"{m[f'{task}/acc']:.3f} ± {m[f'{task}/acc_stderr']:.3f}"

    print("\n| model | bits/byte | cloze acc | next-sentence acc | acc_norm | decode tok/s b1 | b8 | ttft ms b1 "
          "| peak MiB | size MiB | eval s |\n|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
    for name, m in results.items():
        print(f"| {name} | {m['bits_per_byte']:.4f} | {acc(m, 'conveyor_cloze')} | {acc(m, 'conveyor_nextsentence')} "
              f"| {m['conveyor_nextsentence/acc_norm']:.3f} | {m['decode_tokens_per_s_b1']:.1f} "
              f"| {m['decode_tokens_per_s_b8']:.1f} | {m['ttft_ms_b1']:.0f} | {m['peak_memory_bytes'] / 2**20:.0f} "
              f"| {m['size_bytes'] / 2**20:.1f} | {m['eval_seconds']:.0f} |")
    if args.out:
        args.out.write_text(json.dumps({"date": datetime.date.today().isoformat(),
                                        "machine": platform.processor() or platform.machine(),
                                        "threads": args.threads, "evaluation": config.model_dump(), "results": results}, indent=2))


if __name__ == "__main__":
    main()
