"""Record files shared by every data stage: the outside formats ingest reads and exports write.

Ingest reads JSONL, JSONL.gz, Parquet, CSV and .txt (and, through data.formats, mail, web pages
and chat exports), from local files, folders, globs or `s3://bucket/prefix`, through
`read_source`, one record at a time: memory holds one record (one Parquet batch), never a file. Between stages a dataset is a sharded folder (data/shards.py);
`export_records` writes one back out as a single JSONL, JSONL.gz or Parquet file.

Bytes are decoded line by line, so a line of invalid UTF-8 is quarantined alone (`invalid_utf8`)
instead of being silently patched with U+FFFD, and a line longer than `max_record_bytes` is
skipped without being read into memory whole (`too_large`).
"""

from __future__ import annotations

import csv
import gzip
import io
import json
import os
import re
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import IO, TYPE_CHECKING, Callable, Iterable, Iterator, NamedTuple

from data.formats import DOCUMENT_SUFFIXES

if TYPE_CHECKING:
    from data.config import IngestConfig

QUARANTINE_FILE = "quarantine.jsonl"
SOURCE_SUFFIXES = (".jsonl", ".jsonl.gz", ".parquet", ".csv", ".txt", *DOCUMENT_SUFFIXES)
EXPORT_SUFFIXES = (".jsonl", ".jsonl.gz", ".parquet")
GLOB_CHARS = re.compile(r"[*?\[]")
# What `surrogateescape` turns undecodable bytes into: a CSV field holding one was not UTF-8.
ESCAPED_BYTE = re.compile("[\udc80-\udcff]")
RAW_EXCERPT_BYTES = 500
READ_CHUNK = 1 << 20


class DataError(RuntimeError):
    """Input a stage cannot work with; the message says what and where."""


class SourceLine(NamedTuple):
    number: int  # 1-based line (JSONL), row (Parquet, CSV) number; 1 for a .txt file; 0 for a whole file
    record: dict | None  # None when the line is not a JSON object (or `problem` says why not)
    raw: str  # the line as read (an excerpt when it is too large), for the quarantine file
    problem: str | None = None  # set when the reader already knows the line cannot be a record


@dataclass(frozen=True)
class Source:
    """One input file, local or in S3; `open` gives its bytes as a stream."""

    name: str  # path or s3:// URL, as recorded in the quarantine file
    size: int
    open: Callable[[], IO[bytes]]

    def endswith(self, suffixes: tuple[str, ...]) -> bool:
        return self.name.endswith(suffixes)


# Listing inputs

def list_sources(raw: str, base: Path, s3_endpoint_url: str | None = None) -> list[Source]:
    """The files one entry of `data.ingest.paths` names, in a fixed (sorted) order.

    An entry is a file, a folder (every file under it, recursively), a glob, or `s3://bucket/prefix`
    (every object under the prefix). Files in a folder whatever their suffix are listed: one that
    is not a known format is quarantined as `unsupported_format`, not skipped silently.
    """
    if raw.startswith("s3://"):
        return _list_s3(raw, s3_endpoint_url)
    path = Path(raw) if Path(raw).is_absolute() else base / raw
    if GLOB_CHARS.search(raw):
        anchor = Path(path.anchor)
        matches = sorted(p for p in anchor.glob(str(path.relative_to(anchor))) if p.is_file())
        if not matches:
            raise FileNotFoundError(f"data.ingest.paths: no file matches {raw} (looked at {path})")
        return [_local(p) for p in matches]
    if path.is_dir():
        return [_local(p) for p in sorted(path.rglob("*"))
                if p.is_file() and not any(part.startswith(".") for part in p.relative_to(path).parts)]
    if path.is_file():
        if not path.name.endswith(SOURCE_SUFFIXES):
            raise DataError(f"{path}: unsupported input format (expected one of {', '.join(SOURCE_SUFFIXES)})")
        return [_local(path)]
    raise FileNotFoundError(f"data.ingest.paths: input not found: {raw} (looked at {path})")


def _local(path: Path) -> Source:
    return Source(str(path), path.stat().st_size, lambda: open(path, "rb"))


