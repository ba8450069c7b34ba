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
from data.records import RECORDS_FILE, JsonlWriter, read_records, records_path


def text_key(text: str, config: DedupConfig) -> bytes:
    if config.lowercase:
        text = " ".join(text.lower().split())
    return hashlib.sha256(text.encode("utf-8")).digest()


def run(config: DedupConfig, input_dir: Path, output_dir: Path) -> StageStats:
    stats = StageStats(stage="dedup", bytes_in=records_path(input_dir).stat().st_size)
    seen: set[bytes] = set()
    duplicated: set[bytes] = set()
    with atomic_dir(output_dir) as tmp:
        with stats.timed(), JsonlWriter(tmp / RECORDS_FILE) as out:
            for record in read_records(input_dir):
                stats.records_in += 1
                key = text_key(record["text"], config)
                if key in seen:
                    stats.drop("exact_duplicate")
                    duplicated.add(key)
                    continue
                seen.add(key)
                out.write(record)
            stats.records_out = out.count
        stats.bytes_out = (tmp / RECORDS_FILE).stat().st_size
        # A cluster is one text that occurred more than once, however many copies it had.
        stats.extra["duplicate_clusters"] = len(duplicated)
    stats.write(output_dir)
    return stats
