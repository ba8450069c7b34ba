"""`conveyor`: run the pipeline, manage local services, deploy, serve, inspect.

Heavy libraries (prefect, mlflow, torch, bentoml) are imported inside the commands that use them,
so `conveyor --help` stays instant.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Annotated, Optional

import typer

from core.config import ConfigError
from data.stages import CURATION

app = typer.Typer(add_completion=False, no_args_is_help=True,
                  help="Conveyor: a raw text corpus to a served, versioned language model.")

ProfileOpt = Annotated[str, typer.Option("--profile", "-p", help="profile name in configs/ or a YAML path")]
SetOpt = Annotated[Optional[list[str]], typer.Option("--set", help="override, e.g. training.train.lr=3e-4")]


def _fail(message: str, code: int = 2) -> None:
    typer.secho(message, fg=typer.colors.RED, err=True)
    raise typer.Exit(code)


def _load(profile: str, overrides: list[str] | None):
    from flows.config import load_config

    try:
        config = load_config(profile, overrides or [])
        config.check_inputs()
    except ConfigError as exc:
        _fail(str(exc))
    return config


def _activate():
    """Export the state root's environment, pointing clients at services `conveyor up` started."""
    from core.state import State
    from flows.services import client_env

    state = State.from_env()
    state.activate()
    os.environ.update(client_env(state))
    return state


@app.command()
def run(profile: ProfileOpt = "demo", set_: SetOpt = None,
        force: Annotated[bool, typer.Option("--force", help="train and register even when config, code and "
                                                             "data are those of a completed run")] = False) -> None:
    """Run the whole pipeline once (Prefect's temporary local API unless `conveyor up` is running).
    A run that was killed is continued by the next run of the same config: training from its last
    checkpoint, finished stages kept."""
    config = _load(profile, set_)
    state = _activate()
    from contextlib import nullcontext

    from flows.pipeline import pipeline
    from flows.services import temporary_prefect_api

    # The flow logs its summary (so UI-triggered runs show it too); no second copy here.
    from prefect.exceptions import CancelledRun

    try:
        with nullcontext() if os.environ.get("PREFECT_API_URL") else temporary_prefect_api(state):
            pipeline(config, force=force)
    except CancelledRun:
        _fail("the run was cancelled in Prefect; `conveyor run` with the same config continues it", 1)


@app.command()
def drift(profile: ProfileOpt = "demo", set_: SetOpt = None) -> None:
    """Is it time to retrain? New data and served prompts against the champion's; past the thresholds, emit the retrain event."""
    config = _load(profile, set_)
    state = _activate()
    from contextlib import nullcontext

    from flows.drift import DriftError, champion_reference, drift as drift_flow
    from flows.services import temporary_prefect_api

    server = bool(os.environ.get("PREFECT_API_URL"))
    try:
        champion_reference(config, state)
        with nullcontext() if server else temporary_prefect_api(state):
            result = drift_flow(config)
    except DriftError as exc:
        _fail(str(exc), 1)
    typer.echo(result["line"])
    for reason in result["reasons"]:
        typer.echo(f"  - {reason}")
    typer.echo(f"report: {result['report_html'] or result['output']}")
    if result["drifted"]:
        typer.echo("emitted conveyor.drift.detected: " + (
            "the pipeline/scheduled-retrain deployment's trigger starts retraining" if server else
            "no Prefect server is up, so nothing listens; retrain with `conveyor run`, or run `conveyor up` "
            "and `conveyor deploy` to retrain on drift by itself"))


@app.command()
def params(profile: ProfileOpt = "demo", set_: SetOpt = None) -> None:
    """Write the resolved config to .conveyor/params.yaml, so `dvc repro` runs the data stages."""
    from flows.pipeline import write_params

    from core.state import DVC_PARAMS_FILE

    write_params(_load(profile, set_))
    typer.echo(f"wrote {DVC_PARAMS_FILE}; now `dvc repro` runs the data stages")


