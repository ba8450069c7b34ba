"""Configs of the data stages. Each section of `data:` in a profile validates against one model."""

from __future__ import annotations

from typing import Literal

from pydantic import ConfigDict, Field, field_validator, model_validator

from core.config import FrozenConfig


class CanaryConfig(FrozenConfig):
    """Canaries ("The Secret Sharer", evaluation/canaries.py): synthetic secrets inserted into the
    raw corpus at ingest, so evaluation can measure whether the trained model leaks them and the
    promotion gate can refuse one that does. Off (per_kind 0) unless asked for."""
    per_kind: int = Field(default=0, ge=0, description="canaries of each kind; 0 inserts none")
    repeats: int = Field(default=10, ge=1, description="records each canary is appended to")
    kinds: list[Literal["phone", "card", "email", "secret"]] = Field(
        default=["phone", "card", "email", "secret"], min_length=1,
        description="phone, card and e-mail are personal data the anonymize stage replaces; "
                    "secret (\"my secret code is 123456\") is not, and tests memorization itself")
    seed: int = 0


class ChatConfig(FrozenConfig):
    """How a chat export's conversations become text (data.formats): one turn per line."""
    conversations_field: str = Field(default="conversations",
                                     description="a .json file that is one object holds its list here")
    messages_field: str = "messages"
    speaker_field: str = "speaker"
    text_field: str = "text"
    turn_format: str = Field(default="{speaker}: {text}", description="a turn as text; fields {speaker} and {text}")
    skip_speakers: list[str] = Field(default=["system"], description="turns of these speakers (the chat tool's "
                                                                     "own notices: joined, transferred, rate us) are left out")
    speakers: dict[str, str] = Field(default={},
                                     description="rename speakers, e.g. {\"Jane Doe\": \"Customer\"}: names are "
                                                 "personal data, roles are what a model should learn")

    @field_validator("turn_format")
    @classmethod
    def _fields(cls, value: str) -> str:
        try:
            value.format(speaker="s", text="t")
        except (KeyError, IndexError, ValueError) as exc:
            raise ValueError(f"turn_format may use {{speaker}} and {{text}} only ({exc})") from None
        return value


class IngestConfig(FrozenConfig):
    paths: list[str] = Field(default=["data/corpus/demo.jsonl.gz"], min_length=1,
                             description="files, folders, globs (repo-relative or absolute) or s3://bucket/prefix "
                                         "of JSONL, JSONL.gz, Parquet, CSV, .txt, mail (.mbox, .mbox.gz, .eml), "
                                         "web pages (.html, .htm, .warc, .warc.gz) or chat exports (.json)")
    id_field: str = "id"
    text_field: str = "text"
    records_per_part: int = Field(default=10_000, ge=1,
                                  description="records per shard; shards are the unit of parallel work and resume")
    max_record_bytes: int = Field(default=10_000_000, ge=1,
                                  description="a record (JSONL line, row, .txt file) above this is quarantined "
                                              "as too_large without being read whole")
    s3_endpoint_url: str | None = Field(default=None,
                                        description="S3 endpoint for s3:// paths (e.g. SeaweedFS); default: "
                                                    "AWS_ENDPOINT_URL or AWS. Credentials come from the environment")
    html_extractor: Literal["trafilatura", "resiliparse"] = Field(
        default="trafilatura", description="main-text extraction of web pages (data.formats says how they compare)")
    chat: ChatConfig = ChatConfig()
    canaries: CanaryConfig = CanaryConfig()


class BoilerplateConfig(FrozenConfig):
    """Line removal in the spirit of C4 (Raffel et al. 2020). C4's rules for web pages (every
    line ends in punctuation, has 3+ words) are off by default: they would cut verse, dialogue
    and headings out of books."""
    line_phrases: list[str] = Field(
        default=["javascript", "terms of use", "privacy policy", "cookie policy", "uses cookies",
                 "use of cookies", "use cookies"],
        description="a line containing any of these (case-insensitive) is removed")
    line_patterns: list[str] = Field(default=[], description="a line matching one of these regular expressions "
                                                             "whole (case-insensitive) is removed; the web preset's "
                                                             "are data.config.WEB_FURNITURE")
    min_words_per_line: int = Field(default=0, ge=0, description="shorter lines are removed; C4: 3, 0 keeps all")

    @field_validator("line_patterns")
    @classmethod
    def _compiles(cls, patterns: list[str]) -> list[str]:
        import re

        for pattern in patterns:
            try:
                re.compile(pattern)
            except re.error as exc:
                raise ValueError(f"line_patterns: {pattern!r} is not a regular expression ({exc})") from None
        return patterns
    require_terminal_punctuation: bool = Field(default=False, description="C4: remove lines not ending in . ! ? \"")
    drop_lorem_ipsum: bool = Field(default=True, description="drop a document holding 'lorem ipsum' (reason lorem_ipsum)")


