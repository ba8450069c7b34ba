from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field


class _Frozen(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class EvaluationConfig(_Frozen):
    max_eval_tokens: int = Field(default=20_000, ge=64, description="validation tokens scored for perplexity")
    latency_prompt: str = "It is a truth universally acknowledged"
    latency_new_tokens: int = Field(default=32, ge=1)
    latency_repeats: int = Field(default=3, ge=1)


class PromotionConfig(_Frozen):
    """Which variant becomes `champion`.

    Among this run's variants, those whose perplexity is within `max_perplexity_increase`
    (relative) of the run's best perplexity are eligible; the smallest on disk is the candidate.
    It becomes champion only if the registry has no champion, or the candidate's perplexity is no
    worse than the champion's by more than `max_perplexity_increase`; otherwise `challenger`.
    """

    max_perplexity_increase: float = Field(default=0.05, ge=0)
