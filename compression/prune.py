"""Pruning: magnitude, Wanda and SparseGPT, unstructured per output row or 2:4 semi-structured.

Our own code rather than torchao's WandaSparsifier: that one ranks a layer's weights across the
whole matrix (Wanda's paper compares within each output row, which it found better, and which a
per-row sparsity needs), and it goes through torch.ao.quantization.prepare, the API torch 2.13
deprecates. The scores are a few lines; the masks are applied in place, so the result is a plain
float model with zeros, which the training stage can fine-tune (`recover`) and core.models stores
compressed (format "sparse-bitmask").

SparseGPT is ours too (the algorithm of Frantar & Alistarh's reference code, ~80 lines): the
maintained implementation, llm-compressor's SparseGPTModifier, pins transformers <= 5.17 and
huggingface_hub 1.x, below what Conveyor runs. On SmolLM2-135M at 2:4 it costs +108% perplexity
before any recovery where Wanda costs +371% (benchmarks/README.md).
"""

from __future__ import annotations

import logging

from compression.config import Prune, SparseGPT, Wanda

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


def inverse_hessian_factor(hessian, dampening: float):
    """Upper Cholesky factor of the inverse of `hessian` + dampening x its mean diagonal (the
    form SparseGPT's updates read), dampening raised tenfold until it factors."""
    import torch

    eye = torch.eye(hessian.shape[0], dtype=hessian.dtype)
    for attempt in range(4):
        damped = hessian + dampening * 10 ** attempt * torch.diag(hessian).mean() * eye
        factor, info = torch.linalg.cholesky_ex(damped)
        if int(info) == 0:
            return torch.linalg.cholesky(torch.cholesky_inverse(factor), upper=True)
    raise ValueError("sparsegpt: a layer's input Hessian does not factor even with 1000x dampening; "
                     "give more calibration_samples")


def sparsegpt_weight(weight, hessian, step: SparseGPT):
    """`weight` pruned by SparseGPT given its inputs' Hessian (2 X^T X / tokens): columns left to
    right, in blocks; each pruned weight's error spread over the row's columns not yet visited."""
    import torch

    weight = weight.detach().clone().float()
    hessian = hessian.clone()
    dead = torch.diag(hessian) == 0  # an input that was always zero: its weights are free
    hessian[dead, dead] = 1
    weight[:, dead] = 0
    hinv = inverse_hessian_factor(hessian, step.dampening)
    columns = weight.shape[1]
    for first in range(0, columns, step.block_size):
        last = min(first + step.block_size, columns)
        block, block_hinv = weight[:, first:last].clone(), hinv[first:last, first:last]
        pruned, errors = torch.zeros_like(block), torch.zeros_like(block)
        mask = torch.zeros_like(block, dtype=torch.bool)  # True: pruned
        if step.pattern == "unstructured":
            scores = block ** 2 / torch.diag(block_hinv).reshape(1, -1) ** 2
            count = int(round((last - first) * step.sparsity))
            mask.scatter_(1, scores.topk(count, dim=1, largest=False).indices, True)
        for column in range(last - first):
            if step.pattern == "2:4" and column % 4 == 0:
                scores = block[:, column:column + 4] ** 2 / torch.diag(block_hinv)[column:column + 4].reshape(1, -1) ** 2
                mask.scatter_(1, column + scores.topk(2, dim=1, largest=False).indices, True)
            kept = block[:, column].masked_fill(mask[:, column], 0)
            pruned[:, column] = kept
            error = (block[:, column] - kept) / block_hinv[column, column]
            block[:, column:] -= error.unsqueeze(1) @ block_hinv[column, column:].unsqueeze(0)
            errors[:, column] = error
        weight[:, first:last] = pruned
        weight[:, last:] -= errors @ hinv[first:last, last:]
    return weight


def sparsegpt(model, step: SparseGPT, calibration_blocks) -> None:
    """Prune the decoder's Linear layers in place, decoder layer by decoder layer: each layer's
    inputs are the outputs of the layers before it, already pruned (SparseGPT's sequential mode)."""
    import torch

    decoder_layers = model.get_decoder().layers
    wanted = {id(module) for module in prunable_layers(model).values()}
    inputs, layer_kwargs = [], {}

    class Caught(Exception):
        pass

    def catch(_module, args, kwargs):
        inputs.append(args[0] if args else kwargs["hidden_states"])
        layer_kwargs.update({key: value for key, value in kwargs.items() if key != "hidden_states"})
        raise Caught

    hook = decoder_layers[0].register_forward_pre_hook(catch, with_kwargs=True)
    try:
        with torch.inference_mode():
            for block in calibration_blocks:
                try:
                    model(input_ids=block, use_cache=False)
                except Caught:
                    pass
    finally:
        hook.remove()

    def run_layer(layer, hidden):
        output = layer(hidden, **layer_kwargs)
        return output[0] if isinstance(output, tuple) else output

    for layer in decoder_layers:
        linears = {name: module for name, module in layer.named_modules() if id(module) in wanted}
        hessians = {name: torch.zeros(module.in_features, module.in_features) for name, module in linears.items()}
        tokens = dict.fromkeys(linears, 0)
        hooks = []
        for name, module in linears.items():
            def accumulate(_module, args, _output, name=name):
                features = args[0].detach().reshape(-1, args[0].shape[-1]).float()
                hessians[name] += 2 * features.T @ features
                tokens[name] += features.shape[0]
            hooks.append(module.register_forward_hook(accumulate))
        try:
            with torch.inference_mode():
                for hidden in inputs:
                    run_layer(layer, hidden)
        finally:
            for hook in hooks:
                hook.remove()
        with torch.no_grad():
            for name, module in linears.items():
                module.weight.copy_(sparsegpt_weight(module.weight, hessians[name] / tokens[name], step))
        with torch.inference_mode():
            inputs = [run_layer(layer, hidden) for hidden in inputs]


def prune(model, step: Prune, calibration_blocks=None) -> dict[str, float]:
    """Zero weights of `model` in place; return the sparsity reached over the pruned layers."""
    import torch

    check_shapes(model, step)
    layers = prunable_layers(model)
    if isinstance(step, SparseGPT):
        sparsegpt(model, step, calibration_blocks)
    else:
        norms = input_norms(model, layers, calibration_blocks) if isinstance(step, Wanda) else None
        with torch.no_grad():
            for name, module in layers.items():
                weight = module.weight
                scores = weight.abs() if norms is None else weight.abs() * norms[name]
                weight.mul_(keep_mask(scores, step))
    zeros = total = 0
    for module in layers.values():
        zeros += int((module.weight == 0).sum())
        total += module.weight.numel()
    sparsity = zeros / total
    logger.info("%s %s: %.1f%% of %d decoder weights are zero", step.kind, step.pattern, 100 * sparsity, total)
    return {"sparsity": sparsity, "pruned_weights": total}
