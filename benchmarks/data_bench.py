"""Data curation benchmarks, one script, one run (issue: data curation at production depth).

    .venv/bin/python benchmarks/data_bench.py [--quick] [--only neardup,pii,curation] [--json FILE]

1. near-duplicate dedup against datasketch.MinHashLSH (benchmarks/bench_neardup.py)
2. PII detection against Presidio's AnalyzerEngine with the same spaCy model (bench_pii.py)
3. the whole curation chain with 1 and 2 workers, and peak RSS at 1x and 10x data (bench_curation.py)

Each part prints its own table; this driver adds the machine and date and can save all results as
JSON. Results are written down in benchmarks/README.md with the command that made them.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

PARTS = ("neardup", "pii", "curation")


def machine() -> dict:
    return {
        "date": time.strftime("%Y-%m-%d"),
        "python": platform.python_version(),
        "cpu": platform.processor() or platform.machine(),
        "cores": os.cpu_count(),
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="small inputs: checks the script, not the numbers")
    parser.add_argument("--only", default=",".join(PARTS), help=f"comma-separated subset of {PARTS}")
    parser.add_argument("--json", type=Path, help="write all results here")
    args = parser.parse_args()
    selected = [part.strip() for part in args.only.split(",") if part.strip()]
    unknown = sorted(set(selected) - set(PARTS))
    if unknown:
        parser.error(f"unknown part(s) {unknown}; choose from {PARTS}")

    results = {"machine": machine(), "quick": args.quick}
    print(f"machine: {results['machine']}")
    for part in selected:
        module = __import__(f"bench_{part}")
        print(f"\n=== {part} ===", flush=True)
        results[part] = module.run(quick=args.quick)
    if args.json:
        args.json.write_text(json.dumps(results, indent=2, default=str))
    return 0


if __name__ == "__main__":
    sys.exit(main())
