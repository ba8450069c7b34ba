import math

import pytest

from evaluation.config import PromotionConfig
from evaluation.promotion import Decision, decide

FIVE_PERCENT = PromotionConfig(max_perplexity_increase=0.05)


def m(perplexity, size_bytes):
    return {"perplexity": perplexity, "size_bytes": size_bytes}


CASES = [
    # (case, candidates, champion, config, expected chosen, expected alias)
    ("first run: smallest eligible becomes champion",
     {"base": m(100.0, 400), "int8_dynamic": m(103.0, 200)}, None, FIVE_PERCENT, "int8_dynamic", "champion"),
    ("small variant too much worse than the run's best: base",
     {"base": m(100.0, 400), "int8_dynamic": m(106.0, 200)}, None, FIVE_PERCENT, "base", "champion"),
    ("exactly at the run tolerance is eligible",
     {"base": m(100.0, 400), "int8_dynamic": m(105.0, 200)}, None, FIVE_PERCENT, "int8_dynamic", "champion"),
    ("best perplexity need not be the base",
     {"base": m(101.0, 400), "int8_dynamic": m(100.0, 200)}, None, FIVE_PERCENT, "int8_dynamic", "champion"),
    ("smallest among several eligible",
     {"base": m(100.0, 400), "a": m(102.0, 300), "b": m(104.0, 100), "c": m(110.0, 50)},
     None, FIVE_PERCENT, "b", "champion"),
    ("single candidate",
     {"base": m(100.0, 400)}, None, FIVE_PERCENT, "base", "champion"),
    ("equal sizes: better perplexity wins",
     {"x": m(104.0, 200), "y": m(100.0, 200)}, None, FIVE_PERCENT, "y", "champion"),
    ("equal sizes and perplexities: name breaks the tie",
     {"y": m(100.0, 200), "x": m(100.0, 200)}, None, FIVE_PERCENT, "x", "champion"),
    ("zero tolerance: only the best is eligible",
     {"base": m(100.0, 400), "int8_dynamic": m(100.1, 200)}, None,
     PromotionConfig(max_perplexity_increase=0.0), "base", "champion"),
    ("better than the champion",
     {"base": m(90.0, 400), "int8_dynamic": m(92.0, 200)}, m(100.0, 300), FIVE_PERCENT, "int8_dynamic", "champion"),
    ("slightly worse than the champion, within tolerance",
     {"base": m(100.0, 400), "int8_dynamic": m(104.0, 200)}, m(100.0, 300), FIVE_PERCENT, "int8_dynamic", "champion"),
    ("exactly at the champion tolerance is promoted",
     {"base": m(105.0, 400)}, m(100.0, 300), FIVE_PERCENT, "base", "champion"),
    ("too much worse than the champion: challenger",
     {"base": m(106.0, 400), "int8_dynamic": m(107.0, 200)}, m(100.0, 300), FIVE_PERCENT, "int8_dynamic",
     "challenger"),
    ("the champion test uses the candidate, not the run's best",
     {"base": m(104.0, 400), "int8_dynamic": m(106.0, 200)}, m(100.0, 300), FIVE_PERCENT, "int8_dynamic",
     "challenger"),
    ("NaN variant is never eligible",
     {"base": m(100.0, 400), "broken": m(math.nan, 10)}, None, FIVE_PERCENT, "base", "champion"),
    ("infinite variant does not widen the window",
     {"base": m(100.0, 400), "broken": m(math.inf, 10)}, None, FIVE_PERCENT, "base", "champion"),
    ("champion with a non-finite perplexity is replaced",
     {"base": m(100.0, 400)}, m(math.nan, 300), FIVE_PERCENT, "base", "champion"),
]


@pytest.mark.parametrize("case, candidates, champion, config, chosen, alias", CASES, ids=[c[0] for c in CASES])
def test_promotion_rule(case, candidates, champion, config, chosen, alias):
    decision = decide(candidates, champion, config)
    assert (decision.chosen, decision.alias) == (chosen, alias)


def test_candidate_order_does_not_matter():
    candidates = {"a": m(100.0, 300), "b": m(102.0, 200), "c": m(103.0, 200)}
    reversed_candidates = dict(reversed(list(candidates.items())))
    assert decide(candidates, None, FIVE_PERCENT) == decide(reversed_candidates, None, FIVE_PERCENT)


def test_reason_states_the_numbers():
    decision = decide({"base": m(106.0, 400), "int8_dynamic": m(107.0, 200)}, m(100.0, 300), FIVE_PERCENT)
    assert decision == Decision(chosen="int8_dynamic", alias="challenger", reason=decision.reason)
    for number in ("200 bytes", "106.000", "107.000", "105.000", "100.000", "5%"):
        assert number in decision.reason, (number, decision.reason)


def test_no_finite_candidate_is_an_error():
    with pytest.raises(ValueError, match="finite perplexity"):
        decide({"broken": m(math.nan, 10)}, None, FIVE_PERCENT)
