"""Guardrails on prompts and completions: personal data, a blocklist, an offensive-language
classifier, repetition.

Each check has an action per direction (serving.config.GuardConfig): `block` refuses (a prompt:
400 with a reason code; a completion: withheld, or a stream ended with finish_reason
"content_filter"), `redact` replaces what was found (`<EMAIL>`, `<BLOCKED>`), `log` only counts.
Personal data is found by the anonymize stage's detectors (data.pii.PiiDetector, the same rules
the corpus went through). The classifier is alt-profanity-check (a linear SVM over word n-grams
trained on offensive and hateful posts, shipped in its wheel: offline, about 0.1 ms a text); it
judges a whole text, so its actions are block, log or off. What leaves this module is counts per
check, never the text.

A streamed completion is checked as it grows: `OutputFilter` holds back the last
`stream_holdback_chars` characters (and any match still open at the boundary), so a phone number
or an e-mail address split across tokens is redacted before any of it is sent. It costs time to
first token (the first piece leaves once that many characters exist), so it applies only when an
output check redacts or blocks.
"""

from __future__ import annotations

import re
from collections import Counter
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path

from data.pii import PiiDetector, Span
from serving.config import GuardConfig

BLOCKLIST_FILE = Path(__file__).with_name("blocklist.txt")


class Refused(Exception):
    """A prompt or completion a `block` action stops; `code` is the reason code clients see."""

    def __init__(self, code: str, message: str):
        super().__init__(message)
        self.code = code


@dataclass
class Hits:
    """Counts per (check, direction, action), for the metrics and the request log."""

    counts: Counter = field(default_factory=Counter)

    def add(self, check: str, direction: str, action: str, n: int) -> None:
        if n:
            self.counts[(check, direction, action)] += n

    def summary(self) -> dict[str, int]:
        return {f"{check}.{direction}.{action}": n for (check, direction, action), n in sorted(self.counts.items())}


@lru_cache(maxsize=4)
def _detector(entities: tuple[str, ...]) -> PiiDetector:
    return PiiDetector(entities, ner=False)


def load_blocklist(extra: tuple[str, ...] = ()) -> re.Pattern | None:
    terms = [line.strip() for line in BLOCKLIST_FILE.read_text(encoding="utf-8").splitlines()
             if line.strip() and not line.startswith("#")] + list(extra)
    if not terms:
        return None
    alternatives = "|".join(re.escape(term) for term in sorted(set(terms), key=len, reverse=True))
    return re.compile(rf"(?<!\w)(?:{alternatives})(?!\w)", re.IGNORECASE)


def repeated_ngram_share(text: str, n: int = 3) -> float:
    """Share of the words covered by the most frequent word n-gram (0 for short texts)."""
    words = text.split()
    if len(words) < 4 * n:
        return 0.0
    grams = Counter(tuple(words[i:i + n]) for i in range(len(words) - n + 1))
    top = grams.most_common(1)[0][1]
    return top * n / len(words)


