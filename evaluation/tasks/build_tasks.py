"""Build the task sets of evaluation/tasks from held-out text (run once, by hand; output committed).

    python evaluation/tasks/build_tasks.py /work/shared/corpora

Held out of the training corpus (data/corpus/demo.jsonl.gz, tests/fixtures/tiny.jsonl): Austen's
Emma, Sense and Sensibility, Mansfield Park and Northanger Abbey (training has the other two
novels) and the Brown texts whose ids are not in demo.jsonl.gz. Writes:

- conveyor_cloze.jsonl: LAMBADA-style passages of 40-120 words, one paragraph's consecutive
  sentences, whose final word (a content word of 3+ letters that also occurs earlier in the
  passage) is to be predicted. `context` stops before the space that precedes it.
- conveyor_nextsentence.jsonl: HellaSwag-style: 2-3 consecutive sentences, then 4 choices, the
  true next sentence and 3 sentences of similar length (within 30% characters) from other
  documents of the same novel (Austen) or of Brown.
- reference.txt: ~40,000 characters of held-out prose (Northanger Abbey chapters 1-3 and a held-out
  Brown text) for bits-per-byte; those documents are used by neither task.

Everything is seeded: the same corpora give the same bytes on every run. An item (its context
followed by its answer) or a reference paragraph sharing any 13-word sequence with the training
corpus is dropped (lm-eval's decontamination uses 13-grams too).
"""

from __future__ import annotations

import argparse
import bisect
import gzip
import json
import random
import re
from itertools import islice
from pathlib import Path

TASK_DIR = Path(__file__).resolve().parent
REPO_ROOT = TASK_DIR.parents[1]
TRAINING_FILES = (REPO_ROOT / "data/corpus/demo.jsonl.gz", REPO_ROOT / "tests/fixtures/tiny.jsonl")
SEED = 20261203
AUSTEN_HELD_OUT = ("austen/emma", "austen/sense_and_sensibility", "austen/mansfield_park",
                   "austen/northanger_abbey")
REFERENCE_AUSTEN = ("austen/northanger_abbey/001", "austen/northanger_abbey/002", "austen/northanger_abbey/003")
REFERENCE_CHARS = 40_000
ITEMS_PER_FAMILY = 500  # per task: 500 Austen + 500 Brown
CLOZE_WORDS = (40, 120)
SENTENCE_CHARS = (30, 220)  # next-sentence answers and distractors
LENGTH_TOLERANCE = 0.3
CONTEXT_MAX_CHARS = 600
NGRAM = 13

ABBREVIATION = re.compile(r"(?:\b(?:Mr|Mrs|Messrs|Ms|Dr|St|Jr|Sr|Capt|Col|Gen|Gov|Lt|Rev|Prof|Mt|Sen|Rep|No|Co|Inc|vs)"
                          r"|\b[A-HJ-Z])\.$")
SENTENCE_END = re.compile(r"[.!?][\"')\]]*\s+(?=[\"'(\[]*[A-Z0-9])")
FINAL_WORD = re.compile(r"\s([A-Za-z]{3,})[.!?][\"')\]]*$")
# Final words guessable from the last few words alone; LAMBADA's point is the broad context.
STOPWORDS = frozenset("""
    all and any are but can did does for had has have her hers herself him himself his its itself
    may more much myself not now off one our ours out own she than that the their them themselves
    then there they this too very was well were what which who why with yet you your yours
    yourself also again ever here once only some such""".split())


def normalise(text: str) -> str:
    """One paragraph as a single line: line wrapping and runs of spaces become one space."""
    return " ".join(text.replace("_", "").split())


def paragraphs(text: str) -> list[str]:
    return [p for p in (normalise(block) for block in re.split(r"\n\s*\n", text)) if p]


def split_sentences(paragraph: str) -> list[str]:
    """Split at . ! ? (and closing quotes) followed by a capital, except after Mr./Mrs./initials."""
    sentences, start = [], 0
    for match in SENTENCE_END.finditer(paragraph):
        if ABBREVIATION.search(paragraph, 0, match.start() + 1):
            continue
        sentences.append(paragraph[start:match.end()].strip())
        start = match.end()
    sentences.append(paragraph[start:].strip())
    return [s for s in sentences if s]


