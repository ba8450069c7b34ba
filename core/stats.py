"""The one shape every stage reports: records in/out, drops by reason, seconds, throughput."""

from __future__ import annotations

import json
import time
from contextlib import contextmanager
from pathlib import Path

from pydantic import BaseModel, Field

from core.atomic import atomic_write_text, beside



def stats_path(output: Path) -> Path:
    """Where a stage's stats live: beside its output folder, not in it. Timings differ on every
    run; inside the output they would change its hash and make DVC re-run every later stage."""
    return beside(output, ".stats.json")


class StageStats(BaseModel):
    stage: str
    records_in: int = 0
    records_out: int = 0
    dropped: dict[str, int] = Field(default_factory=dict)
    bytes_in: int = 0
    bytes_out: int = 0
    seconds: float = 0.0
    extra: dict[str, float | int | str] = Field(default_factory=dict)

    def drop(self, reason: str, count: int = 1) -> None:
        self.dropped[reason] = self.dropped.get(reason, 0) + count

    @contextmanager
    def timed(self):
        start = time.perf_counter()
        try:
            yield self
        finally:
            self.seconds = round(self.seconds + time.perf_counter() - start, 4)

    def write(self, output: Path) -> Path:
        """Write beside the stage's output folder (see stats_path)."""
        path = stats_path(output)
        atomic_write_text(path, self.model_dump_json(indent=2))
        return path

    @classmethod
    def read(cls, output: Path) -> "StageStats":
        return cls.model_validate(json.loads(stats_path(output).read_text()))

    def metrics(self) -> dict[str, float]:
        """Flat numeric view, for MLflow."""
        out = {
            f"{self.stage}.records_in": self.records_in,
            f"{self.stage}.records_out": self.records_out,
            f"{self.stage}.seconds": self.seconds,
        }
        for reason, count in self.dropped.items():
            out[f"{self.stage}.dropped.{reason}"] = count
        for key, value in self.extra.items():
            if isinstance(value, (int, float)):
                out[f"{self.stage}.{key}"] = value
        return out
