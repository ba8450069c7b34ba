"""Build the bundled demo corpus and the test fixture from the shared corpora (run once, by hand).

    python data/corpus/build_demo_corpus.py /work/shared/corpora

writes data/corpus/demo.jsonl.gz (~6 MB of text: two Austen novels, Moby-Dick, 150 Brown texts,
1,500 fortunes with their real exact duplicates, 40 raw-wikitext Wikipedia articles) and
tests/fixtures/tiny.jsonl (~300 shortened documents for the end-to-end test). Both are
committed: the pipeline and the tests never read the shared corpora.

About 15% of the documents get a paragraph of synthetic personal data: presidio-evaluator's
sentence templates filled from FakeNameGenerator identities, with generated IPv4 addresses and
Luhn-valid card numbers (the CSV's own card numbers are mangled). A few bad lines are appended
so ingest's quarantine has real work. Everything is seeded: the output is the same on every run.
"""

from __future__ import annotations

import argparse
import csv
import gzip
import json
import random
import re
from collections import Counter
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[2]
SEED = 20261122
AUSTEN_NOVELS = ("austen/pride_and_prejudice", "austen/persuasion")
BROWN_TEXTS = 150
FORTUNES = 1500
WIKIPEDIA_ARTICLES = 40
PII_FRACTION = 0.15
# PII goes only into documents long enough to stay above min_chars once it is replaced by
# shorter placeholders (and wikitext is stripped).
PII_MIN_CHARS = 800
TARGET_ENTITIES = ("email", "phone_number", "credit_card_number", "ip_address")
PLACEHOLDER = re.compile(r"\{\{?(\w+)\}?\}")  # one template has a single-brace typo
TINY_DOCS = 300
TINY_PII_DOCS = 45
TINY_MIN_CHARS = 300
TINY_MAX_CHARS = 2500
TINY_DUPLICATE_MIN_CHARS = 250


def load_corpus(corpora: Path, name: str) -> list[dict]:
    with gzip.open(corpora / f"{name}.jsonl.gz", "rt", encoding="utf-8") as handle:
        return [json.loads(line) for line in handle]


def choose_fortunes(fortunes: list[dict], rng: random.Random) -> list[dict]:
    """Every fortune whose text occurs twice, then a sample of the others up to FORTUNES."""
    copies = Counter(f["text"] for f in fortunes)
    duplicated = [f for f in fortunes if copies[f["text"]] > 1]
    others = [f for f in fortunes if copies[f["text"]] == 1]
    return duplicated + rng.sample(others, FORTUNES - len(duplicated))


def select_documents(corpora: Path, rng: random.Random) -> list[dict]:
    documents = [d for d in load_corpus(corpora, "austen") if d["source"] in AUSTEN_NOVELS]
    documents += load_corpus(corpora, "moby_dick")
    documents += rng.sample(load_corpus(corpora, "brown"), BROWN_TEXTS)
    documents += choose_fortunes(load_corpus(corpora, "fortunes"), rng)
    documents += rng.sample(load_corpus(corpora, "wikipedia"), WIKIPEDIA_ARTICLES)
    rng.shuffle(documents)
    return [{"id": d["id"], "source": d["source"], "text": d["text"]} for d in documents]


def luhn_check_digit(partial: str) -> str:
    total = 0
    for position, char in enumerate(reversed(partial)):
        value = int(char)
        if position % 2 == 0:  # these digits get doubled once the check digit is appended
            value = value * 2 - 9 if value > 4 else value * 2
        total += value
    return str((10 - total % 10) % 10)


def card_number(rng: random.Random) -> str:
    prefix, length = rng.choice([("4", 16), ("51", 16), ("55", 16), ("6011", 16), ("34", 15), ("37", 15)])
    partial = prefix + "".join(rng.choice("0123456789") for _ in range(length - len(prefix) - 1))
    digits = partial + luhn_check_digit(partial)
    separator = rng.choice(["", " ", "-"])
    if not separator:
        return digits
    groups = [digits[:4], digits[4:10], digits[10:]] if length == 15 else [digits[i:i + 4] for i in range(0, 16, 4)]
    return separator.join(groups)


