"""One training rank: the recipe. A launcher (torchrun, via training.run) starts one per process:

    python -m torch.distributed.run --standalone --nproc_per_node 2 -m training.train \
        --config config.json --dataset DIR --tokenizer DIR --output DIR

Every rank trains on its own shard of the packed blocks; DeepSpeed averages gradients (ZeRO
partitions optimizer state and gradients). Rank 0 alone logs and writes the output folder.

`train_rank` reads top to bottom: join the process group, pack the data, decide where to resume
(training.checkpoint), build the engine (training.engine), fit (the loop: the step from
training.step, metrics to training.metrics' loggers, checkpoints, evaluation, early stopping),
then export the model. A run started again on the same output continues from its newest
checkpoint, with the batch the interrupted run would have taken next, so its loss curve goes on
where the first one stopped.

Compression trains through this loop too: `distill` mixes a teacher's next-token distribution
into the loss (training.loss; every rank runs its own copy of the teacher), and
`keep_zero_weights` keeps a pruned model's zeros zero while it recovers.
"""

from __future__ import annotations

import argparse
import json
import logging
import math
import os
import shutil
import sys
import time
from contextlib import nullcontext
from dataclasses import dataclass, field
from pathlib import Path

from core.atomic import atomic_dir
from core.models import write_manifest
from core.stats import StageStats
from training.checkpoint import (Best, Resume, checkpoint_dir, convert_to_universal, drop_best_checkpoints,
                                 load_best, load_checkpoint, plan_resume, save_best, save_checkpoint)
from training.config import TrainingConfig
from training.engine import out_of_memory_advice
from training.metrics import (TRAIN_LOG, ConsoleLogger, JsonlLogger, MetricLoggers, MlflowLogger, flops_per_token,
                              mfu, peak_memory_bytes)

RESULT_FILE = "result.json"
CONFIG_FILE = "training_config.json"


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--config", type=Path, required=True, help="TrainingConfig as JSON")
    parser.add_argument("--dataset", type=Path, required=True, help="folder with train.jsonl and validation.jsonl")
    parser.add_argument("--tokenizer", type=Path, required=True, help="HF tokenizer folder")
    parser.add_argument("--output", type=Path, required=True, help="model folder to create")
    parser.add_argument("--no-step-lines", action="store_true",
                        help="print no `step N/MAX ...` lines (the launcher's progress bar follows the train log)")
    return parser.parse_args()


def check_inputs(args: argparse.Namespace) -> None:
    """Fail in the first second, before the heavy imports, on a path that is not there."""
    for path in (args.config, args.dataset / "train.jsonl", args.dataset / "validation.jsonl",
                 args.tokenizer / "tokenizer.json"):
        if not path.is_file():
            raise FileNotFoundError(f"training input not found: {path}")


@dataclass
class Ranks:
    """This process's place in the job."""

    rank: int
    world_size: int
    device: object  # torch.device

    def say(self, message: str) -> None:
        if self.rank == 0:
            print(message, flush=True)


@dataclass
class Data:
    tokenizer: object
    train_blocks: object  # a tensor [blocks, seq_len + 1] (training.packing)
    validation_blocks: object


@dataclass
class Model:
    engine: object
    scheduler: object
    module: object  # the model the engine trains (under DP inside Opacus' wrapper; under LoRA peft's)
    num_parameters: int  # of the exported model: LoRA's adapters are merged away
    trainable_parameters: int
    flops_per_token: int
    teacher: object = None  # distill's
    privacy: object = None  # training.privacy.Privacy under `dp`
    held_zeros: dict = field(default_factory=dict)  # keep_zero_weights: name -> mask (build_engine)


@dataclass
class Fit:
    """What the loop did."""

    start_step: int  # resumed from (0: a fresh run)
    step: int  # the last step run
    tokens_per_step: int
    train_loss: float  # mean across ranks at the last log step
    skipped_batches: int
    seconds: float
    last_val_step: int | None  # the step of the last validation loss logged
    best: Best | None  # export_best: the checkpoint of the lowest validation loss seen


