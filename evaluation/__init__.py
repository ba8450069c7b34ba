"""Evaluation stage: metrics of one model folder (`run`) and the promotion rule (`promotion.decide`)."""

from evaluation.metrics import run

__all__ = ["run"]
