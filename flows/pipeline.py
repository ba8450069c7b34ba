"""The `pipeline` flow: curate -> version -> train -> compress -> evaluate -> register -> package.

Thin orchestration: every task calls one stage package (or DVC, or MLflow) and passes paths and
small dicts, never models or datasets. The data stages run through `dvc repro`, so DVC decides
what is unchanged and skips it, exactly as it would for `dvc repro` typed by hand.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path

import yaml
from prefect import flow, get_run_logger, task
from prefect.runtime import flow_run

from core.atomic import atomic_write_text
from core.state import DVC_DATA_DIR, DVC_PARAMS_FILE, REPO_ROOT, State
from core.stats import StageStats
from data.stages import STAGES
from flows.config import PipelineConfig
from flows.summary import RunSummary, render_text

DATA_STAGES = list(STAGES)  # dvc.yaml's stages, in order
CURATED_DIR = DVC_DATA_DIR / STAGES["split"].output


class StageFailed(RuntimeError):
    pass


def stage_logs_to_prefect() -> None:
    """The stage packages log INFO lines (training's loss lines among them) through the stdlib.
    PREFECT_LOGGING_EXTRA_LOGGERS (State.service_env) gives their loggers Prefect's API handler, but
    leaves their level to the root logger's WARNING: without this, the UI would show warnings only."""
    import logging

    for name in filter(None, os.environ.get("PREFECT_LOGGING_EXTRA_LOGGERS", "").split(",")):
        stage_logger = logging.getLogger(name.strip())
        if stage_logger.level == logging.NOTSET or stage_logger.level > logging.INFO:
            stage_logger.setLevel(logging.INFO)


def _child_env() -> dict[str, str]:
    """The environment for subprocesses: this interpreter's bin first, so dvc.yaml's `python`
    is the one Conveyor runs in even when the venv is not activated."""
    env = dict(os.environ)
    env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}"
    return env


# DVC's advice after every stage that ran (4 lines, in the terminal and in each Prefect task's
# log): each run keeps its dvc.lock in its run folder, and version_dataset pushes.
DVC_ADVICE = ("To track the changes with git, run:", "git add ", "To enable auto staging, run:",
              "dvc config core.autostage true")


def _run_logged(cmd: list[str], logger, drop: tuple[str, ...] = ()) -> tuple[int, list[str]]:
    """Run `cmd`, logging each line of its output but those starting with one of `drop`; returns
    the exit code and every line."""
    from core.process import dies_with_this_process, stop_process

    # A killed run takes its DVC stage with it (a stage left running would race the next run).
    process = subprocess.Popen(cmd, cwd=REPO_ROOT, env=_child_env(), text=True, stdout=subprocess.PIPE,
                               stderr=subprocess.STDOUT, preexec_fn=dies_with_this_process())
    lines = []
    try:
        for line in process.stdout:
            line = line.rstrip()
            if line:
                lines.append(line)
                if not (drop and line.lstrip().startswith(drop)):
                    logger.info(line)
    except BaseException:
        stop_process(process)
        raise
    return process.wait(), lines


def write_params(config: PipelineConfig) -> None:
    """Write the resolved config where dvc.yaml reads its params; untouched if nothing changed,
    so DVC sees the same file."""
    text = yaml.safe_dump(config.to_yaml_dict(), sort_keys=True)
    if not DVC_PARAMS_FILE.exists() or DVC_PARAMS_FILE.read_text() != text:
        atomic_write_text(DVC_PARAMS_FILE, text)


def config_sha256(config: PipelineConfig) -> str:
    return hashlib.sha256(json.dumps(config.to_yaml_dict(), sort_keys=True).encode()).hexdigest()


