"""Helpers for the end-to-end tests: a fresh copy of the checkout, and the CLI run inside it."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from core.state import REPO_ROOT, TELEMETRY_OFF


def git(cwd: Path, *args: str) -> str:
    return subprocess.run(["git", *args], cwd=cwd, check=True, capture_output=True, text=True).stdout


def make_checkout(root: Path) -> Path:
    """Copy the working tree (tracked and untracked, not ignored files) into `root` as a new git
    repo: what a fresh clone of this tree would hold, uncommitted edits included."""
    files = git(REPO_ROOT, "ls-files", "-co", "--exclude-standard", "-z").split("\0")
    for name in filter(None, files):
        if name == "dvc.lock":  # the last local run's record, not part of a fresh clone
            continue
        source = REPO_ROOT / name
        if source.is_file():
            (root / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(source, root / name)
    git(root, "init", "-q")
    git(root, "add", "-A")
    git(root, "-c", "user.name=t", "-c", "user.email=t@t", "commit", "-qm", "snapshot")
    return root


def checkout_env(checkout: Path) -> dict[str, str]:
    """This environment less any pointer at services or state, with the copy's code first."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PREFECT_", "MLFLOW_", "BENTOML_", "CONVEYOR_"))}
    env.update(TELEMETRY_OFF)
    env["PYTHONPATH"] = str(checkout)
    env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env['PATH']}"
    return env


CLI_OUTPUT_LOG = ".cli-output.log"  # in the checkout, beside (not in) its state root


def run_conveyor(checkout: Path, *args: str, check: bool = True, timeout: float = 1200,
                 env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    result = subprocess.run([sys.executable, "-m", "flows.cli", *args], cwd=checkout,
                            env={**checkout_env(checkout), **(env or {})},
                            capture_output=True, text=True, timeout=timeout)
    with open(checkout / CLI_OUTPUT_LOG, "a", encoding="utf-8") as log:  # what a user saw, for the leak test
        log.write(f"$ conveyor {' '.join(args)}\n{result.stdout}\n{result.stderr}\n")
    if check and result.returncode != 0:
        pytest.fail(f"conveyor {' '.join(args)} failed ({result.returncode}):\n"
                    f"{result.stdout[-4000:]}\n{result.stderr[-6000:]}")
    return result
