"""Split: a deterministic train/validation split by a seeded hash of each record's id.

Hashing the id (not drawing random numbers in file order) keeps every record on its side when
records are added, removed or reordered, so validation never leaks into a retrained model.
"""

from __future__ import annotations

import hashlib
from pathlib import Path

from core.atomic import atomic_dir
from core.stats import StageStats
from data.config import SplitConfig
from data.records import DataError, JsonlWriter
from data.shards import folder_bytes, read_records

TRAIN_FILE = "train.jsonl"
VALIDATION_FILE = "validation.jsonl"


def split_point(record_id: str, seed: int) -> float:
    """A number in [0, 1) fixed by the id and the seed."""
    digest = hashlib.sha256(f"{seed}:{record_id}".encode("utf-8")).digest()
    return int.from_bytes(digest[:8], "big") / 2**64


def forced_assignments(input_dir: Path, config: SplitConfig) -> tuple[str | None, str | None]:
    """Ids to move so neither side is empty: (to validation, to train), or None where not needed.

    The moved record is the one closest to the boundary, so the choice is order-independent too.
    """
    points = {}
    for record in read_records(input_dir):
        points[record["id"]] = split_point(record["id"], config.seed)
    if not points:
        raise DataError(f"{input_dir}: no records to split")
    has_validation = any(p < config.validation_fraction for p in points.values())
    has_train = any(p >= config.validation_fraction for p in points.values())
    to_validation = None if has_validation else min(points, key=points.get)
    to_train = None if has_train or len(points) < 2 else max(points, key=points.get)
    return to_validation, to_train


def run(config: SplitConfig, input_dir: Path, output_dir: Path, workers: int = 1) -> StageStats:
    """`workers` is unused (one streaming pass); it keeps every stage alike (data.stages)."""
    stats = StageStats(stage="split", bytes_in=folder_bytes(input_dir))
    with atomic_dir(output_dir) as tmp:
        with stats.timed(), JsonlWriter(tmp / TRAIN_FILE) as train, JsonlWriter(tmp / VALIDATION_FILE) as validation:
            to_validation, to_train = forced_assignments(input_dir, config)
            for record in read_records(input_dir):
                stats.records_in += 1
                in_validation = split_point(record["id"], config.seed) < config.validation_fraction
                if record["id"] == to_validation or (in_validation and record["id"] != to_train):
                    validation.write(record)
                else:
                    train.write(record)
        stats.records_out = train.count + validation.count
        stats.bytes_out = (tmp / TRAIN_FILE).stat().st_size + (tmp / VALIDATION_FILE).stat().st_size
        stats.extra.update(train_records=train.count, validation_records=validation.count)
    stats.write(output_dir)
    return stats