def git_commit() -> str:
    """HEAD's commit; when tracked files differ from it, suffixed `-dirty.<hash of the diff>`, so
    two runs of the same uncommitted code have the same key and runs of different edits do not."""
    try:
        head = subprocess.run(["git", "rev-parse", "HEAD"], cwd=REPO_ROOT, capture_output=True,
                              text=True, check=True).stdout.strip()
        # dvc.lock is written by the run itself; a team that commits it must not look dirty.
        diff = subprocess.run(["git", "diff", "HEAD", "--", ".", ":!dvc.lock"], cwd=REPO_ROOT,
                              capture_output=True, check=True).stdout
    except (OSError, subprocess.CalledProcessError):
        return "unknown"
    return f"{head}-dirty.{hashlib.sha256(diff).hexdigest()[:12]}" if diff.strip() else head


@task(task_run_name="data-{stage}")
def data_stage(stage: str) -> dict:
    """`dvc repro --single-item <stage>` (flows.dvc_repro); returns the stage's stats and whether
    DVC skipped it (it is not among the stages DVC's `Repo.reproduce` returned)."""
    import tempfile

    logger = get_run_logger()
    with tempfile.TemporaryDirectory() as tmp:
        ran_file = Path(tmp) / "ran.json"
        code, lines = _run_logged([sys.executable, "-m", "flows.dvc_repro", stage, str(ran_file)], logger, DVC_ADVICE)
        if code != 0:
            tail = "\n".join(lines[-15:])
            raise StageFailed(f"data stage {stage!r} failed (dvc repro exit {code}):\n{tail}")
        skipped = stage not in json.loads(ran_file.read_text())
    stats = StageStats.read(DVC_DATA_DIR / STAGES[stage].output)  # <output>.stats.json
    return {"skipped": skipped, **stats.model_dump()}


@task(retries=2, retry_delay_seconds=2)
def version_dataset() -> str:
    """Push the curated dataset to the DVC remote; return its DVC hash (from dvc.lock)."""
    logger = get_run_logger()
    lock = yaml.safe_load((REPO_ROOT / "dvc.lock").read_text())
    outs = lock["stages"]["split"]["outs"]
    md5 = next(o["md5"] for o in outs if Path(o["path"]) == CURATED_DIR.relative_to(REPO_ROOT))
    code, lines = _run_logged([sys.executable, "-m", "dvc", "push", "split"], logger)
    if code != 0:
        raise StageFailed("dvc push failed:\n" + "\n".join(lines[-10:]))
    return md5


# A run that continues a killed one (flows.runs.adopt) finds some outputs already whole in its
# folder: each step below returns those instead of doing the work again. Every output is written
# atomically (a temporary name, then a rename), so "exists" means "finished".


@task
def train_tokenizer(config: PipelineConfig, run_dir: Path) -> Path:
    """Trained on the curated split, or the checkpoint's own when training.model.init_from is set."""
    from training import prepare_tokenizer

    if (run_dir / "tokenizer").is_dir():
        get_run_logger().info("tokenizer: kept from the interrupted run (%s)", run_dir / "tokenizer")
        return run_dir / "tokenizer"
    return prepare_tokenizer(config.training, CURATED_DIR / "train.jsonl", run_dir / "tokenizer")


@task
def train_model(config: PipelineConfig, tokenizer_dir: Path, run_dir: Path, mlflow_run_id: str) -> dict:
    """Training; from the last checkpoint of an interrupted run when there is one (the trainer
    resumes from `<output>.checkpoints/` by itself), not at all when its model is whole."""
    import training

    output = run_dir / "model" / "base"
    if (output / "result.json").is_file():
        get_run_logger().info("training: the interrupted run's model is complete (%s); not trained again", output)
        return training.TrainResult(model_dir=output, **json.loads((output / "result.json").read_text())
                                    ).model_dump(mode="json")
    result = training.run(config.training, CURATED_DIR, tokenizer_dir, output, env={"MLFLOW_RUN_ID": mlflow_run_id})
    return result.model_dump(mode="json")