@app.command()
def train(
    dataset: Annotated[Path, typer.Option(help="curated dataset folder (train.jsonl, validation.jsonl)")],
    output: Annotated[Path, typer.Option(help="model folder to create; its checkpoints go beside it")],
    profile: Annotated[str, typer.Option("--profile", "--config", "-p", help="profile name or YAML path")] = "demo",
    set_: SetOpt = None,
    node_rank: Annotated[int, typer.Option(
        help="with training.train.hostfile: which of its hosts this is (0 = the first); run once per node")] = 0,
) -> None:
    """Train alone on a curated dataset; resumes from OUTPUT's checkpoints when there are some."""
    from flows.config import load_config

    try:
        config = load_config(profile, set_ or [])
    except ConfigError as exc:
        _fail(str(exc))
    for name in ("train.jsonl", "validation.jsonl"):
        if not (dataset / name).is_file():
            _fail(f"--dataset: {dataset / name} not found (a curated dataset folder, e.g. .conveyor/data/curated)")
    import training

    try:
        training.launcher_args(config.training, node_rank)  # a bad hostfile fails here, not after the tokenizer
    except training.HostfileError as exc:
        _fail(str(exc))
    _activate()
    import logging

    logging.basicConfig(level=logging.INFO, format="%(message)s")
    # The tokenizer belongs to the run: made once beside the output (trained, or the checkpoint's
    # with training.model.init_from), reused when resuming.
    from core.atomic import beside

    tokenizer_dir = beside(output, ".tokenizer")
    if not (tokenizer_dir / "tokenizer.json").is_file():
        training.prepare_tokenizer(config.training, dataset / "train.jsonl", tokenizer_dir)
    try:
        # In a terminal, a progress bar instead of a line per log step (the train log keeps them all).
        result = training.run(config.training, dataset, tokenizer_dir, output, node_rank=node_rank,
                              progress=sys.stderr.isatty())
    except training.TrainingFailed as exc:
        _fail(str(exc), 1)
    typer.echo(result.model_dump_json(indent=2))


@app.command()
def compress(
    model: Annotated[Path, typer.Option(help="model folder to compress (a Conveyor or plain HF causal-LM folder)")],
    output: Annotated[Path, typer.Option(help="folder to create; one sub-folder per variant")],
    dataset: Annotated[Optional[Path], typer.Option(help=(
        "curated dataset folder (train.jsonl, validation.jsonl): calibration for wanda, data for recover "
        "and distill"))] = None,
    profile: ProfileOpt = "demo",
    set_: SetOpt = None,
) -> None:
    """Build the profile's compression.variants from MODEL alone (as `conveyor train` trains alone)."""
    from flows.config import load_config

    try:
        config = load_config(profile, set_ or [])
    except ConfigError as exc:
        _fail(str(exc))
    if not (model / "config.json").is_file():
        _fail(f"--model: {model} has no config.json: not a HF model folder")
    if dataset is not None and not (dataset / "train.jsonl").is_file():
        _fail(f"--dataset: {dataset / 'train.jsonl'} not found (a curated dataset folder, e.g. .conveyor/data/curated)")
    _activate()
    import logging

    import compression

    logging.basicConfig(level=logging.INFO, format="%(message)s")
    try:
        variants = compression.run(config.compression, model, output, dataset, config.training if dataset else None)
    except compression.CompressionError as exc:
        _fail(f"error: {exc}", 1)
    typer.echo(compression.describe(variants))
    typer.echo(f"wrote {len(variants)} variant(s) under {output} (stats: {output}.stats.json)")


@app.command()
def up(prefect_port: int = 4200, mlflow_port: int = 5000,
       backend: Annotated[str, typer.Option(help="sqlite: the servers on the embedded SQLite files; postgres: "
                                                 "a local PostgreSQL holding MLflow's and Prefect's databases")] = "sqlite",
       postgres_port: int = 5432, s3_port: int = 8333) -> None:
    """Start a Prefect server and an MLflow server on 127.0.0.1 (state under the state root)."""
    from flows import services

    if backend not in ("sqlite", "postgres"):
        _fail(f"--backend: sqlite or postgres, not {backend!r}")
    state = _activate()

    def start(service) -> dict:
        typer.echo(f"starting {service.name} ...")
        try:
            record = services.start(state, service)
        except RuntimeError as exc:
            _fail(str(exc), 1)
        how = "already running" if record.get("already_running") else f"healthy in {record['seconds']} s"
        label = {"postgres": "database", "s3": "endpoint"}.get(service.name, "UI")
        typer.echo(f"  {service.name} {label}: {record['url']}  ({how}, pid {record['pid']}, log {record['log']})")
        return record

    mlflow_store = prefect_database = s3 = None
    if backend == "postgres":
        try:
            database = start(services.postgres_service(state, postgres_port))
            created = services.create_databases(postgres_port)
            s3 = start(services.seaweedfs_service(state, s3_port))
            services.wait_for_bucket(s3["url"])
            services.use_s3_dvc_remote(s3["url"])
        except RuntimeError as exc:
            _fail(str(exc), 1)
        if created:
            typer.echo(f"  created databases {', '.join(created)}")
        typer.echo(f"  DVC remote {services.DVC_REMOTE} (s3://{services.S3_BUCKET}/dvc) is the default while up")
        mlflow_store = f"{database['url']}/mlflow"
        prefect_database = f"postgresql+asyncpg://{database['url'].removeprefix('postgresql://')}/prefect"
    start(services.prefect_service(state, prefect_port, prefect_database))
    start(services.mlflow_service(state, mlflow_port, mlflow_store, s3))


