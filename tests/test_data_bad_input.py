"""Every kind of bad input at once: each is quarantined with its reason and counted, nothing
crashes, and every good record comes through, through ingest and through `conveyor data all`."""

import gzip
import json

from typer.testing import CliRunner

from core.state import REPO_ROOT
from core.stats import StageStats
from data import ingest
from data.config import IngestConfig
from data.records import QUARANTINE_FILE
from data.shards import read_part, read_records
from flows.cli import app



def good_records(count: int) -> list[dict]:
    """The first `count` records of the demo corpus that ingest keeps (it holds a few bad lines)."""
    good = []
    for line in gzip.open(REPO_ROOT / "data" / "corpus" / "demo.jsonl.gz", "rt", encoding="utf-8"):
        try:
            record = json.loads(line)
        except json.JSONDecodeError:
            continue
        if isinstance(record, dict) and isinstance(record.get("text"), str) and record["text"].strip() \
                and record.get("id") and len(good) < count:
            good.append(record)
    return good


GOOD = good_records(60)
FIFTY_MB = 50 * 1024 * 1024


def write_corpus(folder, with_bad: bool):
    folder.mkdir()
    good_lines = [json.dumps(r, ensure_ascii=False).encode() for r in GOOD]
    bad_lines = [
        b'{"id": "latin1", "text": "caf\xe9 au lait"}',  # invalid UTF-8
        b'{"id": "cut", "text": "no closing',  # invalid JSON
        b'[1, 2, 3]',  # JSON, not an object
        json.dumps({"id": "no-text", "title": "only a title"}).encode(),
        json.dumps({"id": "blank", "text": "   "}).encode(),
        b"{}",  # an empty record
        json.dumps({"id": "huge", "text": "x" * FIFTY_MB}).encode(),  # a single 50 MB document
        b"\x00\x9f\xff\xfe\x80garbage\x81",  # binary garbage inside a JSONL file
    ]
    lines = good_lines[:30] + (bad_lines if with_bad else []) + good_lines[30:]
    (folder / "a.jsonl").write_bytes(b"\n".join(lines) + b"\n")
    if with_bad:
        (folder / "noise.bin").write_bytes(bytes(range(256)) * 64)  # a binary file in the folder
        (folder / "fake.jsonl.gz").write_bytes(b"not gzip at all")  # unreadable
        (folder / "latin1.txt").write_bytes("d\xe9j\xe0 vu".encode("latin-1"))  # invalid UTF-8 .txt


EXPECTED = {"invalid_utf8": 3, "malformed_json": 2, "missing_text": 2, "empty_text": 1, "too_large": 1,
            "unsupported_format": 1, "unreadable_file": 1}


def test_ingest_quarantines_each_kind_of_bad_input_and_keeps_every_good_record(tmp_path):
    write_corpus(tmp_path / "raw", with_bad=True)
    stats = ingest.run(IngestConfig(paths=[str(tmp_path / "raw")], records_per_part=16), None, tmp_path / "out")
    assert stats.dropped == EXPECTED
    assert [r["id"] for r in read_records(tmp_path / "out")] == [str(r["id"]) for r in GOOD]
    assert [r["text"] for r in read_records(tmp_path / "out")] == [r["text"] for r in GOOD]
    quarantined = list(read_part(tmp_path / "out" / QUARANTINE_FILE))
    assert len(quarantined) == stats.extra["quarantined"] == sum(EXPECTED.values())
    assert all(len(q["raw"]) <= 500 for q in quarantined)  # the 50 MB line is only excerpted
    assert stats.records_in == len(GOOD) + sum(EXPECTED.values())


def test_conveyor_data_all_on_bad_input_keeps_what_good_input_alone_keeps(tmp_path):
    runner = CliRunner()
    outputs = {}
    for with_bad in (False, True):
        name = "mixed" if with_bad else "clean"
        write_corpus(tmp_path / name, with_bad)
        out = tmp_path / f"{name}.jsonl"
        done = runner.invoke(app, ["data", "all", str(tmp_path / name), str(out), "--workers", "2",
                                   "--set", "clean.min_chars=50", "--set", "validate.min_chars=20"])
        assert done.exit_code == 0, done.output
        outputs[name] = [json.loads(line) for line in out.read_text(encoding="utf-8").splitlines()]
        stats = json.loads((tmp_path / f"{name}.jsonl.stats.json").read_text())
        assert list(stats) == ["ingest", "clean", "dedup", "anonymize", "validate"]
        if with_bad:
            assert StageStats.model_validate(stats["ingest"]).dropped == EXPECTED
            assert len((tmp_path / "mixed.jsonl.quarantine.jsonl").read_text().splitlines()) == sum(EXPECTED.values())
    assert outputs["mixed"] == outputs["clean"] and len(outputs["clean"]) > 0
