"""`conveyor up`, `deploy`, `worker`, a deployment run, `status`, `down`, in a fresh copy of the
checkout, through the real CLI: a Prefect server and an MLflow server on free 127.0.0.1 ports, the
deployments on a process work pool with a worker in the background, a second worker as another
machine would start it, `prefect deployment run pipeline/manual --watch` on the tiny profile, the
model registered through the MLflow server, and nothing left after `down`.
"""

from __future__ import annotations

import json
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path

import psutil
import pytest

from checkout_support import checkout_env, make_checkout, run_conveyor
from flows.services import free_port

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(900)]

CRON = "15 4 * * 1"  # given with --set, so the test sees it travel from the config to the schedule
FIRST_CRON = "45 3 * * 2"  # the first deploy's; the one during the run replaces it
MODEL = "conveyor-lm-test"  # model_name in configs/test.yaml
CONFIG_SECTIONS = {"data", "training", "compression", "evaluation", "promotion", "serving", "schedule"}




@pytest.fixture(scope="module")
def checkout(tmp_path_factory) -> Path:
    return make_checkout(tmp_path_factory.mktemp("checkout"))








def _port_open(port: int) -> bool:
    with socket.socket() as sock:
        sock.settimeout(1)
        return sock.connect_ex(("127.0.0.1", port)) == 0


def _get(url: str) -> dict | list:
    with urllib.request.urlopen(url, timeout=30) as response:
        return json.loads(response.read())


