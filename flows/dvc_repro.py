"""`python -m flows.dvc_repro STAGE RAN_FILE`: `dvc repro --single-item STAGE` through DVC's Python
API, whose `Repo.reproduce` returns the stages it reproduced; their names go to RAN_FILE (JSON), so
the pipeline learns that DVC skipped an unchanged stage from DVC itself, not from a regex over its
log. A stage whose outputs DVC restored from its run cache counts as reproduced (its outputs in the
workspace changed).

A child process, as the `dvc repro` command was: a killed run takes it along, and its log lines
stream into the stage's Prefect log."""
from __future__ import annotations

import json
import sys
from pathlib import Path


def reproduce(stage: str, ran_file: Path) -> int:
    from dvc.exceptions import DvcException
    from dvc.repo import Repo

    try:
        with Repo() as repo:
            ran = repo.reproduce(stage, single_item=True, run_cache=True)
    except DvcException as exc:  # as DVC's CLI reports it: one line, no traceback
        print(f"ERROR: {exc}", file=sys.stderr)
        return 1
    ran_file.write_text(json.dumps([s.addressing for s in ran]))
    return 0


if __name__ == "__main__":
    if len(sys.argv) != 3:
        sys.exit("usage: python -m flows.dvc_repro STAGE RAN_FILE")
    sys.exit(reproduce(sys.argv[1], Path(sys.argv[2])))
