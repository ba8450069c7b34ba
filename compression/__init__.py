"""Compression stage: variants of a trained model folder built by recipes of steps (prune,
recover, distill, quantize); see compression.config for the recipe format."""

from compression.config import CompressionConfig, Recipe
from compression.stage import CompressionError, Variant, describe, plan, run

__all__ = ["CompressionConfig", "CompressionError", "Recipe", "Variant", "describe", "plan", "run"]