class GopherQualityConfig(FrozenConfig):
    """Gopher's quality rules (Rae et al. 2021, appendix A; defaults as in datatrove).
    Each rule's drop reason is named after it; null turns a rule off."""
    min_words: int | None = Field(default=50, ge=1, description="gopher_word_count")
    max_words: int | None = Field(default=100_000, ge=1, description="gopher_word_count")
    min_mean_word_length: float | None = Field(default=3.0, ge=0, description="gopher_mean_word_length")
    max_mean_word_length: float | None = Field(default=10.0, ge=0, description="gopher_mean_word_length")
    max_symbol_word_ratio: float | None = Field(default=0.1, ge=0,
                                                description="gopher_symbol_ratio: ('#' + '...') per word")
    min_alpha_words_fraction: float | None = Field(default=0.8, ge=0, le=1,
                                                   description="gopher_alpha_ratio: words with a letter")
    min_stop_words: int | None = Field(default=2, ge=1, description="stop_words: at least this many stop words")
    stop_words: list[str] = Field(default=["the", "be", "to", "of", "and", "that", "have", "with"])


class GopherRepetitionConfig(FrozenConfig):
    """Gopher's repetition rules (Rae et al. 2021, table A1): fractions above these drop the
    document. null (or an empty mapping) turns a rule off."""
    max_dup_line_fraction: float | None = Field(default=0.3, ge=0, le=1, description="gopher_dup_line_fraction")
    max_dup_line_char_fraction: float | None = Field(default=0.2, ge=0, le=1, description="gopher_dup_line_fraction")
    max_dup_paragraph_fraction: float | None = Field(default=0.3, ge=0, le=1,
                                                     description="gopher_dup_paragraph_fraction")
    max_dup_paragraph_char_fraction: float | None = Field(default=0.2, ge=0, le=1,
                                                          description="gopher_dup_paragraph_fraction")
    max_top_ngram_char_fraction: dict[int, float] = Field(
        default={2: 0.2, 3: 0.18, 4: 0.16},
        description="gopher_top_ngram_fraction: n -> share of characters in the most frequent n-gram")
    max_dup_ngram_char_fraction: dict[int, float] = Field(
        default={5: 0.15, 6: 0.14, 7: 0.13, 8: 0.12, 9: 0.11, 10: 0.10},
        description="gopher_dup_ngram_fraction: n -> share of characters in repeated n-grams")


STRUCTURE_STEPS = ("headers", "quotes", "disclaimers", "signatures")  # data.structure, in the order they run
# Gopher's eight stop words decide long documents well; a two-line reply ("Works for me. See you
# on Thursday.") holds none of them, so short-text presets look for one of a longer list.
SHORT_TEXT_STOP_WORDS = ["the", "be", "to", "of", "and", "that", "have", "with", "a", "an", "i", "you", "it",
                         "is", "are", "was", "in", "on", "for", "me", "my", "we", "this", "not", "do", "can",
                         "will", "thanks", "thank", "yes", "no", "ok"]
MAIL_PRESET = {
    "structure": list(STRUCTURE_STEPS),
    "language_unit": "paragraph",
    # A reply of one good sentence ("Perfect, thank you.") is a document worth keeping.
    "min_chars": 10,
    "gopher_quality": {"min_words": 2, "min_stop_words": 1, "stop_words": SHORT_TEXT_STOP_WORDS},
}
# Lines that page templates put around an article, which main-text extraction lets through.
WEB_FURNITURE = [r"\d+ min(?:ute)?s? read", r"(?:tags|tagged|categories|category|filed under|posted in)\s*:.*",
                 r"(?:last )?(?:updated|modified|published)(?: on)?:? .{0,40}\d{4}", r"edit (?:this|on) \w+",
                 r"(?:share|tweet|pin)(?: this| on \w+)?", r"(?:previous|next) (?:post|article|page).{0,80}",
                 r"(?:read more|continue reading|back to top|print this page).{0,20}",
                 # a date (and time) alone on a line: a byline's or a post's
                 r"(?:[A-Z][a-z]{2,8}\.? \d{1,2},? \d{4}|\d{1,2} [A-Z][a-z]{2,8},? \d{4}|\d{4}-\d{2}-\d{2})"
                 r"(?:,? (?:at )?\d{1,2}:\d{2}(?::\d{2})? ?(?:[AP]M)?)?",
                 # a forum thread's poster box
                 r"(?:hero|full|jr\.?|sr\.?|junior|senior|newbie|new|active|global|god)? ?member",
                 r"posts: [\d,]+", r"joined:? .{1,30}", r"(?:reply|re:?) #\d+.{0,80}", r"topic: .{1,120}\(read \d+ times\)"]