@task
def compress(config: PipelineConfig, base_dir: Path, run_dir: Path) -> list[dict]:
    """Every variant of compression.variants, parents first (the order to register them in)."""
    import compression

    done = run_dir / "compression_variants.json"
    if done.is_file():
        get_run_logger().info("compression: the interrupted run's variants are complete; not built again")
        # Built in the interrupted run's folder, now this one's (flows.runs.adopt moved them).
        return [{**v, "path": str(run_dir / "model" / v["name"])} for v in json.loads(done.read_text())]
    variants = compression.run(config.compression, base_dir, run_dir / "model", CURATED_DIR, config.training)
    built = [variant.model_dump(mode="json") for variant in variants]
    atomic_write_text(done, json.dumps(built, indent=2))
    return built


# log_prints off: the flow's print capture (log_prints) would take the disassembly that dill (under
# lm-eval's datasets) prints into a swapped sys.stdout to read a function's globals, and log it line
# by line as "159 0 RESUME ..." instead of leaving it to dill.
@task(task_run_name="evaluate-{variant}", log_prints=False)
def evaluate(config: PipelineConfig, variant: str, model_dir: Path, run_dir: Path) -> dict:
    import evaluation
    from evaluation.canaries import CANARIES_FILE

    output = run_dir / "metrics" / f"{variant}.json"
    if output.is_file():
        get_run_logger().info("evaluate %s: measured by the interrupted run; kept", variant)
        return json.loads(output.read_text())
    canaries = DVC_DATA_DIR / STAGES["ingest"].output / CANARIES_FILE if config.canaries_on else None
    return evaluation.run(config.evaluation, model_dir, CURATED_DIR, output, canaries_file=canaries)


@task(log_prints=False)
def evaluate_champion(config: PipelineConfig, data_key: str, state: State, run_dir: Path) -> dict | None:
    """The current champion's metrics on this run's evaluation data, so challenger and champion are
    compared on the same text; cached by model version and data key (a champion is measured once per
    dataset, not once per run)."""
    from core import registry

    champion = registry.get_by_alias(config.model_name, "champion")
    if champion is None:
        return None
    cache = state.root / "eval_cache" / f"{config.model_name}-v{champion.version}-{data_key[:16]}.json"
    if cache.is_file():
        get_run_logger().info("champion v%s: metrics on this data from the cache (%s)", champion.version, cache)
        metrics = json.loads(cache.read_text())
    else:
        folder = registry.download(config.model_name, "champion", run_dir / "champion-eval")
        import evaluation

        metrics = evaluation.run(config.evaluation, folder, CURATED_DIR, cache)
        shutil.rmtree(run_dir / "champion-eval", ignore_errors=True)
    return {"version": champion.version, "variant": champion.lineage.get("variant"), "metrics": metrics}


def evaluation_data_key(config: PipelineConfig, dataset_md5: str) -> str:
    """What the champion's cached metrics depend on: the curated data, the task sets and reference
    text shipped in evaluation/tasks/, and how evaluation measures."""
    digest = hashlib.sha256(f"{dataset_md5}\n{config.evaluation.model_dump_json()}".encode())
    for path in sorted((REPO_ROOT / "evaluation" / "tasks").glob("*")):
        if path.is_file() and path.suffix in {".jsonl", ".txt", ".yaml"}:
            digest.update(path.name.encode() + path.read_bytes())
    return digest.hexdigest()


