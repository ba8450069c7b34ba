"""Drift: has the data (or the traffic) moved away from what the champion was trained on?

Three checks, each a number against a threshold from `DriftConfig`:

- **Text.** The documents that arrived since the champion's training data (curated the same way)
  against that data: a domain classifier (TF-IDF + logistic regression telling old from new
  documents; a ROC AUC above what chance reaches on the same sizes means drift, as in Evidently),
  and a Kolmogorov-Smirnov test on each per-document statistic (length, words, digit, upper-case
  and non-ASCII shares, lines). An HTML report (scores, medians, the words that mark each side;
  never a document) is saved.
- **Curation.** The share of records each data stage drops, now against the champion's run: a
  source that starts sending duplicates or unparseable lines shows here before anywhere else.
- **Traffic.** Prompt lengths in the serving request log (lengths only: it holds no text), the
  newest window against the window before it (two-sample Kolmogorov-Smirnov).

`evaluate_drift` returns a `DriftReport`; flows.drift runs it as a Prefect flow and emits the event
that starts retraining.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path

from pydantic import BaseModel, Field

from core.config import FrozenConfig

logger = logging.getLogger(__name__)

STATISTICS = ("chars", "words", "mean_word_chars", "digit_share", "upper_share", "non_ascii_share", "lines")


class DriftConfig(FrozenConfig):

    min_new_documents: int = Field(default=20, ge=2, description="fewer new documents than this: no text verdict")
    text_auc: float = Field(default=0.7, gt=0.5, le=1,
                            description="drift when a classifier tells new from old documents apart this well (ROC AUC)")
    max_documents: int = Field(default=2000, ge=10, description="documents sampled from each side")
    column_share: float = Field(default=0.5, gt=0, le=1,
                                description="drift when this share of the columns (text + statistics) drifts")
    drop_rate_change: float = Field(default=0.10, gt=0, le=1,
                                    description="drift when a stage's drop share moves by this much (absolute)")
    traffic_window: int = Field(default=200, ge=10, description="requests in each traffic window")
    traffic_p_value: float = Field(default=0.01, gt=0, lt=1, description="KS test p-value below which traffic drifted")


class DriftReport(BaseModel):
    drifted: bool
    reasons: list[str]
    new_documents: int
    reference_documents: int
    text: dict = {}  # column -> {"score", "drifted", "method"}; share of drifted columns
    curation: dict = {}  # stage -> {"now", "champion"} drop shares
    traffic: dict = {}  # {"p_value", "reference_median", "current_median", "requests"}
    report_html: str | None = None

    def summary(self) -> str:
        verdict = "drift: " + "; ".join(self.reasons) if self.drifted else "no drift"
        return f"{verdict} ({self.new_documents} new documents against {self.reference_documents})"


def statistics(text: str) -> dict[str, float]:
    words = text.split()
    chars = max(len(text), 1)
    return {
        "chars": float(len(text)),
        "words": float(len(words)),
        "mean_word_chars": sum(map(len, words)) / len(words) if words else 0.0,
        "digit_share": sum(c.isdigit() for c in text) / chars,
        "upper_share": sum(c.isupper() for c in text) / chars,
        "non_ascii_share": sum(ord(c) > 127 for c in text) / chars,
        "lines": float(text.count("\n") + 1),
    }


def read_texts(path: Path, limit: int | None = None) -> dict[str, str]:
    """id -> text of a curated JSONL file."""
    texts = {}
    with open(path, encoding="utf-8") as handle:
        for line in handle:
            record = json.loads(line)
            texts[str(record["id"])] = record["text"]
    if limit is not None and len(texts) > limit:
        import random

        keep = random.Random(0).sample(sorted(texts), limit)
        texts = {key: texts[key] for key in keep}
    return texts


def text_drift(reference: list[str], current: list[str], config: DriftConfig, html: Path | None) -> dict:
    """A domain classifier on the texts and a KS test on each statistic; {"columns": ..., "share": ...}.

    Evidently's DataDriftPreset does this (its text drift is the same TF-IDF domain classifier), but
    evidently 0.7.23, the newest release, fails to import beside pandas 3 (`infer_dtype_from_object`
    is gone); alibi-detect's text drift needs a transformer embedding model we cannot download. So
    scikit-learn and scipy do it here, the way Evidently does: ROC AUC of a classifier telling
    new from old documents (the mean over 5 cross-validation folds; 0.5: indistinguishable) above
    `DriftConfig.text_auc`. A threshold, not a significance test: on the 300 documents of the test
    fixture, two random halves scored 0.33-0.59 over 8 shuffles (a permutation percentile at that size
    flagged one of them), documents of another kind 1.0."""
    import numpy as np
    from scipy.stats import ks_2samp
    from sklearn.feature_extraction.text import TfidfVectorizer
    from sklearn.linear_model import LogisticRegression
    from sklearn.model_selection import StratifiedKFold, cross_validate

    labels = np.array([0] * len(reference) + [1] * len(current))
    vectorizer = TfidfVectorizer(sublinear_tf=True, min_df=2, max_features=20_000)
    features = vectorizer.fit_transform(reference + current)
    classifier = LogisticRegression(max_iter=1000, class_weight="balanced")
    folds = StratifiedKFold(n_splits=min(5, len(current), len(reference)), shuffle=True, random_state=0)
    auc = float(cross_validate(classifier, features, labels, cv=folds, scoring="roc_auc")["test_score"].mean())
    threshold = config.text_auc
    classifier.fit(features, labels)
    terms = np.array(vectorizer.get_feature_names_out())
    order = np.argsort(classifier.coef_[0])
    columns = {"text": {"score": round(auc, 4), "threshold": round(threshold, 4), "drifted": auc > threshold,
                        "method": "TF-IDF domain classifier ROC AUC",
                        "new_terms": terms[order[::-1][:10]].tolist(), "old_terms": terms[order[:10]].tolist()}}
    before = [statistics(text) for text in reference]
    after = [statistics(text) for text in current]
    for name in STATISTICS:
        p_value = float(ks_2samp([row[name] for row in before], [row[name] for row in after]).pvalue)
        columns[name] = {"score": round(p_value, 6), "threshold": 0.05, "drifted": p_value < 0.05,
                         "method": "Kolmogorov-Smirnov p-value",
                         "reference_median": float(np.median([row[name] for row in before])),
                         "current_median": float(np.median([row[name] for row in after]))}
    share = sum(column["drifted"] for column in columns.values()) / len(columns)
    if html is not None:
        _write_html(html, columns, share, len(reference), len(current))
    return {"columns": columns, "share": round(share, 4)}


def _write_html(path: Path, columns: dict, share: float, n_reference: int, n_current: int) -> None:
    from html import escape

    from core.atomic import atomic_write_text

    rows = "".join(
        f"<tr><td>{escape(name)}</td><td>{escape(c['method'])}</td><td>{c['score']}</td><td>{c['threshold']}</td>"
        f"<td>{'<b>drift</b>' if c['drifted'] else 'no'}</td><td>{c.get('reference_median', '')}</td>"
        f"<td>{c.get('current_median', '')}</td></tr>" for name, c in columns.items())
    text = columns["text"]
    atomic_write_text(path, (
        "<!doctype html><meta charset=utf-8><title>Conveyor drift report</title>"
        f"<h1>Drift: {n_current} new documents against {n_reference} of the champion's</h1>"
        f"<p>{share:.0%} of the columns drifted.</p><table border=1 cellpadding=4>"
        "<tr><th>column</th><th>test</th><th>score</th><th>threshold</th><th>drift</th>"
        f"<th>median, champion's data</th><th>median, new data</th></tr>{rows}</table>"
        f"<p>Words that mark the new documents: {escape(', '.join(text['new_terms']))}</p>"
        f"<p>Words that mark the champion's: {escape(', '.join(text['old_terms']))}</p>"))


def curation_drift(now: dict[str, dict], champion: dict[str, float], config: DriftConfig) -> tuple[dict, list[str]]:
    """Drop share per stage now (stage stats) against the champion run's (its MLflow metrics)."""
    table, reasons = {}, []
    for stage, stats in now.items():
        if not stats.get("records_in"):
            continue
        share_now = sum(stats.get("dropped", {}).values()) / stats["records_in"]
        records_in = champion.get(f"{stage}.records_in")
        if not records_in:
            continue
        dropped = sum(v for k, v in champion.items() if k.startswith(f"{stage}.dropped."))
        share_then = dropped / records_in
        table[stage] = {"now": round(share_now, 4), "champion": round(share_then, 4)}
        if abs(share_now - share_then) >= config.drop_rate_change:
            reasons.append(f"{stage} drops {share_now:.0%} of records (champion's data: {share_then:.0%})")
    return table, reasons


