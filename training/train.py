"""One training rank. A launcher (torchrun, via training.run) starts one of these per process:

    python -m torch.distributed.run --standalone --nproc_per_node 2 -m training.train \
        --config config.json --dataset DIR --tokenizer DIR --output DIR

Every rank trains on its own shard of the packed blocks; DeepSpeed averages gradients (ZeRO
partitions optimizer state and gradients). Rank 0 alone logs and writes the output folder.

With `checkpoint_every`, DeepSpeed checkpoints (weights, optimizer, lr schedule, and our step)
go to `<output>.checkpoints/`, beside the output that only appears whole at the end. A run
started again on the same output continues from the newest one (`resume`), with the batch the
interrupted run would have taken next, so its loss curve goes on where the first one stopped.

Compression trains through this loop too: `distill` mixes a teacher's next-token distribution
into the loss (every rank runs its own copy of the teacher), and `keep_zero_weights` keeps a
pruned model's zeros zero while it recovers.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import shutil
import subprocess
import sys
import time
from contextlib import nullcontext
from pathlib import Path
from typing import Callable

from core.atomic import atomic_dir, beside
from core.models import write_manifest
from core.stats import StageStats
from training.config import TrainingConfig

TRAIN_LOG = "train_log.jsonl"
RESULT_FILE = "result.json"
CONFIG_FILE = "training_config.json"
LATEST = "latest"  # DeepSpeed's pointer to the newest checkpoint tag
# Written by rank 0 once every rank has saved its part of a checkpoint. DeepSpeed writes `latest`
# as soon as rank 0 is done, so a kill at that moment left a `latest` naming a checkpoint whose
# other ranks' files were missing (seen in CI: resume failed on rank 1's optimizer state).
COMPLETE = "conveyor_complete"
UNIVERSAL = "universal"  # <checkpoints>/universal/<tag>: a checkpoint converted for another world size


def checkpoint_dir(output: Path) -> Path:
    return beside(output, ".checkpoints")


def resume_fingerprint(config: TrainingConfig) -> dict:
    """What must not change between a checkpoint and the run resuming from it."""
    train = config.train
    fingerprint = {"model": config.model.model_dump(), "tokenizer": config.tokenizer.model_dump(),
                   "seq_len": train.seq_len, "micro_batch_size": train.micro_batch_size,
                   "grad_accum_steps": train.grad_accum_steps, "seed": train.seed}
    if config.distill:  # only then: checkpoints of runs without distillation still match
        fingerprint["distill"] = config.distill.model_dump()
    return fingerprint


# Rank 0's model-states file: below ZeRO-3 the one copy of the model, at ZeRO-3 rank 0's partition.
MODEL_STATES_FILES = ("mp_rank_00_model_states.pt", "zero_pp_rank_0_mp_rank_00_model_states.pt")


def read_checkpoint_header(tag_dir: Path) -> dict:
    """Rank 0's model-states file of a checkpoint: our client state (step, fingerprint) and
    DeepSpeed's dp_world_size and ds_config. Memory-mapped: the weights in it are not read."""
    import torch

    for name in MODEL_STATES_FILES:
        if (tag_dir / name).is_file():
            return torch.load(tag_dir / name, map_location="cpu", mmap=True, weights_only=False)
    raise RuntimeError(f"{tag_dir} holds none of {', '.join(MODEL_STATES_FILES)}: not a complete DeepSpeed "
                       "checkpoint; delete it to start over")


def resume_grad_accum(header: dict, micro_batch_size: int, world_size: int) -> int:
    """The gradient accumulation that keeps the checkpoint's global batch on `world_size` ranks.

    A run's global batch (micro-batch x accumulation x ranks) is fixed when it starts. Resumed on
    fewer or more ranks, accumulation makes up the difference, so an optimizer step still averages
    as many blocks as before: the lr schedule (by step) means what it meant, step N has seen the
    same number of tokens, and the data position (micro-batches skipped per rank) is the same
    fraction of the epoch. A global batch that cannot be split over the new ranks is refused
    rather than silently changed in the middle of a run.
    """
    global_batch = header["ds_config"]["gradient_accumulation_steps"] * header["dp_world_size"]  # micro-batches
    grad_accum, remainder = divmod(global_batch, world_size)
    if remainder:
        fits = [n for n in range(1, global_batch + 1) if global_batch % n == 0]
        raise RuntimeError(
            f"the checkpoint's global batch of {global_batch} micro-batches of {micro_batch_size} "
            f"({header['dp_world_size']} ranks x {header['ds_config']['gradient_accumulation_steps']} "
            f"accumulation steps) does not split over {world_size} ranks: resume on one of {fits} ranks")
    return grad_accum


