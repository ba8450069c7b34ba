"""The whole DAG on the tiny profile, in a fresh copy of the checkout, through the real CLI:
Prefect's temporary local API, DVC with its local remote, DeepSpeed on 2 CPU ranks, MLflow on
SQLite, a Bento built and served over HTTP.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest

from checkout_support import CLI_OUTPUT_LOG, checkout_env, git, make_checkout, run_conveyor
from flows.services import free_port

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(1500)]
FIXTURE_EMAIL = "KaseyYoung@superrito.com"  # one of the raw fixture's addresses




@pytest.fixture(scope="module")
def checkout(tmp_path_factory) -> Path:
    return make_checkout(tmp_path_factory.mktemp("checkout"))






def _summaries(checkout: Path) -> list[dict]:
    paths = sorted((checkout / ".conveyor" / "runs").glob("*/summary.json"))
    return [json.loads(p.read_text()) for p in paths]


def _registry(checkout: Path, code: str) -> dict:
    """Ask the checkout's MLflow registry, in a child process (its state root, its code)."""
    script = (
        "import json, mlflow\n"
        "from core.state import State\n"
        "from core import registry\n"
        "mlflow.set_tracking_uri(State.from_env().mlflow_tracking_uri)\n" + code
    )
    out = subprocess.run([sys.executable, "-c", script], cwd=checkout, env=checkout_env(checkout),
                         capture_output=True, text=True, check=True).stdout
    return json.loads(out.strip().splitlines()[-1])


@pytest.fixture(scope="module")
def two_runs(checkout: Path) -> list[dict]:
    """The second run trains 2 steps instead of 30: a worse model the gate must keep out."""
    first = run_conveyor(checkout, "run", "--profile", "test")
    assert "Registry:" in first.stdout + first.stderr  # the summary, logged by the flow
    run_conveyor(checkout, "run", "--profile", "test", "--set", "training.train.max_steps=2")
    return _summaries(checkout)


def test_first_run_curates_trains_registers_with_lineage(checkout, two_runs):
    first = two_runs[0]
    stages = first["stages"]
    assert list(stages) == ["ingest", "clean", "dedup", "anonymize", "validate", "split"]
    assert not any(s["skipped"] for s in stages.values())
    # The fixture has malformed lines and exact duplicates: both are counted, nothing crashes.
    assert sum(stages["ingest"]["dropped"].values()) >= 1
    assert stages["dedup"]["dropped"].get("exact_duplicate", 0) >= 1
    assert stages["split"]["records_out"] == stages["anonymize"]["records_out"]
    assert set(first["variants"]) == {"base", "int8", "wanda50", "wanda50-int8"}
    # What training reached against what an untrained model scores: the second run's base model
    # (2 steps) sits near the vocabulary size (512); 30 steps take every variant far below it.
    barely_trained = two_runs[1]["variants"]["base"]["perplexity"]
    print("perplexity after 30 steps:", {name: round(m["perplexity"], 1) for name, m in first["variants"].items()},
          "after 2 steps:", round(barely_trained, 1))
    assert barely_trained > 300
    for metrics in first["variants"].values():
        assert 1 < metrics["perplexity"] < 0.6 * barely_trained
        # The profile's canaries are personal data: anonymize replaced every copy, none came out.
        assert metrics["canary/extracted"] == 0 and metrics["canary/phone/copies_in_train"] == 0
        assert metrics["canary/email/copies_in_train"] == metrics["canary/card/copies_in_train"] == 0
    assert stages["ingest"]["extra"]["canary_copies"] == 15
    sizes = {name: metrics["size_bytes"] for name, metrics in first["variants"].items()}
    assert sizes["int8"] < sizes["wanda50"] < sizes["base"]
    assert Path(first["compression"]["tradeoff_plot"]).stat().st_size > 10_000
    # A chained variant's parent is the variant it was built from, in the registry too.
    versions = first["registry"]["versions"]
    chained = _registry(checkout, (
        f"v = registry.get_version('conveyor-lm-test', '{versions['wanda50-int8']}')\n"
        "print(json.dumps(v.lineage))\n"))
    assert chained["parent_version"] == versions["wanda50"]
    assert _registry(checkout, (
        f"v = registry.get_version('conveyor-lm-test', '{versions['wanda50']}')\n"
        "print(json.dumps(v.lineage))\n"))["parent_version"] == versions["base"]

    champion = _registry(checkout, (
        "v = registry.get_by_alias('conveyor-lm-test', 'champion')\n"
        "print(json.dumps({'version': v.version, 'lineage': v.lineage}))\n"))
    lineage = champion["lineage"]
    for key in ("dataset_dvc_md5", "git_commit", "config_sha256", "prefect_flow_run_id", "mlflow_run_id", "variant"):
        assert lineage.get(key), f"lineage tag {key} missing: {lineage}"
    # The first run's candidate is the champion (the second one's is worse).
    origin = two_runs[0]
    assert champion["version"] == origin["registry"]["version"]
    for key in ("dataset_dvc_md5", "config_sha256", "prefect_flow_run_id", "mlflow_run_id"):
        assert lineage[key] == origin["lineage"][key]
    assert lineage["git_commit"] == git(checkout, "rev-parse", "HEAD").strip()
    assert origin["registry"]["versions"][lineage["variant"]] == champion["version"]
    if lineage["variant"] != "base":
        assert lineage["parent_version"] == origin["registry"]["versions"]["base"]

    # The curated dataset is in the DVC remote under the hash the registry names.
    md5 = lineage["dataset_dvc_md5"].removesuffix(".dir")
    remote = checkout / ".conveyor" / "dvc" / "remote"
    assert any(p.name == md5[2:] + ".dir" or p.name == md5[2:] for p in remote.rglob("*")), "dataset not pushed"


