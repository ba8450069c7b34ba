from __future__ import annotations

from typing import Annotated, Literal

from pydantic import Field, model_validator

from core.config import FrozenConfig


class EvaluationConfig(FrozenConfig):
    """What `evaluation.run` measures for every variant (and for the current champion)."""

    max_eval_tokens: int = Field(default=20_000, ge=64, description="validation tokens scored for perplexity")
    eval_window_tokens: int = Field(default=1024, ge=16, description="context window for perplexity and bits "
                                    "per byte (the model's own when smaller)")
    # Task accuracy through lm-evaluation-harness, on the task sets shipped in evaluation/tasks/.
    tasks: list[Literal["conveyor_cloze", "conveyor_nextsentence"]] = ["conveyor_cloze", "conveyor_nextsentence"]
    task_limit: int | None = Field(default=None, ge=1, description="first N items of each task; None: all")
    task_batch_size: int = Field(default=16, ge=1)  # fastest of 1, 8, 16 on SmolLM2 (CPU)
    # Bits per byte on evaluation/tasks/reference.txt: independent of the tokenizer.
    reference_max_bytes: int | None = Field(default=None, ge=256, description="score only the first N bytes")
    # Speed as a user feels it, measured in a child process (so its peak memory is the model's own).
    speed_batch_sizes: list[Annotated[int, Field(ge=1)]] = Field(default=[1, 8], min_length=1)
    speed_prompt_tokens: int = Field(default=64, ge=1)
    speed_new_tokens: int = Field(default=32, ge=2)
    speed_repeats: int = Field(default=3, ge=1)
    # Canaries (when data.ingest.canaries inserted some): exposure ranks each secret among this many
    # random ones of its format; log2(samples + 1) bits is the most a model can expose.
    canary_samples: int = Field(default=1000, ge=15)


# The direction of every metric evaluation.run reports that a gate may bound. A metric not listed
# here (a safety score a later stage adds) needs `greater_is_better` in its bound.
GREATER_IS_BETTER = {
    "bits_per_byte": False,
    "perplexity": False,
    "size_bytes": False,
    "peak_memory_bytes": False,
    "conveyor_cloze/acc": True,
    "conveyor_nextsentence/acc": True,
    "conveyor_nextsentence/acc_norm": True,
    "canary/extracted": False,
}


def greater_is_better(metric: str) -> bool | None:
    if metric in GREATER_IS_BETTER:
        return GREATER_IS_BETTER[metric]
    if metric.startswith("decode_tokens_per_s"):
        return True
    if metric.startswith("ttft_ms") or metric.startswith("canary/"):
        return False
    return None


class Bound(FrozenConfig):
    """Bounds on one metric, as MLflow's MetricThreshold: an absolute `threshold`, and how much
    worse than the current champion (on the same data) the candidate may be, in the metric's units
    (`max_regression`) or as a fraction of the champion's value (`max_relative_regression`). A
    negative regression bound demands an improvement. Unset bounds are not checked."""

    threshold: float | None = None
    max_regression: float | None = None
    max_relative_regression: float | None = None
    greater_is_better: bool | None = None


DEFAULT_GATES = {
    "bits_per_byte": Bound(max_relative_regression=0.02),
    # About two standard errors at 200 items: a real loss of skill, not the sample's noise.
    "conveyor_cloze/acc": Bound(max_regression=0.05),
    "conveyor_nextsentence/acc": Bound(max_regression=0.05),
}


class PromotionConfig(FrozenConfig):
    """Which variant of a run is registered under which alias.

    Selection: among this run's variants whose `select_by` is within `selection_tolerance`
    (relative) of the run's best, and which pass every absolute threshold if any does, the
    smallest on disk is the candidate. Gate: the candidate becomes `champion` when every bound in
    `gates` holds (the relative ones against the current champion, evaluated on this run's
    evaluation data); otherwise it is registered as `challenger` and the failed bounds are recorded.
    """

    select_by: str = "bits_per_byte"
    selection_tolerance: float = Field(default=0.02, ge=0)
    # A profile's gates are merged over these; `metric: null` removes one.
    gates: dict[str, Bound] = DEFAULT_GATES

    @model_validator(mode="before")
    @classmethod
    def _merge_gates(cls, data):
        if isinstance(data, dict) and isinstance(data.get("gates"), dict):
            merged = {**DEFAULT_GATES, **data["gates"]}
            data = {**data, "gates": {metric: bound for metric, bound in merged.items() if bound is not None}}
        return data

    @model_validator(mode="after")
    def _check(self) -> "PromotionConfig":
        for metric in (self.select_by, *self.gates):
            bound = self.gates.get(metric)
            if greater_is_better(metric) is None and (bound is None or bound.greater_is_better is None):
                raise ValueError(f"promotion: metric {metric!r} is not one evaluation reports a direction for; "
                                  f"set promotion.gates.{metric}.greater_is_better")
        return self

    def direction(self, metric: str) -> bool:
        """True when a larger value of `metric` is better."""
        bound = self.gates.get(metric)
        if bound is not None and bound.greater_is_better is not None:
            return bound.greater_is_better
        return bool(greater_is_better(metric))
