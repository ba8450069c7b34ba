"""Anonymize: replace personal data (found by data.pii) in every record's text.

Three modes: `redact` writes a typed placeholder (`<EMAIL>`); `mask` turns each letter and digit
into `*` and keeps the punctuation (`****@*******.***`), so lengths and layout survive;
`pseudonymize` writes `<EMAIL_1a2b3c4d>`, the start of an HMAC-SHA256 of the normalised value
under a secret key, so one value gets one pseudonym across records, shards and runs (and another
key gives others). The key comes from the environment variable CONVEYOR_PII_KEY; it is read in
each worker and never written, logged or put in an error message. No replacement can form an
e-mail address or a phone number, so the validate stage's checks for leftovers stay meaningful.

Values on the allow-list (compared ignoring case) are kept. Only counts per entity type reach
the stats and logs: a matched value is never logged or stored.
"""

from __future__ import annotations

import hashlib
import hmac
import ipaddress
import logging
import os
import re
from collections import Counter
from functools import lru_cache, partial
from pathlib import Path
from typing import Callable

from core.config import ConfigError
from core.stats import StageStats
from data.config import AnonymizeConfig
from data.pii import PiiDetector, Span
from data.shards import map_shards

logger = logging.getLogger(__name__)

KEY_ENV = "CONVEYOR_PII_KEY"
MIN_KEY_CHARS = 16
PSEUDONYM_HEX = 8


def pseudonym_key() -> bytes:
    key = os.environ.get(KEY_ENV, "")
    if len(key) < MIN_KEY_CHARS:
        state = "is not set" if not key else f"is shorter than {MIN_KEY_CHARS} characters"
        raise ConfigError(f"data.anonymize.mode=pseudonymize needs a secret key of at least {MIN_KEY_CHARS} "
                          f"characters in the environment variable {KEY_ENV}, which {state}")
    return key.encode("utf-8")


def normalise(entity: str, value: str) -> str:
    """The form two spellings of one value share, so they share a pseudonym."""
    if entity in ("PHONE", "CREDIT_CARD", "US_SSN"):
        return re.sub(r"\D", "", value)
    if entity == "IBAN":
        return value.replace(" ", "").upper()
    if entity == "IP_ADDRESS":
        return ipaddress.ip_address(value).compressed
    if entity == "URL_CREDENTIALS":
        return value
    return " ".join(value.split()).casefold()


def redact(entity: str, value: str) -> str:
    return f"<{entity}>"


def mask(entity: str, value: str) -> str:
    return "".join("*" if char.isalnum() else char for char in value)


def pseudonymize(key: bytes, entity: str, value: str) -> str:
    digest = hmac.new(key, f"{entity}\x00{normalise(entity, value)}".encode("utf-8"), hashlib.sha256)
    return f"<{entity}_{digest.hexdigest()[:PSEUDONYM_HEX]}>"


def replacer(mode: str) -> Callable[[str, str], str]:
    if mode == "pseudonymize":
        return partial(pseudonymize, pseudonym_key())
    return {"redact": redact, "mask": mask}[mode]


def replace_spans(text: str, spans: list[Span], replace: Callable[[str, str], str]) -> str:
    pieces, position = [], 0
    for start, end, entity in spans:
        pieces.append(text[position:start])
        pieces.append(replace(entity, text[start:end]))
        position = end
    pieces.append(text[position:])
    return "".join(pieces)