def test_the_prefect_ui_shows_the_stages_info_lines(checkout, two_runs):
    """Prefect's database (what its UI reads) holds the training stage's loss lines and
    evaluation's lines for the first run, not only warnings."""
    import sqlite3

    flow_run = two_runs[0]["lineage"]["prefect_flow_run_id"]
    with sqlite3.connect(next((checkout / ".conveyor" / "prefect").glob("*.db"))) as db:
        rows = db.execute("SELECT name, level, message FROM log WHERE flow_run_id = ?", (flow_run,)).fetchall()
    training = [message for name, level, message in rows if name == "training" and level == 20]
    assert any("step 30/30" in message and "loss" in message for message in training), rows[-20:]
    assert any(name.startswith("evaluation") and level == 20 for name, level, _ in rows)
    assert not [message for _, _, message in rows if "LOAD_GLOBAL" in message]  # no bytecode from dill
    assert not [message for _, _, message in rows if "autostage" in message]  # nor DVC's git advice
    assert any(message.startswith("anonymize: ") for _, _, message in rows)  # the stages' own lines stay
    # Its Artifacts tab: the variants table and the gate's decision.
    with sqlite3.connect(next((checkout / ".conveyor" / "prefect").glob("*.db"))) as db:
        artifacts = dict(db.execute("SELECT key, type FROM artifact WHERE flow_run_id = ?", (flow_run,)).fetchall())
        table = json.loads(db.execute("SELECT data FROM artifact WHERE key = 'conveyor-lm-test-variants' "
                                      "AND flow_run_id = ?", (flow_run,)).fetchone()[0])
    assert artifacts.get("conveyor-lm-test-variants") == "table"
    assert artifacts.get("conveyor-lm-test-decision") == "markdown"
    table = json.loads(table) if isinstance(table, str) else table
    assert {row["variant"] for row in table} == {"base", "int8", "wanda50", "wanda50-int8"}


