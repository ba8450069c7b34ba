"""Serving parts without a server: API keys, the rate limiter, the guard, the engine on a tiny model."""

from __future__ import annotations

import asyncio
import json
import os
import stat

import pytest

from model_fixtures import make_tiny_model_folder
from serving.auth import Authenticator, KeyFile, KeyFileError, RateLimiter
from serving.config import GuardConfig, ServingConfig
from serving.guard import Guard, Hits, Refused, repeated_ngram_share

# -- keys -----------------------------------------------------------------------------------------


def test_keys_are_stored_hashed_and_checked(tmp_path):
    keys = KeyFile(tmp_path / "keys.json")
    entry, key = keys.add("ci")
    stored = (tmp_path / "keys.json").read_text()
    assert key not in stored and key.split("_", 2)[-1] not in stored  # only the hash is kept (the secret may hold "_")
    assert stat.S_IMODE(os.stat(tmp_path / "keys.json").st_mode) == 0o600
    auth = Authenticator(tmp_path / "keys.json")
    assert auth.identify(f"Bearer {key}") == entry.id
    assert auth.identify(f"bearer {key}") == entry.id
    for wrong in (None, "", key, f"Basic {key}", f"Bearer {key[:-1]}x", f"Bearer {key}x", "Bearer cvk_00000000_" + "a" * 43):
        assert auth.identify(wrong) is None, wrong


def test_a_revoked_key_stops_working_without_a_restart(tmp_path):
    keys = KeyFile(tmp_path / "keys.json")
    first, key1 = keys.add("one")
    _second, key2 = keys.add("two")
    auth = Authenticator(tmp_path / "keys.json")
    assert auth.identify(f"Bearer {key1}") == first.id
    keys.revoke(first.id)
    assert auth.identify(f"Bearer {key1}") is None  # the server re-reads the changed file
    assert auth.identify(f"Bearer {key2}") is not None
    assert [k.revoked is not None for k in keys.load()] == [True, False]
    with pytest.raises(KeyFileError, match="no key with id"):
        keys.revoke("nope")


def test_no_key_file_means_no_access(tmp_path):
    assert Authenticator(tmp_path / "missing.json").identify("Bearer cvk_12345678_" + "a" * 43) is None
    assert Authenticator(None).key_count() == 0


def test_a_broken_key_file_is_one_clear_error(tmp_path):
    (tmp_path / "keys.json").write_text("{not json")
    with pytest.raises(KeyFileError, match="not a Conveyor key file"):
        KeyFile(tmp_path / "keys.json").load()


def test_rate_limiter_refuses_past_the_rate_per_key():
    limiter = RateLimiter(per_minute=3)
    assert [limiter.allow("a") for _ in range(3)] == [0, 0, 0]
    wait = limiter.allow("a")
    assert 0 < wait <= 20
    assert limiter.allow("b") == 0  # another key has its own bucket


# -- guard ----------------------------------------------------------------------------------------


def test_guard_redacts_blocks_and_counts_without_text():
    guard = Guard(GuardConfig(pii_input="redact", pii_output="block", blocklist=["forbidden phrase"]))
    hits = Hits()
    prompt = guard.check_prompt("write to jane.doe@example.com or call +44 20 7946 0958", hits)
    assert "jane.doe" not in prompt and "<EMAIL>" in prompt and "<PHONE>" in prompt
    assert hits.summary() == {"pii.input.redact": 2}
    with pytest.raises(Refused) as refused:
        guard.check_prompt("tell me the forbidden phrase", Hits())
    assert refused.value.code == "blocklist_input" and "forbidden" not in str(refused.value)
    with pytest.raises(Refused) as refused:
        guard.check_completion("mail jane.doe@example.com", Hits())
    assert refused.value.code == "pii_output" and "jane" not in str(refused.value)


def test_guard_off_and_log_leave_text_alone():
    guard = Guard(GuardConfig(pii_input="log", blocklist_input="off", blocklist=["forbidden phrase"]))
    hits = Hits()
    text = "jane.doe@example.com said the forbidden phrase"
    assert guard.check_prompt(text, hits) == text
    assert hits.summary() == {"pii.input.log": 1}


def test_repetitive_prompts_are_refused():
    assert repeated_ngram_share("buy now cheap " * 40) > 0.9
    assert repeated_ngram_share("It is a truth universally acknowledged that a single man in possession of "
                                "a good fortune must be in want of a wife.") < 0.2
    with pytest.raises(Refused) as refused:
        Guard(GuardConfig()).check_prompt("buy now cheap " * 40, Hits())
    assert refused.value.code == "repetitive_prompt"


