"""Dedup's cluster step: the smallest record of each connected component of the near-duplicate
pairs, by scipy.sparse.csgraph.connected_components (what data/dedup.py uses) against the
minimum-label propagation with pointer jumping that Conveyor had written itself (kept here as
the baseline). Two shapes of graph: random pairs (clusters of a few documents, the common case)
and one long chain (a document edited a little at a time, the worst case for propagation).

    python benchmarks/dedup_components_bench.py [--nodes 1000000] [--repeats 3]

Prints the median seconds of each and the ratio; checks that both give the same labels.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))


def label_propagation(size: int, pairs: np.ndarray) -> np.ndarray:
    """The baseline: Conveyor's own until issue 13."""
    label = np.arange(size)
    left, right = pairs[:, 0], pairs[:, 1]
    while True:
        previous = label.copy()
        np.minimum.at(label, left, label[right])
        np.minimum.at(label, right, label[left])
        label = label[label]
        if np.array_equal(label, previous):
            return label


def main() -> None:
    from data.dedup import _connected_components

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--nodes", type=int, default=1_000_000)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    _connected_components(2, np.array([[0, 1]]))  # scipy's import is not part of the timing
    rng = np.random.default_rng(0)
    chain = rng.permutation(args.nodes)[:20_001]
    graphs = {"random pairs (nodes/5)": rng.integers(0, args.nodes, (args.nodes // 5, 2)),
              "one chain of 20,000": np.stack([chain[:-1], chain[1:]], axis=1)}
    for name, pairs in graphs.items():
        medians = {}
        for function in (label_propagation, _connected_components):
            seconds = []
            for _ in range(args.repeats):
                started = time.perf_counter()
                labels = function(args.nodes, pairs)
                seconds.append(time.perf_counter() - started)
            medians[function.__name__] = statistics.median(seconds)
            if function is label_propagation:
                expected = labels
            else:
                assert np.array_equal(labels, expected), "the two disagree"
        print(f"{name}: {args.nodes:,} nodes, {len(pairs):,} pairs; label propagation "
              f"{medians['label_propagation']:.3f} s, scipy {medians['_connected_components']:.3f} s, "
              f"ratio {medians['label_propagation'] / medians['_connected_components']:.1f}x")


if __name__ == "__main__":
    main()
