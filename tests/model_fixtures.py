"""A tiny random Llama in the Conveyor model-folder format, built offline in about a second.

Tests import it as `from model_fixtures import make_tiny_model_folder` (tests/ is on sys.path).
"""

from __future__ import annotations

import json
from pathlib import Path

EOS_TOKEN = "<|endoftext|>"
PAD_TOKEN = "<pad>"

# Enough varied text for a byte-level BPE to learn a few hundred merges.
TRAINING_TEXT = [
    "It is a truth universally acknowledged, that a single man in possession of a good fortune, "
    "must be in want of a wife.",
    "Call me Ishmael. Some years ago, never mind how long precisely, having little or no money "
    "in my purse, I thought I would sail about a little and see the watery part of the world.",
    "It was the best of times, it was the worst of times, it was the age of wisdom, it was the "
    "age of foolishness.",
    "Happy families are all alike; every unhappy family is unhappy in its own way.",
    "hello world, hello model, hello tokenizer: the quick brown fox jumps over the lazy dog.",
] * 20


def train_tokenizer(vocab_size: int):
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    tokenizer = Tokenizer(models.BPE())
    tokenizer.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tokenizer.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        special_tokens=[EOS_TOKEN, PAD_TOKEN],
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
    )
    tokenizer.train_from_iterator(TRAINING_TEXT, trainer=trainer)
    return PreTrainedTokenizerFast(tokenizer_object=tokenizer, eos_token=EOS_TOKEN, pad_token=PAD_TOKEN)


def make_tiny_model_folder(folder: Path, vocab_size: int = 512, seed: int = 0) -> Path:
    """Write a random tied-embedding Llama + tokenizer + `conveyor.json` ("hf") into `folder`."""
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    from core.models import write_manifest

    folder = Path(folder)
    tokenizer = train_tokenizer(vocab_size)
    torch.manual_seed(seed)
    config = LlamaConfig(
        vocab_size=len(tokenizer),
        hidden_size=64,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        intermediate_size=128,
        max_position_embeddings=128,
        tie_word_embeddings=True,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
        bos_token_id=None,
    )
    LlamaForCausalLM(config).save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    write_manifest(folder, "hf")
    return folder


def write_validation_split(dataset_dir: Path, texts: list[str] | None = None) -> Path:
    """A curated-dataset folder with `validation.jsonl` ({"text": ...} per line)."""
    dataset_dir = Path(dataset_dir)
    dataset_dir.mkdir(parents=True, exist_ok=True)
    lines = [json.dumps({"text": text}) for text in (texts or TRAINING_TEXT[:5])]
    (dataset_dir / "validation.jsonl").write_text("\n".join(lines) + "\n")
    return dataset_dir
