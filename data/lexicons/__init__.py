"""The word lists the name rules read (data/lexicons/*.txt; how each was built: build_names.py,
build_places.py) and the small sets of words the rules share (data.pii, data.layout_names)."""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path

LEXICON_DIR = Path(__file__).parent

# Lower-case particles inside a surname.
NAME_PARTICLES = frozenset({"de", "van", "von", "der", "den", "da", "di", "du", "del", "della", "dos", "das", "ter",
                            "ten", "bin", "ibn", "al", "el", "zu", "la", "le", "des", "ap", "binti", "bint"})
# Feasts and holidays, which spaCy's small model and the surname list read as names ("During
# Ramadan", "Yom Kippur").
HOLIDAYS = frozenset({"easter", "christmas", "xmas", "halloween", "diwali", "eid", "ramadan", "hanukkah", "passover",
                      "thanksgiving", "pentecost", "whitsun", "advent", "lent", "yom", "kippur", "rosh", "hashanah",
                      "vaisakhi", "baisakhi", "navratri", "purim", "sukkot", "shavuot", "chanukah", "kwanzaa",
                      "nowruz", "vesak", "wesak", "lohri", "dussehra", "janmashtami", "muharram", "ashura",
                      "songkran", "chuseok", "losar", "epiphany", "candlemas", "michaelmas", "holi", "onam",
                      "pongal"})
# Given names in some country that are dates in English text.
NOT_GIVEN_NAMES = frozenset({"january", "february", "march", "april", "may", "june", "july", "august",
                             "september", "october", "november", "december", "monday", "tuesday",
                             "wednesday", "thursday", "friday", "saturday", "sunday",
                             # and their abbreviations, as logs and mail headers write dates
                             "jan", "feb", "mar", "apr", "jun", "jul", "aug", "sep", "sept", "oct", "nov", "dec",
                             "mon", "tue", "tues", "wed", "thu", "thur", "thurs", "fri", "sat", "sun"}) | HOLIDAYS
# Last words of things named after people that no surname is: "Ada Lovelace Centre", "Marie Curie
# Laboratories", "Lister Surgical Wing", "James Webb Space Telescope" ("Hall", "Ward", "Park" and
# "Day" are surnames too).
NAMED_AFTER_WORDS = frozenset({
    "building", "buildings", "centre", "center", "laboratory", "laboratories", "lab", "labs", "library", "studio",
    "studios", "wing", "atrium", "institute", "museum", "gallery", "theatre", "theater", "school", "college",
    "university", "hospital", "clinic", "auditorium", "pavilion", "prize", "prizes", "award", "awards", "medal",
    "lecture", "lectures", "fellowship", "scholarship", "foundation", "programme", "stadium", "arena",
    "boulevard", "avenue", "street", "road", "square", "bridge", "airport", "station", "telescope",
    "observatory", "galaxy", "crater", "monument", "memorial", "statue", "suite", "laboratorium", "campus",
    "room", "lounge", "primary", "academy", "infirmary", "parkway", "mews", "annexe", "annex", "terminal",
    "concourse", "quay", "wharf", "expressway", "highway", "motorway", "tunnel", "reservoir", "bypass",
    "roundabout"})
# Words in a name's place that name no one ("Dear Sir", "Hi team").
NOT_NAMES = frozenset({"sir", "madam", "team", "all", "there", "everyone", "customer", "friend", "friends"})


@lru_cache(maxsize=16)
def lexicon(kind: str) -> frozenset[str]:
    """Case-folded entries of a data/lexicons list: "first" and "last" (names that are not English
    words), "english_names" (names that are: "Mike", "Grant"), "places" and "english" (see
    build_names.py and build_places.py there); "names" (first and last) is their union, built
    once."""
    if kind == "names":  # given names and surnames
        return lexicon("first") | lexicon("last")
    name = {"first": "first_names", "last": "last_names", "english": "english_words"}.get(kind, kind)
    lines = (LEXICON_DIR / f"{name}.txt").read_text(encoding="utf-8").splitlines()
    return frozenset(line for line in lines if line and not line.startswith("#"))


@lru_cache(maxsize=1)
def place_countries() -> dict[str, frozenset[str]]:
    """A case-folded city's or country's name -> the ISO 3166 codes of the (one or two) countries
    a place of that name is in (place_countries.txt; see build_places.py)."""
    lines = (LEXICON_DIR / "place_countries.txt").read_text(encoding="utf-8").splitlines()
    return {name: frozenset(codes.split(",")) for name, _, codes in
            (line.partition("\t") for line in lines if line and not line.startswith("#"))}


@lru_cache(maxsize=1)
def other_words() -> dict[str, frozenset[str]]:
    """Language code (lid.176's) -> the listed names that are that language's common words
    ("de": "sie", "herren"; "fr": "petit", "vendredi"; other_words.txt, see build_words.py)."""
    words: dict[str, set[str]] = {}
    for line in (LEXICON_DIR / "other_words.txt").read_text(encoding="utf-8").splitlines():
        if line and not line.startswith("#"):
            language, _, word = line.partition("\t")
            words.setdefault(language, set()).add(word)
    return {language: frozenset(listed) for language, listed in words.items()}


@lru_cache(maxsize=8)
def common_words(language: str) -> frozenset[str]:
    """A language's common words (lid.176's code; Zipf 3.8 or more in wordfreq, not English words:
    common_words.txt.gz, see build_words.py); empty for a language it does not list."""
    import gzip

    prefix = language + "\t"
    with gzip.open(LEXICON_DIR / "common_words.txt.gz", "rt", encoding="utf-8") as lines:
        return frozenset(line[len(prefix):].rstrip("\n") for line in lines if line.startswith(prefix))
