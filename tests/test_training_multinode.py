"""Multi-node training from a hostfile: the torchrun command for one node, hostfile errors, and a
real 2-node job on this machine (two launchers on 127.0.0.1, one CPU rank each, gloo)."""

import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor

import pytest

import training
from core.state import REPO_ROOT
from flows.services import free_port
from text_fixtures import write_jsonl
from training import HostfileError, launcher_args, read_hostfile, train_tokenizer
from training_fixtures import TINY_MODEL
from training.config import TokenizerConfig, TrainConfig, TrainingConfig


def config_with(**train) -> TrainingConfig:
    return TrainingConfig(
        tokenizer=TokenizerConfig(vocab_size=512),
        model=TINY_MODEL,
        train=TrainConfig(seq_len=64, micro_batch_size=4, max_steps=10, warmup_steps=2, log_every=5,
                          eval_batches=2, **train))


def test_hostfile_lines_comments_and_order(tmp_path):
    hostfile = tmp_path / "hostfile"
    hostfile.write_text("# the job's nodes\nnode-a slots=8\n\n  node-b   slots=4  # fewer GPUs\n")
    assert read_hostfile(hostfile) == [("node-a", 8), ("node-b", 4)]


@pytest.mark.parametrize("text, message", [
    ("node-a slots=8\nnode-b\n", "line 2: expected 'HOST slots=N' with N >= 1, got 'node-b'"),
    ("node-a slots=0\n", "line 1: expected 'HOST slots=N'"),
    ("node-a slots=8 gpus=2\n", "line 1: expected 'HOST slots=N'"),
    ("node-a slots=2\nnode-a slots=2\n", "line 2: host node-a is listed twice"),
    ("# nothing yet\n\n", "lists no hosts"),
])
def test_bad_hostfile_is_named_with_its_line(tmp_path, text, message):
    hostfile = tmp_path / "hostfile"
    hostfile.write_text(text)
    with pytest.raises(HostfileError, match=message):
        read_hostfile(hostfile)


def test_missing_hostfile(tmp_path):
    with pytest.raises(HostfileError, match=r"hostfile .*nope: No such file"):
        read_hostfile(tmp_path / "nope")


def test_launcher_runs_this_nodes_share_of_the_hostfile(tmp_path):
    assert launcher_args(config_with(num_ranks=3)) == ["--standalone", "--nproc_per_node", "3"]
    hostfile = tmp_path / "hostfile"
    hostfile.write_text("10.0.0.1 slots=8\n10.0.0.2 slots=4\n")
    config = config_with(num_ranks=3, hostfile=hostfile, master_port=29700)
    assert launcher_args(config, node_rank=1) == [
        "--nnodes", "2", "--node_rank", "1", "--nproc_per_node", "4", "--rdzv_backend", "static",
        "--master_addr", "10.0.0.1", "--master_port", "29700"]
    with pytest.raises(HostfileError, match="node rank 2 is not in .*: its 2 hosts are node ranks 0 to 1"):
        launcher_args(config, node_rank=2)
    with pytest.raises(HostfileError, match="node rank 1 needs training.train.hostfile"):
        launcher_args(config_with(), node_rank=1)


def test_train_command_names_a_bad_hostfile(tmp_path):
    write_jsonl(tmp_path / "train.jsonl", 5, seed=3)
    write_jsonl(tmp_path / "validation.jsonl", 5, seed=4)
    (tmp_path / "hostfile").write_text("node-a slots=two\n")
    done = subprocess.run(
        [sys.executable, "-m", "flows.cli", "train", "--dataset", str(tmp_path), "--output", str(tmp_path / "m"),
         "--profile", "test", "--set", f"training.train.hostfile={tmp_path / 'hostfile'}", "--node-rank", "1"],
        cwd=REPO_ROOT, capture_output=True, text=True, timeout=120)
    assert done.returncode == 2 and "line 1: expected 'HOST slots=N'" in done.stderr
    assert not (tmp_path / "m.tokenizer").exists(), "it fails before any work"


@pytest.mark.slow
def test_two_nodes_on_this_machine_train_one_model(tmp_path):
    write_jsonl(tmp_path / "train.jsonl", 200, seed=1)
    write_jsonl(tmp_path / "validation.jsonl", 30, seed=2)
    hostfile = tmp_path / "hostfile"
    # Two names for this machine: a hostfile lists each host once.
    hostfile.write_text("127.0.0.1 slots=1\nlocalhost slots=1\n")
    config = config_with(hostfile=hostfile, master_port=free_port())
    tokenizer = train_tokenizer(config.tokenizer, tmp_path / "train.jsonl", tmp_path / "tokenizer")
    # Each node's launcher, as `conveyor train --node-rank K` would start it on its own host.
    with ThreadPoolExecutor(2) as pool:
        nodes = [pool.submit(training.run, config, tmp_path, tokenizer, tmp_path / "model", node_rank=rank)
                 for rank in (0, 1)]
        results = [node.result(timeout=600) for node in nodes]
    assert results[0].world_size == 2 and results[0].steps == 10
    assert results[1] == results[0], "both nodes see the one output node 0's rank 0 wrote"
    assert (tmp_path / "model" / "model.safetensors").is_file()