class Guard:
    def __init__(self, config: GuardConfig):
        self.config = config
        self.pii = _detector(tuple(config.pii_entities)) if config.pii_entities else None
        self.blocklist = load_blocklist(tuple(config.blocklist))

    def _offensive(self, text: str, direction: str, hits: Hits) -> None:
        action = getattr(self.config, f"classifier_{direction}")
        if action == "off" or not text.strip():
            return
        from profanity_check import predict_prob

        if predict_prob([text])[0] >= self.config.classifier_threshold:
            hits.add("classifier", direction, action, 1)
            if action == "block":
                where = "prompt" if direction == "input" else "completion"
                raise Refused(f"classifier_{direction}", f"the {where} reads as offensive (content classifier)")

    def _spans(self, text: str, direction: str) -> list[tuple[str, str, list[Span]]]:
        """(check, action, spans) for the checks that are on in this direction."""
        found = []
        pii_action = getattr(self.config, f"pii_{direction}")
        if self.pii is not None and pii_action != "off":
            found.append(("pii", pii_action, self.pii.find(text)))
        block_action = getattr(self.config, f"blocklist_{direction}")
        if self.blocklist is not None and block_action != "off":
            found.append(("blocklist", block_action,
                          [Span(m.start(), m.end(), "BLOCKED") for m in self.blocklist.finditer(text)]))
        return found

    def check_prompt(self, text: str, hits: Hits) -> str:
        """The prompt to generate from (redacted where configured); raises Refused for `block`."""
        limit = self.config.max_repeated_ngram_share
        if limit < 1 and repeated_ngram_share(text) > limit:
            hits.add("repetition", "input", "block", 1)
            raise Refused("repetitive_prompt", "the prompt repeats one phrase over most of its length")
        text = self._apply(text, self._spans(text, "input"), "input", hits)
        self._offensive(text, "input", hits)
        return text

    def check_completion(self, text: str, hits: Hits) -> str:
        text = self._apply(text, self._spans(text, "output"), "output", hits)
        self._offensive(text, "output", hits)
        return text

    def _apply(self, text: str, found, direction: str, hits: Hits) -> str:
        redact: list[Span] = []
        for check, action, spans in found:
            hits.add(check, direction, action, len(spans))
            if spans and action == "block":
                what = "personal data" if check == "pii" else "blocked terms"
                where = "prompt" if direction == "input" else "completion"
                raise Refused(f"{check}_{direction}", f"the {where} contains {what} ({len(spans)} found)")
            if action == "redact":
                redact.extend(spans)
        return _replace(text, redact)

    def output_filter(self, hits: Hits) -> "OutputFilter":
        return OutputFilter(self, hits)


def _replace(text: str, spans: list[Span]) -> str:
    pieces, position = [], 0
    for span in sorted(spans):
        if span.start < position:
            continue
        pieces += [text[position:span.start], f"<{span.entity}>"]
        position = span.end
    return "".join(pieces) + text[position:]


class OutputFilter:
    """Checks a streamed completion as it grows; `feed` returns what may be sent now."""

    def __init__(self, guard: Guard, hits: Hits):
        self.guard, self.hits = guard, hits
        acting = {guard.config.pii_output, guard.config.blocklist_output} & {"redact", "block"}
        self.hold = guard.config.stream_holdback_chars if acting else 0
        self.flagged = False  # the classifier already counted this completion
        self.text = ""
        self.sent = 0  # characters of self.text already passed on
        self.counted: set[tuple[str, int, int]] = set()

    def _release(self, upto: int) -> str:
        found = self.guard._spans(self.text, "output")
        # Never cut through a match: the boundary moves back to its start.
        for _check, _action, spans in found:
            for span in spans:
                if span.start < upto < span.end:
                    upto = span.start
        redact = []
        for check, action, spans in found:
            for span in spans:
                if span.end > upto or span.start < self.sent:
                    continue
                if (check, span.start, span.end) not in self.counted:
                    self.counted.add((check, span.start, span.end))
                    self.hits.add(check, "output", action, 1)
                if action == "block":
                    self.sent = len(self.text)
                    raise Refused(f"{check}_output", "the completion was stopped by the output guard")
                if action == "redact":
                    redact.append(Span(span.start - self.sent, span.end - self.sent, span.entity))
        if upto <= self.sent:
            return ""
        # The classifier judges all that will have left (0.1 ms a call, beside 40+ ms a token).
        judged = Hits()
        try:
            self.guard._offensive(self.text[:upto], "output", judged)
        finally:
            if judged.counts and not self.flagged:  # counted once per completion
                self.flagged = True
                self.hits.counts.update(judged.counts)
        piece = _replace(self.text[self.sent:upto], redact)
        self.sent = upto
        return piece

    def feed(self, delta: str) -> str:
        self.text += delta
        return self._release(len(self.text) - self.hold)

    def finish(self) -> str:
        return self._release(len(self.text))
