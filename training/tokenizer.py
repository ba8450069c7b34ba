"""The run's tokenizer, saved as a HF fast tokenizer folder: a byte-level BPE trained on the
curated train split, or the tokenizer of the checkpoint training starts from (model.init_from)."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

from core.atomic import atomic_dir
from training.config import TokenizerConfig, TrainingConfig, checkpoint_location

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


def checkpoint_tokenizer(init_from: str, output_dir: Path) -> Path:
    """The tokenizer of the checkpoint at init_from (a HF folder's, or the one a GGUF file embeds)."""
    from transformers import AutoTokenizer

    folder, gguf_file = checkpoint_location(init_from)
    tokenizer = AutoTokenizer.from_pretrained(folder, gguf_file=gguf_file)
    if tokenizer.eos_token_id is None:
        raise ValueError(f"{init_from}: its tokenizer has no EOS token, which packing puts between documents")
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token  # batched generation in evaluation needs one
    output_dir = Path(output_dir)
    with atomic_dir(output_dir) as tmp:
        tokenizer.save_pretrained(tmp)
    return output_dir


def prepare_tokenizer(config: TrainingConfig, train_file: Path, output_dir: Path) -> Path:
    """The tokenizer folder training.run takes: the checkpoint's when model.init_from is set (its
    embedding rows belong to those ids), else one trained on train_file."""
    if config.model.init_from is not None:
        return checkpoint_tokenizer(config.model.init_from, output_dir)
    return train_tokenizer(config.tokenizer, train_file, output_dir)
