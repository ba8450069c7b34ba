"""Byte-level BPE trained on the curated train split, saved as a HF fast tokenizer folder."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

from core.atomic import atomic_dir
from training.config import TokenizerConfig

# GPT-2 convention: one token both starts and ends a document; packing puts it between documents.
EOS_TOKEN = "<|endoftext|>"
PAD_TOKEN = "<pad>"


def iter_texts(jsonl_file: Path) -> Iterator[str]:
    """The `text` of each record, one line at a time, so the corpus never sits in memory whole."""
    with open(jsonl_file, encoding="utf-8") as handle:
        for line in handle:
            if line.strip():
                yield json.loads(line)["text"]


def train_tokenizer(config: TokenizerConfig, train_file: Path, output_dir: Path) -> Path:
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    train_file = Path(train_file)
    if not train_file.is_file():
        raise FileNotFoundError(f"tokenizer training file not found: {train_file}")

    bpe = Tokenizer(models.BPE())
    bpe.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    bpe.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=config.vocab_size,
        min_frequency=config.min_frequency,
        special_tokens=[EOS_TOKEN, PAD_TOKEN],
        # All 256 byte symbols up front: any text encodes, with no unknown token needed.
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    bpe.train_from_iterator(iter_texts(train_file), trainer=trainer)

    tokenizer = PreTrainedTokenizerFast(
        tokenizer_object=bpe, bos_token=EOS_TOKEN, eos_token=EOS_TOKEN, pad_token=PAD_TOKEN)
    output_dir = Path(output_dir)
    with atomic_dir(output_dir) as tmp:
        tokenizer.save_pretrained(tmp)
    return output_dir
