"""The run summary as plain text: the same table in the terminal, the Prefect log and summary.json."""

from __future__ import annotations

from compression.report import step_label


def _table(headers: list[str], rows: list[list[str]]) -> list[str]:
    widths = [max(len(str(cell)) for cell in column) for column in zip(headers, *rows)]
    line = lambda cells: "  ".join(str(c).ljust(w) for c, w in zip(cells, widths)).rstrip()  # noqa: E731
    return [line(headers), line(["-" * w for w in widths]), *map(line, rows)]


def _size(num_bytes: float) -> str:
    for unit in ("B", "KB", "MB", "GB"):
        if num_bytes < 1024 or unit == "GB":
            return f"{num_bytes:.1f} {unit}"
        num_bytes /= 1024
    return ""


def render_text(summary: dict) -> str:
    out = [f"Conveyor run {summary['run']} (profile {summary['profile']}) in {summary['seconds']} s", ""]

    rows = []
    for stage, stats in summary["stages"].items():
        dropped = ", ".join(f"{k}={v}" for k, v in sorted(stats["dropped"].items())) or "-"
        status = "skipped (unchanged, DVC)" if stats["skipped"] else f"ran {stats['seconds']:.1f} s"
        rows.append([stage, stats["records_in"], stats["records_out"], dropped, status])
    out += ["Data stages", *_table(["stage", "in", "out", "dropped", "status"], rows), ""]
    skipped = [s for s, stats in summary["stages"].items() if stats["skipped"]]
    if skipped:
        out += [f"DVC skipped {len(skipped)} unchanged stage(s): {', '.join(skipped)}", ""]

    training = summary["training"]
    out += [
        f"Training: {training['steps']} steps on {training['world_size']} rank(s), ZeRO-{training['zero_stage']}, "
        f"{training['num_parameters']:,} params, {training['tokens_per_second']:.0f} tokens/s, "
        f"train loss {training['final_train_loss']:.3f}, val loss {training['val_loss'] or float('nan'):.3f}, "
        f"{training['seconds']:.1f} s in the training loop",
        "",
    ]

    registry = summary["registry"]
    base = summary["variants"]["base"]
    chains = {v["name"]: v for v in summary.get("compression", {}).get("variants", [])}
    rows = []
    for variant, metrics in summary["variants"].items():
        chain = chains.get(variant)
        steps = " -> ".join(step_label(r) for r in chain["steps"]) if chain else "trained"
        rows.append([
            variant, registry["versions"].get(variant, "-"), chain["parent"] if chain else "-", steps,
            f"{metrics['perplexity']:.2f}", f"{100 * (metrics['perplexity'] / base['perplexity'] - 1):+.1f}%",
            f"{_size(metrics['size_bytes'])} ({metrics['size_bytes'] / base['size_bytes']:.2f}x)",
            f"{metrics['latency_ms_per_token']:.2f} ({base['latency_ms_per_token'] / metrics['latency_ms_per_token']:.2f}x)",
        ])
    out += ["Model variants (x: against base)",
            *_table(["variant", "version", "from", "steps", "val ppl", "vs base", "size", "ms/token"], rows)]
    if summary.get("compression", {}).get("tradeoff_plot"):
        out += [f"trade-off plot: {summary['compression']['tradeoff_plot']} (MLflow: compression/)"]
    out += [""]

    out += [
        f"Registry: {registry['model_name']} version {registry['version']} ({registry['chosen']}) "
        f"-> alias '{registry['alias']}'",
        f"  why: {registry['reason']}",
        f"  champion is now version {registry['champion_version']}",
        f"  dataset (DVC md5) {summary['lineage']['dataset_dvc_md5']}, git {summary['lineage']['git_commit'][:12]}",
        f"Bento: {summary['bento']}",
        "",
        "Serve and query the champion:",
        "  conveyor serve" + ("" if summary["profile"] == "demo" else f" --profile {summary['profile']}"),
        f"  curl -s -X POST http://{summary['serving']['host']}:{summary['serving']['port']}/generate "
        "-H 'Content-Type: application/json' "
        "-d '{\"prompt\": \"It is a truth universally acknowledged\", \"max_new_tokens\": 20}'",
    ]
    return "\n".join(out)