def convert_to_universal(checkpoints: Path, tag: str) -> Path:
    """DeepSpeed's own converter (deepspeed.checkpoint.ds_to_universal) turns the ZeRO partitions
    of `tag`, saved by another number of ranks, into per-parameter files any number of ranks can
    load; returns the folder to load from. It is derived data: made again on each such resume."""
    universal = checkpoints / UNIVERSAL
    shutil.rmtree(universal, ignore_errors=True)  # a conversion a crash cut short
    command = [sys.executable, "-m", "deepspeed.checkpoint.ds_to_universal",
               "--input_folder", str(checkpoints / tag), "--output_folder", str(universal / tag),
               # The metadata tensor/pipeline parallelism would need; plain data parallelism needs none.
               "--inject_missing_state"]
    done = subprocess.run(command, capture_output=True, text=True)
    if done.returncode != 0:
        raise RuntimeError(f"converting {checkpoints / tag} to a universal checkpoint failed:\n"
                           + "\n".join((done.stdout + done.stderr).splitlines()[-20:]))
    return universal


def newest_complete_checkpoint(checkpoints: Path) -> str | None:
    """The newest checkpoint tag every rank finished writing; before markers existed, `latest`."""
    tags = sorted(p.name for p in checkpoints.glob("step*") if p.is_dir() and (p / COMPLETE).is_file())
    if tags:
        return tags[-1]
    if not (checkpoints / LATEST).is_file():
        return None
    # A run checkpointed before the marker existed: trust `latest` if every rank's file is there.
    tag = (checkpoints / LATEST).read_text().strip()
    try:
        ranks = read_checkpoint_header(checkpoints / tag)["dp_world_size"]
    except (RuntimeError, OSError, KeyError):
        return None
    partitions = list((checkpoints / tag).glob("*optim_states.pt"))
    return tag if not partitions or len(partitions) >= ranks else None


def prune_checkpoints(directory: Path, keep: int) -> None:
    tags = sorted(p for p in directory.iterdir() if p.is_dir() and p.name.startswith("step"))
    for old in tags[:-keep]:
        shutil.rmtree(old)


def read_log(path: Path, up_to_step: int) -> list[str]:
    """The log lines of steps <= up_to_step: what a resumed run keeps of the interrupted one's."""
    if not path.is_file():
        return []
    return [line for line in path.read_text().splitlines() if line and json.loads(line)["step"] <= up_to_step]


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--config", type=Path, required=True, help="TrainingConfig as JSON")
    parser.add_argument("--dataset", type=Path, required=True, help="folder with train.jsonl and validation.jsonl")
    parser.add_argument("--tokenizer", type=Path, required=True, help="HF tokenizer folder")
    parser.add_argument("--output", type=Path, required=True, help="model folder to create")
    return parser.parse_args()


def check_inputs(args: argparse.Namespace) -> None:
    """Fail in the first second, before the heavy imports, on a path that is not there."""
    for path in (args.config, args.dataset / "train.jsonl", args.dataset / "validation.jsonl",
                 args.tokenizer / "tokenizer.json"):
        if not path.is_file():
            raise FileNotFoundError(f"training input not found: {path}")


def warmup_cosine(warmup_steps: int, max_steps: int, min_lr_ratio: float):
    """The lr multiplier at optimizer step `step`: linear warmup, then cosine down to min_lr_ratio."""
    def multiplier(step: int) -> float:
        if step < warmup_steps:
            return (step + 1) / warmup_steps
        progress = min(1.0, (step - warmup_steps) / max(1, max_steps - warmup_steps))
        return min_lr_ratio + (1 - min_lr_ratio) * 0.5 * (1 + math.cos(math.pi * progress))
    return multiplier


def param_groups(model, weight_decay: float) -> list[dict]:
    # Decay matrices (linear weights, embedding) only; norms' gains stay free, as in nanoGPT.
    params = [p for p in model.parameters() if p.requires_grad]
    return [
        {"params": [p for p in params if p.dim() >= 2], "weight_decay": weight_decay},
        {"params": [p for p in params if p.dim() < 2], "weight_decay": 0.0},
    ]


def clips_itself(train) -> bool:
    """Whether StepRunner clips the gradients rather than DeepSpeed. Without ZeRO and without
    DeepSpeed's bf16/fp16 optimizer wrappers the engine clips fp32 gradients but keeps no norm;
    clipping ourselves (at the accumulation boundary, after the all-reduce) gives the same update
    and the norm to log and check, left on the device. Only under on_nonfinite_loss=stop: the
    update of a non-finite norm is applied, and stop ends the run before anything is saved,
    where skip would have to skip it (and DeepSpeed's clipping leaves that to the loss check)."""
    return train.zero_stage == 0 and train.precision in ("fp32", "bf16-autocast") and train.on_nonfinite_loss == "stop"


