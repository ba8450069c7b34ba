"""Validate: check the anonymized records against a GX suite (`data.validate.suite`, by default
`configs/gx/curated.yaml`; a profile can name its own).

Each expectation of the suite has a severity. A `fail` expectation that fails raises
`ValidationFailed`, which names it, so the pipeline stops before a model is trained on data that
broke the contract; a `warn` expectation that fails is logged and counted, and the data goes on.
The report (`report.json` in the output folder) is written whether the data passes or not. It
holds counts only, and so do GX's own artifacts: the values that failed (e.g. a leaked e-mail
address) are never stored.

GX's full validation result (`<output>.gx-result.json`) and its Data Docs site
(`<output>.data-docs/index.html`) sit beside the output folder, not in it: they carry run times
and ids, and inside the output they would change its hash on every run (see core.stats).

Limit: the suite runs on one pandas DataFrame of every record's id and text, so the dataset
must fit in memory. Row-level expectations could run shard by shard, but uniqueness and row
counts are dataset-wide; at larger scale, run GX on a Spark or SQL data source instead.
"""

from __future__ import annotations

import json
import logging
import re
import shutil
import tempfile
from pathlib import Path

import yaml

from core.atomic import atomic_dir, atomic_write_text, beside, replace_dir
from core.config import ConfigError
from core.state import REPO_ROOT
from core.stats import StageStats
from data.config import ValidateConfig
from data.records import DataError
from data.shards import folder_bytes, read_records

REPORT_FILE = "report.json"
SEVERITIES = {"fail": "critical", "warn": "warning"}  # suite YAML -> GX's FailureSeverity
CONFIG_REFERENCE = re.compile(r"^\$\{(\w+)\}$")
# Summary fields of a GX result that are counts, never the offending values themselves.
OBSERVED_KEYS = ("element_count", "missing_count", "unexpected_count", "unexpected_percent", "observed_value")
# BASIC counts and percentages, without GX's sample of unexpected values (they may be personal data).
RESULT_FORMAT = {"result_format": "BASIC", "partial_unexpected_count": 0}

log = logging.getLogger(__name__)


class ValidationFailed(DataError):
    """The data broke the suite; the message lists each failing expectation."""


def gx_result_path(output_dir: Path) -> Path:
    """GX's full validation result, beside the output folder."""
    return beside(output_dir, ".gx-result.json")


def data_docs_dir(output_dir: Path) -> Path:
    """GX's Data Docs site (open index.html), beside the output folder."""
    return beside(output_dir, ".data-docs")