# Domain presets: what differs from the defaults (books, the `books` preset) for each kind of text.
# A profile's own values win over its preset's: `preset: mail` with `min_chars: 100` keeps 100.
CLEAN_PRESETS: dict[str, dict] = {
    "books": {},
    "web": {"structure": ["quotes"], "language_unit": "paragraph", "gopher_quality": {"min_words": 30},
            "boilerplate": {"line_patterns": WEB_FURNITURE}},
    "mail": MAIL_PRESET,
    "forum": MAIL_PRESET,
    "chat": {
        "structure": ["quotes", "disclaimers", "signatures"],
        "language_unit": "line",
        "min_chars": 10,
        "gopher_quality": {"min_words": 2, "min_stop_words": 1, "stop_words": SHORT_TEXT_STOP_WORDS},
        # "ok", "thanks", "yes": short turns repeat in any conversation, and a turn quotes another.
        "gopher_repetition": {"max_dup_line_fraction": 0.5, "max_dup_line_char_fraction": 0.3,
                              "max_dup_ngram_char_fraction": {}, "max_top_ngram_char_fraction": {}},
    },
    "code": {
        "language_unit": "paragraph",
        "gopher_quality": {"max_symbol_word_ratio": 0.5, "min_alpha_words_fraction": 0.5, "max_mean_word_length": 15},
        "gopher_repetition": {"max_dup_line_fraction": 0.5, "max_dup_line_char_fraction": 0.4,
                              "max_top_ngram_char_fraction": {}, "max_dup_ngram_char_fraction": {}},
    },
}


def _under(preset: dict, given: dict) -> dict:
    """`given` over `preset`, section by section."""
    merged = dict(preset)
    for key, value in given.items():
        merged[key] = _under(preset[key], value) if isinstance(value, dict) and isinstance(
            preset.get(key), dict) and key not in ("max_top_ngram_char_fraction", "max_dup_ngram_char_fraction") else value
    return merged


class CleanConfig(FrozenConfig):
    preset: Literal["books", "web", "mail", "forum", "chat", "code"] = Field(
        default="books", description="the domain's defaults (data.config.CLEAN_PRESETS): books, web, mail or forum "
                                     "(mail, news, forum posts, support tickets), chat, code (code-mixed text)")
    structure: list[str] = Field(default=[], description=f"structure steps to run, of {', '.join(STRUCTURE_STEPS)} "
                                                         "(data.structure); the mail preset runs all")
    fix_unicode: bool = Field(default=True, description="repair mojibake and broken characters with ftfy")
    unicode_form: str = Field(default="NFKC", pattern="^(NFC|NFKC|NFD|NFKD)$")
    strip_markup: bool = Field(default=True, description="remove HTML tags and wikitext markup")
    boilerplate: BoilerplateConfig = BoilerplateConfig()
    min_chars: int = Field(default=200, ge=1)
    max_chars: int = Field(default=200_000, ge=1)
    languages: list[str] = Field(default=["en"],
                                 description="keep these languages (fastText lid.176 codes); empty keeps all")
    min_language_score: float = Field(default=0.65, ge=0, le=1,
                                      description="fastText probability a kept language needs (FineWeb: 0.65); "
                                                  "by paragraph or line: the share of the text's characters "
                                                  "voting for it")
    language_unit: Literal["document", "paragraph", "line"] = Field(
        default="document", description="identify the language of the whole text, or by paragraph or line with "
                                        "a vote weighted by length (headers, code and quotes cannot decide it)")
    mixed_languages: Literal["keep", "split"] = Field(
        default="keep", description="keep: a text is kept or dropped whole by its main language; split: "
                                    "paragraphs (lines) in other languages are removed and the rest kept")
    gopher_quality: GopherQualityConfig = GopherQualityConfig()
    gopher_repetition: GopherRepetitionConfig = GopherRepetitionConfig()

    @model_validator(mode="before")
    @classmethod
    def _preset(cls, data):
        if isinstance(data, dict) and data.get("preset", "books") in CLEAN_PRESETS:
            return _under(CLEAN_PRESETS[data.get("preset", "books")], data)
        return data

    @model_validator(mode="after")
    def _bounds(self):
        if self.min_chars > self.max_chars:
            raise ValueError(f"min_chars ({self.min_chars}) is above max_chars ({self.max_chars})")
        unknown = [step for step in self.structure if step not in STRUCTURE_STEPS]
        if unknown:
            raise ValueError(f"structure: unknown step(s) {', '.join(unknown)}; the steps are {', '.join(STRUCTURE_STEPS)}")
        return self


