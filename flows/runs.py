"""Run records: which process owns a pipeline run, and what becomes of a run whose process died.

Every pipeline run keeps `<run folder>/run.json` current: its owner (host, pid and the pid's start
time, so a reused pid is not mistaken for it), a heartbeat, its Prefect flow run and MLflow run,
and the key of what it builds (config, code, data). A run killed anywhere (SIGKILL, OOM, reboot)
leaves the record at "running" with a dead owner. The next pipeline start, and `conveyor status`,
call `recover()`, which for each such run:

- sets its Prefect flow run to Crashed (Cancelled if a cancel was asked for) and its MLflow run to
  KILLED, with the reason as a tag: no "Running" leftovers;
- deletes the registry versions it registered before it committed (the alias move is the commit),
  putting back an alias it had moved: a version stays in the registry only if its run got that far;
- leaves its folder, so the next run of the same config, code and data adopts it (`adopt()`):
  training continues from its last checkpoint and finished stages are not run again.

The record is ours, not Prefect's: it works the same with Prefect's temporary API (no server to
notice a dead process) and with a server, where Prefect's own heartbeats also mark zombies.
"""

from __future__ import annotations

import _thread
import json
import logging
import os
import signal
import socket
import threading
import time
from pathlib import Path
from typing import Literal

from pydantic import BaseModel

from core.atomic import atomic_write_text

logger = logging.getLogger(__name__)

RECORD_FILE = "run.json"
HEARTBEAT_SECONDS = float(os.environ.get("CONVEYOR_HEARTBEAT_SECONDS", "30"))
# A run on another host (a work pool, a shared state root) is taken for dead when its heartbeat is
# this old; on this host the pid decides at once.
STALE_SECONDS = 600.0
# What a resumed run takes over from the run it continues: the trained model and its checkpoints,
# the tokenizer, compressed variants, per-variant metrics.
ADOPTED = ("tokenizer", "model", "metrics", "compression_variants.json")

Status = Literal["running", "completed", "failed", "crashed", "cancelled", "unchanged", "adopted"]


class RunRecord(BaseModel):
    run_name: str
    status: Status = "running"
    host: str
    pid: int
    pid_started: int | None  # the kernel's start time of `pid`, in clock ticks since boot
    heartbeat: float
    prefect_flow_run_id: str | None = None
    mlflow_run_id: str | None = None
    model_name: str
    key: dict[str, str] = {}  # config_sha256, git_commit, dataset_dvc_md5 once versioned
    committed: bool = False  # the alias moved: its registry versions are its result
    registry: dict | None = None  # the register step's result, once committed
    resumed_from: str | None = None  # the run folder this one adopted
    prefect_api: str | None = None  # the API its flow run is on (a temporary one's address changes)
    note: str | None = None  # why it ended as it did

    @classmethod
    def read(cls, run_dir: Path) -> "RunRecord | None":
        path = Path(run_dir) / RECORD_FILE
        try:
            return cls.model_validate_json(path.read_text())
        except (OSError, ValueError):
            return None

    def write(self, run_dir: Path) -> None:
        atomic_write_text(Path(run_dir) / RECORD_FILE, self.model_dump_json(indent=2))


