"""keep_zero_weights: a pruned model trained on (compression's `recover` step) keeps its zeros,
on 2 CPU ranks under ZeRO, in a full fine-tune and through LoRA's merge; without the flag the
zeros fill in, so the tests can tell."""

import os

import pytest
import torch

import training
from training_fixtures import TINY_MODEL, dataset_and_tokenizer
from training.config import LoraConfig, ModelConfig, TrainConfig, TrainingConfig

os.environ["HF_HUB_OFFLINE"] = "1"  # a checkpoint is a local folder; nothing may reach for a hub

PROJECTIONS = ("q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj")


@pytest.fixture(scope="module")
def pruned(tmp_path_factory):
    """(dataset_dir, pruned_dir): a curated dataset and a tiny random Llama whose decoder Linear
    weights are half zero (the smaller half of each matrix by magnitude), with its tokenizer."""

    from training.model import build_model

    root = tmp_path_factory.mktemp("sparse")
    dataset_dir, tokenizer = dataset_and_tokenizer(root)
    torch.manual_seed(123)
    model = build_model(TINY_MODEL, len(tokenizer), tokenizer.eos_token_id, tokenizer.pad_token_id)
    with torch.no_grad():
        for layer in model.model.layers:
            for module in layer.modules():
                if isinstance(module, torch.nn.Linear):
                    weight = module.weight.view(-1)
                    weight[weight.abs().argsort()[: weight.numel() // 2]] = 0
    pruned_dir = root / "pruned"
    model.save_pretrained(pruned_dir)
    tokenizer.save_pretrained(pruned_dir)
    return dataset_dir, pruned_dir


def recover(pruned_dir, dataset_dir, out, keep_zero_weights: bool, lora: LoraConfig = LoraConfig(),
            zero_stage: int = 2):
    config = TrainingConfig(
        model=ModelConfig(init_from=str(pruned_dir), lora=lora),
        # A high lr: every weight that may move moves visibly in 6 steps.
        train=TrainConfig(seq_len=64, micro_batch_size=4, max_steps=6, lr=1e-2, warmup_steps=0, num_ranks=2,
                          zero_stage=zero_stage, log_every=3, eval_batches=1, keep_zero_weights=keep_zero_weights))
    tokenizer_dir = training.prepare_tokenizer(config, dataset_dir / "train.jsonl", out / "tokenizer")
    return training.run(config, dataset_dir, tokenizer_dir, out / "model")


def weights(folder) -> dict:
    from safetensors.torch import load_file

    return load_file(folder / "model.safetensors")


def pruned_weights(pruned_dir, model_dir) -> dict:
    """name -> (weight before, weight after) of each decoder projection."""
    before, after = weights(pruned_dir), weights(model_dir)
    pairs = {name: (before[name], after[name]) for name in before if name.split(".")[-2] in PROJECTIONS}
    assert len(pairs) == 7 * 2
    return pairs


@pytest.mark.parametrize("zero_stage", [2, 3])
def test_zero_weights_of_a_pruned_model_stay_zero_and_the_rest_trains(pruned, tmp_path, caplog, zero_stage):
    dataset_dir, pruned_dir = pruned
    with caplog.at_level("INFO", logger="training"):
        result = recover(pruned_dir, dataset_dir, tmp_path, keep_zero_weights=True, zero_stage=zero_stage)

    pairs = pruned_weights(pruned_dir, result.model_dir)
    for name, (before, after) in pairs.items():
        zero = before == 0
        assert zero.float().mean() == 0.5, name
        assert torch.count_nonzero(after[zero]) == 0, f"{name}: a weight held at zero moved"
        assert (after[~zero] != before[~zero]).float().mean() > 0.99, f"{name}: the nonzero weights did not train"
    # Held: every exact zero of a matrix, the pad token's embedding row (zero from its init) included.
    embedding_zeros = int((weights(pruned_dir)["model.embed_tokens.weight"] == 0).sum())
    assert embedding_zeros == TINY_MODEL.hidden_size
    held = sum(before.numel() // 2 for before, _ in pairs.values()) + embedding_zeros
    assert f"keep_zero_weights: {held:,} weights held at zero in 15 matrices" in caplog.text


def test_without_keep_zero_weights_the_zeros_fill_in(pruned, tmp_path):
    dataset_dir, pruned_dir = pruned
    result = recover(pruned_dir, dataset_dir, tmp_path, keep_zero_weights=False)

    for name, (before, after) in pruned_weights(pruned_dir, result.model_dir).items():
        assert (after[before == 0] != 0).float().mean() > 0.99, name


def test_lora_keeps_the_zeros_through_the_merge(pruned, tmp_path):
    dataset_dir, pruned_dir = pruned
    result = recover(pruned_dir, dataset_dir, tmp_path, keep_zero_weights=True,
                     lora=LoraConfig(enabled=True, r=4, alpha=8))

    assert result.lora
    for name, (before, after) in pruned_weights(pruned_dir, result.model_dir).items():
        zero = before == 0
        assert torch.count_nonzero(after[zero]) == 0, f"{name}: the merge filled in a zero"
        assert (after[~zero] != before[~zero]).float().mean() > 0.99, f"{name}: the adapters' update was not merged"
