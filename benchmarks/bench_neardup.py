"""Near-duplicate dedup against datasketch.MinHashLSH, on a labelled set built from the demo corpus.

    .venv/bin/python benchmarks/bench_neardup.py [--quick]      (or through benchmarks/data_bench.py)

The set: 300-word chunks of the demo corpus's long documents (Austen, Moby-Dick, Brown,
Wikipedia); 40% of the documents are variants of another chunk with words substituted, deleted
or inserted at a known rate (EDIT_RATES, one variant per original). All documents are shuffled.

A pair of documents is a true duplicate when the Jaccard similarity of their word 5-gram sets
is >= the threshold (0.8). That is computed exactly for every (original, variant) pair and for
every pair a method predicts, so a false match between unrelated chunks is counted too.
A method predicts a pair when both documents end up in the same cluster: our stage's clusters,
and for the reference the connected components of MinHashLSH candidates whose MinHash Jaccard
estimate is >= the threshold (the same verification our stage does). Both use the same word
5-grams, 128 permutations and threshold.

Speed: our docs/s is the whole stage (`data.dedup.run`: read shards, exact + near dedup, write
shards) with 1 and 2 workers; the reference's is signatures + LSH insert + query + verification
over texts already in memory (no file I/O), so the ratio understates ours.
"""

from __future__ import annotations

import gzip
import json
import random
import shutil
import sys
import tempfile
import time
from itertools import combinations
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from data import dedup  # noqa: E402
from data.config import DedupConfig  # noqa: E402
from data.minhash import words  # noqa: E402
from data.shards import list_parts, write_parts  # noqa: E402

CORPUS = REPO / "data" / "corpus" / "demo.jsonl.gz"
CHUNK_WORDS = 300
VARIANT_SHARE = 0.4
EDIT_RATES = (0.01, 0.02, 0.03, 0.05, 0.10, 0.20, 0.30)
CONFIG = DedupConfig()  # 5-word shingles, 128 permutations = 16 bands x 8 rows, threshold 0.8
SEED = 0


def corpus_chunks() -> list[str]:
    chunks = []
    with gzip.open(CORPUS, "rt", encoding="utf-8") as handle:
        for line in handle:
            try:
                text = json.loads(line).get("text")
            except json.JSONDecodeError:
                continue  # the corpus carries a few deliberately bad lines for ingest
            tokens = text.split() if isinstance(text, str) else []
            chunks += [" ".join(tokens[i:i + CHUNK_WORDS]) for i in range(0, len(tokens) - CHUNK_WORDS + 1, CHUNK_WORDS)]
    return chunks


def variant(text: str, rate: float, vocabulary: list[str], rng: random.Random) -> str:
    """Each word, with probability `rate`, is substituted, deleted, or gets a word inserted after it."""
    out = []
    for token in text.split():
        if rng.random() >= rate:
            out.append(token)
            continue
        edit = rng.choice(("substitute", "delete", "insert"))
        if edit == "substitute":
            out.append(rng.choice(vocabulary))
        elif edit == "insert":
            out += [token, rng.choice(vocabulary)]
    return " ".join(out)


def labelled_set(num_docs: int) -> tuple[list[dict], list[tuple[str, str, float]]]:
    """(records in shuffled order, [(original id, variant id, edit rate)])."""
    rng = random.Random(SEED)
    chunks = corpus_chunks()
    num_variants = int(num_docs * VARIANT_SHARE)
    originals = rng.sample(chunks, num_docs - num_variants)
    vocabulary = sorted({token for chunk in originals for token in chunk.split()})
    records = [{"id": f"o{i}", "text": text} for i, text in enumerate(originals)]
    families = []
    for i, source in enumerate(rng.sample(range(len(originals)), num_variants)):
        rate = EDIT_RATES[i % len(EDIT_RATES)]
        records.append({"id": f"v{i}", "text": variant(originals[source], rate, vocabulary, rng)})
        families.append((f"o{source}", f"v{i}", rate))
    rng.shuffle(records)
    return records, families


def shingles(text: str) -> set[str]:
    tokens = words(text, CONFIG.lowercase)
    width = CONFIG.shingle_words
    return {" ".join(tokens[i:i + width]) for i in range(max(len(tokens) - width + 1, 1))} if tokens else set()


def jaccard(left: set, right: set) -> float:
    return len(left & right) / len(left | right) if left or right else 1.0


def cluster_pairs(labels: list[int], ids: list[str]) -> set[tuple[str, str]]:
    """Every pair of documents sharing a cluster label, as sorted id pairs."""
    members: dict[int, list[str]] = {}
    for label, doc_id in zip(labels, ids):
        members.setdefault(label, []).append(doc_id)
    return {tuple(sorted(pair)) for group in members.values() for pair in combinations(group, 2)}


def ours(records: list[dict], folder: Path, workers: int) -> tuple[set, float]:
    """(predicted pairs, docs/s of the whole stage)."""
    output = folder / f"out-{workers}"
    stats = dedup.run(CONFIG, folder / "in", output, workers=workers)
    duplicates = dedup.find_duplicates(CONFIG, list_parts(folder / "in"), folder / f"work-{workers}", workers)
    shutil.rmtree(folder / f"work-{workers}")
    return cluster_pairs(duplicates.kept_as.tolist(), [r["id"] for r in records]), stats.records_in / stats.seconds