def load_suite(config: ValidateConfig) -> list[dict]:
    """The suite's expectations, with "${field}" values taken from `config` and a severity each."""
    path = Path(config.suite) if Path(config.suite).is_absolute() else REPO_ROOT / config.suite
    if not path.is_file():
        raise ConfigError(f"data.validate.suite: suite file not found: {config.suite}")
    entries = yaml.safe_load(path.read_text(encoding="utf-8"))
    if not isinstance(entries, list) or not all(isinstance(e, dict) and "type" in e for e in entries):
        raise ConfigError(f"{path}: expected a list of {{type: ..., kwargs: {{...}}, severity: fail|warn}} entries")
    for entry in entries:
        if entry.get("severity", "fail") not in SEVERITIES:
            raise ConfigError(f"{path}: {entry['type']}: severity must be one of {sorted(SEVERITIES)}, "
                              f"not {entry['severity']!r}")
    return [{"type": e["type"], "severity": e.get("severity", "fail"),
             "kwargs": {k: resolve(v, config, path) for k, v in (e.get("kwargs") or {}).items()}}
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


def run_suite(expectations: list[dict], frame, data_docs: Path | None = None) -> tuple[dict, dict]:
    """Run the expectations on a DataFrame with an in-memory GX context. Returns our report and
    GX's full result (JSON-ready); builds GX's Data Docs site into `data_docs` when given."""
    import great_expectations as gx
    from great_expectations.data_context.types.base import ProgressBarsConfig

    context = gx.get_context(mode="ephemeral")
    context.variables.progress_bars = ProgressBarsConfig(globally=False)
    if data_docs is not None:
        # An ephemeral context has no Data Docs site; this one renders the suite and its result
        # (kept in the context's in-memory store by `run`) as static HTML.
        context.add_data_docs_site(site_name="conveyor", site_config={
            "class_name": "SiteBuilder",
            "site_index_builder": {"class_name": "DefaultSiteIndexBuilder"},
            "store_backend": {"class_name": "TupleFilesystemStoreBackend", "base_directory": str(data_docs)},
        })
    batch = (context.data_sources.add_pandas("records").add_dataframe_asset("curated")
             .add_batch_definition_whole_dataframe("all"))
    suite = context.suites.add(gx.ExpectationSuite(name="curated"))
    for entry in expectations:
        suite.add_expectation(expectation_class(gx, entry["type"])(**entry["kwargs"],
                                                                  severity=SEVERITIES[entry["severity"]]))
    definition = context.validation_definitions.add(gx.ValidationDefinition(name="curated", data=batch, suite=suite))
    result = definition.run(batch_parameters={"dataframe": frame}, result_format=RESULT_FORMAT)
    if data_docs is not None:
        context.build_data_docs(site_names=["conveyor"])
    severity_of = {gx_name: name for name, gx_name in SEVERITIES.items()}
    outcomes = [
        {
            "type": outcome.expectation_config.type,
            "column": outcome.expectation_config.kwargs.get("column"),
            "severity": severity_of[str(getattr(outcome.expectation_config.severity, "value",
                                                outcome.expectation_config.severity))],
            "success": bool(outcome.success),
            "observed": {k: outcome.result[k] for k in OBSERVED_KEYS if k in outcome.result},
        }
        for outcome in result.results
    ]
    report = {
        "success": all(o["success"] for o in outcomes if o["severity"] == "fail"),
        "records": len(frame),
        "failed": sum(not o["success"] and o["severity"] == "fail" for o in outcomes),
        "warned": sum(not o["success"] and o["severity"] == "warn" for o in outcomes),
        "expectations": outcomes,
    }
    return report, result.to_json_dict()


def describe(report: dict, severity: str) -> str:
    return "; ".join(f"{e['type']}({e['column']}): {e['observed'].get('unexpected_count', '?')} unexpected"
                     for e in report["expectations"] if not e["success"] and e["severity"] == severity)


def run(config: ValidateConfig, input_dir: Path, output_dir: Path, workers: int = 1) -> StageStats:
    """`workers` is unused (one pass over the records, in GX); it keeps every stage alike (data.stages)."""
    import pandas as pd

    expectations = load_suite(config)
    # Absolute: GX refuses a relative Data Docs folder, and DVC hands stages relative paths.
    output_dir = Path(output_dir).resolve()
    docs = data_docs_dir(output_dir)
    stats = StageStats(stage="validate", bytes_in=folder_bytes(input_dir))
    output_dir.parent.mkdir(parents=True, exist_ok=True)
    docs_tmp = Path(tempfile.mkdtemp(dir=output_dir.parent, prefix=f".{docs.name}.", suffix=".tmp"))
    try:
        with atomic_dir(output_dir) as tmp:
            with stats.timed():
                frame = pd.DataFrame([{"id": r.get("id"), "text": r.get("text")} for r in read_records(input_dir)],
                                     columns=["id", "text"])
                report, gx_result = run_suite(expectations, frame, docs_tmp if config.data_docs else None)
            atomic_write_text(tmp / REPORT_FILE, json.dumps(report, indent=2, default=str))
        atomic_write_text(gx_result_path(output_dir), json.dumps(gx_result, indent=2, default=str))
        if config.data_docs:
            replace_dir(docs_tmp, docs)
        elif docs.exists():
            shutil.rmtree(docs)  # an older run's docs would describe other data
    finally:
        shutil.rmtree(docs_tmp, ignore_errors=True)
    log.info("GX result: %s; Data Docs: %s", gx_result_path(output_dir),
             docs / "index.html" if config.data_docs else "off")
    stats.records_in = stats.records_out = len(frame)
    stats.extra.update(success=int(report["success"]), expectations=len(expectations),
                       failed_expectations=report["failed"], warned_expectations=report["warned"])
    if report["warned"]:
        log.warning("validation warnings: %s", describe(report, "warn"))
    if not report["success"]:
        where = f" (Data Docs: {docs / 'index.html'})" if config.data_docs else ""
        raise ValidationFailed(f"validation failed: {describe(report, 'fail')}{where}")
    stats.write(output_dir)
    return stats
