"""Scale-out: the `curate` flow on a local Dask cluster gives map_shards' output, and a stage
killed with SIGKILL midway, run again, resumes to the output of an uninterrupted run."""

import json
import os
import signal
import subprocess
import sys
import time

import yaml

from core.state import REPO_ROOT
from data import ingest
from data.config import AnonymizeConfig, CleanConfig, DataConfig, IngestConfig
from data.shards import list_parts, map_shards, partial_dir
from flows.curate import processor_factory, run_curate

CORPUS = str(REPO_ROOT / "data" / "corpus" / "demo.jsonl.gz")


def parts_bytes(folder):
    return {p.name: p.read_bytes() for p in list_parts(folder)}


def test_curate_on_a_local_dask_cluster_matches_map_shards_with_one_worker(tmp_path, monkeypatch):
    monkeypatch.setenv("PREFECT_HOME", str(tmp_path / "prefect"))
    monkeypatch.delenv("PREFECT_API_URL", raising=False)
    # NER off: this test is about where shards run, not about spaCy's speed on 7M characters.
    config = DataConfig(ingest=IngestConfig(paths=[CORPUS], records_per_part=400), clean=CleanConfig(min_chars=100),
                        anonymize=AnonymizeConfig(ner=False))
    results = run_curate(config, tmp_path / "flow", runner="dask", workers=2,
                         stages=["ingest", "clean", "dedup", "anonymize"])
    assert results["clean"]["extra"]["shards"] == 5

    ingest.run(config.ingest, None, tmp_path / "ingest")
    clean = map_shards("clean", processor_factory("clean", config), tmp_path / "ingest", tmp_path / "clean", 1)
    assert parts_bytes(tmp_path / "flow" / "clean") == parts_bytes(tmp_path / "clean")
    assert (results["clean"]["records_out"], results["clean"]["dropped"]) == (clean.records_out, clean.dropped)
    assert results["anonymize"]["records_in"] == results["dedup"]["records_out"] > 0


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
