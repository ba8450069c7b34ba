"""Metrics logging, as torchtune's metric loggers: rank 0 hands each entry (a step and its values)
to its writers: the console line (`step N/MAX loss ...`, what the Prefect UI shows), the run's
train_log.jsonl (which the launcher follows for its progress bar and the model card plots), and
the MLflow run the caller opened. Also the numbers worth logging: FLOPs per token, MFU, peak memory.
"""

from __future__ import annotations

import json
import time
from pathlib import Path

TRAIN_LOG = "train_log.jsonl"


class MetricLogger:
    """One writer of metric entries: {"step": N, name: value, ...}."""

    def log(self, entry: dict) -> None:
        raise NotImplementedError

    def log_final(self, entry: dict) -> None:
        """The final validation, after the last step: only a curve (MLflow's) takes it as a point."""


class ConsoleLogger(MetricLogger):
    def __init__(self, max_steps: int):
        self.max_steps = max_steps

    def log(self, entry: dict) -> None:
        fields = " ".join(f"{key} {value:.4g}" if isinstance(value, float) else f"{key} {value}"
                          for key, value in entry.items() if key != "step")
        print(f"step {entry['step']}/{self.max_steps} {fields}", flush=True)


class JsonlLogger(MetricLogger):
    """The live train log. It sits with the checkpoints, so that what was logged before an
    interruption stays: a run resumed from step N keeps the lines up to N (those past it will be
    logged again)."""

    def __init__(self, path: Path, resumed_from_step: int = 0):
        self.path = path
        path.parent.mkdir(parents=True, exist_ok=True)
        kept = read_log(path, resumed_from_step)
        path.write_text("".join(line + "\n" for line in kept))

    def log(self, entry: dict) -> None:
        with open(self.path, "a", encoding="utf-8") as log:
            log.write(json.dumps(entry) + "\n")


class MlflowLogger(MetricLogger):
    """To the MLflow run the caller opened (MLFLOW_RUN_ID), never a new run: `train/<key>` and
    `val/<key>` for val_<key>; the wall-clock seconds are not a metric."""

    def __init__(self, run_id: str):
        import mlflow

        self.run_id = run_id
        self.client = mlflow.MlflowClient()

    def log(self, entry: dict) -> None:
        from mlflow.entities import Metric

        now = int(time.time() * 1000)
        self.client.log_batch(self.run_id, metrics=[
            Metric(key=key.replace("val_", "val/", 1) if key.startswith("val_") else f"train/{key}",
                   value=float(value), timestamp=now, step=entry["step"])
            for key, value in entry.items() if key not in ("step", "seconds") and value is not None])

    log_final = log


class MetricLoggers(MetricLogger):
    def __init__(self, *loggers: MetricLogger):
        self.loggers = loggers

    def log(self, entry: dict) -> None:
        for logger in self.loggers:
            logger.log(entry)

    def log_final(self, entry: dict) -> None:
        for logger in self.loggers:
            logger.log_final(entry)


def flops_per_token(num_parameters: int, num_layers: int, hidden_size: int, seq_len: int,
                    lora_parameters: int = 0) -> int:
    """Training FLOPs per token, counted as for MFU (no recomputation): 6 per weight (2 forward,
    2 for the input gradients, 2 for the weight gradients) plus attention's 12 * L * H * S. Under
    LoRA the frozen weights take no weight gradients (4 each) and the adapters take 6 each."""
    per_weight = 4 * num_parameters + 6 * lora_parameters if lora_parameters else 6 * num_parameters
    return per_weight + 12 * num_layers * hidden_size * seq_len


def peak_memory_bytes(device: str) -> int:
    """This process's peak memory: on "cuda" torch's allocator peak, on "cpu" the peak resident
    set size (Linux reports ru_maxrss in KiB)."""
    if device == "cuda":
        import torch

        return torch.cuda.max_memory_allocated()
    import resource

    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024


def mfu(tokens_per_second: float, flops_per_token: int, peak_tflops: float) -> float:
    """Model FLOPs utilization: the training FLOPs a second done, as a fraction of the device's peak."""
    return tokens_per_second * flops_per_token / (peak_tflops * 1e12)


def read_log(path: Path, up_to_step: int) -> list[str]:
    """The log lines of steps <= up_to_step: what a resumed run keeps of the interrupted one's."""
    if not path.is_file():
        return []
    return [line for line in path.read_text().splitlines() if line and json.loads(line)["step"] <= up_to_step]
