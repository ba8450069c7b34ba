"""int8 weight-only layers for inference: weights stored int8, one float32 scale per output row.

torchao quantizes (its `Int8Tensor.from_hp`, per row, symmetric: the numbers of its
`Int8WeightOnlyConfig`); these modules only run the result. Why not torchao's own run-time
tensors: on CPU, torchao 0.18's int8 weight-only linear converts the whole int8 matrix to float on
every call, so SmolLM2 decoded only 1.3x faster than in fp32, and quantizing the 49152x576 output
layer that way made it slower than fp32. PyTorch's `_weight_int8pack_mm` (the CPU kernel gpt-fast
uses) reads the int8 weights as they are, with bfloat16 activations: on our 2-core AMD EPYC
(AVX-512 BF16) it runs SmolLM2's batch-1 products 1.2-2.6x and its output layer 9.8x faster than
fp32, and 512-row prefill products 1.0-1.6x (`python benchmarks/quant_kernels.py`, 2026-12-02).
Its cost: the activations entering a quantized layer, and its output, are rounded to bfloat16
(0.24% relative error per product; for the whole model +0.4% perplexity, README's compression
benchmark).

The input embedding can be int8 too, looked up row by row; when the output layer is tied to it
the two modules share one int8 matrix, as the float model shares one weight.
"""

from __future__ import annotations

import torch
from torch import nn


def quantize_rows(weight: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(int8 matrix, float32 scale per row) of a float matrix, by torchao."""
    from torchao.quantization import Int8Tensor
    from torchao.quantization.granularity import PerRow

    quantized = Int8Tensor.from_hp(weight.detach().float(), PerRow())
    return quantized.qdata.contiguous(), quantized.scale.reshape(-1).float().contiguous()


class Int8Linear(nn.Module):
    def __init__(self, qdata: torch.Tensor, scale: torch.Tensor, bias: torch.Tensor | None = None):
        super().__init__()
        # A frozen Parameter (not a buffer) so that parameter counts and tying see the weight.
        self.qdata = qdata if isinstance(qdata, nn.Parameter) else nn.Parameter(qdata, requires_grad=False)
        self.register_buffer("scale", scale)
        self.bias = None if bias is None else nn.Parameter(bias.detach().float(), requires_grad=False)
        self.out_features, self.in_features = qdata.shape
        # Unit scales for the kernel, the float32 scales after it: bfloat16 scales would add a
        # per-row error of up to 0.4% on top of the rounding of the product.
        self.register_buffer("unit_scale", torch.ones(self.out_features, dtype=torch.bfloat16), persistent=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        rows = x.reshape(-1, self.in_features).to(torch.bfloat16)
        y = torch.ops.aten._weight_int8pack_mm(rows, self.qdata, self.unit_scale).to(x.dtype) * self.scale
        y = y.reshape(*x.shape[:-1], self.out_features)
        return y if self.bias is None else y + self.bias

    def extra_repr(self) -> str:
        return f"in_features={self.in_features}, out_features={self.out_features}, int8 per row"


class Int8Embedding(nn.Module):
    def __init__(self, qdata: torch.Tensor, scale: torch.Tensor, padding_idx: int | None = None):
        super().__init__()
        self.qdata = nn.Parameter(qdata, requires_grad=False)
        self.register_buffer("scale", scale)
        self.padding_idx = padding_idx
        self.num_embeddings, self.embedding_dim = qdata.shape

    def forward(self, ids: torch.Tensor) -> torch.Tensor:
        return self.qdata[ids].float() * self.scale[ids].unsqueeze(-1)

    def extra_repr(self) -> str:
        return f"{self.num_embeddings}, {self.embedding_dim}, int8 per row"


def quantize_model(model, embeddings: bool = True, empty: bool = False) -> None:
    """Replace, in place, every Linear layer of `model` except its output layer by an Int8Linear;
    with `embeddings`, the input embedding and the output layer as well (quantize_embeddings).
    empty: the layers' shapes only (meta tensors), for load_model to assign a folder's weights."""
    from core.models import decoder_linears, replace_module

    for name, module in decoder_linears(model).items():
        replace_module(model, name, Int8Linear(*_rows(module.weight, empty), module.bias))
    if embeddings:
        quantize_embeddings(model, empty)


def _rows(weight: torch.Tensor, empty: bool) -> tuple[torch.Tensor, torch.Tensor]:
    """quantize_rows's (int8 matrix, scale per row); with `empty`, tensors of their shapes on the
    meta device, for load_model to assign a folder's weights to."""
    if empty:
        return (torch.empty(weight.shape, dtype=torch.int8, device="meta"),
                torch.empty(weight.shape[0], dtype=torch.float32, device="meta"))
    return quantize_rows(weight)


def quantize_embeddings(model, empty: bool = False) -> None:
    """The input embedding and the output layer in int8, in place: one shared int8 matrix when
    they are tied, as the float model shares one weight. empty: as quantize_model's."""
    embed, head = model.get_input_embeddings(), model.get_output_embeddings()
    tied = head is not None and head.weight is embed.weight
    quantized = Int8Embedding(*_rows(embed.weight, empty), embed.padding_idx)
    model.set_input_embeddings(quantized)
    if head is not None:
        model.set_output_embeddings(Int8Linear(quantized.qdata, quantized.scale) if tied
                                    else Int8Linear(*_rows(head.weight, empty), head.bias))


def shared_keys(model) -> list[str]:
    """State-dict keys that repeat a tensor stored under an earlier key (a tied output layer's)."""
    seen: set[int] = set()
    repeats = []
    for key, tensor in model.state_dict(keep_vars=True).items():
        if id(tensor) in seen:
            repeats.append(key)
        seen.add(id(tensor))
    return repeats