def test_mlflow_shows_the_validation_curve_and_lines_the_variants_up(checkout, two_runs):
    """val/loss at every evaluation (eval_every 10 in the test profile), and one child run per variant
    with the same metric names, which MLflow's compare view puts side by side."""
    run_id = two_runs[0]["lineage"]["mlflow_run_id"]
    found = _registry(checkout, (
        "c = mlflow.MlflowClient()\n"
        f"run = c.get_run('{run_id}')\n"
        f"curve = [m.step for m in c.get_metric_history('{run_id}', 'val/loss')]\n"
        f"kids = c.search_runs([run.info.experiment_id], \"tags.mlflow.parentRunId = '{run_id}'\")\n"
        "kind = c.get_experiment(run.info.experiment_id).tags.get('mlflow.experimentKind')\n"
        f"curation = [a.path for a in c.list_artifacts('{run_id}', 'curation')]\n"
        "print(json.dumps({'curve': curve, 'kind': kind, 'curation': curation, 'kids': {\n"
        "                  k.data.tags['conveyor.variant']: sorted(k.data.metrics) for k in kids}}))\n"))
    assert found["curation"] == ["curation/clean.report.html"]  # what each clean rule removed
    assert found["curve"] == [10, 20, 30]
    assert found["kind"] == "finetuning"  # MLflow's UI opens the experiment on its training-runs view
    assert set(found["kids"]) == {"base", "int8", "wanda50", "wanda50-int8"}
    names = {variant: set(metrics) for variant, metrics in found["kids"].items()}
    assert {"bits_per_byte", "perplexity", "size_bytes"} <= names["base"] and names["base"] == names["int8"]


def test_second_run_skips_unchanged_data_stages(two_runs):
    second = two_runs[1]["stages"]
    # ingest always re-reads its inputs; every later stage is unchanged and skipped by DVC.
    assert [s for s, stats in second.items() if stats["skipped"]] == [
        "clean", "dedup", "anonymize", "validate", "split"]
    assert two_runs[1]["lineage"]["dataset_dvc_md5"] == two_runs[0]["lineage"]["dataset_dvc_md5"]


def test_worse_second_run_is_a_challenger_and_the_card_and_history_say_why(checkout, two_runs):
    first, second = two_runs
    for metrics in first["variants"].values():
        assert 0 < metrics["bits_per_byte"] < 8 and 0 <= metrics["conveyor_nextsentence/acc"] <= 1
        assert metrics["conveyor_nextsentence/n"] == 40
        assert metrics["decode_tokens_per_s_b8"] > 0 and metrics["peak_memory_bytes"] > 0
    assert first["registry"]["alias"] == "champion"
    # The champion was measured again on the second run's data before the decision.
    assert second["registry"]["previous_champion"]["version"] == first["registry"]["version"]
    assert second["registry"]["alias"] == "challenger"
    assert second["registry"]["champion_version"] == first["registry"]["version"]
    assert any(bound.startswith("bits_per_byte") for bound in second["registry"]["failed_bounds"])

    card = run_conveyor(checkout, "card", "conveyor-lm-test@challenger").stdout
    assert card.startswith("---\n") and "model-index:" in card
    assert "**challenger**" in card and "FAILED" in card and "bits_per_byte" in card
    assert f"champion v{first['registry']['version']} (same data)" in card
    history = run_conveyor(checkout, "history", "conveyor-lm-test").stdout
    assert "challenger" in history and "FAILED bits_per_byte" in history


def test_forced_promotion_then_rollback_restores_the_first_champion(checkout, two_runs):
    first, second = (run["registry"]["version"] for run in two_runs)
    forced = run_conveyor(checkout, "promote", "conveyor-lm-test", second, "--reason", "e2e: forced",
                          "--profile", "test")
    assert f"-> {second}" in forced.stdout and "built bento" in forced.stdout
    back = run_conveyor(checkout, "rollback", "conveyor-lm-test", "--profile", "test")
    assert f"{second} -> {first}" in back.stdout
    served = _registry(checkout, (
        "State.from_env().activate()  # BENTOML_HOME under the state root, as the CLI sets it\n"
        "import bentoml\n"
        "bento = bentoml.get('conveyor-lm-test:latest')\n"
        "model = bentoml.models.get(bento.info.args['model_tag'])\n"
        "print(json.dumps({'version': model.info.labels['version'],"
        " 'champion': registry.get_by_alias('conveyor-lm-test', 'champion').version}))\n"))
    assert served == {"version": first, "champion": first}
    history = run_conveyor(checkout, "history", "conveyor-lm-test", "--json").stdout.splitlines()
    moves = [json.loads(line) for line in history]
    assert [(m["action"], m["previous_version"], m["version"]) for m in moves[-2:]] == [
        ("promote", first, second), ("rollback", second, first)]
    assert moves[-2]["reason"] == "e2e: forced" and "@" in moves[-2]["actor"]


