"""The GX suite passes on clean data and fails, naming the expectation, on leaked PII or duplicate ids."""

import json
from pathlib import Path

import pytest

from data.config import ValidateConfig
from data.shards import part_name
from data.validate import REPORT_FILE, ValidationFailed, load_suite, run

LONG = "A perfectly ordinary paragraph about whales and the sea, long enough to pass. " * 3


def write_records(folder: Path, records: list[dict]) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / part_name(0)).write_text("".join(json.dumps(r) + "\n" for r in records), encoding="utf-8")
    return folder


def good_records() -> list[dict]:
    return [{"id": f"doc/{i}", "text": f"{LONG} Reach me at <EMAIL> or <PHONE>. {i}"} for i in range(5)]


def test_suite_takes_length_bounds_from_the_config():
    suite = load_suite(ValidateConfig(min_chars=123, max_chars=4567))
    lengths = next(e for e in suite if e["type"] == "expect_column_value_lengths_to_be_between")
    assert lengths["kwargs"] == {"column": "text", "min_value": 123, "max_value": 4567}


def test_validate_passes_on_good_data(tmp_path):
    stats = run(ValidateConfig(min_chars=100), write_records(tmp_path / "in", good_records()), tmp_path / "out")
    report = json.loads((tmp_path / "out" / REPORT_FILE).read_text())
    assert report["success"] and all(e["success"] for e in report["expectations"])
    assert stats.records_in == 5 and stats.extra["failed_expectations"] == 0


def test_validate_fails_naming_the_expectation_when_an_email_is_left(tmp_path):
    records = good_records()
    records[2]["text"] += " Write to ishmael@pequod.example.com"
    with pytest.raises(ValidationFailed, match=r"expect_column_values_to_not_match_regex\(text\): 1 unexpected"):
        run(ValidateConfig(min_chars=100), write_records(tmp_path / "in", records), tmp_path / "out")
    # The report is still written, with counts only: the leaked address is not stored.
    report_text = (tmp_path / "out" / REPORT_FILE).read_text()
    assert json.loads(report_text)["success"] is False
    assert "pequod" not in report_text


def test_validate_fails_on_duplicate_ids(tmp_path):
    records = good_records()
    records[1]["id"] = records[0]["id"]
    with pytest.raises(ValidationFailed) as failure:
        run(ValidateConfig(min_chars=100), write_records(tmp_path / "in", records), tmp_path / "out")
    assert "expect_column_values_to_be_unique(id)" in str(failure.value)
    assert "not_match_regex" not in str(failure.value)
