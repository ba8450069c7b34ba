"""Quality, size and speed of one model folder, measured the same way for every variant."""

from __future__ import annotations

import json
import logging
import math
import time
from pathlib import Path

from core.atomic import atomic_write_text
from core.models import folder_size_bytes, load_model
from evaluation.config import EvaluationConfig
from evaluation.tasks import REFERENCE_TEXT

VALIDATION_FILE = "validation.jsonl"
DEFAULT_WINDOW_TOKENS = 256

logger = logging.getLogger(__name__)


def run(config: EvaluationConfig, model_dir: Path, dataset_dir: Path, output_path: Path,
        canaries_file: Path | None = None) -> dict:
    """Measure the model in `model_dir`; write and return the metrics (one flat dict).

    quality: perplexity on `dataset_dir/validation.jsonl` (this run's data, this model's tokens),
    bits per byte on the shipped reference text (comparable across tokenizers and runs), task
    accuracy through lm-evaluation-harness ("<task>/acc", "<task>/acc_stderr", ...);
    speed and memory: see evaluation.speed; size on disk; with `canaries_file` (the list ingest
    inserted), each kind's exposure and extractions and its copies in the training split
    (evaluation.canaries; "canary/extracted" is what the promotion gate bounds).
    """
    from evaluation.speed import measure_in_child
    from evaluation.tasks import run_tasks

    start = time.perf_counter()
    model, tokenizer = load_model(model_dir)
    # Windows of at most eval_window_tokens: attention over a whole 8k context costs quadratic time
    # on CPU (35 s for 8,000 tokens of SmolLM2 against 16 in 1,024-token windows).
    window = min(getattr(model.config, "max_position_embeddings", None) or DEFAULT_WINDOW_TOKENS,
                 config.eval_window_tokens)
    token_ids = validation_token_ids(Path(dataset_dir) / VALIDATION_FILE, tokenizer, config.max_eval_tokens)
    total_nll, scored_tokens = summed_nll(model, token_ids, window)
    val_loss = total_nll / scored_tokens
    metrics = {
        "perplexity": math.exp(val_loss),
        "val_loss": val_loss,
        "eval_tokens": scored_tokens,
        "bits_per_byte": bits_per_byte(model, tokenizer, reference_text(config), window),
    }
    timings = {"quality": time.perf_counter() - start}
    for task, results in run_tasks(model, tokenizer, config.tasks, limit=config.task_limit,
                                   batch_size=config.task_batch_size).items():
        metrics.update({f"{task}/{name}": value for name, value in results.items()})
    timings["tasks"] = time.perf_counter() - start - timings["quality"]
    if canaries_file is not None:
        from evaluation import canaries as cn

        inserted = cn.read(canaries_file)
        metrics.update(cn.measure(model, tokenizer, inserted, samples=config.canary_samples))
        train_split = Path(dataset_dir) / "train.jsonl"
        if train_split.is_file():
            metrics.update({f"canary/{kind}/copies_in_train": float(n)
                            for kind, n in cn.copies_in(train_split, inserted).items()})
    metrics["num_parameters"] = count_parameters(model)
    del model
    metrics.update(measure_in_child(model_dir, config, REFERENCE_TEXT))
    metrics["size_bytes"] = folder_size_bytes(model_dir)
    metrics["eval_seconds"] = round(time.perf_counter() - start, 1)
    atomic_write_text(Path(output_path), json.dumps(metrics, indent=2))
    logger.info("evaluated %s in %.1f s (tasks %.1f s): %s", model_dir, metrics["eval_seconds"], timings["tasks"],
                metrics)
    return metrics


def reference_text(config: EvaluationConfig) -> str:
    text = REFERENCE_TEXT.read_text(encoding="utf-8")
    if config.reference_max_bytes is not None:
        text = text.encode()[:config.reference_max_bytes].decode(errors="ignore")
    return text


def bits_per_byte(model, tokenizer, text: str, window: int) -> float:
    """Summed NLL of every token of `text` (the first one after an EOS, each window starting on
    the previous window's last token) in bits, over the text's UTF-8 bytes."""
    import torch
    import torch.nn.functional as F

    ids = [tokenizer.eos_token_id] + tokenizer(text, add_special_tokens=False).input_ids
    total = 0.0
    with torch.inference_mode():
        for begin in range(0, len(ids) - 1, window - 1):
            chunk = torch.tensor([ids[begin:begin + window]])
            logits = model(chunk).logits[0, :-1]
            total += F.cross_entropy(logits.float(), chunk[0, 1:], reduction="sum").item()
    return total / math.log(2) / len(text.encode("utf-8"))


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