def test_lineage_command(checkout, two_runs):
    out = run_conveyor(checkout, "lineage", "conveyor-lm-test@champion").stdout.splitlines()
    origin = two_runs[0]  # its candidate is the champion (test_first_run_curates_trains_registers_with_lineage)
    assert out[0] == f"conveyor-lm-test version {origin['registry']['version']}"
    shown = dict(line.split(None, 1) for line in out[1:])
    for key in ("dataset_dvc_md5", "config_sha256", "prefect_flow_run_id", "mlflow_run_id"):
        assert shown[key] == origin["lineage"][key], key
    assert shown["git_commit"] == git(checkout, "rev-parse", "HEAD").strip()
    assert shown["variant"] in origin["registry"]["versions"] and shown["profile"] == "test"




def test_built_bento_serves_generate(checkout, two_runs):
    bento = two_runs[-1]["bento"]
    port = free_port()
    env = checkout_env(checkout)
    env["BENTOML_HOME"] = str(checkout / ".conveyor" / "bentoml")
    env["CONVEYOR_API_KEYS"] = str(checkout / ".conveyor" / "serving" / "api_keys.json")
    key = run_conveyor(checkout, "keys", "add", "--name", "e2e").stdout.strip().splitlines()[-1]
    server = subprocess.Popen([str(Path(sys.executable).parent / "bentoml"), "serve", bento, "--host", "127.0.0.1",
                               "--port", str(port)], cwd=checkout, env=env, stdout=subprocess.PIPE,
                              stderr=subprocess.STDOUT, start_new_session=True)
    try:
        deadline = time.monotonic() + 120
        while True:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/readyz", timeout=2) as r:
                    if r.status == 200:
                        break
            except (urllib.error.URLError, OSError):
                pass
            assert server.poll() is None, server.stdout.read().decode()[-3000:]
            assert time.monotonic() < deadline, "bento not ready in 120 s"
            time.sleep(1)
        request = urllib.request.Request(
            f"http://127.0.0.1:{port}/generate",
            # Personal data in a prompt: the request log keeps its length, never its text.
            data=json.dumps({"prompt": f"Write to {FIXTURE_EMAIL}: It is a truth", "max_new_tokens": 8}).encode(),
            headers={"Content-Type": "application/json", "Authorization": f"Bearer {key}"})
        with urllib.request.urlopen(request, timeout=60) as response:
            body = json.loads(response.read())
        assert isinstance(body["text"], str) and body["text"]
        request.remove_header("Authorization")
        with pytest.raises(urllib.error.HTTPError) as refused:
            urllib.request.urlopen(request, timeout=60)
        assert refused.value.code == 401
    finally:
        os.killpg(server.pid, 15)
        server.wait(timeout=30)


def personal_values(checkout: Path) -> set[str]:
    """What the leak search looks for: the raw fixture's e-mail addresses and Luhn-valid card
    numbers (as written and as bare digits), and the personal-data canaries ingest inserted."""
    from stdnum import luhn

    from evaluation import canaries as cn

    raw = (checkout / "tests" / "fixtures" / "tiny.jsonl").read_text()
    values = set(re.findall(r"[\w.%+-]+@[\w-]+(?:\.[\w-]+)+", raw))
    for number in re.findall(r"\b\d[\d -]{11,21}\d\b", raw):
        digits = re.sub(r"\D", "", number)
        if 13 <= len(digits) <= 19 and luhn.is_valid(digits):
            values |= {number, digits}
    for canary in cn.read(checkout / ".conveyor" / "data" / "ingest" / cn.CANARIES_FILE):
        values.add(canary.secret)
        if canary.kind != "email":
            values.add(re.sub(r"\D", "", canary.secret))
    return values


def allowed_raw_data(state: Path) -> tuple[list[Path], set[str]]:
    """Where the raw data may be: the stage outputs before anonymize and their quarantines (ingest's
    quarantine.jsonl inside, the samples of dropped records and removed lines beside:
    data/shards.samples_path; the clean report shows them redacted and is scanned),
    and DVC's cached copies of them (by md5, from dvc.lock)."""
    import yaml

    from data.shards import samples_path

    folders = [state / "data" / stage for stage in ("ingest", "clean", "dedup")]
    folders += [samples_path(folder, kind) for folder in folders for kind in ("dropped", "removed")]
    lock = yaml.safe_load((state.parent / "dvc.lock").read_text())["stages"]
    md5s = set()
    for stage in ("ingest", "clean", "dedup"):
        for out in lock[stage]["outs"]:
            if not out["md5"].endswith(".dir"):
                continue  # the stage's stats (a DVC metric): scanned like everything else
            md5s.add(out["md5"].removesuffix(".dir"))
            manifest = next(state.glob(f"dvc/cache/files/md5/{out['md5'][:2]}/{out['md5'][2:]}"), None)
            if manifest is not None:
                md5s |= {entry["md5"] for entry in json.loads(manifest.read_text())}
    return folders, md5s


