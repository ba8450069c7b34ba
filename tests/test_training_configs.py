"""The DeepSpeed settings of training.train, each trained for 10 steps on CPU (tiny model, gloo):
ZeRO 0-3 and offload, precision (DeepSpeed's bf16, bf16-autocast), the gradient clipping the
trainer does itself without ZeRO, activation checkpointing, compile and the chunked loss. Where a
setting must not change the arithmetic, the loss curve must match the plain run's."""

import json

import pytest

import training
from text_fixtures import write_jsonl
from training import train_tokenizer
from training_fixtures import tiny_config

# name -> settings over tiny_config's, each trained for 10 steps unless it says otherwise.
RUNS = {
    "fp32_zero0": dict(precision="fp32", zero_stage=0),  # the trainer clips (clips_itself)
    "fp32_zero0_deepspeed_clips": dict(precision="fp32", zero_stage=0, on_nonfinite_loss="skip"),
    "autocast_zero0": dict(precision="bf16-autocast", zero_stage=0),
    "autocast_zero2": dict(precision="bf16-autocast", zero_stage=2),
    "bf16_zero2": dict(precision="bf16", zero_stage=2),  # bf16 weights, fp32 master copies
    "activation_checkpointing": dict(activation_checkpointing=True),
    "compile": dict(compile=True),
    "chunked_loss": dict(chunked_loss_tokens=48),  # 4 x 64 tokens a micro-batch: 6 chunks, the last short
    "chunked_loss_zero3_2_ranks": dict(chunked_loss_tokens=48, zero_stage=3, num_ranks=2),
    "chunked_loss_compile_autocast": dict(chunked_loss_tokens=48, compile=True, precision="bf16-autocast", zero_stage=0),
    # Two ranks: each ZeRO stage partitions differently, the arithmetic is the same.
    "zero1_2_ranks": dict(zero_stage=1, num_ranks=2),
    "zero2_2_ranks": dict(zero_stage=2, num_ranks=2),
    "zero3_2_ranks": dict(zero_stage=3, num_ranks=2),
    "zero2_offload_2_ranks": dict(zero_stage=2, num_ranks=2, offload_optimizer=True),
    "zero3_offload_2_ranks": dict(zero_stage=3, num_ranks=2, offload_optimizer=True, offload_params=True),
    # One step: final_train_loss (not rounded) is the loss of the first forward, before any update.
    "fp32_first_forward": dict(precision="fp32", zero_stage=0, max_steps=1),
    "autocast_first_forward": dict(precision="bf16-autocast", zero_stage=0, max_steps=1),
}


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    """name -> (TrainResult, logged step entries), each configuration trained once, on demand."""
    root = tmp_path_factory.mktemp("precision")
    write_jsonl(root / "train.jsonl", 300, seed=1)
    write_jsonl(root / "validation.jsonl", 60, seed=2)
    tokenizer = train_tokenizer(tiny_config().tokenizer, root / "train.jsonl", root / "tokenizer")
    done = {}

    def run(name):
        if name not in done:
            result = training.run(tiny_config(**{"max_steps": 10, **RUNS[name]}), root, tokenizer, root / name)
            log = [json.loads(line) for line in (result.model_dir / "train_log.jsonl").read_text().splitlines()]
            done[name] = result, [entry for entry in log if "loss" in entry]
        return done[name]
    return run


@pytest.mark.slow
def test_trainer_clipping_without_zero_matches_deepspeeds_and_keeps_the_norm(runs):
    _, ours = runs("fp32_zero0")
    _, deepspeeds = runs("fp32_zero0_deepspeed_clips")
    # The same updates (the norms are over 1 at first, so the clipping is at work)...
    assert [e["loss"] for e in ours] == pytest.approx([e["loss"] for e in deepspeeds], abs=2e-3)
    # ...but DeepSpeed's fp32 path without ZeRO keeps no norm to log or check.
    assert all(e["grad_norm"] is None for e in deepspeeds)
    assert all(e["grad_norm"] > 0 for e in ours) and ours[0]["grad_norm"] > 1.0


def losses(log):
    return [entry["loss"] for entry in log]


@pytest.mark.slow
@pytest.mark.parametrize("name", ["zero1_2_ranks", "zero3_2_ranks", "zero2_offload_2_ranks", "zero3_offload_2_ranks",
                                  "chunked_loss_zero3_2_ranks"])
def test_zero_stages_and_offload_train_the_same_model(runs, name):
    reference, reference_log = runs("zero2_2_ranks")
    result, log = runs(name)
    assert result.world_size == 2 and result.zero_stage == RUNS[name]["zero_stage"]
    assert [e["step"] for e in log] == [5, 10]
    assert losses(log) == pytest.approx(losses(reference_log), abs=1e-3)
    assert [e["grad_norm"] for e in log] == pytest.approx([e["grad_norm"] for e in reference_log], rel=1e-4)
    assert result.val_loss == pytest.approx(reference.val_loss, abs=1e-3)
    assert log[-1]["loss"] < log[0]["loss"] - 0.5
    # The exported folder holds the whole model, gathered from the partitions at ZeRO-3.
    import torch
    from safetensors.torch import load_file

    exported, expected = load_file(result.model_dir / "model.safetensors"), load_file(reference.model_dir / "model.safetensors")
    assert exported.keys() == expected.keys()
    for key in expected:
        torch.testing.assert_close(exported[key], expected[key], rtol=1e-3, atol=1e-5)


@pytest.mark.slow
@pytest.mark.parametrize("name", ["activation_checkpointing", "compile", "chunked_loss"])
def test_recomputation_compile_and_chunked_loss_keep_the_arithmetic(runs, name):
    plain_result, plain = runs("fp32_zero0")
    result, log = runs(name)
    assert losses(log) == pytest.approx(losses(plain), abs=1e-3)
    assert [e["grad_norm"] for e in log] == pytest.approx([e["grad_norm"] for e in plain], rel=1e-4)
    assert result.val_loss == pytest.approx(plain_result.val_loss, abs=1e-4)


@pytest.mark.slow
@pytest.mark.parametrize("name", ["autocast_zero0", "autocast_zero2", "bf16_zero2", "chunked_loss_compile_autocast"])
def test_bf16_trains_close_to_fp32(runs, name):
    import torch
    from safetensors.torch import load_file

    result, log = runs(name)
    _, fp32 = runs("fp32_zero0")
    assert [e["step"] for e in log] == [5, 10]
    assert all(e["grad_norm"] > 0 for e in log)
    assert log[-1]["loss"] < log[0]["loss"]
    assert losses(log) == pytest.approx(losses(fp32), abs=0.05)  # bf16 is close
    weights = load_file(result.model_dir / "model.safetensors")
    # autocast keeps fp32 weights; DeepSpeed's bf16 trains bf16 weights (fp32 copies in its optimizer).
    assert {tensor.dtype for tensor in weights.values()} == {torch.bfloat16 if name == "bf16_zero2" else torch.float32}


@pytest.mark.slow
def test_bf16_autocast_runs_the_forward_in_bf16(runs):
    # The same seed, weights and first batch: an fp32 forward would give the fp32 loss to the last
    # bit; bf16 matmuls give a slightly different one.
    fp32, _ = runs("fp32_first_forward")
    autocast, _ = runs("autocast_first_forward")
    assert autocast.final_train_loss != fp32.final_train_loss
    assert autocast.final_train_loss == pytest.approx(fp32.final_train_loss, abs=0.01)
