"""Drift checks (evaluation/drift.py) on text we know: the test fixture against itself (no drift)
and against documents of another kind (drift), drop rates, and prompt lengths from a request log."""

from __future__ import annotations

import json
import random
from pathlib import Path

from evaluation.drift import DriftConfig, curation_drift, evaluate_drift, text_drift, traffic_drift

FIXTURE = Path(__file__).parent / "fixtures" / "tiny.jsonl"


def fixture_texts() -> list[str]:
    texts = []
    for line in FIXTURE.read_text().splitlines():
        try:
            record = json.loads(line)
        except json.JSONDecodeError:
            continue  # the fixture's malformed lines
        if isinstance(record.get("text"), str) and len(record["text"]) > 200:
            texts.append(record["text"])
    return texts


def support_tickets(n: int, seed: int = 0) -> list[str]:
    """Prose of another kind: support tickets about routers and invoices."""
    rng = random.Random(seed)
    subjects = ["The router", "My invoice", "The firmware update", "The billing portal", "The mobile app"]
    verbs = ["stopped working after", "was charged twice during", "failed to install on", "keeps logging me out of"]
    objects = ["the last update", "the March billing cycle", "version 4.2 of the firmware", "the new dashboard"]
    asks = ["Please refund the duplicate charge.", "Can you reset my account?", "I need a replacement device.",
            "Please escalate this ticket to engineering."]
    return [" ".join(f"{rng.choice(subjects)} {rng.choice(verbs)} {rng.choice(objects)}. {rng.choice(asks)}"
                     for _ in range(rng.randint(6, 14))) for _ in range(n)]


def test_the_same_kind_of_text_does_not_drift():
    texts = fixture_texts()
    random.Random(0).shuffle(texts)
    half = len(texts) // 2
    result = text_drift(texts[:half], texts[half:], DriftConfig(), html=None)
    assert not result["columns"]["text"]["drifted"], result["columns"]["text"]
    assert result["share"] < 0.5


def test_another_kind_of_text_drifts_and_the_report_names_its_words(tmp_path):
    result = text_drift(fixture_texts(), support_tickets(60), DriftConfig(), html=tmp_path / "report.html")
    text = result["columns"]["text"]
    assert text["drifted"] and text["score"] > 0.9
    assert {"invoice", "router", "firmware"} & set(text["new_terms"])
    assert "Drift: 60 new documents" in (tmp_path / "report.html").read_text()


def test_only_documents_the_champion_did_not_see_count(tmp_path):
    reference = tmp_path / "reference.jsonl"
    current = tmp_path / "current.jsonl"
    old = fixture_texts()
    reference.write_text("".join(json.dumps({"id": f"d{i}", "text": t}) + "\n" for i, t in enumerate(old)))
    new = support_tickets(30)
    current.write_text(reference.read_text() + "".join(json.dumps({"id": f"n{i}", "text": t}) + "\n"
                                                       for i, t in enumerate(new)))
    report = evaluate_drift(reference, current, DriftConfig(), tmp_path / "out")
    assert report.new_documents == 30 and report.drifted
    assert "new documents differ" in report.summary()
    unchanged = evaluate_drift(reference, reference, DriftConfig(), tmp_path / "out2")
    assert unchanged.new_documents == 0 and not unchanged.drifted and unchanged.summary().startswith("no drift")


def test_a_stage_that_starts_dropping_more_is_drift():
    champion = {"clean.records_in": 100.0, "clean.dropped.too_short": 5.0, "dedup.records_in": 95.0}
    now = {"clean": {"records_in": 200, "dropped": {"too_short": 10, "gopher_alpha_ratio": 60}},
           "dedup": {"records_in": 130, "dropped": {}}}
    table, reasons = curation_drift(now, champion, DriftConfig())
    assert table["clean"] == {"now": 0.35, "champion": 0.05}
    assert reasons == ["clean drops 35% of records (champion's data: 5%)"]
    assert curation_drift(now, champion, DriftConfig(drop_rate_change=0.5))[1] == []


def test_prompt_lengths_that_move_are_traffic_drift(tmp_path):
    log = tmp_path / "requests.jsonl"
    rng = random.Random(0)
    steady = [rng.randint(10, 30) for _ in range(400)]
    log.write_text("".join(json.dumps({"status": 200, "prompt_tokens": n}) + "\n" for n in steady))
    config = DriftConfig(traffic_window=200)
    assert traffic_drift(log, config)["p_value"] > config.traffic_p_value
    longer = [rng.randint(200, 400) for _ in range(200)]
    with log.open("a") as handle:
        handle.writelines(json.dumps({"status": 200, "prompt_tokens": n}) + "\n" for n in longer)
        handle.write(json.dumps({"status": 200, "prompt_tokens": 5, "shadow": True}) + "\n")  # not counted twice
    moved = traffic_drift(log, config)
    assert moved["p_value"] < config.traffic_p_value and moved["current_median"] > 200
    assert traffic_drift(tmp_path / "none.jsonl", config)["requests"] == 0
