"""The promotion rule of PromotionConfig, as a pure function of metrics dicts.

A metrics dict is what `evaluation.run` returns (flat: "bits_per_byte", "conveyor_cloze/acc",
"size_bytes", ...). The champion's dict must come from the same evaluation data as the
candidates' (the pipeline re-evaluates the champion on this run's sets), or relative bounds
compare different things.
"""

from __future__ import annotations

import math
from typing import Literal

from pydantic import BaseModel

from evaluation.config import PromotionConfig


class GateCheck(BaseModel):
    """One bound checked: the limit the value had to respect, and by how much it missed."""

    metric: str
    bound: Literal["threshold", "max_regression", "max_relative_regression"]
    setting: float
    limit: float
    value: float | None
    champion: float | None = None
    greater_is_better: bool
    passed: bool
    missed_by: float = 0.0  # in the metric's units; 0 when passed

    def describe(self) -> str:
        compare = ">=" if self.greater_is_better else "<="
        value = "not measured" if self.value is None else f"{self.value:.6g}"
        if self.bound == "threshold":
            rule = f"{compare} {self.limit:.6g} (absolute)"
        elif self.bound == "max_regression":
            rule = f"{compare} {self.limit:.6g} (champion {self.champion:.6g} {'-' if self.greater_is_better else '+'} {self.setting:g})"
        else:
            rule = (f"{compare} {self.limit:.6g} (champion {self.champion:.6g} "
                    f"{'-' if self.greater_is_better else '+'} {100 * self.setting:g}%)")
        verdict = "ok" if self.passed else f"FAILED by {self.missed_by:.6g}"
        return f"{self.metric} {value} {rule}: {verdict}"


class Decision(BaseModel):
    chosen: str
    alias: Literal["champion", "challenger"]
    reason: str
    gates: list[GateCheck] = []

    @property
    def failed(self) -> list[GateCheck]:
        return [check for check in self.gates if not check.passed]


def _finite(value) -> bool:
    return isinstance(value, (int, float)) and math.isfinite(value)


def check_gates(metrics: dict, champion: dict | None, config: PromotionConfig) -> list[GateCheck]:
    """Every configured bound on `metrics`; relative ones only when there is a champion value."""
    checks = []
    for metric, bound in config.gates.items():
        up = config.direction(metric)
        value = metrics.get(metric)
        value = float(value) if _finite(value) else None
        limits: list[tuple[str, float, float]] = []  # (bound, setting, limit)
        if bound.threshold is not None:
            limits.append(("threshold", bound.threshold, bound.threshold))
        reference = champion.get(metric) if champion else None
        if _finite(reference):
            if bound.max_regression is not None:
                limits.append(("max_regression", bound.max_regression,
                               reference - bound.max_regression if up else reference + bound.max_regression))
            if bound.max_relative_regression is not None:
                change = abs(reference) * bound.max_relative_regression
                limits.append(("max_relative_regression", bound.max_relative_regression,
                               reference - change if up else reference + change))
        for kind, setting, limit in limits:
            if value is None:
                passed, missed = False, math.inf
            else:
                missed = (limit - value) if up else (value - limit)
                passed = missed <= 0
            checks.append(GateCheck(metric=metric, bound=kind, setting=setting, limit=limit, value=value,
                                    champion=float(reference) if kind != "threshold" else None,
                                    greater_is_better=up, passed=passed, missed_by=0.0 if passed else missed))
    return checks


def decide(candidates: dict[str, dict], champion: dict | None, config: PromotionConfig) -> Decision:
    """Pick this run's variant to register and the alias it gets.

    `candidates` maps variant name to its metrics; `champion` is the current champion's metrics on
    this run's evaluation data, or None when the registry has none.
    """
    key, up = config.select_by, config.direction(config.select_by)
    # A NaN or infinite value is a broken model, never a candidate.
    finite = {name: m for name, m in candidates.items() if _finite(m.get(key))}
    if not finite:
        raise ValueError(f"no variant has a finite {key}: {sorted(candidates)}")
    best_name = (max if up else min)(finite, key=lambda name: finite[name][key])
    best = finite[best_name][key]
    tolerance = config.selection_tolerance
    edge = best - abs(best) * tolerance if up else best + abs(best) * tolerance
    eligible = {name: m for name, m in finite.items() if (m[key] >= edge if up else m[key] <= edge)}
    passing = {name: m for name, m in eligible.items()
               if all(c.passed for c in check_gates(m, None, config))}
    pool = passing or eligible
    # Equal sizes: the better quality, then the name, so the choice never depends on dict order.
    chosen = min(pool, key=lambda name: (pool[name]["size_bytes"], -pool[name][key] if up else pool[name][key], name))
    why = (f"{chosen} is the smallest ({pool[chosen]['size_bytes']:,} bytes) of {len(pool)} variant(s) within "
           f"{tolerance * 100:g}% of the run's best {key} {best:.4f} ({best_name})"
           + ("" if passing or not eligible else ", though none passes the absolute thresholds")
           + f"; its {key} is {pool[chosen][key]:.4f}")
    gates = check_gates(pool[chosen], champion, config)
    failed = [check for check in gates if not check.passed]
    against = "no current champion" if champion is None else "against the champion on this run's data"
    if failed:
        return Decision(chosen=chosen, alias="challenger", gates=gates,
                        reason=f"{why}; {len(failed)} of {len(gates)} bound(s) failed ({against}): "
                               + "; ".join(check.describe() for check in failed)
                               + ("; the champion stays" if champion is not None else "; no champion is set"))
    held = f"all {len(gates)} bound(s) hold" if gates else "no bound to check"
    return Decision(chosen=chosen, alias="champion", gates=gates, reason=f"{why}; {held} ({against})")
