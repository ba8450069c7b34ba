"""Train the PII detectors' record gate (data/pii_scorer.py) on the hand-annotated sets and
generated records, and say what it does to sets it was not trained on.

    python -m benchmarks.train_pii_scorer                   # leave-sets-out table, then write the weights
    python -m benchmarks.train_pii_scorer --exclude heldout56,heldout57 --no-write

Each span the rules find (data/pii.py, the gate off) is an example: someone's data where it covers
a hand-annotated value, else not. A logistic regression (scikit-learn) learns that from the
features of data/pii_scorer.py. Before the weights are written, the sets are split into folds of
four consecutive sets; each fold is scored by a model trained on the others, and the table gives,
pooled over the folds and per gate threshold, the PII-free records changed and the recall kept:
the gate's effect on sets its model did not see (the rules themselves were tuned on all of them,
so the first runs of new sets are the fuller test; see benchmarks/README.md).

The features name English words, titles and kinds of words, never a value (data.pii_scorer's
context_word), and only those seen in at least MIN_SETS sets are kept. About two and a half
minutes on 2 cores, most of it the detectors (`--spans FILE` keeps their output between runs).
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import pickle
from collections import defaultdict
from pathlib import Path

from benchmarks.bench_pii import STRUCTURED
from benchmarks.bench_pii_handwritten import SETS, Doc, load
from data.pii_generator.generate import generate
from data import pii_scorer

C = 0.3  # inverse L2 strength: leave-sets-out, 0.3 kept as much recall as 1 and 3 and changed fewer records
MIN_SETS = 3
FOLD = 4
THRESHOLDS = (0.0, 0.8, 0.85, 0.9, 0.93, 0.95, 0.97)
GENERATED_SEED = 7  # (the generated benchmark's is 1234)


def overlap(a, b) -> int:
    return max(0, min(a[1], b[1]) - max(a[0], b[0]))


def detect(names: list[str], generated: int) -> list[tuple]:
    """(set, doc, spans found with the gate off) for every document of the sets, and of `generated`
    documents of data.pii_generator (another seed than the benchmark's: its sentences about people,
    short and in templates, are a kind of text the hand-written sets hold little of)."""
    from data.pii import ENTITIES, PiiDetector
    detector = PiiDetector(ENTITIES, record_threshold=0)
    rows = []
    for name in names:
        docs = load(name)
        for doc, spans in zip(docs, detector.find_many([doc.text for doc in docs])):
            rows.append((name, doc, [tuple(span) for span in spans]))
    if generated:
        # (an organisation's name is no one's data; a street address is, as LOCATION)
        docs = [Doc(f"generated-{index}", "generated", doc.text, [span for span in doc.spans if span[2] != "ORGANIZATION"])
                for index, doc in enumerate(generate(generated, seed=GENERATED_SEED))]
        for doc, spans in zip(docs, detector.find_many([doc.text for doc in docs])):
            rows.append(("generated", doc, [tuple(span) for span in spans]))
    return rows


def examples(rows) -> tuple[list[dict], list[int], list[int]]:
    """Features, labels, and the row each example comes from."""
    features, labels, origin = [], [], []
    for index, (_, doc, spans) in enumerate(rows):
        scored = [span for span in spans if span[2] in pii_scorer.SCORED]
        features += pii_scorer.features(doc.text, spans)
        labels += [int(any(2 * overlap(span, gold) >= span[1] - span[0] for gold in doc.spans)) for span in scored]
        origin += [index] * len(scored)
    return features, labels, origin


def fit(rows, features: list[dict], labels: list[int], origin: list[int]):
    """The vectorizer and the model, on the features seen in at least MIN_SETS sets."""
    from sklearn.feature_extraction import DictVectorizer
    from sklearn.linear_model import LogisticRegression
    seen = defaultdict(set)
    for vector, index in zip(features, origin):
        for feature in vector:
            seen[feature].add(rows[index][0])
    common = {feature for feature, sets in seen.items() if len(sets) >= MIN_SETS}
    features = [{k: v for k, v in vector.items() if k in common} for vector in features]
    vectorizer = DictVectorizer()
    model = LogisticRegression(C=C, max_iter=5000).fit(vectorizer.fit_transform(features), labels)
    return vectorizer, model


def gate(rows, origin, probabilities, threshold: float) -> list[list[tuple]]:
    """Each row's spans after the record gate (data.pii_scorer.gate, with these probabilities)."""
    scores = defaultdict(list)
    for index, probability in zip(origin, probabilities):
        scores[index].append(probability)
    return [pii_scorer.gate(doc.text, spans, scores[index], threshold) for index, (_, doc, spans) in enumerate(rows)]


