"""Each data stage on small hand-made inputs: what it keeps, what it drops and why."""

import json
from pathlib import Path

import pytest

from core.stats import StageStats
from data import anonymize, clean, dedup, ingest, split
from data.config import AnonymizeConfig, CleanConfig, DedupConfig, IngestConfig, SplitConfig
from data.records import QUARANTINE_FILE
from data.shards import part_name, read_part, read_records

PROSE = "It is a truth universally acknowledged, that a single man in possession of a good fortune must be in want of a wife. "


def write_records(folder: Path, records: list[dict]) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / part_name(0)).write_text("".join(json.dumps(r) + "\n" for r in records), encoding="utf-8")
    return folder


# ingest

def test_ingest_quarantines_bad_lines_and_keeps_every_good_record(tmp_path):
    source = tmp_path / "raw.jsonl"
    source.write_text("\n".join([
        json.dumps({"id": "a", "text": "first", "genre": "news"}),
        '{"id": "broken", "text": "cut off',
        json.dumps({"id": "no-text"}),
        json.dumps({"id": "null-text", "text": None}),
        json.dumps({"id": "empty", "text": "  \n"}),
        json.dumps({"id": "number", "text": 7}),
        json.dumps({"text": "no id here"}),
        json.dumps({"id": "a", "text": "same id again"}),
        json.dumps({"id": 2, "text": "second"}),
    ]) + "\n")
    stats = ingest.run(IngestConfig(paths=[str(source)]), None, tmp_path / "out")

    records = list(read_records(tmp_path / "out"))
    assert records == [{"id": "a", "text": "first", "genre": "news"}, {"id": "2", "text": "second"}]
    assert stats.dropped == {"malformed_json": 1, "missing_text": 2, "empty_text": 1, "non_string_text": 1,
                             "missing_id": 1, "duplicate_id": 1}
    assert (stats.records_in, stats.records_out) == (9, 2)
    quarantined = list(read_part(tmp_path / "out" / QUARANTINE_FILE))
    assert [q["line"] for q in quarantined] == [2, 3, 4, 5, 6, 7, 8]
    assert quarantined[0] == {"source": str(source), "line": 2, "reason": "malformed_json",
                              "raw": '{"id": "broken", "text": "cut off'}
    assert StageStats.read(tmp_path / "out") == stats


def test_ingest_maps_fields_and_reads_gzip_parquet_and_txt(tmp_path):
    import gzip

    import pandas as pd

    with gzip.open(tmp_path / "a.jsonl.gz", "wt", encoding="utf-8") as handle:
        handle.write(json.dumps({"doc": "g1", "body": "from gzip"}) + "\n")
    pd.DataFrame({"doc": ["p1"], "body": ["from parquet"]}).to_parquet(tmp_path / "b.parquet")
    (tmp_path / "letters").mkdir()
    (tmp_path / "letters" / "t1.txt").write_text("from a text file")
    config = IngestConfig(paths=[str(tmp_path / "a.jsonl.gz"), str(tmp_path / "b.parquet"),
                                 str(tmp_path / "letters")], id_field="doc", text_field="body")
    ingest.run(config, None, tmp_path / "out")
    assert list(read_records(tmp_path / "out")) == [
        {"id": "g1", "text": "from gzip"}, {"id": "p1", "text": "from parquet"}, {"id": "t1", "text": "from a text file"}]


def test_ingest_missing_input_names_the_path(tmp_path):
    with pytest.raises(FileNotFoundError, match="nowhere.jsonl"):
        ingest.run(IngestConfig(paths=["nowhere.jsonl"]), None, tmp_path / "out")
    assert not (tmp_path / "out").exists()


# clean

WIKITEXT = """{{Infobox person|name=Ada|image={{flag|UK}}}}
'''Ada Lovelace''' was an [[England|English]] [[mathematician]].<ref name="b">{{cite book|title=X}}</ref>
[[File:Ada.jpg|thumb|Portrait of [[Ada Lovelace|Ada]]]]
== Early life ==
She was born in [[London]]. See [http://example.org/ada the archive] and <b>more</b>&nbsp;here.
{| class="wikitable"
|-
| cell {{small|one}} || two
|}
[[Category:Mathematicians]]
[[de:Ada Lovelace]]"""


