"""What a user sees when a command cannot do its job: one or two lines saying what to do."""

import os
import subprocess
import sys

import pytest


def conveyor(tmp_path, *args):
    env = {k: v for k, v in os.environ.items() if not k.startswith(("MLFLOW_", "BENTOML_", "CONVEYOR_", "PREFECT_"))}
    env["CONVEYOR_STATE_DIR"] = str(tmp_path / "state")  # a fresh state root: nothing run yet
    result = subprocess.run([sys.executable, "-m", "flows.cli", *args], capture_output=True, text=True, env=env,
                            timeout=300)
    return result.returncode, result.stdout, result.stderr


def no_traceback(text: str) -> bool:
    return "Traceback" not in text and "╭" not in text  # rich draws tracebacks in boxes


def test_serve_before_any_run_says_to_run_the_pipeline_and_makes_no_key(tmp_path):
    code, out, err = conveyor(tmp_path, "serve")
    assert code == 1 and no_traceback(out + err)
    assert err.strip().startswith("nothing to serve yet: no Bento conveyor-lm:latest in ")
    assert err.strip().endswith("run the pipeline first: conveyor run --profile demo")
    assert not (tmp_path / "state" / "serving" / "api_keys.json").exists()


@pytest.mark.parametrize("args, expected", [
    (["lineage", "conveyor-lm/999"], "no registered version for conveyor-lm/999 in sqlite:"),
    (["lineage", "conveyor-lm@champion"], "no registered version for conveyor-lm@champion in sqlite:"),
    (["serve", "--profile", "nope"], "config file not found: "),
    (["status", "--profile", "nope"], "config file not found: "),
])
def test_unknown_model_version_or_profile_is_one_line(tmp_path, args, expected):
    code, out, err = conveyor(tmp_path, *args)
    assert code in (1, 2) and no_traceback(out + err)
    lines = [line for line in err.splitlines() if line.strip() and "mlflow.store.db.utils" not in line]
    assert len(lines) == 1 and lines[0].startswith(expected), err


def test_status_names_the_model_and_profile_it_looked_up(tmp_path):
    code, out, _ = conveyor(tmp_path, "status")
    assert code == 0 and "conveyor-lm (profile demo; --profile picks another)" in out


def test_drift_before_any_run_says_to_run_the_pipeline(tmp_path):
    """Checked before the flow starts: a failed flow run would print Prefect's traceback first."""
    code, out, err = conveyor(tmp_path, "drift", "--profile", "test")
    assert code == 1 and no_traceback(out + err), out + err
    lines = [line for line in err.splitlines() if line.strip() and "mlflow.store.db.utils" not in line]
    assert lines == ["conveyor-lm-test has no champion to compare with: run the pipeline first "
                     "(`conveyor run --profile test`)"], err


def test_mail_cleaned_with_the_books_preset_gets_a_hint_and_the_report_is_named(tmp_path):
    from pathlib import Path

    mbox = Path(__file__).resolve().parents[1] / "benchmarks" / "curation_set" / "mail" / "archive.mbox"
    code, out, err = conveyor(tmp_path, "data", "clean", str(mbox), str(tmp_path / "out.jsonl"), "--workers", "1")
    assert code == 0 and no_traceback(out + err)
    assert "note: clean runs its books preset on archive.mbox; for this kind of text add --set preset=mail" in out
    assert f"what each clean rule removed, with examples: {tmp_path / 'out.jsonl'}.clean.report.html" in out
    code, out, err = conveyor(tmp_path, "data", "all", str(mbox), str(tmp_path / "mail.jsonl"), "--workers", "1",
                              "--set", "clean.preset=mail")
    assert code == 0 and "note:" not in out and "clean: 127 in, 119 out" in out, out + err