def _proc_started(pid: int) -> int | None:
    """Field 22 of /proc/<pid>/stat (after the parenthesised command, which may hold spaces)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    return int(stat.rsplit(")", 1)[1].split()[19])


def owner_alive(record: RunRecord, now: float | None = None) -> bool:
    if record.host != socket.gethostname():
        return (now or time.time()) - record.heartbeat < STALE_SECONDS
    try:
        os.kill(record.pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        pass
    started = _proc_started(record.pid)
    return started is None or record.pid_started is None or started == record.pid_started


class RunLedger:
    """This process's record of the run in `run_dir`, with a heartbeat thread while it runs."""

    def __init__(self, run_dir: Path, record: RunRecord):
        self.run_dir = Path(run_dir)
        self.record = record
        self.cancelled = False
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    @classmethod
    def start(cls, run_dir: Path, run_name: str, model_name: str, **fields) -> "RunLedger":
        record = RunRecord(run_name=run_name, host=socket.gethostname(), pid=os.getpid(),
                           pid_started=_proc_started(os.getpid()), heartbeat=time.time(),
                           model_name=model_name, **fields)
        ledger = cls(run_dir, record)
        ledger.save()
        _make_interruptible()
        ledger._thread = threading.Thread(target=ledger._beat, name="conveyor-heartbeat", daemon=True)
        ledger._thread.start()
        return ledger

    def update(self, **fields) -> None:
        with self._lock:
            self.record = self.record.model_copy(update=fields)
            self.record.write(self.run_dir)

    def save(self) -> None:
        self.update(heartbeat=time.time())

    def finish(self, status: Status, note: str | None = None) -> None:
        self._stop.set()
        self.update(status=status, note=note, heartbeat=time.time())

    def _beat(self) -> None:
        while not self._stop.wait(HEARTBEAT_SECONDS):
            try:
                self.save()
            except OSError as exc:  # a full disk must not kill the run; the next beat tries again
                logger.warning("run record %s not updated: %s", self.run_dir / RECORD_FILE, exc)
            if self._cancel_requested():
                # `prefect flow-run cancel` (or the UI's Cancel) on a run no worker watches, such as
                # `conveyor run`'s: stop the run as Ctrl-C would; the flow ends it as Cancelled.
                logger.warning("run %s: cancel requested in Prefect; stopping", self.record.run_name)
                self.cancelled = True
                self._stop.set()
                _thread.interrupt_main()

    def stopped_by_cancel(self, exc: BaseException) -> bool:
        """Whether `exc`, which ends the run, is a cancel: the heartbeat's interrupt, or the SIGTERM
        (Prefect's TerminationSignal) with which a worker stops a flow run cancelled in Prefect."""
        if self.cancelled:
            return True
        from prefect.exceptions import TerminationSignal

        if isinstance(exc, TerminationSignal) and self._cancel_requested(("CANCELLING", "CANCELLED")):
            self.cancelled = True
        return self.cancelled

    def _cancel_requested(self, states: tuple[str, ...] = ("CANCELLING",)) -> bool:
        if not (self.record.prefect_flow_run_id and self.record.prefect_api):
            return False
        from prefect.client.orchestration import get_client
        from prefect.client.schemas.objects import StateType
        from prefect.settings import PREFECT_API_URL, temporary_settings

        try:  # settings are per context, and a new thread starts from the defaults: name the API
            with temporary_settings(updates={PREFECT_API_URL: self.record.prefect_api}), \
                    get_client(sync_client=True) as client:
                state = client.read_flow_run(self.record.prefect_flow_run_id).state
        except Exception as exc:  # noqa: BLE001 - the API away for a moment: ask again next beat
            logger.debug("flow run state not read: %s", exc)
            return False
        return state is not None and state.type in [StateType(s) for s in states]


def _make_interruptible() -> None:
    """A cancel reaches the run as `_thread.interrupt_main()`, which does nothing while SIGINT is
    ignored: the state a process started in the background by a non-interactive shell (`cmd &` in a
    script, nohup under it) inherits, and then the cancel was never seen. Give SIGINT Python's
    handler for the run (only the main thread may; a flow run always starts in it)."""
    if threading.current_thread() is threading.main_thread() and \
            signal.getsignal(signal.SIGINT) in (signal.SIG_IGN, signal.SIG_DFL, None):
        signal.signal(signal.SIGINT, signal.default_int_handler)


def records(runs_root: Path) -> list[tuple[Path, RunRecord]]:
    """Every run folder with a record, oldest first (folder names start with the start time)."""
    found = []
    for run_dir in sorted(Path(runs_root).glob("*/")):
        record = RunRecord.read(run_dir)
        if record is not None:
            found.append((run_dir, record))
    return found


def recover(runs_root: Path) -> list[str]:
    """End every run whose owner died (see the module's docstring); returns one line per run."""
    lines = []
    for run_dir, record in records(runs_root):
        if record.status != "running" or owner_alive(record):
            continue
        cancelled = _end_prefect_run(record)
        note = (f"{'cancelled' if cancelled else 'crashed'}: its process (pid {record.pid} on {record.host}) "
                f"ended without finishing; marked at {time.strftime('%Y-%m-%dT%H:%M:%SZ', time.gmtime())}")
        _end_mlflow_run(record, note)
        undone = [] if record.committed else undo_registration(record)
        record = record.model_copy(update={"status": "cancelled" if cancelled else "crashed", "note": note})
        record.write(run_dir)
        line = f"run {record.run_name} {note.split(':')[0]} (process gone): Prefect and MLflow runs ended"
        if undone:
            line += f"; versions {', '.join(undone)} of {record.model_name} it registered were removed"
        logger.warning("%s", line)
        lines.append(line)
    return lines


