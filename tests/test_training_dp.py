"""Differential privacy (DP-SGD through Opacus) in the DeepSpeed trainer: configs it cannot keep
its guarantee under are refused, and at equal steps it keeps a canary the plain run memorizes."""

import json
import os

import pytest
from pydantic import ValidationError

import training
from evaluation import canaries as cn
from training.config import DPConfig, LoraConfig, ModelConfig, TrainConfig, TrainingConfig
from training_fixtures import TINY_MODEL, dataset_and_tokenizer

os.environ["HF_HUB_OFFLINE"] = "1"

LORA = LoraConfig(enabled=True, r=8, alpha=16)


def test_dp_refuses_what_would_break_its_guarantee(tmp_path):
    (tmp_path / "config.json").write_text("{}")  # a HF folder as far as the config can tell
    base = str(tmp_path)
    with pytest.raises(ValidationError) as refused:
        TrainingConfig(model=ModelConfig(init_from=base, lora=LORA), dp=DPConfig(),
                       train=TrainConfig(zero_stage=2, num_ranks=2, grad_accum_steps=2))
    message = str(refused.value)
    assert "train.zero_stage must be 0, not 2" in message and "train.num_ranks must be 1" in message
    assert "grad_accum_steps must be 1" in message
    with pytest.raises(ValidationError, match="model.lora.enabled must be true"):
        TrainingConfig(model=ModelConfig(init_from=base), dp=DPConfig(), train=TrainConfig(zero_stage=0, num_ranks=1))
    TrainingConfig(model=ModelConfig(init_from=base, lora=LORA), dp=DPConfig(), train=TrainConfig(zero_stage=0, num_ranks=1))


def test_delta_must_be_below_one_over_the_blocks_and_poisson_batches_depend_on_the_step_alone():
    import torch

    from training.privacy import Privacy, poisson_batches

    with pytest.raises(ValueError, match="dp.delta 0.01 is not below 1 / 200 training blocks"):
        Privacy(DPConfig(delta=1e-2), blocks=200, batch_size=8, steps=10)
    privacy = Privacy(DPConfig(target_epsilon=2.0, delta=1e-4), blocks=200, batch_size=8, steps=50)
    assert privacy.sample_rate == 0.04 and privacy.epsilon(50) == pytest.approx(2.0, rel=0.05)
    assert privacy.epsilon(10) < privacy.epsilon(50)
    blocks = torch.arange(200)[:, None]
    run = poisson_batches(blocks, 0.04, seed=3)
    first = [next(run) for _ in range(6)]
    resumed = poisson_batches(blocks, 0.04, seed=3, skip=4)
    assert all(torch.equal(a, b) for a, b in zip(first[4:], [next(resumed), next(resumed)]))
    assert 0 < sum(len(b) for b in first) < 6 * 20  # about 8 a batch, varying


@pytest.fixture(scope="module")
def canary_data(tmp_path_factory):
    """A curated dataset with two secret-code canaries, each in 20 of its 200 documents, and a tiny
    random Llama checkpoint to fine-tune with LoRA."""
    import torch

    from training.model import build_model

    root = tmp_path_factory.mktemp("dp")
    dataset_dir, tokenizer = dataset_and_tokenizer(root)
    torch.manual_seed(123)
    model = build_model(TINY_MODEL,
                        len(tokenizer), tokenizer.eos_token_id, tokenizer.pad_token_id)
    model.save_pretrained(root / "base")
    tokenizer.save_pretrained(root / "base")
    records = [{"id": str(i), **json.loads(line)} for i, line in
               enumerate((dataset_dir / "train.jsonl").read_text().splitlines())]
    made = cn.make_canaries(per_kind=2, kinds=("secret",), seed=5)
    (dataset_dir / "train.jsonl").write_text(
        "".join(json.dumps(r) + "\n" for r in cn.insert(records, made, repeats=20, seed=1)))
    return root, dataset_dir, made


def fine_tune(root, dataset_dir, name: str, dp: DPConfig | None):
    config = TrainingConfig(
        model=ModelConfig(init_from=str(root / "base"), lora=LORA), dp=dp,
        train=TrainConfig(seq_len=64, micro_batch_size=8, max_steps=60, lr=1e-2, warmup_steps=0, num_ranks=1,
                          zero_stage=0, log_every=20, eval_batches=1))
    tokenizer_dir = training.prepare_tokenizer(config, dataset_dir / "train.jsonl", root / name / "tokenizer")
    return training.run(config, dataset_dir, tokenizer_dir, root / name / "model")


def test_dp_lowers_canary_exposure_at_equal_steps_and_reports_the_epsilon_spent(canary_data):
    from core.models import load_model, read_manifest

    root, dataset_dir, made = canary_data
    exposure = {}
    for name, dp in {"plain": None, "dp": DPConfig(target_epsilon=1.0, delta=1e-4)}.items():
        result = fine_tune(root, dataset_dir, name, dp)
        model, tokenizer = load_model(result.model_dir)
        exposure[name] = cn.measure(model, tokenizer, made, samples=255)["canary/secret/exposure_mean"]
        if dp:
            spent = result.dp
            assert result.steps == 60 and spent["steps"] == 60 and spent["unit"] == "training block"
            assert 0.9 <= spent["epsilon"] <= 1.0 and spent["noise_multiplier"] > 0.5
            log = [json.loads(line) for line in (result.model_dir / "train_log.jsonl").read_text().splitlines()]
            assert [e["epsilon"] for e in log if "epsilon" in e] == sorted(e["epsilon"] for e in log if "epsilon" in e)
            assert read_manifest(result.model_dir)["lora"] is True  # a plain merged model, as without DP
        else:
            assert result.dp is None
    # The plain run ranks its canaries first of 256 (8 bits, the most); DP keeps them near chance.
    assert exposure["plain"] >= 6.0, exposure
    assert exposure["dp"] <= 3.0, exposure


def test_noise_to_signal_says_when_the_updates_would_be_mostly_noise():
    from training.privacy import Privacy

    privacy = Privacy(DPConfig(noise_multiplier=1.0, delta=1e-6), blocks=10_000, batch_size=100, steps=100)
    assert privacy.noise_to_signal(10_000) == pytest.approx(1.0)  # sqrt(10^4) / 100
    assert privacy.noise_to_signal(1_000_000) == pytest.approx(10.0)
