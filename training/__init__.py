"""The training stage: tokenizer training and a DeepSpeed training run over several ranks.

`run` launches `training.train` under torchrun as a subprocess and returns small things (the
model folder and the numbers from its result.json). Nothing heavy is imported here: flows
import this package to build the CLI.
"""

from __future__ import annotations

import json
import logging
import os
import subprocess
import sys
import tempfile
from collections import deque
from pathlib import Path

from pydantic import BaseModel

from core.state import TELEMETRY_OFF
from training.config import TrainingConfig
from training.tokenizer import train_tokenizer

for _key, _value in TELEMETRY_OFF.items():
    os.environ.setdefault(_key, _value)

__all__ = ["TrainResult", "TrainingFailed", "launch_command", "rank_env", "run", "train_tokenizer"]

logger = logging.getLogger(__name__)

# The code the ranks run is the code this process imported, wherever the checkout is.
PACKAGE_ROOT = Path(__file__).resolve().parent.parent
OUTPUT_TAIL_LINES = 40


class TrainingFailed(RuntimeError):
    """The launcher or a rank exited non-zero; the message ends with the last lines they printed."""


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


def launch_command(config: TrainingConfig, config_file: Path, dataset_dir: Path, tokenizer_dir: Path,
                   output_dir: Path) -> list[str]:
    """torchrun starting `num_ranks` processes of training.train on this node."""
    return [
        sys.executable, "-m", "torch.distributed.run",
        # --standalone: a single-node rendezvous on a free local port it picks itself.
        "--standalone", "--nproc_per_node", str(config.train.num_ranks),
        "-m", "training.train",
        "--config", str(config_file),
        "--dataset", str(Path(dataset_dir).resolve()),
        "--tokenizer", str(Path(tokenizer_dir).resolve()),
        "--output", str(Path(output_dir).resolve()),
    ]


def run(config: TrainingConfig, dataset_dir: Path, tokenizer_dir: Path, output_dir: Path,
        env: dict | None = None) -> TrainResult:
    """Train a model on dataset_dir/train.jsonl into output_dir (an HF folder with conveyor.json).

    env is merged over this process's environment for the ranks; MLFLOW_RUN_ID there (with
    MLFLOW_TRACKING_URI) makes rank 0 log train/* metrics to that run.
    """
    output_dir = Path(output_dir).resolve()
    output_dir.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.NamedTemporaryFile("w", dir=output_dir.parent, prefix=f".{output_dir.name}.",
                                     suffix=".config.json") as config_file:
        config_file.write(config.model_dump_json())
        config_file.flush()
        command = launch_command(config, Path(config_file.name), dataset_dir, tokenizer_dir, output_dir)
        logger.info("launching %d training ranks: %s", config.train.num_ranks, " ".join(command))
        tail: deque[str] = deque(maxlen=OUTPUT_TAIL_LINES)
        with subprocess.Popen(command, env=rank_env(config, env), stdout=subprocess.PIPE,
                              stderr=subprocess.STDOUT, text=True, bufsize=1) as process:
            for line in process.stdout:
                line = line.rstrip()
                tail.append(line)
                logger.info("%s", line)
    if process.returncode != 0:
        raise TrainingFailed(f"training exited with code {process.returncode}; last output:\n" + "\n".join(tail))
    result = json.loads((output_dir / "result.json").read_text())
    return TrainResult(model_dir=output_dir, **result)
