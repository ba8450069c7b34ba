"""Compression stage: smaller variants (int8 dynamic quantization) of a trained model folder."""

from compression.stage import Variant, run

__all__ = ["Variant", "run"]
