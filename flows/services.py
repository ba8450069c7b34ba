"""Local services for `conveyor up` / `conveyor down`: a Prefect server and an MLflow server on
127.0.0.1, plus the process serving our deployments. Each runs in its own session (so `down`
stops its whole process group) with a record in <state>/services/<name>.json.

While a service is up, Conveyor's commands use it (PREFECT_API_URL, MLFLOW_TRACKING_URI) unless
the user already points those variables elsewhere.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import urllib.request
from dataclasses import dataclass
from pathlib import Path

from core.state import REPO_ROOT, State


@dataclass(frozen=True)
class Service:
    name: str
    command: list[str]
    url: str
    health: str
    env_var: str | None  # the client variable that points at it
    env_value: str | None


def prefect_service(state: State, port: int) -> Service:
    url = f"http://127.0.0.1:{port}"
    cmd = [_bin("prefect"), "server", "start", "--host", "127.0.0.1", "--port", str(port)]
    return Service("prefect", cmd, url, f"{url}/api/health", "PREFECT_API_URL", f"{url}/api")


def mlflow_service(state: State, port: int) -> Service:
    url = f"http://127.0.0.1:{port}"
    cmd = [
        _bin("mlflow"), "server",
        "--backend-store-uri", f"sqlite:///{state.mlflow_dir / 'mlflow.db'}",
        "--artifacts-destination", str(state.mlflow_dir / "artifacts"),
        "--host", "127.0.0.1", "--port", str(port), "--workers", "1",
    ]
    return Service("mlflow", cmd, url, f"{url}/health", "MLFLOW_TRACKING_URI", url)


def _bin(name: str) -> str:
    return str(Path(sys.executable).parent / name)


def _record_path(state: State, name: str) -> Path:
    return state.services / f"{name}.json"


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def running(state: State) -> dict[str, dict]:
    """Records of the services that are up; stale records (dead pids) are removed."""
    found = {}
    if not state.services.is_dir():
        return found
    for path in sorted(state.services.glob("*.json")):
        record = json.loads(path.read_text())
        if _alive(record["pid"]):
            found[record["name"]] = record
        else:
            path.unlink(missing_ok=True)
    return found


def client_env(state: State) -> dict[str, str]:
    """Variables that point clients at running services (user-set variables win)."""
    env = {}
    for record in running(state).values():
        var = record.get("env_var")
        if var and var not in os.environ:
            env[var] = record["env_value"]
    return env


def _healthy(url: str) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=2) as response:
            return response.status == 200
    except OSError:
        return False


def start(state: State, service: Service, extra_env: dict[str, str] | None = None,
          timeout_s: float = 90) -> dict:
    """Start `service` in the background unless it is already up; wait until healthy."""
    up = running(state)
    if service.name in up:
        return up[service.name]
    state.services.mkdir(parents=True, exist_ok=True)
    log_path = state.services / f"{service.name}.log"
    env = {**os.environ, **state.service_env(), **(extra_env or {})}
    with log_path.open("ab") as log:
        process = subprocess.Popen(service.command, cwd=REPO_ROOT, env=env, stdout=log,
                                   stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                   start_new_session=True)
    record = {"name": service.name, "pid": process.pid, "url": service.url, "log": str(log_path),
              "env_var": service.env_var, "env_value": service.env_value}
    deadline = time.monotonic() + timeout_s
    while not _healthy(service.health):
        if process.poll() is not None:
            raise RuntimeError(f"{service.name} exited with code {process.returncode}; see {log_path}")
        if time.monotonic() > deadline:
            _kill_group(process.pid)
            raise RuntimeError(f"{service.name} not healthy after {timeout_s:.0f} s; see {log_path}")
        time.sleep(0.5)
    _record_path(state, service.name).write_text(json.dumps(record, indent=2))
    return record


def start_process(state: State, name: str, command: list[str], extra_env: dict[str, str]) -> dict:
    """Start a long-running background process that has no health endpoint (deployments)."""
    up = running(state)
    if name in up:
        return up[name]
    state.services.mkdir(parents=True, exist_ok=True)
    log_path = state.services / f"{name}.log"
    env = {**os.environ, **state.service_env(), **extra_env}
    with log_path.open("ab") as log:
        process = subprocess.Popen(command, cwd=REPO_ROOT, env=env, stdout=log, stderr=subprocess.STDOUT,
                                   stdin=subprocess.DEVNULL, start_new_session=True)
    record = {"name": name, "pid": process.pid, "url": None, "log": str(log_path),
              "env_var": None, "env_value": None}
    _record_path(state, name).write_text(json.dumps(record, indent=2))
    return record


def _kill_group(pid: int, timeout_s: float = 15) -> None:
    try:
        os.killpg(pid, signal.SIGTERM)
    except ProcessLookupError:
        return
    deadline = time.monotonic() + timeout_s
    while _alive(pid) and time.monotonic() < deadline:
        try:
            os.waitpid(pid, os.WNOHANG)
        except ChildProcessError:
            pass
        time.sleep(0.2)
    if _alive(pid):
        os.killpg(pid, signal.SIGKILL)


def stop_all(state: State) -> list[str]:
    stopped = []
    # Deployments first: they talk to the Prefect server.
    for name, record in sorted(running(state).items(), key=lambda item: item[0] != "deployments"):
        _kill_group(record["pid"])
        _record_path(state, name).unlink(missing_ok=True)
        stopped.append(name)
    return stopped
