"""The compression stage: derive smaller variants of the trained model folder."""

from __future__ import annotations

import logging
from pathlib import Path

from pydantic import BaseModel

from compression.config import CompressionConfig
from compression.quantize import write_int8_dynamic
from core.models import folder_size_bytes
from core.stats import StageStats

WRITERS = {"int8_dynamic": write_int8_dynamic}

logger = logging.getLogger(__name__)


class Variant(BaseModel):
    """A model folder derived from `parent` (the trained model is "base") by `method`."""

    name: str
    path: Path
    method: str
    parent: str = "base"


def run(config: CompressionConfig, model_dir: Path, output_root: Path) -> list[Variant]:
    """Write one folder per method under `output_root/<method>`, plus `<output_root>.stats.json`."""
    model_dir, output_root = Path(model_dir), Path(output_root)
    base_size = folder_size_bytes(model_dir)
    stats = StageStats(stage="compression", records_in=1, bytes_in=base_size)
    variants = []
    with stats.timed():
        for method in config.methods:
            variant = Variant(name=method, path=output_root / method, method=method)
            quality = WRITERS[method](model_dir, variant.path, parent=variant.parent)
            size = folder_size_bytes(variant.path)
            stats.bytes_out += size
            stats.extra.update({f"{method}.size_ratio": round(size / base_size, 4),
                                **{f"{method}.{key}": value for key, value in quality.items()}})
            logger.info("%s: %s (%d bytes, %.1f%% of base)", method, variant.path, size, 100 * size / base_size)
            variants.append(variant)
    stats.records_out = len(variants)
    stats.write(output_root)
    return variants