@app.command()
def down() -> None:
    """Stop everything `conveyor up` and `conveyor deploy` started."""
    from core.state import State
    from flows import services

    stopped = services.stop_all(State.from_env())
    typer.echo(f"stopped: {', '.join(stopped)}" if stopped else "nothing was running")


@app.command()
def deploy(profile: ProfileOpt = "demo", set_: SetOpt = None,
           pool: str = typer.Option("conveyor", help="the Prefect process work pool to put them on"),
           worker: bool = typer.Option(True, help="start a worker for the pool on this machine "
                                                  "(--no-worker: only register; `conveyor worker` runs one)")) -> None:
    """Register pipeline/manual, pipeline/scheduled-retrain (cron, and on drift) and drift/check on a
    Prefect process work pool, and start a worker for it on this machine.

    Each flow run is its own process started by a worker: deploying again updates the deployments
    and leaves runs under way alone. `conveyor worker` on another machine adds a worker there."""
    import time

    from flows import deploy as deployments

    config = _load(profile, set_)
    state = _activate()
    if "PREFECT_API_URL" not in os.environ:
        _fail("no Prefect server: run `conveyor up` first (or set PREFECT_API_URL)")
    started = time.monotonic()
    try:
        under_way = deployments.runs_under_way()
        names = deployments.register(profile, set_ or [], pool)
    except RuntimeError as exc:
        _fail(str(exc), 1)
    typer.echo(f"deployed {' and '.join(names)} on work pool {pool!r} in {time.monotonic() - started:.1f} s "
               f"(cron {config.schedule.cron!r} {config.schedule.timezone})")
    if under_way:
        typer.echo(f"{len(under_way)} run(s) of these deployments under way, left alone: they finish with the code "
                   f"and settings they started with, later runs take these: {', '.join(under_way)}")
    if worker:
        _start_worker(state, pool)
    typer.echo("trigger one: prefect deployment run 'pipeline/manual' --watch")


def _start_worker(state, pool: str) -> None:
    from flows import deploy as deployments
    from flows import services

    record = services.running(state).get("worker")
    if record is not None:
        where = "" if record.get("pool") == pool else f" (for pool {record.get('pool')!r}; `conveyor worker --pool {pool}` adds one)"
        typer.echo(f"worker on this machine already running: pid {record['pid']}{where}")
        return
    command = deployments.worker_command(pool)
    record = services.start_process(state, "worker", command, deployments.worker_env(), pool=pool)
    try:
        seconds = services.wait_for_worker(os.environ["PREFECT_API_URL"], pool, command[command.index("--name") + 1],
                                           record["pid"])
    except RuntimeError as exc:
        services.stop(state, "worker")
        _fail(f"{exc}; see {record['log']}", 1)
    typer.echo(f"worker on this machine polls pool {pool!r} (online in {seconds} s; one run at a time); "
               f"pid {record['pid']}, log {record['log']}")