@task
def register(config: PipelineConfig, variant_dirs: dict[str, Path], variants: list[dict], metrics: dict[str, dict],
             champion: dict | None, card_context: dict, experiment_id: str) -> dict:
    """Decide, write every variant's card, register every variant, then move `champion` or
    `challenger` per the promotion gate (the move and its evidence go to the audit history)."""
    from core import registry
    from core.models import model_format
    from evaluation import card
    from evaluation.promotion import decide

    promotion = config.gates()
    decision = decide(metrics, champion["metrics"] if champion else None, promotion)
    lineage = card_context["run"]["lineage"]
    versions: dict[str, str] = {}
    # variant_dirs lists parents before children: each names its parent's version (a pruned then
    # quantized model points at the pruned one, which points at base).
    built = {v["name"]: v for v in variants}
    loss_curve = card.loss_curve(variant_dirs["base"] / "train_log.jsonl",
                                 Path(card_context["run"]["dir"]) / card.LOSS_CURVE_FILE)
    for variant in variant_dirs:
        if loss_curve:
            shutil.copy2(loss_curve, variant_dirs[variant] / card.LOSS_CURVE_FILE)
        card.write(variant_dirs[variant], card.render(
            model_name=config.model_name, variant=variant, fmt=model_format(variant_dirs[variant]),
            metrics=metrics[variant],
            run=card_context["run"], decision=decision.model_dump(), champion=champion,
            bounds={k: b.model_dump() for k, b in promotion.gates.items()}, chain=built.get(variant),
            training=card_context["training"], training_config=config.training.model_dump(mode="json"),
            stages=card_context["stages"], loss_curve_file=card.LOSS_CURVE_FILE if loss_curve else None))
        parent = versions[built[variant]["parent"]] if variant in built else None
        steps = " -> ".join(r["step"] for r in built[variant]["steps"]) if variant in built else None
        registered = registry.register_variant(
            config.model_name, variant_dirs[variant], variant, metrics[variant],
            {**lineage, "variant": variant, "parent_version": parent, "compression_steps": steps,
             "decision": (f"{decision.alias}: {decision.reason}" if variant == decision.chosen
                          else f"not chosen ({decision.chosen} was)")},
            run_id=lineage["mlflow_run_id"], experiment_id=experiment_id,
        )
        versions[variant] = registered.version
    version = versions[decision.chosen]
    evidence = {"gates": [check.model_dump() for check in decision.gates],
                "champion": {"version": champion["version"]} if champion else None,
                "mlflow_run_id": lineage["mlflow_run_id"], "variant": decision.chosen}
    registry.set_alias(config.model_name, decision.alias, version, decision.reason, action="gate", evidence=evidence)
    current = registry.get_by_alias(config.model_name, "champion")
    return {
        "model_name": config.model_name,
        "versions": versions,
        "chosen": decision.chosen,
        "alias": decision.alias,
        "version": version,
        "reason": decision.reason,
        "failed_bounds": [check.describe() for check in decision.failed],
        "champion_version": current.version if current else None,
        "previous_champion": champion,
    }


@task(retries=1)
def package(config: PipelineConfig, registry_result: dict, run_dir: Path) -> str:
    """Build a Bento from the registry's champion (whichever run produced it)."""
    from serving.package import package_champion

    return package_champion(config.model_name, config.serving, run_dir / "champion")


def _mlflow_params(config: PipelineConfig) -> dict[str, str]:
    flat: dict[str, str] = {}

    def walk(prefix: str, node) -> None:
        if isinstance(node, dict):
            for key, value in node.items():
                walk(f"{prefix}.{key}" if prefix else key, value)
        else:
            flat[prefix] = str(node)[:500]

    walk("", config.to_yaml_dict())
    return flat


