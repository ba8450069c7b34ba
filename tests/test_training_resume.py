"""Checkpoints and exact resume: a 2-rank run killed with SIGKILL after a checkpoint, started
again on the same output, continues from that checkpoint and ends where an uninterrupted run ends.
A 2-rank checkpoint resumes on 1 rank through DeepSpeed's universal checkpoint."""

import json
import shutil
import signal
import subprocess
import time

import psutil
import pytest

import training
from text_fixtures import write_jsonl
from training import train_tokenizer
from training_fixtures import TINY_MODEL
from training.config import TokenizerConfig, TrainConfig, TrainingConfig
from training.checkpoint import (COMPLETE, Best, checkpoint_dir, newest_complete_checkpoint, plan_resume, resume_fingerprint,
                                 resume_grad_accum)

CONFIG = TrainingConfig(
    tokenizer=TokenizerConfig(vocab_size=512),
    model=TINY_MODEL,
    train=TrainConfig(seq_len=64, micro_batch_size=4, max_steps=40, lr=3e-3, warmup_steps=5,
                      num_ranks=2, log_every=5, eval_batches=2, checkpoint_every=10, keep_checkpoints=2),
)


@pytest.fixture(scope="module")
def dataset(tmp_path_factory):
    root = tmp_path_factory.mktemp("curated")
    write_jsonl(root / "train.jsonl", 300, seed=1)
    write_jsonl(root / "validation.jsonl", 30, seed=2)
    return root, train_tokenizer(CONFIG.tokenizer, root / "train.jsonl", root / "tokenizer")


def log_of(model_dir):
    return [json.loads(line) for line in (model_dir / "train_log.jsonl").read_text().splitlines()]


