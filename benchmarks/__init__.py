"""Benchmark scripts (run from the repo root: `python benchmarks/<name>.py` or `python -m benchmarks.<name>`).

A regular package, not a namespace one: opacus ships a top-level `benchmarks` package of its own,
which would otherwise shadow this folder.
"""