@flow(name="pipeline", log_prints=True)
def pipeline(config: PipelineConfig = PipelineConfig(), force: bool = False, trigger: str = "") -> dict:
    """Corpus to served model. `config` is the whole pipeline config (a form in the Prefect UI);
    `trigger`: what started the run when an event did (the drift event, set by the deployment trigger).

    When the curated data, the config and the code are those of a completed run whose versions are
    still registered, nothing is trained or registered (the run says so); `force` trains anyway. A
    run killed before it finished is ended (flows.runs.recover) and continued by the next run of
    the same config, code and data."""
    import mlflow

    from core import registry
    from flows import runs

    started = time.perf_counter()
    state = State.from_env()
    state.activate()
    stage_logs_to_prefect()
    config.check_inputs()
    mlflow.set_tracking_uri(state.mlflow_tracking_uri)
    runs.recover(state.runs)  # runs whose process died: Crashed / KILLED, unfinished versions removed
    rebuild_bento = _apply_canary_decisions(config.model_name, state)
    run_name = f"{time.strftime('%Y%m%d-%H%M%S')}-{flow_run.get_name() or 'local'}"
    run_dir = state.runs / run_name
    run_dir.mkdir(parents=True, exist_ok=True)
    atomic_write_text(run_dir / "config.yaml", yaml.safe_dump(config.to_yaml_dict(), sort_keys=False))
    write_params(config)

    # One MLflow run spans the flow, a failed one included; tasks address it by id (MLflow's
    # active run is per thread).
    client = mlflow.MlflowClient()
    experiment = registry.experiment_id(f"conveyor/{config.model_name}", state.mlflow_artifacts_uri)
    run_id = client.create_run(experiment, run_name=run_name).info.run_id
    ledger = runs.RunLedger.start(run_dir, run_name, config.model_name, mlflow_run_id=run_id,
                                  prefect_flow_run_id=str(flow_run.get_id()) if flow_run.get_id() else None,
                                  key={"config_sha256": config_sha256(config), "git_commit": git_commit()},
                                  prefect_api=os.environ.get("PREFECT_API_URL"))
    if trigger:
        get_run_logger().info("started by %s", trigger)
        client.set_tag(run_id, "conveyor.trigger", trigger[:5000])
    try:
        # Curate: each stage waits for the previous one; DVC skips what did not change.
        stages = {}
        try:
            for stage in DATA_STAGES:
                stages[stage] = data_stage(stage)
        finally:
            _log_validation_artifacts(client, run_id)
        dataset_md5 = version_dataset()
        ledger.update(key={**ledger.record.key, "dataset_dvc_md5": dataset_md5})
        previous = None if force else runs.unchanged_since(state.runs, ledger.record.key, run_dir)
        if previous is not None:
            if rebuild_bento:  # nothing to train, but the Bento must stop routing to a decided canary
                get_run_logger().info("Bento %s built around the champion: its canary was decided",
                                      package(config, {}, run_dir))
            return _unchanged(client, run_id, ledger, previous, stages)
        adopted = runs.adoptable(state.runs, ledger.record.key, run_dir)
        committed = None
        if adopted is not None:
            committed = _adopt(client, run_id, ledger, *adopted)
        # With this lock, `dvc checkout` + `dvc pull` bring back exactly this run's data.
        shutil.copy2(REPO_ROOT / "dvc.lock", run_dir / "dvc.lock")
        lineage = {
            "dataset_dvc_md5": dataset_md5,
            "git_commit": ledger.record.key["git_commit"],
            "config_sha256": ledger.record.key["config_sha256"],
            "prefect_flow_run_id": str(flow_run.get_id()),
            "mlflow_run_id": run_id,
            "profile": config.profile,
        }
        _log_run_start(client, run_id, config, stages, lineage, run_dir)

        tokenizer_dir = train_tokenizer(config, run_dir)
        train_result = train_model(config, tokenizer_dir, run_dir, run_id)
        lineage["differential_privacy"] = _log_privacy(client, run_id, train_result.get("dp"))
        variant_dirs = {"base": Path(train_result["model_dir"])}
        variants = compress(config, variant_dirs["base"], run_dir)
        variant_dirs.update({v["name"]: Path(v["path"]) for v in variants})
        metrics = {name: evaluate(config, name, path, run_dir) for name, path in variant_dirs.items()}
        champion = evaluate_champion(config, evaluation_data_key(config, dataset_md5), state, run_dir)
        _log_evaluation(client, run_id, metrics, champion, run_dir)
        tradeoff = _log_compression_report(client, run_id, variants, metrics, run_dir)
        card_context = {"run": {"name": run_name, "profile": config.profile, "lineage": lineage, "dir": str(run_dir)},
                        "training": train_result, "stages": stages}
        if committed is None:
            registry_result = register(config, variant_dirs, variants, metrics, champion, card_context, experiment)
            # The alias moved: from here on these versions are this run's result, kept even if it dies.
            ledger.update(committed=True, registry=registry_result)
        else:
            registry_result = committed  # the interrupted run registered them; not again
        bento_tag = package(config, registry_result, run_dir)

        summary = RunSummary(
            run=run_name, run_dir=str(run_dir), profile=config.profile, stages=stages, training=train_result,
            variants=metrics, compression={"variants": variants, "tradeoff_plot": str(tradeoff)},
            registry=registry_result, lineage=lineage, bento=bento_tag,
            serving={"host": config.serving.host, "port": config.serving.port},
            resumed_from=ledger.record.resumed_from, seconds=round(time.perf_counter() - started, 1))
        # model_dump, then json's default=str: a numpy number in a metric is written, not refused.
        as_json = json.dumps(summary.model_dump(), indent=2, default=str)
        atomic_write_text(run_dir / "summary.json", as_json)
        client.log_artifact(run_id, str(run_dir / "summary.json"))
    except BaseException as exc:
        cancelled = ledger.stopped_by_cancel(exc)
        client.set_terminated(run_id, "KILLED" if cancelled else "FAILED")
        # Versions registered by a run that did not get to move its alias are not a result.
        removed = [] if ledger.record.committed else runs.undo_registration(ledger.record)
        if cancelled:
            from prefect.states import Cancelled

            ledger.finish("cancelled", note="cancel requested in Prefect" +
                          (f"; removed versions {removed}" if removed else ""))
            return Cancelled(message="cancelled on request; `conveyor run` with the same config continues it")
        ledger.finish("failed", note=f"{type(exc).__name__}" + (f"; removed versions {removed}" if removed else ""))
        raise
    client.set_terminated(run_id, "FINISHED")
    ledger.finish("completed")
    get_run_logger().info("\n%s", render_text(summary))
    _publish_prefect_artifacts(summary, experiment, state)
    return json.loads(as_json)


