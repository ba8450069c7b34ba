"""The promotion rule of PromotionConfig, as a pure function of metrics dicts.

A metrics dict is what `evaluation.run` returns; only "perplexity" and "size_bytes" are read.
"""

from __future__ import annotations

import math
from typing import Literal

from pydantic import BaseModel

from evaluation.config import PromotionConfig


class Decision(BaseModel):
    chosen: str
    alias: Literal["champion", "challenger"]
    reason: str


def decide(candidates: dict[str, dict], champion: dict | None, config: PromotionConfig) -> Decision:
    """Pick this run's variant to register and the alias it gets.

    `candidates` maps variant name to its metrics; `champion` is the current champion's metrics,
    or None when the registry has none.
    """
    tolerance = config.max_perplexity_increase
    # A NaN or infinite perplexity is a broken model, never a candidate.
    finite = {name: m for name, m in candidates.items() if math.isfinite(m["perplexity"])}
    if not finite:
        raise ValueError(f"no variant has a finite perplexity: {sorted(candidates)}")
    best_name = min(finite, key=lambda name: finite[name]["perplexity"])
    best_ppl = finite[best_name]["perplexity"]
    ceiling = best_ppl * (1 + tolerance)
    eligible = {name: m for name, m in finite.items() if m["perplexity"] <= ceiling}
    # Equal sizes: the better perplexity, then the name, so the choice never depends on dict order.
    chosen = min(eligible, key=lambda name: (eligible[name]["size_bytes"], eligible[name]["perplexity"], name))
    ppl, size = eligible[chosen]["perplexity"], eligible[chosen]["size_bytes"]
    why_chosen = (f"{chosen} is the smallest ({size:,} bytes) of {len(eligible)} variant(s) within "
                  f"{tolerance * 100:g}% of the run's best perplexity {best_ppl:.3f} ({best_name}); "
                  f"its perplexity is {ppl:.3f}")
    if champion is None:
        return Decision(chosen=chosen, alias="champion", reason=f"{why_chosen}; no current champion")
    champion_ppl = champion["perplexity"]
    if not math.isfinite(champion_ppl):
        return Decision(chosen=chosen, alias="champion",
                        reason=f"{why_chosen}; the current champion's perplexity is {champion_ppl}")
    champion_ceiling = champion_ppl * (1 + tolerance)
    if ppl <= champion_ceiling:
        return Decision(chosen=chosen, alias="champion",
                        reason=f"{why_chosen} <= {champion_ceiling:.3f}, the champion's {champion_ppl:.3f} "
                               f"+ {tolerance * 100:g}%")
    return Decision(chosen=chosen, alias="challenger",
                    reason=f"{why_chosen} > {champion_ceiling:.3f}, the champion's {champion_ppl:.3f} "
                           f"+ {tolerance * 100:g}%: the champion stays")
