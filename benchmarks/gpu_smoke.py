"""GPU smoke test and throughput measurement of the training stage (configs/gpu.yaml).

    python benchmarks/gpu_smoke.py --dataset DIR [--profile gpu] [--set training.train.max_steps=300 ...] \
        [--work /tmp/gpu_smoke] [--out DIR]

Trains the profile's tokenizer on DIR/train.jsonl, runs training.run (torchrun + DeepSpeed) with
the profile and overrides, and prints throughput, MFU and peak GPU memory. MFU counts
6 x params + 12 x layers x hidden x seq FLOPs per token against --peak-tflops (H100 bf16 dense 989).

Peak GPU memory is rank 0's torch allocator peak, from the training result.
"""

from __future__ import annotations

import argparse
import json
import shutil
import statistics
import sys
import tempfile
import time
from importlib import metadata
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO_ROOT))

def _device_name() -> str:
    import torch

    return torch.cuda.get_device_name(0) if torch.cuda.is_available() else "cpu"


def version(name: str) -> str | None:
    try:
        return metadata.version(name)
    except metadata.PackageNotFoundError:
        return None


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dataset", type=Path, required=True, help="folder with train.jsonl, validation.jsonl")
    parser.add_argument("--profile", default="gpu")
    parser.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE")
    parser.add_argument("--work", type=Path, default=Path(tempfile.gettempdir()) / "gpu_smoke")
    parser.add_argument("--out", type=Path, help="copy result.json, train_log.jsonl, summary.json here")
    parser.add_argument("--peak-tflops", type=float, default=989.0, help="bf16 dense peak (H100 SXM: 989)")
    args = parser.parse_args()

    import logging

    logging.basicConfig(level=logging.INFO, format="%(message)s", stream=sys.stdout)

    import training
    from flows.config import load_config
    from training.metrics import mfu

    config = load_config(args.profile, args.overrides).training
    print("training config:", config.model_dump_json(), flush=True)
    print("versions:", {name: version(name) for name in
                        ("torch", "transformers", "tokenizers", "deepspeed", "pydantic", "safetensors")}, flush=True)

    if args.work.exists():
        shutil.rmtree(args.work)
    args.work.mkdir(parents=True)
    started = time.perf_counter()
    tokenizer_dir = training.train_tokenizer(config.tokenizer, args.dataset / "train.jsonl", args.work / "tokenizer")
    tokenizer_seconds = time.perf_counter() - started
    print(f"tokenizer trained in {tokenizer_seconds:.1f}s -> {tokenizer_dir}", flush=True)

    started = time.perf_counter()
    result = training.run(config, args.dataset, tokenizer_dir, args.work / "model")
    run_seconds = time.perf_counter() - started

    log = [json.loads(line) for line in (result.model_dir / "train_log.jsonl").read_text().splitlines() if line]
    train = config.train
    flops_per_token = result.flops_per_token  # training.train.flops_per_token of the model it trained
    # Steady state: the logged intervals after the first (which holds the warm-up steps).
    steady = statistics.median(entry["tokens_per_second"] for entry in log[1:]) if len(log) > 1 else None
    summary = {
        "device": _device_name(),
        "versions": {name: version(name) for name in ("torch", "transformers", "tokenizers", "deepspeed")},
        "config": json.loads(config.model_dump_json()),
        "num_parameters": result.num_parameters,
        "steps": result.steps,
        "tokens_per_step": train.micro_batch_size * train.grad_accum_steps * result.world_size * train.seq_len,
        "tokens_per_second": result.tokens_per_second,
        "tokens_per_second_steady_median": steady,
        "seconds_per_step": result.seconds_per_step,
        "loop_seconds": result.seconds,
        "launch_to_result_seconds": run_seconds,
        "tokenizer_seconds": tokenizer_seconds,
        "flops_per_token": flops_per_token,
        "mfu": mfu(result.tokens_per_second, flops_per_token, args.peak_tflops),
        "mfu_steady": mfu(steady, flops_per_token, args.peak_tflops) if steady else None,
        "loss_first_logged": log[0] if log else None,
        "loss_last_logged": log[-1] if log else None,
        "final_train_loss": result.final_train_loss,
        "val_loss": result.val_loss,
        "peak_memory_bytes_rank0": result.peak_memory_bytes,
    }
    print("\n=== TrainResult ===")
    print(result.model_dump_json(indent=2))
    print("=== summary ===")
    print(json.dumps(summary, indent=2, default=str))
    gib = 2**30
    print(f"\n{summary['tokens_per_second']:.0f} tok/s overall ({steady or float('nan'):.0f} steady), "
          f"{result.seconds_per_step * 1000:.1f} ms/step, MFU {summary['mfu']:.2%} "
          f"(steady {summary['mfu_steady'] or float('nan'):.2%}), "
          f"loss {log[0]['loss'] if log else float('nan')} -> {log[-1]['loss'] if log else float('nan')}, "
          f"val {result.val_loss}")
    if result.peak_memory_bytes is not None:
        print(f"rank 0 peak allocated {result.peak_memory_bytes / gib:.2f} GiB")

    if args.out:
        args.out.mkdir(parents=True, exist_ok=True)
        for name in ("result.json", "train_log.jsonl"):
            shutil.copy(result.model_dir / name, args.out / name)
        (args.out / "summary.json").write_text(json.dumps(summary, indent=2, default=str))
    return 0


if __name__ == "__main__":
    sys.exit(main())
