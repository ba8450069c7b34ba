"""The model artifact: a HF causal-LM folder plus `conveyor.json` naming its format.

Formats
- "hf": config.json + model.safetensors + tokenizer files; `from_pretrained` loads it as is.
- "sparse-bitmask": config.json + tokenizer files + `model.safetensors` in which every matrix
  with zeros worth compressing (a pruned model's) is stored as `<name>.bitmask` (the nonzero
  positions, 8 per byte, row by row), `<name>.values` (the nonzero values in that order) and
  `<name>.shape`: the layout of compressed-tensors' sparse-bitmask format, so 50% sparsity halves
  those matrices on disk. Loading rebuilds the dense float model, zeros in place.
- "int8": config.json + tokenizer files + `model.safetensors` in which every Linear layer of the
  decoder (and, with manifest "embeddings": true, the input embedding and the output layer, one
  matrix when tied) is `<name>.qdata` (int8) and `<name>.scale` (float32 per output row), the rest
  float: the int8 weight-only layers of core/int8.py, quantized by torchao, run by PyTorch's
  int8 CPU kernel (why, with numbers: core/int8.py).
- "int4": as "int8", with every decoder Linear layer stored as `<name>.qweight` (4-bit values,
  two a byte) and `<name>.scale_and_zero` (bfloat16, per group of manifest "group_size" inputs):
  core/int4.py's layers, run by PyTorch's int4 CPU kernel; embedding and output layer int8 with
  manifest "embeddings": true.
- "torchao": config.json + tokenizer files + `quantized.pt`, the state dict of the model after
  torchao's `quantize_` (manifest key "quantization": int8_dynamic, or smoothquant with its
  "alpha" and "activations") on its decoder Linear layers
  (the output layer stays float, tied to the embedding). Loading builds the architecture from
  config.json, quantizes it the same way, then assigns the stored quantized tensors.
  torchao's tensor subclasses are registered as safe globals, so `weights_only` loading works.

Loading builds every format but "hf" (which `from_pretrained` loads) on meta tensors and assigns
the stored ones (`_empty_model`, `_assign`): no float model is built to be thrown away.

Every stage that loads a model (evaluation, serving, compression) goes through `load_model`, and
every writer of a variant through `save_model`, so a new format is added here once.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path

# torchao, imported by transformers as soon as it is installed, logs a warning per CUDA kernel
# library it cannot load (mxfp8, cutlass for sm90a) and torch one per enum torchao registers with
# pytree: noise on every CPU run, and nothing a user can act on.
for _noisy in ("torchao", "torch.utils._pytree"):
    logging.getLogger(_noisy).setLevel(logging.ERROR)

MANIFEST = "conveyor.json"
WEIGHTS = "model.safetensors"
QUANTIZED_WEIGHTS = "quantized.pt"
FORMATS = ("hf", "sparse-bitmask", "int8", "int4", "torchao")


def read_manifest(folder: Path) -> dict:
    path = Path(folder) / MANIFEST
    if not path.is_file():
        raise FileNotFoundError(f"{folder} is not a Conveyor model folder (no {MANIFEST})")
    return json.loads(path.read_text())


def model_format(folder: Path) -> str:
    """The folder's format; a plain HF folder without conveyor.json (a user's own model given to
    `conveyor compress`) is "hf"."""
    folder = Path(folder)
    if not (folder / MANIFEST).is_file() and (folder / "config.json").is_file():
        return "hf"
    return read_manifest(folder)["format"]


def write_manifest(folder: Path, fmt: str, **extra) -> None:
    from core.atomic import atomic_write_text

    atomic_write_text(Path(folder) / MANIFEST, json.dumps({"format": fmt, **extra}, indent=2))


# The model card and its picture (evaluation/card.py) travel in the folder but are not the model.
DOCUMENTATION_FILES = {"README.md", "loss_curve.png"}


def folder_size_bytes(folder: Path) -> int:
    return sum(p.stat().st_size for p in Path(folder).rglob("*") if p.is_file() and p.name not in DOCUMENTATION_FILES)


def decoder_linears(model) -> dict:
    """name -> Linear for every Linear layer except the output layer: the attention and MLP
    projections that pruning and the weight-only quantizations act on."""
    import torch

    head = model.get_output_embeddings()
    return {name: module for name, module in model.named_modules()
            if isinstance(module, torch.nn.Linear) and module is not head}


def replace_module(model, name: str, module) -> None:
    parent, _, child = name.rpartition(".")
    setattr(model.get_submodule(parent), child, module)


QUANTIZED_FORMATS = {"int8_weight_only": "int8", "int4_weight_only": "int4", "int8_dynamic": "torchao",
                     "smoothquant": "torchao"}


def quantize(model, kind: str, **options):
    """Quantize `model` in place (compression.config's QUANTIZE_KINDS, `options` those of its
    step); the format that stores it is QUANTIZED_FORMATS[kind].

    int8_weight_only: core/int8.py's layers, on the decoder's Linear layers and, with
    `embeddings`, on the embedding and output layer too. int4_weight_only: core/int4.py's, with
    `group_size`, `algorithm` and `embeddings` (int8). For both, `empty=True` builds the layers'
    shapes only (on the meta device), for a folder's weights to be assigned. smoothquant: torchao's
    SmoothQuantConfig with `alpha` and `activations` over int8 weights, calibrated on
    `calibration_blocks` (without them: the quantized layers' structure, for a folder's weights).
    int8_dynamic: torchao's Int8DynamicActivationInt8WeightConfig on the Linear layers except an
    output layer tied to the embedding: quantizing that would store a second, int8 copy of the
    embedding matrix (for SmolLM2 28M of its 135M weights) instead of sharing it."""
    if kind == "int8_weight_only":
        from core.int8 import quantize_model

        quantize_model(model, embeddings=options.get("embeddings", False), empty=options.get("empty", False))
        return model
    if kind == "int4_weight_only":
        from core.int4 import quantize_model

        quantize_model(model, **options)
        return model
    if kind not in ("int8_dynamic", "smoothquant"):
        raise ValueError(f"unknown quantization {kind!r}; known: {', '.join(QUANTIZED_FORMATS)}")
    import torch
    from torchao.quantization import Int8DynamicActivationInt8WeightConfig, quantize_

    tied_head = _tied_head(model)

    def linear(module, _name):
        return isinstance(module, torch.nn.Linear) and module is not tied_head

    if kind == "int8_dynamic":
        quantize_(model, Int8DynamicActivationInt8WeightConfig(), filter_fn=linear)
        return model
    _smoothquant(model, linear, **options)
    return model


def _smoothquant(model, linear, alpha: float, activations: str, calibration_blocks=None) -> None:
    import torch
    from torchao.prototype.smoothquant import SmoothQuantConfig
    from torchao.quantization import (
        Int8DynamicActivationInt8WeightConfig,
        Int8StaticActivationInt8WeightConfig,
        quantize_,
    )
    from torchao.quantization.granularity import PerRow, PerTensor

    def config(step: str) -> SmoothQuantConfig:
        base = (Int8DynamicActivationInt8WeightConfig() if activations == "per_token"
                else Int8StaticActivationInt8WeightConfig(granularity=[PerTensor(), PerRow()]))
        return SmoothQuantConfig(base, step=step, alpha=alpha)

    if calibration_blocks is None:  # load_model: the layers' structure; the stored tensors replace theirs
        quantize_(model, config("prepare_for_loading"), filter_fn=linear)
        return
    quantize_(model, config("prepare"), filter_fn=linear)  # observers record each input channel's range
    with torch.inference_mode():
        for block in calibration_blocks:
            model(input_ids=block)
    quantize_(model, config("convert"), filter_fn=lambda module, _name: hasattr(module, "obs"))


def _tied_head(model):
    """The output layer when it shares its weight with the input embedding, else None."""
    head = model.get_output_embeddings()
    return head if head is not None and head.weight is model.get_input_embeddings().weight else None


def _state_dict_without_tied_head(model) -> dict:
    """The state dict with a tied output weight left out (it is the embedding): safetensors
    refuses shared tensors, and `_assign` ties it again."""
    state = dict(model.state_dict())
    head = _tied_head(model)
    if head is not None:
        head_name = next(name for name, module in model.named_modules() if module is head)
        del state[f"{head_name}.weight"]
    return state


def _empty_model(folder: Path):
    """The folder's architecture with its parameters on the meta device and its buffers real (the
    rotary frequencies are computed from the config, not stored): no memory and no random
    initialization spent on weights that loading replaces (`_assign`). Building the float model
    first cost an int8 SmolLM2 1.3 GiB above the imports where its weights are 133 MB; now 0.3
    (benchmarks/load_bench.py)."""
    import torch
    from accelerate import init_empty_weights  # accelerate: a dependency of peft and of transformers' GGUF loading
    from transformers import AutoConfig, AutoModelForCausalLM

    with init_empty_weights(include_buffers=False):
        model = AutoModelForCausalLM.from_config(AutoConfig.from_pretrained(folder), dtype=torch.float32)
    model.tie_weights()  # from_config on the meta device leaves a tied output layer untied
    return model


def _assign(model, state: dict, folder: Path) -> None:
    """Make the stored tensors `model`'s own (load_state_dict's assign: no copy; they must be in
    aligned memory, as read_tensors and torch.load give them) and keep the tensors several modules
    share shared: assign replaces the one under the key the file holds (a tied output layer's is
    left out, `shared_keys`), and its twins are pointed at it."""
    import itertools

    first: dict[int, tuple] = {}
    twins = []  # ((module, attribute), (module it shares with, attribute))
    for name, module in model.named_modules():
        for attribute, tensor in itertools.chain(module._parameters.items(), module._buffers.items()):
            if tensor is None:
                continue
            if id(tensor) in first:
                twins.append(((name, attribute), first[id(tensor)]))
            else:
                first[id(tensor)] = (name, attribute)
    missing, unexpected = model.load_state_dict(state, strict=False, assign=True)
    for (name, attribute), (source, source_attribute) in twins:
        setattr(model.get_submodule(name), attribute, getattr(model.get_submodule(source), source_attribute))
    shared = {f"{name}.{attribute}".lstrip(".") for (name, attribute), _ in twins}
    empty = [name for name, tensor in itertools.chain(model.named_parameters(), model.named_buffers())
             if tensor.is_meta]
    if set(missing) - shared or unexpected or empty:
        raise ValueError(f"{folder}: weights do not fit the architecture: missing {(missing or empty)[:3]}, "
                         f"unexpected {unexpected[:3]}")


def sparse_encode(state: dict, storage_dtype=None) -> dict:
    """Matrices with enough zeros as bitmask + values + shape; the rest as they are. A matrix is
    compressed where that is smaller: over 1 in 32 zeros for float32 (the mask costs 1 bit a weight).
    `storage_dtype` (bfloat16): float tensors stored in it (weights already rounded to it)."""
    import numpy as np
    import torch

    encoded = {}
    for name, tensor in state.items():
        tensor = tensor.contiguous()
        if storage_dtype is not None and tensor.is_floating_point():
            tensor = tensor.to(storage_dtype)
        if tensor.dim() == 2 and tensor.is_floating_point():
            nonzero = tensor != 0
            zeros = tensor.numel() - int(nonzero.sum())
            if zeros * tensor.element_size() * 8 > tensor.numel():
                encoded[f"{name}.bitmask"] = torch.from_numpy(np.packbits(nonzero.numpy(), axis=1))
                encoded[f"{name}.values"] = tensor[nonzero]
                encoded[f"{name}.shape"] = torch.tensor(tensor.shape, dtype=torch.int64)
                continue
        encoded[name] = tensor
    return encoded


def sparse_decode(encoded, dtype=None) -> dict:
    """The dense state of `sparse_encode`'s, from a dict or from (name, tensor) pairs in name order
    (`read_tensors`: a matrix's .bitmask, .shape and .values come together, so only one matrix's
    parts are held at a time); `dtype`: its float tensors in that dtype."""
    import numpy as np
    import torch

    state, parts = {}, {}
    for name, tensor in (encoded.items() if isinstance(encoded, dict) else encoded):
        base, _, part = name.rpartition(".")
        if part not in ("bitmask", "shape", "values"):
            state[name] = tensor.to(dtype) if dtype is not None and tensor.is_floating_point() else tensor
            continue
        parts.setdefault(base, {})[part] = tensor
        if len(parts[base]) < 3:
            continue
        matrix = parts.pop(base)
        bitmask, shape, values = matrix["bitmask"], matrix["shape"], matrix["values"]
        rows, columns = shape.tolist()
        mask = torch.from_numpy(np.unpackbits(bitmask.numpy(), axis=1, count=columns).astype(bool))
        dense = torch.zeros((rows, columns), dtype=dtype or values.dtype)
        dense[mask] = values.to(dense.dtype)
        state[base] = dense
    if parts:
        raise ValueError(f"a sparse matrix's parts are missing: {sorted(parts)[:3]}")
    return state


# safetensors' dtype names (its format: an 8-byte little-endian header length, a JSON header of
# name -> dtype, shape and byte offsets, then the data)
_SAFETENSORS_DTYPES = {"F64": "float64", "F32": "float32", "F16": "float16", "BF16": "bfloat16", "I64": "int64",
                       "I32": "int32", "I16": "int16", "I8": "int8", "U8": "uint8", "BOOL": "bool"}


def read_tensors(path: Path):
    """(name, tensor) of a safetensors file in name order, each read from the file into memory of
    its own from PyTorch's allocator. Why not safetensors' load_file: it returns every tensor 8
    bytes past a 64-byte boundary (0.8), on which PyTorch's int8 CPU kernel crashes (at a batch of
    4 rows, not at 1), and copying them to aligned memory held the file twice; its mmap'd
    safe_open adds the file's pages to the process's resident memory. Read this way, loading an int8
    SmolLM2 peaks at the size of its weights over the imports (benchmarks/load_bench.py)."""
    import json
    import struct

    import torch

    with open(path, "rb") as file:
        try:
            (length,) = struct.unpack("<Q", file.read(8))
            header = json.loads(file.read(length))
            header.pop("__metadata__", None)
            dtypes = {name: getattr(torch, _SAFETENSORS_DTYPES[info["dtype"]]) for name, info in header.items()}
        except (struct.error, ValueError, KeyError, TypeError, AttributeError) as error:
            raise ValueError(f"{path}: not a safetensors file this version reads ({type(error).__name__})") from None
        for name in sorted(header):
            info = header[name]
            begin, end = info["data_offsets"]
            tensor = torch.empty(info["shape"], dtype=dtypes[name])
            raw = tensor.reshape(-1).view(torch.uint8)  # bfloat16 has no numpy type: read its bytes
            file.seek(8 + length + begin)
            if raw.numel() != end - begin or file.readinto(memoryview(raw.numpy())) != end - begin:
                raise ValueError(f"{path}: {name} is truncated or does not match its shape")
            yield name, tensor


def save_model(model, tokenizer, folder: Path, fmt: str, **manifest) -> None:
    """Write `model` (float, pruned, or quantized by `quantize`) and its tokenizer in `fmt`."""
    import torch

    folder = Path(folder)
    # bf16_weights (compression): weights rounded to bfloat16, stored in it; loaded back as float32.
    storage_dtype = {"bfloat16": torch.bfloat16, None: None}[manifest.get("storage_dtype")]
    if fmt == "hf":
        state = None
        if storage_dtype is not None:
            state = {key: value.to(storage_dtype) if value.is_floating_point() else value
                     for key, value in _state_dict_without_tied_head(model).items()}
        model.save_pretrained(folder, safe_serialization=True, state_dict=state)
    elif fmt == "sparse-bitmask":
        from safetensors.torch import save_file

        model.config.save_pretrained(folder)
        save_file(sparse_encode(_state_dict_without_tied_head(model), storage_dtype), folder / WEIGHTS,
                  metadata={"format": "pt"})
    elif fmt in ("int8", "int4"):
        from safetensors.torch import save_file

        from core.int8 import shared_keys

        model.config.save_pretrained(folder)
        repeats = set(shared_keys(model))
        state = {key: tensor.contiguous() for key, tensor in model.state_dict().items() if key not in repeats}
        save_file(state, folder / WEIGHTS, metadata={"format": "pt"})
    elif fmt == "torchao":
        if "quantization" not in manifest:
            raise ValueError("a torchao folder needs manifest['quantization'] (the config to load it with)")
        model.config.save_pretrained(folder)
        torch.save(model.state_dict(), folder / QUANTIZED_WEIGHTS)
    else:
        raise ValueError(f"unknown model format {fmt!r}; known: {', '.join(FORMATS)}")
    tokenizer.save_pretrained(folder)
    write_manifest(folder, fmt, **manifest)


def load_model(folder: Path):
    """Return (model, tokenizer) in eval mode on CPU, whatever the folder's format."""
    import torch
    from transformers import AutoConfig, AutoModelForCausalLM, AutoTokenizer

    folder = Path(folder)
    fmt = model_format(folder)
    tokenizer = AutoTokenizer.from_pretrained(folder)
    if fmt == "hf":
        model = AutoModelForCausalLM.from_pretrained(folder, dtype=torch.float32)
    elif fmt == "sparse-bitmask":
        model = _empty_model(folder)
        _assign(model, sparse_decode(read_tensors(folder / WEIGHTS), dtype=torch.float32), folder)
    elif fmt in ("int8", "int4"):
        manifest = read_manifest(folder)
        model = _empty_model(folder)
        if fmt == "int8":
            quantize(model, "int8_weight_only", embeddings=manifest.get("embeddings", False), empty=True)
        else:
            quantize(model, "int4_weight_only", group_size=manifest["group_size"],
                     embeddings=manifest.get("embeddings", False), empty=True)
        _assign(model, dict(read_tensors(folder / WEIGHTS)), folder)
    elif fmt == "torchao":
        manifest = read_manifest(folder)
        kind = manifest["quantization"]
        if QUANTIZED_FORMATS.get(kind) != "torchao":
            raise ValueError(f"{folder}: a torchao folder of {kind} is no longer loaded (int8 weight-only is now the "
                             "faster int8 format); compress the model again")
        options = {key: manifest[key] for key in ("alpha", "activations") if kind == "smoothquant"}
        # torchao's layers, on meta tensors; SmoothQuant's wrapper copies the float weights it wraps,
        # so it needs real ones (random: the stored tensors replace them).
        skeleton = (_empty_model(folder) if kind == "int8_dynamic" else
                    AutoModelForCausalLM.from_config(AutoConfig.from_pretrained(folder), dtype=torch.float32))
        model = quantize(skeleton, kind, **options)
        # weights_only: a served bento must not run pickled code; torchao's tensors are safe globals.
        state = torch.load(folder / QUANTIZED_WEIGHTS, map_location="cpu", weights_only=True)
        _assign(model, state, folder)
    elif fmt == "int8-dynamic":
        raise ValueError(f"{folder}: format int8-dynamic (torch.ao quantize_dynamic) is no longer loaded: it cost "
                         "SmolLM2 3x its perplexity; compress the model again (variant int8: [int8_weight_only])")
    else:
        raise ValueError(f"{folder}: unknown model format {fmt!r}; known: {', '.join(FORMATS)}")
    model.eval()
    return model, tokenizer
