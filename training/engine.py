"""Engine set-up: the model (built, or loaded from init_from; LoRA; held zeros), the optimizer and
lr schedule, wrapped by DeepSpeed with the config this run's settings call for.
"""

from __future__ import annotations

import math

from training.config import TrainingConfig


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
