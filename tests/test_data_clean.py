"""The clean stage: text repair and markup removal, boilerplate lines, and each quality filter
(a document that passes, one that fails with the filter's name as its reason)."""

import json
from collections import Counter
from pathlib import Path

import pytest

from data import clean
from data.config import BoilerplateConfig, CleanConfig, GopherQualityConfig, GopherRepetitionConfig
from data.quality import Document, detect_language, first_failure
from data.shards import part_name, read_records

# Austen, Pride and Prejudice, chapter 1: ordinary English prose that passes every filter.
AUSTEN = (
    "It is a truth universally acknowledged, that a single man in possession of a good fortune, "
    "must be in want of a wife. However little known the feelings or views of such a man may be on "
    "his first entering a neighbourhood, this truth is so well fixed in the minds of the surrounding "
    "families, that he is considered the rightful property of some one or other of their daughters.\n\n"
    "\"My dear Mr. Bennet,\" said his lady to him one day, \"have you heard that Netherfield Park is "
    "let at last?\" Mr. Bennet replied that he had not. \"But it is,\" returned she; \"for Mrs. Long "
    "has just been here, and she told me all about it.\" Mr. Bennet made no answer. \"Do you not want "
    "to know who has taken it?\" cried his wife impatiently."
)
FRENCH = (
    "Longtemps, je me suis couché de bonne heure. Parfois, à peine ma bougie éteinte, mes yeux se "
    "fermaient si vite que je n'avais pas le temps de me dire : « Je m'endors. » Et, une demi-heure "
    "après, la pensée qu'il était temps de chercher le sommeil m'éveillait ; je voulais poser le volume "
    "que je croyais avoir encore dans les mains et souffler ma lumière."
)
GERMAN = (
    "Als Gregor Samsa eines Morgens aus unruhigen Träumen erwachte, fand er sich in seinem Bett zu "
    "einem ungeheueren Ungeziefer verwandelt. Er lag auf seinem panzerartig harten Rücken und sah, "
    "wenn er den Kopf ein wenig hob, seinen gewölbten, braunen, von bogenförmigen Versteifungen "
    "geteilten Bauch, auf dessen Höhe sich die Bettdecke, zum gänzlichen Niedergleiten bereit, kaum "
    "noch erhalten konnte."
)
# Gopher's rules without the language filter, to test each rule on made-up text.
NO_LANGID = CleanConfig(languages=[])


def write_records(folder: Path, records: list[dict]) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / part_name(0)).write_text("".join(json.dumps(r) + "\n" for r in records), encoding="utf-8")
    return folder


def words(count: int, start: int = 0) -> str:
    """Distinct made-up words of 5 letters, none a stop word: w0000a w0001a ..."""
    return " ".join(f"w{i:04d}" for i in range(start, start + count))


# text repair and markup

WIKITEXT = """{{Infobox person|name=Ada|image={{flag|UK}}}}
'''Ada Lovelace''' was an [[England|English]] [[mathematician]].<ref name="b">{{cite book|title=X}}</ref>
[[File:Ada.jpg|thumb|Portrait of [[Ada Lovelace|Ada]]]]
== Early life ==
She was born in [[London]]. See [http://example.org/ada the archive] and <b>more</b>&nbsp;here.
{| class="wikitable"
|-
| cell {{small|one}} || two
|}
* {{cite web|url=http://example.org}}
* [[Analytical Engine]] notes
[[Category:Mathematicians]]
[[de:Ada Lovelace]]"""


def test_clean_strips_wikitext_and_html():
    text = clean.clean_text(WIKITEXT, CleanConfig())
    # List items lose their bullet; an item that was only a template leaves no bare "*" line.
    assert text == ("Ada Lovelace was an English mathematician.\n\nEarly life\n"
                    "She was born in London. See the archive and more here.\n\nAnalytical Engine notes")


