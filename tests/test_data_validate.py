"""The GX suite passes on clean data and fails, naming the expectation, on leaked PII or duplicate ids;
`warn` expectations are reported without failing; GX's result and Data Docs sit beside the output."""

import json
from pathlib import Path

import pytest

from core.config import ConfigError
from data.config import ValidateConfig
from data.shards import part_name
from data.validate import REPORT_FILE, ValidationFailed, data_docs_dir, gx_result_path, load_suite, run

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


# severities, artifacts

def write_suite(path: Path, text: str) -> str:
    path.write_text(text, encoding="utf-8")
    return str(path)


SEVERITY_SUITE = """
- type: expect_column_values_to_not_be_null
  kwargs: {column: id}
- type: expect_column_values_to_not_match_regex
  kwargs: {column: text, regex: 'whales'}
  severity: warn
- type: expect_column_values_to_not_match_regex
  kwargs: {column: text, regex: 'SECRET-[0-9]+'}
  severity: fail
"""


def test_warn_failures_are_reported_but_do_not_fail_the_stage(tmp_path):
    suite = write_suite(tmp_path / "suite.yaml", SEVERITY_SUITE)
    stats = run(ValidateConfig(suite=suite), write_records(tmp_path / "in", good_records()), tmp_path / "out")
    report = json.loads((tmp_path / "out" / REPORT_FILE).read_text())
    assert report["success"] is True and (report["failed"], report["warned"]) == (0, 1)
    warned = next(e for e in report["expectations"] if not e["success"])
    assert warned["severity"] == "warn" and warned["observed"]["unexpected_count"] == 5
    assert stats.extra["warned_expectations"] == 1 and stats.extra["failed_expectations"] == 0


def test_fail_severity_raises_naming_only_the_failing_expectation(tmp_path):
    suite = write_suite(tmp_path / "suite.yaml", SEVERITY_SUITE)
    records = good_records()
    records[3]["text"] += " SECRET-42"
    with pytest.raises(ValidationFailed) as failure:
        run(ValidateConfig(suite=suite), write_records(tmp_path / "in", records), tmp_path / "out")
    assert "expect_column_values_to_not_match_regex(text): 1 unexpected" in str(failure.value)
    assert "5 unexpected" not in str(failure.value)  # the warning is not a failure
    report = json.loads((tmp_path / "out" / REPORT_FILE).read_text())
    assert (report["success"], report["failed"], report["warned"]) == (False, 1, 1)


def test_unknown_severity_is_a_config_error(tmp_path):
    suite = write_suite(tmp_path / "suite.yaml", "- type: expect_column_values_to_not_be_null\n"
                                                 "  kwargs: {column: id}\n  severity: panic\n")
    with pytest.raises(ConfigError, match="severity"):
        load_suite(ValidateConfig(suite=suite))


def test_gx_result_and_data_docs_sit_beside_the_output_without_the_failing_values(tmp_path):
    records = good_records()
    records[2]["text"] += " Write to ishmael@pequod.example.com"
    with pytest.raises(ValidationFailed, match="Data Docs"):
        run(ValidateConfig(min_chars=100), write_records(tmp_path / "in", records), tmp_path / "out")
    result = json.loads(gx_result_path(tmp_path / "out").read_text())
    assert result["success"] is False and result["statistics"]["unsuccessful_expectations"] == 1
    docs = data_docs_dir(tmp_path / "out")
    assert (docs / "index.html").is_file()
    pages = [p.read_text(encoding="utf-8") for p in docs.rglob("*.html")]
    result_page, = [p.read_text(encoding="utf-8") for p in (docs / "validations").rglob("*.html")]
    assert "values must not match this regular expression" in result_page and "Failed" in result_page
    assert "pequod" not in gx_result_path(tmp_path / "out").read_text()
    assert not any("pequod" in page for page in pages)
    # The output folder holds the report only: what changes from run to run lives beside it.
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == [REPORT_FILE]


def test_output_folder_is_identical_across_runs(tmp_path):
    records = write_records(tmp_path / "in", good_records())
    run(ValidateConfig(min_chars=100), records, tmp_path / "a")
    run(ValidateConfig(min_chars=100, data_docs=False), records, tmp_path / "b")
    assert (tmp_path / "a" / REPORT_FILE).read_bytes() == (tmp_path / "b" / REPORT_FILE).read_bytes()
    assert not data_docs_dir(tmp_path / "b").exists()
    run(ValidateConfig(min_chars=100, data_docs=False), records, tmp_path / "a")
    assert not data_docs_dir(tmp_path / "a").exists()  # no stale docs of an earlier run
