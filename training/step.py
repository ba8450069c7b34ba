"""The step: one optimizer step over `grad_accum_steps` micro-batches with the non-finite guard,
and the collectives around it (the loss averaged over ranks, the validation loss).
"""

from __future__ import annotations

import math
from typing import Callable

from training.config import TrainingConfig
from training.engine import clips_itself
from training.loss import chunked_next_token_loss, next_token_loss


def _as_float(value) -> float | None:
    """DeepSpeed reports the grad norm as a float, a tensor, or None before the first step."""
    return None if value is None else float(value)


def all_ranks_finite(loss, device) -> bool:
    """True when the loss is finite on every rank: each rank must take the same branch."""
    import torch
    import torch.distributed as dist

    flag = torch.tensor([1.0 if torch.isfinite(loss).item() else 0.0], device=device)
    dist.all_reduce(flag, op=dist.ReduceOp.MIN)
    return bool(flag.item())


def mean_across_ranks(value: float, device) -> float:
    import torch
    import torch.distributed as dist

    tensor = torch.tensor([value], dtype=torch.float64, device=device)
    dist.all_reduce(tensor)
    return tensor.item() / dist.get_world_size()


def validation_loss(engine, blocks, config: TrainingConfig, rank: int, world_size: int, device) -> float | None:
    """Mean next-token loss over up to eval_batches micro-batches per rank, across all ranks.

    Every rank joins (ZeRO-3 forward passes are collective), and every rank gets the same
    number of blocks so that none waits on a forward pass another never makes.
    """
    import torch
    import torch.distributed as dist

    from training.packing import rank_shard

    loss_fn = chunked_next_token_loss if config.train.chunked_loss_tokens else next_token_loss
    per_rank = min(len(blocks) // world_size, config.train.eval_batches * config.train.micro_batch_size)
    if per_rank == 0:
        return None
    shard = rank_shard(blocks[: per_rank * world_size], rank, world_size)
    engine.eval()
    total = torch.zeros(2, dtype=torch.float64, device=device)  # sum of losses, tokens
    with torch.no_grad():
        for start in range(0, per_rank, config.train.micro_batch_size):
            block = shard[start:start + config.train.micro_batch_size].to(device)
            tokens = block[:, 1:].numel()
            total += torch.tensor([loss_fn(engine, block).item() * tokens, tokens],
                                  dtype=torch.float64, device=device)
    engine.train()
    dist.all_reduce(total)
    return (total[0] / total[1]).item()


class NonfiniteGuard:
    """`on_nonfinite_loss` applied to a non-finite loss or gradients: raise naming the step, or
    count a skipped batch and raise once more than `max_skipped_batches` were skipped."""

    def __init__(self, policy: str, max_skipped: int):
        self.policy, self.max_skipped, self.skipped = policy, max_skipped, 0

    def __call__(self, what: str, step: int, lr: float, remedy: str) -> None:
        if self.policy == "stop":
            raise FloatingPointError(f"non-finite {what} at step {step} (lr {lr:.3g}): {remedy}")
        self.skipped += 1
        if self.skipped > self.max_skipped:
            raise FloatingPointError(f"non-finite {what} at step {step}: skipped {self.skipped - 1} "
                                     "batches already (max_skipped_batches)")


class StepRunner:
    """One optimizer step (`grad_accum_steps` micro-batches through the engine) with as few host
    syncs as `on_nonfinite_loss` allows.

    With `stop` (the default) nothing in a step waits for the GPU: losses are summed on the device
    and the first step whose loss or gradient norm was not finite is remembered there; `check`
    (called at log, checkpoint and evaluation steps, and at the end) reads that once and raises
    naming the step, so no checkpoint or output is written after it. With `skip` each micro-batch's
    loss is checked before its backward (every rank takes the same branch): a skipped batch must
    leave no gradient. Under ZeRO, or DeepSpeed's bf16/fp16 optimizers, DeepSpeed itself still
    reads the gradient norm on the host once a step; otherwise the norm is ours (clips_itself).
    """

    def __init__(self, engine, loss_fn, config: TrainingConfig, device, guard: NonfiniteGuard,
                 on_skip: Callable[[int, int], None] = lambda step, skipped: None, privacy=None):
        import torch

        self.engine, self.loss_fn, self.train, self.device, self.guard = engine, loss_fn, config.train, device, guard
        self.on_skip, self.privacy = on_skip, privacy
        self.deferred = config.train.on_nonfinite_loss == "stop"
        self._loss_sum = torch.zeros((), device=device)
        self._micro_batches = 0
        # The first step with a non-finite loss / gradient norm (0: none yet), kept on the device.
        self._bad = {"training loss": torch.zeros((), dtype=torch.int64, device=device),
                     "gradients": torch.zeros((), dtype=torch.int64, device=device)}
        self._grad_norm = None
        # Without ZeRO in fp32 / bf16-autocast the gradients are clipped here (see clips_itself); under
        # DP, Opacus clips each example's, and the batch's unclipped norm is not ours to read or log.
        self._clipped = ([p for p in engine.module.parameters() if p.requires_grad]
                         if clips_itself(config.train) and privacy is None else None)
        self._clip_grad_norm = torch.nn.utils.clip_grad_norm_

    def _remember(self, what: str, step: int, value) -> None:
        first = self._bad[what]
        first.copy_(first.new_full((), step).where((first == 0) & ~value.isfinite(), first))

    def step(self, step: int, lr: float, batches) -> None:
        accumulated = 0
        while accumulated < self.train.grad_accum_steps:
            block = next(batches)
            if self.privacy is not None and not len(block):  # a Poisson batch can be empty
                self.privacy.empty_batch()
                self.engine.step()
                self.privacy.clear()
                accumulated += 1
                continue
            loss = self.loss_fn(self.engine, block.to(self.device, non_blocking=True))
            if self.deferred:
                self._remember("training loss", step, loss.detach())
            elif not all_ranks_finite(loss, self.device):
                self.guard("training loss", step, lr, "lower training.train.lr, or set on_nonfinite_loss=skip")
                self.on_skip(step, self.guard.skipped)
                continue  # no backward: this batch leaves no gradient
            self.engine.backward(loss)  # at the accumulation boundary it also all-reduces the gradients
            accumulated += 1
            if self._clipped is not None and accumulated == self.train.grad_accum_steps:
                self._grad_norm = self._clip_grad_norm(self._clipped, self.train.grad_clip)
            self.engine.step()  # DeepSpeed steps optimizer and lr only at the accumulation boundary
            if self.privacy is not None:
                self.privacy.clear()
            self._loss_sum += loss.detach().float()
            self._micro_batches += 1
        # DeepSpeed skips an update whose gradients overflowed, silently and for as long as they
        # keep doing so. Under fp16 that is the loss scaler at work; otherwise a fault.
        if self._clipped is None:
            self._grad_norm = self.engine.get_global_grad_norm()
        if self.train.precision != "fp16" and self._grad_norm is not None:
            if self.deferred and hasattr(self._grad_norm, "detach"):  # a tensor: stays on the device
                self._remember("gradients", step, self._grad_norm.detach())
            elif not math.isfinite(float(self._grad_norm)):
                self.guard("gradients", step, lr, "the update was skipped; lower training.train.lr")

    def check(self, lr: float) -> None:
        """Raise (policy stop) naming the first step with a non-finite loss or gradients."""
        if self.deferred:
            import torch

            firsts = torch.stack(list(self._bad.values())).tolist()  # one host read for both
            bad = {what: first for what, first in zip(self._bad, firsts) if first}
            if bad:
                what = min(bad, key=bad.get)
                self.guard(what, bad[what], lr, "lower training.train.lr, or set on_nonfinite_loss=skip")

    def take_mean_loss(self) -> float:
        """This rank's mean micro-batch loss since the last call."""
        mean = float(self._loss_sum) / self._micro_batches if self._micro_batches else math.nan
        self._loss_sum.zero_()
        self._micro_batches = 0
        return mean

    @property
    def grad_norm(self) -> float | None:
        return _as_float(self._grad_norm)