def ngrams(text: str) -> set[int]:
    """Hashes of the text's 13-word sequences (lowercase words of letters and digits)."""
    words = re.findall(r"[a-z0-9]+", text.lower())
    return {hash(tuple(words[i:i + NGRAM])) for i in range(len(words) - NGRAM + 1)}


def training_ngrams(paths: tuple[Path, ...] = TRAINING_FILES) -> set[int]:
    """The `ngrams` of every training document (computed per document: none spans two)."""
    index: set[int] = set()
    for path in paths:
        for document in load_jsonl(path):
            index |= ngrams(document["text"])
    return index


def load_jsonl(path: Path) -> list[dict]:
    """Records of a .jsonl or .jsonl.gz file; lines that are not JSON objects with text are skipped."""
    opener = gzip.open if path.suffix == ".gz" else open
    records = []
    with opener(path, "rt", encoding="utf-8") as lines:
        for line in lines:
            try:
                record = json.loads(line)
            except json.JSONDecodeError:
                continue
            if isinstance(record, dict) and isinstance(record.get("text"), str):
                records.append(record)
    return records


def family(document: dict) -> str:
    """Distractors come from the same family: the same Austen novel, or any Brown text."""
    return document["source"] if document["source"].startswith("austen/") else "brown"


def cloze_items(document: dict) -> list[dict]:
    """Non-overlapping passages of each paragraph whose final word also occurs earlier in it."""
    items = []
    for p_index, paragraph in enumerate(paragraphs(document["text"])):
        sentences = split_sentences(paragraph)
        start = 0
        while start < len(sentences):
            item = None
            for end in range(start + 1, len(sentences) + 1):
                passage = " ".join(sentences[start:end])
                words = len(passage.split())
                if words > CLOZE_WORDS[1]:
                    break
                match = FINAL_WORD.search(passage)
                if words >= CLOZE_WORDS[0] and match and match.group(1).lower() not in STOPWORDS:
                    context = passage[:match.start()]
                    if re.search(rf"\b{match.group(1)}\b", context):
                        item = {"id": f"{document['id']}:{p_index}:{start}", "source": document["source"],
                                "context": context, "target": match.group(1)}
                        break
            if item is None:
                start += 1
            else:
                items.append(item)
                start = end
    return items


def nextsentence_candidates(document: dict, rng: random.Random) -> list[dict]:
    """At most one (context, answer) per paragraph: 2-3 sentences and the sentence after them."""
    candidates = []
    for p_index, paragraph in enumerate(paragraphs(document["text"])):
        sentences = split_sentences(paragraph)
        spots = [(i, k) for i in range(2, len(sentences)) for k in (2, 3) if i - k >= 0
                 and SENTENCE_CHARS[0] <= len(sentences[i]) <= SENTENCE_CHARS[1]
                 and len(" ".join(sentences[i - k:i])) <= CONTEXT_MAX_CHARS]
        if spots:
            i, k = rng.choice(spots)
            candidates.append({"id": f"{document['id']}:{p_index}:{i}", "source": document["source"],
                               "doc": document["id"], "family": family(document),
                               "context": " ".join(sentences[i - k:i]), "answer": sentences[i]})
    return candidates


def sentence_pools(documents: list[dict]) -> dict[str, list[tuple[int, str, str]]]:
    """family -> (length, sentence, document id) sorted, for distractors of a given length."""
    pools: dict[str, set] = {}
    for document in documents:
        for paragraph in paragraphs(document["text"]):
            for sentence in split_sentences(paragraph):
                if SENTENCE_CHARS[0] <= len(sentence) <= SENTENCE_CHARS[1]:
                    pools.setdefault(family(document), set()).add((len(sentence), sentence, document["id"]))
    return {name: sorted(pool) for name, pool in pools.items()}


def with_distractors(candidate: dict, pool: list[tuple[int, str, str]], rng: random.Random) -> dict | None:
    """The item: the answer and 3 pool sentences of other documents within 30% of its length, shuffled."""
    answer = candidate["answer"]
    low = bisect.bisect_left(pool, (int(len(answer) * (1 - LENGTH_TOLERANCE)),))
    high = bisect.bisect_right(pool, (int(len(answer) * (1 + LENGTH_TOLERANCE)) + 1,))
    others = sorted({s for _, s, doc in pool[low:high] if doc != candidate["doc"] and s != answer})
    if len(others) < 3:
        return None
    choices = rng.sample(others, 3) + [answer]
    rng.shuffle(choices)
    return {"id": candidate["id"], "source": candidate["source"], "context": candidate["context"],
            "choices": choices, "label": choices.index(answer)}


