"""The committed demo corpus and test fixture hold what the pipeline's tests and demo rely on."""

import gzip
import json
from collections import Counter

from core.state import REPO_ROOT
from data.anonymize import anonymize_text

DEMO = REPO_ROOT / "data" / "corpus" / "demo.jsonl.gz"
TINY = REPO_ROOT / "tests" / "fixtures" / "tiny.jsonl"


def parsed(lines):
    records, bad = [], 0
    for line in lines:
        try:
            records.append(json.loads(line))
        except json.JSONDecodeError:
            bad += 1
    return records, bad


def test_demo_corpus_has_every_source_duplicates_pii_and_bad_lines():
    with gzip.open(DEMO, "rt", encoding="utf-8") as handle:
        records, malformed = parsed(handle)
    assert malformed == 1
    good = [r for r in records if r["source"] != "bad"]
    assert len(records) - len(good) == 5  # no text, empty, null, a number, a taken id
    assert all(isinstance(r["text"], str) and r["text"] for r in good)
    assert {r["source"].split("/")[0] for r in good} == {"austen", "moby_dick", "brown", "fortunes", "wikipedia"}
    assert 5e6 < sum(len(r["text"]) for r in good) < 8e6
    assert sum(n - 1 for n in Counter(r["text"] for r in good).values() if n > 1) >= 79
    with_pii = sum(bool(anonymize_text(r["text"], ["EMAIL", "PHONE", "IP_ADDRESS", "CREDIT_CARD"])[1]) for r in good)
    assert with_pii >= 0.15 * len(good)
    assert DEMO.stat().st_size < 4e6


def test_tiny_fixture_is_small_and_has_the_cases_the_e2e_test_needs():
    records, malformed = parsed(TINY.read_text(encoding="utf-8").splitlines())
    assert malformed == 1 and TINY.stat().st_size < 1e6
    assert 280 <= len(records) <= 320
    texts = [r["text"] for r in records if r["text"].strip()]
    assert sum(len(t) >= 300 for t in texts) >= len(texts) - 3
    assert len(texts) - len(set(texts)) >= 5