def test_clean_strips_wikitext_and_html():
    text = clean.clean_text(WIKITEXT, CleanConfig())
    assert text == ("Ada Lovelace was an English mathematician.\n\nEarly life\n"
                    "She was born in London. See the archive and more here.")


def test_clean_keeps_plain_prose_quotes_and_paragraphs():
    fortune = "He said ``hello''  \t there.\n\n\n\nNew   paragraph\nnext line "
    assert clean.clean_text(fortune, CleanConfig()) == "He said ``hello'' there.\n\nNew paragraph\nnext line"


def test_clean_normalizes_unicode():
    assert clean.clean_text("ﬁne café", CleanConfig(unicode_form="NFKC")) == "fine café"


def test_clean_drops_by_length_with_reasons(tmp_path):
    records = [{"id": "short", "text": "too short"}, {"id": "ok", "text": PROSE * 2, "source": "austen"},
               {"id": "long", "text": PROSE * 20}, {"id": "markup-only", "text": "{{stub}} [[Category:X]]"}]
    stats = clean.run(CleanConfig(min_chars=100, max_chars=1000), write_records(tmp_path / "in", records),
                      tmp_path / "out")
    assert [r["id"] for r in read_records(tmp_path / "out")] == ["ok"]
    assert next(read_records(tmp_path / "out"))["source"] == "austen"
    assert stats.dropped == {"too_short": 2, "too_long": 1}


# dedup

def test_dedup_keeps_first_copy_of_each_text(tmp_path):
    records = [{"id": "art/1", "text": "NOBODY EXPECTS THE SPANISH INQUISITION!"},
               {"id": "other", "text": "Something else entirely."},
               {"id": "humorists/9", "text": "NOBODY EXPECTS THE SPANISH INQUISITION!"},
               {"id": "spaced", "text": "nobody  expects the\nspanish inquisition!"}]
    stats = dedup.run(DedupConfig(lowercase=True), write_records(tmp_path / "in", records), tmp_path / "out")
    assert [r["id"] for r in read_records(tmp_path / "out")] == ["art/1", "other"]
    assert stats.dropped == {"exact_duplicate": 2}
    assert stats.extra["duplicate_clusters"] == 1

    strict = dedup.run(DedupConfig(lowercase=False), tmp_path / "in", tmp_path / "strict")
    assert strict.dropped == {"exact_duplicate": 1}


def test_dedup_removes_the_fortunes_real_duplicates(tmp_path):
    fixture = Path(__file__).parent / "fixtures" / "tiny.jsonl"
    ingest.run(IngestConfig(paths=[str(fixture)]), None, tmp_path / "ingest")
    stats = dedup.run(DedupConfig(), tmp_path / "ingest", tmp_path / "out")
    texts = [r["text"] for r in read_records(tmp_path / "out")]
    assert stats.dropped["exact_duplicate"] >= 5
    assert len(texts) == len(set(texts))


# anonymize

ALL_ENTITIES = ["EMAIL", "PHONE", "IP_ADDRESS", "CREDIT_CARD"]


@pytest.mark.parametrize("text, expected", [
    ("write to jane.doe+news@mail.example.co.uk today", "write to <EMAIL> today"),
    ("call (555) 123-4567 now", "call <PHONE> now"),
    ("call 555-123-4567 now", "call <PHONE> now"),
    ("call +1 555 123 4567 now", "call <PHONE> now"),
    ("call +44 20 7946 0958 now", "call <PHONE> now"),
    ("call +41 44 803 99 21 now", "call <PHONE> now"),
    ("from 192.168.10.254 again", "from <IP_ADDRESS> again"),
    ("from 2001:db8::8a2e:370:7334 again", "from <IP_ADDRESS> again"),
    ("card 4111 1111 1111 1111 ok", "card <CREDIT_CARD> ok"),
    ("card 5500-0000-0000-0004 ok", "card <CREDIT_CARD> ok"),
    ("card 378282246310005 ok", "card <CREDIT_CARD> ok"),
    ("card 3782 822463 10005 ok", "card <CREDIT_CARD> ok"),
])
def test_anonymize_replaces_each_entity_type(text, expected):
    assert anonymize.anonymize_text(text, ALL_ENTITIES)[0] == expected