def phone_number(identity: dict, rng: random.Random) -> str:
    country_code = identity["TelephoneCountryCode"].strip()
    digits = re.sub(r"\D", "", identity["TelephoneNumber"])
    if country_code == "1" and len(digits) == 10:
        area, exchange, line = digits[:3], digits[3:6], digits[6:]
        return rng.choice([f"({area}) {exchange}-{line}", f"{area}-{exchange}-{line}",
                           f"+1 {area} {exchange} {line}", f"{area}.{exchange}.{line}"])
    # Written for an international reader: +country code, national trunk 0 dropped.
    national = " ".join(re.sub(r"[().-]", " ", identity["TelephoneNumber"]).split()).lstrip("0").strip()
    return f"+{country_code} {national}"


def ipv4_address(rng: random.Random) -> str:
    return f"{rng.randint(1, 223)}.{rng.randint(0, 255)}.{rng.randint(0, 255)}.{rng.randint(1, 254)}"


def placeholder_value(name: str, who: dict, rng: random.Random) -> str:
    full_name = f"{who['GivenName']} {who['Surname']}".strip()
    values = {
        "email": lambda: who["EmailAddress"].strip(),
        "phone_number": lambda: phone_number(who, rng),
        "credit_card_number": lambda: card_number(rng),
        "ip_address": lambda: ipv4_address(rng),
        "person": lambda: full_name,
        "name": lambda: full_name,
        "address": lambda: f"{who['StreetAddress'].strip()}, {who['City'].strip()} {who['ZipCode'].strip()}",
        "street_name": lambda: who["StreetAddress"].strip(),
        "building_number": lambda: str(rng.randint(1, 400)),
        "secondary_address": lambda: f"Apt. {rng.randint(1, 999)}",
        "city": lambda: who["City"].strip(),
        "country": lambda: who["CountryFull"].strip(),
        "nationality": lambda: who["NameSet"].strip(),
        "organization": lambda: who["Company"].strip(),
        "job": lambda: who["Occupation"].strip(),
        "age": lambda: who["Age"].strip(),
        "year": lambda: str(rng.randint(1950, 2020)),
        "date_of_birth": lambda: who["Birthday"].strip(),
        "date_time": lambda: f"{who['Birthday'].strip()} {rng.randint(0, 23):02d}:{rng.randint(0, 59):02d}",
        "day_of_week": lambda: rng.choice(["Monday", "Tuesday", "Wednesday", "Thursday", "Friday"]),
        "postcode": lambda: who["ZipCode"].strip(),
        "zipcode": lambda: who["ZipCode"].strip(),
        "state_abbr": lambda: who["State"].strip(),
        "url": lambda: f"https://www.{who['Domain'].strip()}",
        "iban": lambda: "DE" + "".join(rng.choice("0123456789") for _ in range(20)),
        "ssn": lambda: f"{rng.randint(100, 899)}-{rng.randint(10, 99)}-{rng.randint(1000, 9999)}",
        "us_driver_license": lambda: rng.choice("ABCDEFGH") + str(rng.randint(1000000, 9999999)),
    }
    if name.startswith(("first_name", "name_")):
        return who["GivenName"].strip() if name.startswith("first_name") else full_name
    if name.startswith("last_name"):
        return who["Surname"].strip()
    if name.startswith("prefix"):
        return who["Title"].strip()
    if name.startswith("nation"):
        return who["CountryFull"].strip()
    return values[name]()


class PiiSentences:
    """Template sentences filled with one synthetic identity each."""

    def __init__(self, generator_dir: Path, rng: random.Random):
        lines = (generator_dir / "templates.txt").read_text(encoding="utf-8").splitlines()
        self.templates = [line.replace("\\n", "\n") for line in lines if PLACEHOLDER.search(line)]
        with open(generator_dir / "FakeNameGenerator.com_3000.csv", encoding="utf-8-sig", newline="") as handle:
            self.identities = list(csv.DictReader(handle))
        self.rng = rng

    def fill(self, template: str) -> str:
        who = self.rng.choice(self.identities)
        return PLACEHOLDER.sub(lambda m: placeholder_value(m.group(1), who, self.rng), template)

    def paragraph(self) -> str:
        """One sentence carrying an entity the anonymizer must catch, then one of any kind."""
        entity = self.rng.choice(TARGET_ENTITIES)
        with_entity = [t for t in self.templates if "{{" + entity + "}}" in t]
        return self.fill(self.rng.choice(with_entity)) + " " + self.fill(self.rng.choice(self.templates))


