"""Batch-1 and prefill products of SmolLM2-135M's matrix shapes on CPU: float32 against the
int8 and int4 weight-only paths (why core/int8.py and core/int4.py run the kernels they run).

    python benchmarks/quant_kernels.py [--threads 2]

fp32: x @ W.T. torchao-eager: what torchao 0.18's Int8Tensor linear does on CPU (convert the int8
matrix to float, then multiply, then scale). int8pack: PyTorch's `_weight_int8pack_mm` with
bfloat16 activations, float32 scales after it (core.int8.Int8Linear). int4 (bf16 / fp32):
PyTorch's `_weight_int4pack_mm_for_cpu`, groups of 64, with bfloat16 activations
(core.int4.Int4Linear) and with float32 ones. Median microseconds per product over --repeats
calls; rel err: int8pack against the float product of the same int8 weights, int4 against the
float product of its own dequantized weights.
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
    from core.int4 import Int4Linear
    from core.int8 import Int8Linear, quantize_rows

    print(f"{platform.processor() or platform.machine()}, torch {torch.__version__}, {args.threads} threads")
    print(f"{'shape':14} {'rows':>5} {'fp32 us':>9} {'torchao-eager':>14} {'int8pack':>9} {'x fp32':>7} "
          f"{'rel err':>8} {'int4 bf16':>10} {'x fp32':>7} {'rel err':>8} {'int4 fp32':>10}")
    torch.manual_seed(0)
    for label, (out_features, in_features) in SHAPES.items():
        weight = torch.randn(out_features, in_features)
        qdata, scale = quantize_rows(weight)
        layer = Int8Linear(qdata, scale)
        int4 = Int4Linear.from_float(_linear(weight), 64, "tinygemm")
        int4_weight = dequantized(int4)  # and packs it for the kernel
        for rows in map(int, args.rows.split(",")):
            x = torch.randn(rows, in_features)
            with torch.inference_mode():
                reference = (x @ qdata.t().float()) * scale
                fp32 = median_us(lambda: x @ weight.t(), args.repeats)
                eager = median_us(lambda: (x @ qdata.t().to(torch.float32)) * scale, args.repeats)
                packed = median_us(lambda: layer(x), args.repeats)
                error = ((layer(x) - reference).norm() / reference.norm()).item()
                int4_bf16 = median_us(lambda: int4(x), args.repeats)
                int4_reference = x @ int4_weight.t()
                int4_error = ((int4(x) - int4_reference).norm() / int4_reference.norm()).item()
                x32 = x.contiguous()
                int4_fp32 = median_us(lambda: torch.ops.aten._weight_int4pack_mm_for_cpu(
                    x32, int4._packed, 64, int4.scale_and_zero.float()), max(3, args.repeats // 10))
            print(f"{label:14} {rows:5} {fp32:9.1f} {eager:14.1f} {packed:9.1f} {fp32 / packed:6.2f}x {error:8.4f} "
                  f"{int4_bf16:10.1f} {fp32 / int4_bf16:6.2f}x {int4_error:8.4f} {int4_fp32:10.1f}", flush=True)


def _linear(weight: torch.Tensor) -> torch.nn.Linear:
    layer = torch.nn.Linear(weight.shape[1], weight.shape[0], bias=False)
    layer.weight.data = weight
    return layer


def dequantized(layer) -> torch.Tensor:
    """The float matrix an Int4Linear stands for: its product with the identity."""
    with torch.inference_mode():
        return layer(torch.eye(layer.in_features)).t().float()


if __name__ == "__main__":
    import sys
    from pathlib import Path

    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
    main()
