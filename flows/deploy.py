"""Deployments of the pipeline flow on a Prefect work pool, run by process workers.

`pipeline/manual` runs on demand (the Prefect UI shows its parameter, the whole pipeline config,
as a form); `pipeline/scheduled-retrain` runs on the profile's cron and on drift; `drift/check`
compares new data and traffic with the champion's. `conveyor deploy` registers them on the
process work pool `conveyor` and starts a worker on this machine; `conveyor worker` on another
machine (with a checkout of the project and the same PREFECT_API_URL) adds one there. A flow run
is a fresh process that imports `flows.pipeline` in the worker's checkout, so replacing the
deployments never stops a run under way.
"""

from __future__ import annotations

DEPLOYMENTS = ["pipeline/manual", "pipeline/scheduled-retrain", "drift/check"]  # flow/deployment
WORK_POOL = "conveyor"
# One run at a time per worker: runs on one machine share its DVC workspace (.conveyor/data,
# dvc.lock), so a scheduled run that fires during a manual one waits for it.
WORKER_LIMIT = 1
HEARTBEAT_SECONDS = 30  # PREFECT_FLOWS_HEARTBEAT_FREQUENCY of the flow runs the workers start


def build_deployments(profile: str, overrides: list[str]):
    from prefect.events.schemas.deployment_triggers import DeploymentEventTrigger
    from prefect.schedules import Cron
    from prefect.types.entrypoint import EntrypointType

    from flows.config import load_config
    from flows.drift import DRIFT_EVENT, drift, model_resource
    from flows.pipeline import pipeline

    config = load_config(profile, overrides)
    parameters = {"config": config.to_yaml_dict()}
    # Imported by module path on the worker (flows.pipeline.pipeline), from its own checkout: no
    # path of this machine in the deployment. Flow runs beat, so that Prefect can tell a dead one.
    common = {"entrypoint_type": EntrypointType.MODULE_PATH,
              "job_variables": {"env": {"PREFECT_FLOWS_HEARTBEAT_FREQUENCY": str(HEARTBEAT_SECONDS)}}}
    manual = pipeline.to_deployment(
        name="manual", parameters=parameters, tags=["conveyor", config.profile],
        description=f"Corpus to served model, profile {config.profile}. Edit the config in the form.", **common,
    )
    # A drift found by drift/check (or `conveyor drift` against this server) retrains at once; the
    # run's `trigger` parameter names the event.
    on_drift = DeploymentEventTrigger(
        name=f"retrain {config.model_name} on drift", expect={DRIFT_EVENT},
        match={"prefect.resource.id": model_resource(config.model_name)["prefect.resource.id"]},
        parameters={"trigger": "{{ event.event }} {{ event.id }}: {{ event.payload.summary }}"},
    )
    scheduled = pipeline.to_deployment(
        name="scheduled-retrain", parameters=parameters,
        schedule=Cron(config.schedule.cron, timezone=config.schedule.timezone), triggers=[on_drift],
        tags=["conveyor", config.profile, "scheduled"],
        description=f"Retraining on cron {config.schedule.cron!r} ({config.schedule.timezone}) and on "
                    f"{DRIFT_EVENT} for {config.model_name}.", **common,
    )
    check = drift.to_deployment(
        name="check", parameters=parameters, tags=["conveyor", config.profile, "drift"],
        schedule=Cron(config.schedule.drift_cron, timezone=config.schedule.timezone) if config.schedule.drift_cron
        else None,
        description="New data and traffic against the champion's; past the thresholds, starts retraining.", **common,
    )
    return manual, scheduled, check


def ensure_work_pool(name: str = WORK_POOL) -> bool:
    """The process work pool the deployments go to, with the process worker's job template (as
    `prefect work-pool create --type process` makes it); returns whether it was created now.

    A pool made without a template gets one written by the first worker that connects, inside
    the server's own transaction; on the embedded SQLite server that write once waited on the
    database lock for 60 s and took the server's API down with it (a CI run). A pool an older
    Conveyor made without one gets it here."""
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.actions import WorkPoolCreate, WorkPoolUpdate
    from prefect.exceptions import ObjectAlreadyExists, ObjectNotFound
    from prefect.workers.process import ProcessWorker

    template = ProcessWorker.get_default_base_job_template()
    with get_client(sync_client=True) as client:
        try:
            pool = client.read_work_pool(name)
        except ObjectNotFound:
            pass
        else:
            if pool.type != "process":
                raise RuntimeError(f"work pool {name!r} is of type {pool.type!r}; Conveyor's runs need a "
                                   "process pool: pass --pool with another name")
            if not pool.base_job_template:
                client.update_work_pool(name, WorkPoolUpdate(base_job_template=template))
            return False
        try:
            client.create_work_pool(WorkPoolCreate(name=name, type="process", base_job_template=template,
                                                   description="Conveyor's pipeline runs (conveyor worker)"))
        except ObjectAlreadyExists:  # created meanwhile by a worker starting
            return False
    return True