def test_nothing_personal_reaches_logs_registry_artifacts_or_outputs(checkout, two_runs):
    """After two pipeline runs, a promotion, a rollback and a served request: no personal value of
    the raw corpus, nor a personal-data canary, is in any file of the state root (MLflow's database
    and artifacts, cards, Prefect's database and logs, stats, run folders, the DVC remote, the
    Bento store, the request log) nor in anything the CLI printed, except the raw data's own copies."""
    values = personal_values(checkout)
    assert len(values) >= 10 and FIXTURE_EMAIL in values
    pattern = re.compile(b"|".join(re.escape(v.encode()) for v in sorted(values, key=len, reverse=True)))
    state = checkout / ".conveyor"
    folders, cached = allowed_raw_data(state)
    leaks, scanned = [], 0
    for path in [*state.rglob("*"), checkout / CLI_OUTPUT_LOG]:
        if not path.is_file() or any(path.is_relative_to(f) or path.is_relative_to(f.with_name(f.name + ".partial"))
                                     for f in folders):
            continue
        if path.is_relative_to(state / "dvc" / "cache") and path.parent.name + path.name.removesuffix(".dir") in cached:
            continue
        scanned += 1
        found = pattern.search(path.read_bytes())
        if found:
            leaks.append(f"{path.relative_to(checkout)}: a value of {len(found.group())} characters")
    assert scanned > 100
    assert not leaks, "personal data outside the raw data:\n" + "\n".join(leaks)


def test_validation_failure_stops_before_training(checkout, two_runs):
    """Anonymizing no e-mails leaves them in the text: Great Expectations fails the flow, and
    nothing new is trained or registered."""
    before = _registry(checkout, (
        "c = mlflow.MlflowClient()\n"
        "print(json.dumps({'n': len(c.search_model_versions(\"name='conveyor-lm-test'\"))}))\n"))
    result = run_conveyor(checkout, "run", "--profile", "test", "--set", "data.anonymize.entities=[CREDIT_CARD]",
                       check=False)
    assert result.returncode != 0
    output = result.stdout + result.stderr
    assert "expect_column_values_to_not_match_regex" in output
    assert FIXTURE_EMAIL not in output  # the failure counts what it found, never shows it
    after = _registry(checkout, (
        "c = mlflow.MlflowClient()\n"
        "print(json.dumps({'n': len(c.search_model_versions(\"name='conveyor-lm-test'\"))}))\n"))
    assert after == before
    assert len(_summaries(checkout)) == len(two_runs)


def test_invalid_config_and_missing_input_fail_before_any_stage(checkout):
    bad = run_conveyor(checkout, "run", "--profile", "test", "--set", "training.train.lr=-1", check=False)
    assert bad.returncode == 2 and "training.train.lr" in bad.stderr
    missing = run_conveyor(checkout, "run", "--profile", "test", "--set", "data.ingest.paths=[nope.jsonl]", check=False)
    assert missing.returncode == 2 and "nope.jsonl" in missing.stderr


def _versions(checkout: Path) -> list[dict]:
    return _registry(checkout, (
        "c = mlflow.MlflowClient()\n"
        "print(json.dumps([{'version': str(v.version), 'run': v.tags.get('conveyor.mlflow_run_id')}\n"
        "                  for v in c.search_model_versions(\"name='conveyor-lm-test'\")]))\n"))


def test_a_rerun_with_nothing_changed_registers_and_builds_nothing(checkout, two_runs):
    before = _versions(checkout)
    result = run_conveyor(checkout, "run", "--profile", "test")
    assert f"nothing changed since run {two_runs[0]['run']}" in result.stdout + result.stderr
    assert _versions(checkout) == before