@app.command()
def worker(pool: str = typer.Option("conveyor", help="the Prefect work pool to take runs from"),
           background: bool = typer.Option(False, help="run in the background (`conveyor down` stops it)")) -> None:
    """Take pipeline runs from the work pool on this machine (one at a time), e.g. on a second GPU box.

    Needs this project checked out and installed here, PREFECT_API_URL pointing at the team's Prefect
    server and MLFLOW_TRACKING_URI at its MLflow server (both set for you where `conveyor up` runs)."""
    from flows import deploy as deployments

    state = _activate()
    if "PREFECT_API_URL" not in os.environ:
        _fail("no Prefect server: set PREFECT_API_URL to the team's (http://HOST:4200/api), or run `conveyor up`")
    if "MLFLOW_TRACKING_URI" not in os.environ:
        typer.echo("note: MLFLOW_TRACKING_URI is not set: runs on this worker record to this machine's MLflow "
                   f"({state.mlflow_tracking_uri}), not the team's", err=True)
    if background:
        _start_worker(state, pool)
        return
    command = deployments.worker_command(pool)
    os.execve(command[0], command, {**os.environ, **state.service_env(), **deployments.worker_env()})


@app.command()
def serve(profile: ProfileOpt = "demo", port: Optional[int] = None, host: Optional[str] = None) -> None:
    """Serve the latest Bento of the champion with BentoML (foreground), behind API keys."""
    from flows.config import load_config

    try:
        config = load_config(profile)
    except ConfigError as exc:
        _fail(str(exc))
    state = _activate()
    from serving.package import serve_command

    bento = f"{config.serving.bento_name}:latest"
    import bentoml

    try:
        bentoml.get(bento)
    except bentoml.exceptions.NotFound:
        _fail(f"nothing to serve yet: no Bento {bento} in {state.bentoml_home} (profile {config.profile!r}); "
              f"run the pipeline first: conveyor run --profile {config.profile}", 1)
    if config.serving.auth == "none":
        typer.secho("auth: none in this profile: anyone who can reach the port can generate", fg=typer.colors.YELLOW)
    else:
        from serving.auth import KeyFile, KeyFileError

        try:
            keys = KeyFile(state.api_keys)
            if not keys.active():
                # As Jupyter prints its token: the first serve makes a key and shows it once.
                entry, key = keys.add("created by conveyor serve")
                typer.echo(f"created API key {entry.id}; it is shown once (`conveyor keys` manages keys):\n"
                           f"  export CONVEYOR_API_KEY={key}")
        except KeyFileError as exc:
            _fail(str(exc))
    command = serve_command(bento, host or config.serving.host,
                            port or config.serving.port)
    typer.echo(" ".join(command))
    os.execvp(command[0], command)


keys_app = typer.Typer(no_args_is_help=True, help="API keys of the served model (stored hashed).")
app.add_typer(keys_app, name="keys")


def _key_file():
    from core.state import State
    from serving.auth import KeyFile

    return KeyFile(State.from_env().api_keys)


@keys_app.command("add")
def keys_add(name: Annotated[str, typer.Option(help="what the key is for")] = "") -> None:
    """Create a key and print it once (only its hash is kept)."""
    from serving.auth import KeyFileError

    try:
        entry, key = _key_file().add(name)
    except KeyFileError as exc:
        _fail(str(exc))
    typer.echo(f"key {entry.id} created; it is shown once, keep it:\n{key}")


@keys_app.command("list")
def keys_list() -> None:
    """Key ids, names, creation and revocation times (never the keys)."""
    from serving.auth import KeyFileError

    keyfile = _key_file()
    try:
        keys = keyfile.load()
    except KeyFileError as exc:
        _fail(str(exc))
    if not keys:
        typer.echo(f"no keys in {keyfile.path}; `conveyor keys add` creates one")
    for key in keys:
        state = f"revoked {key.revoked}" if key.revoked else "active"
        typer.echo(f"{key.id}  {state:<34} created {key.created}  {key.name}")


@keys_app.command("revoke")
def keys_revoke(key_id: Annotated[str, typer.Argument(help="the id `conveyor keys list` shows")]) -> None:
    """Revoke a key: a running server refuses it from its next request."""
    from serving.auth import KeyFileError

    try:
        entry = _key_file().revoke(key_id)
    except KeyFileError as exc:
        _fail(str(exc))
    typer.echo(f"key {entry.id} revoked at {entry.revoked}")


