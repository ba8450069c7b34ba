"""Configs of the data stages. Each section of `data:` in a profile validates against one model."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field, model_validator


class _Frozen(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class IngestConfig(_Frozen):
    paths: list[str] = Field(default=["data/corpus/demo.jsonl.gz"], min_length=1,
                             description="JSONL, JSONL.gz, Parquet or .txt files, relative to the repo root")
    id_field: str = "id"
    text_field: str = "text"
    records_per_part: int = Field(default=10_000, ge=1,
                                  description="records per shard; shards are the unit of parallel work and resume")


class CleanConfig(_Frozen):
    unicode_form: str = Field(default="NFKC", pattern="^(NFC|NFKC|NFD|NFKD)$")
    strip_markup: bool = Field(default=True, description="remove HTML tags and wikitext markup")
    min_chars: int = Field(default=200, ge=1)
    max_chars: int = Field(default=200_000, ge=1)

    @model_validator(mode="after")
    def _bounds(self):
        if self.min_chars > self.max_chars:
            raise ValueError(f"min_chars ({self.min_chars}) is above max_chars ({self.max_chars})")
        return self


class DedupConfig(_Frozen):
    lowercase: bool = Field(default=True, description="hash text lower-cased with whitespace collapsed")


class AnonymizeConfig(_Frozen):
    entities: list[str] = Field(default=["EMAIL", "PHONE", "IP_ADDRESS", "CREDIT_CARD"])


class ValidateConfig(_Frozen):
    suite: str = Field(default="configs/gx/curated.yaml", description="GX suite definition, repo-relative")
    # Below CleanConfig.min_chars: anonymization replaces values with shorter placeholders.
    min_chars: int = Field(default=150, ge=1)
    max_chars: int = Field(default=200_000, ge=1)


class SplitConfig(_Frozen):
    validation_fraction: float = Field(default=0.05, gt=0, lt=1)
    seed: int = 0


class DataConfig(_Frozen):
    ingest: IngestConfig = IngestConfig()
    clean: CleanConfig = CleanConfig()
    dedup: DedupConfig = DedupConfig()
    anonymize: AnonymizeConfig = AnonymizeConfig()
    validate_: ValidateConfig = Field(default=ValidateConfig(), alias="validate")
    split: SplitConfig = SplitConfig()

    model_config = ConfigDict(frozen=True, extra="forbid", populate_by_name=True)
