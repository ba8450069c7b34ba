"""The `curate` flow: the data stages as Prefect tasks, the per-record ones shard by shard.

Clean and anonymize run one task per shard (`data.shards.run_shard`, the function `map_shards`
uses), so the flow's task runner spreads them: worker processes on this machine by default, or a
Dask cluster through prefect-dask (a local one it starts, or a scheduler at an address):
`conveyor data all INPUT OUTPUT --runner dask [--address tcp://host:8786]`. (A Ray runner went in
issue 13: prefect-ray does not install beside this stack, so it could not be tested.) Ingest,
dedup (one global pass), validate and split are one task each. Output is the same whatever the
runner: each shard's output depends on that shard alone, and `finish` merges shards in name order. A killed run resumes from the shards whose markers exist.

The pipeline flow still runs the data stages through `dvc repro` (so DVC skips what did not
change); this flow is the scale-out path for corpora a single machine should not do alone.
"""

from __future__ import annotations

import importlib
import os
import time
from contextlib import contextmanager
from functools import partial
from pathlib import Path
from typing import Literal

from prefect import flow, get_run_logger, task, unmapped
from prefect.cache_policies import NO_CACHE

from data.config import DataConfig
from data.shards import finish, plan_shards, run_shard
from data.stages import STAGES, inputs

Runner = Literal["process", "thread", "dask"]
RUNNERS = ("process", "thread", "dask")


def processor_class(stage: str):
    """The stage's processor class (named in data.stages, imported here: the stage modules stay
    free to change around it)."""
    module, _, name = STAGES[stage].processor.partition(":")
    return getattr(importlib.import_module(module), name)


def processor_factory(stage: str, config: DataConfig):
    """The stage's processor class with its config bound, to build in each worker."""
    return partial(processor_class(stage), STAGES[stage].config_of(config))


@task(task_run_name="{stage}-{job.source.name}", cache_policy=NO_CACHE)
def shard_task(stage: str, job, make_processor) -> str:
    run_shard(job, make_processor)
    return job.source.name


@task(task_run_name="{stage}", cache_policy=NO_CACHE)
def stage_task(stage: str, config: DataConfig, input_dir: Path | None, output_dir: Path, workers: int) -> dict:
    return STAGES[stage].run(STAGES[stage].config_of(config), input_dir, output_dir, workers).model_dump()


def sharded_stage(stage: str, config: DataConfig, input_dir: Path, output_dir: Path) -> dict:
    """Submit one task per shard not done yet, wait for all, then merge (in this process)."""
    started = time.perf_counter()
    jobs = plan_shards(input_dir, output_dir)
    todo = [job for job in jobs if not job.done]
    futures = shard_task.map(unmapped(stage), todo, unmapped(processor_factory(stage, config)))
    for future in futures:
        future.result()  # raises the first shard's failure; finished shards keep their markers
    stats = finish(stage, input_dir, output_dir, time.perf_counter() - started, len(jobs) - len(todo))
    if published := getattr(processor_class(stage), "published", None):
        published(STAGES[stage].config_of(config), stats, output_dir)  # as the stage's own run does
    return stats.model_dump()


@flow(name="curate", log_prints=True)
def curate(config: DataConfig = DataConfig(), workdir: Path = Path(".conveyor/curate"), workers: int = 2,
           stages: list[str] = list(STAGES)) -> dict[str, dict]:
    """The data stages from `config.ingest.paths` into `workdir/<stage>`; per-stage stats."""
    logger = get_run_logger()
    workdir = Path(workdir)
    results: dict[str, dict] = {}
    read = inputs(stages)
    for stage in stages:
        input_dir = workdir / read[stage] if read[stage] else None
        output_dir = workdir / stage
        if STAGES[stage].processor:
            results[stage] = sharded_stage(stage, config, input_dir, output_dir)
        else:
            results[stage] = stage_task(stage, config, input_dir, output_dir, workers)
        logger.info("%s: %d in, %d out, dropped %s", stage, results[stage]["records_in"],
                    results[stage]["records_out"], results[stage]["dropped"] or "none")
    return results


def task_runner(runner: Runner, workers: int, address: str | None = None):
    """Prefect's task runner for `runner`: `address` joins an existing Dask scheduler; without one,
    a local cluster of `workers` processes is started for the run."""
    if runner == "process":
        from prefect.task_runners import ProcessPoolTaskRunner

        return ProcessPoolTaskRunner(max_workers=workers)
    if runner == "thread":
        from prefect.task_runners import ThreadPoolTaskRunner

        return ThreadPoolTaskRunner(max_workers=workers)
    if runner == "dask":
        try:
            from prefect_dask import DaskTaskRunner
        except ImportError:
            raise ImportError("runner 'dask' needs prefect-dask: pip install prefect-dask") from None
        if address:
            return DaskTaskRunner(address=address)
        return DaskTaskRunner(cluster_kwargs={"n_workers": workers, "processes": True, "threads_per_worker": 1,
                                              "dashboard_address": "127.0.0.1:0", "host": "127.0.0.1"})
    raise ValueError(f"unknown runner {runner!r}: expected one of {', '.join(RUNNERS)}")