def s3_filesystem(endpoint_url: str | None = None):
    """fsspec's S3 filesystem (s3fs); credentials and region come from the environment or AWS
    config files, the endpoint from `endpoint_url`, else AWS_ENDPOINT_URL(_S3), else AWS itself."""
    try:
        import s3fs
    except ImportError:
        raise DataError("reading s3:// inputs needs s3fs: pip install s3fs") from None
    # skip_instance_cache: fsspec would hand back the instance made earlier with the same
    # arguments, holding the credentials it found then.
    return s3fs.S3FileSystem(endpoint_url=endpoint_url, skip_instance_cache=True)


def s3_problem(exc: BaseException, url: str, endpoint_url: str | None) -> str | None:
    """One line saying what to do about an S3 error reading `url` (botocore's, or the OSError s3fs
    translated it into, which keeps botocore's as its cause); None for other errors."""
    from botocore import exceptions as boto

    while exc.__cause__ is not None and not isinstance(exc, (boto.BotoCoreError, boto.ClientError)):
        exc = exc.__cause__
    where = endpoint_url or os.environ.get("AWS_ENDPOINT_URL") or "AWS"
    bucket = url[len("s3://"):].partition("/")[0]
    if isinstance(exc, (boto.EndpointConnectionError, boto.ConnectTimeoutError, boto.ReadTimeoutError)):
        return (f"cannot reach the S3 endpoint {where} for {url}: start the server, or fix "
                "data.ingest.s3_endpoint_url / AWS_ENDPOINT_URL")
    if isinstance(exc, (boto.NoCredentialsError, boto.PartialCredentialsError)):
        return (f"no S3 credentials for {url}: set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY "
                "(or AWS_PROFILE)")
    if isinstance(exc, boto.ClientError):
        code = exc.response.get("Error", {}).get("Code", "?")
        if code == "NoSuchBucket":
            return f"no bucket {bucket!r} at {where}: create it, or fix data.ingest.paths"
        if code in ("InvalidAccessKeyId", "SignatureDoesNotMatch", "AccessDenied", "403", "ExpiredToken"):
            return (f"S3 at {where} refused the credentials for {url} ({code}): check AWS_ACCESS_KEY_ID / "
                    "AWS_SECRET_ACCESS_KEY and the bucket's permissions")
        return f"S3 at {where} answered {code} for {url}"
    if isinstance(exc, boto.BotoCoreError):
        return f"S3 error for {url} at {where}: {exc}"
    return None


def _list_s3(url: str, endpoint_url: str | None) -> list[Source]:
    """Every object whose key starts with the URL's prefix (as S3's ListObjects Prefix matches:
    `s3://b/raw/a` takes raw/a.jsonl and raw/ab.jsonl)."""
    folder, _, prefix = url[len("s3://"):].rpartition("/")
    if not folder:  # s3://bucket or s3://bucket-prefix... : the name is the bucket
        folder, prefix = prefix, ""
    fs = s3_filesystem(endpoint_url)
    try:
        found = fs.find(folder, prefix=prefix, detail=True)
    except Exception as exc:
        if (message := s3_problem(exc, url, endpoint_url)) is None:
            raise
        raise DataError(message) from None
    sources = [Source(f"s3://{path}", info["size"], _s3_opener(fs, path, endpoint_url))
               for path, info in sorted(found.items()) if info.get("type") != "directory"]
    if not sources:
        raise FileNotFoundError(f"data.ingest.paths: no object under {url}")
    return sources


def _s3_opener(fs, path: str, endpoint_url: str | None) -> Callable[[], IO[bytes]]:
    def open_object() -> IO[bytes]:
        # s3fs reads the object by ranges, so it is never held in memory whole; the standard
        # buffered reader on top gives readline a limit (fsspec's has none) and does the buffering.
        try:
            return io.BufferedReader(fs.open(path, "rb", cache_type="none"), buffer_size=READ_CHUNK)
        except Exception as exc:
            if (message := s3_problem(exc, f"s3://{path}", endpoint_url)) is None:
                raise
            raise DataError(message) from None
    return open_object


# Reading records

