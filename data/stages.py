"""The data stages, once: what `python -m data`, dvc.yaml, the pipeline and curate flows and
`conveyor data` iterate (tests/test_data_cli.py checks dvc.yaml against it).

Every stage keeps one contract, after datatrove's `PipelineStep`: a name (its module in this
package, its section under `data:` and its DVC stage), its config model, and

    data.<name>.run(config, input_dir, output_dir, workers=1) -> StageStats

which reads the records of `input_dir` (the output of the stage named `input`; ingest reads
`config.paths` instead), publishes `output_dir` atomically, and writes its stats beside it. A
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
    input: str | None  # the stage whose output this one reads; None: ingest, from data.ingest.paths
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
    Stage("ingest", IngestConfig, input=None, output="ingest"),
    Stage("clean", CleanConfig, input="ingest", output="clean", processor="data.clean:Cleaner"),
    Stage("dedup", DedupConfig, input="clean", output="dedup"),
    Stage("anonymize", AnonymizeConfig, input="dedup", output="anonymize", processor="data.anonymize:Anonymizer"),
    Stage("validate", ValidateConfig, input="anonymize", output="validate", records=False),
    Stage("split", SplitConfig, input="anonymize", output="curated"),
)}
# What `conveyor data` runs on a corpus: every stage but split, which makes the training files.
CURATION = [name for name in STAGES if name != "split"]