class Anonymizer:
    """The per-record processor map_shards runs; built once per worker process."""

    def __init__(self, config: AnonymizeConfig):
        self.detector = PiiDetector(config.entities, ner=config.ner, contextual=config.contextual,
                                    record_threshold=config.record_threshold)
        self.replace = replacer(config.mode)
        self.allowed = frozenset(value.strip().casefold() for value in config.allow_list)
        # Every configured entity appears in the stats, found or not.
        self.counters: Counter = Counter({entity: 0 for entity in config.entities})
        self.counters.update(records_with_pii=0, allow_listed=0)

    def anonymize(self, text: str) -> tuple[str, Counter]:
        """The text with its PII replaced, and the count per entity type."""
        return self._replace(text, self.detector.find(text))

    def _replace(self, text: str, spans: list[Span]) -> tuple[str, Counter]:
        if self.allowed:
            kept = [span for span in spans if text[span.start:span.end].strip().casefold() not in self.allowed]
            allowed, spans = len(spans) - len(kept), kept
        else:
            allowed = 0
        counts = Counter(span.entity for span in spans)
        if allowed:
            counts["allow_listed"] = allowed
        return replace_spans(text, spans, self.replace), counts

    def process(self, record: dict) -> dict:
        return self.process_many([record])[0]

    def process_many(self, records: list[dict]) -> list[dict]:
        """Records in a batch: spaCy's NER runs on the batch at once (data.shards.outcomes)."""
        found = self.detector.find_many([record["text"] for record in records], left=self.counters)
        processed = []
        for record, spans in zip(records, found):
            text, counts = self._replace(record["text"], spans)
            self.counters.update(counts)
            self.counters["records_with_pii"] += bool(counts.keys() - {"allow_listed"})
            processed.append({**record, "text": text})
        return processed


@lru_cache(maxsize=8)
def _structured_detector(entities: tuple[str, ...]) -> PiiDetector:
    return PiiDetector(entities, ner=False)


def anonymize_text(text: str, entities: list[str]) -> tuple[str, dict[str, int]]:
    """Redact the structured (regex) entity types only: a quick check without spaCy."""
    spans = _structured_detector(tuple(entities)).find(text)
    return replace_spans(text, spans, redact), dict(Counter(span.entity for span in spans))


def not_looked_for(config: AnonymizeConfig) -> list[str]:
    """Entity types this config does not detect: left out of `entities`, or (LOCATION) needing
    NER with NER off (street addresses are still found, towns and countries are not). PERSON
    without NER is still looked for (lexicon and cues), less well."""
    from data.pii import ENTITIES, NER_ENTITIES

    missing = [entity for entity in ENTITIES if entity not in config.entities]
    if not config.ner:
        missing += [entity for entity in sorted(NER_ENTITIES) if entity in config.entities and entity != "PERSON"]
    return missing


def run(config: AnonymizeConfig, input_dir: Path, output_dir: Path, workers: int = 1) -> StageStats:
    if config.mode == "pseudonymize":
        pseudonym_key()  # fail before any shard when the key is missing
    logger.info("anonymize: mode=%s, entities=%s, ner=%s, contextual=%s, %d allow-listed values", config.mode,
                ",".join(config.entities), config.ner, config.contextual, len(config.allow_list))
    skipped = not_looked_for(config)
    if skipped:
        # Never silent: a profile for public-domain fiction is wrong for a team's own mail.
        logger.warning("anonymize: NOT looking for %s (anonymize.entities / anonymize.ner of this config): such "
                       "values pass through unchanged", ", ".join(skipped))
    stats = map_shards("anonymize", partial(Anonymizer, config), input_dir, output_dir, workers)
    if skipped:
        stats.extra["not_looked_for"] = ",".join(skipped)
    if not config.ner and "PERSON" in config.entities:
        stats.extra["person_detection"] = "lexicon and cues only (ner off)"
    if skipped or not config.ner:
        stats.write(output_dir)
    found = {entity: stats.extra.get(entity, 0) for entity in config.entities}
    logger.info("anonymize: replaced %s in %s records", found, stats.extra.get("records_with_pii", 0))
    left = {key: value for key, value in stats.extra.items() if key.startswith("not_personal_") and value}
    if left:
        logger.info("anonymize: left %s: places, addresses, lines and mailboxes nothing ties to a person, and "
                    "(not_personal_record) records the learned gate reads as no one's (anonymize.record_threshold=0 "
                    "turns the gate off, anonymize.contextual=false replaces them all)", left)
    return stats
