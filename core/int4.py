"""int4 weight-only layers for inference: 4-bit weights in groups along the input, each group with
its own bfloat16 scale and zero point (asymmetric), run by PyTorch's int4 CPU kernel.

torchao chooses the numbers: HQQ (half-quadratic optimization of each group's scale and zero, no
calibration data) or plain min/max ("tinygemm"), as its Int4WeightOnlyConfig does with
`int4_packing_format="opaque"` for CPU. We store them portably, two 4-bit values a byte (the
kernel's packed layout is an implementation detail of the CPU build that packed it) and pack them
for `_weight_int4pack_mm_for_cpu` when the layer is loaded. Activations enter that kernel in
bfloat16: measured on our 2-core AMD EPYC (AVX-512 BF16), a 576x576 batch-1 product takes 9 us
in bfloat16 against 275 us with float32 activations, which the kernel serves by a slow fallback
(`python benchmarks/quant_kernels.py` prints every path, 2026-12-03).

The input embedding (and the output layer tied to it) is int8 per row (core/int8.py): the kernel
multiplies, it does not look rows up, and int4 costs an output layer more quality than a decoder
layer.
"""

from __future__ import annotations

import torch
from torch import nn

GROUP_SIZES = (32, 64, 128)  # what the CPU kernel takes


def quantize_groups(weight: torch.Tensor, group_size: int, algorithm: str = "hqq") -> tuple[torch.Tensor, torch.Tensor]:
    """(int4 values 0..15 as uint8 [N, K], tinygemm scales and zeros [K / group_size, N, 2] bfloat16)
    of a float matrix, by torchao's routines for its CPU int4 tensor (Int4OpaqueTensor.from_hp)."""
    from torchao.quantization.quant_primitives import (
        MappingType,
        _choose_qparams_affine_tinygemm,
        _choose_qparams_and_quantize_affine_hqq,
        _quantize_affine_tinygemm,
    )
    from torchao.quantization.utils import pack_tinygemm_scales_and_zeros

    weight = weight.detach().to(torch.bfloat16)
    if algorithm == "hqq":
        values, scale, zero, _ = _choose_qparams_and_quantize_affine_hqq(
            weight, nbits=4, group_size=group_size, axis=1, compute_dtype=torch.bfloat16, device="cpu")
    elif algorithm == "tinygemm":
        block = [1, group_size]
        scale, zero = _choose_qparams_affine_tinygemm(weight, MappingType.ASYMMETRIC, block, torch.int32, 0, 15, 1e-6,
                                                      None, torch.bfloat16)
        values = _quantize_affine_tinygemm(weight, block, scale, zero, torch.int32, 0, 15)
    else:
        raise ValueError(f"unknown int4 algorithm {algorithm!r}; known: hqq, tinygemm")
    rows = weight.shape[0]
    scale_and_zero = pack_tinygemm_scales_and_zeros(scale.reshape(rows, -1), zero.reshape(rows, -1), torch.bfloat16)
    return values.to(torch.uint8).reshape(weight.shape), scale_and_zero.contiguous()


def pack_nibbles(values: torch.Tensor) -> torch.Tensor:
    """uint8 [N, K] of values 0..15 -> uint8 [N, K / 2], the even column in the low half."""
    return (values[:, 0::2] | (values[:, 1::2] << 4)).contiguous()


def unpack_nibbles(packed: torch.Tensor) -> torch.Tensor:
    return torch.stack([packed & 15, packed >> 4], dim=-1).reshape(packed.shape[0], -1)


class Int4Linear(nn.Module):
    def __init__(self, qweight: torch.Tensor, scale_and_zero: torch.Tensor, group_size: int,
                 bias: torch.Tensor | None = None):
        super().__init__()
        self.qweight = nn.Parameter(qweight, requires_grad=False)  # [N, K / 2], two values a byte
        self.register_buffer("scale_and_zero", scale_and_zero)
        self.bias = None if bias is None else nn.Parameter(bias.detach().float(), requires_grad=False)
        self.group_size = group_size
        self.out_features, self.in_features = qweight.shape[0], 2 * qweight.shape[1]
        self._packed = None
        self.register_load_state_dict_post_hook(lambda module, _keys: setattr(module, "_packed", None))

    @classmethod
    def from_float(cls, linear: nn.Linear, group_size: int, algorithm: str) -> Int4Linear:
        values, scale_and_zero = quantize_groups(linear.weight, group_size, algorithm)
        return cls(pack_nibbles(values), scale_and_zero, group_size, linear.bias)

    @classmethod
    def empty(cls, linear: nn.Linear, group_size: int) -> Int4Linear:
        """The layer's shapes on the meta device, for a folder's weights to be assigned."""
        rows, columns = linear.weight.shape
        return cls(torch.empty(rows, columns // 2, dtype=torch.uint8, device="meta"),
                   torch.empty(columns // group_size, rows, 2, dtype=torch.bfloat16, device="meta"), group_size,
                   None if linear.bias is None else torch.empty_like(linear.bias, device="meta"))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self._packed is None:  # once per load: the CPU kernel's own layout
            self._packed = torch.ops.aten._convert_weight_to_int4pack_for_cpu(
                unpack_nibbles(self.qweight).to(torch.int32), 1)
        rows = x.reshape(-1, self.in_features).to(torch.bfloat16).contiguous()
        y = torch.ops.aten._weight_int4pack_mm_for_cpu(rows, self._packed, self.group_size, self.scale_and_zero)
        y = y.to(x.dtype).reshape(*x.shape[:-1], self.out_features)
        return y if self.bias is None else y + self.bias

    def extra_repr(self) -> str:
        return f"in_features={self.in_features}, out_features={self.out_features}, int4 groups of {self.group_size}"


def check_group_size(model, group_size: int) -> None:
    """Every layer int4 would quantize must have an input width divisible by the group size."""
    from core.models import decoder_linears

    odd = [f"{name} ({module.in_features})" for name, module in decoder_linears(model).items()
           if module.in_features % group_size]
    if odd:
        raise ValueError(f"int4 group_size {group_size} must divide every input width: {', '.join(odd[:3])}"
                         f"{' and more' if len(odd) > 3 else ''} do not (choose from {GROUP_SIZES})")


def quantize_model(model, group_size: int, algorithm: str = "hqq", embeddings: bool = True,
                   empty: bool = False) -> None:
    """Replace, in place, every Linear layer of `model` except its output layer by an Int4Linear;
    with `embeddings`, the input embedding and output layer by int8 ones (core/int8.py). empty:
    the layers' shapes only, for load_model to fill from a folder."""
    from core.int8 import quantize_embeddings
    from core.models import decoder_linears, replace_module

    check_group_size(model, group_size)
    for name, module in decoder_linears(model).items():
        replace_module(model, name, Int4Linear.empty(module, group_size) if empty
                       else Int4Linear.from_float(module, group_size, algorithm))
    if embeddings:
        quantize_embeddings(model, empty)
