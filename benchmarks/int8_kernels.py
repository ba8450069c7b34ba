"""Batch-1 and prefill products of SmolLM2-135M's matrix shapes on CPU: float32 against the two
int8 weight-only paths (why core/int8.py runs `_weight_int8pack_mm`).

    python benchmarks/int8_kernels.py [--threads 2]

fp32: x @ W.T. torchao-eager: what torchao 0.18's Int8Tensor linear does on CPU (convert the int8
matrix to float, then multiply, then scale). int8pack: PyTorch's `_weight_int8pack_mm` with
bfloat16 activations, float32 scales after it (core.int8.Int8Linear). Median microseconds per
product over --repeats calls, and the relative error of each int8 path against the float product
of the same int8 weights.
"""

from __future__ import annotations

import argparse
import platform
import statistics
import time

import torch

SHAPES = {"q/o proj": (576, 576), "up/gate proj": (1536, 576), "down proj": (576, 1536), "output layer": (49152, 576)}


def median_us(fn, repeats: int) -> float:
    for _ in range(3):
        fn()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return 1e6 * statistics.median(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--rows", default="1,512", help="activation rows (1: decode, 512: a prefill window)")
    parser.add_argument("--repeats", type=int, default=50)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    from core.int8 import Int8Linear, quantize_rows

    print(f"{platform.processor() or platform.machine()}, torch {torch.__version__}, {args.threads} threads")
    print(f"{'shape':14} {'rows':>5} {'fp32 us':>9} {'torchao-eager':>14} {'int8pack':>9} {'speed-up':>9} {'rel err':>8}")
    torch.manual_seed(0)
    for label, (out_features, in_features) in SHAPES.items():
        weight = torch.randn(out_features, in_features)
        qdata, scale = quantize_rows(weight)
        layer = Int8Linear(qdata, scale)
        for rows in map(int, args.rows.split(",")):
            x = torch.randn(rows, in_features)
            with torch.inference_mode():
                reference = (x @ qdata.t().float()) * scale
                fp32 = median_us(lambda: x @ weight.t(), args.repeats)
                eager = median_us(lambda: (x @ qdata.t().to(torch.float32)) * scale, args.repeats)
                packed = median_us(lambda: layer(x), args.repeats)
                error = ((layer(x) - reference).norm() / reference.norm()).item()
            print(f"{label:14} {rows:5} {fp32:9.1f} {eager:14.1f} {packed:9.1f} {fp32 / packed:8.2f}x {error:8.4f}")


if __name__ == "__main__":
    import sys
    from pathlib import Path

    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
    main()
