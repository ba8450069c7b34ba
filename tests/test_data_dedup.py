"""Dedup: exact copies, near duplicates (MinHash LSH), repeated lines; resume and worker count."""

import random
from pathlib import Path

import numpy as np
import pytest
from pydantic import ValidationError

from core.stats import StageStats
from data import dedup, ingest
from data.config import DedupConfig, IngestConfig
from data.minhash import MinHasher, jaccard, words
from data.shards import list_parts, read_records, samples_path, write_parts

VOCABULARY = [f"w{i}" for i in range(2000)]


def document(seed: int, length: int = 400) -> str:
    rng = random.Random(seed)
    return " ".join(rng.choice(VOCABULARY) for _ in range(length))


def edited(text: str, changes: int, seed: int) -> str:
    """The text with `changes` words replaced by words it does not contain."""
    tokens = text.split()
    for position in random.Random(seed).sample(range(len(tokens)), changes):
        tokens[position] = f"changed{position}"
    return " ".join(tokens)


def true_jaccard(left: str, right: str, n: int = 5) -> float:
    def shingles(text):
        tokens = words(text, lowercase=True)
        return {tuple(tokens[i:i + n]) for i in range(len(tokens) - n + 1)}
    a, b = shingles(left), shingles(right)
    return len(a & b) / len(a | b)


def write(folder: Path, records: list[dict], per_part: int = 100) -> Path:
    write_parts(records, folder, records_per_part=per_part)
    return folder


def ids(folder: Path) -> list[str]:
    return [record["id"] for record in read_records(folder)]


def folder_bytes_by_name(folder: Path) -> dict[str, bytes]:
    return {part.name: part.read_bytes() for part in list_parts(folder)}


# exact

def test_exact_keeps_first_copy_of_each_text(tmp_path):
    records = [{"id": "art/1", "text": "NOBODY EXPECTS THE SPANISH INQUISITION!"},
               {"id": "other", "text": "Something else entirely."},
               {"id": "humorists/9", "text": "NOBODY EXPECTS THE SPANISH INQUISITION!"},
               {"id": "spaced", "text": "nobody  expects the\nspanish inquisition!"}]
    stats = dedup.run(DedupConfig(lowercase=True), write(tmp_path / "in", records), tmp_path / "out")
    assert ids(tmp_path / "out") == ["art/1", "other"]
    assert stats.dropped == {"exact_duplicate": 2}
    assert stats.extra["exact_clusters"] == 1

    strict = dedup.run(DedupConfig(lowercase=False), tmp_path / "in", tmp_path / "strict")
    assert strict.dropped == {"exact_duplicate": 1}


def test_exact_removes_the_fortunes_real_duplicates(tmp_path):
    fixture = Path(__file__).parent / "fixtures" / "tiny.jsonl"
    ingest.run(IngestConfig(paths=[str(fixture)]), None, tmp_path / "ingest")
    stats = dedup.run(DedupConfig(), tmp_path / "ingest", tmp_path / "out")
    texts = [r["text"] for r in read_records(tmp_path / "out")]
    assert stats.dropped["exact_duplicate"] >= 5
    assert len(texts) == len(set(texts))
    assert StageStats.read(tmp_path / "out") == stats
    assert "exact_duplicate" in samples_path(tmp_path / "out").read_text()
    assert not dedup.work_dir(tmp_path / "out").exists()


# near duplicates

def test_near_duplicates_drop_to_the_first_of_their_cluster(tmp_path):
    original = document(1)
    records = [{"id": "variant-1", "text": edited(original, 3, seed=1)},
               {"id": "unrelated", "text": document(2)},
               {"id": "original", "text": original},
               {"id": "variant-2", "text": edited(original, 4, seed=2)}]
    assert true_jaccard(original, records[0]["text"]) > 0.9
    stats = dedup.run(DedupConfig(), write(tmp_path / "in", records, per_part=2), tmp_path / "out")
    assert ids(tmp_path / "out") == ["variant-1", "unrelated"]
    assert stats.dropped == {"near_duplicate": 2}
    assert stats.extra["near_clusters"] == 1
    assert stats.extra["near_pairs"] >= 2
    assert stats.extra["implied_threshold"] == round((1 / 16) ** (1 / 8), 4)

    exact_only = dedup.run(DedupConfig(near_dedup=False), tmp_path / "in", tmp_path / "exact")
    assert exact_only.records_out == 4 and "implied_threshold" not in exact_only.extra


def test_a_pair_below_the_threshold_stays(tmp_path):
    original = document(3)
    distant = edited(original, 60, seed=3)
    assert true_jaccard(original, distant) < 0.5
    stats = dedup.run(DedupConfig(), write(tmp_path / "in", [{"id": "a", "text": original},
                                                           {"id": "b", "text": distant}]), tmp_path / "out")
    assert stats.records_out == 2


