"""The launcher: torchrun starting training.train's ranks on this node (or this node's share of a
hostfile's), their output passed to the log, and a progress bar that follows rank 0's train log.

`run` returns small things (the model folder and the numbers from its result.json). Nothing heavy
is imported here: flows import the training package to build the CLI.
"""

from __future__ import annotations

import json
import logging
import os
import re
import subprocess
import sys
import tempfile
import threading
import time
from collections import deque
from contextlib import nullcontext
from pathlib import Path
from typing import Callable

from pydantic import BaseModel

from training.checkpoint import checkpoint_dir
from training.config import TrainingConfig
from training.metrics import TRAIN_LOG

logger = logging.getLogger("training")

# The code the ranks run is the code this process imported, wherever the checkout is.
PACKAGE_ROOT = Path(__file__).resolve().parent.parent
OUTPUT_TAIL_LINES = 40
# torchrun's own report of a failed rank starts with a line like
# "E1205 00:09:04.279 26492 .../elastic/multiprocessing/api.py:1002] failed (exitcode: -6) local_rank: 1"
# and runs to ~35 lines: the ranks' last lines before it are kept apart so the message shows both.
TORCHRUN_REPORT = re.compile(r"elastic/multiprocessing/api\.py:\d+\] failed \(exitcode")


class TrainingFailed(RuntimeError):
    """The launcher or a rank exited non-zero; the message ends with the last lines they printed."""


class HostfileError(ValueError):
    """A hostfile that cannot be read, or a node rank it has no line for."""


class TrainResult(BaseModel):
    model_dir: Path
    steps: int
    resumed_from_step: int = 0
    skipped_batches: int = 0
    final_train_loss: float
    val_loss: float | None  # the exported model's
    exported_step: int | None = None  # the step the exported weights are from (export_best: the best one's)
    tokens_seen: int
    tokens_per_second: float
    seconds: float
    seconds_per_step: float
    num_parameters: int
    trainable_parameters: int | None = None
    flops_per_token: int | None = None  # training FLOPs per token, as MFU counts them
    init_from: str | None = None
    lora: bool = False
    distill: dict | None = None  # {teacher, temperature, alpha} of a distilled run
    dp: dict | None = None  # differential privacy: epsilon spent, delta, noise multiplier... (training.privacy)
    world_size: int
    zero_stage: int
    peak_memory_bytes: int | None = None


def rank_env(config: TrainingConfig, env: dict | None) -> dict[str, str]:
    train = config.train
    rank_env = dict(os.environ)
    rank_env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(PACKAGE_ROOT), os.environ.get("PYTHONPATH")]))
    rank_env["PYTHONUNBUFFERED"] = "1"  # lines reach the log as they are printed
    # A rank killed by a signal (an abort in C++, a segfault) prints its Python stack first.
    rank_env["PYTHONFAULTHANDLER"] = "1"
    rank_env["DS_ACCELERATOR"] = train.device
    if train.device == "cpu":
        # One thread per rank: measured on 2 cores, even a single rank with 2 threads ran
        # 4x slower per step (1.1 vs 0.25 s) once other processes shared the cores.
        rank_env["OMP_NUM_THREADS"] = "1"
    rank_env.update({key: str(value) for key, value in (env or {}).items()})
    return rank_env


def read_hostfile(path: Path) -> list[tuple[str, int]]:
    """(host, slots) per line of a hostfile in DeepSpeed's format (OpenMPI's too): `HOST slots=N`;
    blank lines and `#` comments are skipped. The first host is node 0."""
    # Not deepspeed.launcher.runner.fetch_hostfile (tried for issue 13): it matches a line's prefix
    # only (`node-a slots=8 gpus=2` passes, `gpus=2` ignored), takes slots=0, names no line, logs the
    # whole file at ERROR, and importing deepspeed costs the CLI seconds before torchrun starts.
    try:
        lines = Path(path).read_text().splitlines()
    except OSError as exc:
        raise HostfileError(f"hostfile {path}: {exc.strerror}") from exc
    hosts: dict[str, int] = {}
    for number, line in enumerate(lines, 1):
        line = line.split("#", 1)[0].strip()
        if not line:
            continue
        match = re.fullmatch(r"(\S+)\s+slots=([0-9]+)", line)
        if not match or int(match[2]) < 1:
            raise HostfileError(f"hostfile {path} line {number}: expected 'HOST slots=N' with N >= 1, got {line!r}")
        if match[1] in hosts:
            raise HostfileError(f"hostfile {path} line {number}: host {match[1]} is listed twice")
        hosts[match[1]] = int(match[2])
    if not hosts:
        raise HostfileError(f"hostfile {path} lists no hosts")
    return list(hosts.items())