def join_process_group(config: TrainingConfig) -> Ranks:
    import deepspeed
    import torch
    import torch.distributed as dist
    from transformers.utils import logging as hf_logging

    # A JIT build of the shared-memory collective op takes ~55 s on first use; gloo needs none.
    deepspeed.ops.__compatible_ops__["deepspeed_shm_comm"] = False
    deepspeed.utils.logger.setLevel("WARNING")
    hf_logging.set_verbosity_warning()
    hf_logging.disable_progress_bar()  # a loading bar per rank would flood the launcher's output
    device_type = config.train.device
    deepspeed.init_distributed(dist_backend="nccl" if device_type == "cuda" else "gloo")
    if device_type == "cuda":
        device = torch.device("cuda", int(os.environ.get("LOCAL_RANK", 0)))
        torch.cuda.set_device(device)
    else:
        device = torch.device("cpu")
    return Ranks(dist.get_rank(), dist.get_world_size(), device)


def load_data(args: argparse.Namespace, config: TrainingConfig, ranks: Ranks) -> Data:
    from transformers import AutoTokenizer

    from training.packing import pack_blocks, tokenize_documents

    tokenizer = AutoTokenizer.from_pretrained(args.tokenizer)
    block_len = config.train.seq_len + 1
    train_blocks, validation_blocks = (
        pack_blocks(tokenize_documents(args.dataset / f"{split}.jsonl", tokenizer), tokenizer.eos_token_id, block_len)
        for split in ("train", "validation"))
    ranks.say(f"packed {len(train_blocks)} train and {len(validation_blocks)} validation blocks of "
              f"{block_len} tokens; {ranks.world_size} ranks")
    return Data(tokenizer, train_blocks, validation_blocks)


def resume_from(config: TrainingConfig, checkpoints: Path, ranks: Ranks) -> tuple[TrainingConfig, Resume]:
    """Where this run starts (plan_resume), and what a checkpoint from another number of ranks
    asks of it: the accumulation that keeps its global batch, and a universal copy to load."""
    import torch.distributed as dist

    resume = plan_resume(config, checkpoints, ranks.world_size)
    if resume.tag is None:
        if ranks.rank == 0 and checkpoints.is_dir():
            drop_best_checkpoints(checkpoints)  # an earlier run's
        return config, resume
    train = config.train
    if resume.grad_accum_steps != train.grad_accum_steps:
        ranks.say(f"warning: the checkpoint was saved by {resume.saved_by_ranks} ranks; on {ranks.world_size} "
                  f"grad_accum_steps is {resume.grad_accum_steps} (not {train.grad_accum_steps}) to keep the "
                  "run's global batch")
        config = config.model_copy(update={"train": train.model_copy(update={"grad_accum_steps": resume.grad_accum_steps})})
    if resume.universal:
        ranks.say(f"converting checkpoint {resume.tag} of {resume.saved_by_ranks} ranks to a universal one")
        if ranks.rank == 0:
            convert_to_universal(checkpoints, resume.tag)
        dist.barrier()
    return config, resume