@app.command()
def status(profile: ProfileOpt = "demo") -> None:
    """Services that are up, and the registry's champion and challenger."""
    from flows.config import load_config
    from flows.services import running

    try:
        config = load_config(profile)
    except ConfigError as exc:
        _fail(str(exc))
    state = _activate()
    up = running(state)
    for name in ("postgres", "s3", "prefect", "mlflow", "worker"):
        record = up.get(name)
        if name in ("postgres", "s3") and record is None:
            continue  # only `conveyor up --backend postgres` starts them
        typer.echo(f"{name:12} {'up ' + (record['url'] or '') + ' pid ' + str(record['pid']) if record else 'down'}")
    from flows import runs

    for run_dir, record in runs.records(state.runs)[-5:]:  # the newest runs
        status = record.status
        if status == "running" and not runs.owner_alive(record):
            status = "died (its process is gone; the next `conveyor run` ends it as Crashed and continues it)"
        elif record.resumed_from:
            status += f" (continued {record.resumed_from})"
        typer.echo(f"{'run':12} {record.run_name}: {status}")
    import mlflow

    from core import registry

    mlflow.set_tracking_uri(state.mlflow_tracking_uri)
    typer.echo(f"{'registry':12} {state.mlflow_tracking_uri}")
    typer.echo(f"{'model':12} {config.model_name} (profile {config.profile}; --profile picks another)")
    for alias in ("champion", "challenger"):
        version = registry.get_by_alias(config.model_name, alias)
        if version is None:
            typer.echo(f"{alias:12} none")
            continue
        metrics = ", ".join(f"{k}={v:.4g}" for k, v in sorted(version.metrics.items()))
        typer.echo(f"{alias:12} {config.model_name} v{version.version} ({version.lineage.get('variant')}): {metrics}")


@app.command()
def lineage(model: Annotated[str, typer.Argument(help="NAME@ALIAS or NAME/VERSION")]) -> None:
    """Which data, code, config and runs made a registered model version."""
    import mlflow

    from core import registry

    state = _activate()
    mlflow.set_tracking_uri(state.mlflow_tracking_uri)
    if "@" in model:
        name, alias = model.split("@", 1)
        version = registry.get_by_alias(name, alias)
    elif "/" in model:
        from mlflow.exceptions import MlflowException

        name, number = model.split("/", 1)
        try:
            version = registry.get_version(name, number)
        except MlflowException:  # no such model or version
            version = None
    else:
        _fail("give NAME@ALIAS or NAME/VERSION")
    if version is None:
        _fail(f"no registered version for {model} in {state.mlflow_tracking_uri} (`conveyor history "
              f"{model.split('@')[0].split('/')[0]}` lists its versions)", 1)
    typer.echo(f"{version.name} version {version.version}")
    for key, value in sorted(version.lineage.items()):
        typer.echo(f"  {key:22} {value}")


def _registry_session():
    import mlflow

    state = _activate()
    mlflow.set_tracking_uri(state.mlflow_tracking_uri)
    return state


def _package_after_move(model: str, profile: str, state) -> None:
    """Rebuild the Bento around the champion the move left, so `conveyor serve` serves it."""
    from flows.config import load_config
    from serving.package import package_champion

    config = load_config(profile)
    if config.model_name != model:
        typer.echo(f"not packaging: profile {profile!r} serves {config.model_name}, not {model} "
                   f"(give --profile, or --no-package)")
        return
    import tempfile

    with tempfile.TemporaryDirectory(dir=state.root) as work:
        bento = package_champion(model, config.serving, Path(work) / "champion")
    typer.echo(f"built bento {bento}: `conveyor serve" + ("" if profile == "demo" else f" --profile {profile}")
               + "` serves it")


def _move_champion(model: str, profile: str, package: bool, how: str, move) -> None:
    """Run `move(registry)`, say what moved, then (with --package) rebuild the Bento around it."""
    from core import registry

    state = _registry_session()
    try:
        moved = move(registry)
    except registry.ReleaseError as exc:
        _fail(f"error: {exc}", 1)
    typer.echo(f"{model}@champion: version {moved.previous_version or '(none)'} -> {moved.version} "
               f"({how} by {moved.actor})")
    if package:
        _package_after_move(model, profile, state)


PackageOpt = Annotated[bool, typer.Option("--package/--no-package",
                                          help="rebuild the Bento around the new champion (default: yes)")]


@app.command()
def promote(
    model: Annotated[str, typer.Argument(help="registered model name")],
    version: Annotated[str, typer.Argument(help="the version to make champion")],
    reason: Annotated[str, typer.Option("--reason", help="why: kept in the history")],
    profile: ProfileOpt = "demo",
    package: PackageOpt = True,
) -> None:
    """Make VERSION the champion of MODEL by hand (recorded in the registry's history, with who and why)."""
    _move_champion(model, profile, package, "promoted", lambda registry: registry.promote(model, version, reason))


