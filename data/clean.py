"""Clean: repair and normalize unicode, remove markup and boilerplate lines, then filter.

Each record is first rewritten: ftfy repairs mojibake, the text is unicode-normalized, HTML and
wikitext markup are removed, boilerplate lines (C4's cookie/terms/javascript lines) go, and
whitespace is normalized. Then it is dropped, with a reason, if it falls outside the length
bounds, holds "lorem ipsum", or fails a quality filter of `data.quality` (language, Gopher's
quality and repetition rules). Every drop has a reason in the stage's stats.

Markup is removed with regular expressions, innermost first, so nested templates and links
come apart without a parser. It is fast and good enough for training text; it is not a
faithful wikitext renderer.
"""

from __future__ import annotations

import html
import re
import unicodedata
from collections import Counter
from functools import cache, partial
from pathlib import Path

from core.stats import StageStats
from data.config import STRUCTURE_STEPS, BoilerplateConfig, CleanConfig
from data.quality import first_failure, other_language_units
from data.shards import map_shards
from data.report import write_report
from data.structure import SAMPLE_CHARS, Structure

SAMPLES_PER_RULE = 3

HTML_COMMENT = re.compile(r"<!--.*?(?:-->|$)", re.DOTALL)
REF = re.compile(r"<ref[^>/]*/>|<ref[^>]*>.*?</ref\s*>", re.DOTALL | re.IGNORECASE)
INNERMOST_TEMPLATE = re.compile(r"\{\{[^{}]*\}\}")
INNERMOST_TABLE = re.compile(r"\{\|[^{]*?\|\}")
INNERMOST_LINK = re.compile(r"\[\[([^\[\]]*)\]\]")
EXTERNAL_LINK = re.compile(r"\[(?:https?:|ftp:)?//[^\s\]]+(?:\s+([^\]]*))?\]")
BOLD_ITALIC = re.compile(r"'{2,}")
HEADING = re.compile(r"^(=+)[ \t]*(.*?)[ \t]*\1[ \t]*$", re.MULTILINE)
MAGIC_WORD = re.compile(r"__[A-Z]+__")
# Bullets, numbering and indentation at the start of a wikitext line; an item whose text was all
# templates would otherwise stay behind as a bare "*" line.
LIST_MARKER = re.compile(r"^[*#:;]+[ \t]*", re.MULTILINE)
HTML_TAG = re.compile(r"</?[A-Za-z][^<>]*>")
# Links to these namespaces are images, categories or other-language copies: no prose.
DROPPED_LINK_PREFIXES = ("file:", "image:", "category:", "media:")
INTERLANGUAGE_LINK = re.compile(r"^[a-z]{2,3}(?:-[a-z]+)?:")

# A line "ends in punctuation" for C4 if its last character, past closing quotes, is one of these.
TERMINAL_PUNCTUATION = (".", "!", "?", '"', "”", "'", "’")
LOREM_IPSUM = "lorem ipsum"
CONTROL_CHARACTER = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f]")

SPACES = re.compile(r"[^\S\n]+")
SPACE_AROUND_NEWLINE = re.compile(r" *\n *")
BLANK_LINES = re.compile(r"\n{3,}")


def link_text(match: re.Match) -> str:
    target, _, label = match.group(1).partition("|")
    lowered = target.strip().lower()
    if lowered.startswith(DROPPED_LINK_PREFIXES) or INTERLANGUAGE_LINK.match(lowered):
        return ""
    # A File caption can hold '|' options; the visible text of a plain link is the last part.
    return (label.rpartition("|")[2] if label else target).strip()


def remove_innermost_first(pattern: re.Pattern, text: str, replacement="") -> str:
    while True:
        text, count = pattern.subn(replacement, text)
        if count == 0:
            return text


def looks_like_wikitext(text: str) -> bool:
    return "[[" in text or "{{" in text or "'''" in text or "{|" in text


def strip_wikitext(text: str) -> str:
    text = REF.sub("", text)
    # Tables hold templates and templates hold tables: peel both until neither is left.
    while True:
        peeled = remove_innermost_first(INNERMOST_TABLE, remove_innermost_first(INNERMOST_TEMPLATE, text))
        if peeled == text:
            break
        text = peeled
    text = remove_innermost_first(INNERMOST_LINK, text, link_text)
    text = EXTERNAL_LINK.sub(lambda m: m.group(1) or "", text)
    text = HEADING.sub(lambda m: m.group(2), text)
    text = MAGIC_WORD.sub("", text)
    text = LIST_MARKER.sub("", text)
    # Plain prose uses '' as a closing quote (TeX style, common in the fortunes): only
    # wikitext gets its bold/italic quote runs removed.
    return BOLD_ITALIC.sub("", text)


def strip_markup(text: str) -> str:
    text = HTML_COMMENT.sub("", text)
    if looks_like_wikitext(text):
        text = strip_wikitext(text)
    text = HTML_TAG.sub("", text)
    return html.unescape(text)


@cache
def unicode_fixer():
    try:
        import ftfy
    except ImportError as exc:
        raise ImportError("clean.fix_unicode needs ftfy: pip install ftfy") from exc
    # Curly quotes stay curly, normalization is unicode_form's job, and HTML entities are
    # unescaped after tags are removed (see strip_markup), never before.
    config = ftfy.TextFixerConfig(uncurl_quotes=False, normalization=None, unescape_html=False, explain=False)
    return partial(ftfy.fix_text, config=config)


