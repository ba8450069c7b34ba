"""The compression stage: build every variant of a recipe set from a trained model folder.

Each variant is built from its parent's folder (the trained model, or another variant built
before it) by applying its steps in order, in memory where a step is a transform (prune,
quantize) and through the training stage where it trains (recover, distill). Its folder is
checked before it gets its final name: it must load back to the same logits, produce finite
logits and generate; a variant that fails any of these is never published.
"""

from __future__ import annotations

import json
import logging
import shutil
import time
from pathlib import Path

from pydantic import BaseModel

from compression.config import (
    BASE,
    CALIBRATED_KINDS,
    PRUNE_KINDS,
    QUANTIZE_KINDS,
    CompressionConfig,
    Distill,
    Recipe,
    Recover,
    SmoothQuant,
    SparseGPT,
    Wanda,
)
from core.atomic import atomic_dir
from core.models import folder_size_bytes, load_model, model_format, quantize, save_model
from core.stats import StageStats

# Logits of the reloaded folder must equal those of the in-memory model: anything else means the
# saved weights do not round-trip (a key dropped, a tie lost, a mask misread).
ROUND_TRIP_TOLERANCE = 1e-5
PROBE_TEXT = "It is a truth universally acknowledged"
WORK_DIR = ".work"
# Decoder matrices with at least this share of zeros are stored compressed (sparse-bitmask).
SPARSE_STORAGE_MIN = 0.05

logger = logging.getLogger(__name__)


class CompressionError(RuntimeError):
    """A recipe that cannot apply to this model, or a variant that failed its checks."""


class Variant(BaseModel):
    """A model folder derived from `parent` (the trained model is "base") by `steps`."""

    name: str
    path: Path
    parent: str = BASE
    format: str
    steps: list[dict]


def plan(config: CompressionConfig, model_dir: Path, has_data: bool, has_training: bool = True) -> dict[str, Recipe]:
    """The recipes, checked against the model's shape before any work: a 2:4 step needs layer
    widths divisible by 4, int4 widths divisible by its group size, a student fewer layers than
    its teacher; steps that calibrate or train need the dataset, and those that train a training
    config."""
    import torch
    from transformers import AutoConfig, AutoModelForCausalLM

    from compression.prune import check_shapes

    recipes = config.recipes()
    model_config = AutoConfig.from_pretrained(model_dir)
    with torch.device("meta"):  # the shapes without the weights
        skeleton = AutoModelForCausalLM.from_config(model_config)
    depth = {BASE: model_config.num_hidden_layers}
    for name, recipe in recipes.items():
        layers = depth[recipe.parent]
        for step in recipe.steps:
            try:
                if step.kind in PRUNE_KINDS:
                    check_shapes(skeleton, step)
                elif step.kind == "int4_weight_only":
                    from core.int4 import check_group_size

                    check_group_size(skeleton, step.group_size)
            except ValueError as exc:
                raise CompressionError(f"compression.variants.{name}: {exc}") from None
            if isinstance(step, Distill):
                if step.layers >= layers:
                    raise CompressionError(f"compression.variants.{name}: distill to {step.layers} layers needs a "
                                           f"teacher with more; it has {layers}")
                layers = step.layers
            if (step.kind in CALIBRATED_KINDS or isinstance(step, (Recover, Distill))) and not has_data:
                raise CompressionError(f"compression.variants.{name}: {step.kind} needs a dataset "
                                       "(train.jsonl of a curated split: --dataset)")
            if isinstance(step, (Recover, Distill)) and not has_training:
                raise CompressionError(f"compression.variants.{name}: {step.kind} needs a training config "
                                       "(the profile's `training`)")
        depth[name] = layers
    return recipes