@pytest.mark.slow
def test_sigkilled_run_resumes_from_its_checkpoint(dataset, tmp_path):
    data, tokenizer = dataset
    reference = training.run(CONFIG, data, tokenizer, tmp_path / "reference")

    output = tmp_path / "resumed"
    config_file = tmp_path / "config.json"
    config_file.write_text(CONFIG.model_dump_json())
    process = subprocess.Popen(training.launch_command(CONFIG, config_file, data, tokenizer, output),
                               env=training.rank_env(CONFIG, None), start_new_session=True,
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    # A checkpoint is complete once rank 0 marks it, after every rank saved (DeepSpeed's `latest`
    # comes earlier: a kill between the two must resume from the previous complete one).
    def complete():
        return sorted(checkpoint_dir(output).glob(f"step*/{COMPLETE}"))

    deadline = time.monotonic() + 240
    while not complete():
        assert process.poll() is None, "training ended before its first checkpoint"
        assert time.monotonic() < deadline, "no checkpoint in time"
        time.sleep(0.02)
    # The launcher and both ranks, mid-run (torchrun puts its workers in sessions of their own).
    launcher = psutil.Process(process.pid)
    ranks = launcher.children(recursive=True)
    for proc in [*ranks, launcher]:
        proc.send_signal(signal.SIGKILL)
    process.wait()
    psutil.wait_procs(ranks, timeout=10)
    assert not output.exists(), "a killed run must leave no output that looks whole"
    checkpointed_step = int(complete()[-1].parent.name.removeprefix("step"))
    assert checkpointed_step in (10, 20, 30)

    resumed = training.run(CONFIG, data, tokenizer, output)
    assert resumed.resumed_from_step == checkpointed_step and reference.resumed_from_step == 0
    # The same losses at every logged step: before the kill from the first process, after it
    # from the resumed one; and the same model at the end.
    assert [(e["step"], e["loss"]) for e in log_of(output)] == [(e["step"], e["loss"]) for e in log_of(reference.model_dir)]
    assert resumed.final_train_loss == pytest.approx(reference.final_train_loss, rel=1e-5)
    assert resumed.val_loss == pytest.approx(reference.val_loss, rel=1e-5)
    kept = sorted(p.name for p in checkpoint_dir(output).iterdir() if p.name.startswith("step"))
    assert kept == ["step00000020", "step00000030"], "keep_checkpoints=2 keeps the newest two"


def test_resume_skips_a_checkpoint_whose_ranks_did_not_all_finish(tmp_path):
    checkpoints = tmp_path / "model.checkpoints"
    for tag in ("step00000010", "step00000020"):
        (checkpoints / tag).mkdir(parents=True)
    (checkpoints / "step00000010" / COMPLETE).touch()
    (checkpoints / "latest").write_text("step00000020")  # DeepSpeed's pointer, written before rank 1 finished
    assert newest_complete_checkpoint(checkpoints) == "step00000010"
    (checkpoints / "step00000020" / COMPLETE).touch()
    assert newest_complete_checkpoint(checkpoints) == "step00000020"
    # Made before the marker existed: `latest` counts when every rank's partition is there.
    import torch

    legacy = tmp_path / "old.checkpoints"
    (legacy / "step00000010").mkdir(parents=True)
    (legacy / "latest").write_text("step00000010")
    torch.save({"dp_world_size": 2}, legacy / "step00000010" / "mp_rank_00_model_states.pt")
    (legacy / "step00000010" / "zero_pp_rank_0_mp_rank_00_optim_states.pt").touch()
    assert newest_complete_checkpoint(legacy) is None  # rank 1's partition is missing
    (legacy / "step00000010" / "zero_pp_rank_1_mp_rank_00_optim_states.pt").touch()
    assert newest_complete_checkpoint(legacy) == "step00000010"
    assert newest_complete_checkpoint(tmp_path / "none") is None


def with_train(**changes) -> TrainingConfig:
    return CONFIG.model_copy(update={"train": CONFIG.train.model_copy(update=changes)})


@pytest.mark.slow
@pytest.mark.parametrize("zero_stage", [2, 3])  # at stage 3 the weights are partitioned too
def test_two_rank_checkpoint_resumes_on_one_rank(dataset, tmp_path, zero_stage):
    data, tokenizer = dataset
    reference = training.run(with_train(max_steps=20, zero_stage=zero_stage), data, tokenizer, tmp_path / "two-ranks")
    # The 2-rank run's checkpoint at step 10, as if that run had stopped there.
    shutil.copytree(checkpoint_dir(reference.model_dir), checkpoint_dir(tmp_path / "one-rank"))

    resumed = training.run(with_train(max_steps=20, num_ranks=1, zero_stage=zero_stage), data, tokenizer,
                           tmp_path / "one-rank")
    assert resumed.resumed_from_step == 10 and resumed.world_size == 1
    before, after = log_of(reference.model_dir), log_of(resumed.model_dir)
    assert after[:2] == before[:2], "steps 5 and 10 are the 2-rank run's"
    # The lr schedule goes on by step, and the global batch was kept (2 accumulation steps on 1 rank).
    assert [e["lr"] for e in after] == pytest.approx([e["lr"] for e in before], rel=1e-9)
    assert resumed.tokens_seen == reference.tokens_seen
    # The trained weights and optimizer went on: the loss after the resume is the 2-rank run's
    # (other blocks in other batches, so close rather than equal), below the loss at the
    # checkpoint, far from a fresh model's ln(512) = 6.2.
    print("loss at the checkpoint", before[1]["loss"], "after:", [(e["step"], e["loss"]) for e in after[2:]],
          "2-rank run:", [(e["step"], e["loss"]) for e in before[2:]])
    assert after[2]["loss"] == pytest.approx(before[2]["loss"], rel=0.02) and after[2]["loss"] < before[1]["loss"]
    assert resumed.final_train_loss == pytest.approx(reference.final_train_loss, rel=0.02)
    assert resumed.val_loss == pytest.approx(reference.val_loss, rel=0.02)
    assert not (checkpoint_dir(resumed.model_dir) / "universal").exists(), "the converted copy is removed"


def test_resume_keeps_the_global_batch_or_refuses():
    header = {"dp_world_size": 2, "ds_config": {"gradient_accumulation_steps": 3}}
    assert [resume_grad_accum(header, 4, ranks) for ranks in (1, 2, 3, 6)] == [6, 3, 2, 1]
    with pytest.raises(RuntimeError, match=r"does not split over 4 ranks: resume on one of \[1, 2, 3, 6\] ranks"):
        resume_grad_accum(header, 4, 4)


def _checkpoint(checkpoints, step, config, ranks, grad_accum, zero_partitions=True, complete=True, prefix="step",
                **client_state):
    """A checkpoint's files as far as plan_resume reads them: rank 0's header, the optimizer partitions."""
    import torch

    tag = checkpoints / f"{prefix}{step:08d}"
    tag.mkdir(parents=True)
    torch.save({"step": step, "fingerprint": resume_fingerprint(config), "dp_world_size": ranks,
                "ds_config": {"gradient_accumulation_steps": grad_accum}, **client_state},
               tag / "mp_rank_00_model_states.pt")
    for rank in range(ranks if zero_partitions else 0):
        (tag / f"zero_pp_rank_{rank}_mp_rank_00_optim_states.pt").touch()
    if complete:
        (tag / COMPLETE).touch()


def test_where_a_run_resumes_is_decided_from_the_files_alone(tmp_path):
    checkpoints = tmp_path / "model.checkpoints"
    assert plan_resume(CONFIG, checkpoints, 2).tag is None, "nothing to resume: a fresh run"
    _checkpoint(checkpoints, 10, CONFIG, ranks=2, grad_accum=1)
    _checkpoint(checkpoints, 20, CONFIG, ranks=2, grad_accum=1, complete=False)  # killed while saving

    same = plan_resume(CONFIG, checkpoints, 2)
    assert (same.tag, same.grad_accum_steps, same.universal) == ("step00000010", 1, False)
    assert same.fingerprint == resume_fingerprint(CONFIG)
    # On one rank: twice the accumulation keeps the global batch; the ZeRO partitions of two ranks
    # load only through a universal checkpoint.
    one = plan_resume(CONFIG, checkpoints, 1)
    assert (one.tag, one.saved_by_ranks, one.grad_accum_steps, one.universal) == ("step00000010", 2, 2, True)
    assert plan_resume(with_train(resume=False), checkpoints, 2).tag is None
    with pytest.raises(RuntimeError, match="another model, data or batch config: delete it, or set "
                                           "training.train.resume=false"):
        plan_resume(with_train(seq_len=32), checkpoints, 2)
    # Unpartitioned optimizer state (ZeRO-0) loads on any number of ranks as it is.
    zero0 = tmp_path / "zero0.checkpoints"
    _checkpoint(zero0, 10, CONFIG, ranks=2, grad_accum=1, zero_partitions=False)
    assert plan_resume(CONFIG, zero0, 1).universal is False


def test_a_resumed_run_keeps_its_best_checkpoint_and_never_resumes_from_it(tmp_path):
    """export_best: the best checkpoint (saved at an evaluation, not `latest`) survives a resume,
    so a later evaluation must beat it to replace it."""
    checkpoints = tmp_path / "model.checkpoints"
    _checkpoint(checkpoints, 10, CONFIG, ranks=2, grad_accum=1)
    _checkpoint(checkpoints, 15, CONFIG, ranks=2, grad_accum=1, prefix="best-step", val_loss=2.5)
    _checkpoint(checkpoints, 20, CONFIG, ranks=2, grad_accum=1, prefix="best-step", val_loss=2.4, complete=False)
    resume = plan_resume(CONFIG, checkpoints, 2)
    assert resume.tag == "step00000010"
    assert resume.best == Best("best-step00000015", 15, 2.5)
    other = tmp_path / "other.checkpoints"  # another config's best is not this run's
    _checkpoint(other, 10, with_train(seq_len=32), ranks=2, grad_accum=1, prefix="best-step", val_loss=2.0)
    _checkpoint(other, 10, CONFIG, ranks=2, grad_accum=1)
    assert plan_resume(CONFIG, other, 2).best is None
