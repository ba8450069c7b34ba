"""training.run end to end: 2 CPU ranks under torchrun with DeepSpeed ZeRO-2, a tiny model."""

import json
import logging

import pytest

import training
from text_fixtures import write_jsonl
from training import TrainingFailed, train_tokenizer
from training_fixtures import TINY_MODEL
from training.config import TokenizerConfig, TrainConfig, TrainingConfig

TINY = TrainingConfig(
    tokenizer=TokenizerConfig(vocab_size=512),
    model=TINY_MODEL,
    train=TrainConfig(seq_len=64, micro_batch_size=4, max_steps=30, lr=3e-3, warmup_steps=5,
                      num_ranks=2, log_every=5, eval_batches=2),
)


@pytest.fixture(scope="module")
def dataset(tmp_path_factory):
    """A curated-dataset folder and a tokenizer trained on it: (dataset_dir, tokenizer_dir)."""
    root = tmp_path_factory.mktemp("curated")
    write_jsonl(root / "train.jsonl", 300, seed=1)
    write_jsonl(root / "validation.jsonl", 30, seed=2)
    tokenizer_dir = train_tokenizer(TINY.tokenizer, root / "train.jsonl", tmp_path_factory.mktemp("t") / "tokenizer")
    return root, tokenizer_dir


@pytest.mark.slow
def test_two_rank_training_run(dataset, tmp_path, caplog):
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from core.models import read_manifest
    from core.stats import StageStats

    import mlflow

    dataset_dir, tokenizer_dir = dataset
    output_dir = tmp_path / "model"
    tracking_uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    mlflow.set_tracking_uri(tracking_uri)
    client = mlflow.MlflowClient()
    run_id = client.create_run(client.create_experiment("training-test")).info.run_id
    rank_env = {"MLFLOW_TRACKING_URI": tracking_uri, "MLFLOW_RUN_ID": run_id}
    with caplog.at_level(logging.INFO, logger="training"):
        result = training.run(TINY, dataset_dir, tokenizer_dir, output_dir, env=rank_env)

    assert result.model_dir == output_dir.resolve()
    assert result.steps == 30 and result.world_size == 2 and result.zero_stage == 2
    assert result.tokens_seen == 30 * 4 * 2 * 64
    assert result.tokens_per_second > 0 and result.seconds > 0
    assert 100_000 < result.num_parameters < 200_000
    assert result.val_loss is not None and result.val_loss < 6.0

    log = [json.loads(line) for line in (output_dir / "train_log.jsonl").read_text().splitlines()]
    assert [record["step"] for record in log] == [5, 10, 15, 20, 25, 30]
    assert set(log[0]) == {"step", "loss", "lr", "grad_norm", "tokens_per_second", "seconds", "peak_rss_gib"}
    assert 0.2 < log[-1]["peak_rss_gib"] < 8 and result.peak_memory_bytes >= log[-1]["peak_rss_gib"] * 2**30 * 0.99
    assert log[-1]["loss"] < log[0]["loss"] - 1.0, log  # it learned
    assert result.final_train_loss == pytest.approx(log[-1]["loss"], abs=1e-3)
    assert "step 30/30" in caplog.text  # the ranks' output reached the logger

    # Rank 0 logged into the caller's MLflow run rather than a new one.
    assert [m.step for m in client.get_metric_history(run_id, "train/loss")] == [5, 10, 15, 20, 25, 30]
    assert client.get_metric_history(run_id, "train/loss")[-1].value == pytest.approx(log[-1]["loss"])
    # The final validation loss is the last point of the validation curve.
    assert [(m.step, round(m.value, 6)) for m in client.get_metric_history(run_id, "val/loss")] == [
        (30, round(result.val_loss, 6))]
    assert {"train/lr", "train/grad_norm", "train/tokens_per_second", "train/peak_rss_gib"} <= set(
        client.get_run(run_id).data.metrics)
    assert len(client.search_runs([client.get_run(run_id).info.experiment_id])) == 1

    on_disk = json.loads((output_dir / "result.json").read_text())
    assert set(on_disk) >= {"steps", "final_train_loss", "val_loss", "tokens_seen", "tokens_per_second",
                            "seconds", "num_parameters", "world_size", "zero_stage"}
    assert read_manifest(output_dir)["format"] == "hf"
    assert (output_dir / "model.safetensors").is_file()
    assert not list(tmp_path.glob(".model*"))  # no temp folder or config file left behind
    stats = StageStats.read(output_dir)  # beside the folder: timings must not change its hash
    assert stats.stage == "train" and stats.records_in > 0 and stats.extra["steps"] == 30

    tokenizer = AutoTokenizer.from_pretrained(output_dir)
    model = AutoModelForCausalLM.from_pretrained(output_dir).eval()
    prompt = tokenizer("The old captain", return_tensors="pt")
    with torch.no_grad():
        generated = model.generate(**prompt, max_new_tokens=8, do_sample=False,
                                   pad_token_id=tokenizer.pad_token_id)
    assert generated.shape[1] > prompt["input_ids"].shape[1]
    assert tokenizer.decode(generated[0]).startswith("The old captain")


