"""The run summary: what a pipeline run did (RunSummary, written as summary.json) and the same as
plain text for the terminal and the Prefect log (render_text)."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel

from compression.report import step_label
from core.stats import StageStats
from training.launcher import TrainResult


class StageSummary(StageStats):
    """A data stage's stats, and whether DVC skipped it (its inputs, code and params unchanged)."""

    skipped: bool = False


class ChampionSnapshot(BaseModel):
    """The champion before this run, measured on this run's data."""

    version: str
    variant: str | None = None
    metrics: dict[str, Any]


class RegistrySummary(BaseModel):
    """What registration did: every variant registered, one of them chosen and moved to `alias`."""

    model_name: str
    versions: dict[str, str]  # variant -> registered version
    chosen: str
    alias: str
    version: str
    reason: str
    failed_bounds: list[str] = []
    champion_version: str | None = None
    previous_champion: ChampionSnapshot | None = None


class CompressionSummary(BaseModel):
    variants: list[dict[str, Any]] = []  # name, parent, steps, path of each recipe's model
    tradeoff_plot: str | None = None


class ServingAddress(BaseModel):
    host: str
    port: int


class RunSummary(BaseModel):
    """summary.json of a run; an unchanged run repeats the completed run's with its own stages."""

    run: str
    run_dir: str
    profile: str
    stages: dict[str, StageSummary]
    training: TrainResult
    variants: dict[str, dict[str, Any]]  # variant -> evaluation metrics
    compression: CompressionSummary
    registry: RegistrySummary
    lineage: dict[str, Any]
    bento: str
    serving: ServingAddress
    resumed_from: str | None = None
    seconds: float
    unchanged_since: str | None = None  # the completed run this one found nothing new since
    message: str | None = None


def _table(headers: list[str], rows: list[list[str]]) -> list[str]:
    """`rows` under `headers` as rich lays a table out, plain text (no colour, no wrapping: the
    summary goes to a terminal, a log file and the Prefect UI alike)."""
    import io

    from rich import box
    from rich.console import Console
    from rich.table import Table

    table = Table(*headers, box=box.SIMPLE_HEAD, show_edge=False, pad_edge=False, header_style=None)
    for row in rows:
        table.add_row(*map(str, row))
    console = Console(file=io.StringIO(), width=1000, color_system=None, legacy_windows=False)
    console.print(table, overflow="ignore", crop=False)
    return [line.rstrip() for line in console.file.getvalue().splitlines()]


def _size(num_bytes: float) -> str:
    for unit in ("B", "KB", "MB", "GB"):
        if num_bytes < 1024 or unit == "GB":
            return f"{num_bytes:.1f} {unit}"
        num_bytes /= 1024
    return ""


def _accuracy(metrics: dict, task: str) -> str:
    if f"{task}/acc" not in metrics:
        return "-"
    return f"{metrics[f'{task}/acc']:.3f} +- {metrics.get(f'{task}/acc_stderr', float('nan')):.3f}"


