"""Checkpoints and resume: where a run's DeepSpeed checkpoints live, which one a run started again
continues from, and how (on the same or another number of ranks).

With `checkpoint_every`, DeepSpeed checkpoints (weights, optimizer, lr schedule, and our step)
go to `<output>.checkpoints/`, beside the output that only appears whole at the end. A run
started again on the same output continues from the newest complete one (`resume`), with the
batch the interrupted run would have taken next. `plan_resume` decides from the files alone (it
needs no process group), so the decision is unit-tested without torchrun.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

from core.atomic import beside
from training.config import TrainingConfig

LATEST = "latest"  # DeepSpeed's pointer to the newest checkpoint tag
# Written by rank 0 once every rank has saved its part of a checkpoint. DeepSpeed writes `latest`
# as soon as rank 0 is done, so a kill at that moment left a `latest` naming a checkpoint whose
# other ranks' files were missing (seen in CI: resume failed on rank 1's optimizer state).
COMPLETE = "conveyor_complete"
UNIVERSAL = "universal"  # <checkpoints>/universal/<tag>: a checkpoint converted for another world size
BEST = "best-step"  # best-stepNNNNNNNN: the weights of the lowest validation loss so far (export_best)
# Rank 0's model-states file: below ZeRO-3 the one copy of the model, at ZeRO-3 rank 0's partition.
MODEL_STATES_FILES = ("mp_rank_00_model_states.pt", "zero_pp_rank_0_mp_rank_00_model_states.pt")


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



def needs_universal(tag_dir: Path, world_size: int) -> bool:
    """ZeRO partitions the optimizer state by rank: on another number of ranks it loads only
    through a universal checkpoint. (Unpartitioned state, ZeRO-0 in fp32, loads as it is.)"""
    saved_by = read_checkpoint_header(tag_dir)["dp_world_size"]
    return saved_by != world_size and any(tag_dir.glob("*zero_pp_rank_*optim_states.pt"))


@dataclass(frozen=True)
class Best:
    """The checkpoint of the lowest validation loss a run has seen (train.export_best)."""

    tag: str
    step: int
    val_loss: float


def best_checkpoint(checkpoints: Path, fingerprint: dict) -> Best | None:
    """The run's complete best-step* checkpoint, if one was saved with this fingerprint."""
    tags = sorted(p.name for p in checkpoints.glob(BEST + "*") if p.is_dir() and (p / COMPLETE).is_file())
    if not tags:
        return None
    header = read_checkpoint_header(checkpoints / tags[-1])
    if header["fingerprint"] != fingerprint:
        return None
    return Best(tags[-1], header["step"], header["val_loss"])


@dataclass(frozen=True)
class Resume:
    """Where a run starts: from scratch (tag None) or from checkpoint `tag` in `checkpoints`.

    fingerprint is the config's as given (what the next checkpoint is saved with); grad_accum_steps
    is what keeps the checkpoint's global batch on this run's ranks (resume_grad_accum); universal:
    the checkpoint's ZeRO partitions were saved by another number of ranks and load only through
    a universal copy (convert_to_universal). best: the run's best checkpoint so far (export_best)."""

    checkpoints: Path
    fingerprint: dict
    tag: str | None = None
    saved_by_ranks: int | None = None
    grad_accum_steps: int | None = None
    universal: bool = False
    best: Best | None = None


def plan_resume(config: TrainingConfig, checkpoints: Path, world_size: int) -> Resume:
    """Which checkpoint a run of `config` on `world_size` ranks continues from, if any; refuses one
    made with another model, data or batch config."""
    fingerprint = resume_fingerprint(config)
    tag = newest_complete_checkpoint(checkpoints) if config.train.resume and checkpoints.is_dir() else None
    if tag is None:
        return Resume(checkpoints, fingerprint)
    header = read_checkpoint_header(checkpoints / tag)
    if header["fingerprint"] != fingerprint:
        raise RuntimeError(f"the checkpoint in {checkpoints} was made with another model, data or batch "
                           "config: delete it, or set training.train.resume=false")
    return Resume(checkpoints, fingerprint, tag, header["dp_world_size"],
                  resume_grad_accum(header, config.train.micro_batch_size, world_size),
                  needs_universal(checkpoints / tag, world_size), best_checkpoint(checkpoints, fingerprint))


def save_checkpoint(engine, resume: Resume, step: int, rank: int, keep: int) -> None:
    """Every rank writes its partition; the step says where the data stream resumes. Only once all
    have written does rank 0 mark it complete (and drop the oldest beyond `keep`)."""
    import torch
    import torch.distributed as dist

    tag = f"step{step:08d}"
    engine.save_checkpoint(str(resume.checkpoints), tag=tag, client_state={
        "step": step, "fingerprint": resume.fingerprint, "torch_rng_state": torch.get_rng_state()})
    dist.barrier()
    if rank == 0:
        (resume.checkpoints / tag / COMPLETE).touch()
        prune_checkpoints(resume.checkpoints, keep)


def save_best(engine, resume: Resume, step: int, val_loss: float, rank: int) -> Best:
    """The engine as it is at `step` becomes the run's best checkpoint (the one before it goes once
    this one is complete). Not `latest`: a resume continues from the newest step checkpoint."""
    import torch
    import torch.distributed as dist

    tag = f"{BEST}{step:08d}"
    if rank == 0:  # a resumed run on other ranks may reach the same step again
        shutil.rmtree(resume.checkpoints / tag, ignore_errors=True)
    dist.barrier()
    engine.save_checkpoint(str(resume.checkpoints), tag=tag, save_latest=False, client_state={
        "step": step, "val_loss": val_loss, "fingerprint": resume.fingerprint, "torch_rng_state": torch.get_rng_state()})
    dist.barrier()
    if rank == 0:
        (resume.checkpoints / tag / COMPLETE).touch()
        drop_best_checkpoints(resume.checkpoints, but=tag)
    return Best(tag, step, val_loss)


def drop_best_checkpoints(checkpoints: Path, but: str | None = None) -> None:
    for old in checkpoints.glob(BEST + "*"):
        if old.name != but:
            shutil.rmtree(old)


def load_best(engine, checkpoints: Path, best: Best, rank: int, world_size: int) -> None:
    """Load the best checkpoint's weights into the engine, to export them (the whole checkpoint,
    as a resume would: at ZeRO-3 the weights live only in the partitions)."""
    import torch.distributed as dist

    folder = checkpoints
    if needs_universal(checkpoints / best.tag, world_size):  # saved before a resume on other ranks
        if rank == 0:
            convert_to_universal(checkpoints, best.tag)
        dist.barrier()
        folder = checkpoints / UNIVERSAL
    engine.load_checkpoint(str(folder), tag=best.tag)
    if folder != checkpoints:
        dist.barrier()
        if rank == 0:
            shutil.rmtree(folder)


def load_checkpoint(engine, resume: Resume, rank: int) -> int:
    """Load `resume`'s checkpoint into the engine (after build_engine); returns its step."""
    import torch
    import torch.distributed as dist

    folder = resume.checkpoints / UNIVERSAL if resume.universal else resume.checkpoints
    _, client_state = engine.load_checkpoint(str(folder), tag=resume.tag)
    torch.set_rng_state(client_state["torch_rng_state"])
    if resume.universal:
        dist.barrier()  # every rank has loaded it
        if rank == 0:
            shutil.rmtree(folder)
    return client_state["step"]
