"""Each data stage on small hand-made inputs: what it keeps, what it drops and why."""

import json
from pathlib import Path

import pytest

from core.stats import StageStats
from data import ingest, split
from data.config import IngestConfig, SplitConfig
from data.records import QUARANTINE_FILE
from data.shards import part_name, read_part, read_records


def write_records(folder: Path, records: list[dict]) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / part_name(0)).write_text("".join(json.dumps(r) + "\n" for r in records), encoding="utf-8")
    return folder


# ingest

def test_ingest_quarantines_bad_lines_and_keeps_every_good_record(tmp_path):
    source = tmp_path / "raw.jsonl"
    source.write_text("\n".join([
        json.dumps({"id": "a", "text": "first", "genre": "news"}),
        '{"id": "broken", "text": "cut off',
        json.dumps({"id": "no-text"}),
        json.dumps({"id": "null-text", "text": None}),
        json.dumps({"id": "empty", "text": "  \n"}),
        json.dumps({"id": "number", "text": 7}),
        json.dumps({"text": "no id here"}),
        json.dumps({"id": "a", "text": "same id again"}),
        json.dumps({"id": 2, "text": "second"}),
    ]) + "\n")
    stats = ingest.run(IngestConfig(paths=[str(source)]), None, tmp_path / "out")

    records = list(read_records(tmp_path / "out"))
    assert records == [{"id": "a", "text": "first", "genre": "news"}, {"id": "2", "text": "second"}]
    assert stats.dropped == {"malformed_json": 1, "missing_text": 2, "empty_text": 1, "non_string_text": 1,
                             "missing_id": 1, "duplicate_id": 1}
    assert (stats.records_in, stats.records_out) == (9, 2)
    quarantined = list(read_part(tmp_path / "out" / QUARANTINE_FILE))
    assert [q["line"] for q in quarantined] == [2, 3, 4, 5, 6, 7, 8]
    assert quarantined[0] == {"source": str(source), "line": 2, "reason": "malformed_json",
                              "raw": '{"id": "broken", "text": "cut off'}
    assert StageStats.read(tmp_path / "out") == stats


def test_ingest_maps_fields_and_reads_gzip_parquet_and_txt(tmp_path):
    import gzip

    import pandas as pd

    with gzip.open(tmp_path / "a.jsonl.gz", "wt", encoding="utf-8") as handle:
        handle.write(json.dumps({"doc": "g1", "body": "from gzip"}) + "\n")
    pd.DataFrame({"doc": ["p1"], "body": ["from parquet"]}).to_parquet(tmp_path / "b.parquet")
    (tmp_path / "letters").mkdir()
    (tmp_path / "letters" / "t1.txt").write_text("from a text file")
    config = IngestConfig(paths=[str(tmp_path / "a.jsonl.gz"), str(tmp_path / "b.parquet"),
                                 str(tmp_path / "letters")], id_field="doc", text_field="body")
    ingest.run(config, None, tmp_path / "out")
    assert list(read_records(tmp_path / "out")) == [
        {"id": "g1", "text": "from gzip"}, {"id": "p1", "text": "from parquet"}, {"id": "t1", "text": "from a text file"}]


def test_ingest_missing_input_names_the_path(tmp_path):
    with pytest.raises(FileNotFoundError, match="nowhere.jsonl"):
        ingest.run(IngestConfig(paths=["nowhere.jsonl"]), None, tmp_path / "out")
    assert not (tmp_path / "out").exists()


# split

def test_split_is_deterministic_and_order_independent(tmp_path):
    records = [{"id": f"doc/{i}", "text": f"text {i}"} for i in range(200)]
    config = SplitConfig(validation_fraction=0.2, seed=7)
    stats = split.run(config, write_records(tmp_path / "a", records), tmp_path / "out_a")
    split.run(config, write_records(tmp_path / "b", records[::-1]), tmp_path / "out_b")

    def ids(folder, name):
        return {r["id"] for r in read_part(folder / name)}

    assert ids(tmp_path / "out_a", split.VALIDATION_FILE) == ids(tmp_path / "out_b", split.VALIDATION_FILE)
    assert ids(tmp_path / "out_a", split.TRAIN_FILE) == ids(tmp_path / "out_b", split.TRAIN_FILE)
    assert 20 <= stats.extra["validation_records"] <= 60
    assert stats.extra["train_records"] + stats.extra["validation_records"] == 200
    other_seed = split.run(SplitConfig(validation_fraction=0.2, seed=8), tmp_path / "a", tmp_path / "out_c")
    assert ids(tmp_path / "out_c", split.VALIDATION_FILE) != ids(tmp_path / "out_a", split.VALIDATION_FILE)
    assert other_seed.records_out == 200


def test_split_always_has_a_validation_record(tmp_path):
    records = [{"id": "only-a", "text": "x"}, {"id": "only-b", "text": "y"}]
    stats = split.run(SplitConfig(validation_fraction=0.001), write_records(tmp_path / "in", records),
                      tmp_path / "out")
    assert stats.extra == {"train_records": 1, "validation_records": 1}
