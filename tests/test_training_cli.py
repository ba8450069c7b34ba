"""`conveyor train`: the training stage alone on a curated dataset folder."""

import json
import subprocess
import sys

import pytest

from core.state import REPO_ROOT
from text_fixtures import write_jsonl

TINY = ["--profile", "test", "--set", "training.train.max_steps=6", "--set", "training.train.num_ranks=1",
        "--set", "training.train.log_every=3"]


def conveyor(*args):
    return subprocess.run([sys.executable, "-m", "flows.cli", *args], cwd=REPO_ROOT, capture_output=True,
                          text=True, timeout=600)


@pytest.mark.slow
def test_train_command_trains_on_a_dataset_folder(tmp_path):
    write_jsonl(tmp_path / "train.jsonl", 200, seed=3)
    write_jsonl(tmp_path / "validation.jsonl", 40, seed=4)
    done = conveyor("train", "--dataset", str(tmp_path), "--output", str(tmp_path / "model"), *TINY)
    assert done.returncode == 0, done.stderr[-3000:]
    result = json.loads(done.stdout[done.stdout.index("{"):])
    assert result["steps"] == 6 and result["world_size"] == 1
    assert (tmp_path / "model" / "model.safetensors").is_file()
    assert (tmp_path / "model.tokenizer" / "tokenizer.json").is_file()


def test_train_command_names_a_missing_dataset(tmp_path):
    done = conveyor("train", "--dataset", str(tmp_path / "nope"), "--output", str(tmp_path / "model"), *TINY)
    assert done.returncode == 2 and "train.jsonl not found" in done.stderr
