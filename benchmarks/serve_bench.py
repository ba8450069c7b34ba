"""The served model (BentoML + serving.engine's continuous batching, over HTTP, streamed) against
plain HF `generate` on the same folder, in the same script.

    python benchmarks/serve_bench.py                    # SmolLM2-135M-Instruct fp32 (~6 min)
    python benchmarks/serve_bench.py --model DIR        # any Conveyor model folder (a demo champion)
    python benchmarks/serve_bench.py --clients 8 --requests 4 --new-tokens 32
    python benchmarks/serve_bench.py --device cuda --threads 8      # on a GPU machine

Baseline (in this process, --threads torch threads, before the server starts): naive sequential
`generate` for every request, one after another, and a padded static batch of 8 for reference.
Server (its own process, started here from the source tree, one API key): single-request
latency (median of 5), then N concurrent clients (8 and 32) each sending --requests streamed
greedy requests back to back (prompts of 16-40 tokens cut from held-out text, --new-tokens
tokens, `ignore_eos` is not an OpenAI field, so requests that hit end-of-sequence early count
the tokens they produced), --repeats times. Reported (medians over the repeats): aggregate
generated tokens/s over the wall time, p50/p95 end-to-end latency, p50/p95 time to first token
(first non-empty SSE chunk: it includes the output guard's stream holdback, see the README), and
whether every served greedy text (every request of every repeat) equals `generate`'s. Targets (issue 10, 2-core CPU): aggregate >= 3x naive
sequential under 8 clients, p95 <= 2x single-request latency, same greedy outputs.
"""

from __future__ import annotations

import argparse
import concurrent.futures
import datetime
import json
import os
import platform
import statistics
import sys
import tempfile
import time
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO_ROOT))

HELDOUT = REPO_ROOT / "evaluation" / "tasks" / "reference.txt"


def prompts_from_text(tokenizer, count: int, seed: int = 0) -> list[str]:
    """`count` prompts of 16-40 tokens, cut at word boundaries from held-out text."""
    import random

    rng = random.Random(seed)
    words = HELDOUT.read_text(encoding="utf-8").split()
    prompts = []
    while len(prompts) < count:
        start = rng.randrange(0, len(words) - 60)
        target = rng.randint(16, 40)
        for end in range(start + 8, start + 60):
            text = " ".join(words[start:end])
            if len(tokenizer(text, add_special_tokens=False).input_ids) >= target:
                prompts.append(text)
                break
    return prompts


def baseline(folder: Path, prompts: list[str], new_tokens: int, threads: int, device: str) -> dict:
    import torch

    from core.models import load_model

    torch.set_num_threads(threads)
    model, tokenizer = load_model(folder)
    if device == "cuda":  # as the server places it (serving.service.place)
        model = model.to(device="cuda", dtype=torch.bfloat16)
    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id
    texts, latencies = [], []
    with torch.inference_mode():
        warm = tokenizer(prompts[0], return_tensors="pt", add_special_tokens=False).input_ids.to(model.device)
        model.generate(warm, attention_mask=torch.ones_like(warm), max_new_tokens=4, do_sample=False, pad_token_id=pad)
        start = time.perf_counter()
        generated = 0
        for prompt in prompts:
            ids = tokenizer(prompt, return_tensors="pt", add_special_tokens=False).input_ids.to(model.device)
            t0 = time.perf_counter()
            out = model.generate(ids, attention_mask=torch.ones_like(ids), max_new_tokens=new_tokens, do_sample=False,
                                 pad_token_id=pad)
            out = out.cpu()
            latencies.append(time.perf_counter() - t0)
            new = out[0, ids.shape[1]:]
            generated += len(new)
            texts.append(tokenizer.decode(new, skip_special_tokens=True))
        sequential_s = time.perf_counter() - start
        # A padded static batch of 8 (left padding), for reference.
        tokenizer.padding_side = "left"
        if tokenizer.pad_token is None:
            tokenizer.pad_token = tokenizer.eos_token
        batch = tokenizer(prompts[:8], return_tensors="pt", padding=True, add_special_tokens=False).to(model.device)
        t0 = time.perf_counter()
        out = model.generate(**batch, max_new_tokens=new_tokens, do_sample=False, pad_token_id=pad)
        static_s = time.perf_counter() - t0
        static_tokens = int(sum(len(row[batch.input_ids.shape[1]:]) for row in out))
    return {"texts": texts, "sequential_tokens_per_s": generated / sequential_s,
            "sequential_latency_p50_s": statistics.median(latencies),
            "ms_per_token_batch1": 1000 * sequential_s / generated,
            "static_batch8_tokens_per_s": static_tokens / static_s}


def stream_one(client, prompt: str, new_tokens: int) -> dict:
    start = time.perf_counter()
    first, pieces = None, []
    for chunk in client.completions.create(model=client.served_model, prompt=prompt, max_tokens=new_tokens,
                                           temperature=0, stream=True):
        text = chunk.choices[0].text
        if text and first is None:
            first = time.perf_counter()
        pieces.append(text)
    end = time.perf_counter()
    return {"prompt": prompt, "text": "".join(pieces), "latency_s": end - start,
            "ttft_s": (first or end) - start}


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, round(q * (len(ordered) - 1))))]


