import math

import pytest

from evaluation.config import Bound, PromotionConfig
from evaluation.promotion import check_gates, decide

# Selection within 5% of the run's best bits per byte; gate: at most 5% worse than the champion.
FIVE_PERCENT = PromotionConfig(selection_tolerance=0.05, gates={
    "bits_per_byte": Bound(max_relative_regression=0.05), "conveyor_cloze/acc": None,
    "conveyor_nextsentence/acc": None})


def m(bpb, size_bytes, **extra):
    return {"bits_per_byte": bpb, "size_bytes": size_bytes, **extra}


CASES = [
    # (case, candidates, champion, config, expected chosen, expected alias)
    ("first run: smallest eligible becomes champion",
     {"base": m(1.00, 400), "int8": m(1.03, 200)}, None, FIVE_PERCENT, "int8", "champion"),
    ("small variant too much worse than the run's best: base",
     {"base": m(1.00, 400), "int8": m(1.06, 200)}, None, FIVE_PERCENT, "base", "champion"),
    ("exactly at the run tolerance is eligible",
     {"base": m(1.00, 400), "int8": m(1.05, 200)}, None, FIVE_PERCENT, "int8", "champion"),
    ("best need not be the base",
     {"base": m(1.01, 400), "int8": m(1.00, 200)}, None, FIVE_PERCENT, "int8", "champion"),
    ("smallest among several eligible",
     {"base": m(1.00, 400), "a": m(1.02, 300), "b": m(1.04, 100), "c": m(1.10, 50)}, None, FIVE_PERCENT, "b",
     "champion"),
    ("equal sizes: better quality wins",
     {"x": m(1.04, 200), "y": m(1.00, 200)}, None, FIVE_PERCENT, "y", "champion"),
    ("equal sizes and quality: name breaks the tie",
     {"y": m(1.00, 200), "x": m(1.00, 200)}, None, FIVE_PERCENT, "x", "champion"),
    ("better than the champion",
     {"base": m(0.90, 400), "int8": m(0.92, 200)}, m(1.00, 300), FIVE_PERCENT, "int8", "champion"),
    ("exactly at the champion bound is promoted",
     {"base": m(1.05, 400)}, m(1.00, 300), FIVE_PERCENT, "base", "champion"),
    ("too much worse than the champion: challenger",
     {"base": m(1.06, 400), "int8": m(1.07, 200)}, m(1.00, 300), FIVE_PERCENT, "int8", "challenger"),
    ("NaN variant is never eligible",
     {"base": m(1.00, 400), "broken": m(math.nan, 10)}, None, FIVE_PERCENT, "base", "champion"),
    ("infinite variant does not widen the window",
     {"base": m(1.00, 400), "broken": m(math.inf, 10)}, None, FIVE_PERCENT, "base", "champion"),
    ("champion with a non-finite value: the relative bound is not checked",
     {"base": m(1.00, 400)}, m(math.nan, 300), FIVE_PERCENT, "base", "champion"),
]


@pytest.mark.parametrize("case, candidates, champion, config, chosen, alias", CASES, ids=[c[0] for c in CASES])
def test_promotion_rule(case, candidates, champion, config, chosen, alias):
    decision = decide(candidates, champion, config)
    assert (decision.chosen, decision.alias) == (chosen, alias)


def test_candidate_order_does_not_matter():
    candidates = {"a": m(1.00, 300), "b": m(1.02, 200), "c": m(1.03, 200)}
    reversed_candidates = dict(reversed(list(candidates.items())))
    assert decide(candidates, None, FIVE_PERCENT) == decide(reversed_candidates, None, FIVE_PERCENT)


def test_failed_bound_says_which_and_by_how_much():
    decision = decide({"base": m(1.20, 400)}, m(1.00, 300), FIVE_PERCENT)
    assert decision.alias == "challenger"
    [failed] = decision.failed
    assert (failed.metric, failed.bound) == ("bits_per_byte", "max_relative_regression")
    assert failed.limit == pytest.approx(1.05) and failed.missed_by == pytest.approx(0.15)
    for text in ("bits_per_byte", "1.2", "1.05", "champion 1", "5%", "FAILED by 0.15", "the champion stays"):
        assert text in decision.reason, (text, decision.reason)