def register(profile: str, overrides: list[str], pool: str = WORK_POOL) -> list[str]:
    """Register (or update) the deployments on `pool`; returns their flow/deployment names."""
    ensure_work_pool(pool)
    ensure_zombie_automation()
    for deployment in build_deployments(profile, overrides):
        deployment.apply(work_pool_name=pool)
    return list(DEPLOYMENTS)


def runs_under_way() -> list[str]:
    """`<flow run name> (<flow>/<deployment>)` of each run of Conveyor's deployments not finished
    yet (pending or running)."""
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import (DeploymentFilter, DeploymentFilterName, FlowRunFilter,
                                                FlowRunFilterState, FlowRunFilterStateType)
    from prefect.client.schemas.objects import StateType

    names = {name.split("/", 1)[1]: name for name in DEPLOYMENTS}
    with get_client(sync_client=True) as client:
        deployments = {d.id: d.name for d in client.read_deployments(
            deployment_filter=DeploymentFilter(name=DeploymentFilterName(any_=list(names))))}
        runs = client.read_flow_runs(
            flow_run_filter=FlowRunFilter(state=FlowRunFilterState(type=FlowRunFilterStateType(
                any_=[StateType.PENDING, StateType.RUNNING]))),
            deployment_filter=DeploymentFilter(name=DeploymentFilterName(any_=list(names))))
    return [f"{run.name} ({names[deployments[run.deployment_id]]})" for run in runs if run.deployment_id in deployments]


ZOMBIE_AUTOMATION = "conveyor: crash flow runs that stopped beating"


def ensure_zombie_automation() -> bool:
    """Prefect's own answer to a flow run whose machine died (docs: "detect zombie flows"): flow runs
    of deployments beat every HEARTBEAT_SECONDS; when one goes quiet for 3 beats without ending, this
    automation sets it Crashed. (A `conveyor run` from a terminal is covered by flows.runs.recover.)
    Returns whether it was created now."""
    from datetime import timedelta

    from prefect.automations import Automation
    from prefect.client.schemas.objects import StateType
    from prefect.events.actions import ChangeFlowRunState
    from prefect.events.schemas.automations import EventTrigger, Posture
    from prefect.events.schemas.events import ResourceSpecification

    try:
        Automation.read(name=ZOMBIE_AUTOMATION)
        return False
    except ValueError:  # not there yet
        pass
    Automation(
        name=ZOMBIE_AUTOMATION,
        description="Marks a flow run Crashed when its heartbeats stop before it ends (Conveyor deploy).",
        trigger=EventTrigger(
            after={"prefect.flow-run.heartbeat"},
            expect={"prefect.flow-run.heartbeat", "prefect.flow-run.Completed", "prefect.flow-run.Failed",
                    "prefect.flow-run.Cancelled", "prefect.flow-run.Crashed"},
            match=ResourceSpecification({"prefect.resource.id": ["prefect.flow-run.*"]}),
            for_each={"prefect.resource.id"},
            posture=Posture.Proactive,
            threshold=1,
            within=timedelta(seconds=3 * HEARTBEAT_SECONDS),
        ),
        actions=[ChangeFlowRunState(state=StateType.CRASHED,
                                    message=f"no heartbeat for {3 * HEARTBEAT_SECONDS} s: its process or machine died")],
    ).create()
    return True


def worker_command(pool: str = WORK_POOL, limit: int = WORKER_LIMIT) -> list[str]:
    """`prefect worker start` for this machine, named after it (the Prefect UI lists a pool's workers)."""
    import socket
    import sys
    import uuid
    from pathlib import Path

    return [str(Path(sys.executable).parent / "prefect"), "worker", "start", "--pool", pool, "--type", "process",
            "--limit", str(limit), "--name", f"{socket.gethostname()}-{uuid.uuid4().hex[:6]}"]


def worker_env() -> dict[str, str]:
    """What a worker passes on to its flow runs, besides its own environment."""
    import os

    env = {k: os.environ[k] for k in ("PREFECT_API_URL", "MLFLOW_TRACKING_URI") if k in os.environ}
    return {**env, "PREFECT_FLOWS_HEARTBEAT_FREQUENCY": str(HEARTBEAT_SECONDS), "PREFECT_WORKER_QUERY_SECONDS": "5"}