def tally(rows, kept, into: dict) -> None:
    for (_, doc, _), spans in zip(rows, kept):
        if not doc.spans:
            into["free"] += 1
            into["changed"] += bool(spans)
        for gold in doc.spans:
            hit = any(span[2] == gold[2] and 2 * overlap(span, gold) >= gold[1] - gold[0] for span in spans)
            kind = "structured" if gold[2] in STRUCTURED + ("URL_CREDENTIALS",) else gold[2]
            into[f"{kind}_gold"] += 1
            into[f"{kind}_found"] += hit


def cross_validate(rows, names: list[str]) -> dict[float, dict]:
    totals = {threshold: defaultdict(int) for threshold in THRESHOLDS}
    for first in range(0, len(names), FOLD):
        held = set(names[first:first + FOLD])
        train = [row for row in rows if row[0] not in held]  # (the generated documents always)
        test = [row for row in rows if row[0] in held]
        vectorizer, model = fit(train, *examples(train))
        features, _, origin = examples(test)
        probabilities = model.predict_proba(vectorizer.transform(features))[:, 1]
        for threshold in THRESHOLDS:
            tally(test, gate(test, origin, probabilities, threshold), totals[threshold])
    return totals


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--exclude", default="", help="comma-separated sets to leave out (to test on them later)")
    parser.add_argument("--no-write", action="store_true", help="print the table only")
    parser.add_argument("--generated", type=int, default=2000, help="generated documents to train on too")
    parser.add_argument("--spans", help="a file keeping the detectors' spans between runs that change only the "
                                        "features (delete it after changing the detectors)")
    args = parser.parse_args()
    excluded = {name for name in args.exclude.split(",") if name}
    names = [name for name in SETS if name not in excluded]
    if args.spans and Path(args.spans).exists():  # the detectors' spans of an earlier run
        rows = [row for row in pickle.loads(Path(args.spans).read_bytes()) if row[0] in names
                or (row[0] == "generated" and int(row[1].id.split("-")[1]) < args.generated)]
    else:
        with contextlib.redirect_stdout(io.StringIO()):
            rows = detect(names, args.generated)
        if args.spans:
            Path(args.spans).write_bytes(pickle.dumps(rows))
    print(f"{len(rows)} documents of {len(names)} sets; folds of {FOLD} sets, each scored by a model of the others")
    print(f"{'threshold':>9}  {'PII-free changed':>18}  {'structured recall':>18}  {'PERSON recall':>14}")
    for threshold, t in cross_validate(rows, names).items():
        print(f"{threshold:>9}  {t['changed']:>5}/{t['free']:<5} {t['changed'] / t['free']:.3f}  "
              f"{t['structured_found']:>5}/{t['structured_gold']:<5} {t['structured_found'] / t['structured_gold']:.4f}  "
              f"{t['PERSON_found'] / t['PERSON_gold']:.4f}" + ("  (the gate off)" if threshold == 0 else ""))
    features, labels, origin = examples(rows)
    vectorizer, model = fit(rows, features, labels, origin)
    weights = {feature: round(float(weight), 4) for feature, weight in zip(vectorizer.feature_names_, model.coef_[0])
               if abs(weight) >= 1e-3}
    if args.no_write:
        return
    pii_scorer.WEIGHTS.write_text(json.dumps({
        "feature_version": pii_scorer.FEATURE_VERSION, "C": C, "min_sets": MIN_SETS,
        "trained_on": names, "generated": args.generated, "examples": len(labels), "bias": round(float(model.intercept_[0]), 4),
        "weights": dict(sorted(weights.items()))}, indent=0) + "\n", encoding="utf-8")
    print(f"wrote {pii_scorer.WEIGHTS}: {len(weights)} features, {len(labels)} spans")


if __name__ == "__main__":
    main()
