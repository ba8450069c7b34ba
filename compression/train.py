"""The steps that train: `recover` (fine-tune a pruned model, its zeros kept) and `distill` (a
shallower student on the teacher's logits). Both run the training stage itself (DeepSpeed ranks
under torchrun, checkpoints and resume, MLflow metrics) on a model folder: the profile's
training config with the step's numbers, never a loop of our own."""

from __future__ import annotations

import json
import logging
from pathlib import Path

from compression.config import Distill, Recover

logger = logging.getLogger(__name__)


def step_training_config(training, step: Recover | Distill, init_from: Path, teacher: Path | None = None):
    """The profile's TrainingConfig (ranks, device, precision, batch) with this step's model,
    steps, rate and loss. Validated anew: a combination the trainer refuses fails here."""
    from training.config import TrainingConfig

    raw = training.model_dump()
    raw["model"]["init_from"] = str(init_from)
    raw["model"]["lora"]["enabled"] = isinstance(step, Recover) and step.lora
    train = raw["train"]
    train.update(max_steps=step.steps, lr=step.lr, warmup_steps=min(train["warmup_steps"], step.steps // 10),
                 resume=True, early_stopping_patience=0, eval_every=step.eval_every, export_best=step.eval_every > 0)
    if isinstance(step, Recover):
        train["keep_zero_weights"] = True
    if step.alpha > 0 or isinstance(step, Distill):
        raw["distill"] = {"teacher": str(teacher), "temperature": step.temperature, "alpha": step.alpha}
    return TrainingConfig.model_validate(raw)


def evenly_spaced(depth: int, layers: int) -> list[int]:
    """`layers` of `depth` layers, evenly spaced with the first and the last among them (DistilBERT
    initializes its student from every other teacher layer)."""
    return [0] if layers == 1 else [round(i * (depth - 1) / (layers - 1)) for i in range(layers)]


def angular_keep(teacher, layers: int, blocks: list) -> list[int]:
    """The layers left when the run of `depth - layers` consecutive layers whose input and output
    hidden states are closest in angle, averaged over the calibration blocks' tokens, is dropped
    (Gromov et al. 2024). On SmolLM2-135M, 15 of 30: layers 2-16 go, and the student starts at
    perplexity 42k on held-out text instead of 3.0M with evenly spaced layers."""
    import torch

    depth = teacher.config.num_hidden_layers
    dropped = depth - layers
    distance = torch.zeros(depth - dropped + 1, dtype=torch.float64)
    with torch.inference_mode():
        for block in blocks:
            states = teacher(block, output_hidden_states=True).hidden_states  # depth + 1 of them
            for start in range(len(distance)):
                cosine = torch.nn.functional.cosine_similarity(states[start][0].float(),
                                                               states[start + dropped][0].float(), dim=-1)
                distance[start] += (torch.arccos(cosine.clamp(-1, 1)) / torch.pi).mean()
    start = int(distance.argmin())
    logger.info("student: dropping layers %d-%d (mean angular distance %.3f over %d blocks)",
                start, start + dropped - 1, float(distance[start]) / len(blocks), len(blocks))
    return [i for i in range(depth) if not start <= i < start + dropped]


def student_of(teacher, layers: int, keep: list[int] | None = None):
    """A copy of `teacher` keeping `layers` of its decoder layers: `keep`, or evenly spaced."""
    import copy

    import torch

    depth = teacher.config.num_hidden_layers
    keep = keep or evenly_spaced(depth, layers)
    student = copy.deepcopy(teacher)
    decoder = student.get_decoder()
    decoder.layers = torch.nn.ModuleList(decoder.layers[i] for i in keep)
    for position, layer in enumerate(decoder.layers):
        layer.self_attn.layer_idx = position  # the KV cache is indexed by it
    student.config.num_hidden_layers = layers
    if getattr(student.config, "layer_types", None):
        student.config.layer_types = [student.config.layer_types[i] for i in keep]
    logger.info("student: layers %s of the teacher's %d", keep, depth)
    return student


def train_step(step: Recover | Distill, model_dir: Path, output: Path, dataset_dir: Path, training,
               teacher: Path | None = None):
    """Train from `model_dir` into `output`; return (output, report). A run interrupted here resumes
    from its checkpoints beside `output` when the stage runs again. teacher: the HF folder a
    recover step with alpha > 0 distills from (a distill step's teacher is `model_dir` itself)."""
    import training as training_stage
    from core.models import load_model, save_model

    init_from = model_dir
    if isinstance(step, Distill):
        teacher = model_dir
        init_from = output.with_name(output.name + ".student")
        if not (init_from / "config.json").is_file():
            model, tokenizer = load_model(model_dir)
            keep = None
            if step.select == "angular":
                from compression.stage import calibration_blocks

                keep = angular_keep(model, step.layers, calibration_blocks(dataset_dir, tokenizer, step))
            save_model(student_of(model, step.layers, keep), tokenizer, init_from, "hf")
    config = step_training_config(training, step, init_from, teacher)
    if (output / "result.json").is_file():  # finished before the stage was interrupted
        result = training_stage.TrainResult(model_dir=output, **json.loads((output / "result.json").read_text()))
    else:
        result = training_stage.run(config, dataset_dir, init_from, output)
    report = {"steps": result.steps, "tokens": result.tokens_seen, "final_train_loss": result.final_train_loss,
              "val_loss": result.val_loss, "exported_step": result.exported_step}
    if result.distill:  # as the trainer ran it
        report.update(kd_alpha=result.distill["alpha"], kd_temperature=result.distill["temperature"])
    if isinstance(step, Distill):
        from transformers import AutoConfig

        report["teacher_layers"] = AutoConfig.from_pretrained(model_dir).num_hidden_layers
    return output, report
