"""A learned second look at the rules' spans: does this record hold anyone's data at all?

The rules of data/pii.py tell a person's data from a business's or a machine's by context, and
they were written against the hand-annotated sets: on a set none of them had seen, they still
changed 1 in 5 PII-free records (benchmarks/README.md, the ninth session), nearly always by
spaCy's "persons" and places in a business's page, a policy or a history (a Spanish page's
"Contacto", a hurricane's name, a list of countries) and the role mailbox or phone line such a
"person" then ties. Each new rule fixed the set it came from and little of the next.

So the detectors' contextual spans (PERSON, LOCATION, EMAIL, PHONE, IP_ADDRESS) get a score: a
logistic regression over the words around each span, its shape, its label and the other spans of
its line and record, trained on the hand-annotated sets and on 2,000 generated records
(benchmarks/train_pii_scorer.py writes data/pii_scorer.json; the weights are plain numbers, read
without scikit-learn). A record none of whose contextual spans scores `threshold` is a PII-free
record the rules misread, and is left whole; in any other record every span stays, so the rules'
recall is kept where a record holds someone's data. What a checksum or a URL vouches for (cards,
IBANs, SSNs, credentials) is never scored nor dropped.

Features name English words, titles and kinds of words, never a value: a name, an address or a
number of the training text is not in the weights (see context_word; a test checks it).
"""

from __future__ import annotations

import bisect
import json
import math
import re
from functools import lru_cache
from pathlib import Path
from typing import Iterator

WEIGHTS = Path(__file__).with_name("pii_scorer.json")
SCORED = frozenset({"PERSON", "LOCATION", "EMAIL", "PHONE", "IP_ADDRESS"})
DEFAULT_THRESHOLD = 0.9  # benchmarks/train_pii_scorer.py: leave-sets-out, the highest that kept every value
FEATURE_VERSION = 1
# The hand-written sets' records are documents of 100-1,500 characters (19 in 20 over 580); the
# generated benchmark's (20-330, sentences from templates) lost names and addresses to a gate that
# took records from 150 characters on. A shorter record (a chat line, a form's field, a model's
# reply) keeps the rules' spans.
MIN_CHARS = 300

TOKEN = re.compile(r"[^\W_]+|[^\w\s]")
FIRST_PERSON = re.compile(r"\b(?:I|I'm|I've|I'd|I'll|me|my|mine)\b")
SECOND_PERSON = re.compile(r"(?i)\b(?:you|your)\b")
LINE_LABEL = re.compile(r"[ \t]*([^\W\d_][\w \t-]{0,20}?)[ \t]*:")
CONTEXT_CHARS = 60
NEAR_CHARS = 150


def shape(word: str) -> str:
    """"Xx", "XX", "x", "d", "Xx-Xx": a word's case and digits, runs squeezed."""
    folded = "".join("X" if char.isupper() else "x" if char.isalpha() else "d" if char.isdigit() else char
                     for char in word[:12])
    return re.sub(r"([Xxd])\1+", r"\1", folded)


def context_word(word: str) -> str:
    """A word as a feature: an English word or a title in lower case ("regards", "mobile", "dr"), a
    listed given name or surname capitalised as "NAME", any other word by its case ("Cap", "low"),
    numbers and marks by their shape. So no name, street or town of the training text is a weight."""
    if not word.isalpha():
        return shape(word)
    folded = word.casefold()
    capitalised = word[0].isupper()
    if capitalised and folded in names():
        return "NAME"
    if folded in vocabulary():
        return folded
    return "Cap" if capitalised else "low"


@lru_cache(maxsize=1)
def vocabulary() -> frozenset[str]:
    from data.lexicons import lexicon
    from data.pii import TITLES
    return lexicon("english") | TITLES


@lru_cache(maxsize=1)
def people_word() -> re.Pattern:
    from data.pii import PEOPLE_LABELS  # the rules' words for people ("volunteers", "attendees", "cc")
    return re.compile(rf"\b{PEOPLE_LABELS}\b")


@lru_cache(maxsize=1)
def names_listed() -> tuple[frozenset[str], frozenset[str]]:
    from data.lexicons import lexicon
    return lexicon("first") | lexicon("english_names"), lexicon("last")


@lru_cache(maxsize=1)
def names() -> frozenset[str]:
    from data.lexicons import lexicon
    return lexicon("names") | lexicon("english_names")


def name_in_mailbox(text: str, span, spans) -> bool:
    """Whether a name's word of 3 letters or more is in the local part of an e-mail address of the
    record (for an EMAIL span: a name of the record is in its own local part)."""
    pairs = [(span, other) for other in spans if other[2] == "EMAIL"] if span[2] == "PERSON" else \
        [(other, span) for other in spans if other[2] == "PERSON"]
    for name, mailbox in pairs:
        local = text[mailbox[0]:mailbox[1]].split("@")[0].casefold()
        if any(len(word) >= 3 and word in local for word in re.findall(r"\w+", text[name[0]:name[1]].casefold())):
            return True
    return False


def record_features(text: str, spans) -> dict[str, float]:
    features = {f"record_has:{entity}": 1.0 for entity in {span[2] for span in spans}}
    features["record_persons"] = min(sum(1 for span in spans if span[2] == "PERSON"), 10) / 10
    features["record_first_person"] = 1.0 if FIRST_PERSON.search(text) else 0.0
    features["record_second_person"] = 1.0 if SECOND_PERSON.search(text) else 0.0
    return features