def test_bands_times_rows_must_equal_the_permutations():
    with pytest.raises(ValidationError, match="bands x rows"):
        DedupConfig(num_perm=128, bands=20, rows=5)


def test_signatures_estimate_jaccard_and_do_not_depend_on_the_batch():
    hasher = MinHasher(num_perm=256, shingle_words=5, seed=0, lowercase=True)
    original = document(4)
    variant = edited(original, 10, seed=4)
    together, shingles, counts = hasher.signatures([document(5), original, variant, "", "too short"])
    alone, variant_shingles, _ = hasher.signatures([variant])
    assert np.array_equal(together[2], alone[0]) and counts.tolist() == [396, 396, 396, 0, 1]
    assert np.array_equal(shingles[2 * 396:3 * 396], variant_shingles)
    true = true_jaccard(original, variant)
    assert jaccard(shingles[396:2 * 396], variant_shingles) == pytest.approx(true, abs=1e-3)
    assert abs((together[1] == together[2]).mean() - true) < 0.1


# repeated lines

def test_lines_repeated_across_many_documents_are_removed(tmp_path):
    boilerplate = "Subscribe to our newsletter for more stories."
    records = [{"id": f"d{i}", "text": f"{document(10 + i, 60)}\n{boilerplate}\nSigned, writer {i % 3}."}
               for i in range(12)]
    records.append({"id": "only-boilerplate", "text": boilerplate})
    config = DedupConfig(line_dedup=True, line_min_docs=10)
    stats = dedup.run(config, write(tmp_path / "in", records, per_part=5), tmp_path / "out")
    texts = [r["text"] for r in read_records(tmp_path / "out")]
    assert len(texts) == 12 and not any(boilerplate in text for text in texts)
    assert all(text.endswith(f"Signed, writer {i % 3}.") for i, text in enumerate(texts))  # in 4 docs: stays
    assert stats.dropped == {"only_repeated_lines": 1}
    assert stats.extra["lines_removed"] == 12 and stats.extra["repeated_lines"] == 1


# scale-out: workers and resume

@pytest.fixture
def corpus(tmp_path):
    records = []
    for i in range(60):
        records.append({"id": f"doc{i}", "text": document(100 + i, 300) + "\nShared footer line."})
        if i % 4 == 0:
            records.append({"id": f"near{i}", "text": edited(records[-1]["text"], 2, seed=i)})
        if i % 5 == 0:
            records.append({"id": f"copy{i}", "text": records[-1]["text"]})
    return write(tmp_path / "in", records, per_part=15)


CONFIG = DedupConfig(line_dedup=True, line_min_docs=20)


def test_two_workers_give_the_same_output_as_one(corpus, tmp_path):
    one = dedup.run(CONFIG, corpus, tmp_path / "one", workers=1)
    two = dedup.run(CONFIG, corpus, tmp_path / "two", workers=2)
    assert folder_bytes_by_name(tmp_path / "one") == folder_bytes_by_name(tmp_path / "two")
    assert one.model_dump(exclude={"seconds"}) == two.model_dump(exclude={"seconds"})
    assert one.dropped == {"exact_duplicate": 12, "near_duplicate": 15}
    assert one.extra["shards"] == 6 and one.extra["lines_removed"] == one.records_out


def test_a_crashed_run_resumes_from_finished_shards(corpus, tmp_path, monkeypatch):
    reference = dedup.run(CONFIG, corpus, tmp_path / "reference")
    sign_part = dedup._sign_part

    def crash_on_third_part(part, target, **options):
        if part.name == "part-00002.jsonl":
            raise RuntimeError("worker killed")
        sign_part(part, target, **options)

    monkeypatch.setattr(dedup, "_sign_part", crash_on_third_part)
    with pytest.raises(RuntimeError, match="worker killed"):
        dedup.run(CONFIG, corpus, tmp_path / "out")
    assert not (tmp_path / "out").exists()
    assert len(list((dedup.work_dir(tmp_path / "out") / "signatures").glob("part-*"))) == 2

    monkeypatch.setattr(dedup, "_sign_part", sign_part)
    resumed = dedup.run(CONFIG, corpus, tmp_path / "out")
    assert resumed.extra["shards_resumed"] == 2
    assert folder_bytes_by_name(tmp_path / "out") == folder_bytes_by_name(tmp_path / "reference")
    assert resumed.dropped == reference.dropped
    assert StageStats.read(tmp_path / "out") == resumed


def test_a_changed_config_does_not_reuse_earlier_results(corpus, tmp_path):
    work = dedup.work_dir(tmp_path / "out")
    (work / "signatures" / "part-00000.jsonl").mkdir(parents=True)  # a stale, empty result
    stats = dedup.run(CONFIG, corpus, tmp_path / "out")
    assert stats.extra["shards_resumed"] == 0
