"""YAML profiles with `--set section.key=value` overrides, validated by the stages' models."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel, ConfigDict


class FrozenConfig(BaseModel):
    """The base of every config model: immutable once validated (a run cannot change its own
    settings halfway), and an unknown key is an error naming it, not silently ignored."""

    model_config = ConfigDict(frozen=True, extra="forbid")


class ConfigError(ValueError):
    """A config that cannot be used; the message names the field or path."""


def parse_override(text: str) -> tuple[list[str], Any]:
    if "=" not in text:
        raise ConfigError(f"override {text!r} must look like section.key=value")
    dotted, raw = text.split("=", 1)
    keys = [k for k in dotted.strip().split(".") if k]
    if not keys:
        raise ConfigError(f"override {text!r} has an empty key")
    # YAML parsing gives numbers, booleans and lists their types: lr=3e-4, paths=[a,b].
    return keys, yaml.safe_load(raw) if raw.strip() else ""


# Our own ~20 lines rather than OmegaConf's dotlist (installed; tried for issue 13): with OmegaConf
# 2.3 `--set training.train.lr` (no `=`) silently becomes null, `a.b.c=1` over a number `a.b`
# silently turns it into a section, and merging `compression.variants={}` keeps every variant
# instead of clearing them, where each of these must be an error or a replacement.
def apply_overrides(config: dict, overrides: list[str]) -> dict:
    for text in overrides:
        keys, value = parse_override(text)
        node = config
        for key in keys[:-1]:
            child = node.setdefault(key, {})
            if not isinstance(child, dict):
                raise ConfigError(f"override {text!r}: {key!r} is not a section")
            node = child
        node[keys[-1]] = value
    return config


def load_yaml(path: str | Path) -> dict:
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"config file not found: {path}")
    try:
        loaded = yaml.safe_load(path.read_text(encoding="utf-8"))
    except yaml.YAMLError as exc:
        raise ConfigError(f"config file {path} is not valid YAML: {exc}") from exc
    if not isinstance(loaded, dict):
        raise ConfigError(f"config file {path} must hold a mapping at top level")
    return loaded


def format_validation_error(exc: Exception) -> str:
    """pydantic's ValidationError as one line per bad field, dotted paths first."""
    errors = getattr(exc, "errors", None)
    if not callable(errors):
        return str(exc)
    lines = []
    for err in errors():
        where = ".".join(str(part) for part in err.get("loc", ()))
        lines.append(f"{where}: {err.get('msg')}")
    return "invalid config:\n  " + "\n  ".join(lines)
