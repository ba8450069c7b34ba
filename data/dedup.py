"""Dedup: drop exact and near-duplicate records, keeping the first of each cluster in record order.

It works map/reduce over the shards, so the expensive part runs in worker processes and would
run the same on a cluster:

1. lines (only with `line_dedup`): map, each shard counts the documents each distinct line
   occurs in; reduce, the counts are summed and lines found in >= `line_min_docs` documents
   are "repeated" and removed from every record before anything else is compared.
2. signatures: map, each shard writes, per record, an exact key (hash of the normalized text),
   the LSH band keys of its MinHash signature and its shingle hashes.
3. clusters: reduce, records with the same exact key form a cluster; the others that share a
   band key with an earlier record are candidate pairs, kept if the Jaccard similarity of their
   shingle sets is >= `threshold` (computed from the shingle hashes the map phase kept, not
   estimated from signatures: a candidate near the threshold is decided right), and joined
   into clusters (connected components). Each
   cluster keeps its first record in global order (shard, line) and drops the rest.
4. apply: each shard is written again without its dropped records (same part names), by the
   shared shard executor (data.shards.map_shards) with a processor that reads the decisions.

The map phases run on the same executor's process pool (data.shards.run_jobs). Their results
live in `<output>.work/` beside the output, one folder per shard renamed into place when
complete; apply's shards leave their markers as every sharded stage's do: a killed run, started
again with the same input and config, skips the shards already done. The work folder is removed
once the output is in place.
"""

from __future__ import annotations

import hashlib
import json
import shutil
import time
from collections import Counter
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Callable

import numpy as np

from core.atomic import atomic_dir, atomic_write_text, beside
from core.stats import StageStats
from data.config import DedupConfig
from data.minhash import MinHasher, band_keys, implied_threshold, jaccard
from data.shards import ShardJob, list_parts, map_shards, partial_dir, read_part, run_jobs

SAMPLES_PER_REASON = 3


def normalize(text: str, lowercase: bool) -> str:
    return " ".join(text.lower().split()) if lowercase else text


def exact_key(text: str, lowercase: bool) -> bytes:
    return hashlib.blake2b(normalize(text, lowercase).encode("utf-8"), digest_size=16).digest()


def line_key(line: str, lowercase: bool) -> int:
    return int.from_bytes(exact_key(line, lowercase)[:8], "little")


def remove_lines(text: str, repeated: set[int], lowercase: bool) -> tuple[str, int]:
    """The text without its repeated lines, and how many lines went."""
    if not repeated:
        return text, 0
    kept = [line for line in text.split("\n") if not line.strip() or line_key(line, lowercase) not in repeated]
    removed = text.count("\n") + 1 - len(kept)
    return ("\n".join(kept), removed) if removed else (text, 0)


def work_dir(output_dir: Path) -> Path:
    return beside(output_dir, ".work")


# map and reduce: which records are duplicates

def _count_lines(part: Path, target: Path, lowercase: bool) -> None:
    documents_with_line: Counter = Counter()
    for record in read_part(part):
        documents_with_line.update({line_key(line, lowercase) for line in record["text"].split("\n") if line.strip()})
    keys = np.fromiter(documents_with_line.keys(), dtype=np.uint64, count=len(documents_with_line))
    counts = np.fromiter(documents_with_line.values(), dtype=np.int64, count=len(documents_with_line))
    with atomic_dir(target) as tmp:  # the folder existing marks the shard done
        np.save(tmp / "keys.npy", keys)
        np.save(tmp / "counts.npy", counts)


def _sign_part(part: Path, target: Path, config: DedupConfig, repeated: set[int]) -> None:
    texts = [remove_lines(record["text"], repeated, config.lowercase)[0] for record in read_part(part)]
    exact = np.frombuffer(b"".join(exact_key(text, config.lowercase) for text in texts), dtype=np.uint64)
    with atomic_dir(target) as tmp:  # the folder existing marks the shard done
        np.save(tmp / "exact.npy", exact.reshape(len(texts), 2))
        if config.near_dedup:
            hasher = MinHasher(config.num_perm, config.shingle_words, config.seed, config.lowercase)
            signatures, shingles, shingle_counts = hasher.signatures(texts)
            np.save(tmp / "bands.npy", band_keys(signatures, config.bands, config.rows))
            # The shingle hashes themselves, to verify candidates by their true Jaccard similarity.
            np.save(tmp / "shingles.npy", shingles)
            np.save(tmp / "shingle_counts.npy", shingle_counts)


def _map_part(part: Path, function: Callable, folder: Path) -> None:
    function(part, folder / part.name)


def _map_parts(function: Callable, parts: list[Path], folder: Path, workers: int) -> int:
    """Run function(part, folder / part.name) for every part without a result yet; returns how
    many were already done (resumed)."""
    folder.mkdir(parents=True, exist_ok=True)
    todo = [part for part in parts if not (folder / part.name).is_dir()]
    run_jobs(partial(_map_part, function=function, folder=folder), todo, workers)
    return len(parts) - len(todo)


