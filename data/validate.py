"""Validate: check the anonymized records against the GX suite in `configs/gx/curated.yaml`.

The report (`report.json`) is written whether the data passes or not; then a failure raises
`ValidationFailed`, which names every failing expectation, so the pipeline stops before a
model is trained on data that broke the contract. The report holds counts only: the values
that failed (e.g. a leaked e-mail address) are never stored.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import yaml

from core.atomic import atomic_dir, atomic_write_text
from core.config import ConfigError
from core.state import REPO_ROOT
from core.stats import StageStats
from data.config import ValidateConfig
from data.records import DataError
from data.shards import folder_bytes, read_records

REPORT_FILE = "report.json"
CONFIG_REFERENCE = re.compile(r"^\$\{(\w+)\}$")
# Summary fields of a GX result that are counts, never the offending values themselves.
OBSERVED_KEYS = ("element_count", "missing_count", "unexpected_count", "unexpected_percent", "observed_value")


class ValidationFailed(DataError):
    """The data broke the suite; the message lists each failing expectation."""


def load_suite(config: ValidateConfig) -> list[dict]:
    """The suite's expectations, with "${field}" values taken from `config`."""
    path = Path(config.suite) if Path(config.suite).is_absolute() else REPO_ROOT / config.suite
    if not path.is_file():
        raise ConfigError(f"data.validate.suite: suite file not found: {config.suite}")
    entries = yaml.safe_load(path.read_text(encoding="utf-8"))
    if not isinstance(entries, list) or not all(isinstance(e, dict) and "type" in e for e in entries):
        raise ConfigError(f"{path}: expected a list of {{type: ..., kwargs: {{...}}}} entries")
    return [{"type": e["type"], "kwargs": {k: resolve(v, config, path) for k, v in (e.get("kwargs") or {}).items()}}
            for e in entries]


def resolve(value, config: ValidateConfig, suite_path: Path):
    match = CONFIG_REFERENCE.match(value) if isinstance(value, str) else None
    if match is None:
        return value
    field = match.group(1)
    if field not in ValidateConfig.model_fields:
        raise ConfigError(f"{suite_path}: {value} names no data.validate field")
    return getattr(config, field)


def expectation_class(gx, name: str):
    class_name = "".join(part.capitalize() for part in name.split("_"))
    cls = getattr(gx.expectations, class_name, None)
    if cls is None:
        raise ConfigError(f"unknown GX expectation {name!r} in the suite")
    return cls


def run_suite(expectations: list[dict], frame) -> dict:
    """Run the expectations on a DataFrame with an in-memory GX context; return the report."""
    import great_expectations as gx
    from great_expectations.data_context.types.base import ProgressBarsConfig

    context = gx.get_context(mode="ephemeral")
    context.variables.progress_bars = ProgressBarsConfig(globally=False)
    batch = (context.data_sources.add_pandas("records").add_dataframe_asset("curated")
             .add_batch_definition_whole_dataframe("all"))
    suite = context.suites.add(gx.ExpectationSuite(name="curated"))
    for entry in expectations:
        suite.add_expectation(expectation_class(gx, entry["type"])(**entry["kwargs"]))
    definition = context.validation_definitions.add(gx.ValidationDefinition(name="curated", data=batch, suite=suite))
    result = definition.run(batch_parameters={"dataframe": frame}, result_format="BASIC")
    return {
        "success": bool(result.success),
        "records": len(frame),
        "expectations": [
            {
                "type": outcome.expectation_config.type,
                "column": outcome.expectation_config.kwargs.get("column"),
                "success": bool(outcome.success),
                "observed": {k: outcome.result[k] for k in OBSERVED_KEYS if k in outcome.result},
            }
            for outcome in result.results
        ],
    }


def describe_failures(report: dict) -> str:
    failures = [f"{e['type']}({e['column']}): {e['observed'].get('unexpected_count', '?')} unexpected"
                for e in report["expectations"] if not e["success"]]
    return "validation failed: " + "; ".join(failures)


def run(config: ValidateConfig, input_dir: Path, output_dir: Path) -> StageStats:
    import pandas as pd

    expectations = load_suite(config)
    stats = StageStats(stage="validate", bytes_in=folder_bytes(input_dir))
    with atomic_dir(output_dir) as tmp:
        with stats.timed():
            frame = pd.DataFrame([{"id": r.get("id"), "text": r.get("text")} for r in read_records(input_dir)],
                                 columns=["id", "text"])
            report = run_suite(expectations, frame)
        stats.records_in = stats.records_out = len(frame)
        failed = sum(not e["success"] for e in report["expectations"])
        stats.extra.update(success=int(report["success"]), expectations=len(expectations),
                           failed_expectations=failed)
        atomic_write_text(tmp / REPORT_FILE, json.dumps(report, indent=2, default=str))
    if not report["success"]:
        raise ValidationFailed(describe_failures(report))
    stats.write(output_dir)
    return stats