def load_test(client, tokenizer, prompts: list[str], clients: int, requests: int, new_tokens: int) -> dict:
    work = [prompts[(c * requests + r) % len(prompts)] for c in range(clients) for r in range(requests)]

    def client_loop(c: int) -> list[dict]:
        return [stream_one(client, work[c * requests + r], new_tokens) for r in range(requests)]

    start = time.perf_counter()
    with concurrent.futures.ThreadPoolExecutor(clients) as pool:
        results = [item for batch in pool.map(client_loop, range(clients)) for item in batch]
    wall = time.perf_counter() - start
    generated = sum(len(tokenizer(r["text"], add_special_tokens=False).input_ids) for r in results)
    latencies = [r["latency_s"] for r in results]
    ttfts = [r["ttft_s"] for r in results]
    return {"clients": clients, "requests": len(results), "wall_s": wall, "tokens_per_s": generated / wall,
            "latency_p50_s": percentile(latencies, 0.5), "latency_p95_s": percentile(latencies, 0.95),
            "ttft_p50_s": percentile(ttfts, 0.5), "ttft_p95_s": percentile(ttfts, 0.95), "results": results}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", type=Path, help="model folder (default: SmolLM2-135M-Instruct fp32)")
    parser.add_argument("--work", type=Path, default=REPO_ROOT / ".conveyor" / "bench" / "compression")
    parser.add_argument("--clients", default="8,32")
    parser.add_argument("--requests", type=int, default=4)
    parser.add_argument("--new-tokens", type=int, default=32)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--device", choices=["cpu", "cuda"], default="cpu")
    parser.add_argument("--repeats", type=int, default=3, help="load tests per client count (medians reported)")
    parser.add_argument("--out", type=Path, default=REPO_ROOT / ".conveyor" / "bench" / "serve.json")
    args = parser.parse_args()

    from transformers import AutoTokenizer

    folder = args.model
    if folder is None:
        from benchmarks.compression_bench import prepare

        folder, _ = prepare(args.work)
    tokenizer = AutoTokenizer.from_pretrained(folder)
    client_counts = [int(c) for c in args.clients.split(",")]
    prompts = prompts_from_text(tokenizer, max(client_counts) * args.requests)

    print(f"baseline: sequential generate of {len(prompts[:32])} prompts x {args.new_tokens} tokens ...", flush=True)
    base = baseline(folder, prompts[:32], args.new_tokens, args.threads, args.device)
    reference = dict(zip(prompts[:32], base.pop("texts")))

    import openai

    from serving.local import served

    settings = {"max_new_tokens_limit": max(args.new_tokens, 64), "max_batch_requests": 32,
                "max_waiting_requests": 128, "threads": args.threads, "rate_limit_per_minute": 100_000,
                "kv_cache_tokens": 8192, "device": args.device}
    with tempfile.TemporaryDirectory() as tmp, served(Path(tmp), folder, serving=settings) as server:
        client = openai.OpenAI(base_url=server.url + "/v1", api_key=server.key, max_retries=0, timeout=600)
        client.served_model = "conveyor-test"
        stream_one(client, prompts[0], 4)  # warm-up
        singles = [stream_one(client, prompts[i], args.new_tokens) for i in range(5)]
        single = {"latency_p50_s": statistics.median(r["latency_s"] for r in singles),
                  "ms_per_token_batch1": 1000 * statistics.median(
                      r["latency_s"] / max(1, len(tokenizer(r["text"], add_special_tokens=False).input_ids))
                      for r in singles),
                  "ttft_p50_s": statistics.median(r["ttft_s"] for r in singles)}
        loads = []
        for clients in client_counts:
            runs = [load_test(client, tokenizer, prompts, clients, args.requests, args.new_tokens)
                    for _ in range(args.repeats)]
            merged = {key: statistics.median(run[key] for run in runs) for key in runs[0] if key != "results"}
            merged["runs"] = [{k: round(v, 3) for k, v in run.items() if k != "results"} for run in runs]
            merged["results"] = [item for run in runs for item in run["results"]]
            loads.append(merged)

    served = [(r["prompt"], r["text"]) for load in loads for r in load["results"]] + \
        [(r["prompt"], r["text"]) for r in singles]
    compared = [(p, t) for p, t in served if p in reference]
    mismatched = [p for p, t in compared if t != reference[p]]
    for load in loads:
        load.pop("results")
        load["x_sequential"] = load["tokens_per_s"] / base["sequential_tokens_per_s"]
        load["p95_x_single"] = load["latency_p95_s"] / single["latency_p50_s"]
    report = {
        "date": datetime.date.today().isoformat(), "machine": f"{platform.processor() or platform.machine()}, "
        f"{os.cpu_count()} cores", "model": str(folder), "new_tokens": args.new_tokens, "threads": args.threads,
        "baseline": base, "single": single, "loads": loads,
        "greedy_outputs_equal": f"{len(compared) - len(mismatched)}/{len(compared)}",
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=1))
    print(f"\nnaive sequential generate: {base['sequential_tokens_per_s']:.1f} tok/s, "
          f"latency p50 {base['sequential_latency_p50_s']:.2f} s; static batch 8: "
          f"{base['static_batch8_tokens_per_s']:.1f} tok/s")
    print(f"served, one request: latency p50 {single['latency_p50_s']:.2f} s, TTFT p50 {single['ttft_p50_s']*1000:.0f} ms, "
          f"{single['ms_per_token_batch1']:.1f} ms per token (naive generate {base['ms_per_token_batch1']:.1f})")
    print("| clients | requests | tok/s | x sequential | p50 s | p95 s | p95 / single | TTFT p50 ms | TTFT p95 ms |")
    print("|---|---|---|---|---|---|---|---|---|")
    for load in loads:
        print(f"| {load['clients']} | {load['requests']} | {load['tokens_per_s']:.1f} | {load['x_sequential']:.2f} | "
              f"{load['latency_p50_s']:.2f} | {load['latency_p95_s']:.2f} | {load['p95_x_single']:.2f} | "
              f"{load['ttft_p50_s']*1000:.0f} | {load['ttft_p95_s']*1000:.0f} |")
    print(f"greedy outputs equal to generate: {report['greedy_outputs_equal']}")
    print(f"written {args.out}")


if __name__ == "__main__":
    main()
