"""MinHash signatures of word n-gram shingles, and the LSH bands that turn them into buckets.

A document's shingles are its overlapping runs of `shingle_words` words. Each word is hashed
once (cached: a corpus has far fewer distinct words than word occurrences), a shingle's hash
is a mix of its words' hashes, and the `num_perm` hash functions are multiply-shift hashes
applied to every shingle of a batch of documents at once, so the inner loop is numpy's.

Two signatures agree at a position with probability equal to the Jaccard similarity of the
shingle sets; cutting a signature into `bands` bands of `rows` values and bucketing on each
band makes documents with similarity s candidates with probability 1 - (1 - s^rows)^bands,
which rises steeply around (1/bands)^(1/rows), the implied threshold.
"""

from __future__ import annotations

import hashlib
import re
from itertools import chain

import numpy as np

WORD = re.compile(r"\w+")
EMPTY = np.iinfo(np.uint32).max  # the signature value of a document without words
# Words per batch: the batch's work array is about this many columns of num_perm uint64 (8 MB).
BATCH_WORDS = 8192


def words(text: str, lowercase: bool) -> list[str]:
    return WORD.findall(text.lower() if lowercase else text)


def implied_threshold(bands: int, rows: int) -> float:
    return (1 / bands) ** (1 / rows)


def jaccard(left: np.ndarray, right: np.ndarray) -> float:
    """Jaccard similarity of two documents' shingle sets, given their shingle hashes."""
    shared = len(np.intersect1d(left, right))
    return shared / (len(np.union1d(left, right)) or 1)


def _mix64(x: np.ndarray) -> np.ndarray:
    """splitmix64's finalizer: spreads every input bit over the whole word (uint64 arithmetic wraps)."""
    x = x ^ (x >> np.uint64(30))
    x = x * np.uint64(0xBF58476D1CE4E5B9)
    x = x ^ (x >> np.uint64(27))
    x = x * np.uint64(0x94D049BB133111EB)
    return x ^ (x >> np.uint64(31))


class MinHasher:
    """Signatures for one setting of (shingle size, permutations, seed). It caches word hashes,
    so build one per shard, not one per corpus."""

    def __init__(self, num_perm: int, shingle_words: int, seed: int, lowercase: bool):
        self.num_perm = num_perm
        self.shingle_words = shingle_words
        self.lowercase = lowercase
        rng = np.random.default_rng(seed)
        # Multiply-shift hashing h(x) = (a*x + b) mod 2^64, top 32 bits; a must be odd.
        self._multipliers = rng.integers(0, 2**64, size=(num_perm, 1), dtype=np.uint64) | np.uint64(1)
        self._offsets = rng.integers(0, 2**64, size=(num_perm, 1), dtype=np.uint64)
        # Position weights make a shingle's hash depend on word order, not just the words.
        self._position_weights = rng.integers(0, 2**64, size=shingle_words, dtype=np.uint64) | np.uint64(1)
        self._word_hashes: dict[str, int] = {}

    def signatures(self, texts: list[str]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(signatures (len(texts), num_perm) uint32, every text's shingle hashes (uint32) one text
        after the other, shingles per text). A text without words gets an all-EMPTY signature."""
        signatures = np.full((len(texts), self.num_perm), EMPTY, dtype=np.uint32)
        shingle_counts = np.zeros(len(texts), dtype=np.int64)
        shingles: list[np.ndarray] = []
        batch: list[list[str]] = []
        batch_start, batch_words = 0, 0
        for index, text in enumerate(texts):
            batch.append(words(text, self.lowercase))
            batch_words += len(batch[-1])
            if batch_words >= BATCH_WORDS or index == len(texts) - 1:
                rows = slice(batch_start, index + 1)
                signatures[rows], batch_shingles, shingle_counts[rows] = self._batch_signatures(batch)
                shingles.append(batch_shingles)
                batch, batch_start, batch_words = [], index + 1, 0
        return signatures, np.concatenate(shingles or [np.empty(0, dtype=np.uint32)]), shingle_counts

    def _batch_signatures(self, token_lists: list[list[str]]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        width = self.shingle_words
        cache = self._word_hashes
        for word in set(chain.from_iterable(token_lists)).difference(cache):
            cache[word] = int.from_bytes(hashlib.blake2b(word.encode("utf-8"), digest_size=8).digest(), "little")
        # All documents' word hashes in one array, each followed by width-1 zeros: a window
        # never mixes two documents, and a document shorter than a shingle is one shingle.
        padding = (0,) * (width - 1)
        flat: list[int] = []
        for tokens in token_lists:
            flat.extend(map(cache.__getitem__, tokens))
            flat.extend(padding)
        hashes = np.fromiter(flat, dtype=np.uint64, count=len(flat))
        windows = len(flat) - width + 1
        combined = np.zeros(windows, dtype=np.uint64)
        for position in range(width):
            combined += hashes[position:position + windows] * self._position_weights[position]

        lengths = np.array([len(tokens) for tokens in token_lists])
        doc_offsets = np.cumsum(lengths + width - 1) - (lengths + width - 1)
        shingle_counts = np.where(lengths > 0, np.maximum(lengths - width + 1, 1), 0)
        first_shingle = np.cumsum(shingle_counts) - shingle_counts
        within_doc = np.arange(shingle_counts.sum()) - np.repeat(first_shingle, shingle_counts)
        shingles = _mix64(combined[np.repeat(doc_offsets, shingle_counts) + within_doc])

        signatures = np.full((len(token_lists), self.num_perm), EMPTY, dtype=np.uint32)
        has_shingles = shingle_counts > 0
        if has_shingles.any():
            # (num_perm, shingles) keeps each reduction over contiguous memory: several times faster.
            hashed = self._multipliers * shingles
            hashed += self._offsets
            # The top 32 bits are monotone in the full value: take the minimum first, shift after.
            minima = np.minimum.reduceat(hashed, first_shingle[has_shingles], axis=1)
            signatures[has_shingles] = (minima >> np.uint64(32)).astype(np.uint32).T
        return signatures, (shingles >> np.uint64(32)).astype(np.uint32), shingle_counts


def band_keys(signatures: np.ndarray, bands: int, rows: int) -> np.ndarray:
    """(n, bands) uint64: one bucket key per band; equal bands give equal keys (different bands
    are bucketed separately, so their keys never meet)."""
    per_band = signatures[:, :bands * rows].reshape(len(signatures), bands, rows).astype(np.uint64)
    weights = _mix64(np.arange(1, rows + 1, dtype=np.uint64)) | np.uint64(1)
    return _mix64((per_band * weights).sum(axis=2, dtype=np.uint64))