@pytest.mark.parametrize("text", [
    "In 1851, 135 chapters; pages 120-135; 1,000,000 whales; on 2024-01-15 at 12:30:45.",
    "card 4111 1111 1111 1112 fails the Luhn check",
    "order 12345678901234 is just a number",
    "version 1.2.3 and 256.1.1.1 are not addresses",
    "the score was +3 to 2, and ISBN 0-19-285312-3",
])
def test_anonymize_leaves_ordinary_numbers_alone(text):
    assert anonymize.anonymize_text(text, ALL_ENTITIES) == (text, {})


def test_anonymize_only_touches_configured_entities():
    text = "mail a@b.com or call 555-123-4567"
    assert anonymize.anonymize_text(text, ["EMAIL"]) == ("mail <EMAIL> or call 555-123-4567", {"EMAIL": 1})


def test_anonymize_counts_entities_and_never_stores_values(tmp_path):
    records = [{"id": "1", "text": "a@b.com and c@d.org, 10.0.0.1", "source": "x"},
               {"id": "2", "text": "nothing to see"},
               {"id": "3", "text": "card 4111111111111111, phone (555) 123-4567"}]
    stats = anonymize.run(AnonymizeConfig(), write_records(tmp_path / "in", records), tmp_path / "out")
    out = list(read_records(tmp_path / "out"))
    assert [r["text"] for r in out] == ["<EMAIL> and <EMAIL>, <IP_ADDRESS>", "nothing to see",
                                        "card <CREDIT_CARD>, phone <PHONE>"]
    assert out[0]["source"] == "x"
    assert stats.extra == {"EMAIL": 2, "PHONE": 1, "IP_ADDRESS": 1, "CREDIT_CARD": 1, "records_with_pii": 2,
                           "shards": 1, "shards_resumed": 0}
    assert stats.records_out == 3 and stats.dropped == {}
    written = "".join(p.read_text() for p in (tmp_path / "out").iterdir())
    assert "a@b.com" not in written and "4111111111111111" not in written


# split

def test_split_is_deterministic_and_order_independent(tmp_path):
    records = [{"id": f"doc/{i}", "text": f"text {i}"} for i in range(200)]
    config = SplitConfig(validation_fraction=0.2, seed=7)
    stats = split.run(config, write_records(tmp_path / "a", records), tmp_path / "out_a")
    split.run(config, write_records(tmp_path / "b", records[::-1]), tmp_path / "out_b")

    def ids(folder, name):
        return {r["id"] for r in read_part(folder / name)}

    assert ids(tmp_path / "out_a", split.VALIDATION_FILE) == ids(tmp_path / "out_b", split.VALIDATION_FILE)
    assert ids(tmp_path / "out_a", split.TRAIN_FILE) == ids(tmp_path / "out_b", split.TRAIN_FILE)
    assert 20 <= stats.extra["validation_records"] <= 60
    assert stats.extra["train_records"] + stats.extra["validation_records"] == 200
    other_seed = split.run(SplitConfig(validation_fraction=0.2, seed=8), tmp_path / "a", tmp_path / "out_c")
    assert ids(tmp_path / "out_c", split.VALIDATION_FILE) != ids(tmp_path / "out_a", split.VALIDATION_FILE)
    assert other_seed.records_out == 200


def test_split_always_has_a_validation_record(tmp_path):
    records = [{"id": "only-a", "text": "x"}, {"id": "only-b", "text": "y"}]
    stats = split.run(SplitConfig(validation_fraction=0.001), write_records(tmp_path / "in", records),
                      tmp_path / "out")
    assert stats.extra == {"train_records": 1, "validation_records": 1}