def test_a_run_killed_in_training_is_ended_and_the_next_run_continues_it(checkout, two_runs, tmp_path):
    """SIGKILL of `conveyor run` after its first checkpoint: every process it started dies with it;
    the next run of the same config marks it Crashed (Prefect) and KILLED (MLflow), takes over its
    folder and trains on from the checkpoint; nothing is left Running."""
    import signal
    import sqlite3

    import psutil

    args = ["run", "--profile", "test", "--set", "training.train.max_steps=150",
            "--set", "training.train.checkpoint_every=50"]
    runs_root = checkout / ".conveyor" / "runs"
    before = set(runs_root.iterdir())
    with open(tmp_path / "killed.log", "w") as log:
        cli = subprocess.Popen([sys.executable, "-m", "flows.cli", *args], cwd=checkout, env=checkout_env(checkout),
                               stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    deadline = time.monotonic() + 600
    while not any(path.parents[3] not in before
                  for path in runs_root.glob("*/model/base.checkpoints/step*/conveyor_complete")):
        assert cli.poll() is None, (tmp_path / "killed.log").read_text()[-3000:]
        assert time.monotonic() < deadline, "no checkpoint within 10 minutes"
        time.sleep(0.05)
    family = psutil.Process(cli.pid).children(recursive=True)
    assert any("training.train" in " ".join(p.cmdline()) for p in family)
    os.kill(cli.pid, signal.SIGKILL)
    cli.wait()
    _, alive = psutil.wait_procs(family, timeout=30)
    assert not alive, f"left running after the kill: {[' '.join(p.cmdline()[:4]) for p in alive]}"
    killed = next(path for path in runs_root.iterdir() if path not in before)
    record = json.loads((killed / "run.json").read_text())
    assert record["status"] == "running"  # nobody has looked yet

    result = run_conveyor(checkout, *args)
    output = result.stdout + result.stderr
    assert f"run {killed.name} crashed" in output and f"continuing run {killed.name}" in output
    summary = _summaries(checkout)[-1]
    assert summary["resumed_from"] == killed.name
    assert summary["training"]["resumed_from_step"] >= 50 and summary["training"]["steps"] == 150
    assert json.loads((killed / "run.json").read_text())["status"] == "adopted"

    with sqlite3.connect(next((checkout / ".conveyor" / "prefect").glob("*.db"))) as db:
        states = dict(db.execute("SELECT id, state_type FROM flow_run").fetchall())
    assert states[record["prefect_flow_run_id"]] == "CRASHED"
    assert "RUNNING" not in states.values() and "PENDING" not in states.values()
    mlflow_runs = _registry(checkout, (
        "c = mlflow.MlflowClient()\n"
        "e = [x.experiment_id for x in c.search_experiments()]\n"
        "print(json.dumps({r.info.run_id: r.info.status for r in c.search_runs(e, max_results=1000)}))\n"))
    assert mlflow_runs[record["mlflow_run_id"]] == "KILLED"
    assert "RUNNING" not in mlflow_runs.values()
    assert not [v for v in _versions(checkout) if v["run"] == record["mlflow_run_id"]]


def _cmdline(process) -> str:
    """A process's command line; "" for one that exited since it was listed (a CI run failed on it)."""
    import psutil

    try:
        return " ".join(process.cmdline())
    except psutil.Error:
        return ""


def test_cancelling_a_terminal_run_in_prefect_stops_it_as_cancelled(checkout, two_runs, tmp_path):
    """`conveyor run` has no worker watching for a cancel: its heartbeat does, stops training and
    ends the flow run Cancelled (not stuck in Cancelling), the MLflow run KILLED. Started with SIGINT
    ignored, as `conveyor run ... &` in a script is: the cancel must still arrive."""
    import signal
    import sqlite3

    import psutil

    args = ["run", "--profile", "test", "--set", "training.train.max_steps=100000",
            "--set", "training.train.log_every=1000"]
    runs_root = checkout / ".conveyor" / "runs"
    before = set(runs_root.iterdir())
    env = {**checkout_env(checkout), "CONVEYOR_HEARTBEAT_SECONDS": "1"}
    with open(tmp_path / "cancelled.log", "w") as log:
        cli = subprocess.Popen([sys.executable, "-m", "flows.cli", *args], cwd=checkout, env=env,
                               stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
                               preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_IGN))
    try:
        deadline = time.monotonic() + 600
        while not any("training.train" in _cmdline(p) for p in psutil.Process(cli.pid).children(recursive=True)):
            assert cli.poll() is None, (tmp_path / "cancelled.log").read_text()[-3000:]
            assert time.monotonic() < deadline, "training did not start within 10 minutes"
            time.sleep(0.2)
        family = psutil.Process(cli.pid).children(recursive=True)
        # The run's folder can appear after its training process does (a CI run saw it): wait for it.
        while not (new := [path for path in runs_root.iterdir() if path not in before]):
            assert time.monotonic() < deadline, "no run folder appeared"
            time.sleep(0.2)
        run_dir = new[0]
        record = json.loads((run_dir / "run.json").read_text())
        request = urllib.request.Request(
            f"{record['prefect_api']}/flow_runs/{record['prefect_flow_run_id']}/set_state", method="POST",
            data=json.dumps({"state": {"type": "CANCELLING", "name": "Cancelling"}, "force": True}).encode(),
            headers={"Content-Type": "application/json"})
        urllib.request.urlopen(request, timeout=30).close()
        code = cli.wait(timeout=120)
    except BaseException as exc:
        # Whatever failed, the run must not go on training 100,000 steps beside the other tests
        # (one CI run lost 30 minutes and a second test to that).
        if cli.poll() is None:
            os.killpg(cli.pid, signal.SIGKILL)
        if isinstance(exc, subprocess.TimeoutExpired):
            pytest.fail("the cancel did not stop the run within 120 s:\n"
                        + (tmp_path / "cancelled.log").read_text()[-3000:])
        raise
    assert code == 1, (tmp_path / "cancelled.log").read_text()[-3000:]
    output = (tmp_path / "cancelled.log").read_text()
    assert "cancelled in Prefect" in output and "Traceback" not in output
    _, alive = psutil.wait_procs(family, timeout=30)
    assert not alive, f"left running: {[' '.join(p.cmdline()[:4]) for p in alive]}"
    assert json.loads((run_dir / "run.json").read_text())["status"] == "cancelled"
    with sqlite3.connect(next((checkout / ".conveyor" / "prefect").glob("*.db"))) as db:
        state = db.execute("SELECT state_type FROM flow_run WHERE id = ?", (record["prefect_flow_run_id"],)).fetchone()
    assert state == ("CANCELLED",)
    assert _registry(checkout, f"print(json.dumps(mlflow.MlflowClient().get_run('{record['mlflow_run_id']}').info.status))\n") == "KILLED"


