import json
import math

import pytest

from compression import run as compress
from compression.config import CompressionConfig
from evaluation import run
from evaluation.config import EvaluationConfig
from model_fixtures import TRAINING_TEXT, make_tiny_model_folder, write_validation_split

CONFIG = EvaluationConfig(max_eval_tokens=600, task_limit=8, reference_max_bytes=4000, speed_new_tokens=4,
                          speed_prompt_tokens=16, speed_repeats=1)
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
    assert {"perplexity", "val_loss", "eval_tokens", "bits_per_byte", "size_bytes", "num_parameters",
            "conveyor_cloze/acc", "conveyor_cloze/acc_stderr", "conveyor_nextsentence/acc",
            "conveyor_nextsentence/acc_norm", "ttft_ms_b1", "decode_tokens_per_s_b1", "ttft_ms_b8",
            "decode_tokens_per_s_b8", "peak_memory_bytes"} <= set(metrics)
    assert all(math.isfinite(value) and value >= 0 for value in metrics.values())
    assert metrics["conveyor_nextsentence/n"] == 8


def test_random_model_perplexity_is_about_vocab_size(base_dir, base_metrics):
    from transformers import AutoConfig

    vocab_size = AutoConfig.from_pretrained(base_dir).vocab_size
    print(f"\nrandom model: ppl {base_metrics['perplexity']:.1f}, vocab {vocab_size}, "
          f"{base_metrics['decode_tokens_per_s_b1']:.1f} tokens/s")
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


def test_bits_per_byte_is_the_summed_nll_over_the_bytes(base_dir):
    """Every token of the text is predicted once, the first after an EOS: in one window that is the
    whole sequence's cross-entropy; shorter windows only shorten the context. A random model's bits
    per byte is near log2(vocab) * tokens / bytes."""
    import torch
    import torch.nn.functional as F

    from core.models import load_model
    from evaluation.metrics import bits_per_byte

    model, tokenizer = load_model(base_dir)
    text = "It is a truth universally acknowledged, that a single man in possession of a good fortune. " * 4
    ids = torch.tensor([[tokenizer.eos_token_id] + tokenizer(text, add_special_tokens=False).input_ids])
    assert ids.shape[1] <= 128
    with torch.inference_mode():
        nll = F.cross_entropy(model(ids).logits[0, :-1], ids[0, 1:], reduction="sum").item()
    large = bits_per_byte(model, tokenizer, text, 128)
    assert large == pytest.approx(nll / math.log(2) / len(text.encode()), rel=1e-5)
    small = bits_per_byte(model, tokenizer, text, 16)
    assert small == pytest.approx(large, rel=0.02)
    tokens = len(tokenizer(text, add_special_tokens=False).input_ids)
    uniform = math.log2(model.config.vocab_size) * tokens / len(text.encode())
    assert 0.5 * uniform < small < 2 * uniform


def test_speed_child_reports_every_batch_size(base_dir):
    from evaluation.speed import measure_in_child
    from evaluation.tasks import REFERENCE_TEXT

    import numpy as np

    config = CONFIG.model_copy(update={"speed_batch_sizes": [1, 3]})
    # The pipeline process is large when it forks the child: the child's peak must be its own
    # (ru_maxrss would report this process's 2 GiB).
    ballast = np.ones(2 * 2**30 // 8)
    speed = measure_in_child(base_dir, config, REFERENCE_TEXT)
    del ballast
    assert set(speed) == {"ttft_ms_b1", "decode_tokens_per_s_b1", "ttft_ms_b3", "decode_tokens_per_s_b3",
                          "peak_memory_bytes"}
    assert 50 * 2**20 < speed["peak_memory_bytes"] < 1.5 * 2**30  # torch and a tiny model, not the parent


def test_missing_validation_split_is_a_clear_error(base_dir, tmp_path):
    with pytest.raises(FileNotFoundError, match="validation.jsonl"):
        run(CONFIG, base_dir, tmp_path, tmp_path / "m.json")

