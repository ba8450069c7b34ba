"""The MLflow model registry as Conveyor uses it: variants as versions of one registered model,
lineage as version tags, `champion` / `challenger` aliases, and the audit history of alias moves
(the registry itself keeps none): one run of the `conveyor-audit` experiment per move, in the same
tracking server, so every machine that shares the registry shares its history. Promotion by hand
and rollback (`promote`, `rollback`) check the target before anything moves.

Each variant is an MLflow 3 LoggedModel inside the pipeline's MLflow run: its artifacts are the
model folder as is (safetensors or quantized state dict + tokenizer), which is cheaper than a
flavor's log_model and loads the same way everywhere (core.models.load_model).
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from pathlib import Path

TAG_PREFIX = "conveyor."


@dataclass(frozen=True)
class RegisteredVersion:
    name: str
    version: str
    tags: dict[str, str]
    model_id: str | None = None  # the LoggedModel registered as this version

    @property
    def lineage(self) -> dict[str, str]:
        return {k[len(TAG_PREFIX):]: v for k, v in self.tags.items() if k.startswith(TAG_PREFIX)}

    @property
    def metrics(self) -> dict[str, float]:
        """The evaluation metrics logged to this version's LoggedModel (as `<variant>/<metric>`, so
        that MLflow's compare view lines the variants up), by metric name."""
        import mlflow

        if self.model_id is None:
            return {}
        logged = mlflow.MlflowClient().get_logged_model(self.model_id)
        prefix = f"{self.lineage.get('variant')}/"
        return {m.key.removeprefix(prefix): m.value for m in logged.metrics or []}


# MLflow 3's UI opens an experiment on the view of its kind; "finetuning" is one of the kinds it
# maps to the machine-learning (training runs) view rather than the GenAI traces view.
EXPERIMENT_KIND = {"mlflow.experimentKind": "finetuning"}


def experiment_id(name: str, artifact_location: str) -> str:
    """The experiment's id, created with its artifacts under the state root if it is new."""
    import mlflow

    client = mlflow.MlflowClient()
    existing = client.get_experiment_by_name(name)
    if existing is not None:
        if "mlflow.experimentKind" not in existing.tags:  # made before Conveyor set the kind
            client.set_experiment_tag(existing.experiment_id, *next(iter(EXPERIMENT_KIND.items())))
        return existing.experiment_id
    return client.create_experiment(name, artifact_location=artifact_location, tags=EXPERIMENT_KIND)


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
    version = mlflow.register_model(f"models:/{logged.model_id}", model_name, tags=tags)
    return RegisteredVersion(model_name, str(version.version), tags, logged.model_id)


def _logged_model_id(mv) -> str | None:
    """The LoggedModel a version was registered from: MLflow 3.17's registry returns model_id
    empty for versions registered from `models:/<id>`, whose id is in the source."""
    if mv.model_id:
        return mv.model_id
    return mv.source.removeprefix("models:/") if (mv.source or "").startswith("models:/m-") else None


def get_version(model_name: str, version: str) -> RegisteredVersion:
    import mlflow

    mv = mlflow.MlflowClient().get_model_version(model_name, version)
    return RegisteredVersion(model_name, str(mv.version), dict(mv.tags), _logged_model_id(mv))


def get_by_alias(model_name: str, alias: str) -> RegisteredVersion | None:
    """The version under `alias`, or None when the model or the alias does not exist."""
    import mlflow
    from mlflow.exceptions import MlflowException

    try:
        mv = mlflow.MlflowClient().get_model_version_by_alias(model_name, alias)
    except MlflowException:
        return None
    return RegisteredVersion(model_name, str(mv.version), dict(mv.tags), _logged_model_id(mv))


AUDIT_EXPERIMENT = "conveyor-audit"
AUDIT_PREFIX = "conveyor.audit."


class ReleaseError(RuntimeError):
    """A promotion or rollback that cannot be done; nothing was moved. The message says why."""


@dataclass(frozen=True)
class AliasMove:
    """One move of an alias, as the audit experiment records it."""

    time: str
    model: str
    alias: str
    version: str
    previous_version: str | None
    action: str  # "gate" (a pipeline run's decision), "promote" or "rollback" (by hand), "recover",
    # "canary-finish" (a rollout decided; the alias stays), "rollback" also for a failed canary
    actor: str  # user@host
    reason: str
    evidence: dict


def actor() -> str:
    import getpass
    import socket

    try:
        user = getpass.getuser()
    except (KeyError, OSError):
        user = "unknown"
    return f"{user}@{socket.gethostname()}"


def set_alias(model_name: str, alias: str, version: str, reason: str, action: str = "gate",
              evidence: dict | None = None) -> AliasMove:
    """Move `alias` to `version` and record the move in the registry's own tracking server: one run
    of the `conveyor-audit` experiment per move, so every machine sharing the server sees the same
    history (the registry itself keeps none)."""
    import mlflow

    client = mlflow.MlflowClient()
    previous = get_by_alias(model_name, alias)
    move = AliasMove(time=time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()), model=model_name, alias=alias,
                     version=str(version), previous_version=previous.version if previous else None,
                     action=action, actor=actor(), reason=reason, evidence=evidence or {})
    client.set_registered_model_alias(model_name, alias, version)
    try:
        _record(client, move)
    except BaseException:
        # A move the history does not show must not stay: put the alias back.
        if previous is None:
            client.delete_registered_model_alias(model_name, alias)
        else:
            client.set_registered_model_alias(model_name, alias, previous.version)
        raise
    return move