@cache
def line_pattern(patterns: tuple[str, ...]) -> re.Pattern:
    return re.compile("|".join(f"(?:{p})" for p in patterns), re.IGNORECASE)


def is_boilerplate(line: str, rules: BoilerplateConfig) -> bool:
    stripped = line.strip()
    if not stripped:
        return False  # blank lines separate paragraphs
    lowered = stripped.lower()
    return (any(phrase in lowered for phrase in rules.line_phrases)
            or (rules.line_patterns and line_pattern(tuple(rules.line_patterns)).fullmatch(stripped) is not None)
            or len(stripped.split()) < rules.min_words_per_line
            or (rules.require_terminal_punctuation and not stripped.endswith(TERMINAL_PUNCTUATION)))


def remove_boilerplate_lines(text: str, rules: BoilerplateConfig) -> tuple[str, list[str]]:
    """The text without its boilerplate lines, and those lines."""
    kept, removed = [], []
    for line in text.split("\n"):
        (removed if is_boilerplate(line, rules) else kept).append(line)
    return "\n".join(kept), removed


def normalize_whitespace(text: str) -> str:
    text = text.replace("\r\n", "\n").replace("\r", "\n")
    text = SPACES.sub(" ", text)
    text = SPACE_AROUND_NEWLINE.sub("\n", text)
    return BLANK_LINES.sub("\n\n", text).strip()


def clean_text(text: str, config: CleanConfig, counters: Counter | None = None,
               samples: dict[str, list[dict]] | None = None, record_id: str = "") -> str:
    """The rewritten text; `counters` (if given) counts repaired records and removed lines, and
    `samples` gets the first few boilerplate lines removed (data.structure.Structure.samples)."""
    counters = Counter() if counters is None else counters
    # Mojibake needs non-ASCII characters: plain ASCII only needs ftfy for control characters.
    if config.fix_unicode and (not text.isascii() or CONTROL_CHARACTER.search(text)):
        fixed = unicode_fixer()(text)
        counters["unicode_repaired"] += fixed != text
        text = fixed
    text = unicodedata.normalize(config.unicode_form, text)
    if config.strip_markup:
        text = strip_markup(text)
    text = normalize_whitespace(text)
    text, removed = remove_boilerplate_lines(text, config.boilerplate)
    if removed:
        counters["boilerplate_lines"] += len(removed)
        counters["boilerplate_docs"] += 1
        if samples is not None and len(examples := samples.setdefault("boilerplate", [])) < SAMPLES_PER_RULE:
            examples.append({"id": record_id, "removed": "\n".join(removed)[:SAMPLE_CHARS]})
    # Removed lines can leave runs of blank lines behind.
    return normalize_whitespace(text) if removed else text


class Cleaner:
    def __init__(self, config: CleanConfig):
        self.config = config
        self.counters: Counter = Counter()
        # The steps run in their own order whatever the list's (disclaimers before signatures: a
        # notice under a signature would hide it).
        self.structure = Structure(tuple(s for s in STRUCTURE_STEPS if s in config.structure), counters=self.counters)
        self.samples = self.structure.samples  # what each step removed, a few examples (data.shards)

    def process(self, record: dict) -> dict | str:
        text, fields = record["text"], {}
        if self.config.structure:
            # On the text as it came, before whitespace is normalized: a folded header line is
            # known by its indent, a signature separator by its trailing space.
            text, fields = self.structure.apply(text.replace("\r\n", "\n").replace("\r", "\n"), str(record["id"]))
        text = clean_text(text, self.config, self.counters, self.samples, str(record["id"]))
        if self.config.mixed_languages == "split" and self.config.languages and text:
            text = self.remove_other_languages(text, str(record["id"]))
        if len(text) < self.config.min_chars:
            return "too_short"
        if len(text) > self.config.max_chars:
            return "too_long"
        if self.config.boilerplate.drop_lorem_ipsum and LOREM_IPSUM in text.lower():
            return "lorem_ipsum"
        # The header step's author, date and subject are fields; a field the record has wins.
        return first_failure(text, self.config) or {**fields, **record, "text": text}

    @staticmethod
    def published(config: CleanConfig, stats: StageStats, output_dir: Path) -> None:
        """Once the shards are merged: the report of what each rule removed (data.report)."""
        write_report(stats, output_dir, [*config.structure, "boilerplate", "other_language"])

    def remove_other_languages(self, text: str, record_id: str) -> str:
        other = other_language_units(text, self.config)
        if not other:
            return text
        self.counters["other_language_lines"] += sum(part.count("\n") + 1 for part in other)
        self.counters["other_language_docs"] += 1
        if len(examples := self.samples.setdefault("other_language", [])) < SAMPLES_PER_RULE:
            examples.append({"id": record_id, "removed": "\n\n".join(other)[:SAMPLE_CHARS]})
        separator = "\n" if self.config.language_unit == "line" else "\n\n"
        parts = [part for part in text.split(separator) if part not in set(other)]
        return normalize_whitespace(separator.join(parts))


def run(config: CleanConfig, input_dir: Path, output_dir: Path, workers: int = 1) -> StageStats:
    stats = map_shards("clean", partial(Cleaner, config), input_dir, output_dir, workers)
    Cleaner.published(config, stats, output_dir)
    return stats
