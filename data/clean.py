"""Clean: unicode normalization, HTML and wikitext markup removal, whitespace, length bounds.

Markup is removed with regular expressions, innermost first, so nested templates and links
come apart without a parser. It is fast and good enough for training text; it is not a
faithful wikitext renderer.
"""

from __future__ import annotations

import html
import re
import unicodedata
from pathlib import Path

from collections import Counter
from functools import partial

from core.stats import StageStats
from data.config import CleanConfig
from data.shards import map_shards

HTML_COMMENT = re.compile(r"<!--.*?(?:-->|$)", re.DOTALL)
REF = re.compile(r"<ref[^>/]*/>|<ref[^>]*>.*?</ref\s*>", re.DOTALL | re.IGNORECASE)
INNERMOST_TEMPLATE = re.compile(r"\{\{[^{}]*\}\}")
INNERMOST_TABLE = re.compile(r"\{\|[^{]*?\|\}")
INNERMOST_LINK = re.compile(r"\[\[([^\[\]]*)\]\]")
EXTERNAL_LINK = re.compile(r"\[(?:https?:|ftp:)?//[^\s\]]+(?:\s+([^\]]*))?\]")
BOLD_ITALIC = re.compile(r"'{2,}")
HEADING = re.compile(r"^(=+)[ \t]*(.*?)[ \t]*\1[ \t]*$", re.MULTILINE)
MAGIC_WORD = re.compile(r"__[A-Z]+__")
HTML_TAG = re.compile(r"</?[A-Za-z][^<>]*>")
# Links to these namespaces are images, categories or other-language copies: no prose.
DROPPED_LINK_PREFIXES = ("file:", "image:", "category:", "media:")
INTERLANGUAGE_LINK = re.compile(r"^[a-z]{2,3}(?:-[a-z]+)?:")

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
    # Plain prose uses '' as a closing quote (TeX style, common in the fortunes): only
    # wikitext gets its bold/italic quote runs removed.
    return BOLD_ITALIC.sub("", text)


def strip_markup(text: str) -> str:
    text = HTML_COMMENT.sub("", text)
    if looks_like_wikitext(text):
        text = strip_wikitext(text)
    text = HTML_TAG.sub("", text)
    return html.unescape(text)


def normalize_whitespace(text: str) -> str:
    text = text.replace("\r\n", "\n").replace("\r", "\n")
    text = SPACES.sub(" ", text)
    text = SPACE_AROUND_NEWLINE.sub("\n", text)
    return BLANK_LINES.sub("\n\n", text).strip()


def clean_text(text: str, config: CleanConfig) -> str:
    text = unicodedata.normalize(config.unicode_form, text)
    if config.strip_markup:
        text = strip_markup(text)
    return normalize_whitespace(text)


class Cleaner:
    def __init__(self, config: CleanConfig):
        self.config = config
        self.counters: Counter = Counter()

    def process(self, record: dict) -> dict | str:
        text = clean_text(record["text"], self.config)
        if len(text) < self.config.min_chars:
            return "too_short"
        if len(text) > self.config.max_chars:
            return "too_long"
        return {**record, "text": text}


def run(config: CleanConfig, input_dir: Path, output_dir: Path, workers: int = 1) -> StageStats:
    return map_shards("clean", partial(Cleaner, config), input_dir, output_dir, workers)
