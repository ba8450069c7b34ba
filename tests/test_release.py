"""Promotion, rollback and the audit history against a real MLflow registry (SQLite backend, local
artifact store), through the library and through the CLI."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from model_fixtures import make_tiny_model_folder

MODEL = "release-test"


@pytest.fixture(scope="module")
def tracking(tmp_path_factory):
    """A fresh registry with three registered versions of a tiny model; no aliases yet."""
    import mlflow

    from core import registry

    root = tmp_path_factory.mktemp("mlflow")
    previous = mlflow.get_tracking_uri()
    mlflow.set_tracking_uri(f"sqlite:///{root / 'mlflow.db'}")
    folder = make_tiny_model_folder(root / "model")
    experiment = registry.experiment_id("conveyor/release-test", (root / "artifacts").as_uri())
    client = mlflow.MlflowClient()
    run_id = client.create_run(experiment).info.run_id
    versions = [registry.register_variant(MODEL, folder, f"v{i}", {"bits_per_byte": 1.0 + i}, {"variant": f"v{i}"},
                                          run_id=run_id, experiment_id=experiment).version for i in range(3)]
    yield {"root": root, "versions": versions, "uri": mlflow.get_tracking_uri()}
    mlflow.set_tracking_uri(previous)


@pytest.fixture
def fresh_model(tracking):
    """Aliases cleared and history forgotten: each test starts from registered versions only."""
    import mlflow

    from core import registry

    client = mlflow.MlflowClient()
    for alias in ("champion", "challenger"):
        try:
            client.delete_registered_model_alias(MODEL, alias)
        except mlflow.exceptions.MlflowException:
            pass
    audit = client.get_experiment_by_name(registry.AUDIT_EXPERIMENT)
    if audit is not None:
        for run in client.search_runs([audit.experiment_id]):
            client.delete_run(run.info.run_id)
    return tracking["versions"]


def champion():
    from core import registry

    current = registry.get_by_alias(MODEL, "champion")
    return current.version if current else None


def test_history_records_every_move_with_who_and_why(fresh_model):
    from core import registry

    v1, v2, v3 = fresh_model
    registry.set_alias(MODEL, "champion", v1, "first run", evidence={"gates": []})
    registry.set_alias(MODEL, "challenger", v2, "bits_per_byte too high", evidence={"gates": [{"metric": "x"}]})
    registry.promote(MODEL, v2, "reviewed by hand")
    moves = registry.history(MODEL)
    assert [(m.alias, m.previous_version, m.version, m.action) for m in moves] == [
        ("champion", None, v1, "gate"), ("challenger", None, v2, "gate"), ("champion", v1, v2, "promote")]
    assert moves[1].evidence == {"gates": [{"metric": "x"}]}
    assert moves[2].reason == "reviewed by hand" and "@" in moves[2].actor
    assert champion() == v2


def test_rollback_restores_the_previous_champion_and_then_the_one_before(fresh_model):
    from core import registry

    v1, v2, v3 = fresh_model
    registry.set_alias(MODEL, "champion", v1, "first")
    registry.promote(MODEL, v2, "second")
    registry.promote(MODEL, v3, "third")
    assert registry.rollback(MODEL, "v3 misbehaves").version == v2
    assert champion() == v2
    # A second rollback goes one further back, instead of undoing the first.
    assert registry.rollback(MODEL).version == v1
    with pytest.raises(registry.ReleaseError, match="first champion"):
        registry.rollback(MODEL)
    assert champion() == v1
    assert [m.action for m in registry.history(MODEL)][-2:] == ["rollback", "rollback"]


def test_rollback_without_champion_and_bad_promotions_move_nothing(fresh_model, tracking):
    from core import registry

    v1, v2, v3 = fresh_model
    with pytest.raises(registry.ReleaseError, match="no champion"):
        registry.rollback(MODEL)
    registry.set_alias(MODEL, "champion", v1, "first")
    with pytest.raises(registry.ReleaseError, match="no version 99"):
        registry.promote(MODEL, "99", "typo")
    with pytest.raises(registry.ReleaseError, match="reason"):
        registry.promote(MODEL, v2, "  ")
    assert champion() == v1 and len(registry.history(MODEL)) == 1


def test_promoting_a_version_whose_files_are_gone_fails(fresh_model, tracking):
    import mlflow

    from core import registry

    v1, v2, v3 = fresh_model
    registry.set_alias(MODEL, "champion", v1, "first")
    source = mlflow.MlflowClient().get_model_version(MODEL, v3).source
    logged = mlflow.MlflowClient().get_logged_model(source.removeprefix("models:/"))
    folder = Path(logged.artifact_location.removeprefix("file://"))
    backup = folder.with_name(folder.name + ".bak")
    shutil.move(folder, backup)
    try:
        with pytest.raises(registry.ReleaseError, match="missing|cannot be listed"):
            registry.promote(MODEL, v3, "would serve nothing")
    finally:
        shutil.move(backup, folder)
    assert champion() == v1


def test_a_move_the_history_cannot_record_is_undone(fresh_model, monkeypatch):
    """The safety property of set_alias: no alias move without its audit record."""
    from core import registry

    v1, v2, _ = fresh_model
    registry.set_alias(MODEL, "champion", v1, "first")

    def broken(client, move):
        raise ConnectionError("tracking server went away")

    monkeypatch.setattr(registry, "_record", broken)
    with pytest.raises(ConnectionError):
        registry.set_alias(MODEL, "champion", v2, "lost?")
    assert champion() == v1


def test_cli_promote_rollback_history(fresh_model, tracking, monkeypatch, tmp_path):
    from typer.testing import CliRunner

    from core import registry
    from flows.cli import app

    v1, v2, _ = fresh_model
    registry.set_alias(MODEL, "champion", v1, "first")
    monkeypatch.setenv("MLFLOW_TRACKING_URI", tracking["uri"])
    monkeypatch.setenv("CONVEYOR_STATE_DIR", str(tmp_path / "state"))
    runner = CliRunner()
    missing = runner.invoke(app, ["promote", MODEL, "42", "--reason", "x", "--no-package"])
    assert missing.exit_code == 1 and "no version 42" in missing.output and "Traceback" not in missing.output
    done = runner.invoke(app, ["promote", MODEL, v2, "--reason", "hand-checked", "--no-package"])
    assert done.exit_code == 0, done.output
    assert f"version {v1} -> {v2}" in done.output
    back = runner.invoke(app, ["rollback", MODEL, "--no-package"])
    assert back.exit_code == 0 and f"{v2} -> {v1}" in back.output
    shown = runner.invoke(app, ["history", MODEL])
    assert shown.exit_code == 0
    assert "hand-checked" in shown.output and "rollback" in shown.output and "promote" in shown.output
    assert champion() == v1


def test_a_versions_metrics_are_its_logged_models_not_tags(tracking):
    """The metrics a version shows (`conveyor status`, the Bento's metadata) are the ones MLflow
    keeps as numbers on its LoggedModel, under the variant's prefix the compare view lines up."""
    import mlflow

    from core import registry

    first = registry.get_version(MODEL, tracking["versions"][1])
    assert first.metrics == {"bits_per_byte": 2.0} and first.model_id
    logged = mlflow.MlflowClient().get_logged_model(first.model_id)
    assert [(m.key, m.value) for m in logged.metrics] == [("v1/bits_per_byte", 2.0)]
    assert not [key for key in first.tags if not key.startswith(registry.TAG_PREFIX)], first.tags
