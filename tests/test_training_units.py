"""Tokenizer, packing, model construction and lr schedule of the training stage, in-process."""

import pytest
import torch

from text_fixtures import write_jsonl
from training import StepBar, train_tokenizer
from training_fixtures import TINY_MODEL
from training.config import ModelConfig, TokenizerConfig, TrainConfig, TrainingConfig
from training.model import build_model, count_parameters
from training.packing import batches, pack_blocks, rank_shard
from training.tokenizer import EOS_TOKEN, PAD_TOKEN
from training.engine import warmup_cosine


@pytest.fixture(scope="module")
def tokenizer_dir(tmp_path_factory):
    root = tmp_path_factory.mktemp("tok")
    train_file = write_jsonl(root / "train.jsonl", 200, seed=0)
    return train_tokenizer(TokenizerConfig(vocab_size=300), train_file, root / "tokenizer")


def test_tokenizer_round_trip_and_specials(tokenizer_dir):
    from transformers import AutoTokenizer

    assert (tokenizer_dir / "tokenizer.json").is_file()
    assert (tokenizer_dir / "tokenizer_config.json").is_file()
    assert not list(tokenizer_dir.parent.glob(".tokenizer.*"))  # atomic: no temp left behind
    tokenizer = AutoTokenizer.from_pretrained(tokenizer_dir)
    assert tokenizer.eos_token == EOS_TOKEN and tokenizer.bos_token == EOS_TOKEN
    assert tokenizer.pad_token == PAD_TOKEN and tokenizer.pad_token_id != tokenizer.eos_token_id
    assert len(tokenizer) == 300

    text = "The miller sold the brass key. Ünïcode and émoji 🙂 survive byte-level BPE!"
    ids = tokenizer(text, add_special_tokens=False)["input_ids"]
    assert tokenizer.decode(ids) == text
    # Learned merges: common corpus words take fewer tokens than bytes.
    assert len(tokenizer("The miller carried the river boat")["input_ids"]) < len("The miller carried the river boat")
    with_eos = tokenizer(text + EOS_TOKEN, add_special_tokens=False)["input_ids"]
    assert with_eos[-1] == tokenizer.eos_token_id


def test_tokenizer_missing_train_file(tmp_path):
    with pytest.raises(FileNotFoundError, match="nope.jsonl"):
        train_tokenizer(TokenizerConfig(), tmp_path / "nope.jsonl", tmp_path / "tok")


def test_packing_blocks_without_padding():
    documents = [[1, 2, 3], [4, 5], [6, 7, 8, 9, 10], [11]]
    blocks = pack_blocks(documents, eos_token_id=0, block_len=5)
    stream = [1, 2, 3, 0, 4, 5, 0, 6, 7, 8, 9, 10, 0, 11, 0]
    assert blocks.shape == (3, 5)
    assert blocks.flatten().tolist() == stream[:15]
    assert (blocks == 0).sum() == 4  # only the EOS separators, no padding


def test_packing_shards_disjoint_covering_and_deterministic():
    blocks = pack_blocks([list(range(1, 40))] * 25, eos_token_id=0, block_len=9)  # 111 blocks
    world_size = 3
    shards = [rank_shard(blocks, rank, world_size) for rank in range(world_size)]
    assert all(shard.shape[1] == 9 for shard in shards)
    assert sum(len(shard) for shard in shards) == len(blocks)
    rows = lambda tensor: sorted(map(tuple, tensor.tolist()))  # noqa: E731
    assert rows(torch.cat(shards)) == rows(blocks)
    # Disjoint by position: rank r holds exactly blocks r, r + world_size, ...
    for rank, shard in enumerate(shards):
        assert torch.equal(shard, blocks[rank::world_size])

    def first_batches(seed, count=20):
        stream = batches(shards[0], micro_batch_size=4, seed=seed)
        return [next(stream) for _ in range(count)]  # 20 batches of 4 from 37 blocks: 3 epochs

    first, again, other = first_batches(7), first_batches(7), first_batches(8)
    assert all(torch.equal(a, b) for a, b in zip(first, again))
    assert not all(torch.equal(a, b) for a, b in zip(first, other))
    assert all(batch.shape == (4, 9) for batch in first)


