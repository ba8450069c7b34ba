"""The data stages, once: what `python -m data`, dvc.yaml, the pipeline and curate flows and
`conveyor data` iterate (tests/test_data_cli.py checks dvc.yaml against it).

Every stage keeps one contract, after datatrove's `PipelineStep`: a name (its module in this
package, its section under `data:` and its DVC stage), its config model, and

    data.<name>.run(config, input_dir, output_dir, workers=1) -> StageStats

which reads the records of `input_dir` (the output of the last stage before it that writes
records: `inputs`; ingest reads `config.paths` instead), publishes `output_dir` atomically, and
writes its stats beside it. A
per-record stage also names its processor class, which the curate flow runs shard by shard on
a task runner (data.shards.run_shard). Adding a stage: its module, its config model in
data/config.py (a field of DataConfig), an entry here, and its block in dvc.yaml.
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from data.config import (AnonymizeConfig, CleanConfig, DataConfig, DedupConfig, IngestConfig, SplitConfig,
                         ValidateConfig)

if TYPE_CHECKING:
    from pydantic import BaseModel

    from core.stats import StageStats


@dataclass(frozen=True)
class Stage:
    name: str
    config_model: type[BaseModel]
    output: str  # its folder under the DVC workspace (.conveyor/data/)
    processor: str | None = None  # "module:Class" of a per-record stage, built with the stage's config
    records: bool = True  # False: writes a report, and the next stage reads this one's input

    def config_of(self, data: DataConfig) -> BaseModel:
        """This stage's section of the data config (`validate` is `validate_` there: pydantic's
        BaseModel has a `validate` of its own)."""
        return getattr(data, self.name + "_" if self.name == "validate" else self.name)

    def run(self, config: BaseModel, input_dir: Path | None, output_dir: Path, workers: int = 1) -> StageStats:
        return importlib.import_module(f"data.{self.name}").run(config, input_dir, output_dir, workers=workers)


STAGES: dict[str, Stage] = {stage.name: stage for stage in (
    Stage("ingest", IngestConfig, output="ingest"),
    Stage("clean", CleanConfig, output="clean", processor="data.clean:Cleaner"),
    Stage("dedup", DedupConfig, output="dedup"),
    Stage("anonymize", AnonymizeConfig, output="anonymize", processor="data.anonymize:Anonymizer"),
    Stage("validate", ValidateConfig, output="validate", records=False),
    Stage("split", SplitConfig, output="curated"),
)}
# What `conveyor data` runs on a corpus: every stage but split, which makes the training files.
CURATION = [name for name in STAGES if name != "split"]


def inputs(stages: list[str]) -> dict[str, str | None]:
    """The stage whose output each of `stages` reads when they run in this order: the last one
    before it that writes records (None for the first: ingest reads data.ingest.paths). Over all
    of STAGES these are dvc.yaml's deps (split reads anonymize: validate writes a report); over a
    few (`conveyor data dedup`: ingest, dedup) they chain what runs."""
    source, read = None, {}
    for name in stages:
        read[name] = source
        if STAGES[name].records:
            source = name
    return read
