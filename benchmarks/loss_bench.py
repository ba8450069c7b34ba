"""The output projection + next-token loss, forward and backward: the plain loss against the
chunked one of training.loss (training.train.chunked_loss_tokens), at SmolLM2's hidden size 576
and vocabulary 49152.

    python benchmarks/loss_bench.py                      # CPU: 2 x 2048 tokens, fp32
    python benchmarks/loss_bench.py --gpu                # CUDA: 16 x 2048 tokens, bf16 autocast

plain    logits = hidden @ weight.T, F.cross_entropy(logits.float(), targets), backward (the
         trainer's next_token_loss after the decoder)
chunk_N  training.loss.linear_cross_entropy with N tokens a chunk, backward

Each variant runs in its own process. Memory: on the GPU torch's allocator peak
(max_memory_allocated) less what the inputs hold; on the CPU the process's peak RSS
(ru_maxrss) less its RSS once the inputs exist. Time: median of --steps steps after one warm-up.
Results as JSON to --out and a table to stdout.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import statistics
import subprocess
import sys
import time
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO_ROOT))

HIDDEN, VOCAB = 576, 49152


def rss_bytes() -> int:
    with open("/proc/self/statm") as statm:
        return int(statm.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def run_variant(name: str, tokens: int, gpu: bool, steps: int) -> dict:
    import torch
    import torch.nn.functional as F

    from training.loss import linear_cross_entropy
    from training.metrics import peak_memory_bytes

    device = "cuda" if gpu else "cpu"
    torch.manual_seed(0)
    hidden = torch.randn(tokens, HIDDEN, device=device, requires_grad=True)
    weight = (torch.randn(VOCAB, HIDDEN, device=device) * 0.02).requires_grad_()
    targets = torch.randint(0, VOCAB, (tokens,), device=device)

    def step():
        with torch.autocast(device, dtype=torch.bfloat16, enabled=gpu):
            if name == "plain":
                loss = F.cross_entropy((hidden @ weight.t()).float(), targets)
            else:
                loss = linear_cross_entropy(hidden, weight, targets, int(name.removeprefix("chunk_")))
        loss.backward()
        hidden.grad = weight.grad = None
        return loss

    if gpu:
        torch.cuda.synchronize()
        base = torch.cuda.memory_allocated()
        torch.cuda.reset_peak_memory_stats()
    else:
        base = rss_bytes()
    loss = step()  # warm-up
    times = []
    for _ in range(steps):
        if gpu:
            torch.cuda.synchronize()
        started = time.perf_counter()
        loss = step()
        if gpu:
            torch.cuda.synchronize()
        times.append(time.perf_counter() - started)
    peak = peak_memory_bytes(device)
    return {"variant": name, "tokens": tokens, "loss": float(loss), "step_s_median": statistics.median(times),
            "step_s_all": times, "extra_peak_gib": (peak - base) / 2**30}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--gpu", action="store_true")
    parser.add_argument("--tokens", type=int, help="tokens per micro-batch (default 4096 on CPU, 32768 on GPU)")
    parser.add_argument("--chunks", default="1024,4096", help="chunk sizes to run, comma-separated")
    parser.add_argument("--steps", type=int, default=3)
    parser.add_argument("--out", type=Path, default=REPO_ROOT / "benchmarks" / "results" / "loss_bench.json")
    parser.add_argument("--variant", help=argparse.SUPPRESS)
    args = parser.parse_args()
    tokens = args.tokens or (32768 if args.gpu else 4096)
    if args.variant:
        print(json.dumps(run_variant(args.variant, tokens, args.gpu, args.steps)))
        return 0

    import torch

    info = {"date": datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
            "device": torch.cuda.get_device_name(0) if args.gpu else f"cpu ({os.cpu_count()} cores, {platform.machine()})",
            "torch": torch.__version__, "command": " ".join([sys.executable, *sys.argv]),
            "hidden": HIDDEN, "vocab": VOCAB, "tokens": tokens, "precision": "bf16 autocast" if args.gpu else "fp32"}
    results = []
    for name in ["plain", *(f"chunk_{size}" for size in args.chunks.split(","))]:
        command = [sys.executable, __file__, "--variant", name, "--tokens", str(tokens), "--steps", str(args.steps)]
        env = dict(os.environ)
        if not args.gpu:
            env.setdefault("OMP_NUM_THREADS", str(os.cpu_count()))
        proc = subprocess.run(command + (["--gpu"] if args.gpu else []), capture_output=True, text=True, env=env)
        if proc.returncode:
            results.append({"variant": name, "error": proc.stderr[-800:]})
        else:
            results.append(json.loads(proc.stdout.strip().splitlines()[-1]))
        print(json.dumps(results[-1])[:300], flush=True)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps({"info": info, "results": results}, indent=2))
    print(f"\n{info['device']}, {info['date']}; hidden {HIDDEN}, vocab {VOCAB}, {tokens} tokens, {info['precision']}")
    print(f"{'variant':12} {'s/step':>8} {'extra peak GiB':>15} {'loss':>8}")
    plain = next((r for r in results if r["variant"] == "plain" and "error" not in r), None)
    for r in results:
        if "error" in r:
            print(f"{r['variant']:12} error: {r['error'][-200:]}")
            continue
        ratio = f"  ({r['extra_peak_gib'] / plain['extra_peak_gib']:.2f}x memory, " \
                f"{r['step_s_median'] / plain['step_s_median']:.2f}x time)" if plain and r is not plain else ""
        print(f"{r['variant']:12} {r['step_s_median']:8.3f} {r['extra_peak_gib']:15.3f} {r['loss']:8.4f}{ratio}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