@app.command()
def rollback(
    model: Annotated[str, typer.Argument(help="registered model name")],
    reason: Annotated[str, typer.Option("--reason", help="why: kept in the history")] = "",
    profile: ProfileOpt = "demo",
    package: PackageOpt = True,
) -> None:
    """Put MODEL's previous champion back (a second rollback goes one further back)."""
    _move_champion(model, profile, package, "rolled back", lambda registry: registry.rollback(model, reason))


@app.command()
def canary(profile: ProfileOpt = "demo", package: PackageOpt = True) -> None:
    """Apply the served canary's decision to the registry: roll the champion back, or record the rollout finished."""
    from core import registry
    from serving.canary import apply_decisions

    config = _load(profile, None)
    state = _registry_session()
    try:
        lines, rebuild = apply_decisions(config.model_name, state.request_log.parent)
    except registry.ReleaseError as exc:
        _fail(f"error: {exc}", 1)
    if not lines:
        _fail(f"no canary decision for {config.model_name} in {state.request_log.parent}: the server decides once "
              "each version has answered serving.canary.min_requests requests", 1)
    for line in lines:
        typer.echo(line)
    if package and rebuild:
        _package_after_move(config.model_name, profile, state)


@app.command()
def history(
    model: Annotated[str, typer.Argument(help="registered model name")],
    as_json: Annotated[bool, typer.Option("--json", help="one JSON object per move")] = False,
) -> None:
    """Every alias move of MODEL: when, who, from which version to which, why, the gate's evidence."""
    import json

    from core import registry

    _registry_session()
    moves = registry.history(model)
    if not moves:
        _fail(f"no recorded alias moves for {model}", 1)
    for move in moves:
        if as_json:
            typer.echo(json.dumps(move.__dict__, default=str))
            continue
        typer.echo(f"{move.time}  {move.alias:10} v{move.previous_version or '-'} -> v{move.version}  "
                   f"{move.action:8} by {move.actor}")
        typer.echo(f"    why: {move.reason}")
        for check in move.evidence.get("gates", []):
            from evaluation.promotion import GateCheck

            typer.echo(f"    {'ok    ' if check['passed'] else 'FAILED'} {GateCheck.model_validate(check).describe()}")


@app.command()
def card(model: Annotated[str, typer.Argument(help="NAME@ALIAS or NAME/VERSION")]) -> None:
    """Print the model card of a registered version."""
    import mlflow
    from mlflow.exceptions import MlflowException

    _registry_session()
    name, sep, rest = model.partition("@") if "@" in model else model.partition("/")
    if not sep or not rest:
        _fail("give NAME@ALIAS or NAME/VERSION")
    uri = f"models:/{name}@{rest}" if "@" in model else f"models:/{name}/{rest}"
    import tempfile

    with tempfile.TemporaryDirectory() as work:
        try:
            path = mlflow.artifacts.download_artifacts(artifact_uri=f"{uri}/README.md", dst_path=work)
        except (MlflowException, OSError):
            _fail(f"no card for {model}: no such registered version, or it was registered before cards existed", 1)
        typer.echo(Path(path).read_text(encoding="utf-8"))


data_app = typer.Typer(no_args_is_help=True, help="Run data curation stages on a file or folder of records.")
app.add_typer(data_app, name="data")
InputArg = Annotated[str, typer.Argument(help="JSONL, JSONL.gz, Parquet, CSV or .txt: a file, folder, glob or s3://")]
OutputArg = Annotated[str, typer.Argument(help="a .jsonl, .jsonl.gz or .parquet file, else a sharded folder")]
WorkersOpt = Annotated[int, typer.Option("--workers", help="worker processes for sharded stages")]


DataProfileOpt = Annotated[Optional[str], typer.Option(
    "--profile", "-p", help="take the data settings of a profile; default: the stages' own (every PII type, NER on)")]