def setup_model(config: TrainingConfig, data: Data, resume: Resume, ranks: Ranks, started: float) -> Model:
    import torch

    from training.engine import build_engine
    from training.model import count_trainable_parameters, load_teacher

    train = config.train
    privacy = None
    if config.dp is not None:
        from training.privacy import Privacy

        privacy = Privacy(config.dp, len(data.train_blocks), train.micro_batch_size, train.max_steps)
        ranks.say(f"differential privacy: noise multiplier {privacy.noise_multiplier:.3g}, clipping at "
                  f"{config.dp.max_grad_norm:g}, sampling rate {privacy.sample_rate:.3g}, for epsilon "
                  f"{config.dp.target_epsilon:g} at delta {config.dp.delta:g} over {train.max_steps} steps")
    held_zeros = {}
    tokenizer = data.tokenizer
    try:
        engine, scheduler, num_parameters = build_engine(
            config, len(tokenizer), tokenizer.eos_token_id, tokenizer.pad_token_id, load_universal=resume.universal,
            held_zeros=held_zeros, privacy=privacy)
        module = engine.module._module if privacy else engine.module  # Opacus' GradSampleModule wraps the model
        teacher = load_teacher(config.distill, module.config.vocab_size, ranks.device) if config.distill else None
    except torch.cuda.OutOfMemoryError as exc:  # weights, gradients and optimizer state did not fit
        raise RuntimeError(out_of_memory_advice(config, where="setting up the model and optimizer")) from exc
    trainable = count_trainable_parameters(engine.module)
    noise_ratio = privacy.noise_to_signal(trainable) if privacy is not None else 0.0
    if noise_ratio > 10:
        ranks.say(f"warning: differential privacy's noise will swamp the updates (noise norm "
                  f"{noise_ratio:.0f}x the clipped gradient's at most, over {trainable:,} "
                  f"trainable parameters and batches of {train.micro_batch_size}): raise micro_batch_size, lower "
                  "model.lora.r or target fewer modules, or allow a larger dp.target_epsilon")
    ranks.say(f"model: {num_parameters:,} parameters ({trainable:,} trainable"
              f"{', LoRA' if config.model.lora.enabled else ''}; from {config.model.init_from or 'random init'}); "
              f"ZeRO stage {train.zero_stage}, {train.precision}, setup {time.perf_counter() - started:.1f}s")
    if train.keep_zero_weights:
        held = sum(int(mask.numel() - mask.count_nonzero()) for mask in held_zeros.values())
        in_matrices = sum(mask.numel() for mask in held_zeros.values())
        ranks.say(f"keep_zero_weights: {held:,} weights held at zero in {len(held_zeros)} matrices "
                  f"({held / max(in_matrices, 1):.1%} of their {in_matrices:,} weights)")
        if config.model.lora.enabled and ranks.rank != 0:
            held_zeros.clear()  # only rank 0 merges and saves
    if teacher is not None:
        ranks.say(f"distilling from {config.distill.teacher} (temperature {config.distill.temperature}, "
                  f"alpha {config.distill.alpha})")
    # The shape of the model as built or loaded: with init_from, the checkpoint's, not training.model's.
    shape = module.config
    model_flops = flops_per_token(num_parameters, shape.num_hidden_layers, shape.hidden_size, train.seq_len,
                                  lora_parameters=trainable if config.model.lora.enabled else 0)
    return Model(engine, scheduler, module, num_parameters, trainable, model_flops, teacher, privacy, held_zeros)


def metric_loggers(args: argparse.Namespace, config: TrainingConfig, resume: Resume, start_step: int,
                   ranks: Ranks) -> MetricLoggers:
    """Rank 0's: the console line (unless --no-step-lines), the live train log beside the
    checkpoints, and MLFLOW_RUN_ID's run when the caller opened one. The other ranks log nothing."""
    if ranks.rank != 0:
        return MetricLoggers()
    loggers = [] if args.no_step_lines else [ConsoleLogger(config.train.max_steps)]
    loggers.append(JsonlLogger(resume.checkpoints / TRAIN_LOG, resumed_from_step=start_step))
    if os.environ.get("MLFLOW_RUN_ID"):
        loggers.append(MlflowLogger(os.environ["MLFLOW_RUN_ID"]))
    return MetricLoggers(*loggers)


