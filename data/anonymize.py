"""Anonymize: replace personal data with typed placeholders (`<EMAIL>`, `<PHONE>`, ...).

Regex detectors, each tuned to miss rather than to mangle ordinary text: phone numbers need
separators or a leading `+`, so years and counts stay; card numbers must pass the Luhn check;
IP addresses must parse. Only counts are kept: a matched value is never logged or stored.
A model-based detector (Presidio + spaCy NER for names and addresses) would slot in beside these.
"""

from __future__ import annotations

import ipaddress
import re
from collections import Counter
from functools import partial
from pathlib import Path
from typing import Callable

from core.config import ConfigError
from core.stats import StageStats
from data.config import AnonymizeConfig
from data.shards import map_shards

EMAIL = re.compile(r"(?<![\w.%+-])[A-Za-z0-9._%+-]+@[A-Za-z0-9-]+(?:\.[A-Za-z0-9-]+)*\.[A-Za-z]{2,}\b")
# 13-19 digits, contiguous or in the groups cards are printed in (4-4-4-4[-3], Amex 4-6-5).
CARD_CANDIDATE = re.compile(
    r"(?<![\d-])(?:\d{13,19}|\d{4}([ -])\d{4}\1\d{4}\1\d{1,7}|\d{4}([ -])\d{6}\2\d{5})(?![\d-])"
)
IPV4_CANDIDATE = re.compile(r"(?<![\d.])\d{1,3}(?:\.\d{1,3}){3}(?!\.?\d)")
IPV6_CANDIDATE = re.compile(r"(?<![\w:])(?:[0-9A-Fa-f]{0,4}:){2,7}[0-9A-Fa-f]{0,4}(?![\w:])")
# US style: (555) 123-4567, 555-123-4567, 555.123.4567, optionally with a 1 or +1 country code.
US_PHONE = re.compile(r"(?<![\w+(-])(?:\+?1[ .-]?)?(?:\(\d{3}\) ?|\d{3}[ .-])\d{3}[ .-]\d{4}(?![\w-])")
# International style: a + country code, then digit groups: +44 20 7946 0958, +33 4 17 94 64 04.
INTERNATIONAL_PHONE = re.compile(r"(?<![\w+])\+\d{1,3}(?:[ .-]\(?\d{1,8}\)?){1,6}(?![\w-])|(?<![\w+])\+\d{8,15}\b")


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
    return 8 <= sum(char.isdigit() for char in candidate) <= 15


def always(candidate: str) -> bool:
    return True


# Order matters: emails before phones (digits in addresses), cards before phones (long digit
# runs), IPs before phones (dotted digits).
DETECTORS: dict[str, list[tuple[re.Pattern, Callable[[str], bool]]]] = {
    "EMAIL": [(EMAIL, always)],
    "CREDIT_CARD": [(CARD_CANDIDATE, is_card_number)],
    "IP_ADDRESS": [(IPV4_CANDIDATE, is_ip_address), (IPV6_CANDIDATE, is_ip_address)],
    # A leading + is unambiguous: international first, so "+44 207 946 0958" is one number.
    "PHONE": [(INTERNATIONAL_PHONE, is_international_phone), (US_PHONE, always)],
}


def replace_accepted(pattern: re.Pattern, accept: Callable[[str], bool], placeholder: str,
                     text: str) -> tuple[str, int]:
    replaced = 0

    def replace(match: re.Match) -> str:
        nonlocal replaced
        if not accept(match.group(0)):
            return match.group(0)
        replaced += 1
        return placeholder

    return pattern.sub(replace, text), replaced


def anonymize_text(text: str, entities: list[str]) -> tuple[str, dict[str, int]]:
    """The text with each detected entity replaced by `<ENTITY>`, and the count per entity."""
    counts: dict[str, int] = {}
    for entity, detectors in DETECTORS.items():
        if entity not in entities:
            continue
        for pattern, accept in detectors:
            text, replaced = replace_accepted(pattern, accept, f"<{entity}>", text)
            if replaced:
                counts[entity] = counts.get(entity, 0) + replaced
    return text, counts


class Anonymizer:
    def __init__(self, config: AnonymizeConfig):
        self.entities = config.entities
        # Every configured entity appears in the stats, found or not.
        self.counters: Counter = Counter({entity: 0 for entity in config.entities})

    def process(self, record: dict) -> dict:
        text, counts = anonymize_text(record["text"], self.entities)
        self.counters.update(counts)
        self.counters["records_with_pii"] += bool(counts)
        return {**record, "text": text}


def run(config: AnonymizeConfig, input_dir: Path, output_dir: Path, workers: int = 1) -> StageStats:
    unknown = sorted(set(config.entities) - set(DETECTORS))
    if unknown:
        raise ConfigError(f"data.anonymize.entities: no detector for {unknown}; known: {sorted(DETECTORS)}")
    return map_shards("anonymize", partial(Anonymizer, config), input_dir, output_dir, workers)