def _reset_if_stale(work: Path, applied: Path, config: DedupConfig, parts: list[Path]) -> None:
    """Results of an earlier run (map results in `work`, applied shards in `applied`) are reused
    only for the same config and the same input files."""
    fingerprint = json.dumps({"config": config.model_dump(),
                              "parts": [[p.name, p.stat().st_size, p.stat().st_mtime_ns] for p in parts]})
    stamp = work / "fingerprint.json"
    if stamp.is_file() and stamp.read_text() == fingerprint:
        return
    shutil.rmtree(work, ignore_errors=True)
    shutil.rmtree(applied, ignore_errors=True)
    atomic_write_text(stamp, fingerprint)


def _repeated_lines(folders: list[Path], min_docs: int) -> np.ndarray:
    keys = np.concatenate([np.load(folder / "keys.npy") for folder in folders])
    counts = np.concatenate([np.load(folder / "counts.npy") for folder in folders])
    distinct, inverse = np.unique(keys, return_inverse=True)
    return distinct[np.bincount(inverse, weights=counts, minlength=len(distinct)) >= min_docs]


@dataclass
class Duplicates:
    """What the reduce decided, per record in global order (shards in name order, then lines)."""

    kept_as: np.ndarray  # index of the record kept in each record's cluster (itself if kept)
    exact: np.ndarray  # True where the record is an exact copy of an earlier one
    repeated_lines: set[int]
    counts: dict[str, int]
    part_sizes: list[int]
    shards_resumed: int


def find_duplicates(config: DedupConfig, parts: list[Path], work: Path, workers: int = 1) -> Duplicates:
    """Map phases over the parts (resumable in `work`) and the reduce that forms clusters."""
    repeated = np.empty(0, dtype=np.uint64)
    if config.line_dedup:
        _map_parts(partial(_count_lines, lowercase=config.lowercase), parts, work / "lines", workers)
        repeated = _repeated_lines([work / "lines" / p.name for p in parts], config.line_min_docs)
    repeated_lines = set(repeated.tolist())
    resumed = _map_parts(partial(_sign_part, config=config, repeated=repeated_lines), parts, work / "signatures", workers)
    folders = [work / "signatures" / part.name for part in parts]

    exact_keys = [np.load(f / "exact.npy") for f in folders]
    exact_kept_as = _exact_clusters(np.concatenate(exact_keys) if parts else np.empty((0, 2), dtype=np.uint64))
    index = np.arange(len(exact_kept_as))
    counts = {"exact_clusters": len(np.unique(exact_kept_as[exact_kept_as != index])), "repeated_lines": len(repeated)}
    kept_as = exact_kept_as
    if config.near_dedup and parts:
        shingle_counts = np.concatenate([np.load(f / "shingle_counts.npy") for f in folders])
        candidates = index[(exact_kept_as == index) & (shingle_counts > 0)]
        bands = np.concatenate([np.load(f / "bands.npy", mmap_mode="r") for f in folders])
        pairs = _candidate_pairs(bands[candidates], candidates)
        shingles = _ShingleStore(folders, shingle_counts)
        similarity = np.array([jaccard(shingles[left], shingles[right]) for left, right in pairs.tolist()])
        near_pairs = pairs[similarity >= config.threshold] if len(pairs) else pairs
        first_in_cluster = _connected_components(len(index), near_pairs)
        # An exact copy follows its original into the original's near-duplicate cluster.
        kept_as = first_in_cluster[exact_kept_as]
        counts |= {"candidate_pairs": len(pairs), "near_pairs": len(near_pairs),
                   "near_clusters": len(np.unique(first_in_cluster[first_in_cluster != index]))}
    return Duplicates(kept_as=kept_as, exact=exact_kept_as != index, repeated_lines=repeated_lines,
                      counts=counts, part_sizes=[len(keys) for keys in exact_keys], shards_resumed=resumed)


def _exact_clusters(keys: np.ndarray) -> np.ndarray:
    """For each record, the index of the first record with the same (n, 2) key."""
    order = np.lexsort((keys[:, 1], keys[:, 0]))  # stable: equal keys stay in record order
    ordered = keys[order]
    starts = np.r_[True, (ordered[1:] != ordered[:-1]).any(axis=1)]
    kept_as = np.empty(len(keys), dtype=np.int64)
    kept_as[order] = order[np.flatnonzero(starts)][np.cumsum(starts) - 1]
    return kept_as


def _candidate_pairs(bands: np.ndarray, records: np.ndarray) -> np.ndarray:
    """(pairs, 2) record indices sharing a bucket in some band: each bucket's first record paired
    with each of the others (enough to connect the bucket, without a quadratic blow-up)."""
    pairs = []
    for band in range(bands.shape[1]):
        order = np.argsort(bands[:, band], kind="stable")
        ordered = bands[order, band]
        starts = np.r_[True, ordered[1:] != ordered[:-1]]
        first = order[np.flatnonzero(starts)][np.cumsum(starts) - 1]
        joined = first != order
        pairs.append(np.stack([records[first[joined]], records[order[joined]]], axis=1))
    if not pairs:
        return np.empty((0, 2), dtype=np.int64)
    return np.unique(np.concatenate(pairs), axis=0)


