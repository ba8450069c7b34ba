"""Deployments of the pipeline flow, served by this process until it is stopped.

`pipeline/manual` runs on demand (the Prefect UI shows its parameter, the whole pipeline config,
as a form); `pipeline/scheduled-retrain` runs on the profile's cron. `conveyor deploy` starts this
module in the background against the Prefect server that `conveyor up` started.

    python -m flows.deploy --profile demo [--set key=value ...]
"""

from __future__ import annotations

import argparse

from flows.config import load_config

DEPLOYMENTS = ["pipeline/manual", "pipeline/scheduled-retrain", "drift/check"]  # flow/deployment


def build_deployments(profile: str, overrides: list[str]):
    from prefect.events.schemas.deployment_triggers import DeploymentEventTrigger
    from prefect.schedules import Cron

    from flows.drift import DRIFT_EVENT, drift, model_resource
    from flows.pipeline import pipeline

    config = load_config(profile, overrides)
    parameters = {"config": config.to_yaml_dict()}
    manual = pipeline.to_deployment(
        name="manual", parameters=parameters, tags=["conveyor", config.profile],
        description=f"Corpus to served model, profile {config.profile}. Edit the config in the form.",
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
                    f"{DRIFT_EVENT} for {config.model_name}.",
    )
    check = drift.to_deployment(
        name="check", parameters=parameters, tags=["conveyor", config.profile, "drift"],
        schedule=Cron(config.schedule.drift_cron, timezone=config.schedule.timezone) if config.schedule.drift_cron
        else None,
        description="New data and traffic against the champion's; past the thresholds, starts retraining.",
    )
    return manual, scheduled, check


ZOMBIE_AUTOMATION = "conveyor: crash flow runs that stopped beating"
HEARTBEAT_SECONDS = 30  # PREFECT_FLOWS_HEARTBEAT_FREQUENCY of the process serving the deployments


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


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--profile", default="demo")
    parser.add_argument("--set", dest="overrides", action="append", default=[])
    args = parser.parse_args()
    from prefect import serve

    from core.state import State

    State.from_env().activate()
    ensure_zombie_automation()
    # One run at a time: runs share the DVC workspace (.conveyor/data, dvc.lock), so a scheduled
    # run that fires during a manual one waits for it.
    serve(*build_deployments(args.profile, args.overrides), limit=1)


if __name__ == "__main__":
    main()
