"""Whole curation: docs/s and MB/s with 1 and 2 worker processes, and peak RSS on the demo
corpus and on a 10x larger copy (target: under 1.5x the RSS for 10x the data).

Runs the stage chain ingest -> clean -> dedup -> anonymize -> split as `python -m data STAGE`
subprocesses (the commands dvc.yaml runs) with configs/demo.yaml's data settings, and polls each
stage's peak RSS (the stage and its worker processes).
"""

from __future__ import annotations

import gzip
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import yaml

REPO_ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO_ROOT))
CORPUS = REPO_ROOT / "data" / "corpus" / "demo.jsonl.gz"
CHAIN = [("ingest", None), ("clean", "ingest"), ("dedup", "clean"), ("anonymize", "dedup"), ("split", "anonymize")]


def make_copies(source: Path, target: Path, copies: int) -> None:
    """`copies` repetitions of the corpus, ids made unique (texts repeat: dedup drops them)."""
    with gzip.open(target, "wt", encoding="utf-8") as out:
        for copy in range(copies):
            for line in gzip.open(source, "rt", encoding="utf-8"):
                try:
                    record = json.loads(line)
                except json.JSONDecodeError:
                    out.write(line)
                    continue
                if isinstance(record, dict) and copy:
                    record["id"] = f"{record.get('id')}-copy{copy}"
                out.write(json.dumps(record, ensure_ascii=False) + "\n")


def peak_tree_rss(process: subprocess.Popen, interval: float = 0.02) -> int:
    """Peak summed RSS of the stage and its worker processes, polled until it exits.

    Not ru_maxrss from wait4: on Linux a child's high-water mark starts at its parent's RSS at
    fork, so every stage would report this benchmark's own size.
    """
    import psutil

    root, peak = psutil.Process(process.pid), 0
    while process.poll() is None:
        try:
            tree = [root, *root.children(recursive=True)]
            peak = max(peak, sum(p.memory_info().rss for p in tree if p.is_running()))
        except psutil.NoSuchProcess:
            pass
        time.sleep(interval)
    return peak


def run_chain(corpus: Path, workdir: Path, workers: int) -> dict:
    # The demo profile's curation settings (near-dup on, the structured PII types, no NER), on this corpus.
    from flows.config import load_config

    settings = load_config("demo", [f"data.ingest.paths=[{corpus}]"]).to_yaml_dict()
    params = workdir / "params.yaml"
    params.write_text(yaml.safe_dump(settings))
    stages, started = {}, time.perf_counter()
    for stage, previous in CHAIN:
        command = [sys.executable, "-m", "data", stage, "--output", str(workdir / stage), "--params", str(params),
                   "--workers", str(workers)]
        if previous:
            command += ["--input", str(workdir / previous)]
        stage_start = time.perf_counter()
        process = subprocess.Popen(command, cwd=REPO_ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        peak = peak_tree_rss(process)
        if process.returncode != 0:
            raise RuntimeError(f"{stage} failed: {process.stderr.read().decode()[-2000:]}")
        stages[stage] = {"seconds": round(time.perf_counter() - stage_start, 2), "peak_rss_mb": round(peak / 1e6, 1)}
    seconds = time.perf_counter() - started
    ingest = json.loads((workdir / "ingest.stats.json").read_text())
    return {"workers": workers, "seconds": round(seconds, 2), "docs": ingest["records_in"],
            "mb": round(ingest["bytes_out"] / 1e6, 2),
            "docs_per_s": round(ingest["records_in"] / seconds, 1),
            "mb_per_s": round(ingest["bytes_out"] / 1e6 / seconds, 2),
            "peak_rss_mb": max(s["peak_rss_mb"] for s in stages.values()), "stages": stages}


def run(quick: bool) -> dict:
    with tempfile.TemporaryDirectory(prefix="bench-curation-") as tmp:
        tmp = Path(tmp)
        big = tmp / "demo-x10.jsonl.gz"
        make_copies(CORPUS, big, 3 if quick else 10)
        runs = {}
        for name, corpus, workers in [("1x_w1", CORPUS, 1), ("1x_w2", CORPUS, 2), ("big_w2", big, 2)]:
            (tmp / name).mkdir()
            runs[name] = run_chain(corpus, tmp / name, workers)
    result = {
        "bench": "curation", "quick": quick, "scale": 3 if quick else 10, "runs": runs,
        "speedup_2_workers": round(runs["1x_w1"]["seconds"] / runs["1x_w2"]["seconds"], 2),
        "rss_ratio_big_vs_1x": round(runs["big_w2"]["peak_rss_mb"] / runs["1x_w2"]["peak_rss_mb"], 2),
    }
    result["rss_target_met"] = result["rss_ratio_big_vs_1x"] < 1.5
    print(json.dumps(result, indent=2))
    return result


if __name__ == "__main__":
    run(quick="--quick" in sys.argv)
