"""Put a Conveyor model folder into BentoML's model store, build the bento, say how to serve it.

BENTOML_HOME (the model and bento stores) comes from the environment, as for the bentoml CLI;
it must lie outside the repo, which is the build context.
"""

from __future__ import annotations

import logging
import shutil
import subprocess
import sys
from pathlib import Path

from core.state import REPO_ROOT

BENTOFILE = Path(__file__).with_name("bentofile.yaml")
TAG_PREFIX = "__tag__:"

logger = logging.getLogger(__name__)


def import_model(model_dir: Path, name: str, labels: dict[str, str], metadata: dict) -> str:
    """Copy the folder into a new version of BentoML model `name`; return its tag."""
    import bentoml

    with bentoml.models.create(name, labels=labels, metadata=without_none(metadata)) as bento_model:
        # The files sit next to BentoML's model.yaml, so `load_model(bento_model.path)` works as is.
        shutil.copytree(model_dir, bento_model.path, dirs_exist_ok=True)
    logger.info("imported %s as BentoML model %s", model_dir, bento_model.tag)
    return str(bento_model.tag)


def without_none(value):
    """BentoML rejects None in model metadata (a base model's lineage has parent_version None);
    leaving the key out says the same."""
    if isinstance(value, dict):
        return {key: without_none(item) for key, item in value.items() if item is not None}
    if isinstance(value, list):
        return [without_none(item) for item in value if item is not None]
    return value


def build_bento(bento_name: str, model_tag: str, version: str | None = None, shadow_tag: str | None = None,
                stable_tag: str | None = None) -> str:
    """Build the serving bento around BentoML model `model_tag`; return the bento tag.

    The tag goes in as the bento argument `model_tag`: bento.yaml records it and `bentoml serve`
    restores it, so the bento serves this model whatever the serving environment says.
    A subprocess keeps BentoML's process-wide state (stores, sys.path, cwd) out of the caller.
    """
    command = [
        sys.executable, "-m", "bentoml", "build", str(REPO_ROOT),
        "--bentofile", str(BENTOFILE), "--name", bento_name,
        "--arg", f"model_tag={model_tag}", "--output", "tag",
    ]
    if shadow_tag:
        command += ["--arg", f"shadow_tag={shadow_tag}"]
    if stable_tag:
        command += ["--arg", f"stable_tag={stable_tag}"]
    if version:
        command += ["--version", version]
    result = subprocess.run(command, cwd=REPO_ROOT, capture_output=True, text=True)
    if result.returncode != 0:
        raise RuntimeError(f"bentoml build failed ({result.returncode}):\n{result.stderr[-4000:]}")
    tags = [line[len(TAG_PREFIX):].strip() for line in result.stdout.splitlines() if line.startswith(TAG_PREFIX)]
    if not tags:
        raise RuntimeError(f"bentoml build printed no bento tag:\n{result.stdout[-2000:]}")
    logger.info("built bento %s serving %s", tags[-1], model_tag)
    return tags[-1]


def serve_command(bento_tag: str, host: str, port: int) -> list[str]:
    return [sys.executable, "-m", "bentoml", "serve", bento_tag, "--host", host, "--port", str(port)]


def package_champion(model_name: str, serving, work_dir: Path) -> str:
    """Download the registry's champion of `model_name` and build the Bento that serves it (what
    `conveyor serve` then serves); returns the bento tag. Used by the pipeline and by
    `conveyor promote` / `conveyor rollback`, so a moved alias is what the next serve starts."""
    from core import registry

    champion = registry.get_by_alias(model_name, "champion")
    if champion is None:
        raise RuntimeError(f"{model_name} has no champion to package")
    model_tag = _import_version(model_name, "champion", champion, serving, Path(work_dir))
    shadow_tag = None
    if serving.shadow_share > 0:
        challenger = registry.get_by_alias(model_name, "challenger")
        if challenger is not None and challenger.version != champion.version:
            shadow_tag = _import_version(model_name, "challenger", challenger, serving, Path(work_dir))
            logger.info("version %s (challenger) shadows %s of the requests", challenger.version, serving.shadow_share)
    stable_tag = None
    stable = canary_stable_version(model_name) if serving.canary.share > 0 else None
    if stable is not None:
        stable_tag = _import_version(model_name, stable, registry.get_version(model_name, stable), serving,
                                     Path(work_dir))
        logger.info("canary: version %s answers %s of the requests beside version %s until serving.canary decides",
                    champion.version, serving.canary.share, stable)
    return build_bento(serving.bento_name, model_tag, shadow_tag=shadow_tag, stable_tag=stable_tag)


def canary_stable_version(model_name: str) -> str | None:
    """The previous champion, when the champion's last move made a new one (a gate or a promotion)
    whose rollout has not been decided yet; otherwise None (no canary)."""
    from core import registry

    moves = [move for move in registry.history(model_name) if move.alias == "champion"]
    if not moves or moves[-1].action not in ("gate", "promote") or moves[-1].previous_version is None:
        return None
    current = registry.get_by_alias(model_name, "champion")
    if current is None or current.version != moves[-1].version or moves[-1].previous_version == current.version:
        return None
    return moves[-1].previous_version


def _import_version(model_name: str, ref: str, registered, serving, work_dir: Path) -> str:
    """`ref`: an alias of the registry, or a version number."""
    from core import registry

    folder = registry.download(model_name, ref, work_dir / ref)
    labels = {"registered_model": model_name, "version": registered.version,
              "variant": registered.lineage.get("variant", "unknown")}
    return import_model(folder, serving.bento_name, labels=labels,
                        metadata={"lineage": registered.lineage, "metrics": registered.metrics,
                                  "serving": serving.runtime()})