def test_missing_dataset_raises_training_failed(dataset, tmp_path):
    _, tokenizer_dir = dataset
    with pytest.raises(TrainingFailed) as failure:
        training.run(TINY, tmp_path / "no-such-dataset", tokenizer_dir, tmp_path / "model")
    message = str(failure.value)
    assert "exited with code 1" in message
    assert "training input not found" in message and "no-such-dataset/train.jsonl" in message
    assert not (tmp_path / "model").exists()


def test_a_rank_killed_by_a_signal_shows_its_own_last_lines_above_torchruns_report(dataset, tmp_path):
    """torchrun's report of a failed rank is ~35 lines: the rank's last words (here a marker and
    the Python stack faulthandler prints on SIGABRT) must still reach the message."""
    from training.launcher import PACKAGE_ROOT

    dataset_dir, tokenizer_dir = dataset
    site = tmp_path / "site"
    site.mkdir()
    # Runs at interpreter start in torchrun and in each rank; only rank 1 aborts.
    (site / "sitecustomize.py").write_text(
        "import os\n"
        "if os.environ.get('RANK') == '1':\n"
        "    print('rank 1 last words before the abort', flush=True)\n"
        "    os.abort()\n")
    with pytest.raises(TrainingFailed) as failure:
        training.run(TINY, dataset_dir, tokenizer_dir, tmp_path / "model",
                     env={"PYTHONPATH": f"{site}:{PACKAGE_ROOT}"})
    message = str(failure.value)
    assert "rank 1 last words before the abort" in message
    assert "Fatal Python error: Aborted" in message, "faulthandler is on in the ranks"
    assert "exitcode: -6" in message and "Failures:" in message, "torchrun's report is still there"


@pytest.mark.slow
def test_a_terminal_run_shows_a_progress_bar_instead_of_step_lines(dataset, tmp_path, caplog, capsys):
    dataset_dir, tokenizer_dir = dataset
    config = TINY.model_copy(update={"train": TINY.train.model_copy(update={"max_steps": 10, "num_ranks": 1})})
    with caplog.at_level(logging.INFO, logger="training"):
        result = training.run(config, dataset_dir, tokenizer_dir, tmp_path / "model", progress=True)
    assert result.steps == 10
    assert "10/10" in capsys.readouterr().err, "tqdm drew the bar to the end"
    assert "step 5/10" not in caplog.text and "validation loss" in caplog.text, "other lines still reach the log"
    log = [json.loads(line) for line in (result.model_dir / "train_log.jsonl").read_text().splitlines()]
    assert [entry["step"] for entry in log] == [5, 10], "the train log keeps every step"