def render_text(summary: RunSummary) -> str:
    out = [f"Conveyor run {summary.run} (profile {summary.profile}) in {summary.seconds} s", ""]

    rows = []
    for stage, stats in summary.stages.items():
        dropped = ", ".join(f"{k}={v}" for k, v in sorted(stats.dropped.items())) or "-"
        status = "skipped (unchanged, DVC)" if stats.skipped else f"ran {stats.seconds:.1f} s"
        rows.append([stage, stats.records_in, stats.records_out, dropped, status])
    out += ["Data stages", *_table(["stage", "in", "out", "dropped", "status"], rows), ""]
    anonymize = summary.stages.get("anonymize")
    unchecked = anonymize.extra.get("not_looked_for") if anonymize else None
    if unchecked:
        out += [f"anonymize did NOT look for {unchecked.replace(',', ', ')} (this profile's anonymize.entities / "
                "anonymize.ner): such values passed through unchanged", ""]
    skipped = [s for s, stats in summary.stages.items() if stats.skipped]
    if skipped:
        out += [f"DVC skipped {len(skipped)} unchanged stage(s): {', '.join(skipped)}", ""]

    training = summary.training
    out += [
        f"Training: {training.steps} steps on {training.world_size} rank(s), ZeRO-{training.zero_stage}, "
        f"{training.num_parameters:,} params, {training.tokens_per_second:.0f} tokens/s, "
        f"train loss {training.final_train_loss:.3f}, val loss {training.val_loss or float('nan'):.3f}"
        + (f" (the weights of step {training.exported_step}, the best evaluation)"
           if training.exported_step not in (None, training.steps) else "")
        + f", {training.seconds:.1f} s in the training loop",
        "",
    ]
    if training.dp:
        from training.privacy import describe

        out[-1:] = [f"Differential privacy: {describe(training.dp)}", ""]
    leaked = {name: m["canary/extracted"] for name, m in summary.variants.items() if "canary/extracted" in m}
    if leaked:
        out += [f"Canaries extracted: {', '.join(f'{name} {int(n)}' for name, n in leaked.items())} "
                "(a model that writes one out is never champion)", ""]

    registry = summary.registry
    base = summary.variants["base"]
    chains = {v["name"]: v for v in summary.compression.variants}
    rows = []
    champion = registry.previous_champion
    models = dict(summary.variants)
    if champion:
        models[f"champion v{champion.version}"] = champion.metrics
    for variant, metrics in models.items():
        chain = chains.get(variant)
        if variant in summary.variants:
            steps = " -> ".join(step_label(r) for r in chain["steps"]) if chain else "trained"
            version, parent = registry.versions.get(variant, "-"), chain["parent"] if chain else "-"
        else:
            steps, version, parent = "current champion, same data", champion.version, "-"
        rows.append([
            variant, version, parent, steps,
            f"{metrics['bits_per_byte']:.4f}", f"{100 * (metrics['bits_per_byte'] / base['bits_per_byte'] - 1):+.1f}%",
            _accuracy(metrics, "conveyor_cloze"), _accuracy(metrics, "conveyor_nextsentence"),
            f"{_size(metrics['size_bytes'])} ({metrics['size_bytes'] / base['size_bytes']:.2f}x)",
            f"{metrics['decode_tokens_per_s_b1']:.1f} ({metrics['decode_tokens_per_s_b1'] / base['decode_tokens_per_s_b1']:.2f}x)",
            f"{metrics['ttft_ms_b1']:.0f}",
            _size(metrics["peak_memory_bytes"]),
        ])
    out += ["Model variants (x: against base; bits/byte on the reference text, accuracy +- one standard error)",
            *_table(["variant", "version", "from", "steps", "bits/byte", "vs base", "cloze acc", "next-sent acc",
                     "size", "decode tok/s", "ttft ms", "peak mem"], rows)]
    if summary.compression.tradeoff_plot:
        out += [f"trade-off plot: {summary.compression.tradeoff_plot} (MLflow: compression/)"]
    out += [""]

    out += [
        f"Registry: {registry.model_name} version {registry.version} ({registry.chosen}) -> alias '{registry.alias}'",
        f"  why: {registry.reason}",
        f"  champion is now version {registry.champion_version}",
        f"  dataset (DVC md5) {summary.lineage['dataset_dvc_md5']}, git {summary.lineage['git_commit'][:12]}",
        f"Bento: {summary.bento}",
        "",
        f"Its card: conveyor card {registry.model_name}@champion; its history: conveyor history {registry.model_name}",
        "Serve and query the champion (the first serve creates an API key and prints it once):",
        "  conveyor serve" + ("" if summary.profile == "demo" else f" --profile {summary.profile}"),
        f"  curl -s http://{summary.serving.host}:{summary.serving.port}/v1/completions "
        "-H \"Authorization: Bearer $CONVEYOR_API_KEY\" -H 'Content-Type: application/json' "
        "-d '{\"prompt\": \"It is a truth universally acknowledged\", \"max_tokens\": 20, \"temperature\": 0}'",
    ]
    return "\n".join(out)
