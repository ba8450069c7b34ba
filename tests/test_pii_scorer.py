"""The PII detectors' learned record gate (data/pii_scorer.py): what it leaves, what it never
drops, and what its weights hold."""

import json
import re
from collections import Counter

import pytest

from benchmarks.bench_pii_handwritten import SETS, load
from data import pii_scorer
from data.config import AnonymizeConfig
from data.pii import ENTITIES, PiiDetector, Span

POLICY = ("Staff travel policy TP-07 (version 3, approved by the Executive Committee)\nApplies to employees who "
          "live in or travel to our sites in Ghana, Togo and Benin.\nBook flights through the travel desk at least 14 "
          "days ahead; economy class for trips under 6 hours.\nVaccinations and visas are paid by the company; keep "
          "receipts for 6 years.\nQuestions: travel@company.example.com")
LETTER = ("Hi Marta,\n\nthanks for yesterday. My new mobile is +44 7700 900123 and I moved to 14 Elm Road, Leeds "
          "last week. Could you update the club list? Ask Joanna if the kit has arrived.\n\nBest, Pavel")


@pytest.fixture(scope="module")
def detectors():
    return PiiDetector(ENTITIES), PiiDetector(ENTITIES, record_threshold=0)


def found(detector, text):
    return [(text[span.start:span.end], span.entity) for span in detector.find(text)]


def test_a_record_the_rules_misread_is_left_whole_and_one_with_someones_data_is_not(detectors):
    gated, rules = detectors
    # the rules read "who live in" as someone living in the countries; nothing else here is anyone's
    assert found(rules, POLICY) == [("Ghana", "LOCATION"), ("Togo", "LOCATION"), ("Benin", "LOCATION")]
    assert found(gated, POLICY) == []
    left = Counter()  # and the stage's stats count it
    assert gated.find_many([POLICY, LETTER], left)[0] == [] and left["not_personal_record"] == 1
    # a letter's names, mobile and street address all stay: the gate drops all of a record or none
    assert found(gated, LETTER) == found(rules, LETTER) == [
        ("Marta", "PERSON"), ("+44 7700 900123", "PHONE"), ("14 Elm Road, Leeds", "LOCATION"),
        ("Joanna", "PERSON"), ("Pavel", "PERSON")]


def test_what_the_gate_never_drops():
    text = "x" * 400 + " Ana Reis, a.reis@example.com, card 4111 1111 1111 1111, +351 912 345 678"
    spans = [Span(401, 409, "PERSON"), Span(411, 428, "EMAIL"), Span(435, 454, "CREDIT_CARD"), Span(456, 472, "PHONE")]
    never = pii_scorer.SpanScorer(threshold=0.999999)  # a gate that leaves every record it may
    # a mailbox made of a name shows by itself that the record is someone's
    assert never.keep(text, spans) == spans
    # without it the scored spans go, and a card (what a checksum vouches for) stays
    rest = [spans[0], spans[2], spans[3]]
    assert never.keep(text.replace("a.reis", "sales"), rest) == [spans[2]]
    # a record shorter than any the model learned from keeps the rules' spans
    short = text[395:]
    shifted = [Span(s.start - 395, s.end - 395, s.entity) for s in rest]
    assert len(short) < pii_scorer.MIN_CHARS and never.keep(short.replace("a.reis", "sales"), shifted) == shifted


def test_the_gate_sits_out_where_its_model_does_not_apply():
    assert AnonymizeConfig().record_threshold == pii_scorer.DEFAULT_THRESHOLD
    assert PiiDetector(ENTITIES, ner=False).scorer is None  # trained on spans with NER on
    assert PiiDetector(["EMAIL", "PHONE", "PERSON"]).scorer is None  # and on every entity type
    assert PiiDetector(ENTITIES, contextual=False).scorer is None
    assert PiiDetector(ENTITIES, record_threshold=0).scorer is None
    assert PiiDetector(ENTITIES).scorer is not None


def test_weights_from_another_feature_version_are_refused(tmp_path):
    path = tmp_path / "weights.json"
    path.write_text(json.dumps({"feature_version": pii_scorer.FEATURE_VERSION + 1, "bias": 0, "weights": {}}))
    with pytest.raises(ValueError, match="retrain it"):
        pii_scorer.SpanScorer(path=path)


def test_the_weights_hold_no_value_of_the_sets_they_were_trained_on():
    weights = json.loads(pii_scorer.WEIGHTS.read_text(encoding="utf-8"))["weights"]
    # every word a feature names is an English word or a title, or stands for a kind of word
    words = {word for feature in weights if "=" in feature and not re.search(r":(?:shape|near|same_line)=", feature)
             for word in re.findall(r"[^\W\d_]+", feature.split("=", 1)[1])
             if not re.fullmatch(r"[Xxd]+", word)}  # (a number's or a code's shape: "XdX")
    allowed = pii_scorer.vocabulary() | {"NAME", "Cap", "low"}
    assert sorted(word for word in words if word.casefold() not in allowed and word not in allowed) == []
    # so no word of a personal value is one, unless it is an English word ("Grant", "Road")
    values = {word for name in SETS for doc in load(name) for start, end, _ in doc.spans
              for word in re.findall(r"[^\W\d_]{3,}", doc.text[start:end])}
    assert sorted(word for word in values if word.casefold() in {w.casefold() for w in words}
                  and word.casefold() not in pii_scorer.vocabulary()) == []
    # (and the check is no formality: the sets' values do hold names no word list has)
    assert sum(word.casefold() not in pii_scorer.vocabulary() for word in values) > 1000