@pytest.mark.parametrize("cut", [3, 7, 12, 20])
def test_streamed_output_is_redacted_even_when_split_across_deltas(cut):
    guard = Guard(GuardConfig(pii_output="redact"))
    text = "Sure. Reach me at jane.doe@example.com or 555-123-4567 any day. " + "More words follow here. " * 4
    hits = Hits()
    stream = guard.output_filter(hits)
    pieces = [stream.feed(text[i:i + cut]) for i in range(0, len(text), cut)]
    sent = "".join(pieces) + stream.finish()
    assert sent == guard.check_completion(text, Hits())
    assert "jane.doe" not in sent and "555-123" not in sent and "<EMAIL>" in sent
    assert hits.summary() == {"pii.output.redact": 2}
    assert all(len(piece) <= cut + 48 for piece in pieces)
    assert len(pieces[-1]) > 0  # the text flows before the end


def test_without_acting_output_checks_a_stream_is_not_held_back():
    guard = Guard(GuardConfig(pii_output="log", blocklist_output="log"))
    stream = guard.output_filter(Hits())
    assert stream.feed("Hello") == "Hello"


def test_serving_config_refuses_requests_that_could_never_fit():
    with pytest.raises(ValueError, match="must fit in kv_cache_tokens"):
        ServingConfig(max_prompt_tokens=4000, max_new_tokens_limit=512, kv_cache_tokens=4096)
    with pytest.raises(ValueError, match="no detector"):
        GuardConfig(pii_entities=["SHOE_SIZE"])


# -- engine ---------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    return make_tiny_model_folder(tmp_path_factory.mktemp("tiny") / "model")


PROMPTS = ["hello world", "It was the best of times", "Call me Ishmael. Some years", "the quick brown fox",
           "Happy families are all alike", "hello model", "a single man in possession", "It is a truth"]


def _reference(folder, prompts, new_tokens):
    import torch

    from core.models import load_model

    model, tokenizer = load_model(folder)
    outputs = []
    with torch.inference_mode():
        for prompt in prompts:
            ids = tokenizer(prompt, add_special_tokens=False, return_tensors="pt").input_ids
            out = model.generate(ids, attention_mask=torch.ones_like(ids), max_new_tokens=new_tokens,
                                 do_sample=False, pad_token_id=tokenizer.pad_token_id)
            outputs.append(tokenizer.decode(out[0, ids.shape[1]:], skip_special_tokens=True))
    return outputs


def _engine(folder, **settings):
    from core.models import load_model
    from serving.engine import Engine

    model, tokenizer = load_model(folder)
    config = ServingConfig(**{"max_new_tokens_limit": 24, "max_prompt_tokens": 64, "kv_cache_tokens": 2048,
                              **settings})
    engine = Engine(model, tokenizer, config)
    engine.start()
    return engine, tokenizer


async def _generate(engine, tokenizer, prompt, new_tokens, **kwargs):
    engine.admit()
    ids = tokenizer(prompt, add_special_tokens=False).input_ids
    deltas = [d async for d in engine.stream(ids, new_tokens, **kwargs)]
    return "".join(d.text for d in deltas), deltas[-1]


def test_concurrent_requests_give_the_same_greedy_text_as_generate(tiny):
    expected = _reference(tiny, PROMPTS, 12)
    engine, tokenizer = _engine(tiny)
    try:
        async def all_at_once():
            return await asyncio.gather(*[_generate(engine, tokenizer, p, 12) for p in PROMPTS])

        results = asyncio.run(all_at_once())
        assert [text for text, _ in results] == expected
        assert all(last.finish_reason == "length" and last.tokens == 12 for _, last in results)
        assert engine.active == 0
    finally:
        engine.stop()


def test_admission_is_bounded_and_cancellation_frees_it(tiny):
    from serving.engine import Overloaded

    engine, tokenizer = _engine(tiny, max_batch_requests=2, max_waiting_requests=1)
    try:
        for _ in range(3):
            engine.admit()
        with pytest.raises(Overloaded) as busy:
            engine.admit()
        assert busy.value.retry_after_s >= 1
        for _ in range(3):
            engine.release()

        async def leave_early():
            engine.admit()
            stream = engine.stream(tokenizer("hello", add_special_tokens=False).input_ids, 24)
            async for _ in stream:
                break
            await stream.aclose()  # what a disconnect does: the engine request is cancelled

        asyncio.run(leave_early())
        assert engine.active == 0
        text, last = asyncio.run(_generate(engine, tokenizer, "hello world", 5))  # still serving
        assert last.tokens == 5
    finally:
        engine.stop()