class _ShingleStore:
    """A record's shingle hashes by global index, read from the shards' files (memory-mapped)."""

    def __init__(self, folders: list[Path], shingle_counts: np.ndarray):
        self._arrays = [np.load(folder / "shingles.npy", mmap_mode="r") for folder in folders]
        sizes = [len(np.load(folder / "shingle_counts.npy", mmap_mode="r")) for folder in folders]
        self._first_record = np.cumsum([0] + sizes)
        self._start = np.cumsum(shingle_counts) - shingle_counts
        self._counts = shingle_counts

    def __getitem__(self, record: int) -> np.ndarray:
        shard = np.searchsorted(self._first_record, record, side="right") - 1
        start = self._start[record] - self._start[self._first_record[shard]]
        return self._arrays[shard][start:start + self._counts[record]]


def _connected_components(size: int, pairs: np.ndarray) -> np.ndarray:
    """For each of `size` nodes, the smallest node of its component. scipy's connected_components
    replaced our own label propagation: as fast on clusters of a few documents (0.06 vs 0.05 s for
    1M records), and linear on a long chain of edits, where propagation took 41 s for 20,000 links
    (benchmarks/dedup_components_bench.py)."""
    from scipy.sparse import coo_matrix
    from scipy.sparse.csgraph import connected_components

    graph = coo_matrix((np.ones(len(pairs), dtype=np.int8), (pairs[:, 0], pairs[:, 1])), shape=(size, size))
    count, component = connected_components(graph, directed=False)
    smallest = np.full(count, size, dtype=np.int64)
    np.minimum.at(smallest, component, np.arange(size))
    return smallest[component]


# apply: write the shards without their duplicates

class ApplyDecisions:
    """Apply's processor for data.shards: each record's fate by its position in global order, from
    the decisions the reduce saved (memory-mapped, so each worker reads only its shard's)."""

    def __init__(self, decisions: Path, lowercase: bool):
        self.lowercase = lowercase
        self.kept_as = np.load(decisions / "kept_as.npy", mmap_mode="r")
        self.exact = np.load(decisions / "exact.npy", mmap_mode="r")
        self.first_index = json.loads((decisions / "first_index.json").read_text())
        self.repeated = set(np.load(decisions / "repeated_lines.npy").tolist())
        self.counters = Counter(lines_removed=0)
        self.position = 0

    def start_shard(self, job: ShardJob) -> None:
        self.position = self.first_index[job.source.name]

    def process(self, record: dict) -> dict | str:
        position, self.position = self.position, self.position + 1
        text, removed = remove_lines(record["text"], self.repeated, self.lowercase)
        if not text.strip():
            return "only_repeated_lines"
        if self.kept_as[position] != position:
            return "exact_duplicate" if self.exact[position] else "near_duplicate"
        self.counters["lines_removed"] += removed
        return {**record, "text": text} if removed else record


def _save_decisions(duplicates: Duplicates, parts: list[Path], folder: Path) -> Path:
    firsts = np.cumsum([0] + duplicates.part_sizes)
    with atomic_dir(folder) as tmp:
        np.save(tmp / "kept_as.npy", duplicates.kept_as)
        np.save(tmp / "exact.npy", duplicates.exact)
        np.save(tmp / "repeated_lines.npy", np.array(sorted(duplicates.repeated_lines), dtype=np.uint64))
        atomic_write_text(tmp / "first_index.json",
                          json.dumps({part.name: int(first) for part, first in zip(parts, firsts)}))
    return folder


def run(config: DedupConfig, input_dir: Path, output_dir: Path, workers: int = 1) -> StageStats:
    """Output parts mirror the input's, without duplicates; the same output for any `workers`."""
    parts = list_parts(input_dir)
    work = work_dir(output_dir)
    _reset_if_stale(work, partial_dir(output_dir), config, parts)
    started = time.perf_counter()
    duplicates = find_duplicates(config, parts, work, workers)
    decisions = work / "decisions"
    if not decisions.is_dir():
        _save_decisions(duplicates, parts, decisions)
    stats = map_shards("dedup", partial(ApplyDecisions, decisions, config.lowercase), input_dir, output_dir,
                       workers, SAMPLES_PER_REASON)
    stats.seconds = round(time.perf_counter() - started, 4)
    stats.extra |= duplicates.counts
    stats.extra["shards_resumed"] = duplicates.shards_resumed  # of the signature phase, the costly one
    if config.near_dedup:
        stats.extra["implied_threshold"] = round(implied_threshold(config.bands, config.rows), 4)
    stats.write(output_dir)
    shutil.rmtree(work)
    return stats