def inject_pii(documents: list[dict], sentences: PiiSentences, rng: random.Random) -> dict[str, str]:
    """Insert a PII paragraph at a paragraph break of ~15% of documents; return id -> paragraph."""
    candidates = [d for d in documents if len(d["text"]) >= PII_MIN_CHARS]
    chosen = rng.sample(candidates, round(PII_FRACTION * len(documents)))
    injected = {}
    for document in chosen:
        paragraphs = document["text"].split("\n\n")
        pii = sentences.paragraph()
        paragraphs.insert(rng.randint(1, len(paragraphs)), pii)
        document["text"] = "\n\n".join(paragraphs)
        injected[document["id"]] = pii
    return injected


def bad_lines(taken_id: str) -> list[str]:
    return [
        '{"id": "bad/truncated", "source": "bad", "text": "This line was cut off in the middle of a wri',
        json.dumps({"id": "bad/no_text", "source": "bad"}),
        json.dumps({"id": "bad/empty_text", "source": "bad", "text": ""}),
        json.dumps({"id": "bad/null_text", "source": "bad", "text": None}),
        json.dumps({"id": "bad/number_text", "source": "bad", "text": 42}),
        json.dumps({"id": taken_id, "source": "bad", "text": "A second record claiming an id that is taken."}),
    ]


def write_jsonl_gz(path: Path, documents: list[dict], extra_lines: list[str]) -> None:
    # mtime=0: the same records give the same bytes, so DVC and git see no change on a rebuild.
    with open(path, "wb") as raw, gzip.GzipFile(fileobj=raw, mode="wb", mtime=0, filename="") as packed:
        for line in [json.dumps(d, ensure_ascii=False) for d in documents] + extra_lines:
            packed.write((line + "\n").encode("utf-8"))


def shortened(document: dict, pii: str | None) -> dict:
    """The document's leading paragraphs up to TINY_MAX_CHARS, keeping its PII paragraph."""
    kept, size = [], 0
    for paragraph in document["text"].split("\n\n"):
        if kept and size + len(paragraph) > TINY_MAX_CHARS:
            break
        kept.append(paragraph)
        size += len(paragraph) + 2
    if pii is not None and pii not in kept:
        kept.append(pii)
    return {**document, "text": "\n\n".join(kept)}


def tiny_fixture(documents: list[dict], injected: dict[str, str], rng: random.Random) -> list[str]:
    """~300 documents: duplicate fortune pairs, PII documents, a random rest, and 3 bad lines."""
    copies = Counter(d["text"] for d in documents)
    duplicates = [d for d in documents if copies[d["text"]] > 1 and len(d["text"]) >= TINY_DUPLICATE_MIN_CHARS]
    with_pii = rng.sample([d for d in documents if d["id"] in injected], TINY_PII_DOCS)
    picked = {d["id"] for d in duplicates + with_pii}
    rest = [d for d in documents
            if d["id"] not in picked and d["id"] not in injected and len(d["text"]) >= TINY_MIN_CHARS]
    chosen = duplicates + with_pii + rng.sample(rest, TINY_DOCS - len(picked))
    rng.shuffle(chosen)
    lines = [json.dumps(shortened(d, injected.get(d["id"])), ensure_ascii=False) for d in chosen]
    return lines + [
        '{"id": "bad/truncated", "text": "cut off',
        json.dumps({"id": "bad/empty_text", "text": "   "}),
        json.dumps({"id": chosen[0]["id"], "text": "A second record claiming an id that is taken."}),
    ]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("corpora", type=Path, help="the shared corpora folder (with pii_generator/)")
    parser.add_argument("--output", type=Path, default=REPO_ROOT / "data/corpus/demo.jsonl.gz")
    parser.add_argument("--fixture", type=Path, default=REPO_ROOT / "tests/fixtures/tiny.jsonl")
    args = parser.parse_args()

    rng = random.Random(SEED)
    documents = select_documents(args.corpora, rng)
    injected = inject_pii(documents, PiiSentences(args.corpora / "pii_generator", rng), rng)
    write_jsonl_gz(args.output, documents, bad_lines(taken_id=documents[0]["id"]))
    args.fixture.parent.mkdir(parents=True, exist_ok=True)
    args.fixture.write_text("\n".join(tiny_fixture(documents, injected, rng)) + "\n", encoding="utf-8")

    chars = sum(len(d["text"]) for d in documents)
    print(f"{args.output}: {len(documents)} documents, {chars / 1e6:.2f} M chars, {len(injected)} with PII, "
          f"{args.output.stat().st_size / 1e6:.2f} MB")
    print(f"{args.fixture}: {args.fixture.stat().st_size / 1e6:.2f} MB")


if __name__ == "__main__":
    main()
