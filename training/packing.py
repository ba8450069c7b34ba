"""Documents -> token stream -> fixed blocks of seq_len + 1 tokens, sharded across ranks.

Each document is followed by EOS and the stream is cut into blocks with no padding, so every
token trains; the last partial block is dropped. A block of seq_len + 1 tokens gives seq_len
inputs and the seq_len next-token targets shifted by one.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from pathlib import Path

import torch

from training.tokenizer import iter_texts

TOKENIZE_BATCH = 256  # documents per call: the fast tokenizer is much quicker on lists


def tokenize_documents(jsonl_file: Path, tokenizer) -> Iterator[list[int]]:
    batch: list[str] = []
    for text in iter_texts(jsonl_file):
        batch.append(text)
        if len(batch) == TOKENIZE_BATCH:
            yield from tokenizer(batch, add_special_tokens=False)["input_ids"]
            batch = []
    if batch:
        yield from tokenizer(batch, add_special_tokens=False)["input_ids"]


def pack_blocks(documents: Iterable[list[int]], eos_token_id: int, block_len: int) -> torch.Tensor:
    """A (num_blocks, block_len) tensor of the concatenated documents, each ending in EOS."""
    stream: list[int] = []
    for ids in documents:
        stream.extend(ids)
        stream.append(eos_token_id)
    num_blocks = len(stream) // block_len
    return torch.tensor(stream[: num_blocks * block_len], dtype=torch.long).view(num_blocks, block_len)


def rank_shard(blocks: torch.Tensor, rank: int, world_size: int) -> torch.Tensor:
    """Block i belongs to rank i % world_size: disjoint shards that together cover every block."""
    return blocks[rank::world_size]


def batches(blocks: torch.Tensor, micro_batch_size: int, seed: int, skip: int = 0) -> Iterator[torch.Tensor]:
    """Micro-batches forever: a fresh seeded shuffle per epoch, the last partial batch dropped.

    `skip` micro-batches are passed over first, without being built: a resumed run continues
    with exactly the batch the interrupted one would have taken next.
    """
    if len(blocks) < micro_batch_size:
        raise ValueError(
            f"{len(blocks)} blocks on this rank are fewer than micro_batch_size {micro_batch_size}: "
            "the dataset is too small for this seq_len, batch size and number of ranks")
    per_epoch = len(blocks) // micro_batch_size
    epoch, offset = divmod(skip, per_epoch)
    while True:
        order = torch.randperm(len(blocks), generator=torch.Generator().manual_seed(seed + epoch))
        for index in range(offset, per_epoch):
            yield blocks[order[index * micro_batch_size:(index + 1) * micro_batch_size]]
        epoch, offset = epoch + 1, 0
