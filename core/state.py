"""One state root for everything a run produces (default `.conveyor/` in the checkout).

Services default to embedded, serverless backends under it; environment variables that the
libraries already understand (MLFLOW_TRACKING_URI, PREFECT_API_URL, ...) point them at real
servers instead.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parent.parent
# dvc.yaml names its params file and outputs relative to the repo, so the data stages' workspace
# stays here even when the rest of the state root is moved with CONVEYOR_STATE_DIR.
DVC_PARAMS_FILE = REPO_ROOT / ".conveyor" / "params.yaml"
DVC_DATA_DIR = REPO_ROOT / ".conveyor" / "data"

# Telemetry off everywhere: these tools phone home by default and we run offline.
TELEMETRY_OFF = {
    "DO_NOT_TRACK": "1",
    "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
    "MLFLOW_DISABLE_TELEMETRY": "true",
    "BENTOML_DO_NOT_TRACK": "true",
    "GX_ANALYTICS_ENABLED": "false",
    "DVC_NO_ANALYTICS": "1",
    "HF_HUB_OFFLINE": "1",
    "TRANSFORMERS_OFFLINE": "1",
    "TOKENIZERS_PARALLELISM": "false",
}


@dataclass(frozen=True)
class State:
    """Paths under the state root."""

    root: Path

    @classmethod
    def from_env(cls) -> "State":
        root = os.environ.get("CONVEYOR_STATE_DIR") or str(REPO_ROOT / ".conveyor")
        return cls(Path(root).resolve())

    @property
    def runs(self) -> Path:
        return self.root / "runs"

    @property
    def prefect_home(self) -> Path:
        return self.root / "prefect"

    @property
    def mlflow_dir(self) -> Path:
        return self.root / "mlflow"

    @property
    def bentoml_home(self) -> Path:
        return self.root / "bentoml"

    @property
    def services(self) -> Path:
        return self.root / "services"

    @property
    def api_keys(self) -> Path:
        """The serving API keys (hashed): `conveyor keys`, read by the server (serving/auth.py)."""
        return Path(os.environ.get("CONVEYOR_API_KEYS") or self.root / "serving" / "api_keys.json")

    @property
    def request_log(self) -> Path:
        return Path(os.environ.get("CONVEYOR_REQUEST_LOG") or self.root / "serving" / "requests.jsonl")

    @property
    def mlflow_tracking_uri(self) -> str:
        return os.environ.get("MLFLOW_TRACKING_URI") or f"sqlite:///{self.mlflow_dir / 'mlflow.db'}"

    @property
    def mlflow_artifacts_uri(self) -> str | None:
        """Where new experiments keep artifacts: a folder under the state root, or (None) wherever the
        tracking server puts them, when `conveyor up --backend postgres` gave it an S3 bucket."""
        if os.environ.get("CONVEYOR_MLFLOW_ARTIFACTS") == "server":
            return None
        return (self.mlflow_dir / "artifacts").as_uri()

    def service_env(self) -> dict[str, str]:
        """Environment for this process and every child (DVC stages, training ranks, bentoml)."""
        env = dict(TELEMETRY_OFF)
        env.update(
            CONVEYOR_STATE_DIR=str(self.root),
            PREFECT_HOME=str(self.prefect_home),
            MLFLOW_TRACKING_URI=self.mlflow_tracking_uri,
            BENTOML_HOME=str(self.bentoml_home),
            CONVEYOR_API_KEYS=str(self.api_keys),
            CONVEYOR_REQUEST_LOG=str(self.request_log),
            # Prefect's temporary API (no server running) gets 20 s to start by default; on a busy
            # 2-core machine its first start (database migrations) took longer and failed a CI run.
            PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS="120",
            # Stage packages log through the stdlib; this makes Prefect show their lines too.
            PREFECT_LOGGING_EXTRA_LOGGERS="data,training,compression,evaluation,serving,core",
        )
        return env

    def activate(self) -> None:
        """Export service_env into os.environ (values already set by the user win)."""
        for directory in (self.root, self.prefect_home, self.mlflow_dir, self.bentoml_home):
            directory.mkdir(parents=True, exist_ok=True)
        for key, value in self.service_env().items():
            os.environ.setdefault(key, value)