def run(config: CompressionConfig, model_dir: Path, output_root: Path, dataset_dir: Path | None = None,
        training=None) -> list[Variant]:
    """Write one folder per variant under `output_root/<name>`, plus `<output_root>.stats.json`.

    dataset_dir: a curated split (train.jsonl, validation.jsonl) for calibration and training
    steps; training: the TrainingConfig whose ranks, device and precision those steps use."""
    model_dir, output_root = Path(model_dir), Path(output_root)
    recipes = plan(config, model_dir, has_data=dataset_dir is not None, has_training=training is not None)
    base_size = folder_size_bytes(model_dir)
    stats = StageStats(stage="compression", records_in=1, bytes_in=base_size)
    variants = []
    with stats.timed():
        for name, recipe in recipes.items():
            source = model_dir if recipe.parent == BASE else output_root / recipe.parent
            work = output_root / WORK_DIR / name
            variant = build_variant(name, recipe, source, output_root / name, work, dataset_dir, training)
            shutil.rmtree(work, ignore_errors=True)
            size = folder_size_bytes(variant.path)
            stats.bytes_out += size
            stats.extra[f"{name}.size_ratio"] = round(size / base_size, 4)
            for index, report in enumerate(variant.steps):
                for key, value in report.items():
                    if isinstance(value, (int, float)):
                        stats.extra[f"{name}.{index}.{report['step']}.{key}"] = value
            logger.info("%s: %s, %s, %d bytes (%.1f%% of base)", name, variant.path, variant.format, size,
                        100 * size / base_size)
            variants.append(variant)
    shutil.rmtree(output_root / WORK_DIR, ignore_errors=True)
    stats.records_out = len(variants)
    stats.write(output_root)
    return variants


def build_variant(name: str, recipe: Recipe, source: Path, output: Path, work: Path, dataset_dir, training) -> Variant:
    model, tokenizer = load_model(source)
    # A plain HF folder holding `model` as it is now, which training steps start from; None once a
    # step changed the model, or when the parent is stored in another format.
    saved = source if model_format(source) == "hf" else None
    # The model the chain starts from, which a recover step with alpha > 0 distills from.
    teacher = saved
    if teacher is None and any(isinstance(step, Recover) and step.alpha > 0 for step in recipe.steps):
        teacher = work / "teacher"
        shutil.rmtree(teacher, ignore_errors=True)
        save_model(model, tokenizer, teacher, "hf")
    reports = []
    for index, step in enumerate(recipe.steps):
        started = time.perf_counter()
        before = probe_logits(model, tokenizer)
        if step.kind in QUANTIZE_KINDS:
            if step.kind == "int4_weight_only" and decoder_sparsity(model) >= SPARSE_STORAGE_MIN:
                logger.warning("%s: int4 after pruning: an asymmetric 4-bit grid has no exact zero, so the pruned "
                               "weights become small nonzero ones (Wanda 50%% -> int4 measured +27%% perplexity, "
                               "-> int8 +0.4%%); int8_weight_only keeps them", name)
            options = step.model_dump(exclude={"kind", "calibration_samples", "calibration_seq_len"})
            if step.kind in CALIBRATED_KINDS:
                options["calibration_blocks"] = calibration_blocks(dataset_dir, tokenizer, step)
            quantize(model, step.kind, **options)
            report = {}
        elif step.kind == "bf16_weights":
            report = {"rounded_tensors": round_to_bf16(model)}
        elif step.kind in PRUNE_KINDS:
            from compression.prune import prune

            blocks = calibration_blocks(dataset_dir, tokenizer, step) if step.kind in CALIBRATED_KINDS else None
            report = prune(model, step, blocks)
        else:
            from compression.train import train_step

            if saved is None:
                saved = work / f"{index}-input"
                shutil.rmtree(saved, ignore_errors=True)
                save_model(model, tokenizer, saved, "hf")
            trained, report = train_step(step, saved, work / f"{index}-{step.kind}", dataset_dir, training, teacher)
            model, tokenizer = load_model(trained)
        after = probe_logits(model, tokenizer)
        if not bool(after.isfinite().all()):
            raise CompressionError(f"variant {name}: step {index} ({step.kind}) produced non-finite logits; "
                                   "nothing was published")
        report = {"step": step.kind, **report, "seconds": round(time.perf_counter() - started, 2)}
        if after.shape == before.shape:  # a student's logits still compare: same vocabulary
            report["max_abs_logit_diff"] = (after - before).abs().max().item()
            report["mean_abs_logit_diff"] = (after - before).abs().mean().item()
        logger.info("%s step %d %s: %s", name, index, step.kind,
                    ", ".join(f"{k}={v:.4g}" if isinstance(v, float) else f"{k}={v}" for k, v in report.items()))
        reports.append(report)
        saved = trained if step.kind in ("recover", "distill") else None
    fmt = storage_format(model, recipe)
    quantization = recipe.quantization
    storage_dtype = "bfloat16" if any(step.kind == "bf16_weights" for step in recipe.steps) else None
    # The manifest names the quantization and its options: what load_model needs to rebuild it.
    publish(model, tokenizer, output, fmt, name=name, parent=recipe.parent, steps=reports,
            recipe=[step.model_dump() for step in recipe.steps], storage_dtype=storage_dtype,
            **({"quantization": quantization.kind, **quantization.model_dump(exclude={"kind"})} if quantization else {}))
    return Variant(name=name, path=output, parent=recipe.parent, format=fmt, steps=reports)


