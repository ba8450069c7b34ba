"""Next-token cross-entropy fused with the output projection, a chunk of tokens at a time.

With SmolLM2's 49152-token vocabulary the logits of one micro-batch of 16 x 2048 tokens take 3 GiB
in bf16, 6 GiB more once upcast to fp32 for the softmax, and their gradient as much again. Here
the projection, the loss and both gradients (of the hidden states and of the weight) are computed
`chunk` tokens at a time in the forward pass, as Liger-Kernel's fused linear cross-entropy does,
so only one chunk's logits ever exist; the backward pass only scales the saved gradients. The
matmuls are the same three as without chunking (logits, and the two gradients), so the FLOPs do
not change.

Only what training.train needs: mean over all tokens, no ignore index (packed blocks have no
padding), no label smoothing. Imported only where torch already is.
"""

from __future__ import annotations

import torch


class _LinearCrossEntropy(torch.autograd.Function):
    @staticmethod
    def forward(ctx, hidden, weight, targets, chunk: int, weight_needs_grad: bool):
        count = hidden.shape[0]
        total = torch.zeros((), dtype=torch.float32, device=hidden.device)
        grad_hidden = torch.empty_like(hidden)
        grad_weight = torch.zeros(weight.shape, dtype=torch.float32, device=weight.device) if weight_needs_grad else None
        for start in range(0, count, chunk):
            piece, piece_targets = hidden[start:start + chunk], targets[start:start + chunk, None]
            logits = (piece @ weight.t()).float()  # under autocast the matmul runs in its dtype
            log_norm = torch.logsumexp(logits, dim=-1, keepdim=True)
            total += (log_norm - logits.gather(1, piece_targets)).sum()
            # d(mean loss)/d(logits) = (softmax - one_hot(target)) / count, built in the logits' memory.
            grad_logits = logits.sub_(log_norm).exp_()
            grad_logits.scatter_add_(1, piece_targets, torch.full_like(log_norm, -1.0))
            grad_logits = grad_logits.div_(count).to(piece.dtype)
            grad_hidden[start:start + chunk] = grad_logits @ weight
            if grad_weight is not None:
                grad_weight += grad_logits.t() @ piece
        ctx.save_for_backward(grad_hidden, None if grad_weight is None else grad_weight.to(weight.dtype))
        return total / count

    @staticmethod
    def backward(ctx, grad_output):
        grad_hidden, grad_weight = ctx.saved_tensors
        return (grad_hidden * grad_output, None if grad_weight is None else grad_weight * grad_output,
                None, None, None)


def linear_cross_entropy(hidden, weight, targets, chunk: int):
    """mean(cross_entropy(hidden @ weight.T, targets)) for hidden [tokens, H], weight [V, H],
    targets [tokens], `chunk` tokens at a time. Without gradients to take (validation, no_grad) it
    computes the loss alone, still chunk by chunk."""
    if torch.is_grad_enabled() and (hidden.requires_grad or weight.requires_grad):
        return _LinearCrossEntropy.apply(hidden, weight, targets, chunk, weight.requires_grad)
    total = torch.zeros((), dtype=torch.float32, device=hidden.device)
    for start in range(0, hidden.shape[0], chunk):
        logits = (hidden[start:start + chunk] @ weight.t()).float()
        total += torch.nn.functional.cross_entropy(logits, targets[start:start + chunk], reduction="sum")
    return total / hidden.shape[0]


def attach_chunked_loss(model, chunk: int) -> None:
    """Let `model(input_ids=..., targets=...)` (a HF causal LM) return linear_cross_entropy of its
    decoder's last hidden states and its output embedding, so the full logits are never built.
    Without `targets` it is the model's own forward. The forward is replaced on this instance
    only: the class, its state dict and what save_pretrained writes do not change, and a peft
    wrapper applied afterwards passes `targets` through to it. A model whose logits are more than
    that projection (a bias, a logit scale or soft-capping) is refused."""
    head = model.get_output_embeddings()
    changes_logits = [name for name in ("final_logit_softcapping", "logit_scale") if getattr(model.config, name, None)]
    if head is None or getattr(head, "bias", None) is not None or changes_logits:
        raise ValueError(f"training.train.chunked_loss_tokens: {type(model).__name__}'s logits are not a plain "
                         f"projection of its hidden states ({', '.join(changes_logits) or 'output layer'}): "
                         "set chunked_loss_tokens=0")
    original = model.forward

    def forward(input_ids=None, targets=None, **kwargs):
        if targets is None:
            return original(input_ids=input_ids, **kwargs)
        # peft passes its whole signature on (labels=None, return_dict=None, ...): the decoder gets
        # what was actually given, and no labels.
        given = {key: value for key, value in kwargs.items() if value is not None and key != "labels"}
        hidden = model.get_decoder()(input_ids=input_ids, **given).last_hidden_state
        return linear_cross_entropy(hidden.flatten(0, 1), model.get_output_embeddings().weight, targets.flatten(), chunk)

    model.forward = forward
