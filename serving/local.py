"""A real BentoML server on a free port, serving a model folder from the source tree (for tests
and benchmarks/serve_bench.py).

`served(tmp_path, model_dir, serving={...})` imports the folder into a BentoML store under
tmp_path, creates an API key (unless auth is "none"), starts `bentoml serve
serving.service:ConveyorLM` and yields a `Served` (base URL, key, paths of the key file, the
request log and the server's output). The server runs in its own session; the whole group is
stopped at the end.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path

from core.state import REPO_ROOT

READY_TIMEOUT_S = 90


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@dataclass
class Served:
    url: str
    key: str | None
    keys_file: Path
    request_log: Path
    output: Path
    process: subprocess.Popen

    def headers(self, key: str | None = "default") -> dict:
        key = self.key if key == "default" else key
        return {"Authorization": f"Bearer {key}"} if key else {}

    def request(self, method: str, path: str, payload=None, key: str | None = "default", raw: bytes | None = None,
                timeout: float = 60, headers: dict | None = None) -> tuple[int, dict, dict | str]:
        data = raw if raw is not None else (json.dumps(payload).encode() if payload is not None else None)
        request = urllib.request.Request(self.url + path, data=data, method=method,
                                         headers={"Content-Type": "application/json", **self.headers(key),
                                                  **(headers or {})})
        try:
            with urllib.request.urlopen(request, timeout=timeout) as response:
                return response.status, dict(response.headers), _decode(response.read())
        except urllib.error.HTTPError as error:
            return error.code, dict(error.headers), _decode(error.read())

    def server_output(self) -> str:
        return self.output.read_text(errors="replace")


def _decode(raw: bytes):
    try:
        return json.loads(raw)
    except ValueError:
        return raw.decode(errors="replace")


def import_folder(bentoml_home: Path, model_dir: Path, name: str, serving: dict | None,
                  labels: dict | None = None) -> str:
    """Import in a child process: BentoML fixes its home at first import."""
    script = (
        "import json, sys; from pathlib import Path; from serving.package import import_model; "
        "print(import_model(Path(sys.argv[1]), sys.argv[2], labels=json.loads(sys.argv[3]), "
        "metadata=json.loads(sys.argv[4])))"
    )
    from serving.config import ServingConfig

    metadata = {"serving": ServingConfig(**(serving or {})).runtime(), "lineage": {"parent_version": None}}
    labels = labels or {"registered_model": "conveyor-test", "version": "1", "variant": "base"}
    result = subprocess.run([sys.executable, "-c", script, str(model_dir), name, json.dumps(labels),
                             json.dumps(metadata)], cwd=REPO_ROOT, capture_output=True, text=True,
                            env={**os.environ, "BENTOML_HOME": str(bentoml_home)}, check=True)
    return result.stdout.strip().splitlines()[-1]


def wait_until_ready(url: str, server: subprocess.Popen, output: Path, timeout_s: float) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if server.poll() is not None:
            raise RuntimeError(f"bentoml serve exited with {server.returncode}:\n{output.read_text()[-3000:]}")
        try:
            with urllib.request.urlopen(url + "/readyz", timeout=2) as response:
                if response.status == 200:
                    return
        except OSError:
            pass
        time.sleep(0.25)
    raise TimeoutError(f"{url} not ready after {timeout_s} s:\n{output.read_text()[-3000:]}")


@contextlib.contextmanager
def served(tmp_path: Path, model_dir: Path, serving: dict | None = None, env: dict | None = None,
           labels: dict | None = None, shadow_dir: Path | None = None, stable_dir: Path | None = None):
    """`shadow_dir`: a second folder served as the challenger in shadow (version "2"). `stable_dir`: a
    second folder served as the previous champion (version "0") beside `model_dir`, the canary."""
    from serving.auth import KeyFile

    home = tmp_path / "bentoml"
    tag = import_folder(home, model_dir, "conveyor-lm-test", serving, labels)
    if shadow_dir is not None:
        env = {**(env or {}), "CONVEYOR_SHADOW_MODEL": import_folder(
            home, shadow_dir, "conveyor-lm-test", serving,
            {"registered_model": "conveyor-test", "version": "2", "variant": "challenger"})}
    if stable_dir is not None:
        env = {**(env or {}), "CONVEYOR_STABLE_MODEL": import_folder(
            home, stable_dir, "conveyor-lm-test", serving,
            {"registered_model": "conveyor-test", "version": "0", "variant": "base"})}
    keys_file = tmp_path / "api_keys.json"
    key = None
    if (serving or {}).get("auth", "api_key") == "api_key":
        _entry, key = KeyFile(keys_file).add("test")
    port = free_port()
    output = tmp_path / "server.log"
    request_log = tmp_path / "requests.jsonl"
    environment = {**os.environ, "BENTOML_HOME": str(home), "CONVEYOR_BENTO_MODEL": tag,
                   "CONVEYOR_API_KEYS": str(keys_file), "CONVEYOR_REQUEST_LOG": str(request_log), **(env or {})}
    with open(output, "wb") as sink:
        process = subprocess.Popen(
            [sys.executable, "-m", "bentoml", "serve", "serving.service:ConveyorLM", "--host", "127.0.0.1",
             "--port", str(port)], cwd=REPO_ROOT, env=environment, stdout=sink, stderr=subprocess.STDOUT,
            start_new_session=True)
    url = f"http://127.0.0.1:{port}"
    try:
        wait_until_ready(url, process, output, READY_TIMEOUT_S)
        yield Served(url, key, keys_file, request_log, output, process)
    finally:
        stop_server(process)


def stop_server(process: subprocess.Popen) -> None:
    """`bentoml serve` runs workers in its own session: stop the whole group it leads."""
    os.killpg(process.pid, signal.SIGTERM)
    try:
        process.wait(timeout=20)
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)
        process.wait()
