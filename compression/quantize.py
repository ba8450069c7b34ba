"""int8 dynamic quantization of a HF-format model folder into an "int8-dynamic" folder."""

from __future__ import annotations

import logging
from pathlib import Path

from core.atomic import atomic_dir
from core.models import QUANTIZED_WEIGHTS, load_model, quantize_int8_dynamic, write_manifest

# Logits of the reloaded folder must equal those of the in-memory quantized model: anything else
# means the saved state dict does not round-trip (a key dropped, a tie lost).
ROUND_TRIP_TOLERANCE = 1e-5
PROBE_TEXT = "It is a truth universally acknowledged"

logger = logging.getLogger(__name__)


def probe_logits(model, tokenizer):
    import torch

    ids = tokenizer(PROBE_TEXT, return_tensors="pt", add_special_tokens=False).input_ids
    with torch.inference_mode():
        return model(ids).logits


def write_int8_dynamic(model_dir: Path, output_dir: Path, parent: str) -> dict[str, float]:
    """Quantize `model_dir` into `output_dir` (atomically); return the logit error it costs."""
    import torch

    model, tokenizer = load_model(model_dir)
    quantized = quantize_int8_dynamic(model)
    with atomic_dir(output_dir) as folder:
        torch.save(quantized.state_dict(), folder / QUANTIZED_WEIGHTS)
        model.config.save_pretrained(folder)
        tokenizer.save_pretrained(folder)
        write_manifest(folder, "int8-dynamic", parent=parent, method="int8_dynamic")
        # Check the folder before it gets its final name: a variant that does not load back
        # exactly, or cannot generate, must never look like a finished artifact.
        reloaded, reloaded_tokenizer = load_model(folder)
        reloaded_logits = probe_logits(reloaded, reloaded_tokenizer)
        round_trip_error = (reloaded_logits - probe_logits(quantized, tokenizer)).abs().max().item()
        if round_trip_error > ROUND_TRIP_TOLERANCE:
            raise RuntimeError(f"int8 state dict does not round-trip: max |logit diff| {round_trip_error:.3g}")
        check_generates(reloaded, reloaded_tokenizer)
    logit_error = (reloaded_logits - probe_logits(model, tokenizer)).abs().max().item()
    logger.info("int8_dynamic: max |logit diff| vs float model %.4f", logit_error)
    return {"max_abs_logit_diff": logit_error}


def check_generates(model, tokenizer) -> None:
    import torch

    ids = tokenizer(PROBE_TEXT, return_tensors="pt", add_special_tokens=False).input_ids
    with torch.inference_mode():
        output = model.generate(ids, attention_mask=torch.ones_like(ids), max_new_tokens=2,
                                min_new_tokens=2, do_sample=False, pad_token_id=tokenizer.pad_token_id)
    if output.shape[1] != ids.shape[1] + 2:
        raise RuntimeError(f"int8 model generated {output.shape[1] - ids.shape[1]} tokens instead of 2")
