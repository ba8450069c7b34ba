"""A one-minute check, before benchmarks/gpu_back_half.sh spends a GPU's time, that the back half's
training paths run on CUDA: a distilled student and a 2:4 recovery through compression (bf16,
one rank) and a DP-SGD LoRA fine-tune (fp32), each a few steps on a tiny random Llama.

    python benchmarks/gpu_smoke_back_half.py [--device cuda]
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(REPO_ROOT), str(REPO_ROOT / "tests")]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", choices=["cpu", "cuda"], default="cuda")
    args = parser.parse_args()
    os.environ["HF_HUB_OFFLINE"] = "1"

    import torch

    import compression
    import training
    from core.models import save_model, write_manifest
    from training.config import DPConfig, LoraConfig, ModelConfig, TrainConfig, TrainingConfig
    from training.model import build_model
    from training_fixtures import TINY_MODEL, dataset_and_tokenizer

    root = Path(tempfile.mkdtemp(prefix="gpu-smoke-"))
    dataset_dir, tokenizer = dataset_and_tokenizer(root)
    torch.manual_seed(0)
    model = build_model(TINY_MODEL.model_copy(update={"num_layers": 4}), len(tokenizer), tokenizer.eos_token_id,
                        tokenizer.pad_token_id)
    base = root / "base"
    save_model(model, tokenizer, base, "hf")
    write_manifest(base, "hf")
    started = time.perf_counter()
    bf16 = TrainingConfig(model=ModelConfig(init_from=str(base)), train=TrainConfig(
        seq_len=64, micro_batch_size=8, max_steps=3, num_ranks=1, device=args.device, precision="bf16",
        log_every=1, eval_batches=1, master_port=29611))
    variants = compression.run(compression.CompressionConfig(variants={
        "student": [{"distill": {"layers": 2, "steps": 3}}],
        "w24": [{"wanda": {"pattern": "2:4", "calibration_samples": 4}}, {"recover": {"steps": 3}}]}),
        base, root / "variants", dataset_dir, bf16)
    print(f"compression on {args.device}: {[v.name for v in variants]} in {time.perf_counter() - started:.0f} s",
          flush=True)
    started = time.perf_counter()
    dp = TrainingConfig(model=ModelConfig(init_from=str(base), lora=LoraConfig(enabled=True, r=8, alpha=16)),
                        dp=DPConfig(target_epsilon=8.0, delta=1e-4), train=TrainConfig(
                            seq_len=64, micro_batch_size=16, max_steps=3, num_ranks=1, zero_stage=0,
                            device=args.device, log_every=1, eval_batches=1, master_port=29612))
    result = training.run(dp, dataset_dir, training.prepare_tokenizer(dp, dataset_dir / "train.jsonl", root / "tok2"),
                          root / "dp")
    print(f"DP on {args.device}: epsilon {result.dp['epsilon']:.2f} after {result.steps} steps in "
          f"{time.perf_counter() - started:.0f} s", flush=True)
    print("SMOKE OK")


if __name__ == "__main__":
    main()
