"""Ingest: read the raw inputs into shards (`part-*.jsonl`) with `id` and `text` on every record.

Inputs are files, folders, globs and `s3://bucket/prefix` in JSONL, JSONL.gz, Parquet, CSV or
.txt (data/records.py), streamed one record at a time. Whatever cannot become a record (invalid
UTF-8, a malformed line, no usable text or id, a record over `max_record_bytes`, an id seen
before, a file that is not a known format or not readable) goes to `quarantine.jsonl` with its
source, line number and reason, and is counted, so nothing vanishes silently.

Resume: the output grows in `<output>.partial/`; after each shard it commits, ingest writes a
checkpoint (which source, how many of its lines were consumed, the counts so far, the quarantine
file's length). Killed and run again, it keeps the committed shards, reloads their ids (to keep
dropping duplicate ids), truncates the quarantine back, skips the lines already consumed and goes
on: the final folder is identical to an uninterrupted run's.

Memory: one record at a time, plus the set of ids seen (duplicate ids are dropped across the
whole corpus), which grows with the number of records, not their size.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

from core.atomic import atomic_write_text, replace_dir
from core.state import REPO_ROOT
from core.stats import StageStats
from data.config import CanaryConfig, IngestConfig
from data.records import GLOB_CHARS, QUARANTINE_FILE, JsonlWriter, Source, SourceLine, list_sources, read_source
from data.shards import MARKERS_DIR, PartWriter, folder_bytes, list_parts, part_name, partial_dir, read_part

RAW_EXCERPT_CHARS = 500
CHECKPOINT = "ingest.json"


def missing_inputs(paths: list[str]) -> list[str]:
    """Entries of `data.ingest.paths` that name a local file or folder that does not exist
    (globs and s3:// URLs are only resolved when ingest runs)."""
    return [raw for raw in paths if not raw.startswith("s3://") and not GLOB_CHARS.search(raw)
            and not (Path(raw) if Path(raw).is_absolute() else REPO_ROOT / raw).exists()]


def problem(line: SourceLine, config: IngestConfig) -> str | None:
    """Why this line cannot become a record, or None when it can."""
    if line.problem is not None:
        return line.problem
    record = line.record
    if record is None:
        return "malformed_json"
    text = record.get(config.text_field)
    if text is None:
        return "missing_text"
    if not isinstance(text, str):
        return "non_string_text"
    if not text.strip():
        return "empty_text"
    record_id = record.get(config.id_field)
    if record_id is None or str(record_id).strip() == "":
        return "missing_id"
    return None


def to_record(source: dict, config: IngestConfig) -> dict:
    """Rename the configured fields to `id` and `text`, keeping every other field."""
    record = {"id": str(source[config.id_field]), "text": source[config.text_field]}
    for key, value in source.items():
        if key not in (config.id_field, config.text_field, "id", "text"):
            record[key] = value
    return record


def _fresh_checkpoint(sources: list[Source]) -> dict:
    return {"sources": [s.name for s in sources], "next_part": 0, "source": 0, "consumed": 0,
            "records_in": 0, "records_out": 0, "dropped": {}, "quarantine_bytes": 0}


def _resume_point(work: Path, sources: list[Source]) -> dict:
    """The last checkpoint in `work`, with the folder trimmed back to it; or a fresh start."""
    checkpoint_file = work / MARKERS_DIR / CHECKPOINT
    checkpoint = json.loads(checkpoint_file.read_text()) if checkpoint_file.is_file() else None
    if checkpoint is None or checkpoint["sources"] != [s.name for s in sources]:
        # Nothing committed yet, or the inputs changed since: start over.
        shutil.rmtree(work, ignore_errors=True)
        (work / MARKERS_DIR).mkdir(parents=True)
        return _fresh_checkpoint(sources)
    committed = {part_name(i) for i in range(checkpoint["next_part"])}
    for path in work.iterdir():
        if path.is_file() and path.name != QUARANTINE_FILE and path.name not in committed:
            path.unlink()  # a shard cut short, or a temporary file of the killed run
    with open(work / QUARANTINE_FILE, "r+b") as handle:
        handle.truncate(checkpoint["quarantine_bytes"])
    return checkpoint


def insert_canaries(folder: Path, ids: set[str], config: CanaryConfig) -> dict:
    """Append config's canaries to their host records in the committed shards of `folder`, and
    write the list beside them (evaluation reads it). A rerun after a kill finds the sentences
    already there and appends nothing twice."""
    from evaluation import canaries as cn

    made = cn.make_canaries(config.per_kind, tuple(config.kinds), config.seed)
    try:
        hosts = cn.choose_hosts(sorted(ids), made, config.repeats, config.seed)
    except ValueError as exc:
        raise ValueError(f"data.ingest.canaries: {exc}") from None
    for path in list_parts(folder):
        records = list(read_part(path))
        if any(record["id"] in hosts for record in records):
            writer = PartWriter(path)
            for record in records:
                writer.write({**record, "text": cn.append(record["text"], hosts.get(record["id"], []))})
            writer.commit()
    cn.write(folder / cn.CANARIES_FILE, made, config.repeats)
    return {"canaries": len(made), "canary_copies": len(made) * config.repeats}


def run(config: IngestConfig, input_dir: Path | None, output_dir: Path, workers: int = 1) -> StageStats:
    """`input_dir` and `workers` are unused: ingest reads `config.paths` in one pass; the arguments
    keep every stage alike (data.stages)."""
    sources = [s for raw in config.paths for s in list_sources(raw, REPO_ROOT, config.s3_endpoint_url)]
    work = partial_dir(output_dir)
    state = _resume_point(work, sources)
    resumed_parts = state["next_part"]
    seen_ids = {record["id"] for path in list_parts(work) for record in read_part(path)}
    stats = StageStats(stage="ingest", bytes_in=sum(s.size for s in sources),
                       records_in=state["records_in"], dropped=dict(state["dropped"]))
    records_out = state["records_out"]

    with stats.timed(), JsonlWriter(work / QUARANTINE_FILE, mode="a") as quarantine:
        writer = None
        for index in range(state["source"], len(sources)):
            source = sources[index]
            skip = state["consumed"] if index == state["source"] else 0
            lines = read_source(source, config)
            for consumed, line in enumerate(lines, start=1):
                if consumed <= skip:
                    continue
                stats.records_in += 1
                reason = problem(line, config)
                record = to_record(line.record, config) if reason is None else None
                if record is not None and record["id"] in seen_ids:
                    reason = "duplicate_id"
                if reason is not None:
                    stats.drop(reason)
                    quarantine.write({"source": source.name, "line": line.number, "reason": reason,
                                      "raw": line.raw[:RAW_EXCERPT_CHARS]})
                    continue
                seen_ids.add(record["id"])
                if writer is None:
                    writer = PartWriter(work / part_name(state["next_part"]))
                writer.write(record)
                if writer.count == config.records_per_part:
                    writer.commit()
                    records_out += writer.count
                    writer = None
                    state.update(next_part=state["next_part"] + 1, source=index, consumed=consumed,
                                 records_in=stats.records_in, records_out=records_out,
                                 dropped=stats.dropped, quarantine_bytes=quarantine.flush())
                    # The checkpoint comes last: it only ever points at committed shards.
                    atomic_write_text(work / MARKERS_DIR / CHECKPOINT, json.dumps(state))
        if writer is not None:
            writer.commit()
            records_out += writer.count
        if config.canaries.per_kind:
            stats.extra.update(insert_canaries(work, seen_ids, config.canaries))

    stats.records_out = records_out
    stats.bytes_out = folder_bytes(work)
    stats.extra.update(quarantined=sum(stats.dropped.values()), sources=len(sources),
                       shards=len(list_parts(work)), shards_resumed=resumed_parts)
    shutil.rmtree(work / MARKERS_DIR)
    replace_dir(work, output_dir)
    stats.write(output_dir)
    return stats