def launcher_args(config: TrainingConfig, node_rank: int = 0) -> list[str]:
    """torchrun's arguments for this node: all ranks here, or this node's share of a hostfile's."""
    train = config.train
    if train.hostfile is None:
        if node_rank:
            raise HostfileError(f"node rank {node_rank} needs training.train.hostfile (the job's nodes)")
        # --standalone: a single-node rendezvous on a free local port it picks itself.
        return ["--standalone", "--nproc_per_node", str(train.num_ranks)]
    hosts = read_hostfile(train.hostfile)
    if not 0 <= node_rank < len(hosts):
        raise HostfileError(f"node rank {node_rank} is not in {train.hostfile}: its {len(hosts)} hosts are "
                            f"node ranks 0 to {len(hosts) - 1}")
    # Static rendezvous: the hostfile fixes the nodes and --node_rank orders them, so node 0 (the
    # first host) holds the rendezvous store and global rank 0, which writes the output. c10d's
    # dynamic rendezvous would ignore --node_rank and rank the nodes by arrival.
    return ["--nnodes", str(len(hosts)), "--node_rank", str(node_rank),
            "--nproc_per_node", str(hosts[node_rank][1]), "--rdzv_backend", "static",
            "--master_addr", hosts[0][0], "--master_port", str(train.master_port)]


def launch_command(config: TrainingConfig, config_file: Path, dataset_dir: Path, tokenizer_dir: Path,
                   output_dir: Path, node_rank: int = 0, step_lines: bool = True) -> list[str]:
    """torchrun starting this node's processes of training.train."""
    return [
        sys.executable, "-m", "torch.distributed.run", *launcher_args(config, node_rank),
        "-m", "training.train",
        "--config", str(config_file),
        "--dataset", str(Path(dataset_dir).resolve()),
        "--tokenizer", str(Path(tokenizer_dir).resolve()),
        "--output", str(Path(output_dir).resolve()),
        *([] if step_lines else ["--no-step-lines"]),
    ]


class StepBar:
    """A terminal progress bar fed by rank 0's train log entries: step of max_steps, loss, tokens/s
    and tqdm's ETA, in place of one logged line per log step."""

    SHOWN = (("loss", "loss"), ("tokens_per_second", "tok/s"), ("val_loss", "val_loss"))

    def __init__(self, max_steps: int):
        self.max_steps, self.bar, self.postfix, self.done = max_steps, None, {}, False

    def show(self, entries: list[dict]) -> None:
        """Take the entries logged since the last call. The bar starts at the last of the first
        batch (after a resume the log already holds the steps before it: the rate counts new ones)."""
        if not entries or self.done:
            return
        for entry in entries:
            self.postfix.update({name: f"{entry[key]:.4g}" for key, name in self.SHOWN
                                 if isinstance(entry.get(key), (int, float))})
        step = entries[-1]["step"]
        if self.bar is None:
            from tqdm import tqdm

            self.bar = tqdm(total=self.max_steps, initial=step, unit="step", dynamic_ncols=True)
        self.bar.set_postfix(self.postfix, refresh=False)
        self.bar.update(step - self.bar.n)  # draws the bar with the new postfix
        if step >= self.max_steps:
            self.close()  # before the final validation and save, which are not steps

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()
            self.bar = None
        self.done = True