def deepspeed_config(config: TrainingConfig, load_universal: bool = False) -> dict:
    train = config.train
    zero = {"stage": train.zero_stage}
    if train.offload_optimizer:
        zero["offload_optimizer"] = {"device": "cpu", "pin_memory": train.device == "cuda"}
    if train.offload_params:
        zero["offload_param"] = {"device": "cpu", "pin_memory": train.device == "cuda"}
    return {
        "train_micro_batch_size_per_gpu": train.micro_batch_size,
        "gradient_accumulation_steps": train.grad_accum_steps,
        # Under DP the DPOptimizer clips every example's gradient; nothing clips their noisy mean.
        "gradient_clipping": 0.0 if clips_itself(train) or config.dp else train.grad_clip,
        "zero_optimization": zero,
        # Offload works with our torch AdamW too; DeepSpeed would otherwise insist on its CPU Adam,
        # a JIT-compiled op.
        "zero_force_ds_cpu_optimizer": False,
        "bf16": {"enabled": train.precision == "bf16"},
        # fp32 weights; the engine's forward runs under torch.autocast, and ZeRO reduces the
        # gradients of Linear weights (the matmuls autocast runs in bf16) in bf16.
        "torch_autocast": {"enabled": train.precision == "bf16-autocast", "dtype": "bfloat16"},
        # fp16 keeps a dynamic loss scale: halved on overflow (that step is skipped), grown back later.
        "fp16": {"enabled": train.precision == "fp16", "loss_scale": 0, "initial_scale_power": 16},
        "steps_per_print": 10**9,  # we log ourselves, rank 0 only
        # A resume on another number of ranks loads a checkpoint convert_to_universal made.
        "checkpoint": {"load_universal": load_universal},
    }


def flops_per_token(num_parameters: int, num_layers: int, hidden_size: int, seq_len: int,
                    lora_parameters: int = 0) -> int:
    """Training FLOPs per token, counted as for MFU (no recomputation): 6 per weight (2 forward,
    2 for the input gradients, 2 for the weight gradients) plus attention's 12 * L * H * S. Under
    LoRA the frozen weights take no weight gradients (4 each) and the adapters take 6 each."""
    per_weight = 4 * num_parameters + 6 * lora_parameters if lora_parameters else 6 * num_parameters
    return per_weight + 12 * num_layers * hidden_size * seq_len


def peak_memory_bytes(device: str) -> int:
    """This process's peak memory: on "cuda" torch's allocator peak, on "cpu" the peak resident
    set size (Linux reports ru_maxrss in KiB)."""
    if device == "cuda":
        import torch

        return torch.cuda.max_memory_allocated()
    import resource

    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024


def mfu(tokens_per_second: float, flops_per_token: int, peak_tflops: float) -> float:
    """Model FLOPs utilization: the training FLOPs a second done, as a fraction of the device's peak."""
    return tokens_per_second * flops_per_token / (peak_tflops * 1e12)


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


def out_of_memory_advice(config: TrainingConfig, where: str = "training") -> str:
    """What to change after a CUDA out-of-memory error, the cheapest first."""
    train = config.train
    options = [f"lower training.train.micro_batch_size (now {train.micro_batch_size}) and raise "
               f"grad_accum_steps (now {train.grad_accum_steps}) to keep the batch"]
    if not train.chunked_loss_tokens:
        options.append("set training.train.chunked_loss_tokens=4096 (the logits of a micro-batch are often "
                       "most of the activation memory)")
    if not train.activation_checkpointing:
        options.append("set training.train.activation_checkpointing=true")
    if train.zero_stage < 3:
        options.append(f"raise training.train.zero_stage to 3 (now {train.zero_stage})")
    if not train.offload_optimizer:
        options.append("set training.train.offload_optimizer=true")
    return f"out of GPU memory in {where}; try: " + "; or ".join(options)


def logits_loss(logits, targets):
    """Mean cross-entropy of [batch, seq, vocab] logits, upcast to float32, against [batch, seq] targets."""
    import torch.nn.functional as F

    return F.cross_entropy(logits.float().flatten(0, 1), targets.flatten())


def next_token_loss(engine, block):
    return logits_loss(engine(input_ids=block[:, :-1]).logits, block[:, 1:])


def distillation_loss(student_logits, teacher_logits, targets, temperature: float, alpha: float):
    """alpha * T^2 * KL(teacher || student) of the distributions softened by temperature T, plus
    (1 - alpha) * the cross-entropy against the targets; each a mean over the tokens of
    [batch, seq, vocab] logits (upcast to float32) and [batch, seq] targets. The teacher's
    distribution is the target (forward KL, as in Hinton et al.); T^2 keeps the soft term's
    gradients on the scale of the hard term's whatever T is."""
    import torch.nn.functional as F

    student = student_logits.float().flatten(0, 1)
    soft = F.kl_div(F.log_softmax(student / temperature, dim=-1),
                    F.log_softmax(teacher_logits.float().flatten(0, 1) / temperature, dim=-1),
                    reduction="batchmean", log_target=True)  # batchmean of [tokens, vocab]: mean per token
    return alpha * temperature ** 2 * soft + (1 - alpha) * F.cross_entropy(student, targets.flatten())


