"""`python -m data` end to end on the tiny fixture, with the exact commands of dvc.yaml."""

import json
import shutil
import subprocess
import sys

import yaml

from core.state import REPO_ROOT
from core.stats import StageStats
from data.shards import read_part
from data.stages import STAGES, inputs


def run_data(*args: str, cwd=REPO_ROOT) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "data", *args], cwd=cwd, capture_output=True, text=True)


def test_dvc_commands_run_the_whole_chain_on_the_tiny_fixture(tmp_path):
    # dvc.yaml's commands, with the state dir .conveyor/ moved to tmp_path; params = the test profile.
    state = tmp_path / "state"
    state.mkdir()
    shutil.copy(REPO_ROOT / "configs" / "test.yaml", state / "params.yaml")
    dvc_stages = yaml.safe_load((REPO_ROOT / "dvc.yaml").read_text())["stages"]
    assert list(dvc_stages) == list(STAGES)
    for name, stage in dvc_stages.items():
        command = stage["cmd"].replace(".conveyor/", f"{state}/").split()
        assert command[:3] == ["python", "-m", "data"]
        done = subprocess.run([sys.executable, *command[1:]], cwd=REPO_ROOT, capture_output=True, text=True)
        assert done.returncode == 0, done.stderr
        assert done.stdout.startswith(f"{name}: ")

    data = state / "data"
    ingest = StageStats.read(data / "ingest")
    assert ingest.dropped == {"malformed_json": 1, "empty_text": 1, "duplicate_id": 1}
    assert StageStats.read(data / "dedup").dropped["exact_duplicate"] >= 5
    anonymize = StageStats.read(data / "anonymize")
    assert all(anonymize.extra[entity] > 0 for entity in ("EMAIL", "PHONE", "IP_ADDRESS", "CREDIT_CARD"))
    assert json.loads((data / "validate" / "report.json").read_text())["success"] is True
    split = StageStats.read(data / "curated")
    train = list(read_part(data / "curated" / "train.jsonl"))
    validation = list(read_part(data / "curated" / "validation.jsonl"))
    assert len(train) == split.extra["train_records"] and len(validation) == split.extra["validation_records"] >= 1
    assert split.records_in == anonymize.records_out == len(train) + len(validation)
    assert all(len(r["text"]) >= 100 for r in train + validation)


def test_dvc_yaml_follows_the_stage_registry():
    """data.stages is the one list of stages; dvc.yaml must say the same: order, command, the
    folder each reads and writes, its params section, its stats as a metric."""
    dvc_stages = yaml.safe_load((REPO_ROOT / "dvc.yaml").read_text())["stages"]
    assert list(dvc_stages) == list(STAGES)
    read = inputs(list(STAGES))
    for name, stage in STAGES.items():
        block, out = dvc_stages[name], f".conveyor/data/{stage.output}"
        source = f".conveyor/data/{STAGES[read[name]].output}" if read[name] else None
        assert block["cmd"] == (f"python -m data {name}" + (f" --input {source}" if source else "")
                                + f" --output {out} --params .conveyor/params.yaml"), name
        assert f"data/{name}.py" in block["deps"] and (source is None or source in block["deps"]), name
        assert block["params"] == [{".conveyor/params.yaml": [f"data.{name}"]}], name
        assert block["outs"] == [out] and block["metrics"] == [f"{out}.stats.json"], name
        assert stage.config_model.__name__.lower().startswith(name), name


def test_cli_set_overrides_the_stage_section(tmp_path):
    params = tmp_path / "params.yaml"
    shutil.copy(REPO_ROOT / "configs" / "test.yaml", params)
    assert run_data("ingest", "--output", str(tmp_path / "ingest"), "--params", str(params)).returncode == 0
    done = run_data("clean", "--input", str(tmp_path / "ingest"), "--output", str(tmp_path / "clean"),
                    "--params", str(params), "--set", "min_chars=1000000", "--set", "max_chars=2000000")
    assert done.returncode == 0, done.stderr
    assert StageStats.read(tmp_path / "clean").records_out == 0


def test_cli_expected_errors_are_one_message_and_exit_1(tmp_path):
    params = tmp_path / "params.yaml"
    shutil.copy(REPO_ROOT / "configs" / "test.yaml", params)
    cases = [
        (["clean", "--input", str(tmp_path / "missing"), "--output", str(tmp_path / "o"), "--params", str(params)],
         "does not exist: run the previous stage first"),
        (["ingest", "--output", str(tmp_path / "o"), "--params", str(tmp_path / "nope.yaml")], "config file not found"),
        (["ingest", "--output", str(tmp_path / "o"), "--params", str(params), "--set", "paths=[nowhere.jsonl]"],
         "nowhere.jsonl"),
        (["clean", "--input", str(tmp_path), "--output", str(tmp_path / "o"), "--params", str(params),
          "--set", "min_chars=lots"], "data.clean"),
        (["dedup", "--output", str(tmp_path / "o"), "--params", str(params)], "needs --input"),
    ]
    for args, message in cases:
        done = run_data(*args)
        assert done.returncode == 1, args
        assert message in done.stderr and "Traceback" not in done.stderr, done.stderr


def test_cli_validation_failure_names_the_expectation(tmp_path):
    params = tmp_path / "params.yaml"
    shutil.copy(REPO_ROOT / "configs" / "test.yaml", params)
    records = tmp_path / "anonymize"
    records.mkdir()
    (records / "part-00000.jsonl").write_text(json.dumps({"id": "a", "text": "x" * 300}) + "\n")
    done = run_data("validate", "--input", str(records), "--output", str(tmp_path / "validate"),
                    "--params", str(params), "--set", "max_chars=200")
    assert done.returncode == 1
    assert "expect_column_value_lengths_to_be_between(text)" in done.stderr and "Traceback" not in done.stderr
    assert (tmp_path / "validate" / "report.json").is_file()