# Where each `conveyor run --force` of the chain below is SIGKILLed: the first moment its folder
# shows the stage under way. Each run continues the one before, so each gets one stage further.
KILL_POINTS = [
    ("training", lambda run: any("training.train" in c for c in run["children"])),
    ("compression", lambda run: (run["dir"] / "model" / "base" / "result.json").is_file()),
    ("evaluation", lambda run: (run["dir"] / "compression_variants.json").is_file()),
    ("registration", lambda run: len(list((run["dir"] / "metrics").glob("*.json"))) == 4),
    ("packaging", lambda run: json.loads((run["dir"] / "run.json").read_text()).get("committed", False)),
]
# What the next run says about the part it took over from a run killed in that stage (flows/pipeline.py).
CONTINUED = {"compression": "training: the interrupted run's model is complete",
             "evaluation": "compression: the interrupted run's variants are complete",
             "registration": "evaluate base: measured by the interrupted run; kept",
             "packaging": "had committed its versions before it stopped; not registered again"}


def _kill_at(checkout: Path, args: list[str], stage: str, until, log_path: Path) -> dict:
    """Start `conveyor <args>`, SIGKILL it once `until(run)` holds; every process it started must
    die with it. Returns the killed run's folder and its output."""
    import signal

    import psutil

    runs_root = checkout / ".conveyor" / "runs"
    before = set(runs_root.iterdir())
    with open(log_path, "w") as log:
        cli = subprocess.Popen([sys.executable, "-m", "flows.cli", *args], cwd=checkout, env=checkout_env(checkout),
                               stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    deadline = time.monotonic() + 600
    run = {"dir": None, "children": []}
    while True:
        assert cli.poll() is None, f"the run ended before reaching {stage}:\n" + log_path.read_text()[-3000:]
        assert time.monotonic() < deadline, f"{stage} not reached within 10 minutes"
        try:
            run["dir"] = run["dir"] or next((p for p in runs_root.iterdir() if p not in before), None)
            run["children"] = [" ".join(p.cmdline()) for p in psutil.Process(cli.pid).children(recursive=True)]
            if run["dir"] is not None and (run["dir"] / "run.json").is_file() and until(run):
                break
        except (psutil.Error, OSError, ValueError):
            pass  # a child or a file that went away (or is being written) while looking
        time.sleep(0.05)
    family = psutil.Process(cli.pid).children(recursive=True)
    os.kill(cli.pid, signal.SIGKILL)
    cli.wait()
    _, alive = psutil.wait_procs(family, timeout=30)
    assert not alive, f"left running after the kill in {stage}: {[' '.join(p.cmdline()[:4]) for p in alive]}"
    return {"stage": stage, "dir": run["dir"], "output": log_path.read_text()}


def test_a_run_killed_at_each_stage_is_continued_to_the_uninterrupted_result(checkout, two_runs, tmp_path):
    """The test profile again (`--force`: the same config, code and data as the first run), killed
    in training, compression, evaluation, registration and packaging in turn, each run continuing
    the one before: the last one completes with the first, uninterrupted run's quality metrics; the
    killed runs end Crashed / KILLED, none left Running; only the run that committed registered."""
    import sqlite3

    args = ["run", "--profile", "test", "--force"]
    killed = []
    for stage, until in KILL_POINTS:
        killed.append(_kill_at(checkout, args, stage, until, tmp_path / f"killed-in-{stage}.log"))
        if len(killed) > 1:  # this run continued the one killed before it, from where that one stopped
            previous, output = killed[-2], killed[-1]["output"]
            assert f"continuing run {previous['dir'].name}" in output, output[-3000:]
            assert CONTINUED.get(previous["stage"], "continuing run") in output, output[-3000:]
    result = run_conveyor(checkout, *args)
    output = result.stdout + result.stderr
    assert f"continuing run {killed[-1]['dir'].name}" in output and CONTINUED["packaging"] in output
    summary = _summaries(checkout)[-1]
    assert summary["resumed_from"] == killed[-1]["dir"].name

    first = two_runs[0]["variants"]
    assert set(summary["variants"]) == set(first)
    for variant, metrics in first.items():
        quality = {k: v for k, v in metrics.items() if k in ("perplexity", "bits_per_byte") or k.endswith("/acc")}
        assert len(quality) >= 3
        assert {k: summary["variants"][variant][k] for k in quality} == pytest.approx(quality, rel=1e-6), variant

    records = [json.loads((k["dir"] / "run.json").read_text()) for k in killed]
    assert [r["status"] for r in records] == ["adopted"] * len(killed)
    with sqlite3.connect(next((checkout / ".conveyor" / "prefect").glob("*.db"))) as db:
        states = dict(db.execute("SELECT id, state_type FROM flow_run").fetchall())
    assert {states[r["prefect_flow_run_id"]] for r in records} == {"CRASHED"}
    assert "RUNNING" not in states.values() and "PENDING" not in states.values()
    mlflow_runs = _registry(checkout, (
        "c = mlflow.MlflowClient()\n"
        "e = [x.experiment_id for x in c.search_experiments()]\n"
        "print(json.dumps({r.info.run_id: r.info.status for r in c.search_runs(e, max_results=1000)}))\n"))
    assert {mlflow_runs[r["mlflow_run_id"]] for r in records} == {"KILLED"}
    assert "RUNNING" not in mlflow_runs.values()
    # The run killed in packaging had committed its registration: its versions are the result, and
    # the last run registered none of its own. Those killed before the commit left none.
    by_run = {}
    for version in _versions(checkout):
        by_run.setdefault(version["run"], []).append(version["version"])
    assert len(by_run.get(records[-1]["mlflow_run_id"], [])) == 4
    assert not any(by_run.get(r["mlflow_run_id"]) for r in records[:-1])
    assert summary["registry"] == records[-1]["registry"]