def _post(url: str, body: dict) -> dict | list:
    request = urllib.request.Request(url, data=json.dumps(body).encode(), method="POST",
                                     headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(request, timeout=30) as response:
        return json.loads(response.read())


def _service_pids(checkout: Path) -> list[int]:
    return [json.loads(p.read_text())["pid"] for p in (checkout / ".conveyor" / "services").glob("*.json")]


def _left_behind(checkout: Path, pids: list[int]) -> list[str]:
    """Processes still running that `up`/`deploy` started: recorded pids, and anything whose
    environment names this checkout's state root (flow runs, training ranks, server workers)."""
    state_dir = str(checkout / ".conveyor")
    left = []
    for process in psutil.process_iter(["pid", "cmdline"]):
        try:
            if process.status() == psutil.STATUS_ZOMBIE:
                continue
            if process.pid in pids or process.environ().get("CONVEYOR_STATE_DIR") == state_dir:
                left.append(f"{process.pid} {' '.join(process.info['cmdline'] or [])[:200]}")
        except psutil.Error:
            continue
    return left


@pytest.fixture(scope="module")
def services(checkout: Path):
    ports = {"prefect": free_port(), "mlflow": free_port()}
    try:
        up = run_conveyor(checkout, "up", "--prefect-port", str(ports["prefect"]), "--mlflow-port", str(ports["mlflow"]))
        assert "healthy in" in up.stdout
        deploy = run_conveyor(checkout, "deploy", "--profile", "test", "--set", f"schedule.cron={FIRST_CRON}")
        assert "on work pool 'conveyor'" in deploy.stdout and "worker on this machine polls" in deploy.stdout
        yield {**ports, "api": f"http://127.0.0.1:{ports['prefect']}/api",
               "mlflow_url": f"http://127.0.0.1:{ports['mlflow']}", "deploy": deploy}
    finally:
        subprocess.run([sys.executable, "-m", "flows.cli", "down"], cwd=checkout, env=checkout_env(checkout),
                       capture_output=True, timeout=120)


def _online_workers(api: str) -> list[str]:
    return [w["name"] for w in _post(f"{api}/work_pools/conveyor/workers/filter", {}) if w["status"] == "ONLINE"]


@pytest.fixture(scope="module")
def second_worker(checkout: Path, services) -> dict:
    """`conveyor worker`, as a second machine runs it (foreground, pointed at the server): it comes
    online in the pool beside deploy's; stopped again before runs start (it shares this checkout)."""
    env = {**checkout_env(checkout), "PREFECT_API_URL": services["api"]}
    before = _online_workers(services["api"])
    worker = subprocess.Popen([sys.executable, "-m", "flows.cli", "worker"], cwd=checkout, env=env,
                              stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, start_new_session=True)
    try:
        deadline = time.monotonic() + 120
        while len(online := _online_workers(services["api"])) < 2:
            assert worker.poll() is None, worker.stdout.read()[-3000:]
            assert time.monotonic() < deadline, "the second worker did not come online"
            time.sleep(1)
    finally:
        worker.terminate()
        try:
            output, _ = worker.communicate(timeout=60)
        except subprocess.TimeoutExpired:
            # Prefect's worker turns a SIGTERM into a SIGINT to itself, which on a loaded machine it
            # once sat on for over 60 s (a CI run); a second SIGTERM kills it, as Prefect documents
            # (processutils.setup_signal_handlers_worker). A user's second Ctrl-C does the same.
            worker.terminate()
            output, _ = worker.communicate(timeout=60)
    return {"before": before, "online": online, "output": output}


def test_a_second_machine_adds_a_worker_to_the_pool(services, second_worker):
    assert len(second_worker["before"]) == 1 and len(second_worker["online"]) == 2
    assert second_worker["before"][0].startswith(socket.gethostname() + "-")
    assert f"Worker '{second_worker['online'][0]}' started" in second_worker["output"] or \
        f"Worker '{second_worker['online'][1]}' started" in second_worker["output"]
    pool = _get(f"{services['api']}/work_pools/conveyor")
    assert pool["type"] == "process"


@pytest.fixture(scope="module")
def run_during_redeploy(checkout: Path, services, second_worker) -> dict:
    """`prefect deployment run 'pipeline/manual' --watch`, as a user types it; while the worker runs
    it, `conveyor deploy` with another cron: the deployments change, the run goes on."""
    env = {**checkout_env(checkout), "PREFECT_API_URL": services["api"],
           "PREFECT_HOME": str(checkout / ".conveyor" / "prefect")}
    watch = subprocess.Popen([str(Path(sys.executable).parent / "prefect"), "deployment", "run", "pipeline/manual",
                              "--watch", "--watch-timeout", "600"],
                             cwd=checkout, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    deadline = time.monotonic() + 300
    while not (running := _post(f"{services['api']}/flow_runs/filter",
                                {"flow_runs": {"state": {"type": {"any_": ["RUNNING"]}}}})):
        assert watch.poll() is None and time.monotonic() < deadline, "the manual run did not start"
        time.sleep(1)
    redeploy = run_conveyor(checkout, "deploy", "--profile", "test", "--set", f"schedule.cron={CRON}")
    still = _get(f"{services['api']}/flow_runs/{running[0]['id']}")["state"]["type"]
    output, _ = watch.communicate(timeout=660)
    assert watch.returncode == 0, output[-6000:]
    run_id = next(line.split("UUID:")[1].strip() for line in output.splitlines() if "UUID:" in line)
    return {"flow_run": _get(f"{services['api']}/flow_runs/{run_id}"), "redeploy": redeploy,
            "state_after_redeploy": still}


def test_deploying_again_during_a_run_updates_the_deployments_and_leaves_the_run_alone(run_during_redeploy, services):
    redeploy = run_during_redeploy["redeploy"]
    assert "on work pool 'conveyor'" in redeploy.stdout and "worker on this machine already running" in redeploy.stdout
    assert "1 run(s) of these deployments under way, left alone" in redeploy.stdout
    assert f"{run_during_redeploy['flow_run']['name']} (pipeline/manual)" in redeploy.stdout
    assert run_during_redeploy["state_after_redeploy"] == "RUNNING"
    assert run_during_redeploy["flow_run"]["state"]["type"] == "COMPLETED"
    assert run_during_redeploy["flow_run"]["work_pool_name"] == "conveyor"
    scheduled = _get(f"{services['api']}/deployments/name/pipeline/scheduled-retrain")
    assert [s["schedule"]["cron"] for s in scheduled["schedules"]] == [CRON]  # the second deploy's


@pytest.fixture(scope="module")
def manual_run(run_during_redeploy) -> dict:
    return run_during_redeploy["flow_run"]


def test_manual_deployment_run_completes(manual_run):
    assert manual_run["state"]["type"] == "COMPLETED", manual_run["state"]
    # The deployment's parameters (the test profile's config) reached the flow.
    assert manual_run["parameters"]["config"]["profile"] == "test"
    assert manual_run["parameters"]["config"]["model_name"] == MODEL


def test_deploy_installs_prefects_zombie_detection(services, manual_run):
    """Flow runs of the deployments beat; Prefect's automation crashes one that goes quiet."""
    automations = _post(f"{services['api']}/automations/filter", {})
    zombie = [a for a in automations if a["name"].startswith("conveyor: crash flow runs")]
    assert len(zombie) == 1 and zombie[0]["enabled"]  # the second deploy did not add another
    assert zombie[0]["trigger"]["posture"] == "Proactive"
    assert zombie[0]["actions"][0]["state"] == "CRASHED"
    events = _post(f"{services['api']}/events/filter", {"filter": {"event": {"name": ["prefect.flow-run.heartbeat"]}}})
    assert any(e["resource"]["prefect.resource.id"] == f"prefect.flow-run.{manual_run['id']}" for e in events["events"])


def test_the_flow_run_publishes_its_results_and_links_to_mlflow(services, manual_run):
    artifacts = {a["key"]: a for a in _post(f"{services['api']}/artifacts/filter",
                                             {"artifacts": {"flow_run_id": {"any_": [manual_run["id"]]}}})}
    assert artifacts[f"{MODEL}-variants"]["type"] == "table"
    assert "champion" in artifacts[f"{MODEL}-decision"]["data"] or "challenger" in artifacts[f"{MODEL}-decision"]["data"]
    link = artifacts[f"{MODEL}-mlflow-run"]["data"]  # a markdown link: [text](url)
    link = link[link.index("](") + 2:-1]
    assert link.startswith(services["mlflow_url"] + "/#/experiments/") and link.endswith("?workflowType=machine_learning")
    with urllib.request.urlopen(link.split("#")[0], timeout=30) as response:  # the MLflow UI answers
        assert response.status == 200


@pytest.fixture(scope="module")
def drift_run(checkout: Path, services, manual_run) -> dict:
    """`conveyor drift` after log lines land beside the corpus (the quality filter drops them, so the
    clean stage's drop share jumps): the drift event, then the retraining it starts."""
    import random

    rng = random.Random(1)
    logs = checkout / "incoming-logs.jsonl"
    logs.write_text("".join(json.dumps({"id": f"log-{i}", "text": "\n".join(
        f"2026-11-{rng.randint(1, 28):02d} ERROR worker-{rng.randint(1, 64)} job {rng.randint(1000, 99999)} failed "
        f"after {rng.randint(1, 900)} ms" for _ in range(rng.randint(4, 20)))}) + "\n" for i in range(80)))
    result = run_conveyor(checkout, "drift", "--profile", "test", "--set",
                          f"data.ingest.paths=[tests/fixtures/tiny.jsonl,{logs.name}]")
    deadline = time.monotonic() + 180
    while True:
        retrains = _post(f"{services['api']}/flow_runs/filter",
                         {"deployments": {"name": {"any_": ["scheduled-retrain"]}}})
        started = [run for run in retrains if run["parameters"].get("trigger")]
        if started or time.monotonic() > deadline:
            break
        time.sleep(2)
    return {"cli": result, "retrains": started}


def test_drift_emits_the_event_and_the_trigger_starts_retraining_with_it(drift_run):
    output = drift_run["cli"].stdout
    assert "drift: clean drops" in output and "trigger starts retraining" in output, output[-3000:]
    assert len(drift_run["retrains"]) == 1, "the deployment trigger started no retraining"
    trigger = drift_run["retrains"][0]["parameters"]["trigger"]
    assert trigger.startswith("conveyor.drift.detected ") and "clean drops" in trigger
    assert drift_run["retrains"][0]["parameters"]["config"]["profile"] == "test"  # the deployment's own config


@pytest.fixture(scope="module")
def cancelled_retrain(checkout: Path, services, drift_run) -> dict:
    """Cancel (as the UI's Cancel button does) the retraining the drift started, once its worker
    runs it: the worker stops the flow run's process, whose children die with it."""
    run = drift_run["retrains"][0]
    deadline = time.monotonic() + 300
    while _get(f"{services['api']}/flow_runs/{run['id']}")["state"]["type"] != "RUNNING":
        assert time.monotonic() < deadline, "the retraining did not start"
        time.sleep(1)
    # This checkout's processes only: the other pytest worker may be training at the same time.
    while not [p for p in psutil.process_iter() if _cmdline_has(p, "training.train") and _ours(p, checkout)]:
        assert time.monotonic() < deadline, "the retraining never reached training"
        time.sleep(1)
    _post(f"{services['api']}/flow_runs/{run['id']}/set_state",
          {"state": {"type": "CANCELLING", "name": "Cancelling"}, "force": True})
    while (state := _get(f"{services['api']}/flow_runs/{run['id']}")["state"])["type"] != "CANCELLED":
        assert time.monotonic() < deadline, f"the cancel did not end the run: {state}"
        time.sleep(1)
    time.sleep(5)
    left = [" ".join(p.cmdline()[:5]) for p in psutil.process_iter()
            if (_cmdline_has(p, "training.train") or _cmdline_has(p, "prefect.engine")) and _ours(p, checkout)]
    records = [json.loads(p.read_text()) for p in (checkout / ".conveyor" / "runs").glob("*/run.json")]
    return {"state": state, "left": left, "record": next(r for r in records if r.get("prefect_flow_run_id") == run["id"])}


def _mlflow_run_status(mlflow_url: str, run_id: str) -> str:
    return _get(f"{mlflow_url}/api/2.0/mlflow/runs/get?run_id={run_id}")["run"]["info"]["status"]


def _ours(process, checkout: Path) -> bool:
    """Whether `process` runs this checkout's code (the CLI, its worker, their flow runs and ranks
    all have the checkout on PYTHONPATH)."""
    try:
        return str(checkout) in process.environ().get("PYTHONPATH", "")
    except psutil.Error:
        return False


def _cmdline_has(process, text: str) -> bool:
    try:
        return text in " ".join(process.cmdline())
    except psutil.Error:
        return False


def test_a_cancelled_deployment_run_stops_with_its_processes(services, cancelled_retrain):
    assert cancelled_retrain["left"] == []
    assert cancelled_retrain["record"]["status"] == "cancelled"  # continued by the next run of its config
    assert _mlflow_run_status(services["mlflow_url"], cancelled_retrain["record"]["mlflow_run_id"]) == "KILLED"


def test_scheduled_retrain_has_the_configured_cron(services):
    deployment = _get(f"{services['api']}/deployments/name/pipeline/scheduled-retrain")
    assert [s["schedule"]["cron"] for s in deployment["schedules"]] == [CRON]
    assert deployment["schedules"][0]["schedule"]["timezone"] == "UTC"
    assert deployment["schedules"][0]["active"]


def test_ui_calls_this_server(services):
    """The UI's API address comes from /ui-settings: it must be this port, not Prefect's 4200."""
    ui = _get(f"http://127.0.0.1:{services['prefect']}/ui-settings")
    assert ui["api_url"] == services["api"]


def test_manual_parameters_render_as_a_form(services):
    """The UI builds the run form from parameter_openapi_schema: `config` must reference the
    PipelineConfig model, whose sections are nested models with typed fields."""
    deployment = _get(f"{services['api']}/deployments/name/pipeline/manual")
    assert not deployment["schedules"]
    schema = deployment["parameter_openapi_schema"]
    assert schema["properties"]["config"]["$ref"] == "#/definitions/PipelineConfig"
    pipeline_config = schema["definitions"]["PipelineConfig"]
    assert CONFIG_SECTIONS <= set(pipeline_config["properties"])
    train = schema["definitions"]["TrainConfig"]["properties"]
    assert train["lr"]["type"] == "number" and train["max_steps"]["type"] == "integer"
    assert deployment["parameters"]["config"]["profile"] == "test"


def test_model_registered_through_the_mlflow_server(checkout, services, manual_run):
    base = services["mlflow_url"]
    with urllib.request.urlopen(f"{base}/health", timeout=10) as response:
        assert response.status == 200
    query = urllib.parse.urlencode({"filter": f"name='{MODEL}'"})
    versions = _get(f"{base}/api/2.0/mlflow/model-versions/search?{query}")["model_versions"]
    assert versions, "no model version in the registry"
    run_ids = {v["run_id"] for v in versions}
    run = _get(f"{base}/api/2.0/mlflow/runs/get?run_id={run_ids.pop()}")["run"]
    tags = {t["key"]: t["value"] for t in run["data"]["tags"]}
    assert tags["conveyor.prefect_flow_run_id"] == manual_run["id"]
    # The flow run talked to the server (not to the SQLite file the server also uses).
    log = (checkout / ".conveyor" / "services" / "mlflow.log").read_text()
    assert "/api/2.0/mlflow/runs/create" in log


def test_status_lists_services_and_champion(checkout, services, manual_run):
    out = run_conveyor(checkout, "status", "--profile", "test").stdout
    for name in ("prefect", "mlflow", "worker"):
        assert any(line.startswith(name) and " up " in line for line in out.splitlines()), out
    assert services["mlflow_url"] in out
    assert f"champion     {MODEL} v" in out


def test_down_stops_everything(checkout, services):
    pids = _service_pids(checkout)
    assert len(pids) == 3
    out = run_conveyor(checkout, "down").stdout
    assert "worker" in out and "prefect" in out and "mlflow" in out
    assert not _port_open(services["prefect"]) and not _port_open(services["mlflow"])
    assert _left_behind(checkout, pids) == []
    assert "nothing was running" in run_conveyor(checkout, "down").stdout