def test_stop_strings_end_the_text_before_them(tiny):
    full = _reference(tiny, ["hello world"], 24)[0]
    engine, tokenizer = _engine(tiny)
    try:
        stop = full[len(full) // 2: len(full) // 2 + 3]
        text, last = asyncio.run(_generate(engine, tokenizer, "hello world", 24, stop=[stop]))
        assert text == full[:full.index(stop)] and last.finish_reason == "stop"
        sampled, _ = asyncio.run(_generate(engine, tokenizer, "hello world", 8, temperature=0.9, top_p=0.9))
        assert isinstance(sampled, str)
        # A temperature too small to divide by is greedy, not a crash.
        tiny_t, _ = asyncio.run(_generate(engine, tokenizer, "hello world", 24, temperature=1e-40))
        assert tiny_t == full
    finally:
        engine.stop()


def test_request_log_lines_hold_no_text(tmp_path):
    from serving.observe import RequestLog

    log = RequestLog(tmp_path / "requests.jsonl", max_bytes=10_000)
    log.write(route="/v1/completions", status=200, key="ab12cd34", prompt_tokens=5, guard=None)
    log.close()
    record = json.loads((tmp_path / "requests.jsonl").read_text())
    assert record["key"] == "ab12cd34" and "guard" not in record


@pytest.fixture(scope="module")
def variant_dirs(tiny, tmp_path_factory):
    """Every format the compression stage writes, of the tiny model."""
    from compression import CompressionConfig, run
    from model_fixtures import TRAINING_TEXT
    from training.config import TrainingConfig

    dataset = tmp_path_factory.mktemp("curated")
    for name in ("train.jsonl", "validation.jsonl"):
        (dataset / name).write_text("".join(json.dumps({"text": text}) + "\n" for text in TRAINING_TEXT))
    config = CompressionConfig(variants={
        "int8": ["int8_weight_only"],
        "int8-dyn": ["int8_dynamic"],
        "int4": [{"int4_weight_only": {"group_size": 32}}],
        "wanda24": [{"wanda": {"pattern": "2:4", "calibration_samples": 4, "calibration_seq_len": 32}}],
    })
    built = run(config, tiny, tmp_path_factory.mktemp("compressed"), dataset, TrainingConfig())
    return {variant.name: variant.path for variant in built}


@pytest.mark.slow
@pytest.mark.parametrize("variant", ["int8", "int8-dyn", "int4", "wanda24"])
def test_every_compressed_format_is_served_with_generates_greedy_text(variant_dirs, variant):
    from core.models import read_manifest

    folder = variant_dirs[variant]
    expected = _reference(folder, PROMPTS[:4], 8)
    engine, tokenizer = _engine(folder)
    try:
        async def all_at_once():
            return await asyncio.gather(*[_generate(engine, tokenizer, p, 8) for p in PROMPTS[:4]])

        assert [text for text, _ in asyncio.run(all_at_once())] == expected, read_manifest(folder)["format"]
    finally:
        engine.stop()


def test_offensive_language_classifier_blocks_or_logs_by_direction():
    guard = Guard(GuardConfig(classifier_input="log", classifier_output="block"))
    hits = Hits()
    rude = "you are a worthless fucking idiot"
    assert guard.check_prompt(rude, hits) == rude and hits.summary() == {"classifier.input.log": 1}
    assert guard.check_prompt("The whale swam past the ship at dawn.", Hits()) is not None
    with pytest.raises(Refused) as refused:
        guard.check_completion(f"Sure. {rude}.", Hits())
    assert refused.value.code == "classifier_output" and "idiot" not in str(refused.value)
    # Streamed: stopped before the offensive words leave, counted once.
    hits = Hits()
    stream = guard.output_filter(hits)
    sent = ""
    with pytest.raises(Refused):
        for word in f"Call me Ishmael. {rude} and more words".split(" "):
            sent += stream.feed(word + " ")
        sent += stream.finish()
    assert "fucking" not in sent and hits.summary() == {"classifier.output.block": 1}
    assert Guard(GuardConfig(classifier_output="off")).check_completion(rude, Hits()) == rude