def storage_format(model, recipe: Recipe) -> str:
    if recipe.quantized:
        from core.models import QUANTIZED_FORMATS

        return QUANTIZED_FORMATS[recipe.quantization.kind]
    return "sparse-bitmask" if decoder_sparsity(model) >= SPARSE_STORAGE_MIN else "hf"


def round_to_bf16(model) -> int:
    """Round every float parameter to the nearest bfloat16, in place (kept in float32 tensors, so
    the model computes as before); the folder then stores them in bfloat16 without loss."""
    import torch

    rounded = 0
    with torch.no_grad():
        for parameter in model.parameters():
            if parameter.is_floating_point():
                parameter.copy_(parameter.to(torch.bfloat16).to(parameter.dtype))
                rounded += 1
    return rounded


def decoder_sparsity(model) -> float:
    """The share of zeros in the decoder's Linear weights (what pruning zeroes)."""
    from compression.prune import prunable_layers

    layers = prunable_layers(model).values()
    return sum(int((layer.weight == 0).sum()) for layer in layers) / sum(layer.weight.numel() for layer in layers)


def publish(model, tokenizer, output: Path, fmt: str, name: str, **manifest) -> None:
    """Save, then check the folder before it gets its final name: a variant that does not load
    back exactly, or cannot generate, must never look like a finished artifact."""
    expected = probe_logits(model, tokenizer)
    with atomic_dir(output) as folder:
        save_model(model, tokenizer, folder, fmt, **{key: value for key, value in manifest.items() if value is not None})
        reloaded, reloaded_tokenizer = load_model(folder)
        error = (probe_logits(reloaded, reloaded_tokenizer) - expected).abs().max().item()
        if not error <= ROUND_TRIP_TOLERANCE:  # NaN fails too
            raise CompressionError(f"variant {name}: the {fmt} folder does not load back to the same model "
                                   f"(max |logit diff| {error:.3g}); nothing was published")
        check_generates(reloaded, reloaded_tokenizer, name)


def probe_logits(model, tokenizer):
    import torch

    ids = tokenizer(PROBE_TEXT, return_tensors="pt", add_special_tokens=False).input_ids
    with torch.inference_mode():
        return model(ids).logits.float()


def check_generates(model, tokenizer, name: str) -> None:
    import torch

    ids = tokenizer(PROBE_TEXT, return_tensors="pt", add_special_tokens=False).input_ids
    with torch.inference_mode():
        output = model.generate(ids, attention_mask=torch.ones_like(ids), max_new_tokens=2,
                                min_new_tokens=2, do_sample=False, pad_token_id=tokenizer.pad_token_id)
    if output.shape[1] != ids.shape[1] + 2:
        raise CompressionError(f"variant {name}: generated {output.shape[1] - ids.shape[1]} tokens instead of 2")


def calibration_blocks(dataset_dir: Path, tokenizer, step: Wanda | SparseGPT | SmoothQuant | Distill) -> list:
    """`calibration_samples` blocks of `calibration_seq_len` tokens from the curated train split:
    its documents in order, joined by EOS as training packs them."""
    import torch

    needed = step.calibration_samples * step.calibration_seq_len
    ids: list[int] = []
    with open(Path(dataset_dir) / "train.jsonl", encoding="utf-8") as lines:
        for line in lines:
            if line.strip():
                ids += tokenizer(json.loads(line)["text"], add_special_tokens=False).input_ids + [tokenizer.eos_token_id]
            if len(ids) >= needed:
                break
    blocks = [torch.tensor([ids[start:start + step.calibration_seq_len]])
              for start in range(0, len(ids) - step.calibration_seq_len + 1, step.calibration_seq_len)]
    if not blocks:
        raise CompressionError(f"{step.kind}: {dataset_dir}/train.jsonl has fewer than {step.calibration_seq_len} tokens "
                               "to calibrate on")
    if len(blocks) < step.calibration_samples:
        logger.warning("%s: calibrating on %d blocks, not %d: the train split is that short",
                       step.kind, len(blocks), step.calibration_samples)
    return blocks[:step.calibration_samples]


def describe(variants: list[Variant]) -> str:
    """One line per variant: its chain and what each step cost."""
    from compression.report import step_label

    lines = []
    for variant in variants:
        steps = " -> ".join(step_label(report) for report in variant.steps)
        lines.append(f"{variant.name}: {variant.parent} -> {steps} [{variant.format}]")
    return "\n".join(lines)
