"""Next-token cross-entropy fused with the output projection, a chunk of tokens at a time.

With SmolLM2's 49152-token vocabulary the logits of one micro-batch of 16 x 2048 tokens take 3 GiB
in bf16, 6 GiB more once upcast to fp32 for the softmax, and their gradient as much again. Here
the projection, the loss and both gradients (of the hidden states and of the weight) are computed
`chunk` tokens at a time in the forward pass, as Liger-Kernel's fused linear cross-entropy does,
so only one chunk's logits ever exist; the backward pass only scales the saved gradients. The
matmuls are the same three as without chunking (logits, and the two gradients), so the FLOPs do
not change.

The distillation loss (distillation_loss below) is fused the same way: the teacher's
hidden states come in computed (without gradients) and its logits are made a chunk at a time
from its own output weight, so neither model's full logits exist.

Only what training needs: mean over all tokens, no ignore index (packed blocks have no
padding), no label smoothing. Imported only where torch already is.

The training losses the step runs (`loss_function`) are at the end: next-token cross-entropy
(plain, compiled or chunked) and the distillation loss, which is how compression's distillation
plugs into the trainer.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from training.config import TrainingConfig


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


class _LinearDistillation(torch.autograd.Function):
    @staticmethod
    def forward(ctx, hidden, weight, teacher_hidden, teacher_weight, targets, chunk: int, temperature: float,
                alpha: float, weight_needs_grad: bool):
        count = hidden.shape[0]
        soft_total = torch.zeros((), dtype=torch.float32, device=hidden.device)
        hard_total = torch.zeros((), dtype=torch.float32, device=hidden.device)
        grad_hidden = torch.empty_like(hidden)
        grad_weight = torch.zeros(weight.shape, dtype=torch.float32, device=weight.device) if weight_needs_grad else None
        for start in range(0, count, chunk):
            piece, piece_targets = hidden[start:start + chunk], targets[start:start + chunk, None]
            logits = (piece @ weight.t()).float()
            teacher_log_probs = ((teacher_hidden[start:start + chunk] @ teacher_weight.t()).float()
                                 / temperature).log_softmax(dim=-1)
            teacher_probs = teacher_log_probs.exp()
            student_log_probs = (logits / temperature).log_softmax(dim=-1)
            soft_total += (teacher_probs * (teacher_log_probs - student_log_probs)).sum()
            log_norm = torch.logsumexp(logits, dim=-1, keepdim=True)
            hard_total += (log_norm - logits.gather(1, piece_targets)).sum()
            # d(mean loss)/d(logits), built in the softened log-probabilities' memory: the KL term's
            # T^2 times the 1/T of the softened logits is alpha * T * (softmax(logits / T) - teacher's),
            # the cross-entropy's (1 - alpha) * (softmax - one_hot(target)).
            grad_logits = student_log_probs.exp_().sub_(teacher_probs).mul_(alpha * temperature)
            grad_logits += logits.sub_(log_norm).exp_().mul_(1 - alpha)
            grad_logits.scatter_add_(1, piece_targets, torch.full_like(log_norm, alpha - 1))
            grad_logits = grad_logits.div_(count).to(piece.dtype)
            grad_hidden[start:start + chunk] = grad_logits @ weight
            if grad_weight is not None:
                grad_weight += grad_logits.t() @ piece
        ctx.save_for_backward(grad_hidden, None if grad_weight is None else grad_weight.to(weight.dtype))
        return (alpha * temperature ** 2 * soft_total + (1 - alpha) * hard_total) / count

    @staticmethod
    def backward(ctx, grad_output):
        grad_hidden, grad_weight = ctx.saved_tensors
        return (grad_hidden * grad_output, None if grad_weight is None else grad_weight * grad_output,
                None, None, None, None, None, None, None)


def linear_distillation_loss(hidden, weight, teacher_hidden, teacher_weight, targets, chunk: int,
                             temperature: float, alpha: float):
    """training.train.distillation_loss of the student's logits hidden @ weight.T (hidden [tokens, H],
    weight [V, H]) and the teacher's teacher_hidden @ teacher_weight.T (no gradients), `chunk`
    tokens at a time. Only for training: validation's loss is the plain cross-entropy."""
    return _LinearDistillation.apply(hidden, weight, teacher_hidden, teacher_weight, targets, chunk, temperature,
                                     alpha, weight.requires_grad)


def check_plain_projection(model, what: str) -> None:
    """Refuse a model whose logits are more than a projection of its hidden states by its output
    layer's weight (a bias, a logit scale or soft-capping): the chunked losses would miss it."""
    head = model.get_output_embeddings()
    changes_logits = [name for name in ("final_logit_softcapping", "logit_scale") if getattr(model.config, name, None)]
    if head is None or getattr(head, "bias", None) is not None or changes_logits:
        raise ValueError(f"{what}: {type(model).__name__}'s logits are not a plain projection of its hidden "
                         f"states ({', '.join(changes_logits) or 'output layer'}): set chunked_loss_tokens=0")


