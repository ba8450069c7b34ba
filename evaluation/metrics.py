"""Quality, size and speed of one model folder, measured the same way for every variant."""

from __future__ import annotations

import json
import logging
import math
import statistics
import time
from pathlib import Path

from core.atomic import atomic_write_text
from core.models import folder_size_bytes, load_model
from evaluation.config import EvaluationConfig

VALIDATION_FILE = "validation.jsonl"
DEFAULT_WINDOW_TOKENS = 256

logger = logging.getLogger(__name__)


def run(config: EvaluationConfig, model_dir: Path, dataset_dir: Path, output_path: Path) -> dict:
    """Measure the model in `model_dir` on `dataset_dir/validation.jsonl`; write and return the metrics."""
    start = time.perf_counter()
    model, tokenizer = load_model(model_dir)
    token_ids = validation_token_ids(Path(dataset_dir) / VALIDATION_FILE, tokenizer, config.max_eval_tokens)
    window = getattr(model.config, "max_position_embeddings", None) or DEFAULT_WINDOW_TOKENS
    total_nll, scored_tokens = summed_nll(model, token_ids, window)
    val_loss = total_nll / scored_tokens
    metrics = {
        "perplexity": math.exp(val_loss),
        "val_loss": val_loss,
        "eval_tokens": scored_tokens,
        "size_bytes": folder_size_bytes(model_dir),
        "num_parameters": count_parameters(model),
        "latency_ms_per_token": latency_ms_per_token(model, tokenizer, config),
    }
    atomic_write_text(Path(output_path), json.dumps(metrics, indent=2))
    logger.info("evaluated %s in %.1f s: %s", model_dir, time.perf_counter() - start, metrics)
    return metrics


def validation_token_ids(path: Path, tokenizer, max_tokens: int) -> list[int]:
    """Texts tokenized and joined by EOS (as in training), cut at `max_tokens`."""
    if not path.is_file():
        raise FileNotFoundError(f"validation split not found: {path}")
    ids: list[int] = []
    with path.open(encoding="utf-8") as lines:
        for line in lines:
            if len(ids) >= max_tokens:
                break
            if line.strip():
                text = json.loads(line)["text"]
                ids += tokenizer(text, add_special_tokens=False).input_ids + [tokenizer.eos_token_id]
    if len(ids) < 2:
        raise ValueError(f"{path} has fewer than 2 tokens of text to score")
    return ids[:max_tokens]


def summed_nll(model, token_ids: list[int], window: int) -> tuple[float, int]:
    """Sum of next-token NLL over non-overlapping windows, and how many tokens were predicted."""
    import torch
    import torch.nn.functional as F

    total, count = 0.0, 0
    with torch.inference_mode():
        for begin in range(0, len(token_ids), window):
            chunk = torch.tensor([token_ids[begin:begin + window]])
            if chunk.shape[1] < 2:
                continue
            logits = model(chunk).logits[0, :-1]
            total += F.cross_entropy(logits.float(), chunk[0, 1:], reduction="sum").item()
            count += chunk.shape[1] - 1
    return total, count


def count_parameters(model) -> int:
    """Logical parameter count, tied weights once: the same for a model and its quantized or pruned
    copies (torchao's quantized tensors report the shape of the weight they stand for)."""
    return sum(p.numel() for p in model.parameters())


def latency_ms_per_token(model, tokenizer, config: EvaluationConfig) -> float:
    """Median over repeats of greedy decoding time per new token, after one warm-up run."""
    import torch

    ids = tokenizer(config.latency_prompt, return_tensors="pt", add_special_tokens=False).input_ids
    n = config.latency_new_tokens

    def timed_generate() -> float:
        start = time.perf_counter()
        with torch.inference_mode():
            # min_new_tokens: an early EOS would make a model look faster than it is.
            output = model.generate(ids, attention_mask=torch.ones_like(ids), max_new_tokens=n,
                                    min_new_tokens=n, do_sample=False, pad_token_id=tokenizer.pad_token_id)
        elapsed = time.perf_counter() - start
        if output.shape[1] != ids.shape[1] + n:
            raise RuntimeError(f"generate made {output.shape[1] - ids.shape[1]} tokens, not {n}")
        return 1000 * elapsed / n

    timed_generate()
    return statistics.median(timed_generate() for _ in range(config.latency_repeats))