def test_clean_keeps_plain_prose_quotes_and_paragraphs():
    fortune = "He said ``hello''  \t there.\n\n\n\nNew   paragraph\nnext line "
    assert clean.clean_text(fortune, CleanConfig()) == "He said ``hello'' there.\n\nNew paragraph\nnext line"


def test_clean_normalizes_unicode():
    assert clean.clean_text("ﬁne café", CleanConfig(unicode_form="NFKC")) == "fine café"


def test_clean_repairs_mojibake_and_keeps_curly_quotes():
    counters = Counter()
    assert clean.clean_text("The Mona Lisa doesnâ€™t have eyebrows; cafÃ© naÃ¯ve.", CleanConfig(),
                            counters) == "The Mona Lisa doesn’t have eyebrows; café naïve."
    assert counters["unicode_repaired"] == 1
    # Without the repair, NFKC even makes it worse ("™" becomes "TM"): ftfy has to come first.
    assert clean.clean_text("doesnâ€™t", CleanConfig(fix_unicode=False)) == "doesnâ€TMt"


def test_boilerplate_lines_are_removed_and_counted():
    counters = Counter()
    text = f"{AUSTEN}\nThis site uses cookies to improve your experience.\nRead our Terms of Use\n\nThe end."
    assert clean.clean_text(text, CleanConfig(), counters) == f"{AUSTEN}\n\nThe end."
    assert counters["boilerplate_lines"] == 2


def test_c4_line_rules_are_off_by_default_and_can_be_switched_on():
    verse = "Tyger Tyger, burning bright,\nIn the forests of the night;\nThe end\nOK."
    assert clean.clean_text(verse, CleanConfig()) == verse
    strict = CleanConfig(boilerplate=BoilerplateConfig(min_words_per_line=3, require_terminal_punctuation=True))
    assert clean.clean_text(verse, strict) == ""
    c4_words = CleanConfig(boilerplate=BoilerplateConfig(min_words_per_line=3))
    assert clean.clean_text(verse, c4_words) == "Tyger Tyger, burning bright,\nIn the forests of the night;"


# quality filters: one passing and one failing document each

def test_english_prose_passes_every_filter():
    assert first_failure(AUSTEN, CleanConfig()) is None


def test_language_keeps_english_and_drops_french_and_german():
    assert detect_language(AUSTEN)[0] == "en"
    assert first_failure(FRENCH, CleanConfig()) == "language"
    assert first_failure(GERMAN, CleanConfig()) == "language"
    # Gopher's stop words are English ones: keeping German means switching them off too.
    german_too = CleanConfig(languages=["en", "de"], gopher_quality=GopherQualityConfig(min_stop_words=None))
    assert first_failure(GERMAN, german_too) is None
    assert first_failure(FRENCH, CleanConfig(languages=[])) != "language"


@pytest.mark.parametrize("reason, text, config", [
    ("gopher_word_count", "The whale is a large animal of the sea and that is all we have to say.", NO_LANGID),
    ("gopher_word_count", AUSTEN, CleanConfig(gopher_quality=GopherQualityConfig(max_words=50))),
    ("gopher_mean_word_length", "a to of an " * 30 + AUSTEN, NO_LANGID),
    ("gopher_mean_word_length", " ".join(f"incomprehensibilities{i}" for i in range(60)) + " the and", NO_LANGID),
    ("gopher_symbol_ratio", AUSTEN + " ".join(f"#{i} ..." for i in range(10)), NO_LANGID),
    ("gopher_alpha_ratio", AUSTEN + " " + " ".join(str(1000 + i) for i in range(60)), NO_LANGID),
    ("stop_words", words(80), NO_LANGID),
])
def test_gopher_quality_rules(reason, text, config):
    assert first_failure(text, config) == reason


def test_gopher_quality_rules_switch_off():
    off = CleanConfig(languages=[], gopher_quality=GopherQualityConfig(
        min_words=None, max_words=None, min_mean_word_length=None, max_mean_word_length=None,
        max_symbol_word_ratio=None, min_alpha_words_fraction=None, min_stop_words=None))
    for text in ["Too short.", words(80), " ".join(f"#{i} ..." for i in range(40)),
                 " ".join(str(i) for i in range(200))]:
        assert first_failure(text, off) is None