def _record(client, move: AliasMove) -> None:
    from mlflow.entities import RunTag

    existing = client.get_experiment_by_name(AUDIT_EXPERIMENT)
    experiment = existing.experiment_id if existing else client.create_experiment(AUDIT_EXPERIMENT)
    run = client.create_run(experiment, run_name=f"{move.model}@{move.alias} -> v{move.version}",
                            tags={"mlflow.user": move.actor.split("@")[0]})
    evidence = json.dumps(move.evidence, sort_keys=True, default=str)
    if len(evidence) > 7900:  # MLflow's limit on a run tag is 8,000 characters
        evidence = json.dumps({"truncated": evidence[:7800]})
    fields = {"model": move.model, "alias": move.alias, "version": move.version,
              "previous_version": move.previous_version or "", "action": move.action, "actor": move.actor,
              "reason": move.reason[:7900], "time": move.time, "time_ns": str(time.time_ns()),
              "evidence": evidence}
    client.log_batch(run.info.run_id, tags=[RunTag(AUDIT_PREFIX + key, value) for key, value in fields.items()])
    client.set_terminated(run.info.run_id, "FINISHED")


def history(model_name: str) -> list[AliasMove]:
    """Every recorded alias move of `model_name`, oldest first."""
    import mlflow

    client = mlflow.MlflowClient()
    experiment = client.get_experiment_by_name(AUDIT_EXPERIMENT)
    if experiment is None:
        return []
    runs, token = [], None
    while True:
        page = client.search_runs([experiment.experiment_id],
                                  filter_string=f"tags.`{AUDIT_PREFIX}model` = '{model_name}'",
                                  max_results=1000, page_token=token)
        runs += page
        token = page.token
        if not token:
            break
    moves = []
    for run in sorted(runs, key=lambda r: int(r.data.tags.get(AUDIT_PREFIX + "time_ns", "0"))):
        tags = {k[len(AUDIT_PREFIX):]: v for k, v in run.data.tags.items() if k.startswith(AUDIT_PREFIX)}
        moves.append(AliasMove(time=tags["time"], model=tags["model"], alias=tags["alias"], version=tags["version"],
                               previous_version=tags["previous_version"] or None, action=tags["action"],
                               actor=tags["actor"], reason=tags["reason"], evidence=json.loads(tags["evidence"])))
    return moves


def champion_lineup(model_name: str) -> list[str]:
    """The champions in order, the current one last: each promotion pushes a version, each rollback
    pops one, so a second rollback goes one step further back instead of undoing the first."""
    stack: list[str] = []
    for move in history(model_name):
        if move.alias != "champion":
            continue
        if move.action in ("rollback", "recover"):  # recover: a dead run's move put back
            while stack and stack[-1] != move.version:
                stack.pop()
            if not stack:
                stack.append(move.version)
        elif not stack or stack[-1] != move.version:
            stack.append(move.version)
    current = get_by_alias(model_name, "champion")
    if current is not None and (not stack or stack[-1] != current.version):
        stack.append(current.version)  # moved outside Conveyor: still the one serving
    return stack


def check_servable(model_name: str, version: str) -> RegisteredVersion:
    """The version, if it exists and its files are in the artifact store; else ReleaseError."""
    import mlflow
    from mlflow.exceptions import MlflowException

    try:
        registered = get_version(model_name, str(version))
    except MlflowException:
        raise ReleaseError(f"{model_name} has no version {version} (see `conveyor history {model_name}`)") from None
    try:
        files = {item.path.rsplit("/", 1)[-1] for item in
                 mlflow.artifacts.list_artifacts(artifact_uri=f"models:/{model_name}/{version}")}
    except (MlflowException, OSError) as exc:
        raise ReleaseError(f"{model_name} version {version}: its files cannot be listed ({exc})") from None
    missing = {"config.json", "conveyor.json"} - files
    if missing:
        raise ReleaseError(f"{model_name} version {version}: files missing from the artifact store "
                           f"({', '.join(sorted(missing))}); it cannot be served")
    return registered


def promote(model_name: str, version: str, reason: str) -> AliasMove:
    """Make `version` the champion by hand (the gate is not asked)."""
    if not reason.strip():
        raise ReleaseError("give a --reason: the history keeps why every champion was chosen")
    check_servable(model_name, version)
    current = get_by_alias(model_name, "champion")
    if current is not None and current.version == str(version):
        raise ReleaseError(f"{model_name} version {version} is already the champion")
    return set_alias(model_name, "champion", str(version), reason, action="promote")


def rollback(model_name: str, reason: str = "", evidence: dict | None = None) -> AliasMove:
    """Champion back to the previous champion."""
    lineup = champion_lineup(model_name)
    if not lineup:
        raise ReleaseError(f"{model_name} has no champion to roll back")
    if len(lineup) < 2:
        raise ReleaseError(f"{model_name} version {lineup[-1]} is the first champion: there is no earlier one "
                           "to roll back to")
    target = lineup[-2]
    check_servable(model_name, target)
    return set_alias(model_name, "champion", target, reason or f"rollback from version {lineup[-1]}",
                     action="rollback", evidence={"from": lineup[-1], "lineup": lineup, **(evidence or {})})


def download(model_name: str, alias: str, destination: Path) -> Path:
    """The files of `model_name`@`alias` (or of version `alias` when it is a number)."""
    import mlflow

    destination.mkdir(parents=True, exist_ok=True)
    ref = f"{model_name}/{alias}" if str(alias).isdigit() else f"{model_name}@{alias}"
    return Path(mlflow.artifacts.download_artifacts(artifact_uri=f"models:/{ref}", dst_path=str(destination)))