def reference_text(documents: list[dict], rng: random.Random, unseen,
                   chars: int = REFERENCE_CHARS) -> tuple[str, set[str]]:
    """Northanger Abbey chapters 1-3, then held-out Brown texts in a seeded order, paragraph by
    paragraph up to `chars`. Returns the text and the ids of the documents it used."""
    austen = [d for d in documents if d["id"] in REFERENCE_AUSTEN]
    brown = [d for d in documents if d["source"].startswith("brown/")]
    kept, used = [], set()
    for document in austen + rng.sample(brown, len(brown)):
        used.add(document["id"])
        for paragraph in filter(unseen, paragraphs(document["text"])):
            if len("\n\n".join(kept + [paragraph])) > chars:
                return "\n\n".join(kept) + "\n", used
            kept.append(paragraph)
    return "\n\n".join(kept) + "\n", used


def build(documents: list[dict], training: set[int] = frozenset(), items_per_family: int = ITEMS_PER_FAMILY,
          reference_chars: int = REFERENCE_CHARS) -> tuple[list[dict], list[dict], str]:
    """(cloze items, next-sentence items, reference text) from held-out documents, deterministic;
    `training` is the training corpus's `ngrams`."""
    def unseen(text: str) -> bool:
        return training.isdisjoint(ngrams(text))

    rng = random.Random(SEED)
    reference, reserved = reference_text(documents, rng, unseen, reference_chars)
    documents = [d for d in documents if d["id"] not in reserved]

    cloze, nextsentence = [], []
    pools = sentence_pools(documents)
    for name in ("austen", "brown"):
        members = [d for d in documents if family(d).startswith(name)]
        items = [item for d in members for item in cloze_items(d)]
        # Candidates in a seeded order, checked against the training text only until enough pass.
        shuffled = rng.sample(items, len(items))
        cloze += list(islice((item for item in shuffled if unseen(f"{item['context']} {item['target']}")),
                             items_per_family))
        candidates = [c for d in members for c in nextsentence_candidates(d, rng)]
        picked = []
        for candidate in rng.sample(candidates, len(candidates)):
            if len(picked) == items_per_family:
                break
            if unseen(f"{candidate['context']} {candidate['answer']}"):
                item = with_distractors(candidate, pools[candidate["family"]], rng)
                picked += [item] if item is not None else []
        nextsentence += picked
    rng.shuffle(cloze)
    rng.shuffle(nextsentence)
    return cloze, nextsentence, reference


def held_out_documents(corpora: Path, training_ids: set[str]) -> list[dict]:
    austen = [d for d in load_jsonl(corpora / "austen.jsonl.gz") if d["source"] in AUSTEN_HELD_OUT]
    brown = [d for d in load_jsonl(corpora / "brown.jsonl.gz") if d["id"] not in training_ids]
    return austen + brown


def write_jsonl(path: Path, items: list[dict]) -> None:
    path.write_text("".join(json.dumps(item, ensure_ascii=False) + "\n" for item in items), encoding="utf-8")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("corpora", type=Path, help="the shared corpora folder (austen.jsonl.gz, brown.jsonl.gz)")
    parser.add_argument("--output", type=Path, default=TASK_DIR, help="where the task files go")
    args = parser.parse_args()

    training_ids = {d.get("id") for path in TRAINING_FILES for d in load_jsonl(path)}
    documents = held_out_documents(args.corpora, training_ids)
    cloze, nextsentence, reference = build(documents, training_ngrams())

    args.output.mkdir(parents=True, exist_ok=True)
    write_jsonl(args.output / "conveyor_cloze.jsonl", cloze)
    write_jsonl(args.output / "conveyor_nextsentence.jsonl", nextsentence)
    (args.output / "reference.txt").write_text(reference, encoding="utf-8")
    for name in ("conveyor_cloze.jsonl", "conveyor_nextsentence.jsonl", "reference.txt"):
        print(f"{args.output / name}: {(args.output / name).stat().st_size / 1e3:.0f} kB")
    print(f"{len(cloze)} cloze, {len(nextsentence)} next-sentence items, {len(reference)} reference chars "
          f"from {len(documents)} held-out documents")


if __name__ == "__main__":
    main()
