"""Compression recipes: named variants, each a chain of steps applied to the trained model or to
another variant, as llm-compressor recipes are.

    compression:
      variants:
        int8: [int8_weight_only]
        wanda50: [{wanda: {sparsity: 0.5}}, {recover: {steps: 200}}]
        wanda50-int8: [wanda50, int8]          # starts from wanda50's folder, then int8's steps
        student: [{distill: {layers: 15, steps: 300}}]

A chain's first item may name another variant: the new variant starts from that variant's model
(its parent in the lineage). A variant named later in a chain stands for its steps. Everything a
recipe can get wrong without looking at a model (an unknown step or variant, a cycle, a sparsity
outside (0, 1), a step after quantization) fails here, when the config loads; what needs the
model's shape (2:4 on a width that 4 does not divide, an int4 group size that does not divide a
width, a student as deep as its teacher) fails in `compression.plan` before any work.
"""

from __future__ import annotations

from typing import Annotated, Literal, Union

from pydantic import Field, TypeAdapter, ValidationError, model_validator

from core.config import FrozenConfig

BASE = "base"  # the trained model every chain starts from, unless its first item names a variant


class Int8WeightOnly(FrozenConfig):
    """int8 weights per output channel (torchao's per-row scales), run by PyTorch's int8 CPU kernel
    with bfloat16 activations (core/int8.py)."""

    kind: Literal["int8_weight_only"] = "int8_weight_only"
    embeddings: bool = Field(default=True, description="the input embedding and output layer in int8 too (for "
                             "SmolLM2 a fifth of its weights, and the largest matrix read per decoded token)")


class Int8Dynamic(FrozenConfig):
    """int8 weights per channel and int8 activations quantized per token at run time (torchao
    Int8DynamicActivationInt8WeightConfig). Per-token scales follow SmolLM2's outlier tokens
    (inputs of down_proj up to ~2,700), which one per-tensor scale cannot."""

    kind: Literal["int8_dynamic"] = "int8_dynamic"


class Int4WeightOnly(FrozenConfig):
    """int4 weights in groups along each row, a bfloat16 scale and zero point per group (chosen by
    HQQ, no calibration data, or min/max), run by PyTorch's int4 CPU kernel with bfloat16
    activations (core/int4.py); the embedding and output layer in int8 with `embeddings`."""

    kind: Literal["int4_weight_only"] = "int4_weight_only"
    group_size: Literal[32, 64, 128] = Field(default=32, description="weights per scale and zero point; must "
                                             "divide every layer's input width")
    algorithm: Literal["hqq", "tinygemm"] = Field(default="hqq", description="how each group's scale and zero "
                                                  "are chosen: HQQ's optimization, or the group's min and max")
    embeddings: bool = Field(default=True, description="the input embedding and output layer in int8 (else float)")


class SmoothQuant(FrozenConfig):
    """int8 weights and int8 activations, calibrated (SmoothQuant, Xiao et al. 2022, through torchao's
    SmoothQuantConfig): each input channel's activation range is divided by a factor its weight
    column absorbs, moving outliers (SmolLM2's down_proj inputs reach ~2,700) from the activations,
    which one scale per tensor cannot follow, into the weights, which have a scale per row."""

    kind: Literal["smoothquant"] = "smoothquant"
    alpha: float = Field(default=0.9, ge=0, le=1, description="migration strength: 0 leaves the activations as "
                         "they are, 1 moves their whole range into the weights (SmolLM2, per_tensor: 0.5 +27.8% "
                         "perplexity, 0.75 +3.5%, 0.9 +2.4%)")
    activations: Literal["per_tensor", "per_token"] = Field(default="per_tensor", description=(
        "per_tensor: one static scale per layer from the calibration text; per_token: a scale per token at "
        "run time"))
    calibration_samples: int = Field(default=64, ge=1, description="blocks of the curated train split")
    calibration_seq_len: int = Field(default=128, ge=8, description="tokens per calibration block")


class Prune(FrozenConfig):
    """Zero the least important weights of every decoder Linear layer (attention and MLP
    projections; the embedding and a tied output layer are kept whole)."""

    sparsity: float = Field(default=0.5, gt=0, lt=1, description="share of each layer's weights set to zero")
    pattern: Literal["unstructured", "2:4"] = Field(default="unstructured", description=(
        "unstructured: the lowest scores of each output row; 2:4: two of every four consecutive "
        "weights of a row (sparsity is then 0.5), the layout sparse tensor cores run"))

    @model_validator(mode="after")
    def _two_of_four_is_half(self):
        if self.pattern == "2:4" and self.sparsity != 0.5:
            raise ValueError(f"pattern 2:4 zeroes exactly half the weights; sparsity {self.sparsity} "
                             "cannot apply (leave it out, or set 0.5)")
        return self