def train_batches(config: TrainingConfig, data: Data, ranks: Ranks, start_step: int, privacy):
    """This rank's micro-batches from where the run stands. Each rank skips the micro-batches its
    share of start_step global batches took: on the checkpoint's number of ranks exactly where the
    interrupted run stopped. On another number (the global batch kept, see resume_grad_accum), it
    is the same fraction of the epoch, but the blocks are dealt to the ranks anew: until the epoch
    ends some blocks come twice and others not at all; later epochs are whole again."""
    from training.packing import batches, rank_shard

    train = config.train
    if privacy is not None:  # one rank, one micro-batch a step (TrainingConfig checks)
        from training.privacy import poisson_batches

        return poisson_batches(data.train_blocks, privacy.sample_rate, train.seed, skip=start_step)
    return batches(rank_shard(data.train_blocks, ranks.rank, ranks.world_size), train.micro_batch_size, train.seed,
                   skip=start_step * train.grad_accum_steps)


def fit(config: TrainingConfig, model: Model, data: Data, ranks: Ranks, resume: Resume, start_step: int,
        metrics: MetricLoggers) -> Fit:
    """Steps start_step + 1 .. max_steps: log every log_every, checkpoint every checkpoint_every,
    evaluate every eval_every (stopping early after early_stopping_patience evaluations without a
    better validation loss; with export_best, checkpointing each better one as the run's best)."""
    import torch

    from training.loss import loss_function
    from training.step import NonfiniteGuard, StepRunner, mean_across_ranks, validation_loss

    train = config.train
    batches = train_batches(config, data, ranks, start_step, model.privacy)
    tokens_per_step = train.micro_batch_size * train.grad_accum_steps * ranks.world_size * train.seq_len
    guard = NonfiniteGuard(train.on_nonfinite_loss, train.max_skipped_batches)
    runner = StepRunner(model.engine, loss_function(config, model.teacher), config, ranks.device, guard,
                        on_skip=lambda step, skipped: ranks.say(f"step {step}: non-finite loss, batch skipped ({skipped})"),
                        privacy=model.privacy)
    loop_started = interval_started = time.perf_counter()
    interval_steps, train_loss = 0, float("nan")
    best, evaluations_without_improvement, last_val_step = resume.best, 0, None
    best_val_loss = best.val_loss if best else math.inf
    step = start_step
    try:
        for step in range(start_step + 1, train.max_steps + 1):
            lr = model.scheduler.get_last_lr()[0]  # the rate this step's update uses
            runner.step(step, lr, batches)
            interval_steps += 1
            logging_step = step % train.log_every == 0 or step == train.max_steps
            checkpoint_step = bool(train.checkpoint_every) and step % train.checkpoint_every == 0 and step < train.max_steps
            eval_step = bool(train.eval_every) and step % train.eval_every == 0 and step < train.max_steps
            if logging_step or checkpoint_step or eval_step:
                runner.check(lr)

            if logging_step:
                train_loss = mean_across_ranks(runner.take_mean_loss(), ranks.device)  # a collective
                now = time.perf_counter()
                tokens_per_second = tokens_per_step * interval_steps / (now - interval_started)
                entry = {"step": step, "loss": round(train_loss, 4), "lr": lr, "grad_norm": runner.grad_norm,
                         "tokens_per_second": round(tokens_per_second, 1), "seconds": round(now - loop_started, 2)}
                if train.device == "cuda":
                    entry["mfu"] = round(mfu(tokens_per_second, model.flops_per_token, train.peak_tflops), 4)
                    entry["peak_memory_gib"] = round(peak_memory_bytes("cuda") / 2**30, 2)
                else:
                    entry["peak_rss_gib"] = round(peak_memory_bytes("cpu") / 2**30, 3)
                if model.privacy is not None:
                    entry["epsilon"] = round(model.privacy.epsilon(step), 4)
                interval_steps, interval_started = 0, now
                metrics.log(entry)

            if checkpoint_step:
                save_checkpoint(model.engine, resume, step, ranks.rank, train.keep_checkpoints)

            if eval_step:
                val = validation_loss(model.engine, data.validation_blocks, config, ranks.rank, ranks.world_size,
                                      ranks.device)
                if val is not None:
                    metrics.log({"step": step, "val_loss": round(val, 4), "val_perplexity": round(math.exp(val), 2)})
                    last_val_step = step
                    if val < best_val_loss:
                        best_val_loss, evaluations_without_improvement = val, 0
                        if train.export_best:
                            best = save_best(model.engine, resume, step, val, ranks.rank)
                    else:
                        evaluations_without_improvement += 1
                    if train.early_stopping_patience and evaluations_without_improvement >= train.early_stopping_patience:
                        ranks.say(f"early stop at step {step}: no better validation loss in "
                                  f"{evaluations_without_improvement} evaluations")
                        break
    except torch.cuda.OutOfMemoryError as exc:
        raise RuntimeError(out_of_memory_advice(config)) from exc
    return Fit(start_step, step, tokens_per_step, train_loss, guard.skipped, time.perf_counter() - loop_started,
               last_val_step, best if train.export_best else None)


