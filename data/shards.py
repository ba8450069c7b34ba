"""Sharded record folders and the executor that maps a stage over their shards.

A dataset between stages is a folder of shards `part-00000.jsonl`, `part-00001.jsonl`, ...: JSON
lines with `id`, `text` and whatever other fields the source had, in a fixed order. Reading the
parts in name order gives the whole dataset in order.

`map_shards` runs a per-record processor over every shard, in worker processes when asked. While
it works, its output grows in `<output>.partial/`, and each finished shard leaves a completion
marker there holding that shard's counts. Killed and run again, it skips the shards with markers
and does the rest; the final folder is identical to an uninterrupted run's, because each shard's
output depends on that shard alone. At the end `<output>.partial/` is renamed to `<output>`.
"""

from __future__ import annotations

import json
import os
import shutil
from collections import Counter
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path
from typing import Callable, Iterable, Iterator, Protocol

from core.atomic import DIR_MODE, atomic_write_text
from core.stats import StageStats

PART_PATTERN = "part-*.jsonl"
MARKERS_DIR = ".done"


def part_name(index: int) -> str:
    return f"part-{index:05d}.jsonl"


def list_parts(folder: Path) -> list[Path]:
    folder = Path(folder)
    if not folder.is_dir():
        raise FileNotFoundError(f"{folder} does not exist: run the previous stage first")
    return sorted(folder.glob(PART_PATTERN))


def read_part(path: Path) -> Iterator[dict]:
    with open(path, encoding="utf-8") as handle:
        for line in handle:
            if line.strip():
                yield json.loads(line)


def read_records(folder: Path) -> Iterator[dict]:
    """Every record of a sharded folder, in order."""
    for path in list_parts(folder):
        yield from read_part(path)


def folder_bytes(folder: Path) -> int:
    return sum(path.stat().st_size for path in list_parts(folder))


class PartWriter:
    """Writes one shard under a temporary name; `commit` renames it into place."""

    def __init__(self, path: Path):
        self.path = Path(path)
        self._tmp = self.path.with_name(f".{self.path.name}.tmp")
        self._handle = open(self._tmp, "w", encoding="utf-8")
        self.count = 0

    def write(self, record: dict) -> None:
        self._handle.write(json.dumps(record, ensure_ascii=False) + "\n")
        self.count += 1

    def commit(self) -> None:
        self._handle.close()
        os.replace(self._tmp, self.path)

    def abort(self) -> None:
        self._handle.close()
        self._tmp.unlink(missing_ok=True)


def write_parts(records: Iterable[dict], folder: Path, records_per_part: int) -> int:
    """Cut a stream of records into parts of `records_per_part`; returns how many it wrote."""
    Path(folder).mkdir(parents=True, exist_ok=True)
    index, writer, total = 0, None, 0
    for record in records:
        if writer is None:
            writer = PartWriter(Path(folder) / part_name(index))
        writer.write(record)
        total += 1
        if writer.count == records_per_part:
            writer.commit()
            writer, index = None, index + 1
    if writer is not None:
        writer.commit()
    return total


class Processor(Protocol):
    """What a per-record stage gives the executor; built inside each worker by a factory."""

    counters: Counter  # stage-specific counts (e.g. entities found), summed over shards

    def process(self, record: dict) -> dict | str:
        """The record to keep (possibly changed), or the reason for dropping it."""


def _run_shard(make_processor: Callable[[], Processor], source: Path, target: Path,
               marker: Path, samples_per_reason: int) -> None:
    processor = make_processor()
    result = {"records_in": 0, "records_out": 0, "bytes_in": source.stat().st_size,
              "dropped": Counter(), "samples": {}}
    writer = PartWriter(target)
    try:
        for record in read_part(source):
            result["records_in"] += 1
            outcome = processor.process(record)
            if isinstance(outcome, str):
                result["dropped"][outcome] += 1
                samples = result["samples"].setdefault(outcome, [])
                if len(samples) < samples_per_reason:
                    samples.append(record)
            else:
                writer.write(outcome)
        result["records_out"] = writer.count
        writer.commit()
    except BaseException:
        writer.abort()
        raise
    result["bytes_out"] = target.stat().st_size
    result["counters"] = dict(processor.counters)
    # The marker comes last: a shard counts as done only once its part is in place.
    atomic_write_text(marker, json.dumps(result, ensure_ascii=False, default=dict))


def partial_dir(output_dir: Path) -> Path:
    return Path(output_dir).with_name(Path(output_dir).name + ".partial")


def map_shards(stage: str, make_processor: Callable[[], Processor], input_dir: Path, output_dir: Path,
               workers: int = 1, samples_per_reason: int = 3) -> StageStats:
    """Run `make_processor()` over every shard of input_dir into output_dir (same part names)."""
    parts = list_parts(input_dir)
    work = partial_dir(output_dir)
    (work / MARKERS_DIR).mkdir(parents=True, exist_ok=True)
    todo = [p for p in parts if not (work / MARKERS_DIR / f"{p.name}.json").is_file()]
    stats = StageStats(stage=stage)
    with stats.timed():
        jobs = [(make_processor, part, work / part.name, work / MARKERS_DIR / f"{part.name}.json",
                 samples_per_reason) for part in todo]
        if workers > 1 and len(jobs) > 1:
            with ProcessPoolExecutor(max_workers=workers) as pool:
                for future in [pool.submit(_run_shard, *job) for job in jobs]:
                    future.result()
        else:
            for job in jobs:
                _run_shard(*job)
        samples = _merge_markers(stats, [work / MARKERS_DIR / f"{p.name}.json" for p in parts])
    stats.extra["shards"] = len(parts)
    stats.extra["shards_resumed"] = len(parts) - len(todo)
    shutil.rmtree(work / MARKERS_DIR)
    os.chmod(work, DIR_MODE)
    if Path(output_dir).exists():
        shutil.rmtree(output_dir)
    os.replace(work, output_dir)
    write_samples(output_dir, samples)
    stats.write(output_dir)
    return stats


def _merge_markers(stats: StageStats, markers: list[Path]) -> dict[str, list[dict]]:
    samples: dict[str, list[dict]] = {}
    counters: Counter = Counter()
    for marker in markers:
        result = json.loads(marker.read_text())
        stats.records_in += result["records_in"]
        stats.records_out += result["records_out"]
        stats.bytes_in += result["bytes_in"]
        stats.bytes_out += result["bytes_out"]
        for reason, count in result["dropped"].items():
            stats.drop(reason, count)
        counters.update(result["counters"])
        for reason, records in result["samples"].items():
            samples.setdefault(reason, []).extend(records)
    stats.extra.update(counters)
    return samples


def samples_path(output_dir: Path) -> Path:
    """Dropped-record samples live beside the output, like its stats (see core.stats.stats_path)."""
    output_dir = Path(output_dir)
    return output_dir.parent / f"{output_dir.name}.dropped-samples.jsonl"


def write_samples(output_dir: Path, samples: dict[str, list[dict]], per_reason: int = 3) -> None:
    lines = [json.dumps({"reason": reason, "record": record}, ensure_ascii=False)
             for reason in sorted(samples) for record in samples[reason][:per_reason]]
    atomic_write_text(samples_path(output_dir), "".join(line + "\n" for line in lines))