class Magnitude(Prune):
    """Score = |weight|."""

    kind: Literal["magnitude"] = "magnitude"


class Wanda(Prune):
    """Score = |weight| x the L2 norm of its input feature over calibration text (Wanda, Sun et al.
    2023), compared within each output row."""

    kind: Literal["wanda"] = "wanda"
    calibration_samples: int = Field(default=64, ge=1, description="blocks of the curated train split")
    calibration_seq_len: int = Field(default=128, ge=8, description="tokens per calibration block")


class SparseGPT(Prune):
    """Prune each layer and update the weights it keeps to make up for the ones it removed
    (SparseGPT, Frantar & Alistarh 2023): column by column, the pruning error goes into the
    columns not yet visited through the inverse Hessian of the layer's inputs, with decoder
    layers taken in order on the outputs of the already-pruned ones. Choices within a row: the
    lowest w^2 / [H^-1]_jj of each block of columns (unstructured) or of each group of four (2:4)."""

    kind: Literal["sparsegpt"] = "sparsegpt"
    calibration_samples: int = Field(default=64, ge=1, description="blocks of the curated train split")
    calibration_seq_len: int = Field(default=128, ge=8, description="tokens per calibration block")
    dampening: float = Field(default=0.01, gt=0, lt=1, description="added to the Hessian's diagonal, as a share "
                             "of its mean, so it inverts")
    block_size: int = Field(default=128, ge=4, description="columns updated together (a multiple of 4)")

    @model_validator(mode="after")
    def _blocks_hold_whole_groups(self):
        if self.block_size % 4:
            raise ValueError(f"block_size {self.block_size} must be a multiple of 4 (2:4 groups)")
        return self


# The training steps' validation: every N steps on the validation split, the best evaluation's
# weights exported (training's export_best).
EVAL_EVERY = Field(default=0, ge=0, description=(
    "validate every N steps on the validation split and export the weights of the best evaluation, not "
    "the last step's (training's export_best): for a small corpus, where more steps overfit; 0: the last step"))


class Recover(FrozenConfig):
    """Fine-tune a pruned model through the training stage (DeepSpeed), its zeros kept zero."""

    kind: Literal["recover"] = "recover"
    steps: int = Field(default=100, ge=1)
    lr: float = Field(default=1e-4, gt=0)
    lora: bool = Field(default=False, description="train LoRA adapters (merged and re-masked at export), not every weight")
    alpha: float = Field(default=0.0, ge=0, le=1, description=(
        "weight of a distillation term on the logits of the model the variant starts from (the dense model, "
        "before pruning); 1 - alpha weighs cross-entropy on the train split"))
    temperature: float = Field(default=1.0, gt=0, description="softens both distributions of the distillation term")
    eval_every: int = EVAL_EVERY


class Distill(FrozenConfig):
    """A student with `layers` of the teacher's layers, trained through the training stage on the
    teacher's logits. `select: even` keeps evenly spaced layers, the first and last among them
    (DistilBERT-style); `select: angular` drops the run of consecutive layers whose input and
    output differ least in angle on calibration text (Gromov et al. 2024, "The Unreasonable
    Ineffectiveness of the Deeper Layers")."""

    kind: Literal["distill"] = "distill"
    layers: int = Field(ge=1, description="decoder layers of the student")
    select: Literal["even", "angular"] = Field(
        default="angular", description="which of the teacher's layers it keeps; angular: a 15-of-30 SmolLM2 student "
                                       "after 40 steps reached perplexity 82 against even's 208 (benchmarks/README.md)")
    calibration_samples: int = Field(default=16, ge=1, description="blocks of the curated train split (angular)")
    calibration_seq_len: int = Field(default=256, ge=8, description="tokens per calibration block (angular)")
    steps: int = Field(default=300, ge=1)
    lr: float = Field(default=5e-4, gt=0)
    temperature: float = Field(default=2.0, gt=0)
    alpha: float = Field(default=0.5, ge=0, le=1, description="weight of the KD term; 1 - alpha weighs cross-entropy")
    eval_every: int = EVAL_EVERY


class Bf16Weights(FrozenConfig):
    """Every float weight rounded to bfloat16 and stored so: half the bytes of float32 on disk
    (with pruning, the kept values and the dense embedding). The model still computes in float32
    once loaded: bfloat16 compute on CPUs without AVX512-BF16 made prefill 6.5x slower here. The
    last step of a chain (training after it would leave the bfloat16 grid)."""

    kind: Literal["bf16_weights"] = "bf16_weights"


Step = Annotated[Union[Int8WeightOnly, Int8Dynamic, Int4WeightOnly, SmoothQuant, Magnitude, Wanda, SparseGPT, Recover,
                       Distill, Bf16Weights],
                 Field(discriminator="kind")]