def chunked_next_token_loss(engine, block):
    """next_token_loss computed inside the model's forward, chunk by chunk (training.loss), which
    build_engine attached when chunked_loss_tokens is set; engine.compile() compiles it with the model."""
    return engine(input_ids=block[:, :-1], targets=block[:, 1:])


def distillation_loss_function(config: TrainingConfig, teacher):
    """The training loss under `distill`: distillation_loss of the model's and the teacher's logits
    of the same input, the teacher's without gradients; with chunked_loss_tokens, computed inside
    the model's forward a chunk at a time (training.loss) from the teacher's last hidden states."""
    import torch

    distill = config.distill
    if config.train.chunked_loss_tokens:
        from training.loss import check_plain_projection

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
    import torch

    compiled_loss = torch.compile(logits_loss)

    def compiled_next_token_loss(engine, block):
        return compiled_loss(engine(input_ids=block[:, :-1]).logits, block[:, 1:])
    return compiled_next_token_loss


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


def zero_weight_masks(model) -> dict:
    """keep_zero_weights: name -> (weight != 0) of each trainable matrix that holds exact zeros (a
    pruned model's), on the device DeepSpeed puts the model on."""
    from deepspeed.accelerator import get_accelerator

    device = get_accelerator().current_device_name()
    return {name: (param != 0).to(device) for name, param in model.named_parameters()
            if param.requires_grad and param.dim() >= 2 and (param == 0).any()}


def build_engine(config: TrainingConfig, vocab_size: int, eos_token_id: int, pad_token_id: int,
                 load_universal: bool = False, held_zeros: dict | None = None, privacy=None):
    """The model, optimizer and lr schedule wrapped by DeepSpeed: (engine, scheduler, parameters).
    benchmarks/train_bench.py times this same engine.

    With keep_zero_weights, the dict `held_zeros` (when given) receives zero_weight_masks of the
    model as built or loaded, named as in the exported model, for the export to check or apply.
    With `privacy` (training.privacy.Privacy) the model and optimizer DeepSpeed wraps are Opacus'
    (per-example gradients, clipped and noised in the optimizer's step)."""
    import deepspeed
    import torch

    from training.model import apply_lora, build_model, count_parameters, load_pretrained

    train = config.train
    # Same seed on every rank: identical initial weights (DeepSpeed also broadcasts rank 0's),
    # LoRA's random A matrices included.
    torch.manual_seed(train.seed)
    if config.model.init_from is None:
        model = build_model(config.model, vocab_size, eos_token_id, pad_token_id)
    else:
        model = load_pretrained(config.model)
        if train.seq_len > model.config.max_position_embeddings:
            raise ValueError(f"train.seq_len {train.seq_len} exceeds the checkpoint's max_position_embeddings "
                             f"{model.config.max_position_embeddings}")
        if vocab_size > model.config.vocab_size:
            raise ValueError(f"the tokenizer has {vocab_size} tokens, the checkpoint's embedding "
                             f"{model.config.vocab_size}: use the checkpoint's own tokenizer (prepare_tokenizer)")
    num_parameters = count_parameters(model)  # of the exported model: LoRA's adapters are merged away
    # From the weights as loaded: a resumed run loads its checkpoint into the engine later, and
    # the zeros to hold are init_from's.
    masks = zero_weight_masks(model) if train.keep_zero_weights else {}
    if not config.model.lora.enabled:
        # A tensor hook scales the gradient before it reaches param.grad, where DeepSpeed takes it
        # (ZeRO 1-3 and its bf16 optimizer in post-accumulate-grad hooks, ZeRO-0 after the
        # backward), so the all-reduce, the clipping and AdamW all see a zero: AdamW's moments stay
        # zero and its decoupled weight decay multiplies a zero, so these weights never move.
        # Registered before deepspeed.initialize, which keeps the parameter objects (ZeRO-3 only
        # swaps their data for its partitions; the gradient a hook sees is still whole).
        for name, mask in masks.items():
            model.get_parameter(name).register_hook(lambda grad, mask=mask: grad * mask)
    # Under LoRA the base weights are frozen and take no gradient; the adapters' update reaches
    # every weight of a matrix through the merge, so the export applies the masks to the merged weights.
    if held_zeros is not None:
        held_zeros.update(masks)
    if train.activation_checkpointing:
        model.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
    if train.chunked_loss_tokens:
        from training.loss import attach_chunked_loss

        attach_chunked_loss(model, train.chunked_loss_tokens)
    if config.model.lora.enabled:
        model = apply_lora(model, config.model.lora)  # freezes all but the adapters: param_groups skips them
    # A torch optimizer rather than DeepSpeed's "AdamW" config type, which JIT-builds FusedAdam;
    # on the GPU torch's own fused kernel (the plain loop of benchmarks/train_bench.py uses it too).
    # Offloaded optimizer state lives on the CPU, where torch's default loop is the tested one.
    fused = True if train.device == "cuda" and not train.offload_optimizer else None
    optimizer = torch.optim.AdamW(param_groups(model, train.weight_decay), lr=train.lr, betas=(0.9, 0.95),
                                  fused=fused)
    if privacy is not None:
        model, optimizer = privacy.wrap(model, optimizer)
    engine, _, _, scheduler = deepspeed.initialize(
        model=model, optimizer=optimizer, config=deepspeed_config(config, load_universal),
        # A callable: DeepSpeed builds the schedule on the optimizer it wraps for ZeRO.
        lr_scheduler=lambda wrapped: torch.optim.lr_scheduler.LambdaLR(
            wrapped, warmup_cosine(train.warmup_steps, train.max_steps, train.min_lr_ratio)))
    if train.compile:
        engine.compile()
    return engine, scheduler, num_parameters


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