def export_model(config: TrainingConfig, model: Model, tokenizer, ranks: Ranks, work_dir: Path | None) -> None:
    """Rank 0 saves a plain HF model (compression, evaluation and serving never see peft or
    DeepSpeed) with its tokenizer into work_dir; every rank joins the gather ZeRO-3 needs."""
    import deepspeed
    import torch

    # Below ZeRO-3 every rank holds the whole model and this is a no-op; at stage 3 it gathers
    # the partitioned weights so rank 0 can save them.
    with deepspeed.zero.GatheredParameters(list(model.engine.module.parameters()), modifier_rank=None):
        if ranks.rank != 0:
            return
        lora = config.model.lora.enabled
        merged = model.module.merge_and_unload() if lora else model.module
        if lora:
            with torch.no_grad():  # the merged low-rank update filled the held zeros in
                for name, mask in model.held_zeros.items():
                    merged.get_parameter(name).mul_(mask)
        else:  # the gradient hooks held them: a cheap check that nothing else moved them
            moved = sum(int(merged.get_parameter(name).masked_select(~mask).count_nonzero())
                        for name, mask in model.held_zeros.items())
            if moved:
                raise RuntimeError(f"keep_zero_weights: {moved} of the weights held at zero are not "
                                   "zero at the end of training")
        merged.save_pretrained(work_dir, safe_serialization=True)
        tokenizer.save_pretrained(work_dir)


def run_result(config: TrainingConfig, model: Model, done: Fit, val_loss: float | None, exported_step: int,
               ranks: Ranks) -> dict:
    """result.json: what training.TrainResult reads back."""
    steps_run = done.step - done.start_step
    return {
        "steps": done.step,
        "resumed_from_step": done.start_step,
        "skipped_batches": done.skipped_batches,
        "final_train_loss": done.train_loss,
        "val_loss": val_loss,
        "exported_step": exported_step,
        "tokens_seen": done.tokens_per_step * done.step,
        # Throughput of this process's own steps (after a resume, the steps it ran).
        "tokens_per_second": done.tokens_per_step * steps_run / done.seconds if steps_run else 0.0,
        "seconds": done.seconds,
        "seconds_per_step": done.seconds / steps_run if steps_run else 0.0,
        "num_parameters": model.num_parameters,
        "trainable_parameters": model.trainable_parameters,
        "flops_per_token": model.flops_per_token,
        "init_from": config.model.init_from,
        "lora": config.model.lora.enabled,
        "distill": config.distill.model_dump() if config.distill else None,
        "dp": model.privacy.report(done.step) if model.privacy else None,
        "world_size": ranks.world_size,
        "zero_stage": config.train.zero_stage,
        "peak_memory_bytes": peak_memory_bytes(config.train.device),  # rank 0's
    }


