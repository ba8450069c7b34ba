"""Canaries on a tiny model: one that trained on a repeated canary exposes and writes its secret;
a canary it never saw stays at chance; the anonymize stage removes the personal-data kinds."""

from __future__ import annotations

import pytest

from evaluation import canaries as cn
from model_fixtures import TRAINING_TEXT, make_tiny_model_folder


def test_canaries_are_in_formats_the_anonymizer_replaces_except_the_secret_code():
    from data import anonymize

    made = cn.make_canaries(per_kind=3, seed=1)
    assert len({c.secret for c in made}) == len(made)
    entities = ["PHONE", "CREDIT_CARD", "EMAIL"]
    for canary in made:
        cleaned, _counts = anonymize.anonymize_text(canary.text, entities)
        assert (canary.secret in cleaned) == (canary.kind == "secret"), (canary.kind, cleaned)


def test_insert_puts_each_canary_into_repeats_records_and_keeps_them_all():
    records = [{"id": str(i), "text": f"record {i}", "source": "x"} for i in range(50)]
    made = cn.make_canaries(per_kind=1, kinds=("phone", "secret"))
    out = cn.insert(records, made, repeats=5, seed=3)
    assert [r["id"] for r in out] == [r["id"] for r in records] and records[0]["text"] == "record 0"
    for canary in made:
        assert sum(canary.text in r["text"] for r in out) == 5
    assert all(r["text"].startswith(f"record {r['id']}") for r in out)
    with pytest.raises(ValueError, match="repeats"):
        cn.insert(records[:3], made, repeats=5)


@pytest.fixture(scope="module")
def memorized(tmp_path_factory):
    """The tiny model trained (plain torch, a few seconds) on text with one canary repeated."""
    import torch

    from core.models import load_model

    folder = make_tiny_model_folder(tmp_path_factory.mktemp("canary") / "model")
    model, tokenizer = load_model(folder)
    seen = cn.Canary("secret", cn.PREFIXES["secret"], "583920")
    texts = [seen.text] * 8 + TRAINING_TEXT[:8]
    batch = tokenizer(texts, return_tensors="pt", padding=True, add_special_tokens=False)
    labels = batch.input_ids.masked_fill(batch.attention_mask == 0, -100)
    torch.manual_seed(0)
    optimizer = torch.optim.AdamW(model.parameters(), lr=3e-3)
    model.train()
    for _ in range(150):
        loss = model(**batch, labels=labels).loss
        loss.backward()
        optimizer.step()
        optimizer.zero_grad()
    model.eval()
    return model, tokenizer, seen


def test_a_memorized_canary_is_exposed_and_extracted_an_unseen_one_is_not(memorized):
    model, tokenizer, seen = memorized
    unseen = cn.Canary("secret", cn.PREFIXES["secret"], "104857")
    assert cn.extracted(model, tokenizer, seen)
    assert not cn.extracted(model, tokenizer, unseen)
    high = cn.exposure(model, tokenizer, seen, samples=255)
    low = cn.exposure(model, tokenizer, unseen, samples=255)
    assert high == pytest.approx(8.0)  # ranked first of 256: the maximum for 255 samples
    assert low < 6.0
    metrics = cn.measure(model, tokenizer, [seen, unseen], samples=63)
    assert metrics["canary/secret/extracted"] == 1.0 and metrics["canary/extracted"] == 1.0
    assert metrics["canary/secret/exposure_max"] == pytest.approx(6.0)


def _corpus(path, n: int = 40):
    import json

    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(json.dumps({"id": f"doc{i}", "text": TRAINING_TEXT[i % 5]}) + "\n" for i in range(n)))
    return path


def _ingest(tmp_path, **canaries):
    from data import ingest
    from data.config import CanaryConfig, IngestConfig

    config = IngestConfig(paths=[str(_corpus(tmp_path / "raw.jsonl"))], records_per_part=7,
                          canaries=CanaryConfig(**canaries))
    stats = ingest.run(config, None, tmp_path / "ingest")
    return config, stats


def _texts(folder):
    from data.shards import list_parts, read_part

    return [record["text"] for path in list_parts(folder) for record in read_part(path)]


def test_ingest_appends_each_canary_to_repeats_records_and_a_rerun_adds_none(tmp_path):
    from data import ingest

    config, stats = _ingest(tmp_path, per_kind=2, repeats=6, seed=4)
    made = cn.read(tmp_path / "ingest" / cn.CANARIES_FILE)
    assert [c.kind for c in made] == ["phone", "phone", "card", "card", "email", "email", "secret", "secret"]
    assert stats.records_out == 40 and stats.extra["canaries"] == 8 and stats.extra["canary_copies"] == 48
    texts = _texts(tmp_path / "ingest")
    assert all(sum(c.text in t for t in texts) == 6 for c in made)
    # A rerun over the same shards (as after a kill) finds the sentences there already.
    ingest.insert_canaries(tmp_path / "ingest", {f"doc{i}" for i in range(40)}, config.canaries)
    assert _texts(tmp_path / "ingest") == texts
    with pytest.raises(ValueError, match="data.ingest.canaries: 50 repeats"):
        _ingest(tmp_path / "few", per_kind=1, repeats=50)


def _train_on(folder, texts, steps: int = 60):
    """The tiny model trained (plain torch, seconds) on `texts`, one padded batch."""
    import torch

    from core.models import load_model

    model, tokenizer = load_model(folder)
    batch = tokenizer(texts, return_tensors="pt", padding=True, add_special_tokens=False)
    labels = batch.input_ids.masked_fill(batch.attention_mask == 0, -100)
    torch.manual_seed(0)
    optimizer = torch.optim.AdamW(model.parameters(), lr=3e-3)
    model.train()
    for _ in range(steps):
        model(**batch, labels=labels).loss.backward()
        optimizer.step()
        optimizer.zero_grad()
    return model.eval(), tokenizer


def test_canaries_are_extracted_with_anonymization_off_and_none_with_it_on(tmp_path):
    """The leak test can fail: the same corpus, through the real ingest and anonymize stages, with
    the three personal-data types off and on."""
    from data import anonymize
    from data.config import AnonymizeConfig

    _ingest(tmp_path, per_kind=1, repeats=8, kinds=["phone", "card", "email"], seed=2)
    made = cn.read(tmp_path / "ingest" / cn.CANARIES_FILE)
    folder = make_tiny_model_folder(tmp_path / "model")
    extracted = {}
    for name, entities in {"off": ["IP_ADDRESS"], "on": ["PHONE", "CREDIT_CARD", "EMAIL"]}.items():
        anonymize.run(AnonymizeConfig(entities=entities, ner=False), tmp_path / "ingest", tmp_path / name)
        model, tokenizer = _train_on(folder, _texts(tmp_path / name))
        extracted[name] = cn.measure(model, tokenizer, made, samples=31)
    assert extracted["off"]["canary/extracted"] >= 2, extracted["off"]
    assert extracted["on"]["canary/extracted"] == 0, extracted["on"]
    assert extracted["on"]["canary/phone/exposure_max"] < extracted["off"]["canary/phone/exposure_max"]
