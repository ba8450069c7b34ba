"""The pipeline's config: one section per stage package, each validated by that package's model."""

from __future__ import annotations

from pathlib import Path

from pydantic import Field, ValidationError

from compression.config import CompressionConfig
from core.config import ConfigError, FrozenConfig, apply_overrides, format_validation_error, load_yaml
from core.state import REPO_ROOT
from data.config import DataConfig
from evaluation.config import Bound, EvaluationConfig, PromotionConfig
from evaluation.drift import DriftConfig
from serving.config import ServingConfig
from training.config import TrainingConfig

CONFIGS_DIR = REPO_ROOT / "configs"


class ScheduleConfig(FrozenConfig):

    cron: str = Field(default="0 3 * * 0", description="retraining schedule of the scheduled-retrain deployment")
    timezone: str = "UTC"
    drift_cron: str | None = Field(default=None, description="schedule of the drift/check deployment (None: "
                                   "on demand); a drift it finds starts pipeline/scheduled-retrain")


class PipelineConfig(FrozenConfig):

    profile: str = Field(default="demo", description="name of the YAML profile this was loaded from")
    model_name: str = Field(default="conveyor-lm", pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]*$",
                            description="MLflow registered model name")
    data: DataConfig = DataConfig()
    training: TrainingConfig = TrainingConfig()
    compression: CompressionConfig = CompressionConfig()
    evaluation: EvaluationConfig = EvaluationConfig()
    promotion: PromotionConfig = PromotionConfig()
    serving: ServingConfig = ServingConfig()
    schedule: ScheduleConfig = ScheduleConfig()
    drift: DriftConfig = DriftConfig()

    def check_inputs(self) -> None:
        """Fail before any stage runs when an input path is missing."""
        from data.ingest import missing_inputs

        missing = missing_inputs(self.data.ingest.paths)
        if missing:
            raise ConfigError(f"data.ingest.paths: input path not found: {', '.join(missing)}")
        suite = REPO_ROOT / self.data.validate_.suite
        if not suite.is_file():
            raise ConfigError(f"data.validate.suite: suite file not found: {self.data.validate_.suite}")

    @property
    def canaries_on(self) -> bool:
        return self.data.ingest.canaries.per_kind > 0

    def gates(self) -> PromotionConfig:
        """The promotion config the gate applies: with canaries inserted, a model that writes any of
        them out never becomes champion (`canary/extracted` <= 0, unless the profile bounds it)."""
        if not self.canaries_on or "canary/extracted" in self.promotion.gates:
            return self.promotion
        return self.promotion.model_copy(update={"gates": {**self.promotion.gates,
                                                           "canary/extracted": Bound(threshold=0)}})

    def to_yaml_dict(self) -> dict:
        return self.model_dump(mode="json", by_alias=True)


def profile_path(profile: str) -> Path:
    candidate = Path(profile)
    if candidate.suffix in (".yaml", ".yml"):
        return candidate if candidate.is_absolute() else Path.cwd() / candidate
    return CONFIGS_DIR / f"{profile}.yaml"


def load_data_config(profile: str | None, overrides: list[str] | None = None) -> DataConfig:
    """The data section of a profile; without one, the stages' own defaults (every PII type, NER on):
    `conveyor data` on a user's files must not inherit the demo's choices for public-domain fiction."""
    if profile is not None:
        return load_config(profile, overrides).data
    raw = apply_overrides({"data": {}}, overrides or [])
    unknown = sorted(set(raw) - {"data"})
    if unknown:
        raise ConfigError(f"--set: only data settings apply here, not {', '.join(unknown)}")
    try:
        return DataConfig.model_validate(raw["data"])
    except ValidationError as exc:
        raise ConfigError(format_validation_error(exc)) from None


def load_config(profile: str = "demo", overrides: list[str] | None = None) -> PipelineConfig:
    raw = load_yaml(profile_path(profile))
    raw.setdefault("profile", Path(profile).stem)
    raw = apply_overrides(raw, overrides or [])
    try:
        return PipelineConfig.model_validate(raw)
    except ValidationError as exc:
        raise ConfigError(format_validation_error(exc)) from None
