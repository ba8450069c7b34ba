"""The `drift` flow: is it time to retrain? (`conveyor drift`, and deployment `drift/check`)

Curates the source as it is now (the pipeline's own data stages, so DVC skips what did not change),
compares what arrived with the champion's training data, the curation drop rates with the
champion's run, and the served prompts' lengths (evaluation.drift). The report goes to Prefect (a
markdown artifact) and MLflow (a `drift` run beside the pipeline's runs, with the HTML report).
Past a threshold it emits the Prefect event `conveyor.drift.detected` for the model; the
`pipeline/scheduled-retrain` deployment has a trigger on that event (flows.deploy), so a drift
found on a Prefect server starts retraining with the event in the run's `trigger` parameter.
"""

from __future__ import annotations

import json
import time
from pathlib import Path

from prefect import flow, get_run_logger

from core.atomic import atomic_write_text
from core.state import REPO_ROOT, State
from flows.config import PipelineConfig
from flows.pipeline import CURATED_DIR, DATA_STAGES, data_stage, stage_logs_to_prefect, write_params

DRIFT_EVENT = "conveyor.drift.detected"


def model_resource(model_name: str) -> dict[str, str]:
    """The Prefect event resource a model's drift events are about (the retrain trigger matches it)."""
    return {"prefect.resource.id": f"conveyor.model.{model_name}", "prefect.resource.name": model_name}


class DriftError(RuntimeError):
    """Nothing to compare against; the message says what to do."""


def dvc_cache_file(dir_md5: str, relpath: str) -> Path:
    """A file of a DVC-tracked folder, from the local cache (layout: dvc.org/doc/user-guide/
    project-structure/internal-files#structure-of-the-cache-directory)."""
    import configparser

    parser = configparser.ConfigParser()
    parser.read(REPO_ROOT / ".dvc" / "config")
    cache = (REPO_ROOT / ".dvc" / parser.get("cache", "dir", fallback="cache")).resolve()

    def path(md5: str) -> Path:
        return cache / "files" / "md5" / md5[:2] / md5[2:]

    listing = path(dir_md5)
    if not listing.is_file():
        raise DriftError(f"the champion's training data (DVC {dir_md5}) is not in the local DVC cache "
                         f"({cache}): `dvc pull` it, or run the pipeline once on this machine")
    entry = next((e for e in json.loads(listing.read_text()) if e["relpath"] == relpath), None)
    if entry is None or not path(entry["md5"]).is_file():
        raise DriftError(f"{relpath} of DVC {dir_md5} is not in the local DVC cache: `dvc pull` it")
    return path(entry["md5"])


def champion_reference(config: PipelineConfig, state: State):
    """The champion's registry entry and its training data (train.jsonl in the DVC cache), or a
    DriftError saying what to do. `conveyor drift` asks first, so a user sees that one line
    rather than a failed flow run's traceback."""
    import mlflow

    from core import registry

    mlflow.set_tracking_uri(state.mlflow_tracking_uri)
    champion = registry.get_by_alias(config.model_name, "champion")
    if champion is None:
        raise DriftError(f"{config.model_name} has no champion to compare with: run the pipeline first "
                         f"(`conveyor run --profile {config.profile}`)")
    return champion, dvc_cache_file(champion.lineage["dataset_dvc_md5"], "train.jsonl")


@flow(name="drift", log_prints=True)
def drift(config: PipelineConfig = PipelineConfig()) -> dict:
    """Compare new data and traffic with the champion's; emit `conveyor.drift.detected` past the thresholds."""
    import mlflow
    from prefect.artifacts import create_markdown_artifact
    from prefect.events import emit_event

    from core import registry
    from evaluation.drift import evaluate_drift

    logger = get_run_logger()
    state = State.from_env()
    state.activate()
    stage_logs_to_prefect()
    config.check_inputs()
    write_params(config)
    champion, reference = champion_reference(config, state)
    stages = {stage: data_stage(stage) for stage in DATA_STAGES}
    client = mlflow.MlflowClient()
    champion_metrics = client.get_run(champion.lineage["mlflow_run_id"]).data.metrics
    output = state.root / "drift" / time.strftime("%Y%m%d-%H%M%S")
    report = evaluate_drift(reference, CURATED_DIR / "train.jsonl", config.drift, output, stages_now=stages,
                            champion_metrics=champion_metrics, request_log=state.request_log)
    atomic_write_text(output / "drift.json", report.model_dump_json(indent=2))
    line = f"{config.model_name} v{champion.version} (champion): {report.summary()}"
    logger.info("%s", line)

    experiment = registry.experiment_id(f"conveyor/{config.model_name}", state.mlflow_artifacts_uri)
    run = client.create_run(experiment, run_name=f"drift-{output.name}",
                            tags={"conveyor.kind": "drift", "conveyor.champion_version": champion.version})
    metrics = {"drift/detected": float(report.drifted), "drift/new_documents": float(report.new_documents)}
    if report.text:
        metrics["drift/text_auc"] = report.text["columns"]["text"]["score"]
        metrics["drift/column_share"] = report.text["share"]
    if report.traffic.get("p_value") is not None:
        metrics["drift/traffic_p_value"] = report.traffic["p_value"]
    for key, value in metrics.items():
        client.log_metric(run.info.run_id, key, value)
    client.log_artifact(run.info.run_id, str(output / "drift.json"), "drift")
    if report.report_html:
        client.log_artifact(run.info.run_id, report.report_html, "drift")
    client.set_terminated(run.info.run_id, "FINISHED")

    create_markdown_artifact(
        f"## {line}\n\n" + "".join(f"- {reason}\n" for reason in report.reasons)
        + f"\nReport: `{report.report_html or output / 'drift.json'}` (MLflow run `{run.info.run_id}`)\n",
        key="conveyor-drift", description="Drift of new data and traffic against the champion's")
    if report.drifted:
        emit_event(DRIFT_EVENT, resource=model_resource(config.model_name),
                   payload={"summary": line, "reasons": report.reasons, "champion_version": champion.version,
                            "new_documents": report.new_documents, "report": str(output / "drift.json")})
        logger.info("emitted %s: a deployment trigger on it (pipeline/scheduled-retrain) starts retraining",
                    DRIFT_EVENT)
    return {**report.model_dump(), "champion_version": champion.version, "line": line, "output": str(output),
            "stages": {name: {"skipped": s["skipped"]} for name, s in stages.items()}}

