"""The training stage: tokenizer training and a DeepSpeed training run over several ranks.

The modules, in the order a run goes through them:
  launcher    torchrun starting training.train's ranks, their log, the progress bar (`run`)
  train       one rank's recipe: set up, resume, fit, export (reads top to bottom)
  checkpoint  where checkpoints live and which one a run continues from
  engine      the model, optimizer and schedule wrapped by DeepSpeed
  step        one optimizer step with the non-finite guard; the validation loss
  loss        next-token and distillation losses (chunked over the vocabulary where asked)
  metrics     the metric loggers (console, train_log.jsonl, MLflow) and MFU / memory numbers
  config, model, tokenizer, packing, privacy: the settings, the model, its tokenizer, the data, DP

Nothing heavy is imported here: flows import this package to build the CLI.
"""

from __future__ import annotations

import os

from core.state import TELEMETRY_OFF
from training.launcher import (HostfileError, StepBar, TrainingFailed, TrainResult, launch_command, launcher_args,
                               rank_env, read_hostfile, run)
from training.tokenizer import prepare_tokenizer, train_tokenizer

for _key, _value in TELEMETRY_OFF.items():
    os.environ.setdefault(_key, _value)

__all__ = ["HostfileError", "StepBar", "TrainResult", "TrainingFailed", "launch_command", "launcher_args",
           "prepare_tokenizer", "rank_env", "read_hostfile", "run", "train_tokenizer"]
