"""Record files shared by every data stage.

Ingest reads the outside formats (JSONL, JSONL.gz, Parquet, .txt) through `read_source`; between
stages a dataset is a sharded folder (data/shards.py).
"""

from __future__ import annotations

import gzip
import json
from pathlib import Path
from typing import Iterator, NamedTuple

QUARANTINE_FILE = "quarantine.jsonl"
SOURCE_SUFFIXES = (".jsonl", ".jsonl.gz", ".parquet", ".txt")


class DataError(RuntimeError):
    """Input a stage cannot work with; the message says what and where."""


class SourceLine(NamedTuple):
    number: int  # 1-based line (JSONL) or row (Parquet) number; 1 for a .txt file
    record: dict | None  # None when the line is not a JSON object
    raw: str  # the line as read, for the quarantine file


def read_source(path: Path, id_field: str = "id", text_field: str = "text") -> Iterator[SourceLine]:
    """Every record of one input file, or of every input file in a folder (sorted by name)."""
    path = Path(path)
    if path.is_dir():
        for child in sorted(path.iterdir()):
            if child.is_file() and child.name.endswith(SOURCE_SUFFIXES):
                yield from read_source(child, id_field, text_field)
    elif path.name.endswith((".jsonl", ".jsonl.gz")):
        yield from _read_jsonl_lines(path)
    elif path.suffix == ".parquet":
        yield from _read_parquet_rows(path)
    elif path.suffix == ".txt":
        text = path.read_text(encoding="utf-8", errors="replace")
        yield SourceLine(1, {id_field: path.stem, text_field: text}, text)
    else:
        raise DataError(f"{path}: unsupported input format (expected one of {', '.join(SOURCE_SUFFIXES)})")


def _read_jsonl_lines(path: Path) -> Iterator[SourceLine]:
    opener = gzip.open if path.name.endswith(".gz") else open
    # errors="replace": one bad byte should quarantine nothing more than its own line's text.
    with opener(path, "rt", encoding="utf-8", errors="replace") as handle:
        for number, line in enumerate(handle, start=1):
            if not line.strip():
                continue
            try:
                record = json.loads(line)
            except json.JSONDecodeError:
                record = None
            yield SourceLine(number, record if isinstance(record, dict) else None, line.rstrip("\n"))


def _read_parquet_rows(path: Path) -> Iterator[SourceLine]:
    import pyarrow.parquet as pq

    number = 0
    for batch in pq.ParquetFile(path).iter_batches(batch_size=1024):
        for record in batch.to_pylist():
            number += 1
            yield SourceLine(number, record, json.dumps(record, ensure_ascii=False, default=str))


class JsonlWriter:
    """Append records as JSON lines; counts what it wrote."""

    def __init__(self, path: Path):
        self.path = Path(path)
        self.count = 0
        self._handle = open(self.path, "w", encoding="utf-8")

    def write(self, record: dict) -> None:
        self._handle.write(json.dumps(record, ensure_ascii=False) + "\n")
        self.count += 1

    def __enter__(self) -> "JsonlWriter":
        return self

    def __exit__(self, *exc_info) -> None:
        self._handle.close()