def test_batches_refuse_a_shard_smaller_than_a_batch():
    with pytest.raises(ValueError, match="too small"):
        next(batches(torch.zeros(3, 9, dtype=torch.long), micro_batch_size=4, seed=0))


def test_model_parameter_count():
    config = TINY_MODEL
    model = build_model(config, vocab_size=512, eos_token_id=0, pad_token_id=1)
    head_dim = 64 // 4
    attention = 64 * 64 + 2 * 64 * (2 * head_dim) + 64 * 64  # q, k and v (2 kv heads), o
    mlp = 3 * 64 * 192
    per_layer = attention + mlp + 2 * 64  # two RMSNorm gains
    expected = 512 * 64 + 2 * per_layer + 64  # tied embedding/lm_head, final norm
    assert count_parameters(model) == expected
    assert model.lm_head.weight is model.model.embed_tokens.weight
    assert model.config._attn_implementation == "sdpa"
    assert model.config.eos_token_id == 0 and model.config.pad_token_id == 1


def test_warmup_cosine_schedule():
    multiplier = warmup_cosine(warmup_steps=10, max_steps=110, min_lr_ratio=0.1)
    assert multiplier(0) == pytest.approx(0.1)
    assert multiplier(9) == pytest.approx(1.0)
    assert multiplier(10) == pytest.approx(1.0)
    assert multiplier(60) == pytest.approx(0.55)
    assert multiplier(110) == pytest.approx(0.1)
    values = [multiplier(step) for step in range(10, 111)]
    assert values == sorted(values, reverse=True)


def test_fp16_is_refused_on_cpu():
    with pytest.raises(ValueError, match="fp16 needs device cuda"):
        TrainConfig(precision="fp16", device="cpu")
    TrainConfig(precision="fp16", device="cuda")


def test_the_progress_bar_shows_the_train_log_entries():
    bar = StepBar(20)
    # The first batch read after a resume holds the kept steps: the bar starts at the last of them.
    bar.show([{"step": 5, "loss": 4.1}, {"step": 10, "loss": 3.792, "tokens_per_second": 15060.2}])
    assert (bar.bar.n, bar.bar.total) == (10, 20) and bar.postfix == {"loss": "3.792", "tok/s": "1.506e+04"}
    bar.show([{"step": 10, "val_loss": 3.71, "val_perplexity": 40.85}])
    assert bar.postfix["val_loss"] == "3.71" and bar.bar.n == 10
    bar.show([{"step": 20, "loss": 3.434, "grad_norm": None}])
    assert bar.bar is None, "closed at the last step, before the final validation and save"
    bar.show([{"step": 20, "val_loss": 3.6}])
    assert bar.bar is None, "and not opened again"


def test_the_launcher_follows_the_train_log_this_run_writes(tmp_path):
    import json
    import os
    import threading
    import time

    from training.launcher import follow_log

    def wait_for(condition):
        deadline = time.monotonic() + 10
        while not condition():
            assert time.monotonic() < deadline
            time.sleep(0.01)

    log = tmp_path / "train_log.jsonl"
    log.write_text(json.dumps({"step": 90, "loss": 9.0}) + "\n")
    os.utime(log, (time.time() - 60, time.time() - 60))  # an interrupted run's, from before this one started
    chunks, stop = [], threading.Event()
    follower = threading.Thread(target=follow_log, args=(log, time.time(), stop, chunks.append, 0.02))
    follower.start()
    try:
        time.sleep(0.2)
        assert chunks == [], "an earlier run's log is not this run's progress"
        log.write_text(json.dumps({"step": 10, "loss": 4.0}) + "\n")  # JsonlLogger: the steps kept at a resume
        wait_for(lambda: len(chunks) == 1)
        with open(log, "a") as out:
            out.write(json.dumps({"step": 15, "loss": 3.9}) + "\n" + '{"step": 20, "lo')  # a line half written
        wait_for(lambda: len(chunks) == 2)
        time.sleep(0.1)
        with open(log, "a") as out:
            out.write('ss": 3.5}\n')
    finally:
        stop.set()
        follower.join(5)
    assert [[entry["step"] for entry in chunk] for chunk in chunks] == [[10], [15], [20]]
    assert chunks[-1] == [{"step": 20, "loss": 3.5}]