def test_accuracy_bounds_are_absolute_points_and_higher_is_better():
    config = PromotionConfig(gates={"bits_per_byte": None, "conveyor_nextsentence/acc": None,
                                    "conveyor_cloze/acc": Bound(threshold=0.3, max_regression=0.05)})
    champion = {"conveyor_cloze/acc": 0.50}
    ok = check_gates({"conveyor_cloze/acc": 0.46}, champion, config)
    assert [c.passed for c in ok] == [True, True]
    worse = check_gates({"conveyor_cloze/acc": 0.44}, champion, config)
    assert [(c.bound, c.passed) for c in worse] == [("threshold", True), ("max_regression", False)]
    assert worse[1].missed_by == pytest.approx(0.01)
    low = check_gates({"conveyor_cloze/acc": 0.2}, None, config)  # no champion: only the absolute bound
    assert [(c.bound, c.passed) for c in low] == [("threshold", False)]


def test_absolute_threshold_fails_even_the_first_run():
    config = PromotionConfig(gates={"size_bytes": Bound(threshold=100)})
    decision = decide({"base": m(1.0, 400, **{"conveyor_cloze/acc": 0.5, "conveyor_nextsentence/acc": 0.5})},
                      None, config)
    assert decision.alias == "challenger" and "size_bytes" in decision.reason and "no champion is set" in decision.reason


def test_selection_prefers_variants_that_pass_the_absolute_bounds():
    config = PromotionConfig(selection_tolerance=0.1, gates={"peak_memory_bytes": Bound(threshold=1000)})
    candidates = {"base": m(1.00, 400, peak_memory_bytes=900), "int4": m(1.05, 100, peak_memory_bytes=5000)}
    assert decide(candidates, None, config).chosen == "base"


def test_missing_metric_fails_its_bound():
    [check] = check_gates({}, None, PromotionConfig(gates={"bits_per_byte": Bound(threshold=2.0)}))
    assert not check.passed and "not measured" in check.describe()


def test_negative_regression_demands_an_improvement():
    config = PromotionConfig(gates={"bits_per_byte": Bound(max_regression=-0.01)})
    assert decide({"base": m(0.995, 1)}, m(1.0, 1), config).alias == "challenger"
    assert decide({"base": m(0.985, 1)}, m(1.0, 1), config).alias == "champion"


def test_profile_gates_merge_over_the_defaults_and_null_removes_one():
    config = PromotionConfig.model_validate({"gates": {"size_bytes": {"threshold": 5}, "conveyor_cloze/acc": None}})
    assert set(config.gates) == {"bits_per_byte", "conveyor_nextsentence/acc", "size_bytes"}


def test_unknown_metric_needs_its_direction():
    with pytest.raises(ValueError, match="greater_is_better"):
        PromotionConfig(gates={"toxicity": Bound(threshold=0.1)})
    config = PromotionConfig(gates={"toxicity": Bound(threshold=0.1, greater_is_better=False)})
    assert not config.direction("toxicity")


def test_no_finite_candidate_is_an_error():
    with pytest.raises(ValueError, match="finite bits_per_byte"):
        decide({"broken": m(math.nan, 10)}, None, FIVE_PERCENT)


def test_with_canaries_inserted_a_model_that_writes_one_out_is_never_champion():
    from flows.config import PipelineConfig

    plain = PipelineConfig()
    assert "canary/extracted" not in plain.gates().gates  # no canaries: nothing to measure
    config = PipelineConfig.model_validate({"data": {"ingest": {"canaries": {"per_kind": 1}}}})
    gates = config.gates()
    assert gates.gates["canary/extracted"].threshold == 0 and gates.gates["bits_per_byte"] == plain.promotion.gates["bits_per_byte"]
    leaky = {"base": m(1.00, 400, **{"canary/extracted": 1.0}), "int8": m(1.01, 200, **{"canary/extracted": 2.0})}
    decision = decide(leaky, None, gates)
    assert decision.alias == "challenger" and "canary/extracted 2 <= 0 (absolute): FAILED by 2" in decision.reason
    # A variant that leaks nothing is preferred over a smaller one that does.
    decision = decide({**leaky, "base": m(1.00, 400, **{"canary/extracted": 0.0})}, None, gates)
    assert (decision.chosen, decision.alias) == ("base", "champion")
    # Without the measurement (evaluation did not run the canaries) the bound fails too.
    assert decide({"base": m(1.00, 400)}, None, gates).alias == "challenger"
