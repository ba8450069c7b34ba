"""Sharded record folders and the executor that maps a stage over their shards.

A dataset between stages is a folder of shards `part-00000.jsonl`, `part-00001.jsonl`, ...: JSON
lines with `id`, `text` and whatever other fields the source had, in a fixed order. Reading the
parts in name order gives the whole dataset in order.

`map_shards` runs a per-record processor over every shard, in worker processes when asked. While
it works, its output grows in `<output>.partial/`, and each finished shard leaves a completion
marker there holding that shard's counts. Killed and run again, it skips the shards with markers
and does the rest; the final folder is identical to an uninterrupted run's, because each shard's
output depends on that shard alone. At the end `<output>.partial/` is renamed to `<output>`.

Its three steps are public so another executor (a Prefect flow on a Dask or Ray cluster, see
flows/curate.py) runs the same shards the same way: `plan_shards` lists the jobs, `run_shard`
does one anywhere that sees the folders, `finish` merges the markers and publishes the output.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
import time
from collections import Counter
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Callable, Iterable, Iterator, Protocol

from core.atomic import FILE_MODE, atomic_write_text, beside, replace_dir
from core.stats import StageStats
from data.records import JsonlWriter

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


class PartWriter(JsonlWriter):
    """A JsonlWriter to a temporary name; `commit` renames it into place."""

    def __init__(self, path: Path):
        self.path = Path(path)
        # A unique temporary name: a worker orphaned by a killed run cannot clobber a rerun's file.
        fd, tmp = tempfile.mkstemp(dir=self.path.parent, prefix=f".{self.path.name}.", suffix=".tmp")
        self._tmp = Path(tmp)
        self._handle = open(fd, "w", encoding="utf-8")
        self.count = 0

    def commit(self) -> None:
        self._handle.close()
        os.chmod(self._tmp, FILE_MODE)
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

    # Optional: `process_many(records) -> outcomes`, the same for a list of records at once, used
    # (with up to BATCH_RECORDS records) when a processor has it: spaCy is faster on batches.
    # Optional: `start_shard(job)`, called before a shard's first record, for a processor whose
    # outcome depends on where a record sits (dedup's decisions are per record position).
    # Optional: `samples`, step -> [{"id", "removed"}]: examples of what the processor removed from
    # records it kept, written beside the output (`<output>.removed-samples.jsonl`).
    # Optional: a static `published(config, stats, output_dir)`, called once the shards are merged
    # by whichever executor ran them (clean writes its report there).


BATCH_RECORDS = 256


def outcomes(processor: Processor, records: Iterator[dict]) -> Iterator[tuple[dict, dict | str]]:
    """(record, outcome) for each record, through process_many in batches when there is one."""
    process_many = getattr(processor, "process_many", None)
    if process_many is None:
        for record in records:
            yield record, processor.process(record)
        return
    batch: list[dict] = []
    for record in records:
        batch.append(record)
        if len(batch) == BATCH_RECORDS:
            yield from zip(batch, process_many(batch), strict=True)
            batch = []
    if batch:
        yield from zip(batch, process_many(batch), strict=True)


@dataclass(frozen=True)
class ShardJob:
    """One shard of a stage: read `source`, write `target`, then leave `marker` with its counts."""

    source: Path
    target: Path
    marker: Path
    samples_per_reason: int = 3

    @property
    def done(self) -> bool:
        return self.marker.is_file()


def partial_dir(output_dir: Path) -> Path:
    return beside(output_dir, ".partial")


def plan_shards(input_dir: Path, output_dir: Path, samples_per_reason: int = 3) -> list[ShardJob]:
    """One job per shard of input_dir, done or not (`job.done`: its marker is there from an
    earlier, killed run). Any executor runs the jobs not done with `run_shard`, in any order and
    anywhere that sees the same filesystem, then calls `finish`."""
    work = partial_dir(output_dir)
    (work / MARKERS_DIR).mkdir(parents=True, exist_ok=True)
    return [ShardJob(part, work / part.name, work / MARKERS_DIR / f"{part.name}.json", samples_per_reason)
            for part in list_parts(input_dir)]


def run_shard(job: ShardJob, make_processor: Callable[[], Processor]) -> None:
    """Process one shard: its part is written under a temporary name and renamed, then its marker."""
    processor = make_processor()
    if hasattr(processor, "start_shard"):
        processor.start_shard(job)
    result = {"records_in": 0, "records_out": 0, "bytes_in": job.source.stat().st_size,
              "dropped": Counter(), "samples": {}}
    writer = PartWriter(job.target)
    try:
        for record, outcome in outcomes(processor, read_part(job.source)):
            result["records_in"] += 1
            if isinstance(outcome, str):
                result["dropped"][outcome] += 1
                samples = result["samples"].setdefault(outcome, [])
                if len(samples) < job.samples_per_reason:
                    samples.append(record)
            else:
                writer.write(outcome)
        result["records_out"] = writer.count
        writer.commit()
    except BaseException:
        writer.abort()
        raise
    result["bytes_out"] = job.target.stat().st_size
    result["counters"] = dict(processor.counters)
    result["removed"] = getattr(processor, "samples", {})  # examples of what a step removed from kept records
    # The marker comes last: a shard counts as done only once its part is in place.
    atomic_write_text(job.marker, json.dumps(result, ensure_ascii=False, default=dict))


def finish(stage: str, input_dir: Path, output_dir: Path, seconds: float = 0.0,
           shards_resumed: int = 0) -> StageStats:
    """Once every shard has its marker: merge their counts into the stage's stats, and rename
    `<output>.partial/` to `<output>` (with the dropped-record samples and stats beside it)."""
    parts = list_parts(input_dir)
    work = partial_dir(output_dir)
    markers = [work / MARKERS_DIR / f"{p.name}.json" for p in parts]
    missing = [m.name for m in markers if not m.is_file()]
    if missing:
        raise RuntimeError(f"{stage}: cannot finish, shards not done: {', '.join(missing[:5])}")
    stats = StageStats(stage=stage, seconds=round(seconds, 4))
    samples, removed = _merge_markers(stats, markers)
    stats.extra["shards"] = len(parts)
    stats.extra["shards_resumed"] = shards_resumed
    shutil.rmtree(work / MARKERS_DIR)
    for leftover in work.glob(".*.tmp"):  # written by a worker killed mid-shard
        leftover.unlink()
    replace_dir(work, output_dir)
    write_samples(output_dir, samples)
    if removed:
        write_samples(output_dir, removed, kind="removed")
    stats.write(output_dir)
    return stats


def run_jobs(function: Callable, jobs: list, workers: int = 1) -> list:
    """function(job) for each job: in a pool of `workers` processes, or in this one for a single
    worker or job; the results in the jobs' order, the first failure raised."""
    if workers > 1 and len(jobs) > 1:
        with ProcessPoolExecutor(max_workers=workers) as pool:
            return [future.result() for future in [pool.submit(function, job) for job in jobs]]
    return [function(job) for job in jobs]