def _end_prefect_run(record: RunRecord) -> bool:
    """Crashed, or Cancelled when someone asked to cancel it; returns whether it was cancelled."""
    if not record.prefect_flow_run_id:
        return False
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.objects import StateType
    from prefect.exceptions import ObjectNotFound
    from prefect.states import Cancelled, Crashed

    with get_client(sync_client=True) as client:
        try:
            flow_run = client.read_flow_run(record.prefect_flow_run_id)
        except ObjectNotFound:
            return False
        current = flow_run.state.type if flow_run.state else None
        if current == StateType.CANCELLING:
            client.set_flow_run_state(flow_run.id, Cancelled(message="cancelled; its process is gone"), force=True)
            return True
        if current in (StateType.RUNNING, StateType.PENDING, StateType.SCHEDULED, None):
            client.set_flow_run_state(flow_run.id, Crashed(
                message=f"the process running it (pid {record.pid} on {record.host}) died"), force=True)
        return current == StateType.CANCELLED


def _end_mlflow_run(record: RunRecord, note: str) -> None:
    if not record.mlflow_run_id:
        return
    import mlflow
    from mlflow.exceptions import MlflowException

    client = mlflow.MlflowClient()
    try:
        run = client.get_run(record.mlflow_run_id)
    except MlflowException:
        return
    if run.info.status in ("RUNNING", "SCHEDULED"):
        client.set_tag(record.mlflow_run_id, "conveyor.crashed", note)
        client.set_terminated(record.mlflow_run_id, "KILLED")


def undo_registration(record: RunRecord) -> list[str]:
    """Delete the versions a run registered before it committed; an alias it had moved goes back to
    the version it named before (from the audit history)."""
    if not record.mlflow_run_id:
        return []
    import mlflow
    from mlflow.exceptions import MlflowException

    from core import registry

    client = mlflow.MlflowClient()
    try:
        versions = client.search_model_versions(f"name='{record.model_name}'")
    except MlflowException:
        return []
    mine = sorted((v for v in versions if v.tags.get("conveyor.mlflow_run_id") == record.mlflow_run_id),
                  key=lambda v: int(v.version))
    numbers = {str(v.version) for v in mine}
    for alias in ("champion", "challenger"):
        holder = registry.get_by_alias(record.model_name, alias)
        if holder is None or holder.version not in numbers:
            continue
        previous = next((move.previous_version for move in reversed(registry.history(record.model_name))
                         if move.alias == alias and move.version == holder.version), None)
        if previous and previous not in numbers:
            registry.set_alias(record.model_name, alias, previous,
                               f"run {record.run_name} died before it finished: back to version {previous}",
                               action="recover", evidence={"run": record.run_name, "removed": sorted(numbers)})
        else:
            client.delete_registered_model_alias(record.model_name, alias)
    for version in mine:
        client.delete_model_version(record.model_name, version.version)
    return [str(v.version) for v in mine]


def same_key(record: RunRecord, key: dict[str, str]) -> bool:
    return all(record.key.get(name) == value for name, value in key.items()) and bool(key)


def adoptable(runs_root: Path, key: dict[str, str], exclude: Path) -> tuple[Path, RunRecord] | None:
    """The newest crashed or failed run with this key whose outputs a new run can continue from."""
    for run_dir, record in reversed(records(runs_root)):
        if run_dir.resolve() == Path(exclude).resolve():
            continue
        if record.status in ("crashed", "failed", "cancelled") and same_key(record, key) and \
                any((run_dir / name).exists() for name in ADOPTED):
            return run_dir, record
    return None


def adopt(source: Path, target: Path) -> list[str]:
    """Move the finished parts of run folder `source` into `target` (renames: same file system)."""
    moved = []
    for name in ADOPTED:
        if (source / name).exists() and not (target / name).exists():
            os.replace(source / name, target / name)
            moved.append(name)
    return moved


def unchanged_since(runs_root: Path, key: dict[str, str], exclude: Path) -> tuple[Path, dict] | None:
    """The newest completed run with this key, and its summary, if its versions are still registered."""
    from core import registry

    for run_dir, record in reversed(records(runs_root)):
        if run_dir.resolve() == Path(exclude).resolve() or record.status != "completed" or not same_key(record, key):
            continue
        summary_file = run_dir / "summary.json"
        if not summary_file.is_file():
            continue
        summary = json.loads(summary_file.read_text())
        versions = (summary.get("registry") or {}).get("versions", {})
        try:
            for version in versions.values():
                registry.get_version(record.model_name, version)
        except Exception:  # noqa: BLE001 - a deleted version: that run's result is gone, train again
            continue
        return run_dir, summary
    return None
