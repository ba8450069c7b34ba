"""How the trainer reacts to a diverging run and to a stalled one (single CPU rank, tiny model)."""

import json

import pytest

import training
from text_fixtures import write_jsonl
from training import TrainingFailed, train_tokenizer
from training_fixtures import tiny_config


@pytest.fixture(scope="module")
def dataset(tmp_path_factory):
    root = tmp_path_factory.mktemp("curated")
    write_jsonl(root / "train.jsonl", 300, seed=1)
    write_jsonl(root / "validation.jsonl", 60, seed=2)
    return root, train_tokenizer(tiny_config().tokenizer, root / "train.jsonl", root / "tokenizer")


# An absurd learning rate with no clipping to speak of: the gradients overflow within a few steps.
DIVERGING = dict(lr=1e6, grad_clip=1e9)


@pytest.mark.slow
def test_nonfinite_loss_stops_the_run_naming_the_step(dataset, tmp_path):
    data, tokenizer = dataset
    with pytest.raises(TrainingFailed, match=r"non-finite (training loss|gradients) at step \d+"):
        training.run(tiny_config(**DIVERGING), data, tokenizer, tmp_path / "model")
    assert not (tmp_path / "model").exists()


@pytest.mark.slow
def test_skip_mode_skips_batches_up_to_its_limit(dataset, tmp_path):
    data, tokenizer = dataset
    config = tiny_config(**DIVERGING, on_nonfinite_loss="skip", max_skipped_batches=3)
    with pytest.raises(TrainingFailed, match=r"skipped 3 batches already"):
        training.run(config, data, tokenizer, tmp_path / "model")


@pytest.mark.slow
def test_early_stopping_and_periodic_validation(dataset, tmp_path):
    data, tokenizer = dataset
    # A learning rate too small to move the weights: validation never improves after the first look.
    config = tiny_config(lr=1e-12, eval_every=5, early_stopping_patience=2)
    result = training.run(config, data, tokenizer, tmp_path / "model")
    assert result.steps == 15  # evaluations at 5 (best), 10 and 15 (no better twice) -> stop
    log = [json.loads(line) for line in (result.model_dir / "train_log.jsonl").read_text().splitlines()]
    assert [e["step"] for e in log if "val_loss" in e] == [5, 10, 15]
    assert all(e["grad_norm"] is not None and e["grad_norm"] > 0 for e in log if "loss" in e)


def test_killing_the_process_that_runs_training_stops_the_launcher_and_every_rank(dataset, tmp_path):
    """SIGKILL of the pipeline's process (here a Python child calling training.run): torchrun and
    its ranks (in sessions of their own) exit too, instead of hanging on as orphans."""
    import subprocess
    import sys
    import time

    import psutil

    data, tokenizer = dataset
    # Nothing printed after setup: a rank writing to the dead caller's pipe would die of that alone.
    config = tiny_config(max_steps=100_000, log_every=100_000)
    script = ("import sys, training\nfrom training.config import TrainingConfig\n"
              "training.run(TrainingConfig.model_validate_json(sys.argv[1]), sys.argv[2], sys.argv[3], sys.argv[4])\n")
    caller = subprocess.Popen([sys.executable, "-c", script, config.model_dump_json(), str(data), str(tokenizer),
                               str(tmp_path / "out")], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                              start_new_session=True)
    deadline = time.monotonic() + 240
    while not (tmp_path / "out.checkpoints").is_dir():  # rank 0 made its folder: it is training
        assert caller.poll() is None and time.monotonic() < deadline, "training did not start"
        time.sleep(0.1)
    family = psutil.Process(caller.pid).children(recursive=True)
    assert any("training.train" in " ".join(p.cmdline()) for p in family) and len(family) >= 2
    caller.kill()
    caller.wait()
    gone, alive = psutil.wait_procs(family, timeout=30)
    assert not alive, f"left running: {[p.cmdline()[:4] for p in alive]}"