STEP_KINDS = ("int8_weight_only", "int8_dynamic", "int4_weight_only", "smoothquant", "magnitude", "wanda", "sparsegpt",
              "recover", "distill", "bf16_weights")
QUANTIZE_KINDS = ("int8_weight_only", "int8_dynamic", "int4_weight_only", "smoothquant")
CALIBRATED_KINDS = ("wanda", "sparsegpt", "smoothquant")  # steps that read calibration text
PRUNE_KINDS = ("magnitude", "wanda", "sparsegpt")
_STEP = TypeAdapter(Step)


class Recipe(FrozenConfig):
    """A variant resolved: the variant it starts from, and every step it applies after that."""

    parent: str
    steps: tuple[Step, ...]

    @property
    def quantization(self) -> Step | None:
        """The quantization step (always the last), or None."""
        return next((step for step in self.steps if step.kind in QUANTIZE_KINDS), None)

    @property
    def quantized(self) -> bool:
        return self.quantization is not None


def _step(item: str | dict, where: str):
    """A step from its YAML form: `name` (defaults) or `{name: {param: value}}`."""
    if isinstance(item, str):
        kind, params = item, {}
    elif isinstance(item, dict) and len(item) == 1:
        (kind, params), = item.items()
        params = params or {}
        if not isinstance(params, dict):
            raise ValueError(f"{where}: the parameters of {kind!r} must be a mapping, got {params!r}")
    else:
        raise ValueError(f"{where}: a step is a name or a mapping of one name to its parameters, got {item!r}")
    try:
        return _STEP.validate_python({**params, "kind": kind})
    except ValidationError as exc:
        problems = "; ".join(f"{'.'.join(map(str, e['loc'][1:])) or kind}: {e['msg']}" for e in exc.errors())
        raise ValueError(f"{where}: {kind}: {problems}") from None


class CompressionConfig(FrozenConfig):
    variants: dict[str, list[str | dict[str, dict | None]]] = Field(
        default={"int8": ["int8_weight_only"]},
        description=f"variant name -> chain of steps ({', '.join(STEP_KINDS)}) or other variants' names")

    @model_validator(mode="after")
    def _recipes_resolve(self):
        self.recipes()  # every error a recipe holds, at load time
        return self

    def recipes(self) -> dict[str, Recipe]:
        """Every variant resolved, parents before children (the order to build them in)."""
        for name in self.variants:
            if name == BASE or name in STEP_KINDS:
                raise ValueError(f"compression.variants: {name!r} is reserved (the trained model, or a step's name)")
            if not self.variants[name]:
                raise ValueError(f"compression.variants.{name}: no steps")
        resolved: dict[str, Recipe] = {}
        visiting: list[str] = []

        def resolve(name: str) -> Recipe:
            if name in resolved:
                return resolved[name]
            if name in visiting:
                raise ValueError("compression.variants: a cycle: " + " -> ".join(visiting[visiting.index(name):] + [name]))
            visiting.append(name)
            parent, steps = BASE, []
            for position, item in enumerate(self.variants[name]):
                where = f"compression.variants.{name}[{position}]"
                if isinstance(item, str) and item in self.variants:
                    referenced = resolve(item)
                    if position == 0:
                        parent = item
                    else:  # its whole chain from the trained model, inlined
                        steps += (*_chain_from_base(item, resolved),)
                    if position == 0 and referenced.quantized and len(self.variants[name]) > 1:
                        raise ValueError(f"{where}: {item} is quantized: nothing can be applied after quantization")
                elif isinstance(item, str) and item not in STEP_KINDS:
                    raise ValueError(f"{where}: unknown step or variant {item!r}; steps: {', '.join(STEP_KINDS)}; "
                                     f"variants: {', '.join(self.variants)}")
                else:
                    steps.append(_step(item, where))
            for before, after in zip(steps, steps[1:]):
                if before.kind == "bf16_weights":
                    raise ValueError(f"compression.variants.{name}: {after.kind} after bf16_weights: it must be the "
                                     "last step (its weights are stored in bfloat16)")
                if before.kind in QUANTIZE_KINDS:
                    raise ValueError(f"compression.variants.{name}: {after.kind} after {before.kind}: quantization "
                                     "must be the last step (a quantized model cannot be pruned or trained)")
            visiting.pop()
            resolved[name] = Recipe(parent=parent, steps=tuple(steps))
            return resolved[name]

        for name in self.variants:
            resolve(name)
        return resolved


def _chain_from_base(name: str, resolved: dict[str, Recipe]) -> list:
    recipe = resolved[name]
    return ([] if recipe.parent == BASE else _chain_from_base(recipe.parent, resolved)) + list(recipe.steps)