PARAGRAPHS = [f"{words(20, start=100 * i)} the end of part {i}." for i in range(10)]
NO_LINE_RULE = GopherRepetitionConfig(max_dup_line_fraction=None, max_dup_line_char_fraction=None)
NO_TOP_NGRAM = GopherRepetitionConfig(max_top_ngram_char_fraction={})


@pytest.mark.parametrize("reason, text, config", [
    # 4 of 12 lines repeat an earlier one (33% > 30%)
    ("gopher_dup_line_fraction", "\n".join(PARAGRAPHS[:8] + [PARAGRAPHS[0]] * 4), NO_LANGID),
    # paragraphs of two lines each; lines switched off so the paragraph rule decides
    ("gopher_dup_paragraph_fraction",
     "\n\n".join([f"{p}\nand the next line of {i}." for i, p in enumerate(PARAGRAPHS[:6])] * 2),
     NO_LANGID.model_copy(update={"gopher_repetition": NO_LINE_RULE})),
    # "the whale" is the top 2-gram, >20% of the characters
    ("gopher_top_ngram_fraction",
     " ".join(f"the whale {w}" for w in words(60).split()), NO_LANGID),
    # one 12-word sentence said three times on one line
    ("gopher_dup_ngram_fraction",
     f"{words(40)} " + "Call me Ishmael and that is the story of the whale today. " * 3,
     NO_LANGID.model_copy(update={"gopher_repetition": NO_TOP_NGRAM})),
])
def test_gopher_repetition_rules(reason, text, config):
    assert first_failure(text, config) == reason


def test_repetition_rules_pass_unrepeated_text():
    assert first_failure("\n\n".join(PARAGRAPHS), NO_LANGID) is None


def test_document_splits_words_lines_and_paragraphs():
    doc = Document("One, two -- three.\nFour\n\nFive ...")
    assert doc.words == ["One,", "two", "--", "three.", "Four", "Five", "..."]
    assert doc.bare_words == ["One", "two", "three", "Four", "Five"]
    assert doc.lines == ["One, two -- three.", "Four", "Five ..."]
    assert doc.paragraphs == ["One, two -- three.\nFour", "Five ..."]


# the stage

def test_clean_stage_gives_every_dropped_record_a_reason(tmp_path):
    records = [
        {"id": "short", "text": "too short"},
        {"id": "ok", "text": AUSTEN, "source": "austen"},
        {"id": "long", "text": AUSTEN * 20},
        {"id": "markup-only", "text": "{{stub}} [[Category:X]]"},
        {"id": "french", "text": FRENCH},
        {"id": "lorem", "text": "Lorem ipsum dolor sit amet. " + AUSTEN},
        {"id": "numbers", "text": AUSTEN + " " + " ".join(str(1000 + i) for i in range(60))},
    ]
    stats = clean.run(CleanConfig(min_chars=100, max_chars=5000), write_records(tmp_path / "in", records),
                      tmp_path / "out", workers=1)
    kept = list(read_records(tmp_path / "out"))
    assert [r["id"] for r in kept] == ["ok"] and kept[0]["source"] == "austen"
    assert stats.dropped == {"too_short": 2, "too_long": 1, "language": 1, "lorem_ipsum": 1,
                             "gopher_alpha_ratio": 1}
    assert stats.records_in - stats.records_out == sum(stats.dropped.values())


def test_quality_config_round_trips_through_yaml_like_dicts():
    # Profiles and `--set` give mapping keys as strings; the n-gram tables still get int keys.
    config = CleanConfig.model_validate({"gopher_repetition": {"max_top_ngram_char_fraction": {"2": 0.3}}})
    assert config.gopher_repetition.max_top_ngram_char_fraction == {2: 0.3}
    assert CleanConfig.model_validate(json.loads(CleanConfig().model_dump_json())) == CleanConfig()
