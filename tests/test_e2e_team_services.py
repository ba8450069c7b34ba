"""`conveyor up --backend postgres`: a real PostgreSQL (Debian's package) holding MLflow's tracking
and registry database and Prefect's database, and a real S3 (SeaweedFS) holding MLflow's artifacts
and the DVC remote, started and stopped by the CLI in a fresh copy of the checkout: a model version
registered through the MLflow server lands in PostgreSQL and its files in the bucket, a flow run in
Prefect's database, `dvc push` in the bucket; `down` leaves nothing running."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import psutil
import pytest

from checkout_support import checkout_env, make_checkout, run_conveyor
from flows.services import free_port

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(1200)]


def _psql(port: int, database: str, query: str) -> str:
    from flows.services import PG_ROLE, postgres_bindir

    return subprocess.run([str(postgres_bindir() / "psql"), "-h", "127.0.0.1", "-p", str(port), "-U", PG_ROLE,
                           "-d", database, "-At", "-c", query], capture_output=True, text=True, check=True).stdout


def _s3(port: int):
    import boto3

    from flows.services import S3_CREDENTIALS

    return boto3.client("s3", endpoint_url=f"http://127.0.0.1:{port}", region_name="us-east-1",
                        aws_access_key_id=S3_CREDENTIALS["AWS_ACCESS_KEY_ID"],
                        aws_secret_access_key=S3_CREDENTIALS["AWS_SECRET_ACCESS_KEY"])


def _bucket(port: int) -> list[str]:
    from flows.services import S3_BUCKET

    return [item["Key"] for page in _s3(port).get_paginator("list_objects_v2").paginate(Bucket=S3_BUCKET)
            for item in page.get("Contents", [])]


def _retrain_from_a_growing_prefix(checkout: Path, ports: dict) -> None:
    """`conveyor deploy` with data.ingest.paths an s3:// prefix; `pipeline/scheduled-retrain` run
    three times by the worker (as its cron would): it trains; nothing new landed, so it says so and
    registers nothing; a new part landed, so it trains and registers again."""
    from flows.services import S3_BUCKET, S3_CREDENTIALS

    lines = (Path(__file__).parent / "fixtures" / "tiny.jsonl").read_text().splitlines(keepends=True)
    s3 = _s3(ports["s3"])
    s3.put_object(Bucket=S3_BUCKET, Key="incoming/part-000.jsonl", Body="".join(lines[:240]).encode())
    # What a user sets for data on S3; the worker's runs inherit it.
    env = {**S3_CREDENTIALS, "AWS_DEFAULT_REGION": "us-east-1"}
    settings = [f"data.ingest.paths=[s3://{S3_BUCKET}/incoming/]",
                f"data.ingest.s3_endpoint_url=http://127.0.0.1:{ports['s3']}",
                "training.train.max_steps=5", "compression.variants={}"]
    deploy = run_conveyor(checkout, "deploy", "--profile", "test", *[a for s in settings for a in ("--set", s)], env=env)
    assert "worker on this machine polls" in deploy.stdout, deploy.stdout

    def scheduled_run() -> dict:
        watch = subprocess.run([str(Path(sys.executable).parent / "prefect"), "deployment", "run",
                                "pipeline/scheduled-retrain", "--watch", "--watch-timeout", "600"],
                               cwd=checkout, env={**checkout_env(checkout), **env,
                                                  "PREFECT_API_URL": f"http://127.0.0.1:{ports['prefect']}/api"},
                               capture_output=True, text=True, timeout=660)
        assert watch.returncode == 0, (watch.stdout + watch.stderr)[-4000:]
        flow_run_id = next(line.split("UUID:")[1].strip() for line in watch.stdout.splitlines() if "UUID:" in line)
        records = [json.loads(p.read_text()) for p in (checkout / ".conveyor" / "runs").glob("*/run.json")]
        return next(r for r in records if r.get("prefect_flow_run_id") == flow_run_id)

    def versions() -> list[str]:
        return _psql(ports["postgres"], "mlflow",
                     "SELECT version FROM model_versions WHERE name = 'conveyor-lm-test' ORDER BY version").split()

    first = scheduled_run()
    assert first["status"] == "completed" and versions() == ["1"]
    unchanged = scheduled_run()
    assert unchanged["status"] == "unchanged" and versions() == ["1"]
    assert unchanged["key"]["dataset_dvc_md5"] == first["key"]["dataset_dvc_md5"]
    s3.put_object(Bucket=S3_BUCKET, Key="incoming/part-001.jsonl", Body="".join(lines[240:]).encode())
    grown = scheduled_run()
    assert grown["status"] == "completed" and versions() == ["1", "2"]
    assert grown["key"]["dataset_dvc_md5"] != first["key"]["dataset_dvc_md5"]
    # Each snapshot is a DVC version in the S3 remote.
    remote = [key for key in _bucket(ports["s3"]) if key.startswith("dvc/")]
    assert any(key.endswith(".dir") for key in remote), remote


def test_up_with_postgres_keeps_mlflow_and_prefect_in_postgres(tmp_path_factory):
    checkout = make_checkout(tmp_path_factory.mktemp("checkout"))
    if os.geteuid() == 0:  # PostgreSQL then runs as user postgres, which must reach the state root
        for folder in [checkout, *checkout.parents]:
            folder.chmod(folder.stat().st_mode | 0o001)
    ports = {"postgres": free_port(), "prefect": free_port(), "mlflow": free_port(), "s3": free_port()}
    try:
        up = run_conveyor(checkout, "up", "--backend", "postgres", "--postgres-port", str(ports["postgres"]),
                          "--prefect-port", str(ports["prefect"]), "--mlflow-port", str(ports["mlflow"]),
                          "--s3-port", str(ports["s3"]))
        assert "created databases mlflow, prefect" in up.stdout and up.stdout.count("healthy in") == 4, up.stdout

        # A version registered through the MLflow server, as the pipeline does it.
        script = (
            "import json, sys, mlflow\n"
            "sys.path.insert(0, 'tests')\n"
            "from model_fixtures import make_tiny_model_folder\n"
            "from pathlib import Path\n"
            "from core import registry\n"
            "folder = make_tiny_model_folder(Path('.conveyor/probe-model'))\n"
            "exp = registry.experiment_id('conveyor/pg-probe', None)\n"
            "run = mlflow.MlflowClient().create_run(exp).info.run_id\n"
            "v = registry.register_variant('pg-probe', folder, 'base', {'bits_per_byte': 1.5}, {'variant': 'base'},\n"
            "                              run_id=run, experiment_id=exp)\n"
            "registry.set_alias('pg-probe', 'champion', v.version, 'probe')\n"
            "print(json.dumps({'version': v.version, 'champion': registry.get_by_alias('pg-probe', 'champion').version}))\n")
        env = {**checkout_env(checkout), "MLFLOW_TRACKING_URI": f"http://127.0.0.1:{ports['mlflow']}"}
        result = subprocess.run([sys.executable, "-c", script], cwd=checkout, env=env, capture_output=True, text=True)
        assert result.returncode == 0, result.stderr[-3000:]
        assert json.loads(result.stdout.strip().splitlines()[-1]) == {"version": "1", "champion": "1"}
        assert _psql(ports["postgres"], "mlflow", "SELECT name, version FROM model_versions").split() == ["pg-probe|1"]
        assert "champion" in _psql(ports["postgres"], "mlflow", "SELECT alias FROM registered_model_aliases")
        # Prefect's server keeps its records there too.
        probe = subprocess.run([sys.executable, "-c", "from prefect import flow\n"
                                "@flow(name='pg-probe')\ndef probe():\n    return 1\nprobe()\n"],
                               cwd=checkout, env={**checkout_env(checkout),
                                                  "PREFECT_API_URL": f"http://127.0.0.1:{ports['prefect']}/api"},
                               capture_output=True, text=True)
        assert probe.returncode == 0, probe.stderr[-3000:]
        assert _psql(ports["postgres"], "prefect", "SELECT name FROM flow").split() == ["pg-probe"]
        assert _psql(ports["postgres"], "prefect", "SELECT state_type FROM flow_run").split() == ["COMPLETED"]
        # The model's files went through the server into the S3 bucket, not to a local folder.
        bucket = _bucket(ports["s3"])
        assert any(key.startswith("mlflow/") and key.endswith("model.safetensors") for key in bucket), bucket
        assert not (checkout / ".conveyor" / "mlflow" / "artifacts").exists()
        # DVC pushes to the S3 remote while the services are up.
        (checkout / "probe.txt").write_text("a dataset stand-in for the remote\n")
        for args in (["add", "probe.txt"], ["push", "probe.txt.dvc"]):
            dvc = subprocess.run([sys.executable, "-m", "dvc", *args], cwd=checkout, env=checkout_env(checkout),
                                 capture_output=True, text=True)
            assert dvc.returncode == 0, dvc.stderr[-2000:]
        assert any(key.startswith("dvc/") for key in _bucket(ports["s3"]))
        _retrain_from_a_growing_prefix(checkout, ports)
        status = run_conveyor(checkout, "status", "--profile", "test")
        assert "postgres" in status.stdout and "s3" in status.stdout
    finally:
        down = subprocess.run([sys.executable, "-m", "flows.cli", "down"], cwd=checkout, env=checkout_env(checkout),
                              capture_output=True, text=True, timeout=120)
    assert "postgres" in down.stdout and "s3" in down.stdout
    assert "conveyor-s3" not in (checkout / ".dvc" / "config.local").read_text()  # the committed remote again
    left = [p for p in psutil.process_iter(["cmdline"]) if str(checkout) in " ".join(p.info["cmdline"] or [])]
    assert not left, [" ".join(p.info["cmdline"])[:200] for p in left]
