"""Curation of mail, forum, web, chat and ticket text, measured on the labelled set
(benchmarks/curation_set, frozen before the structure steps were tuned).

For each shape, ingest's reader and the clean stage's processor run over every document, once with
the shape's domain preset and once with `books` (the clean stage as it was tuned on books and
Wikipedia: the baseline). Reported per shape and preset:

- good dropped: share of the documents a reader would keep (label keep=true) that clean dropped,
  and of those, dropped as the wrong language (targets: <= 3% in all, <= 1% as language);
- bad kept: share of the not-English or junk documents clean kept (lower is better);
- lines left: of the labelled header, quote, attribution, signature, disclaimer and boilerplate
  lines of the good documents kept, the share still in the output (target <= 2%);
- body lost: of their body lines, the share missing from the output;
- docs/s: reading and cleaning, median of --repeats runs, one process.

Documents are split in two halves by a hash of their id: `dev` (the steps were tuned looking at its
failures only) and `test` (never looked at); both are reported.

    .venv/bin/python benchmarks/structure_bench.py [--json out.json] [--repeats 3] [--show dev]
"""

from __future__ import annotations

import argparse
import hashlib
import json
import statistics
import sys
import time
from collections import Counter
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

SET = REPO / "benchmarks" / "curation_set"
# shape: (inputs under SET, ingest settings, the domain preset)
SHAPES = {
    "mail": (["mail/archive.mbox", "mail/eml"], {}, "mail"),
    "forum": (["forum.jsonl"], {}, "forum"),
    "web": (["web"], {}, "web"),
    "chat": (["chat.json"], {"chat": {"turn_format": "{text}"}}, "chat"),
    "ticket": (["tickets.csv"], {"text_field": "body"}, "mail"),
}
REMOVE = {"header", "quote", "attribution", "signature", "disclaimer", "boilerplate"}
KEEP = {"body", "speaker"}


def norm(text: str) -> str:
    return " ".join(text.split())


def half(doc_id: str) -> str:
    return "dev" if hashlib.sha256(doc_id.encode()).digest()[0] % 2 == 0 else "test"


def read_shape(shape: str) -> list[dict]:
    from data.config import IngestConfig
    from data.ingest import to_record
    from data.records import list_sources, read_source

    paths, settings, _ = SHAPES[shape]
    config = IngestConfig(paths=[str(SET / p) for p in paths], **settings)
    records = []
    for raw in config.paths:
        for source in list_sources(raw, REPO):
            for line in read_source(source, config):
                assert line.record is not None, (source.name, line.problem)
                records.append(to_record(line.record, config))
    return records


def clean(records: list[dict], preset: str) -> dict[str, dict | str]:
    from data.clean import Cleaner
    from data.config import CleanConfig

    cleaner = Cleaner(CleanConfig(preset=preset))
    return {r["id"]: cleaner.process(r) for r in records}


def score(labels: list[dict], outcome: dict[str, dict | str], shape: str) -> dict:
    good = [d for d in labels if d["keep"]]
    bad = [d for d in labels if not d["keep"]]
    dropped = [d for d in good if isinstance(outcome[d["id"]], str)]
    removable = left = body = lost = 0
    for doc in good:
        out = outcome[doc["id"]]
        if isinstance(out, str):
            continue
        text = out["text"]
        flat = norm(text)
        lines = Counter(norm(line) for line in text.split("\n") if line.strip())
        kept_labels = Counter(norm(line["text"]) for line in doc["lines"] if line["label"] in KEEP)
        remove_labels = Counter(norm(line["text"]) for line in doc["lines"] if line["label"] in REMOVE)
        for line_text, count in remove_labels.items():
            removable += count
            # A line that is both body and signature ("Thanks,") counts as left only past the
            # copies the body keeps.
            left += min(count, max(0, lines[line_text] - kept_labels[line_text]))
        for line in doc["lines"]:
            if line["label"] == "body":
                body += 1
                lost += norm(line["text"]) not in flat
    reasons = Counter(outcome[d["id"]] for d in dropped)
    return {
        "docs": len(labels), "good": len(good), "bad": len(bad),
        "good_dropped": len(dropped) / max(len(good), 1),
        "good_dropped_language": reasons.get("language", 0) / max(len(good), 1),
        "good_dropped_reasons": dict(reasons),
        "bad_kept": sum(not isinstance(outcome[d["id"]], str) for d in bad) / max(len(bad), 1),
        "lines_left": left / max(removable, 1), "removable_lines": removable,
        "body_lost": lost / max(body, 1), "body_lines": body,
    }


def show_failures(labels: list[dict], outcome: dict, limit: int = 60) -> None:
    """What a tuner may look at: the dev half's dropped good documents and lines left."""
    shown = 0
    for doc in labels:
        out = outcome[doc["id"]]
        if not doc["keep"] and not isinstance(out, str):
            print(f"  KEPT BAD {doc['id']} ({doc['reason']}): {norm(out['text'])[:160]}")
            shown += 1
        elif doc["keep"] and isinstance(out, str):
            print(f"  DROPPED {doc['id']} as {out}: {norm(' '.join(l['text'] for l in doc['lines']))[:200]}")
            shown += 1
        elif doc["keep"]:
            lines = {norm(line) for line in out["text"].split("\n")}
            body = {norm(line["text"]) for line in doc["lines"] if line["label"] in KEEP}
            flat = norm(out["text"])
            for line in doc["lines"]:
                if line["label"] in REMOVE and norm(line["text"]) in lines and norm(line["text"]) not in body:
                    print(f"  LEFT {doc['id']} [{line['label']}] {line['text'][:150]}")
                    shown += 1
                elif line["label"] == "body" and norm(line["text"]) not in flat:
                    print(f"  LOST {doc['id']} [body] {line['text'][:150]}")
                    shown += 1
        if shown >= limit:
            return


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--json", type=Path)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--show", choices=["dev"], help="print the dev half's failures (tuning looks at these only)")
    parser.add_argument("--shapes", nargs="*", default=list(SHAPES))
    args = parser.parse_args()

    all_labels = [json.loads(line) for line in (SET / "labels.jsonl").read_text().splitlines()]
    results = {}
    for shape in args.shapes:
        labels = [d for d in all_labels if d["shape"] == shape]
        for preset in (SHAPES[shape][2], "books"):
            seconds, outcome = [], {}
            for _ in range(args.repeats):
                started = time.perf_counter()
                outcome = clean(read_shape(shape), preset)
                seconds.append(time.perf_counter() - started)
            row = {part: score([d for d in labels if half(d["id"]) == part], outcome, shape) for part in ("dev", "test")}
            row["all"] = score(labels, outcome, shape)
            row["docs_per_s"] = len(labels) / statistics.median(seconds)
            results[f"{shape}/{preset}"] = row
            if args.show == "dev" and preset != "books":
                print(f"--- {shape}/{preset} (dev half)")
                show_failures([d for d in labels if half(d["id"]) == "dev"], outcome)

    print("| shape | preset | half | good dropped | of which language | bad kept | lines left | body lost | docs/s |")
    print("|---|---|---|---:|---:|---:|---:|---:|---:|")
    for key, row in results.items():
        shape, preset = key.split("/")
        for part in ("dev", "test", "all"):
            r = row[part]
            speed = f"{row['docs_per_s']:,.0f}" if part == "all" else ""
            print(f"| {shape} | {preset} | {part} | {r['good_dropped']:.1%} | {r['good_dropped_language']:.1%} | "
                  f"{r['bad_kept']:.1%} | {r['lines_left']:.1%} | {r['body_lost']:.1%} | {speed} |")
    if args.json:
        args.json.write_text(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
