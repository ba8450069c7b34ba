"""Dedup: drop records whose text is an exact copy of an earlier one (the first copy stays).

Exact dedup needs one hash per distinct text in memory, which fits millions of documents;
near-duplicate dedup (MinHash) would be a stage of its own.
"""

from __future__ import annotations

import hashlib
from pathlib import Path

from core.atomic import atomic_dir
from core.stats import StageStats
from data.config import DedupConfig
from data.shards import PartWriter, folder_bytes, list_parts, read_part


def text_key(text: str, config: DedupConfig) -> bytes:
    if config.lowercase:
        text = " ".join(text.lower().split())
    return hashlib.sha256(text.encode("utf-8")).digest()


def run(config: DedupConfig, input_dir: Path, output_dir: Path, workers: int = 1) -> StageStats:
    """One pass in record order (the first copy of a text stays); output parts mirror the input's.
    `workers` is accepted for a uniform stage signature: this pass is sequential."""
    parts = list_parts(input_dir)
    stats = StageStats(stage="dedup", bytes_in=folder_bytes(input_dir))
    seen: set[bytes] = set()
    duplicated: set[bytes] = set()
    with atomic_dir(output_dir) as tmp, stats.timed():
        for part in parts:
            writer = PartWriter(tmp / part.name)
            for record in read_part(part):
                stats.records_in += 1
                key = text_key(record["text"], config)
                if key in seen:
                    stats.drop("exact_duplicate")
                    duplicated.add(key)
                    continue
                seen.add(key)
                writer.write(record)
            writer.commit()
            stats.records_out += writer.count
        stats.bytes_out = folder_bytes(tmp)
        # A cluster is one text that occurred more than once, however many copies it had.
        stats.extra["duplicate_clusters"] = len(duplicated)
    stats.write(output_dir)
    return stats