def map_shards(stage: str, make_processor: Callable[[], Processor], input_dir: Path, output_dir: Path,
               workers: int = 1, samples_per_reason: int = 3) -> StageStats:
    """Run `make_processor()` over every shard of input_dir into output_dir (same part names)."""
    started = time.perf_counter()
    jobs = plan_shards(input_dir, output_dir, samples_per_reason)
    todo = [job for job in jobs if not job.done]
    run_jobs(partial(run_shard, make_processor=make_processor), todo, workers)
    return finish(stage, input_dir, output_dir, time.perf_counter() - started, len(jobs) - len(todo))


def _merge_markers(stats: StageStats, markers: list[Path]) -> tuple[dict[str, list[dict]], dict[str, list[dict]]]:
    samples: dict[str, list[dict]] = {}
    removed: dict[str, list[dict]] = {}
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
        for step, examples in result.get("removed", {}).items():
            removed.setdefault(step, []).extend(examples)
    stats.extra.update(counters)
    return samples, removed


def samples_path(output_dir: Path, kind: str = "dropped") -> Path:
    """Samples live beside the output, like its stats (see core.stats.stats_path): of dropped
    records (`dropped`, {"reason", "record"}), and of lines a step removed from kept records
    (`removed`, {"reason": step, "record": {"id", "removed"}})."""
    output_dir = Path(output_dir)
    return output_dir.parent / f"{output_dir.name}.{kind}-samples.jsonl"


def write_samples(output_dir: Path, samples: dict[str, list[dict]], per_reason: int = 3,
                  kind: str = "dropped") -> None:
    lines = [json.dumps({"reason": reason, "record": record}, ensure_ascii=False)
             for reason in sorted(samples) for record in samples[reason][:per_reason]]
    atomic_write_text(samples_path(output_dir, kind), "".join(line + "\n" for line in lines))
