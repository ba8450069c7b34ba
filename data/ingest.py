"""Ingest: read the raw inputs into shards (`part-*.jsonl`) with `id` and `text` on every record.

Whatever cannot become a record (a malformed line, no usable text or id, an id seen before)
goes to `quarantine.jsonl` with its source, line number and reason, so nothing vanishes silently.
"""

from __future__ import annotations

from pathlib import Path

from core.atomic import atomic_dir
from core.state import REPO_ROOT
from core.stats import StageStats
from data.config import IngestConfig
from data.records import QUARANTINE_FILE, JsonlWriter, SourceLine, read_source
from data.shards import folder_bytes, write_parts

RAW_EXCERPT_CHARS = 500


def resolve_input(raw: str) -> Path:
    path = Path(raw) if Path(raw).is_absolute() else REPO_ROOT / raw
    if not path.exists():
        raise FileNotFoundError(f"data.ingest.paths: input not found: {raw} (looked at {path})")
    return path


def size_bytes(path: Path) -> int:
    files = [path] if path.is_file() else [p for p in path.rglob("*") if p.is_file()]
    return sum(p.stat().st_size for p in files)


def problem(line: SourceLine, config: IngestConfig) -> str | None:
    """Why this line cannot become a record, or None when it can."""
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


def run(config: IngestConfig, input_dir: Path | None, output_dir: Path) -> StageStats:
    """`input_dir` is unused: ingest reads `config.paths`; the argument keeps every stage alike."""
    inputs = [resolve_input(raw) for raw in config.paths]
    stats = StageStats(stage="ingest")
    seen_ids: set[str] = set()

    def good_records(quarantine: JsonlWriter):
        for path in inputs:
            stats.bytes_in += size_bytes(path)
            for line in read_source(path, config.id_field, config.text_field):
                stats.records_in += 1
                reason = problem(line, config)
                record = to_record(line.record, config) if reason is None else None
                if record is not None and record["id"] in seen_ids:
                    reason = "duplicate_id"
                if reason is not None:
                    stats.drop(reason)
                    quarantine.write({"source": str(path), "line": line.number, "reason": reason,
                                      "raw": line.raw[:RAW_EXCERPT_CHARS]})
                    continue
                seen_ids.add(record["id"])
                yield record

    with atomic_dir(output_dir) as tmp:
        with stats.timed(), JsonlWriter(tmp / QUARANTINE_FILE) as quarantine:
            stats.records_out = write_parts(good_records(quarantine), tmp, config.records_per_part)
        stats.bytes_out = folder_bytes(tmp)
        stats.extra["quarantined"] = quarantine.count
    stats.write(output_dir)
    return stats