def attach_chunked_loss(model, chunk: int) -> None:
    """Let `model(input_ids=..., targets=...)` (a HF causal LM) return linear_cross_entropy of its
    decoder's last hidden states and its output embedding, so the full logits are never built;
    given a teacher's last hidden states and output weight too (`teacher_hidden`, `teacher_weight`,
    `temperature`, `alpha`), linear_distillation_loss. Without `targets` it is the model's own
    forward. The forward is replaced on this instance only: the class, its state dict and what
    save_pretrained writes do not change, and a peft wrapper applied afterwards passes these
    arguments through to it. A model whose logits are more than that projection is refused."""
    check_plain_projection(model, "training.train.chunked_loss_tokens")
    original = model.forward

    def forward(input_ids=None, targets=None, teacher_hidden=None, teacher_weight=None, temperature=None,
                alpha=None, **kwargs):
        if targets is None:
            return original(input_ids=input_ids, **kwargs)
        # peft passes its whole signature on (labels=None, return_dict=None, ...): the decoder gets
        # what was actually given, and no labels.
        given = {key: value for key, value in kwargs.items() if value is not None and key != "labels"}
        hidden = model.get_decoder()(input_ids=input_ids, **given).last_hidden_state.flatten(0, 1)
        weight = model.get_output_embeddings().weight
        if teacher_hidden is None:
            return linear_cross_entropy(hidden, weight, targets.flatten(), chunk)
        return linear_distillation_loss(hidden, weight, teacher_hidden.flatten(0, 1), teacher_weight,
                                        targets.flatten(), chunk, temperature, alpha)

    model.forward = forward


def logits_loss(logits, targets):
    """Mean cross-entropy of [batch, seq, vocab] logits, upcast to float32, against [batch, seq] targets."""
    return F.cross_entropy(logits.float().flatten(0, 1), targets.flatten())


def next_token_loss(engine, block):
    return logits_loss(engine(input_ids=block[:, :-1]).logits, block[:, 1:])


def distillation_loss(student_logits, teacher_logits, targets, temperature: float, alpha: float):
    """alpha * T^2 * KL(teacher || student) of the distributions softened by temperature T, plus
    (1 - alpha) * the cross-entropy against the targets; each a mean over the tokens of
    [batch, seq, vocab] logits (upcast to float32) and [batch, seq] targets. The teacher's
    distribution is the target (forward KL, as in Hinton et al.); T^2 keeps the soft term's
    gradients on the scale of the hard term's whatever T is."""
    student = student_logits.float().flatten(0, 1)
    soft = F.kl_div(F.log_softmax(student / temperature, dim=-1),
                    F.log_softmax(teacher_logits.float().flatten(0, 1) / temperature, dim=-1),
                    reduction="batchmean", log_target=True)  # batchmean of [tokens, vocab]: mean per token
    return alpha * temperature ** 2 * soft + (1 - alpha) * F.cross_entropy(student, targets.flatten())


def chunked_next_token_loss(engine, block):
    """next_token_loss computed inside the model's forward, chunk by chunk (linear_cross_entropy), which
    build_engine attached when chunked_loss_tokens is set; engine.compile() compiles it with the model."""
    return engine(input_ids=block[:, :-1], targets=block[:, 1:])


def distillation_loss_function(config: TrainingConfig, teacher):
    """The training loss under `distill`: distillation_loss of the model's and the teacher's logits
    of the same input, the teacher's without gradients; with chunked_loss_tokens, computed inside
    the model's forward a chunk at a time (linear_distillation_loss) from the teacher's last hidden states."""
    distill = config.distill
    if config.train.chunked_loss_tokens:
        check_plain_projection(teacher, "distill.teacher with training.train.chunked_loss_tokens")
        teacher_decoder, teacher_weight = teacher.get_decoder(), teacher.get_output_embeddings().weight

        def chunked_distillation_loss(engine, block):
            with torch.no_grad():
                teacher_hidden = teacher_decoder(input_ids=block[:, :-1]).last_hidden_state
            return engine(input_ids=block[:, :-1], targets=block[:, 1:], teacher_hidden=teacher_hidden,
                          teacher_weight=teacher_weight, temperature=distill.temperature, alpha=distill.alpha)
        return chunked_distillation_loss

    def plain_distillation_loss(engine, block):
        with torch.no_grad():
            teacher_logits = teacher(input_ids=block[:, :-1]).logits
        return distillation_loss(engine(input_ids=block[:, :-1]).logits, teacher_logits, block[:, 1:],
                                 distill.temperature, distill.alpha)
    return plain_distillation_loss


def loss_function(config: TrainingConfig, teacher=None):
    """The training loss: next_token_loss, or under `compile` the same with its float32 upcast and
    cross-entropy compiled too (engine.compile() compiles the model only; on an H100 the compiled
    loss took the SmolLM2-shape step from 109k to 157k tokens/s with micro-batch 16); or, with
    chunked_loss_tokens, chunked_next_token_loss. Under `distill` (teacher: training.model.load_teacher's
    model), distillation_loss_function's."""
    if config.distill:
        return distillation_loss_function(config, teacher)
    if config.train.chunked_loss_tokens:
        return chunked_next_token_loss
    if not config.train.compile:
        return next_token_loss
    compiled_loss = torch.compile(logits_loss)

    def compiled_next_token_loss(engine, block):
        return compiled_loss(engine(input_ids=block[:, :-1]).logits, block[:, 1:])
    return compiled_next_token_loss