def _apply_canary_decisions(model_name: str, state: State) -> bool:
    """A rollout the server decided since the last run goes to the registry first, so this run's gate
    compares with the champion that is serving (serving.canary). Returns whether the champion's Bento
    must be built again (it still routes a share to the decided rollout)."""
    from core import registry
    from serving.canary import apply_decisions

    try:
        lines, rebuild = apply_decisions(model_name, state.request_log.parent)
    except registry.ReleaseError as exc:
        get_run_logger().warning("canary decision not applied: %s (`conveyor canary` says more)", exc)
        return False
    for line in lines:
        get_run_logger().info("%s", line)
    return rebuild


def _publish_prefect_artifacts(summary: RunSummary, experiment_id: str, state: State) -> None:
    """What the flow run's Artifacts tab shows: the variants table, the champion decision, and links
    to the MLflow run and the registered version (when MLflow is a server the browser can open)."""
    from prefect.artifacts import create_link_artifact, create_markdown_artifact, create_table_artifact

    registry_result, lineage = summary.registry, summary.lineage
    key = re.sub(r"[^a-z0-9-]+", "-", registry_result.model_name.lower()).strip("-")
    rows = []
    for variant, metrics in summary.variants.items():
        rows.append({"variant": variant, "version": registry_result.versions.get(variant, "-"),
                     **{name: round(metrics[name], 4) for name in ("bits_per_byte", "perplexity", "size_bytes",
                                                                   "decode_tokens_per_s_b1", "ttft_ms_b1")
                        if isinstance(metrics.get(name), (int, float))}})
    create_table_artifact(rows, key=f"{key}-variants",
                          description=f"Variants of run {summary.run} (registered as versions of "
                                      f"{registry_result.model_name})")
    tracking = state.mlflow_tracking_uri
    web = tracking.rstrip("/") if tracking.startswith(("http://", "https://")) else None
    # workflowType: MLflow 3's UI opens in its GenAI mode unless told; this is a training run.
    run_link = (f"{web}/#/experiments/{experiment_id}/runs/{lineage['mlflow_run_id']}?workflowType=machine_learning"
                if web else None)
    version_link = f"{web}/#/models/{registry_result.model_name}/versions/{registry_result.version}" if web else None
    failed = "".join(f"\n- bound not met: {bound}" for bound in registry_result.failed_bounds)
    run_ref = f"[{lineage['mlflow_run_id']}]({run_link})" if run_link else lineage["mlflow_run_id"]
    create_markdown_artifact(
        f"## {registry_result.model_name} v{registry_result.version} ({registry_result.chosen}) "
        f"-> `{registry_result.alias}`\n\n{registry_result.reason}{failed}\n\n"
        f"- champion now: v{registry_result.champion_version}\n"
        f"- MLflow run: {run_ref}\n"
        f"- model card: `conveyor card {registry_result.model_name}/{registry_result.version}`"
        + (f" ([registry page]({version_link}))" if version_link else "") + "\n"
        f"- Bento: `{summary.bento}` (`conveyor serve --profile {summary.profile}`)\n"
        f"- data: DVC `{lineage['dataset_dvc_md5']}`, git `{lineage['git_commit'][:12]}`\n",
        key=f"{key}-decision", description="The promotion gate's decision and where to look next")
    if run_link:
        create_link_artifact(run_link, link_text=f"MLflow run {summary.run}", key=f"{key}-mlflow-run",
                             description="This flow run's MLflow run: params, metrics, the loss curve, artifacts")


