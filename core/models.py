"""The model artifact: a HF causal-LM folder plus `conveyor.json` naming its format.

Formats
- "hf": config.json + model.safetensors + tokenizer files; `from_pretrained` loads it as is.
- "int8-dynamic": config.json + tokenizer files + `quantized.pt`, the state dict of the model
  after `torch.ao.quantization.quantize_dynamic` on its Linear layers (a Linear tied to
  the embedding stays float and tied). Loading rebuilds the
  float architecture from config.json, applies the same quantization, then loads the weights.

Every stage that loads a model (evaluation, serving) goes through `load_model`, so a new format
is added here once.
"""

from __future__ import annotations

import json
from pathlib import Path

MANIFEST = "conveyor.json"
QUANTIZED_WEIGHTS = "quantized.pt"


def read_manifest(folder: Path) -> dict:
    path = Path(folder) / MANIFEST
    if not path.is_file():
        raise FileNotFoundError(f"{folder} is not a Conveyor model folder (no {MANIFEST})")
    return json.loads(path.read_text())


def write_manifest(folder: Path, fmt: str, **extra) -> None:
    from core.atomic import atomic_write_text

    atomic_write_text(Path(folder) / MANIFEST, json.dumps({"format": fmt, **extra}, indent=2))


def folder_size_bytes(folder: Path) -> int:
    return sum(p.stat().st_size for p in Path(folder).rglob("*") if p.is_file())


def quantize_int8_dynamic(model):
    """A quantized copy of `model`: every Linear to int8, except one tied to the embedding."""
    import torch
    from torch.ao.quantization import default_dynamic_qconfig, quantize_dynamic

    # A tied lm_head shares its weight with the embedding, which stays fp32 (quantize_dynamic only
    # touches Linear). Quantizing the head would store a second, int8 copy of that matrix: a bigger
    # file and a larger logit error than keeping it tied (measured: 252 KB vs 220 KB state dict,
    # max |logit diff| 0.016 vs 0.011 on the tiny test Llama). The state dict then holds the shared
    # tensor once, and `load_model` re-ties it by loading it into a model built with ties.
    embedding = model.get_input_embeddings().weight
    targets = {
        name: default_dynamic_qconfig
        for name, module in model.named_modules()
        if isinstance(module, torch.nn.Linear) and module.weight is not embedding
    }
    return quantize_dynamic(model, targets, dtype=torch.qint8)


def load_model(folder: Path):
    """Return (model, tokenizer) in eval mode on CPU, whatever the folder's format."""
    import torch
    from transformers import AutoConfig, AutoModelForCausalLM, AutoTokenizer

    folder = Path(folder)
    fmt = read_manifest(folder)["format"]
    tokenizer = AutoTokenizer.from_pretrained(folder)
    if fmt == "hf":
        model = AutoModelForCausalLM.from_pretrained(folder, dtype=torch.float32)
    elif fmt == "int8-dynamic":
        config = AutoConfig.from_pretrained(folder)
        model = quantize_int8_dynamic(AutoModelForCausalLM.from_config(config))
        # weights_only: a served bento must not run pickled code; packed int8 params load fine.
        state = torch.load(folder / QUANTIZED_WEIGHTS, map_location="cpu", weights_only=True)
        model.load_state_dict(state)
    else:
        raise ValueError(f"{folder}: unknown model format {fmt!r}")
    model.eval()
    return model, tokenizer
