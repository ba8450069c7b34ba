"""What the clean stage threw away, for a person to read before trusting a rule: per rule the count,
the share, and examples, as an HTML page beside the output (`<output>.report.html`) and as log lines.

Two kinds of rule: a filter that dropped whole documents (its reason: `language`,
`gopher_word_count`, ...; examples from `<output>.dropped-samples.jsonl`), and a structure step or
line rule that removed lines from documents it kept (`quotes`, `signatures`, `boilerplate`, ...;
examples from `<output>.removed-samples.jsonl`). The sample files beside the output hold the text as
it was, like the output itself; the report and the log show the examples with their personal data
redacted (every entity type the anonymize stage knows, NER on), because a report gets shared and a
log gets shipped.
"""

from __future__ import annotations

import html
import json
import logging
from pathlib import Path

from core.atomic import atomic_write_text, beside
from core.stats import StageStats

logger = logging.getLogger(__name__)
EXAMPLE_CHARS = 400
LOG_EXAMPLE_CHARS = 120


def report_path(output_dir: Path) -> Path:
    return beside(output_dir, ".report.html")


def _read_samples(path: Path) -> dict[str, list[str]]:
    examples: dict[str, list[str]] = {}
    if not path.is_file():
        return examples
    for line in path.read_text(encoding="utf-8").splitlines():
        item = json.loads(line)
        record = item["record"]
        text = record.get("removed") if "removed" in record else record.get("text", "")
        examples.setdefault(item["reason"], []).append(str(text)[:EXAMPLE_CHARS])
    return examples


def redactor():
    """Text -> text with every kind of personal data the anonymize stage finds replaced by its type."""
    from data.anonymize import redact, replace_spans
    from data.pii import ENTITIES, PiiDetector

    detector = PiiDetector(list(ENTITIES), ner=True)
    return lambda text: replace_spans(text, detector.find(text), redact)


def rules(stats: StageStats, line_steps: list[str]) -> list[dict]:
    """One row per rule that fired: name, kind, count and share (of the documents read, or of the
    documents a line rule touched)."""
    rows = [{"rule": reason, "kind": "dropped documents", "count": count,
             "share": count / max(stats.records_in, 1)} for reason, count in sorted(stats.dropped.items())]
    for step in line_steps:
        lines = stats.extra.get(f"{step}_lines", 0)
        if lines:
            docs = stats.extra.get(f"{step}_docs", 0)
            rows.append({"rule": step, "kind": "removed lines", "count": lines, "docs": docs,
                         "share": docs / max(stats.records_in, 1)})
    return rows


def write_report(stats: StageStats, output_dir: Path, line_steps: list[str]) -> Path:
    """Write the HTML report beside `output_dir` and log one line per rule; returns the report's path."""
    from data.shards import samples_path

    examples = {**_read_samples(samples_path(output_dir, "dropped")),
                **_read_samples(samples_path(output_dir, "removed"))}
    rows = rules(stats, line_steps)
    redact = redactor() if any(examples.get(row["rule"]) for row in rows) else str
    body = []
    for row in rows:
        shown = [redact(text) for text in examples.get(row["rule"], [])]
        what = (f"{row['count']:,} documents" if row["kind"] == "dropped documents"
                else f"{row['count']:,} lines from {row['docs']:,} documents")
        logger.info("%s: %s %s (%.1f%% of %s read)%s", stats.stage, row["rule"], what, 100 * row["share"],
                    f"{stats.records_in:,}", f", e.g. {shown[0][:LOG_EXAMPLE_CHARS]!r}" if shown else "")
        cells = "".join(f"<pre>{html.escape(text)}</pre>" for text in shown) or "<em>no example kept</em>"
        body.append(f"<tr><td><code>{html.escape(row['rule'])}</code></td><td>{row['kind']}</td>"
                    f"<td>{what}</td><td>{100 * row['share']:.1f}%</td><td>{cells}</td></tr>")
    page = f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>{html.escape(stats.stage)}: what each rule removed</title>
<style>body{{font-family:sans-serif;margin:2em}} table{{border-collapse:collapse}}
td,th{{border:1px solid #ccc;padding:.4em;vertical-align:top}} pre{{white-space:pre-wrap;max-width:60em;margin:0 0 .5em}}</style>
</head><body>
<h1>{html.escape(stats.stage)}: what each rule removed</h1>
<p>{stats.records_in:,} documents read, {stats.records_out:,} kept. Examples have their personal data
replaced by its type; the samples beside the output (<code>*.dropped-samples.jsonl</code>,
<code>*.removed-samples.jsonl</code>) hold them as they were.</p>
<table><tr><th>rule</th><th>kind</th><th>count</th><th>share of documents</th><th>examples</th></tr>
{''.join(body) or '<tr><td colspan="5">no rule removed anything</td></tr>'}
</table></body></html>
"""
    path = report_path(output_dir)
    atomic_write_text(path, page)
    logger.info("%s: report of what each rule removed: %s", stats.stage, path)
    return path