def _unchanged(client, run_id: str, ledger, previous: tuple[Path, dict], stages: dict) -> dict:
    """Same config, code and data as a completed run: say so, register nothing, build nothing."""
    run_dir, summary = previous
    registry_result = summary.get("registry") or {}
    message = (f"nothing changed since run {run_dir.name} (same config, code and curated data "
               f"{ledger.record.key['dataset_dvc_md5']}): no new version, no new Bento (that run registered "
               f"{registry_result.get('model_name')} v{registry_result.get('version')} as "
               f"{registry_result.get('alias')}). `conveyor run --force` trains anyway.")
    get_run_logger().info("%s", message)
    client.set_tag(run_id, "conveyor.unchanged_since", run_dir.name)
    client.set_terminated(run_id, "FINISHED")
    ledger.finish("unchanged", note=message)
    return {**summary, "stages": stages, "unchanged_since": run_dir.name, "message": message}


def _adopt(client, run_id: str, ledger, source: Path, record) -> dict | None:
    """Continue the killed run in `source`: take over its finished outputs and checkpoints. Returns
    its registry result when it had already committed (then this run registers nothing)."""
    from flows import runs

    moved = runs.adopt(source, ledger.run_dir)
    record.model_copy(update={"status": "adopted", "note": f"continued by run {ledger.run_dir.name}"}).write(source)
    ledger.update(resumed_from=source.name)
    client.set_tag(run_id, "conveyor.resumed_from", f"{source.name} (MLflow run {record.mlflow_run_id})")
    get_run_logger().info("continuing run %s (%s, same config, code and data): took over %s",
                          source.name, record.status, ", ".join(moved) or "nothing")
    if not record.committed:
        return None
    get_run_logger().info("registration: run %s had committed its versions before it stopped; not registered again",
                          source.name)
    return record.registry


def _log_privacy(client, run_id: str, dp: dict | None) -> str:
    """The privacy budget a DP run spent, as a metric and a tag of the run; the lineage line."""
    if not dp:
        return "off"
    client.log_metric(run_id, "dp/epsilon", dp["epsilon"])
    from training.privacy import describe

    line = describe(dp)
    client.set_tag(run_id, "conveyor.differential_privacy", line)
    return line


