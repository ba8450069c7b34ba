"""The model artifact: a HF causal-LM folder plus `conveyor.json` naming its format.

Formats
- "hf": config.json + model.safetensors + tokenizer files; `from_pretrained` loads it as is.
- "int8-dynamic": config.json + tokenizer files + `quantized.pt`, the state dict of the model
  after `torch.ao.quantization.quantize_dynamic` on its Linear layers. Loading rebuilds the
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
    import torch
    from torch.ao.quantization import quantize_dynamic

    # lm_head is tied to the embedding in our models; quantizing it would untie and copy it.
    quantized = quantize_dynamic(model, {torch.nn.Linear}, dtype=torch.qint8)
    return quantized


def load_model(folder: Path):
    """Return (model, tokenizer) in eval mode on CPU, whatever the folder's format."""
    import torch
    from transformers import AutoConfig, AutoModelForCausalLM, AutoTokenizer

    folder = Path(folder)
    fmt = read_manifest(folder)["format"]
    tokenizer = AutoTokenizer.from_pretrained(folder)
    if fmt == "hf":
        model = AutoModelForCausalLM.from_pretrained(folder, torch_dtype=torch.float32)
    elif fmt == "int8-dynamic":
        config = AutoConfig.from_pretrained(folder)
        model = quantize_int8_dynamic(AutoModelForCausalLM.from_config(config))
        state = torch.load(folder / QUANTIZED_WEIGHTS, map_location="cpu", weights_only=False)
        model.load_state_dict(state)
    else:
        raise ValueError(f"{folder}: unknown model format {fmt!r}")
    model.eval()
    return model, tokenizer
