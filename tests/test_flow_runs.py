"""Run records (flows.runs): a run whose process died is ended in MLflow, what it registered before
it committed is removed (an alias it moved goes back), and the next run of the same key adopts its
folder. Against a real MLflow registry (SQLite, local artifacts)."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time

import pytest

from flows import runs
from model_fixtures import make_tiny_model_folder

MODEL = "runs-test"
KEY = {"config_sha256": "c" * 64, "git_commit": "abc", "dataset_dvc_md5": "d.dir"}


@pytest.fixture
def tracking(tmp_path):
    import mlflow

    previous = mlflow.get_tracking_uri()
    mlflow.set_tracking_uri(f"sqlite:///{tmp_path / 'mlflow.db'}")
    yield tmp_path
    mlflow.set_tracking_uri(previous)


def dead_pid() -> int:
    child = subprocess.Popen([sys.executable, "-c", "pass"])
    child.wait()
    return child.pid


def record(name: str, pid: int, **fields) -> runs.RunRecord:
    fields.setdefault("key", dict(KEY))
    return runs.RunRecord(run_name=name, host=socket.gethostname(), pid=pid, pid_started=runs._proc_started(pid),
                          heartbeat=time.time(), model_name=MODEL, **fields)


def register(folder, run_id: str, experiment: str, name: str) -> str:
    from core import registry

    return registry.register_variant(MODEL, folder, name, {"bits_per_byte": 1.0}, {"mlflow_run_id": run_id},
                                     run_id=run_id, experiment_id=experiment).version


def test_a_dead_runs_mlflow_run_is_killed_and_its_uncommitted_versions_removed(tracking, tmp_path):
    """The previous champion comes back; the versions of the dead run are gone; its record says why."""
    import mlflow

    from core import registry

    client = mlflow.MlflowClient()
    experiment = registry.experiment_id("conveyor/runs-test", (tmp_path / "artifacts").as_uri())
    folder = make_tiny_model_folder(tmp_path / "model")
    good_run = client.create_run(experiment).info.run_id
    good = register(folder, good_run, experiment, "base")
    registry.set_alias(MODEL, "champion", good, "first")
    dead_run = client.create_run(experiment).info.run_id
    mine = [register(folder, dead_run, experiment, name) for name in ("base", "int8")]
    registry.set_alias(MODEL, "champion", mine[1], "the dead run's gate")  # killed before it committed
    run_dir = tmp_path / "runs" / "20260101-000000-dead"
    record("20260101-000000-dead", dead_pid(), mlflow_run_id=dead_run).write(run_dir)

    lines = runs.recover(tmp_path / "runs")

    assert len(lines) == 1 and "crashed" in lines[0] and ", ".join(mine) in lines[0]
    assert registry.get_by_alias(MODEL, "champion").version == good
    remaining = {str(v.version) for v in client.search_model_versions(f"name='{MODEL}'")}
    assert remaining == {good}
    assert client.get_run(dead_run).info.status == "KILLED"
    assert "pid" in client.get_run(dead_run).data.tags["conveyor.crashed"]
    assert runs.RunRecord.read(run_dir).status == "crashed"
    assert registry.history(MODEL)[-1].action == "recover"
    assert registry.champion_lineup(MODEL) == [good]  # a rollback will not go to the removed version
    assert runs.recover(tmp_path / "runs") == []  # ended once


def test_a_committed_run_keeps_its_versions_and_a_live_run_is_left_alone(tracking, tmp_path):
    import mlflow

    from core import registry

    client = mlflow.MlflowClient()
    experiment = registry.experiment_id("conveyor/runs-test", (tmp_path / "artifacts").as_uri())
    folder = make_tiny_model_folder(tmp_path / "model")
    committed_run = client.create_run(experiment).info.run_id
    kept = register(folder, committed_run, experiment, "base")
    registry.set_alias(MODEL, "champion", kept, "gate")
    record("20260101-000000-committed", dead_pid(), mlflow_run_id=committed_run, committed=True).write(
        tmp_path / "runs" / "20260101-000000-committed")
    live_run = client.create_run(experiment).info.run_id
    record("20260101-000001-live", os.getpid(), mlflow_run_id=live_run).write(tmp_path / "runs" / "20260101-000001-live")

    lines = runs.recover(tmp_path / "runs")

    assert len(lines) == 1 and "committed" in lines[0]
    assert registry.get_by_alias(MODEL, "champion").version == kept
    assert client.get_run(committed_run).info.status == "KILLED"
    assert client.get_run(live_run).info.status == "RUNNING"


def test_a_reused_pid_or_a_stale_heartbeat_from_another_host_counts_as_dead():
    mine = record("r", os.getpid())
    assert runs.owner_alive(mine)
    assert not runs.owner_alive(mine.model_copy(update={"pid_started": (mine.pid_started or 0) + 1}))
    elsewhere = mine.model_copy(update={"host": "another-host"})
    assert runs.owner_alive(elsewhere)
    assert not runs.owner_alive(elsewhere.model_copy(update={"heartbeat": time.time() - runs.STALE_SECONDS - 1}))


def test_the_newest_interrupted_run_with_the_same_key_is_adopted(tmp_path):
    root = tmp_path / "runs"
    for name, status, key in [("20260101-000000-a", "crashed", KEY), ("20260101-000001-b", "failed", KEY),
                              ("20260101-000002-c", "crashed", {**KEY, "dataset_dvc_md5": "other.dir"}),
                              ("20260101-000003-d", "completed", KEY)]:
        record(name, 1, status=status, key=key).write(root / name)
        (root / name / "model" / "base.checkpoints").mkdir(parents=True)
    new = root / "20260101-000004-new"
    new.mkdir()

    source, found = runs.adoptable(root, KEY, exclude=new)
    assert found.run_name == "20260101-000001-b"  # c has other data; d completed
    assert runs.adopt(source, new) == ["model"]
    assert (new / "model" / "base.checkpoints").is_dir() and not (source / "model").exists()
    assert runs.adoptable(root, {**KEY, "git_commit": "changed"}, exclude=new) is None


def test_a_run_started_with_sigint_ignored_still_sees_a_cancel(tmp_path):
    """A cancel interrupts the main thread (`_thread.interrupt_main`), which does nothing while SIGINT
    is ignored, as it is for `conveyor run ... &` in a script: the ledger gives SIGINT its handler."""
    import signal

    script = (
        "import _thread, sys, time\n"
        "from flows import runs\n"
        f"ledger = runs.RunLedger.start({str(tmp_path / 'run')!r}, 'r', 'm')\n"
        "try:\n"
        "    _thread.interrupt_main()\n"
        "    time.sleep(20)\n"
        "except KeyboardInterrupt:\n"
        "    print('interrupted')\n"
    )
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=60,
                            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_IGN))
    assert result.stdout.strip() == "interrupted", result.stderr[-2000:]
