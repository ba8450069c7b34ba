"""What the Prefect and MLflow UIs show for a Conveyor run, checked in a real browser (headless
Chromium from Debian: `apt-get install chromium`), with screenshots.

    python benchmarks/ui_check.py                           # ~6 min on 2 cores; screenshots to docs/screenshots
    python benchmarks/ui_check.py --out /tmp/shots --keep   # keep the copy and its servers' state

In a fresh copy of this checkout (tests/checkout_support.make_checkout: the pipeline writes dvc.lock
and data/), `conveyor up` starts the Prefect and MLflow servers on free ports and `conveyor run
--profile test` runs against them, as on a team's machine. Then Chromium opens each page, waits for
the app to render (--virtual-time-budget), writes a screenshot and checks the rendered DOM for what
the page must show:

- Prefect, the flow run: its task graph and its logs, the stages' info lines among them (training's
  loss lines, evaluation's results);
- Prefect, the run's artifacts: the variants table, the champion decision with the MLflow link;
- MLflow, Conveyor's experiment on its training-runs view (links carry workflowType=machine_learning:
  MLflow 3's UI otherwise opens in GenAI mode, whatever the experiment's kind);
- MLflow, the run's validation and training loss as curves;
- MLflow, the compare view of the variants' child runs: the same metric names side by side;
- MLflow, the registered model: its versions and the champion alias.

A check that fails prints what the page held instead and the script exits 1.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
import urllib.parse
from html.parser import HTMLParser
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "tests"))

from checkout_support import checkout_env, make_checkout  # noqa: E402
from flows.services import free_port  # noqa: E402


class _Text(HTMLParser):
    """The visible text of a dumped DOM (script and style bodies left out)."""

    def __init__(self) -> None:
        super().__init__()
        self.parts: list[str] = []
        self._skip = 0

    def handle_starttag(self, tag, attrs):
        self._skip += tag in ("script", "style")

    def handle_endtag(self, tag):
        self._skip -= tag in ("script", "style") and self._skip > 0

    def handle_data(self, data):
        if not self._skip and data.strip():
            self.parts.append(data.strip())


def chromium(url: str, screenshot: Path, budget_ms: int, shot_size: str = "1600,1000",
             dom_size: str | None = None) -> str:
    """Render `url`, write its screenshot, return the visible text of the rendered page. The DOM is
    read in a window `dom_size` tall: long lists (Prefect's logs) render only what is in view."""
    browser = shutil.which("chromium") or shutil.which("chromium-browser")
    if browser is None:
        sys.exit("no chromium on PATH: apt-get install chromium")
    common = [browser, "--headless", "--no-sandbox", "--disable-gpu", "--hide-scrollbars", "--no-first-run",
              f"--virtual-time-budget={budget_ms}"]
    with tempfile.TemporaryDirectory() as profile:  # a fresh profile each time: no remembered UI state
        subprocess.run([*common, f"--window-size={shot_size}", f"--user-data-dir={profile}",
                        f"--screenshot={screenshot}", url], check=True, capture_output=True, timeout=180)
    with tempfile.TemporaryDirectory() as profile:
        dom = subprocess.run([*common, f"--window-size={dom_size or shot_size}", f"--user-data-dir={profile}",
                              "--dump-dom", url], check=True, capture_output=True, text=True, timeout=180).stdout
    parser = _Text()
    parser.feed(dom)
    return "\n".join(parser.parts)


def prefect_artifact_id(api: str, key: str) -> str:
    import urllib.request

    request = urllib.request.Request(f"{api}/artifacts/filter", method="POST",
                                     data=json.dumps({"artifacts": {"key": {"any_": [key]}}}).encode(),
                                     headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(request, timeout=30) as response:
        return json.loads(response.read())[0]["id"]


def metric_page(mlflow_url: str, run_id: str, experiment: str, keys: list[str]) -> str:
    """MLflow's metric page for `keys` of one run, with the query its own links carry."""
    q = urllib.parse.quote
    return (f"{mlflow_url}/#/metric?runs={json.dumps([run_id])}&metric={q(json.dumps(keys[0]))}"
            f"&experiments={json.dumps([experiment])}&plot_metric_keys={q(json.dumps(keys))}&plot_layout={{}}"
            "&x_axis=step&y_axis_scale=linear&line_smoothness=1&show_point=true&deselected_curves=[]"
            "&last_linear_y_axis_range=[]").replace(" ", "")


def conveyor(checkout: Path, *args: str) -> str:
    result = subprocess.run([sys.executable, "-m", "flows.cli", *args], cwd=checkout, env=checkout_env(checkout),
                            capture_output=True, text=True, timeout=1800)
    if result.returncode:
        sys.exit(f"conveyor {' '.join(args)} failed:\n{result.stdout[-3000:]}\n{result.stderr[-3000:]}")
    return result.stdout + result.stderr


def mlflow_query(checkout: Path, tracking: str, code: str):
    script = ("import json, mlflow\n"
              f"mlflow.set_tracking_uri({tracking!r})\nc = mlflow.MlflowClient()\n" + code)
    out = subprocess.run([sys.executable, "-c", script], cwd=checkout, env=checkout_env(checkout),
                         capture_output=True, text=True, check=True).stdout
    return json.loads(out.strip().splitlines()[-1])


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", type=Path, default=REPO / "docs" / "screenshots")
    parser.add_argument("--budget-ms", type=int, default=20000, help="virtual time each page gets to render")
    parser.add_argument("--keep", action="store_true", help="keep the checkout copy (its path is printed)")
    args = parser.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)

    root = Path(tempfile.mkdtemp(prefix="conveyor-ui-"))
    checkout = make_checkout(root / "checkout")
    prefect_port, mlflow_port = free_port(), free_port()
    started = time.monotonic()
    try:
        print(conveyor(checkout, "up", "--prefect-port", str(prefect_port), "--mlflow-port", str(mlflow_port)))
        conveyor(checkout, "run", "--profile", "test")
        summary = json.loads(sorted((checkout / ".conveyor" / "runs").glob("*/summary.json"))[-1].read_text())
        print(f"pipeline run {summary['run']} in {time.monotonic() - started:.0f} s (servers included)")
        prefect = f"http://127.0.0.1:{prefect_port}"
        mlflow_url = f"http://127.0.0.1:{mlflow_port}"
        flow_run = summary["lineage"]["prefect_flow_run_id"]
        run_id = summary["lineage"]["mlflow_run_id"]
        model = summary["registry"]["model_name"]
        found = mlflow_query(checkout, mlflow_url, (
            f"run = c.get_run({run_id!r})\n"
            f"kids = c.search_runs([run.info.experiment_id], \"tags.mlflow.parentRunId = '{run_id}'\")\n"
            "print(json.dumps({'experiment': run.info.experiment_id,\n"
            "                  'kids': {k.info.run_id: k.data.tags['conveyor.variant'] for k in kids}}))\n"))
        experiment, kids = found["experiment"], found["kids"]
        compare = urllib.parse.urlencode({"runs": json.dumps(list(kids)), "experiments": json.dumps([experiment])})
        model_key = re.sub(r"[^a-z0-9-]+", "-", model.lower()).strip("-")

        api = f"{prefect}/api"
        ml = "workflowType=machine_learning"  # MLflow 3's UI opens in GenAI mode unless the link says
        pages = [  # name, url, what the rendered text must hold, screenshot size, DOM window size
            ("prefect-flow-run", f"{prefect}/runs/flow-run/{flow_run}",
             ["Completed", "Running stage 'anonymize'", "step 30/30", "evaluated"], "1600,3000", "1600,9000"),
            ("prefect-artifact-variants",
             f"{prefect}/artifacts/artifact/{prefect_artifact_id(api, f'{model_key}-variants')}",
             ["bits_per_byte", *kids.values()], "1600,1000", None),
            ("prefect-artifact-decision",
             f"{prefect}/artifacts/artifact/{prefect_artifact_id(api, f'{model_key}-decision')}",
             ["champion now", "MLflow run", run_id], "1600,1000", None),
            ("mlflow-experiment-runs", f"{mlflow_url}/#/experiments/{experiment}/runs?{ml}",
             [summary["run"], "matching runs"], "1600,1000", None),
            ("mlflow-validation-curve", metric_page(mlflow_url, run_id, experiment, ["val/loss", "train/loss"]),
             ["val/loss", "train/loss", "(step=30)"], "1600,1000", None),
            ("mlflow-compare-variants", f"{mlflow_url}/#/compare-runs?{compare}&{ml}",
             ["bits_per_byte", "perplexity", *kids.values()], "1600,1000", None),
            ("mlflow-registered-model", f"{mlflow_url}/#/models/{model}?{ml}",
             ["champion", f"Version {summary['registry']['version']}"], "1600,1000", None),
        ]
        failures = []
        print(f"\n| page | screenshot | checks | {'result':6} |\n|---|---|---|---|")
        for name, url, expected, shot_size, dom_size in pages:
            shot = args.out / f"{name}.png"
            text = chromium(url, shot, args.budget_ms, shot_size, dom_size)
            missing = [item for item in expected if item not in text]
            print(f"| {name} | {shot.relative_to(args.out.parent) if shot.is_relative_to(args.out.parent) else shot}"
                  f" | {', '.join(expected)} | {'MISSING ' + ', '.join(missing) if missing else 'ok'} |")
            if missing:
                failures.append((name, url, missing, text[:1500]))
        for name, url, missing, text in failures:
            print(f"\n{name} ({url}) lacks {missing}; it showed:\n{text}")
        print(f"\n{datetime.date.today()} on {os.cpu_count()} CPUs ({sys.platform}), "
              f"{time.monotonic() - started:.0f} s in all")
        return 1 if failures else 0
    finally:
        subprocess.run([sys.executable, "-m", "flows.cli", "down"], cwd=checkout, env=checkout_env(checkout),
                       capture_output=True, timeout=120)
        if args.keep:
            print(f"kept {checkout}")
        else:
            shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
