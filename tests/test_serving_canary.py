"""The canary judge (serving.canary): per-version counts, and the decision once both versions have
answered enough requests."""

import pytest

from serving.canary import CanaryConfig, Judge, read_decision, write_decision

CONFIG = CanaryConfig(share=0.5, min_requests=20)


def feed(judge, version, n, status=200, ms_per_token=10.0, tokens=8, guarded=False):
    decision = None
    for _ in range(n):
        decision = judge.observe(version, status, ms_per_token * tokens, tokens, guarded) or decision
    return decision


def test_no_decision_before_both_versions_have_enough():
    judge = Judge(CONFIG, "m", "2", "1")
    assert feed(judge, "2", 100) is None  # the stable one has answered nothing yet
    assert feed(judge, "1", 19) is None
    assert feed(judge, "1", 1).action == "finish"
    assert judge.observe("2", 500, 1.0, 1, False) is None  # decided once


def test_an_equal_canary_finishes():
    judge = Judge(CONFIG, "m", "2", "1")
    feed(judge, "1", 30, ms_per_token=10)
    decision = feed(judge, "2", 20, ms_per_token=11)
    assert decision.action == "finish" and decision.canary["requests"] == 20
    assert "after 20 requests" in decision.reasons[0]


@pytest.mark.parametrize("canary, reason", [
    ({"status": 500}, "error rate"),
    ({"ms_per_token": 20.0}, "p95"),
    ({"guarded": True}, "guard withheld or redacted"),
])
def test_a_worse_canary_is_rolled_back(canary, reason):
    judge = Judge(CONFIG, "m", "2", "1")
    feed(judge, "1", 30)
    decision = feed(judge, "2", 20, **canary)
    assert decision.action == "rollback" and reason in decision.reasons[0]
    assert decision.line().startswith("canary of m version 2 rolled back: version 1 answers all requests")


def test_slightly_more_errors_within_the_allowance_still_finish():
    judge = Judge(CONFIG.model_copy(update={"max_error_rate_increase": 0.1}), "m", "2", "1")
    feed(judge, "1", 30)
    feed(judge, "2", 1, status=500)
    assert feed(judge, "2", 19).action == "finish"  # 5% errors, allowed 10%


def test_the_decision_file_round_trips(tmp_path):
    judge = Judge(CONFIG, "m", "2", "1")
    feed(judge, "1", 20)
    decision = feed(judge, "2", 20, status=500)
    write_decision(tmp_path / "d.json", decision)
    assert read_decision(tmp_path / "d.json") == decision
    assert read_decision(tmp_path / "none.json") is None


def test_a_replica_routes_by_the_decision_another_replica_made(tmp_path, monkeypatch):
    """Two replicas of one server, each judging its own requests, sharing the decision file: once
    one rolls back, the other sends every request to the stable version too."""
    from serving import api

    monkeypatch.setattr(api, "DECISION_POLL_SECONDS", 0.0)
    path = tmp_path / "conveyor-canary-m-v2.json"

    def replica():
        stable = api.Lane(engine=None, metrics=None, version="1")
        canary = api.Canary(stable=stable, share=0.5, judge=Judge(CONFIG, "m", "2", "1"), decision_path=path)
        return api.Server(engine=None, tokenizer=None, config=None, guard=None, auth=None, limiter=None,
                          metrics=None, log=None, model_name="m", model_tag="t", version="2", context_tokens=64,
                          canary=canary)

    deciding, other = replica(), replica()
    assert {other.lane().version for _ in range(200)} == {"1", "2"}  # undecided: both answer
    feed(deciding.canary.judge, "1", 20)
    write_decision(path, feed(deciding.canary.judge, "2", 20, status=500))
    assert {deciding.lane().version for _ in range(50)} == {"1"}
    assert {other.lane().version for _ in range(50)} == {"1"}
    assert other.canary.judge.observe("2", 500, 1.0, 1, False) is None  # it does not decide again


def test_conveyor_canary_rolls_the_registry_back_or_records_the_finish(tmp_path):
    """The server's decision file, applied by `conveyor canary`: a rollback puts the previous
    champion back (recorded with the decision as evidence); a finish keeps the champion and records
    it, after which packaging makes no canary. Against a real MLflow registry (SQLite)."""
    import os
    import subprocess
    import sys

    import mlflow

    from core import registry
    from model_fixtures import make_tiny_model_folder
    from serving.canary import DECISION_FILE, Decision
    from serving.package import canary_stable_version

    state = tmp_path / "state"
    (state / "mlflow").mkdir(parents=True)
    (state / "serving").mkdir()
    model = "conveyor-lm-test"  # configs/test.yaml's
    previous = mlflow.get_tracking_uri()
    mlflow.set_tracking_uri(f"sqlite:///{state / 'mlflow' / 'mlflow.db'}")
    try:
        client = mlflow.MlflowClient()
        experiment = registry.experiment_id(f"conveyor/{model}", (state / "mlflow" / "artifacts").as_uri())
        folder = make_tiny_model_folder(tmp_path / "model")
        run = client.create_run(experiment).info.run_id
        versions = [registry.register_variant(model, folder, name, {"bits_per_byte": 1.0}, {"mlflow_run_id": run},
                                              run_id=run, experiment_id=experiment).version for name in ("a", "b")]
        registry.set_alias(model, "champion", versions[0], "first")
        registry.set_alias(model, "champion", versions[1], "the gate")
        assert canary_stable_version(model) == versions[0]
        env = {k: v for k, v in os.environ.items() if not k.startswith(("MLFLOW_", "CONVEYOR_", "PREFECT_"))}
        env["CONVEYOR_STATE_DIR"] = str(state)

        def apply(action: str) -> str:
            decision = Decision(action=action, model=model, canary_version=versions[1], stable_version=versions[0],
                                reasons=["p95 30.0 vs 10.0 ms per token"], canary={}, stable={}, time="t")
            write_decision(state / "serving" / DECISION_FILE.format(model=model, version=versions[1]), decision)
            result = subprocess.run([sys.executable, "-m", "flows.cli", "canary", "--profile", "test", "--no-package"],
                                    env=env, capture_output=True, text=True, timeout=300)
            assert result.returncode == 0, result.stderr[-3000:]
            return result.stdout

        assert "(canary rolled back)" in apply("rollback")
        assert registry.get_by_alias(model, "champion").version == versions[0]
        move = registry.history(model)[-1]
        assert move.action == "rollback" and move.evidence["canary"]["action"] == "rollback"
        assert canary_stable_version(model) is None  # a rollback is not a new champion
        assert not list((state / "serving").glob("*-v2.json")) and list((state / "serving").glob("*.applied.json"))

        registry.promote(model, versions[1], "try again")
        assert canary_stable_version(model) == versions[0]
        assert "(canary finished)" in apply("finish")
        assert registry.get_by_alias(model, "champion").version == versions[1]
        assert registry.history(model)[-1].action == "canary-finish"
        assert canary_stable_version(model) is None
        assert registry.champion_lineup(model) == [versions[0], versions[1]]
    finally:
        mlflow.set_tracking_uri(previous)