class MlflowMetrics:
    """Metrics to the MLflow run the caller opened (MLFLOW_RUN_ID), never a new run."""

    def __init__(self, run_id: str):
        import mlflow

        self.run_id = run_id
        self.client = mlflow.MlflowClient()

    def log(self, step: int, metrics: dict[str, float]) -> None:
        from mlflow.entities import Metric

        now = int(time.time() * 1000)
        self.client.log_batch(self.run_id, metrics=[
            Metric(key=key, value=value, timestamp=now, step=step) for key, value in metrics.items()])


def main() -> None:
    from torch.distributed.elastic.multiprocessing.errors import record

    # record: a rank's exception goes into torchrun's failure report, which ends the output
    # that training.run quotes in TrainingFailed.
    record(train_rank)(parse_args())


def train_rank(args: argparse.Namespace) -> None:
    from core.process import die_with_parent

    # torchrun starts each rank in a session of its own: without this a killed launcher leaves
    # its ranks hanging (in init_process_group, or training on with nobody reading their output).
    die_with_parent(os.getppid())
    check_inputs(args)
    config = TrainingConfig.model_validate_json(args.config.read_text())
    train = config.train

    import deepspeed
    import torch
    import torch.distributed as dist
    from transformers import AutoTokenizer
    from transformers.utils import logging as hf_logging

    from training.model import count_trainable_parameters, load_teacher
    from training.packing import batches, pack_blocks, rank_shard, tokenize_documents

    # A JIT build of the shared-memory collective op takes ~55 s on first use; gloo needs none.
    deepspeed.ops.__compatible_ops__["deepspeed_shm_comm"] = False
    deepspeed.utils.logger.setLevel("WARNING")
    hf_logging.set_verbosity_warning()
    hf_logging.disable_progress_bar()  # a loading bar per rank would flood the launcher's output
    deepspeed.init_distributed(dist_backend="nccl" if train.device == "cuda" else "gloo")
    rank, world_size = dist.get_rank(), dist.get_world_size()
    if train.device == "cuda":
        device = torch.device("cuda", int(os.environ.get("LOCAL_RANK", 0)))
        torch.cuda.set_device(device)
    else:
        device = torch.device("cpu")

    def say(message: str) -> None:
        if rank == 0:
            print(message, flush=True)

    started = time.perf_counter()
    tokenizer = AutoTokenizer.from_pretrained(args.tokenizer)
    block_len = train.seq_len + 1
    train_blocks = pack_blocks(tokenize_documents(args.dataset / "train.jsonl", tokenizer),
                               tokenizer.eos_token_id, block_len)
    validation_blocks = pack_blocks(tokenize_documents(args.dataset / "validation.jsonl", tokenizer),
                                    tokenizer.eos_token_id, block_len)
    say(f"packed {len(train_blocks)} train and {len(validation_blocks)} validation blocks of "
        f"{block_len} tokens; {world_size} ranks")

    checkpoints = checkpoint_dir(args.output)
    # What a resume must match: the config as given (an accumulation adjusted below is not part of it).
    fingerprint = resume_fingerprint(config)
    resume_tag, universal = None, False
    if train.resume and checkpoints.is_dir():
        resume_tag = newest_complete_checkpoint(checkpoints)
    if resume_tag:
        header = read_checkpoint_header(checkpoints / resume_tag)
        if header["fingerprint"] != fingerprint:
            raise RuntimeError(f"the checkpoint in {checkpoints} was made with another model, data or batch "
                               "config: delete it, or set training.train.resume=false")
        grad_accum = resume_grad_accum(header, train.micro_batch_size, world_size)
        if grad_accum != train.grad_accum_steps:
            say(f"warning: the checkpoint was saved by {header['dp_world_size']} ranks; on {world_size} "
                f"grad_accum_steps is {grad_accum} (not {train.grad_accum_steps}) to keep the run's global batch")
            config = config.model_copy(update={"train": train.model_copy(update={"grad_accum_steps": grad_accum})})
            train = config.train
        # ZeRO partitions the optimizer state by rank: on another number of ranks it loads only
        # through a universal checkpoint. (Unpartitioned state, ZeRO-0 in fp32, loads as it is.)
        universal = (header["dp_world_size"] != world_size
                     and any((checkpoints / resume_tag).glob("*zero_pp_rank_*optim_states.pt")))
        if universal:
            say(f"converting checkpoint {resume_tag} of {header['dp_world_size']} ranks to a universal one")
            if rank == 0:
                convert_to_universal(checkpoints, resume_tag)
            dist.barrier()
        del header

    privacy = None
    if config.dp is not None:
        from training.privacy import Privacy

        privacy = Privacy(config.dp, len(train_blocks), train.micro_batch_size, train.max_steps)
        say(f"differential privacy: noise multiplier {privacy.noise_multiplier:.3g}, clipping at "
            f"{config.dp.max_grad_norm:g}, sampling rate {privacy.sample_rate:.3g}, for epsilon "
            f"{config.dp.target_epsilon:g} at delta {config.dp.delta:g} over {train.max_steps} steps")
    held_zeros = {}
    try:
        engine, scheduler, num_parameters = build_engine(
            config, len(tokenizer), tokenizer.eos_token_id, tokenizer.pad_token_id, load_universal=universal,
            held_zeros=held_zeros, privacy=privacy)
        # Under DP, Opacus' GradSampleModule wraps the (peft) model.
        model_module = engine.module._module if privacy else engine.module
        teacher = load_teacher(config.distill, model_module.config.vocab_size, device) if config.distill else None
    except torch.cuda.OutOfMemoryError as exc:  # weights, gradients and optimizer state did not fit
        raise RuntimeError(out_of_memory_advice(config, where="setting up the model and optimizer")) from exc
    trainable_parameters = count_trainable_parameters(engine.module)
    if privacy is not None:
        ratio = privacy.noise_to_signal(trainable_parameters)
        if ratio > 10:
            say(f"warning: differential privacy's noise will swamp the updates (noise norm {ratio:.0f}x the "
                f"clipped gradient's at most, over {trainable_parameters:,} trainable parameters and batches of "
                f"{train.micro_batch_size}): raise micro_batch_size, lower model.lora.r or target fewer modules, "
                "or allow a larger dp.target_epsilon")
    say(f"model: {num_parameters:,} parameters ({trainable_parameters:,} trainable"
        f"{', LoRA' if config.model.lora.enabled else ''}; from {config.model.init_from or 'random init'}); "
        f"ZeRO stage {train.zero_stage}, {train.precision}, setup {time.perf_counter() - started:.1f}s")
    if train.keep_zero_weights:
        held = sum(int(mask.numel() - mask.count_nonzero()) for mask in held_zeros.values())
        in_matrices = sum(mask.numel() for mask in held_zeros.values())
        say(f"keep_zero_weights: {held:,} weights held at zero in {len(held_zeros)} matrices "
            f"({held / max(in_matrices, 1):.1%} of their {in_matrices:,} weights)")
        if config.model.lora.enabled and rank != 0:
            held_zeros.clear()  # only rank 0 merges and saves
    if teacher is not None:
        say(f"distilling from {config.distill.teacher} (temperature {config.distill.temperature}, "
            f"alpha {config.distill.alpha})")

    start_step = 0
    if resume_tag:
        _, client_state = engine.load_checkpoint(str(checkpoints / UNIVERSAL if universal else checkpoints),
                                                 tag=resume_tag)
        start_step = client_state["step"]
        torch.set_rng_state(client_state["torch_rng_state"])
        if universal:
            dist.barrier()  # every rank has loaded it
            if rank == 0:
                shutil.rmtree(checkpoints / UNIVERSAL)
        say(f"resumed from step {start_step} ({checkpoints})")
    # The live log sits with the checkpoints, so that what was logged before an interruption
    # stays; the lines past the step we resume from are dropped (they will be logged again).
    log_path = checkpoints / TRAIN_LOG
    if rank == 0:
        checkpoints.mkdir(parents=True, exist_ok=True)
        kept = read_log(log_path, start_step)
        log_path.write_text("".join(line + "\n" for line in kept))
    # The data position: each rank skips the micro-batches its share of start_step global batches
    # took. On the checkpoint's number of ranks that is exactly where the interrupted run stopped.
    # On another number (the global batch kept, see resume_grad_accum), it is the same fraction of
    # the epoch, but the blocks are dealt to the ranks anew: until the epoch ends some blocks come
    # twice and others not at all; later epochs are whole again.
    train_batches = batches(rank_shard(train_blocks, rank, world_size), train.micro_batch_size, train.seed,
                            skip=start_step * train.grad_accum_steps)
    if privacy is not None:  # one rank, one micro-batch a step (TrainingConfig checks)
        from training.privacy import poisson_batches

        train_batches = poisson_batches(train_blocks, privacy.sample_rate, train.seed, skip=start_step)

    mlflow_run_id = os.environ.get("MLFLOW_RUN_ID")
    mlflow_metrics = MlflowMetrics(mlflow_run_id) if rank == 0 and mlflow_run_id else None
    tokens_per_step = train.micro_batch_size * train.grad_accum_steps * world_size * train.seq_len
    # The shape of the model as built or loaded: with init_from, the checkpoint's, not training.model's.
    shape = model_module.config
    model_flops_per_token = flops_per_token(
        num_parameters, shape.num_hidden_layers, shape.hidden_size, train.seq_len,
        lora_parameters=trainable_parameters if config.model.lora.enabled else 0)

    def log_entry(entry: dict) -> None:
        """Rank 0: one line to the console, the train log and MLflow (`train/<key>`, `val/<key>`)."""
        if rank != 0:
            return
        fields = " ".join(f"{key} {value:.4g}" if isinstance(value, float) else f"{key} {value}"
                          for key, value in entry.items() if key != "step")
        print(f"step {entry['step']}/{train.max_steps} {fields}", flush=True)
        with open(log_path, "a", encoding="utf-8") as log:
            log.write(json.dumps(entry) + "\n")
        if mlflow_metrics:
            metrics = {(k.replace("val_", "val/") if k.startswith("val_") else f"train/{k}"): float(v)
                       for k, v in entry.items() if k not in ("step", "seconds") and v is not None}
            mlflow_metrics.log(entry["step"], metrics)

    # Rank 0 builds the output in a temporary sibling (the train log grows there) that becomes
    # the output folder in one rename after the model is saved; a crash leaves no output.
    with atomic_dir(args.output) if rank == 0 else nullcontext() as work_dir:
        loop_started = interval_started = time.perf_counter()
        interval_steps = 0
        train_loss = float("nan")
        nonfinite = NonfiniteGuard(train.on_nonfinite_loss, train.max_skipped_batches)
        runner = StepRunner(engine, loss_function(config, teacher), config, device, nonfinite,
                            on_skip=lambda step, skipped: say(f"step {step}: non-finite loss, batch skipped ({skipped})"),
                            privacy=privacy)
        best_val_loss, evaluations_without_improvement = math.inf, 0
        last_val_step = None  # the step of the last validation loss logged
        step = start_step
        try:
            for step in range(start_step + 1, train.max_steps + 1):
                lr = scheduler.get_last_lr()[0]  # the rate this step's update uses
                runner.step(step, lr, train_batches)
                interval_steps += 1
                logging_step = step % train.log_every == 0 or step == train.max_steps
                checkpoint_step = bool(train.checkpoint_every) and step % train.checkpoint_every == 0 and step < train.max_steps
                eval_step = bool(train.eval_every) and step % train.eval_every == 0 and step < train.max_steps
                if logging_step or checkpoint_step or eval_step:
                    runner.check(lr)

                if logging_step:
                    # A collective: every rank reaches it at the same step.
                    train_loss = mean_across_ranks(runner.take_mean_loss(), device)
                    now = time.perf_counter()
                    tokens_per_second = tokens_per_step * interval_steps / (now - interval_started)
                    entry = {
                        "step": step,
                        "loss": round(train_loss, 4),
                        "lr": lr,
                        "grad_norm": runner.grad_norm,
                        "tokens_per_second": round(tokens_per_second, 1),
                        "seconds": round(now - loop_started, 2),
                    }
                    if train.device == "cuda":
                        entry["mfu"] = round(mfu(tokens_per_second, model_flops_per_token, train.peak_tflops), 4)
                        entry["peak_memory_gib"] = round(peak_memory_bytes("cuda") / 2**30, 2)
                    else:
                        entry["peak_rss_gib"] = round(peak_memory_bytes("cpu") / 2**30, 3)
                    if privacy is not None:
                        entry["epsilon"] = round(privacy.epsilon(step), 4)
                    interval_steps, interval_started = 0, now
                    log_entry(entry)

                if checkpoint_step:
                    # Every rank writes its partition; the step says where the data stream resumes.
                    engine.save_checkpoint(str(checkpoints), tag=f"step{step:08d}", client_state={
                        "step": step, "fingerprint": fingerprint,
                        "torch_rng_state": torch.get_rng_state()})
                    dist.barrier()  # every rank's files are written: only now is it a checkpoint
                    if rank == 0:
                        (checkpoints / f"step{step:08d}" / COMPLETE).touch()
                        prune_checkpoints(checkpoints, train.keep_checkpoints)

                if eval_step:
                    val = validation_loss(engine, validation_blocks, config, rank, world_size, device)
                    if val is not None:
                        log_entry({"step": step, "val_loss": round(val, 4), "val_perplexity": round(math.exp(val), 2)})
                        last_val_step = step
                        if val < best_val_loss:
                            best_val_loss, evaluations_without_improvement = val, 0
                        else:
                            evaluations_without_improvement += 1
                        if train.early_stopping_patience and evaluations_without_improvement >= train.early_stopping_patience:
                            say(f"early stop at step {step}: no better validation loss in "
                                f"{evaluations_without_improvement} evaluations")
                            break
        except torch.cuda.OutOfMemoryError as exc:
            raise RuntimeError(out_of_memory_advice(config)) from exc
        loop_seconds = time.perf_counter() - loop_started
        steps_run = step - start_step

        val_loss = validation_loss(engine, validation_blocks, config, rank, world_size, device)
        say(f"validation loss {val_loss}")
        if rank == 0 and mlflow_metrics and val_loss is not None and last_val_step != step:
            # The last point of the validation curve in MLflow (the train log keeps periodic ones).
            mlflow_metrics.log(step, {"val/loss": float(val_loss), "val/perplexity": math.exp(val_loss)})

        # Below ZeRO-3 every rank holds the whole model and this is a no-op; at stage 3 it
        # gathers the partitioned weights so rank 0 can save them.
        with deepspeed.zero.GatheredParameters(list(engine.module.parameters()), modifier_rank=None):
            if rank == 0:
                # A plain HF model either way: compression, evaluation and serving never see peft.
                model = model_module.merge_and_unload() if config.model.lora.enabled else model_module
                if config.model.lora.enabled:
                    with torch.no_grad():  # the merged low-rank update filled the held zeros in
                        for name, mask in held_zeros.items():
                            model.get_parameter(name).mul_(mask)
                else:  # the gradient hooks held them: a cheap check that nothing else moved them
                    moved = sum(int(model.get_parameter(name).masked_select(~mask).count_nonzero())
                                for name, mask in held_zeros.items())
                    if moved:
                        raise RuntimeError(f"keep_zero_weights: {moved} of the weights held at zero are not "
                                           "zero at the end of training")
                model.save_pretrained(work_dir, safe_serialization=True)
                tokenizer.save_pretrained(work_dir)
        if rank == 0:
            result = {
                "steps": step,
                "resumed_from_step": start_step,
                "skipped_batches": nonfinite.skipped,
                "final_train_loss": train_loss,
                "val_loss": val_loss,
                "tokens_seen": tokens_per_step * step,
                # Throughput of this process's own steps (after a resume, the steps it ran).
                "tokens_per_second": tokens_per_step * steps_run / loop_seconds if steps_run else 0.0,
                "seconds": loop_seconds,
                "seconds_per_step": loop_seconds / steps_run if steps_run else 0.0,
                "num_parameters": num_parameters,
                "trainable_parameters": trainable_parameters,
                "flops_per_token": model_flops_per_token,
                "init_from": config.model.init_from,
                "lora": config.model.lora.enabled,
                "distill": config.distill.model_dump() if config.distill else None,
                "dp": privacy.report(step) if privacy else None,
                "world_size": world_size,
                "zero_stage": train.zero_stage,
                "peak_memory_bytes": peak_memory_bytes(train.device),  # rank 0's
            }
            shutil.copy2(log_path, work_dir / TRAIN_LOG)
            (work_dir / RESULT_FILE).write_text(json.dumps(result, indent=2))
            (work_dir / CONFIG_FILE).write_text(config.model_dump_json(indent=2))
            write_manifest(work_dir, "hf", init_from=config.model.init_from, lora=config.model.lora.enabled)
    if rank == 0:
        # Beside the output folder, not in it (see core.stats.stats_path). The records of this
        # stage are packed blocks of seq_len + 1 tokens.
        StageStats(
            stage="train", records_in=len(train_blocks), seconds=round(time.perf_counter() - started, 4),
            extra={"validation_blocks": len(validation_blocks),
                   **{key: value for key, value in result.items() if value is not None and key not in ("distill", "dp")},
                   # Stats hold flat values only.
                   **{f"distill_{key}": value for key, value in (result["distill"] or {}).items()},
                   **{f"dp_{key}": value for key, value in (result["dp"] or {}).items()}},
        ).write(args.output)
    dist.barrier()  # the others exit only once rank 0 has renamed the output into place
    say(f"saved {args.output}")
    dist.destroy_process_group()


if __name__ == "__main__":
    main()
