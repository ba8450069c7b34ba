"""`python -m data STAGE [--input DIR] --output DIR --params FILE [--set key=value ...]`

The command DVC runs for each data stage (see dvc.yaml). The params file is the whole resolved
pipeline config; a stage reads its own section `data.<stage>`, and `--set` overrides keys of
that section (`--set min_chars=50`). Expected failures (a missing file, a bad config, data that
fails validation) print one clear message and exit 1.
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

from pydantic import BaseModel, ValidationError

from core.config import ConfigError, apply_overrides, format_validation_error, load_yaml
from core.stats import StageStats
from data.records import DataError
from data.stages import STAGES


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m data", description="Run one data curation stage.")
    parser.add_argument("stage", choices=list(STAGES))
    parser.add_argument("--input", type=Path, help="output folder of the previous stage (all stages but ingest)")
    parser.add_argument("--output", type=Path, required=True, help="folder to write, replaced atomically")
    parser.add_argument("--params", type=Path, required=True, help="pipeline config YAML (e.g. .conveyor/params.yaml)")
    parser.add_argument("--workers", type=int, default=os.cpu_count() or 1,
                        help="worker processes for sharded stages (default: all cores); output is the same")
    parser.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                        help="override a key of the stage's section, e.g. --set min_chars=50")
    return parser.parse_args(argv)


def stage_config(stage: str, params: Path, overrides: list[str]) -> BaseModel:
    section = load_yaml(params).get("data", {}).get(stage, {})
    if not isinstance(section, dict):
        raise ConfigError(f"{params}: data.{stage} must be a mapping")
    try:
        return STAGES[stage].config_model.model_validate(apply_overrides(dict(section), overrides))
    except ValidationError as exc:
        raise ConfigError(f"data.{stage}: {format_validation_error(exc)}") from None


def summary(stats: StageStats) -> str:
    dropped = ", ".join(f"{reason}={count}" for reason, count in sorted(stats.dropped.items())) or "none"
    return (f"{stats.stage}: {stats.records_in} in, {stats.records_out} out, dropped: {dropped}, "
            f"{stats.seconds:.2f} s")


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if args.stage != "ingest" and args.input is None:
        print(f"error: {args.stage} needs --input (the previous stage's output folder)", file=sys.stderr)
        return 1
    try:
        config = stage_config(args.stage, args.params, args.overrides)
        stats = STAGES[args.stage].run(config, args.input, args.output, args.workers)
    except (ConfigError, FileNotFoundError, DataError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    print(summary(stats))
    return 0


if __name__ == "__main__":
    sys.exit(main())