def _run_data(stages: list[str], input_: str, output: str, profile: str | None, overrides: list[str],
              workers: int, runner: str | None = None, address: str | None = None) -> None:
    from data.records import DataError
    from flows.config import load_data_config

    try:
        config = load_data_config(profile, overrides)
    except ConfigError as exc:
        _fail(str(exc))
    if profile is None:
        typer.echo("no --profile: the data stages' own defaults (every PII type, NER on)")
    _suggest_preset(config, stages, input_)
    from flows.curate import curate_file
    from data.validate import ValidationFailed

    try:
        results = curate_file(config, stages, input_, Path(output), workers, runner, address)
    except (ConfigError, FileNotFoundError, DataError, ValidationFailed) as exc:
        _fail(f"error: {exc}", 1)
    for stage, stats in results.items():
        dropped = ", ".join(f"{k}={v}" for k, v in sorted(stats["dropped"].items())) or "none"
        typer.echo(f"{stage}: {stats['records_in']} in, {stats['records_out']} out, dropped: {dropped}")
        unchecked = stats.get("extra", {}).get("not_looked_for")
        if unchecked:
            typer.secho(f"{stage}: did NOT look for {unchecked.replace(',', ', ')} (this profile's settings): "
                        "such values passed through unchanged", fg=typer.colors.YELLOW)
    typer.echo(f"wrote {output} (stats: {output}.stats.json)")
    if Path(f"{output}.clean.report.html").is_file():
        typer.echo(f"what each clean rule removed, with examples: {output}.clean.report.html")


PRESET_OF_SUFFIX = {".mbox": "mail", ".mbox.gz": "mail", ".eml": "mail", ".html": "web", ".htm": "web",
                    ".warc": "web", ".warc.gz": "web", ".json": "chat"}


def _suggest_preset(config, stages: list[str], input_: str) -> None:
    """Mail, web pages or chat cleaned with the books preset lose short replies and keep quotes:
    say which preset fits (one line)."""
    if "clean" not in stages or config.clean.preset != "books":
        return
    preset = next((p for suffix, p in PRESET_OF_SUFFIX.items() if input_.endswith(suffix)), None)
    if preset:
        option = "preset" if stages == ["clean"] else "clean.preset"
        typer.secho(f"note: clean runs its books preset on {input_.rsplit('/', 1)[-1]}; for this kind of text add "
                    f"--set {option}={preset}", fg=typer.colors.YELLOW)


RunnerOpt = Annotated[Optional[str], typer.Option(
    help="run the stages as Prefect's `curate` flow on this task runner: dask (a local cluster of --workers, "
         "or --address's scheduler), process or thread")]
AddressOpt = Annotated[Optional[str], typer.Option(help="with --runner dask: a Dask scheduler, e.g. tcp://10.0.0.5:8786")]
RUNNERS = ("process", "thread", "dask")  # flows.curate.RUNNERS, not imported: --help stays instant


def _check_runner(runner: str | None, address: str | None) -> None:
    if runner is not None and runner not in RUNNERS:
        _fail(f"--runner: one of {', '.join(RUNNERS)}, not {runner!r}")
    if address and runner != "dask":
        _fail("--address needs --runner dask")


def _data_command(stage: str) -> None:
    def command(input_: InputArg, output: OutputArg, profile: DataProfileOpt = None, set_: SetOpt = None,
                workers: WorkersOpt = os.cpu_count() or 1, runner: RunnerOpt = None, address: AddressOpt = None) -> None:
        _check_runner(runner, address)
        # --set is relative to this stage's section: --set min_chars=50 is data.<stage>.min_chars.
        _run_data([stage], input_, output, profile, [f"data.{stage}.{o}" for o in set_ or []], workers,
                  runner, address)

    command.__doc__ = f"Ingest INPUT, run {stage}, write OUTPUT and OUTPUT.stats.json."
    data_app.command(name=stage)(command)


for _stage in CURATION:
    _data_command(_stage)


@data_app.command(name="all")
def data_all(input_: InputArg, output: OutputArg, profile: DataProfileOpt = None, set_: SetOpt = None,
             workers: WorkersOpt = os.cpu_count() or 1, runner: RunnerOpt = None, address: AddressOpt = None) -> None:
    """Ingest INPUT, run clean, dedup, anonymize and validate, write OUTPUT and OUTPUT.stats.json."""
    _check_runner(runner, address)
    # --set stage.key=value, e.g. --set clean.min_chars=50.
    _run_data(CURATION, input_, output, profile, [f"data.{o}" for o in set_ or []], workers,
              runner, address)


if __name__ == "__main__":
    app()