def follow_log(path: Path, since: float, stop: threading.Event, each: Callable[[list[dict]], None],
               every: float = 0.5) -> None:
    """Call `each` with the entries appended to the JSONL file `path` since the last call, until
    `stop` is set (then once more). A file last written before `since` is an earlier run's: it is
    read only once the new run has rewritten it (JsonlLogger does at its start)."""
    position = 0
    while True:
        finished = stop.is_set()
        try:
            stat = path.stat()
        except FileNotFoundError:
            stat = None
        if stat is not None and stat.st_mtime >= since:
            if stat.st_size < position:  # rewritten
                position = 0
            with open(path, "rb") as log:
                log.seek(position)
                data = log.read()
            complete = data[:data.rfind(b"\n") + 1]  # a line being written waits for the next call
            position += len(complete)
            entries = [json.loads(line) for line in complete.splitlines() if line.strip()]
            if entries:
                each(entries)
        if finished:
            return
        stop.wait(every)


def run(config: TrainingConfig, dataset_dir: Path, tokenizer_dir: Path, output_dir: Path,
        env: dict | None = None, node_rank: int = 0, progress: bool = False) -> TrainResult:
    """Train a model on dataset_dir/train.jsonl into output_dir (an HF folder with conveyor.json).

    env is merged over this process's environment for the ranks; MLFLOW_RUN_ID there (with
    MLFLOW_TRACKING_URI) makes rank 0 log train/* metrics to that run. With a hostfile, this
    process runs node `node_rank`'s ranks; output_dir must be on storage all nodes share.
    progress (for a terminal): a progress bar follows rank 0's train log, and the ranks print
    no step lines.
    """
    output_dir = Path(output_dir).resolve()
    output_dir.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.NamedTemporaryFile("w", dir=output_dir.parent, prefix=f".{output_dir.name}.",
                                     suffix=".config.json") as config_file:
        config_file.write(config.model_dump_json())
        config_file.flush()
        command = launch_command(config, Path(config_file.name), dataset_dir, tokenizer_dir, output_dir, node_rank,
                                 step_lines=not progress)
        logger.info("launching training ranks: %s", " ".join(command))
        tail: deque[str] = deque(maxlen=OUTPUT_TAIL_LINES)  # from torchrun's report on, once it starts
        ranks_tail: deque[str] = deque(maxlen=OUTPUT_TAIL_LINES // 2)  # the ranks' last lines before it
        reported = False
        bar, stop_following = None, threading.Event()
        if progress:
            from tqdm.contrib.logging import logging_redirect_tqdm  # log lines go above the bar

            bar = StepBar(config.train.max_steps)
            follower = threading.Thread(target=follow_log, daemon=True, args=(
                checkpoint_dir(output_dir) / TRAIN_LOG, time.time(), stop_following, bar.show))
            follower.start()
        from core.process import dies_with_this_process, stop_process

        # If this process is killed, torchrun gets SIGTERM and stops the ranks (each of which also
        # dies with torchrun: training.train).
        with logging_redirect_tqdm() if progress else nullcontext(), subprocess.Popen(
                command, env=rank_env(config, env), stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                bufsize=1, preexec_fn=dies_with_this_process()) as process:
            try:
                for line in process.stdout:
                    line = line.rstrip()
                    if not reported and TORCHRUN_REPORT.search(line):
                        reported = True
                        ranks_tail.extend(tail)
                        tail.clear()
                    tail.append(line)
                    logger.info("%s", line)
            except BaseException:  # Ctrl-C, a cancelled flow run: the ranks stop now, not at our exit
                stop_process(process)
                raise
            finally:
                if bar:
                    stop_following.set()
                    follower.join()
                    bar.close()
    if process.returncode != 0:
        raise TrainingFailed(f"training exited with code {process.returncode}; last output:\n"
                             + "".join(f"{line}\n" for line in ranks_tail) + "\n".join(tail))
    result = json.loads((output_dir / "result.json").read_text())
    return TrainResult(model_dir=output_dir, **result)