def main() -> None:
    from torch.distributed.elastic.multiprocessing.errors import record

    # record: a rank's exception goes into torchrun's failure report, which ends the output
    # that training.run quotes in TrainingFailed.
    record(train_rank)(parse_args())
    # The rank is done: the output is renamed into place, every log written (the MLflow logger's
    # calls are synchronous) and the process group destroyed. Leave without the interpreter's
    # teardown, where a C++ thread of the ZeRO-3 CPU-offload run (two ranks) was once still
    # joinable as its static objects were destroyed: "terminate called without an active
    # exception", abort, exit code 1 for a run that had saved its model (CI, 2026-12-05).
    sys.stdout.flush()
    sys.stderr.flush()
    logging.shutdown()
    os._exit(0)


def train_rank(args: argparse.Namespace) -> None:
    from core.process import die_with_parent

    # torchrun starts each rank in a session of its own: without this a killed launcher leaves
    # its ranks hanging (in init_process_group, or training on with nobody reading their output).
    die_with_parent(os.getppid())
    check_inputs(args)
    config = TrainingConfig.model_validate_json(args.config.read_text())
    started = time.perf_counter()

    import torch.distributed as dist

    from training.step import validation_loss

    ranks = join_process_group(config)
    data = load_data(args, config, ranks)
    config, resume = resume_from(config, checkpoint_dir(args.output), ranks)
    model = setup_model(config, data, resume, ranks, started)
    start_step = 0
    if resume.tag:
        start_step = load_checkpoint(model.engine, resume, ranks.rank)
        ranks.say(f"resumed from step {start_step} ({resume.checkpoints})")
    metrics = metric_loggers(args, config, resume, start_step, ranks)

    # Rank 0 builds the output in a temporary sibling (the train log grows there) that becomes
    # the output folder in one rename after the model is saved; a crash leaves no output.
    with atomic_dir(args.output) if ranks.rank == 0 else nullcontext() as work_dir:
        done = fit(config, model, data, ranks, resume, start_step, metrics)
        val_loss = validation_loss(model.engine, data.validation_blocks, config, ranks.rank, ranks.world_size,
                                   ranks.device)
        ranks.say(f"validation loss {val_loss}")
        if val_loss is not None and done.last_val_step != done.step:  # the last point of the curve
            metrics.log_final({"step": done.step, "val_loss": val_loss, "val_perplexity": math.exp(val_loss)})
        exported_step = done.step
        if done.best is not None and val_loss is not None and done.best.val_loss < val_loss:
            ranks.say(f"export_best: exporting step {done.best.step} (validation loss {done.best.val_loss:.4f}; "
                      f"{val_loss:.4f} at step {done.step})")
            load_best(model.engine, resume.checkpoints, done.best, ranks.rank, ranks.world_size)
            val_loss, exported_step = done.best.val_loss, done.best.step
        export_model(config, model, data.tokenizer, ranks, work_dir)
        if ranks.rank == 0:
            result = run_result(config, model, done, val_loss, exported_step, ranks)
            shutil.copy2(resume.checkpoints / TRAIN_LOG, work_dir / TRAIN_LOG)
            (work_dir / RESULT_FILE).write_text(json.dumps(result, indent=2))
            (work_dir / CONFIG_FILE).write_text(config.model_dump_json(indent=2))
            write_manifest(work_dir, "hf", init_from=config.model.init_from, lora=config.model.lora.enabled)
    if ranks.rank == 0:
        # Beside the output folder, not in it (see core.stats.stats_path). The records of this
        # stage are packed blocks of seq_len + 1 tokens.
        StageStats(
            stage="train", records_in=len(data.train_blocks), seconds=round(time.perf_counter() - started, 4),
            extra={"validation_blocks": len(data.validation_blocks),
                   **{key: value for key, value in result.items() if value is not None and key not in ("distill", "dp")},
                   # Stats hold flat values only.
                   **{f"distill_{key}": value for key, value in (result["distill"] or {}).items()},
                   **{f"dp_{key}": value for key, value in (result["dp"] or {}).items()}},
        ).write(args.output)
    dist.barrier()  # the others exit only once rank 0 has renamed the output into place
    ranks.say(f"saved {args.output}")
    dist.destroy_process_group()


if __name__ == "__main__":
    main()
