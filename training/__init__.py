"""The training stage: tokenizer training and a DeepSpeed training run over several ranks.

`run` launches `training.train` under torchrun as a subprocess and returns small things (the
model folder and the numbers from its result.json). Nothing heavy is imported here: flows
import this package to build the CLI.
"""

from __future__ import annotations

import json
import logging
import os
import re
import subprocess
import sys
import tempfile
from collections import deque
from contextlib import nullcontext
from pathlib import Path

from pydantic import BaseModel

from core.state import TELEMETRY_OFF
from training.config import TrainingConfig
from training.tokenizer import prepare_tokenizer, train_tokenizer

for _key, _value in TELEMETRY_OFF.items():
    os.environ.setdefault(_key, _value)

__all__ = ["HostfileError", "StepBar", "TrainResult", "TrainingFailed", "launch_command", "launcher_args",
           "prepare_tokenizer", "rank_env", "read_hostfile", "run", "train_tokenizer"]

logger = logging.getLogger(__name__)

# The code the ranks run is the code this process imported, wherever the checkout is.
PACKAGE_ROOT = Path(__file__).resolve().parent.parent
OUTPUT_TAIL_LINES = 40


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
    val_loss: float | None
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
                   output_dir: Path, node_rank: int = 0) -> list[str]:
    """torchrun starting this node's processes of training.train."""
    return [
        sys.executable, "-m", "torch.distributed.run", *launcher_args(config, node_rank),
        "-m", "training.train",
        "--config", str(config_file),
        "--dataset", str(Path(dataset_dir).resolve()),
        "--tokenizer", str(Path(tokenizer_dir).resolve()),
        "--output", str(Path(output_dir).resolve()),
    ]


class StepBar:
    """A terminal progress bar fed by rank 0's log lines (`step N/MAX loss .. tokens_per_second ..`):
    step of max_steps, loss, tokens/s and tqdm's ETA in place of one logged line per log step."""

    LINE = re.compile(r"step (\d+)/(\d+) (.*)")

    def __init__(self):
        self.bar, self.postfix = None, {}

    def show(self, line: str) -> bool:
        """Take a step line into the bar (True); anything else is not the bar's (False)."""
        match = self.LINE.fullmatch(line)
        if not match:
            return False
        step, fields = int(match[1]), match[3].split()
        values = dict(zip(fields[::2], fields[1::2]))
        self.postfix.update({name: values[key] for key, name in
                             (("loss", "loss"), ("tokens_per_second", "tok/s"), ("val_loss", "val_loss"))
                             if key in values})
        if self.bar is None:
            from tqdm import tqdm

            # Starts at the first logged step (after a resume, too): the rate counts training only.
            self.bar = tqdm(total=int(match[2]), initial=step, unit="step", dynamic_ncols=True)
        self.bar.set_postfix(self.postfix, refresh=False)
        self.bar.update(step - self.bar.n)  # draws the bar with the new postfix
        if step == self.bar.total:
            self.close()  # before the final validation and save, which are not steps
        return True

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()
            self.bar = None


def run(config: TrainingConfig, dataset_dir: Path, tokenizer_dir: Path, output_dir: Path,
        env: dict | None = None, node_rank: int = 0, progress: bool = False) -> TrainResult:
    """Train a model on dataset_dir/train.jsonl into output_dir (an HF folder with conveyor.json).

    env is merged over this process's environment for the ranks; MLFLOW_RUN_ID there (with
    MLFLOW_TRACKING_URI) makes rank 0 log train/* metrics to that run. With a hostfile, this
    process runs node `node_rank`'s ranks; output_dir must be on storage all nodes share.
    progress (for a terminal): rank 0's step lines drive a progress bar instead of the log.
    """
    output_dir = Path(output_dir).resolve()
    output_dir.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.NamedTemporaryFile("w", dir=output_dir.parent, prefix=f".{output_dir.name}.",
                                     suffix=".config.json") as config_file:
        config_file.write(config.model_dump_json())
        config_file.flush()
        command = launch_command(config, Path(config_file.name), dataset_dir, tokenizer_dir, output_dir, node_rank)
        logger.info("launching training ranks: %s", " ".join(command))
        tail: deque[str] = deque(maxlen=OUTPUT_TAIL_LINES)
        bar = StepBar() if progress else None
        if progress:
            from tqdm.contrib.logging import logging_redirect_tqdm  # log lines go above the bar
        from core.process import dies_with_this_process, stop_process

        # If this process is killed, torchrun gets SIGTERM and stops the ranks (each of which also
        # dies with torchrun: training.train).
        with logging_redirect_tqdm() if progress else nullcontext(), subprocess.Popen(
                command, env=rank_env(config, env), stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                bufsize=1, preexec_fn=dies_with_this_process()) as process:
            try:
                for line in process.stdout:
                    line = line.rstrip()
                    tail.append(line)
                    if not (bar and bar.show(line)):
                        logger.info("%s", line)
            except BaseException:  # Ctrl-C, a cancelled flow run: the ranks stop now, not at our exit
                stop_process(process)
                raise
            finally:
                if bar:
                    bar.close()
    if process.returncode != 0:
        raise TrainingFailed(f"training exited with code {process.returncode}; last output:\n" + "\n".join(tail))
    result = json.loads((output_dir / "result.json").read_text())
    return TrainResult(model_dir=output_dir, **result)
