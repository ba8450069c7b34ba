"""Scale-out: `conveyor data clean --runner dask` (the `curate` flow on a local Dask cluster) writes
what the plain run writes, and a stage killed with SIGKILL midway, run again, resumes to the
output of an uninterrupted run."""

import json
import os
import signal
import subprocess
import sys
import time

import yaml

from core.state import REPO_ROOT
from data.shards import list_parts, partial_dir

CORPUS = str(REPO_ROOT / "data" / "corpus" / "demo.jsonl.gz")


def parts_bytes(folder):
    return {p.name: p.read_bytes() for p in list_parts(folder)}


def test_conveyor_data_on_a_local_dask_cluster_matches_the_plain_run(tmp_path):
    """`conveyor data clean --runner dask`: the curate flow on a local Dask cluster (each shard a
    Prefect task on a Dask worker) writes what the plain stage function writes."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("PREFECT_API")}
    env["PREFECT_HOME"] = str(tmp_path / "prefect")
    settings = ["--set", "min_chars=100", "--profile", "test"]  # the test profile's ingest: parts of 100 records, 3 shards
    command = [sys.executable, "-m", "flows.cli", "data", "clean", str(REPO_ROOT / "tests" / "fixtures" / "tiny.jsonl")]
    plain = subprocess.run([*command, str(tmp_path / "plain"), *settings, "--workers", "1"], cwd=REPO_ROOT, env=env,
                           capture_output=True, text=True)
    assert plain.returncode == 0, plain.stderr[-2000:]
    on_dask = subprocess.run([*command, str(tmp_path / "dask"), *settings, "--workers", "2", "--runner", "dask"],
                             cwd=REPO_ROOT, env=env, capture_output=True, text=True)
    assert on_dask.returncode == 0, on_dask.stderr[-2000:]
    logged = on_dask.stdout + on_dask.stderr
    assert "Creating a new Dask cluster" in logged and "Task run 'clean-part-00002.jsonl' - Finished in state Completed" in logged

    assert parts_bytes(tmp_path / "dask") == parts_bytes(tmp_path / "plain") != {}
    stats = {name: json.loads((tmp_path / f"{name}.stats.json").read_text()) for name in ("plain", "dask")}
    for stage in ("ingest", "clean"):
        for key in ("records_in", "records_out", "dropped"):
            assert stats["dask"][stage][key] == stats["plain"][stage][key], (stage, key)
    assert stats["dask"]["clean"]["extra"]["shards"] == len(list_parts(tmp_path / "dask")) >= 3


def test_clean_killed_midway_resumes_to_the_uninterrupted_output(tmp_path):
    # 48 shards of the demo corpus, so the kill lands while most shards are still to do.
    params = tmp_path / "params.yaml"
    params.write_text(yaml.safe_dump({"data": {"ingest": {"paths": [CORPUS], "records_per_part": 40},
                                               "clean": {"min_chars": 100}}}))
    command = [sys.executable, "-m", "data"]
    assert subprocess.run([*command, "ingest", "--output", str(tmp_path / "ingest"), "--params", str(params)],
                          cwd=REPO_ROOT).returncode == 0
    clean = [*command, "clean", "--input", str(tmp_path / "ingest"), "--params", str(params), "--workers", "2"]
    assert subprocess.run([*clean, "--output", str(tmp_path / "reference")], cwd=REPO_ROOT).returncode == 0

    out = tmp_path / "out"
    markers = partial_dir(out) / ".done"
    # Its own session: the kill takes the stage and its worker processes, like a lost machine.
    process = subprocess.Popen([*clean, "--output", str(out)], cwd=REPO_ROOT, start_new_session=True)
    try:
        deadline = time.monotonic() + 120
        while len(list(markers.glob("*.json"))) < 3 and process.poll() is None and time.monotonic() < deadline:
            time.sleep(0.01)
        assert process.poll() is None, "clean finished before it could be killed: give it more shards"
        os.killpg(process.pid, signal.SIGKILL)
        process.wait()
    finally:
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGKILL)
    done_before = len(list(markers.glob("*.json")))
    assert not out.exists() and 3 <= done_before < 48

    assert subprocess.run([*clean, "--output", str(out)], cwd=REPO_ROOT).returncode == 0
    stats = json.loads((tmp_path / "out.stats.json").read_text())
    assert stats["extra"]["shards_resumed"] >= done_before
    assert parts_bytes(out) == parts_bytes(tmp_path / "reference")
    assert sorted(p.name for p in out.iterdir()) == sorted(p.name for p in (tmp_path / "reference").iterdir())


def test_the_curate_flow_chains_a_subset_of_stages(tmp_path):
    """`conveyor data dedup --runner thread` runs ingest then dedup: dedup reads ingest's output, as
    the plain run does (not clean's, which dvc.yaml gives it). Through the CLI in its own process:
    a flow run inside a pytest worker leaves Prefect's console handler on a stream pytest closes."""
    from data.stages import inputs

    assert inputs(["ingest", "dedup"]) == {"ingest": None, "dedup": "ingest"}
    assert inputs(["ingest", "anonymize", "validate", "split"])["split"] == "anonymize"
    env = {k: v for k, v in os.environ.items() if not k.startswith("PREFECT_API")}
    env["PREFECT_HOME"] = str(tmp_path / "prefect")
    out = tmp_path / "flow"
    done = subprocess.run([sys.executable, "-m", "flows.cli", "data", "dedup",
                           str(REPO_ROOT / "tests" / "fixtures" / "tiny.jsonl"), str(out), "--workers", "1",
                           "--runner", "thread"], cwd=REPO_ROOT, env=env, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr[-2000:]
    results = json.loads((tmp_path / "flow.stats.json").read_text())
    assert results["dedup"]["records_in"] == results["ingest"]["records_out"] > 0
    assert list_parts(out)
