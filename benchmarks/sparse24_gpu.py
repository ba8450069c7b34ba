"""2:4 semi-structured sparsity on a GPU: does a Wanda 2:4 SmolLM2-135M's Linear run faster?

    python benchmarks/sparse24_gpu.py [--out results.json]     # needs CUDA (sm_80+); torch only

For each Linear shape of SmolLM2-135M (hidden 576, intermediate 1536, 9 query / 3 key-value heads
of 64) and a range of token counts (1 = decode at batch 1, up to a 16k-token prefill), times
`F.linear` with the dense bf16 weight against the same weight pruned to 2:4 and converted with
torch's `to_sparse_semi_structured` (cuSPARSELt, else CUTLASS): median of 50 timed calls after 10
warm-ups, CUDA events. Also checks the sparse product equals the dense product of the pruned
weight. Random weights: the speed of a 2:4 matmul does not depend on the values.
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics

SHAPES = {  # name: (in_features, out_features), per decoder layer
    "q_proj": (576, 576), "k_proj": (576, 192), "v_proj": (576, 192), "o_proj": (576, 576),
    "gate_proj": (576, 1536), "up_proj": (576, 1536), "down_proj": (1536, 576),
}
TOKENS = (1, 16, 128, 1024, 4096, 16384, 65536)


def prune_24(weight):
    """Keep the 2 largest magnitudes of every 4 consecutive inputs (the 2:4 pattern)."""
    import torch

    groups = weight.reshape(-1, 4)
    keep = groups.abs().topk(2, dim=1).indices
    mask = torch.zeros_like(groups, dtype=torch.bool).scatter_(1, keep, True)
    return (groups * mask).reshape(weight.shape)


def time_ms(fn, repeats: int = 50, warmup: int = 10) -> float:
    import torch

    for _ in range(warmup):
        fn()
    torch.cuda.synchronize()
    times = []
    for _ in range(repeats):
        start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        start.record()
        fn()
        end.record()
        torch.cuda.synchronize()
        times.append(start.elapsed_time(end))
    return statistics.median(times)


def main() -> None:
    import torch
    import torch.nn.functional as F
    from torch.sparse import SparseSemiStructuredTensor, to_sparse_semi_structured

    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out")
    args = parser.parse_args()
    torch.manual_seed(0)
    rows, backend = [], "cuSPARSELt"
    for name, (fan_in, fan_out) in SHAPES.items():
        weight = prune_24(torch.randn(fan_out, fan_in, device="cuda", dtype=torch.bfloat16))
        try:
            sparse = to_sparse_semi_structured(weight)
        except RuntimeError:
            SparseSemiStructuredTensor._FORCE_CUTLASS = True
            backend, sparse = "CUTLASS", to_sparse_semi_structured(weight)
        for tokens in TOKENS:
            x = torch.randn(tokens, fan_in, device="cuda", dtype=torch.bfloat16)
            try:
                same = torch.allclose(F.linear(x, sparse), F.linear(x, weight), rtol=2e-2, atol=2e-1)
                sparse_ms = time_ms(lambda: F.linear(x, sparse))
            except RuntimeError as exc:  # a shape the kernel refuses (small token counts)
                rows.append({"layer": name, "tokens": tokens, "error": str(exc).splitlines()[0][:120]})
                continue
            dense_ms = time_ms(lambda: F.linear(x, weight))
            row = {"layer": name, "tokens": tokens, "dense_ms": dense_ms, "sparse_ms": sparse_ms,
                   "speedup": dense_ms / sparse_ms, "equal": same}
            if backend == "cuSPARSELt" and tokens % 16 == 0:  # the kernel alone, without the subclass's dispatch
                compressed, xt = torch._cslt_compress(weight), x.t().contiguous()
                row["kernel_ms"] = time_ms(lambda: torch._cslt_sparse_mm(compressed, xt))
                row["dense_kernel_ms"] = time_ms(lambda: torch.mm(weight, xt))
            rows.append(row)
    print(f"{torch.cuda.get_device_name(0)}, torch {torch.__version__}, 2:4 backend {backend}")
    print("| layer | tokens | dense ms | 2:4 ms | speed-up | equal | mm kernel ms | 2:4 kernel ms | kernel speed-up |")
    print("|---|---:|---:|---:|---:|---|---:|---:|---:|")
    for row in rows:
        if "error" in row:
            print(f"| {row['layer']} | {row['tokens']} | - | - | refused: {row['error']} | | | | |")
        else:
            kernel = (f"{row['dense_kernel_ms']:.4f} | {row['kernel_ms']:.4f} | "
                      f"{row['dense_kernel_ms'] / row['kernel_ms']:.2f}x") if "kernel_ms" in row else "- | - | -"
            print(f"| {row['layer']} | {row['tokens']} | {row['dense_ms']:.4f} | {row['sparse_ms']:.4f} | "
                  f"{row['speedup']:.2f}x | {row['equal']} | {kernel} |")
    by_tokens = {}
    for row in rows:
        if "error" not in row:
            by_tokens.setdefault(row["tokens"], [0.0, 0.0])
            by_tokens[row["tokens"]][0] += row["dense_ms"]
            by_tokens[row["tokens"]][1] += row["sparse_ms"]
    print("\nA decoder layer's seven Linears together:")
    for tokens, (dense, sparse) in sorted(by_tokens.items()):
        print(f"  {tokens:>6} tokens: dense {dense:.3f} ms, 2:4 {sparse:.3f} ms, {dense / sparse:.2f}x")
    if args.out:
        with open(args.out, "w") as handle:
            json.dump({"device": torch.cuda.get_device_name(0), "torch": torch.__version__, "backend": backend,
                       "python": platform.python_version(), "rows": rows}, handle, indent=2)


if __name__ == "__main__":
    main()
