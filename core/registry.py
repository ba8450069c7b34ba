"""The MLflow model registry as Conveyor uses it: variants as versions of one registered model,
lineage as version tags, `champion` / `challenger` aliases, and a history of alias moves (the
registry itself keeps none).

Each variant is an MLflow 3 LoggedModel inside the pipeline's MLflow run: its artifacts are the
model folder as is (safetensors or quantized state dict + tokenizer), which is cheaper than a
flavor's log_model and loads the same way everywhere (core.models.load_model).
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from pathlib import Path

LINEAGE_KEYS = (
    "dataset_dvc_md5",
    "git_commit",
    "config_sha256",
    "prefect_flow_run_id",
    "mlflow_run_id",
    "parent_version",
    "compression_steps",
    "variant",
    "profile",
)
TAG_PREFIX = "conveyor."
METRIC_PREFIX = "metric."


@dataclass(frozen=True)
class RegisteredVersion:
    name: str
    version: str
    tags: dict[str, str]

    @property
    def lineage(self) -> dict[str, str]:
        return {k[len(TAG_PREFIX):]: v for k, v in self.tags.items() if k.startswith(TAG_PREFIX)}

    @property
    def metrics(self) -> dict[str, float]:
        return {k[len(METRIC_PREFIX):]: float(v) for k, v in self.tags.items() if k.startswith(METRIC_PREFIX)}


def experiment_id(name: str, artifact_location: str) -> str:
    """The experiment's id, created with its artifacts under the state root if it is new."""
    import mlflow

    client = mlflow.MlflowClient()
    existing = client.get_experiment_by_name(name)
    if existing is not None:
        return existing.experiment_id
    return client.create_experiment(name, artifact_location=artifact_location)


def register_variant(
    model_name: str,
    model_dir: Path,
    variant: str,
    metrics: dict[str, float],
    lineage: dict[str, str],
    run_id: str,
    experiment_id: str,
) -> RegisteredVersion:
    """Log `model_dir` as a LoggedModel of MLflow run `run_id` and register it as a new version."""
    import mlflow

    client = mlflow.MlflowClient()
    logged = client.create_logged_model(experiment_id, name=variant, source_run_id=run_id,
                                        tags={"conveyor.variant": variant})
    try:
        client.log_model_artifacts(logged.model_id, str(model_dir))
    except BaseException:
        client.finalize_logged_model(logged.model_id, "FAILED")
        raise
    client.finalize_logged_model(logged.model_id, "READY")
    numeric = {k: float(v) for k, v in metrics.items() if isinstance(v, (int, float))}
    for key, value in numeric.items():
        client.log_metric(run_id, f"{variant}/{key}", value, model_id=logged.model_id)
    tags = {f"{TAG_PREFIX}{k}": str(v) for k, v in lineage.items() if v is not None}
    tags.update({f"{METRIC_PREFIX}{k}": repr(v) for k, v in numeric.items()})
    version = mlflow.register_model(f"models:/{logged.model_id}", model_name, tags=tags)
    return RegisteredVersion(model_name, str(version.version), tags)


def get_version(model_name: str, version: str) -> RegisteredVersion:
    import mlflow

    mv = mlflow.MlflowClient().get_model_version(model_name, version)
    return RegisteredVersion(model_name, str(mv.version), dict(mv.tags))


def get_by_alias(model_name: str, alias: str) -> RegisteredVersion | None:
    """The version under `alias`, or None when the model or the alias does not exist."""
    import mlflow
    from mlflow.exceptions import MlflowException

    try:
        mv = mlflow.MlflowClient().get_model_version_by_alias(model_name, alias)
    except MlflowException:
        return None
    return RegisteredVersion(model_name, str(mv.version), dict(mv.tags))


def set_alias(model_name: str, alias: str, version: str, reason: str, history_file: Path) -> None:
    """Move `alias` to `version` and append the move to our own history (JSON lines)."""
    import mlflow

    previous = get_by_alias(model_name, alias)
    mlflow.MlflowClient().set_registered_model_alias(model_name, alias, version)
    history_file.parent.mkdir(parents=True, exist_ok=True)
    with history_file.open("a", encoding="utf-8") as handle:
        handle.write(json.dumps({
            "time": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
            "model": model_name,
            "alias": alias,
            "version": version,
            "previous_version": previous.version if previous else None,
            "reason": reason,
        }) + "\n")


def download(model_name: str, alias: str, destination: Path) -> Path:
    import mlflow

    destination.mkdir(parents=True, exist_ok=True)
    return Path(mlflow.artifacts.download_artifacts(
        artifact_uri=f"models:/{model_name}@{alias}", dst_path=str(destination)))