class DedupConfig(FrozenConfig):
    lowercase: bool = Field(default=True, description="compare text lower-cased with whitespace collapsed")
    near_dedup: bool = Field(default=True, description="also drop near duplicates (MinHash LSH), not only exact copies")
    shingle_words: int = Field(default=5, ge=1, description="words per shingle (word n-gram) for MinHash")
    num_perm: int = Field(default=128, ge=2, description="MinHash permutations: the signature length")
    bands: int = Field(default=16, ge=1, description="LSH bands; bands x rows must equal num_perm")
    rows: int = Field(default=8, ge=1, description="signature values per LSH band")
    threshold: float = Field(default=0.8, gt=0, le=1,
                             description="Jaccard similarity of shingle sets a candidate pair needs to count as near duplicates")
    seed: int = Field(default=1, description="seed of the MinHash permutations")
    line_dedup: bool = Field(default=False, description="remove lines repeated across many documents (boilerplate)")
    line_min_docs: int = Field(default=10, ge=2, description="a line found in at least this many documents is removed")

    @model_validator(mode="after")
    def _bands_cover_signature(self):
        if self.bands * self.rows != self.num_perm:
            raise ValueError(f"bands x rows ({self.bands} x {self.rows}) must equal num_perm ({self.num_perm})")
        return self


class AnonymizeConfig(FrozenConfig):
    entities: list[str] = Field(
        default=["EMAIL", "PHONE", "IP_ADDRESS", "CREDIT_CARD", "IBAN", "US_SSN", "URL_CREDENTIALS", "PERSON",
                 "LOCATION"],
        description="entity types to replace; PERSON and LOCATION come from spaCy NER when `ner` is on")
    mode: str = Field(default="redact", pattern="^(redact|mask|pseudonymize)$",
                      description="redact: <EMAIL>; mask: letters and digits become *; pseudonymize: "
                                  "<EMAIL_1a2b3c4d>, a keyed HMAC (key in env CONVEYOR_PII_KEY)")
    allow_list: list[str] = Field(default=[], description="values never replaced (matched ignoring case)")
    ner: bool = Field(default=True, description="detect PERSON and LOCATION with spaCy NER")
    contextual: bool = Field(
        default=True, description="replace a place, a local-network IP address (10.x, 192.168.x) or a business's "
                                  "phone line (toll-free, 'Customer relations:') only where the text ties it to a "
                                  "person (near other personal data, 'lives in', 'Address:', a client log line, a "
                                  "name on the phone's line); the others are counted as not_personal_* in the "
                                  "stats. false: replace every one")
    record_threshold: float = Field(
        default=0.9, ge=0, lt=1,
        description="with contextual on, every entity type and NER on: a record none of whose names, places, phone "
                    "lines, mailboxes and addresses the learned scorer (data/pii_scorer.py) rates at least this "
                    "likely to be someone's data is left whole (a business's page, a policy, a history the rules "
                    "misread); 0 turns the scorer off")

    @model_validator(mode="after")
    def _known_entities(self):
        # The same names as data.pii.ENTITIES (a test keeps them equal).
        known = ("URL_CREDENTIALS", "EMAIL", "IBAN", "CREDIT_CARD", "US_SSN", "IP_ADDRESS", "PHONE", "PERSON",
                 "LOCATION")
        unknown = sorted(set(self.entities) - set(known))
        if unknown:
            raise ValueError(f"entities: no detector for {unknown}; known: {list(known)}")
        return self


class ValidateConfig(FrozenConfig):
    suite: str = Field(default="configs/gx/curated.yaml", description="GX suite definition, repo-relative")
    # Below CleanConfig.min_chars: anonymization replaces values with shorter placeholders. Unset,
    # it follows clean's (DataConfig), so a preset that keeps short replies does not fail validation.
    min_chars: int = Field(default=150, ge=1, description="default: 3/4 of clean.min_chars")
    max_chars: int = Field(default=200_000, ge=1)
    data_docs: bool = Field(default=True, description="build GX Data Docs HTML beside the output (<output>.data-docs/)")


class SplitConfig(FrozenConfig):
    validation_fraction: float = Field(default=0.05, gt=0, lt=1)
    seed: int = 0


class DataConfig(FrozenConfig):
    ingest: IngestConfig = IngestConfig()
    clean: CleanConfig = CleanConfig()
    dedup: DedupConfig = DedupConfig()
    anonymize: AnonymizeConfig = AnonymizeConfig()
    validate_: ValidateConfig = Field(default=ValidateConfig(), alias="validate")
    split: SplitConfig = SplitConfig()

    model_config = ConfigDict(frozen=True, extra="forbid", populate_by_name=True)

    @model_validator(mode="after")
    def _validate_follows_clean(self):
        if "min_chars" not in self.validate_.model_fields_set:
            follow = max(1, self.clean.min_chars * 3 // 4)
            if follow != self.validate_.min_chars:
                object.__setattr__(self, "validate_", self.validate_.model_copy(update={"min_chars": follow}))
        return self
