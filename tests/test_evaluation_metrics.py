import json
import math

import pytest

from compression import run as compress
from compression.config import CompressionConfig
from evaluation import run
from evaluation.config import EvaluationConfig
from model_fixtures import TRAINING_TEXT, make_tiny_model_folder, write_validation_split

CONFIG = EvaluationConfig(max_eval_tokens=600, latency_new_tokens=4, latency_repeats=2)
WINDOW = 128  # the fixture model's max_position_embeddings


@pytest.fixture(scope="module")
def base_dir(tmp_path_factory):
    return make_tiny_model_folder(tmp_path_factory.mktemp("base") / "model")


@pytest.fixture(scope="module")
def dataset_dir(tmp_path_factory):
    return write_validation_split(tmp_path_factory.mktemp("curated"), TRAINING_TEXT[:40])


@pytest.fixture(scope="module")
def base_metrics(base_dir, dataset_dir, tmp_path_factory):
    return run(CONFIG, base_dir, dataset_dir, tmp_path_factory.mktemp("eval") / "base.json")


def test_metrics_are_finite_and_written(base_dir, dataset_dir, tmp_path):
    output = tmp_path / "metrics" / "base.json"
    metrics = run(CONFIG, base_dir, dataset_dir, output)
    assert json.loads(output.read_text()) == metrics
    assert set(metrics) == {"perplexity", "val_loss", "eval_tokens", "size_bytes", "num_parameters",
                            "latency_ms_per_token"}
    assert all(math.isfinite(value) and value > 0 for value in metrics.values())


def test_random_model_perplexity_is_about_vocab_size(base_dir, base_metrics):
    from transformers import AutoConfig

    vocab_size = AutoConfig.from_pretrained(base_dir).vocab_size
    print(f"\nrandom model: ppl {base_metrics['perplexity']:.1f}, vocab {vocab_size}, "
          f"{base_metrics['latency_ms_per_token']:.2f} ms/token")
    assert 0.5 * vocab_size < base_metrics["perplexity"] < 2 * vocab_size
    assert base_metrics["val_loss"] == pytest.approx(math.log(base_metrics["perplexity"]))


def test_eval_tokens_count_predictions_in_non_overlapping_windows(base_metrics):
    # 600 tokens in windows of 128: every window predicts all its tokens but the first.
    assert base_metrics["eval_tokens"] == 600 - math.ceil(600 / WINDOW)


def test_int8_variant_counts_the_same_parameters_and_is_smaller(base_dir, dataset_dir, base_metrics, tmp_path):
    [variant] = compress(CompressionConfig(variants={"int8": ["int8_weight_only"]}), base_dir, tmp_path / "compressed")
    int8 = run(CONFIG, variant.path, dataset_dir, tmp_path / "int8.json")
    print(f"\nbase {base_metrics}\nint8 {int8}")
    assert int8["num_parameters"] == base_metrics["num_parameters"]
    assert int8["size_bytes"] < base_metrics["size_bytes"]
    assert int8["perplexity"] == pytest.approx(base_metrics["perplexity"], rel=0.02)


def test_missing_validation_split_is_a_clear_error(base_dir, tmp_path):
    with pytest.raises(FileNotFoundError, match="validation.jsonl"):
        run(CONFIG, base_dir, tmp_path, tmp_path / "m.json")