def read_source(source: Source, config: IngestConfig) -> Iterator[SourceLine]:
    """Every record of one input file. A file that cannot be read at all (not gzip, not Parquet,
    an unknown format) yields one SourceLine with its problem instead of raising."""
    from data.formats import read_document_source

    id_field, text_field, max_record_bytes = config.id_field, config.text_field, config.max_record_bytes
    try:
        if source.endswith(DOCUMENT_SUFFIXES):
            yield from read_document_source(source, config)
        elif source.endswith((".jsonl", ".jsonl.gz")):
            yield from _read_jsonl_lines(source, max_record_bytes)
        elif source.endswith((".parquet",)):
            yield from _read_parquet_rows(source, max_record_bytes)
        elif source.endswith((".csv",)):
            yield from _read_csv_rows(source, max_record_bytes)
        elif source.endswith((".txt",)):
            yield _read_text_file(source, id_field, text_field, max_record_bytes)
        else:
            yield SourceLine(0, None, _excerpt(source.open, RAW_EXCERPT_BYTES), "unsupported_format")
    except (OSError, EOFError, ValueError, csv.Error) as exc:
        # Corrupt gzip or Parquet: the records read so far stand; the rest of the file is
        # quarantined as one entry (its error says where it broke).
        yield SourceLine(0, None, f"{type(exc).__name__}: {exc}"[:RAW_EXCERPT_BYTES], "unreadable_file")


def _excerpt(open_source: Callable[[], IO[bytes]], size: int) -> str:
    with open_source() as handle:
        return handle.read(size).decode("utf-8", errors="backslashreplace")


def _read_jsonl_lines(source: Source, max_record_bytes: int) -> Iterator[SourceLine]:
    with source.open() as raw_handle:
        handle = gzip.GzipFile(fileobj=raw_handle) if source.endswith((".gz",)) else raw_handle
        number = 0
        while True:
            line = handle.readline(max_record_bytes + 1)
            if not line:
                return
            number += 1
            if len(line) > max_record_bytes and not line.endswith(b"\n"):
                # Skip the rest of the line in chunks: a 50 MB line never sits in memory.
                while (rest := handle.readline(READ_CHUNK)) and not rest.endswith(b"\n"):
                    pass
                yield SourceLine(number, None, line[:RAW_EXCERPT_BYTES].decode("utf-8", "backslashreplace"),
                                 "too_large")
                continue
            if not line.strip():
                continue
            try:
                text = line.decode("utf-8")
            except UnicodeDecodeError:
                yield SourceLine(number, None, line[:RAW_EXCERPT_BYTES].decode("utf-8", "backslashreplace"),
                                 "invalid_utf8")
                continue
            try:
                record = json.loads(text)
            except json.JSONDecodeError:
                record = None
            yield SourceLine(number, record if isinstance(record, dict) else None, text.rstrip("\r\n"))


def _read_parquet_rows(source: Source, max_record_bytes: int) -> Iterator[SourceLine]:
    import pyarrow.parquet as pq

    with _seekable(source) as handle:
        number = 0
        for batch in pq.ParquetFile(handle).iter_batches(batch_size=1024):
            for record in batch.to_pylist():
                number += 1
                raw = json.dumps(record, ensure_ascii=False, default=str)
                if len(raw.encode("utf-8")) > max_record_bytes:
                    yield SourceLine(number, None, raw[:RAW_EXCERPT_BYTES], "too_large")
                else:
                    yield SourceLine(number, record, raw)


class _seekable:
    """Parquet needs random access: a local file as is, an S3 object spooled to a temp file."""

    def __init__(self, source: Source):
        self.source = source
        self.handle = None

    def __enter__(self) -> IO[bytes]:
        if not self.source.name.startswith("s3://"):
            self.handle = self.source.open()
            return self.handle
        self.handle = tempfile.TemporaryFile()
        with self.source.open() as body:
            while chunk := body.read(READ_CHUNK):
                self.handle.write(chunk)
        self.handle.seek(0)
        return self.handle

    def __exit__(self, *exc_info) -> None:
        self.handle.close()