@contextmanager
def shared_prefect_api(runner: Runner):
    """Dask workers are separate processes that report task states to the Prefect API: without a
    server (PREFECT_API_URL), each would start its own temporary one and never reach the flow's.
    So start the temporary server here and export its URL for the workers to inherit."""
    if runner != "dask" or os.environ.get("PREFECT_API_URL"):
        yield
        return
    from prefect.server.api.server import SubprocessASGIServer
    from prefect.settings import PREFECT_API_URL, temporary_settings

    server = SubprocessASGIServer()
    server.start()
    os.environ["PREFECT_API_URL"] = server.api_url
    try:
        with temporary_settings({PREFECT_API_URL: server.api_url}):
            yield
            # Send the run's last log lines while the server is up: left queued, Prefect's log
            # worker retried them against the stopped server for 80 s before the command could exit.
            from prefect.logging.handlers import APILogWorker

            APILogWorker.drain_all(timeout=10)
    finally:
        del os.environ["PREFECT_API_URL"]
        server.stop()


def run_curate(config: DataConfig, workdir: Path, runner: Runner = "process", workers: int = 2,
               address: str | None = None, stages: list[str] = list(STAGES)) -> dict[str, dict]:
    """Run the `curate` flow with the chosen task runner."""
    with shared_prefect_api(runner):
        return curate.with_options(task_runner=task_runner(runner, workers, address))(
            config=config, workdir=Path(workdir), workers=workers, stages=stages)


def curate_file(config: DataConfig, stages: list[str], source: str, output: Path, workers: int = 1,
                runner: Runner | None = None, address: str | None = None) -> dict[str, dict]:
    """`conveyor data`: ingest `source` (a file, folder, glob or s3:// URL of any ingestable
    format), run `stages` in order, and export the records to `output`: a JSONL, JSONL.gz or
    Parquet file by suffix, else a sharded folder. Beside it: `<output>.stats.json` (per-stage
    stats), `<output>.quarantine.jsonl` (ingest's rejects), and per stage what its rules removed
    (`<output>.clean.report.html`, `<output>.<stage>.dropped-samples.jsonl`, ...). Intermediate folders live in a
    temporary folder beside `output`, removed at the end. The stages run with the plain stage
    functions (a process pool of `workers`), or with `runner` as the `curate` flow on that task
    runner (the same output)."""
    import json
    import shutil
    import tempfile

    from core.atomic import atomic_write_text, beside
    from core.stats import stats_path
    from data.records import EXPORT_SUFFIXES, QUARANTINE_FILE, export_records
    from data.shards import read_records

    output = Path(output).resolve()
    output.parent.mkdir(parents=True, exist_ok=True)
    # The command line's input is the user's, relative to where they stand, as OUTPUT is (a
    # profile's data.ingest.paths stay relative to the repository).
    if not str(source).startswith("s3://"):
        source = str(Path(source).absolute())
    config = config.model_copy(update={"ingest": config.ingest.model_copy(update={"paths": [str(source)]})})
    results: dict[str, dict] = {}
    stages = ["ingest", *[s for s in stages if s != "ingest"]]
    with tempfile.TemporaryDirectory(dir=output.parent, prefix=f".{output.name}.work-") as tmp:
        work = Path(tmp)
        if runner is not None:
            results = run_curate(config, work, runner, workers, address, stages)
        else:
            for stage, source in inputs(stages).items():
                stats = STAGES[stage].run(STAGES[stage].config_of(config), work / source if source else None,
                                          work / stage, workers)
                results[stage] = stats.model_dump()
        for stage in stages:
            if not STAGES[stage].records:  # validate: a report; the records are its input's
                shutil.copy(work / stage / "report.json", beside(output, f".{stage}-report.json"))
            # What each stage's rules removed: samples and clean's report, as `<output>.<stage>.<kind>`.
            for kind in (".dropped-samples.jsonl", ".removed-samples.jsonl", ".report.html"):
                if beside(work / stage, kind).is_file() and beside(work / stage, kind).stat().st_size:
                    shutil.copy(beside(work / stage, kind), beside(output, f".{stage}{kind}"))
        records_dir = work / [stage for stage in stages if STAGES[stage].records][-1]
        quarantine = work / "ingest" / QUARANTINE_FILE
        if quarantine.stat().st_size:
            shutil.copy(quarantine, beside(output, ".quarantine.jsonl"))
        if output.name.endswith(EXPORT_SUFFIXES):
            export_records(read_records(records_dir), output)
        else:
            (records_dir / QUARANTINE_FILE).unlink(missing_ok=True)
            if output.exists():
                shutil.rmtree(output)
            records_dir.rename(output)
    atomic_write_text(stats_path(output), json.dumps(results, indent=2))
    return results