def traffic_drift(request_log: Path, config: DriftConfig) -> dict:
    """Prompt lengths of the newest `traffic_window` requests against the window before them."""
    from scipy.stats import ks_2samp

    lengths = []
    for path in sorted(request_log.parent.glob(request_log.name + "*"), reverse=True):  # rotated files first
        with open(path, encoding="utf-8") as handle:
            for line in handle:
                try:
                    record = json.loads(line)
                except json.JSONDecodeError:
                    continue
                if not record.get("shadow") and isinstance(record.get("prompt_tokens"), int):
                    lengths.append(record["prompt_tokens"])
    window = config.traffic_window
    if len(lengths) < 2 * window:
        return {"requests": len(lengths), "p_value": None}
    before, recent = lengths[-2 * window:-window], lengths[-window:]
    result = ks_2samp(before, recent)
    median = lambda xs: sorted(xs)[len(xs) // 2]  # noqa: E731
    return {"requests": len(lengths), "p_value": float(result.pvalue),
            "reference_median": median(before), "current_median": median(recent)}


def evaluate_drift(reference_file: Path, current_file: Path, config: DriftConfig, output_dir: Path,
                   stages_now: dict[str, dict] | None = None, champion_metrics: dict[str, float] | None = None,
                   request_log: Path | None = None) -> DriftReport:
    """The three checks; `current_file` may hold the reference documents too: only new ids count."""
    reference = read_texts(reference_file)
    current = {key: text for key, text in read_texts(current_file).items() if key not in reference}
    reasons: list[str] = []
    text = {}
    html = None
    if len(current) >= config.min_new_documents:
        sample = lambda texts: list(texts.values())[: config.max_documents]  # noqa: E731
        html = Path(output_dir) / "drift_report.html"
        text = text_drift(sample(read_texts(reference_file, config.max_documents)), sample(current), config, html)
        drifted = [name for name, column in text["columns"].items() if column["drifted"]]
        if text["share"] >= config.column_share or text["columns"].get("text", {}).get("drifted"):
            reasons.append(f"new documents differ from the champion's training data in {', '.join(drifted)} "
                           f"({text['share']:.0%} of columns)")
    curation, curation_reasons = curation_drift(stages_now or {}, champion_metrics or {}, config)
    reasons += curation_reasons
    traffic = traffic_drift(request_log, config) if request_log is not None else {}
    if traffic.get("p_value") is not None and traffic["p_value"] < config.traffic_p_value:
        reasons.append(f"prompt lengths moved (median {traffic['reference_median']} -> {traffic['current_median']} "
                       f"tokens, KS p={traffic['p_value']:.2g})")
    return DriftReport(drifted=bool(reasons), reasons=reasons, new_documents=len(current),
                       reference_documents=len(reference), text=text, curation=curation, traffic=traffic,
                       report_html=str(html) if html else None)