def test_chunked_linear_cross_entropy_matches_the_plain_loss_and_gradients():
    import torch.nn.functional as F

    from training.loss import linear_cross_entropy

    torch.manual_seed(0)
    hidden = torch.randn(300, 32, requires_grad=True)
    weight = torch.randn(1000, 32, requires_grad=True)
    targets = torch.randint(0, 1000, (300,))
    reference = F.cross_entropy(hidden @ weight.t(), targets)
    reference_grads = torch.autograd.grad(3 * reference, (hidden, weight))

    loss = linear_cross_entropy(hidden, weight, targets, chunk=64)  # 5 chunks, the last short
    grads = torch.autograd.grad(3 * loss, (hidden, weight))  # the backward scales by the upstream gradient
    assert loss.item() == pytest.approx(reference.item(), rel=1e-6)
    for got, expected in zip(grads, reference_grads):
        torch.testing.assert_close(got, expected, rtol=1e-5, atol=1e-7)

    # A frozen weight (LoRA's embedding) gets no gradient; the hidden states' is the same.
    (frozen_grad,) = torch.autograd.grad(3 * linear_cross_entropy(hidden, weight.detach(), targets, 64), (hidden,))
    torch.testing.assert_close(frozen_grad, reference_grads[0], rtol=1e-5, atol=1e-7)
    with torch.no_grad():  # validation: the loss alone
        assert linear_cross_entropy(hidden, weight, targets, 64).item() == pytest.approx(reference.item(), rel=1e-6)


def test_out_of_memory_advice_names_the_settings_not_yet_used():
    from training.engine import out_of_memory_advice

    plain = TrainingConfig(train=TrainConfig(device="cuda", micro_batch_size=16, zero_stage=1))
    advice = out_of_memory_advice(plain)
    assert advice.startswith("out of GPU memory in training; try: lower training.train.micro_batch_size (now 16)")
    for setting in ("chunked_loss_tokens=4096", "activation_checkpointing=true", "zero_stage to 3 (now 1)",
                    "offload_optimizer=true"):
        assert setting in advice
    # Nothing left to suggest but a smaller micro-batch.
    everything = TrainingConfig(train=TrainConfig(
        device="cuda", zero_stage=3, chunked_loss_tokens=4096, activation_checkpointing=True, offload_optimizer=True))
    assert "; or " not in out_of_memory_advice(everything, where="setting up the model and optimizer")


def test_chunked_loss_attaches_to_any_plain_causal_lm_and_refuses_the_rest():
    from transformers import GPT2Config, GPT2LMHeadModel

    from training.loss import attach_chunked_loss

    torch.manual_seed(0)
    # Not a Llama: GPT-2 names its decoder `transformer`; the loss is the one its logits give.
    gpt2 = GPT2LMHeadModel(GPT2Config(n_layer=1, n_embd=32, n_head=2, vocab_size=100, n_positions=64)).eval()  # no dropout
    ids = torch.randint(0, 100, (2, 17))
    expected = torch.nn.functional.cross_entropy(gpt2(input_ids=ids[:, :-1]).logits.flatten(0, 1), ids[:, 1:].flatten())
    attach_chunked_loss(gpt2, chunk=8)
    assert gpt2(input_ids=ids[:, :-1], targets=ids[:, 1:]).item() == pytest.approx(expected.item(), rel=1e-5)
    assert gpt2(input_ids=ids[:, :-1]).logits.shape == (2, 16, 100)  # without targets: the model's own forward

    soft_capped = GPT2LMHeadModel(GPT2Config(n_layer=1, n_embd=32, n_head=2, vocab_size=100))
    soft_capped.config.final_logit_softcapping = 30.0
    with pytest.raises(ValueError, match="final_logit_softcapping"):
        attach_chunked_loss(soft_capped, chunk=8)


def test_chunked_loss_refuses_lora_on_the_output_layer(tmp_path):
    from pydantic import ValidationError

    from training.config import LoraConfig

    (tmp_path / "config.json").write_text("{}")  # enough for init_from to name a HF folder
    lora = LoraConfig(enabled=True, target_modules=("q_proj", "lm_head"))
    with pytest.raises(ValidationError, match="LoRA on lm_head"):
        TrainingConfig(model=ModelConfig(init_from=str(tmp_path), lora=lora), train=TrainConfig(chunked_loss_tokens=8))
    TrainingConfig(model=ModelConfig(init_from=str(tmp_path), lora=lora))  # without the chunked loss: fine
