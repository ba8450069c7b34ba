"""Pruning: magnitude and Wanda, unstructured per output row or 2:4 semi-structured.

Our own code rather than torchao's WandaSparsifier: that one ranks a layer's weights across the
whole matrix (Wanda's paper compares within each output row, which it found better, and which a
per-row sparsity needs), and it goes through torch.ao.quantization.prepare, the API torch 2.13
deprecates. The scores are a few lines; the masks are applied in place, so the result is a plain
float model with zeros, which the training stage can fine-tune (`recover`) and core.models stores
compressed (format "sparse-bitmask").
"""

from __future__ import annotations

import logging

from compression.config import Prune, Wanda

logger = logging.getLogger(__name__)


def prunable_layers(model) -> dict:
    """name -> Linear for the attention and MLP projections of the decoder: the layers holding
    most of the weights. The embedding and the output layer stay whole (tied to the embedding in
    SmolLM2, and every token's logit goes through it)."""
    from core.models import decoder_linears

    return decoder_linears(model)


def check_shapes(model, step: Prune) -> None:
    """2:4 groups four consecutive inputs: every layer's input width must divide by 4."""
    if step.pattern != "2:4":
        return
    odd = [f"{name} ({module.in_features})" for name, module in prunable_layers(model).items()
           if module.in_features % 4]
    if odd:
        raise ValueError(f"2:4 pruning needs input widths divisible by 4: {', '.join(odd[:3])}"
                         f"{' and more' if len(odd) > 3 else ''} are not")


def keep_mask(scores, step: Prune):
    """True where a weight stays: per output row, the highest scores (unstructured), or the two
    highest of each group of four consecutive inputs (2:4)."""
    import torch

    rows, columns = scores.shape
    if step.pattern == "2:4":
        groups = scores.reshape(rows, columns // 4, 4)
        mask = torch.zeros_like(groups, dtype=torch.bool)
        mask.scatter_(2, groups.topk(2, dim=2).indices, True)
        return mask.reshape(rows, columns)
    pruned = int(columns * step.sparsity)
    mask = torch.ones_like(scores, dtype=torch.bool)
    mask.scatter_(1, scores.topk(pruned, dim=1, largest=False).indices, False)
    return mask


def input_norms(model, layers: dict, calibration_blocks) -> dict:
    """name -> L2 norm over all calibration tokens of each input feature of that layer."""
    import torch

    sums = {name: torch.zeros(module.in_features, dtype=torch.float64) for name, module in layers.items()}
    hooks = []
    for name, module in layers.items():
        def accumulate(_module, args, _output, name=name):
            sums[name] += args[0].detach().reshape(-1, args[0].shape[-1]).double().pow(2).sum(0)
        hooks.append(module.register_forward_hook(accumulate))
    try:
        with torch.inference_mode():
            for block in calibration_blocks:
                model(input_ids=block)
    finally:
        for hook in hooks:
            hook.remove()
    return {name: total.sqrt().float() for name, total in sums.items()}


def prune(model, step: Prune, calibration_blocks=None) -> dict[str, float]:
    """Zero weights of `model` in place; return the sparsity reached over the pruned layers."""
    import torch

    check_shapes(model, step)
    layers = prunable_layers(model)
    norms = input_norms(model, layers, calibration_blocks) if isinstance(step, Wanda) else None
    zeros = total = 0
    with torch.no_grad():
        for name, module in layers.items():
            weight = module.weight
            scores = weight.abs() if norms is None else weight.abs() * norms[name]
            weight.mul_(keep_mask(scores, step))
            zeros += int((weight == 0).sum())
            total += weight.numel()
    sparsity = zeros / total
    logger.info("%s %s: %.1f%% of %d decoder weights are zero", step.kind, step.pattern, 100 * sparsity, total)
    return {"sparsity": sparsity, "pruned_weights": total}