def _log_evaluation(client, run_id: str, metrics: dict[str, dict], champion: dict | None, run_dir: Path) -> None:
    """One metrics file for every variant (and the champion on the same data), and the comparison as
    an MLflow table, which the run's page in the UI shows."""
    rows = {name: m for name, m in metrics.items()}
    if champion:
        rows[f"champion v{champion['version']}"] = champion["metrics"]
    atomic_write_text(run_dir / "metrics.json", json.dumps(rows, indent=2))
    client.log_artifact(run_id, str(run_dir / "metrics.json"), "evaluation")
    columns = sorted({key for m in rows.values() for key in m})
    client.log_table(run_id, data={"model": list(rows), **{key: [m.get(key) for m in rows.values()] for key in columns}},
                     artifact_file="evaluation/comparison.json")
    _log_variant_runs(client, run_id, metrics)


def _log_variant_runs(client, run_id: str, metrics: dict[str, dict]) -> None:
    """One child run per variant, its metrics under the same names (`bits_per_byte`, ...), so MLflow's
    runs table and compare view line the variants up column by column (the parent run keeps them as
    `<variant>/<metric>` too)."""
    from mlflow.entities import Metric

    parent = client.get_run(run_id)
    now = int(time.time() * 1000)
    for variant, values in metrics.items():
        child = client.create_run(parent.info.experiment_id, run_name=f"{parent.info.run_name}/{variant}",
                                  tags={"mlflow.parentRunId": run_id, "conveyor.variant": variant})
        numeric = [Metric(key, float(value), now, 0) for key, value in values.items()
                   if isinstance(value, (int, float)) and not isinstance(value, bool)]
        for start in range(0, len(numeric), 1000):  # MLflow takes at most 1,000 metrics a batch
            client.log_batch(child.info.run_id, metrics=numeric[start:start + 1000])
        client.set_terminated(child.info.run_id, "FINISHED")


def _log_compression_report(client, run_id: str, variants: list[dict], metrics: dict[str, dict],
                            run_dir: Path) -> Path:
    """The trade-off plot (perplexity vs size vs decode speed) and the per-step costs, to MLflow."""
    from compression.report import tradeoff_plot

    plot = tradeoff_plot(metrics, {v["name"]: v["parent"] for v in variants}, run_dir / "compression_tradeoff.png")
    client.log_artifact(run_id, str(plot), "compression")
    steps = run_dir / "compression_steps.json"
    atomic_write_text(steps, json.dumps({v["name"]: v["steps"] for v in variants}, indent=2))
    client.log_artifact(run_id, str(steps), "compression")
    return plot


def _log_validation_artifacts(client, run_id: str) -> None:
    """The Great Expectations result and Data Docs of the last validation, passed or failed, and
    clean's report of what each rule removed (its examples redacted)."""
    from data.report import report_path
    from data.validate import data_docs_dir, gx_result_path

    if report_path(DVC_DATA_DIR / STAGES["clean"].output).is_file():
        client.log_artifact(run_id, str(report_path(DVC_DATA_DIR / STAGES["clean"].output)), "curation")
    output = DVC_DATA_DIR / STAGES["validate"].output
    if gx_result_path(output).is_file():
        client.log_artifact(run_id, str(gx_result_path(output)), "validation")
    if data_docs_dir(output).is_dir():
        client.log_artifacts(run_id, str(data_docs_dir(output)), "validation/data-docs")


def _log_run_start(client, run_id: str, config: PipelineConfig, stages: dict, lineage: dict,
                   run_dir: Path) -> None:
    from mlflow.entities import Metric, Param, RunTag

    now = int(time.time() * 1000)
    metrics = {}
    for stats in stages.values():
        metrics.update(StageStats.model_validate(stats).metrics())
    client.log_batch(
        run_id,
        metrics=[Metric(key, float(value), now, 0) for key, value in metrics.items()],
        tags=[RunTag(f"conveyor.{key}", str(value)) for key, value in lineage.items()],
    )
    params = [Param(key, value) for key, value in _mlflow_params(config).items()]
    for start in range(0, len(params), 100):  # MLflow takes at most 100 params a batch
        client.log_batch(run_id, params=params[start:start + 100])
    client.log_artifact(run_id, str(run_dir / "config.yaml"))
    client.log_artifact(run_id, str(run_dir / "dvc.lock"))