def _read_csv_rows(source: Source, max_record_bytes: int) -> Iterator[SourceLine]:
    csv.field_size_limit(max(max_record_bytes, csv.field_size_limit()))
    with source.open() as raw_handle:
        text = io.TextIOWrapper(raw_handle, encoding="utf-8", errors="surrogateescape", newline="")
        for number, row in enumerate(csv.DictReader(text), start=1):
            raw = json.dumps(row, ensure_ascii=False)
            if ESCAPED_BYTE.search(raw):
                yield SourceLine(number, None, raw.encode("utf-8", "backslashreplace").decode()[:RAW_EXCERPT_BYTES],
                                 "invalid_utf8")
            elif len(raw) > max_record_bytes:
                yield SourceLine(number, None, raw[:RAW_EXCERPT_BYTES], "too_large")
            else:
                yield SourceLine(number, row, raw)


def _read_text_file(source: Source, id_field: str, text_field: str, max_record_bytes: int) -> SourceLine:
    """A .txt file is one record: its id is the file name without the suffix."""
    stem = source.name.rsplit("/", 1)[-1].removesuffix(".txt")
    if source.size > max_record_bytes:
        return SourceLine(1, None, _excerpt(source.open, RAW_EXCERPT_BYTES), "too_large")
    with source.open() as handle:
        data = handle.read()
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError:
        return SourceLine(1, None, data[:RAW_EXCERPT_BYTES].decode("utf-8", "backslashreplace"), "invalid_utf8")
    return SourceLine(1, {id_field: stem, text_field: text}, text[:RAW_EXCERPT_BYTES])


# Writing records

class JsonlWriter:
    """Append records as JSON lines; counts what it wrote."""

    def __init__(self, path: Path, mode: str = "w"):
        self.path = Path(path)
        self.count = 0
        self._handle = open(self.path, mode, encoding="utf-8")

    def write(self, record: dict) -> None:
        self._handle.write(json.dumps(record, ensure_ascii=False) + "\n")
        self.count += 1

    def flush(self) -> int:
        """Flush to disk; returns the file's size, a point a resumed run can truncate back to."""
        self._handle.flush()
        return self._handle.tell()

    def __enter__(self) -> "JsonlWriter":
        return self

    def __exit__(self, *exc_info) -> None:
        self._handle.close()


def export_records(records: Iterable[dict], path: Path, parquet_batch: int = 10_000) -> int:
    """Write records to one file, JSONL, JSONL.gz or Parquet by its suffix, atomically (temp name,
    rename). Returns how many it wrote."""
    path = Path(path)
    if not path.name.endswith(EXPORT_SUFFIXES):
        raise DataError(f"{path}: export format must be one of {', '.join(EXPORT_SUFFIXES)}")
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    os.close(fd)
    try:
        count = (_export_parquet(records, Path(tmp), parquet_batch) if path.suffix == ".parquet"
                 else _export_jsonl(records, Path(tmp), gz=path.name.endswith(".gz")))
        os.chmod(tmp, 0o644)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return count


def _export_jsonl(records: Iterable[dict], path: Path, gz: bool) -> int:
    count = 0
    # mtime=0: the same records give the same bytes, run after run.
    with (gzip.GzipFile(path, "wb", mtime=0) if gz else open(path, "wb")) as handle:
        for record in records:
            handle.write((json.dumps(record, ensure_ascii=False) + "\n").encode("utf-8"))
            count += 1
    return count


def _export_parquet(records: Iterable[dict], path: Path, batch_size: int) -> int:
    """Batches of `batch_size` records; fields missing from some records become nulls. The schema
    is the union of the fields seen in the first batch (later new fields are a DataError)."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    writer, count, batch = None, 0, []

    def flush() -> None:
        nonlocal writer
        table = pa.Table.from_pylist(batch, schema=writer.schema if writer else None)
        if writer is None:
            writer = pq.ParquetWriter(path, table.schema)
        writer.write_table(table)
        batch.clear()

    try:
        for record in records:
            if writer is not None and not set(record) <= set(writer.schema.names):
                raise DataError(f"{path}: record {record.get('id')!r} has fields the Parquet schema lacks: "
                                f"{sorted(set(record) - set(writer.schema.names))}")
            batch.append(record)
            count += 1
            if len(batch) == batch_size:
                flush()
        if batch:
            flush()
        elif writer is None:
            pq.write_table(pa.table({"id": pa.array([], pa.string()), "text": pa.array([], pa.string())}), path)
    finally:
        if writer is not None:
            writer.close()
    return count
