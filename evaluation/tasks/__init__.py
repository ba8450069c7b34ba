"""Task accuracy of a causal LM on held-out text, scored by lm-evaluation-harness, offline.

Two zero-shot tasks built by build_tasks.py from text held out of the training corpus
(LICENSES.md says from where):
- conveyor_cloze (LAMBADA-style, 1,000 items): a 40-120-word passage whose final word also
  occurs earlier in it. `acc`: the word is the model's greedy continuation of the passage
  (lm-eval's `is_greedy`, every token of " word" the argmax); `perplexity`: exp(-mean log p(" word"
  | passage)) over the items, lm-eval's lambada definition, computed here from the logged samples
  (lm-eval's own would bootstrap its stderr in a process pool). Chance is about 0.
- conveyor_nextsentence (HellaSwag-style, 1,000 items): 2-3 sentences, then 4 candidate next
  sentences, the true one and 3 of similar length from other documents. `acc`: the true one has
  the highest log-likelihood; `acc_norm`: the highest log-likelihood per character. Chance is 0.25.
reference.txt (~40,000 characters of held-out prose) is there for a bits-per-byte measure.

The YAML files are ordinary lm-eval task configs (`lm_eval --include_path evaluation/tasks` runs
them too); their data comes through `load_docs`, which reads the JSONL next to them into memory:
no path depends on the working directory, and nothing goes through the `datasets` cache.
"""

from __future__ import annotations

import json
import logging
import math
import os
from contextlib import contextmanager
from pathlib import Path

TASK_DIR = Path(__file__).resolve().parent
TASKS = ("conveyor_cloze", "conveyor_nextsentence")
REFERENCE_TEXT = TASK_DIR / "reference.txt"
OFFLINE = {"HF_DATASETS_OFFLINE": "1", "HF_HUB_OFFLINE": "1"}
# Warnings lm-eval gives on every call for things done here on purpose: a model object passed to
# HFLM, and a `custom_dataset` (with advice about --metadata).
EXPECTED_WARNINGS = ("`pretrained` model kwarg is not of type `str`", "Passed an already-initialized model",
                     "Custom kwargs can be passed to `--metadata`")


# ... and one per request whose passage does not fit the model's context, which a small model's
# short context makes hundreds of per run (1,677 lines in a test-profile pipeline run, each sent to
# Prefect's log): counted, and said once (run_tasks).
TRUNCATION_WARNING = "exceeds model's maximum length"
logger = logging.getLogger(__name__)


def _drop_expected_warnings(record: logging.LogRecord) -> bool:
    message = record.getMessage()
    return not any(expected in message for expected in EXPECTED_WARNINGS)


class _CountTruncations(logging.Filter):
    def __init__(self) -> None:
        super().__init__()
        self.count = 0

    def filter(self, record: logging.LogRecord) -> bool:
        if TRUNCATION_WARNING in record.getMessage():
            self.count += 1
            return False
        return True


def load_docs(data_file: str, **_metadata):
    """The YAMLs' `custom_dataset`: `data_file` of this folder as a one-split DatasetDict in memory.
    lm-eval passes the task's metadata as keyword arguments too; they are not needed."""
    import datasets

    lines = (TASK_DIR / data_file).read_text(encoding="utf-8").splitlines()
    return datasets.DatasetDict({"test": datasets.Dataset.from_list([json.loads(line) for line in lines if line])})


@contextmanager
def _environment(values: dict[str, str]):
    saved = {key: os.environ.get(key) for key in values}
    os.environ.update(values)
    try:
        yield
    finally:
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value


def _hflm(model, tokenizer, batch_size: int):
    """lm-eval's HFLM around a model in memory. Its constructor re-ties the output layer to the
    embedding: a no-op for a loaded model, and an AttributeError once core/int8.py has replaced
    the embedding by int8 data (manifest "embeddings": true), so that call is skipped here."""
    from lm_eval.models.huggingface import HFLM

    model.tie_weights = lambda *args, **kwargs: None
    try:
        return HFLM(pretrained=model, tokenizer=tokenizer, batch_size=batch_size)
    finally:
        del model.tie_weights


def run_tasks(model, tokenizer, tasks: list[str], limit: int | None = None,
              batch_size: int = 16) -> dict[str, dict[str, float]]:
    """Score an in-memory HF causal LM (any `core.models.load_model` result, quantized or not) on
    `tasks`, the first `limit` items of each. Returns task -> {acc, acc_stderr, (acc_norm,
    acc_norm_stderr | perplexity), n}."""
    unknown = sorted(set(tasks) - set(TASKS))
    if unknown:
        raise ValueError(f"unknown tasks {unknown}; known: {', '.join(TASKS)}")
    logging.getLogger("lm_eval").setLevel(logging.WARNING)
    for name in ("lm_eval.models.huggingface", "lm_eval.api.task"):
        if _drop_expected_warnings not in logging.getLogger(name).filters:
            logging.getLogger(name).addFilter(_drop_expected_warnings)
    truncations = _CountTruncations()
    logging.getLogger("lm_eval.models.huggingface").addFilter(truncations)
    try:
        with _environment(OFFLINE):
            import lm_eval
            from lm_eval.tasks import TaskManager

            results = lm_eval.simple_evaluate(
                model=_hflm(model, tokenizer, batch_size),
                tasks=list(tasks),
                task_manager=TaskManager(include_path=str(TASK_DIR), include_defaults=False),
                limit=limit,
                # Zero-shot and deterministic: leave the caller's random, numpy and torch seeds alone.
                random_seed=None, numpy_random_seed=None, torch_random_seed=None, fewshot_random_seed=None,
            )
    finally:
        logging.getLogger("lm_eval.models.huggingface").removeFilter(truncations)
    if truncations.count:
        logger.warning("lm-eval cut %d of its requests from the left to fit the model's context of %s tokens",
                       truncations.count, getattr(model.config, "max_position_embeddings", "?"))
    scores = {}
    for task in tasks:
        metrics = {name.removesuffix(",none"): value for name, value in results["results"][task].items()
                   if name.endswith(",none")}
        if task == "conveyor_cloze":
            log_likelihoods = [sample["filtered_resps"][0][0] for sample in results["samples"][task]]
            metrics["perplexity"] = math.exp(-sum(log_likelihoods) / len(log_likelihoods))
        scores[task] = {**metrics, "n": results["n-samples"][task]["effective"]}
    return scores