def reference(records: list[dict], params: tuple[int, int] | None) -> tuple[set, float, str]:
    """(predicted pairs, docs/s, bands x rows) of datasketch.MinHashLSH."""
    try:
        from datasketch import MinHash, MinHashLSH
    except ImportError:
        raise SystemExit("the reference needs datasketch: pip install datasketch") from None
    start = time.perf_counter()
    lsh = MinHashLSH(threshold=CONFIG.threshold, num_perm=CONFIG.num_perm, params=params)
    signatures = []
    for index, record in enumerate(records):
        signature = MinHash(num_perm=CONFIG.num_perm, seed=CONFIG.seed)
        signature.update_batch([shingle.encode("utf-8") for shingle in shingles(record["text"])])
        lsh.insert(index, signature)
        signatures.append(signature)
    parent = list(range(len(records)))

    def root(node: int) -> int:
        while parent[node] != node:
            parent[node] = parent[parent[node]]
            node = parent[node]
        return node

    for index, signature in enumerate(signatures):
        for other in lsh.query(signature):
            if other != index and signature.jaccard(signatures[other]) >= CONFIG.threshold:
                low, high = sorted((root(index), root(other)))
                parent[high] = low
    labels = [root(node) for node in range(len(records))]
    seconds = time.perf_counter() - start
    return cluster_pairs(labels, [r["id"] for r in records]), len(records) / seconds, f"{lsh.b}x{lsh.r}"


def scores(predicted: set, truth: set) -> dict:
    hits = len(predicted & truth)
    precision = hits / len(predicted) if predicted else 1.0
    recall = hits / len(truth) if truth else 1.0
    f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
    return {"precision": round(precision, 4), "recall": round(recall, 4), "f1": round(f1, 4)}


def run(quick: bool) -> dict:
    records, families = labelled_set(300 if quick else 2000)
    sets = {r["id"]: shingles(r["text"]) for r in records}
    family_jaccard = {tuple(sorted((o, v))): (rate, jaccard(sets[o], sets[v])) for o, v, rate in families}
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        write_parts(records, folder / "in", records_per_part=100 if quick else 500)
        methods = {}
        for workers in (1, 2):
            pairs, speed = ours(records, folder, workers)
            methods[f"conveyor ({workers} worker{'s' * (workers > 1)}, 16x8)"] = (pairs, speed)
    for params in (None, (CONFIG.bands, CONFIG.rows)):
        pairs, speed, shape = reference(records, params)
        methods[f"datasketch ({shape}{', auto' if params is None else ''})"] = (pairs, speed)

    predicted_anywhere = set().union(*(pairs for pairs, _ in methods.values()))
    similarity = {pair: family_jaccard.get(pair, (None, None))[1] for pair in predicted_anywhere}
    similarity |= {pair: j for pair, (_, j) in family_jaccard.items()}
    for pair, value in similarity.items():
        if value is None:
            similarity[pair] = jaccard(sets[pair[0]], sets[pair[1]])
    truth = {pair for pair, value in similarity.items() if value >= CONFIG.threshold}

    reference_speed = methods[next(name for name in methods if name.startswith("datasketch") and "auto" in name)][1]
    result = {"documents": len(records), "variants": len(families), "true_pairs": len(truth),
              "threshold": CONFIG.threshold, "num_perm": CONFIG.num_perm, "methods": {}}
    print(f"{len(records)} documents ({len(families)} variants of {CHUNK_WORDS}-word chunks), "
          f"{len(truth)} true pairs (word 5-gram Jaccard >= {CONFIG.threshold})")
    print(f"{'method':34} {'precision':>9} {'recall':>7} {'F1':>6} {'docs/s':>8} {'vs ref':>7}")
    for name, (pairs, speed) in methods.items():
        row = scores(pairs, truth) | {"docs_per_s": round(speed), "speedup_vs_reference": round(speed / reference_speed, 2)}
        result["methods"][name] = row
        print(f"{name:34} {row['precision']:>9.4f} {row['recall']:>7.4f} {row['f1']:>6.4f} "
              f"{row['docs_per_s']:>8} {row['speedup_vs_reference']:>6.2f}x")

    print("\nper edit rate (one variant per original): mean true Jaccard, share of pairs >= threshold, share found")
    names = list(methods)
    print(f"{'rate':>5} {'pairs':>5} {'mean J':>6} {'>= thr':>6} " + " ".join(f"{n.split(' (')[0][:10]:>10}" for n in names[::2]))
    result["by_edit_rate"] = {}
    for rate in EDIT_RATES:
        pairs = [pair for pair, (r, _) in family_jaccard.items() if r == rate]
        values = [family_jaccard[pair][1] for pair in pairs]
        found = [sum(pair in methods[name][0] for pair in pairs) / len(pairs) for name in names[::2]]
        result["by_edit_rate"][rate] = {"pairs": len(pairs), "mean_jaccard": round(sum(values) / len(values), 3),
                                        "share_true": round(sum(v >= CONFIG.threshold for v in values) / len(values), 3),
                                        "share_found": dict(zip(names[::2], [round(f, 3) for f in found]))}
        print(f"{rate:>5.2f} {len(pairs):>5} {sum(values) / len(values):>6.3f} "
              f"{sum(v >= CONFIG.threshold for v in values) / len(values):>6.2f} " + " ".join(f"{f:>10.2f}" for f in found))
    return result


if __name__ == "__main__":
    run(quick="--quick" in sys.argv)