def span_features(text: str, span, spans, starts: list[int], record: dict[str, float]) -> dict[str, float]:
    """One span's features; `spans` sorted by start, `starts` their starts."""
    start, end, entity = span[0], span[1], span[2]
    features = dict(record)
    features[f"entity:{entity}"] = 1.0
    words = text[start:end].split()
    features[f"{entity}:words={min(len(words), 4)}"] = 1.0
    for word in words[:3]:
        features[f"{entity}:shape={shape(word)}"] = 1.0
    if entity == "PERSON" and words:  # listed given names and surnames (data/lexicons), not the words
        given, surname = names_listed()
        features["PERSON:listed_given"] = float(words[0].casefold() in given)
        features["PERSON:listed_surname"] = float(len(words) > 1 and words[-1].casefold().rstrip("'’s") in surname)
    if entity in ("PERSON", "EMAIL"):  # a name and the mailbox spelling it: "Ana Reis", "a.reis@"
        features[f"{entity}:name_in_mailbox"] = float(name_in_mailbox(text, span, spans))
    if entity == "LOCATION" and words:  # a place's own first word ("Hurricane", "Camino"), never a name's
        features[f"{entity}:first={context_word(words[0])}"] = 1.0
    left = TOKEN.findall(text[max(0, start - CONTEXT_CHARS):start])[-4:]
    right = TOKEN.findall(text[end:end + CONTEXT_CHARS])[:4]
    for index, word in enumerate(reversed(left)):
        features[f"{entity}:left{index}={context_word(word)}"] = 1.0
        features[f"{entity}:left={context_word(word)}"] = 1.0
    for index, word in enumerate(right):
        features[f"{entity}:right{index}={context_word(word)}"] = 1.0
        features[f"{entity}:right={context_word(word)}"] = 1.0
    line_start = text.rfind("\n", 0, start) + 1
    line_end = text.find("\n", end)
    line_end = len(text) if line_end == -1 else line_end
    features[f"{entity}:line_" + ("starts" if not text[line_start:start].strip() else "inside")] = 1.0
    label = LINE_LABEL.match(text, line_start, start)
    if label:
        features[f"{entity}:label=" + " ".join(context_word(word) for word in label.group(1).split())] = 1.0
    if entity == "PERSON":  # a block headed by a word for people: "Volunteer  Helper", "Attendees:"
        block = text.rfind("\n\n", 0, start)
        block = 0 if block == -1 else block + 2
        header = text[block:text.find("\n", block) if "\n" in text[block:start] else start]
        features["PERSON:people_header"] = float(people_word().search(header) is not None)
    first = bisect.bisect_left(starts, start - NEAR_CHARS - 200)
    for other in spans[first:]:
        if other[0] > end + NEAR_CHARS:
            break
        if (other[0], other[1]) == (start, end):
            continue
        if line_start <= other[0] and other[1] <= line_end:
            features[f"{entity}:same_line={other[2]}"] = 1.0
        if other[0] - end < NEAR_CHARS and start - other[1] < NEAR_CHARS:
            features[f"{entity}:near={other[2]}"] = 1.0
    return features


def vectors(text: str, spans) -> Iterator[dict[str, float]]:
    """The features of each scored span of a record, in the order of `spans` (unscored ones
    skipped), one at a time."""
    ordered = sorted(spans, key=lambda span: span[0])
    starts = [span[0] for span in ordered]
    record = record_features(text, spans)
    for span in spans:
        if span[2] in SCORED:
            yield span_features(text, span, ordered, starts, record)


def features(text: str, spans) -> list[dict[str, float]]:
    return list(vectors(text, spans))


class SpanScorer:
    """Scores from data/pii_scorer.json; `keep` applies the record gate."""

    def __init__(self, threshold: float = DEFAULT_THRESHOLD, path: Path = WEIGHTS):
        model = json.loads(path.read_text(encoding="utf-8"))
        if model["feature_version"] != FEATURE_VERSION:
            raise ValueError(f"{path} was trained on feature version {model['feature_version']}, this code "
                             f"computes {FEATURE_VERSION}: retrain it (python -m benchmarks.train_pii_scorer)")
        self.bias = model["bias"]
        self.weights = model["weights"]
        self.threshold = threshold

    def scores(self, text: str, spans) -> Iterator[float]:
        """Each scored span's probability of being someone's data (order of `features`), lazily."""
        for vector in vectors(text, spans):
            logit = self.bias + sum(self.weights.get(name, 0.0) * value for name, value in vector.items())
            yield 1 / (1 + math.exp(-max(-30.0, min(30.0, logit))))

    def keep(self, text: str, spans) -> list:
        """The spans, less the scored ones where none of them reaches the threshold (see `gate`);
        the scoring stops at the first span that reaches it (a novel's chapter, a long thread)."""
        if not any(span[2] in SCORED for span in spans) or beyond(text, spans) \
                or any(score >= self.threshold for score in self.scores(text, spans)):
            return list(spans)
        return [span for span in spans if span[2] not in SCORED]


def beyond(text: str, spans) -> bool:
    """Whether a record is one the gate leaves to the rules: shorter than the records it learned
    from, or holding an e-mail address made of a name ("mark.stone@", "jsmith@", or "b.batbayar@"
    beside "Bolortuya Batbayar"), which shows by itself that the record is someone's."""
    from data.pii import spells_a_name  # (data.pii imports this module)
    return len(text) < MIN_CHARS or any(span[2] == "EMAIL" and (spells_a_name(text[span[0]:span[1]])
                                                                or name_in_mailbox(text, span, spans))
                                        for span in spans)


def gate(text: str, spans, scores: list[float], threshold: float) -> list:
    """The spans, less the scored ones where no score reaches the threshold; no scores: all of them."""
    if not scores or max(scores) >= threshold or beyond(text, spans):
        return list(spans)
    return [span for span in spans if span[2] not in SCORED]


@lru_cache(maxsize=4)
def scorer(threshold: float = DEFAULT_THRESHOLD) -> SpanScorer:
    return SpanScorer(threshold)
