import json
import os
import subprocess
import sys
import time
import urllib.error
import urllib.request

import pytest
import yaml

from core.state import REPO_ROOT
from flows.services import free_port
from model_fixtures import make_tiny_model_folder
from serving.package import BENTOFILE, serve_command

READY_TIMEOUT_S = 60


def post_json(url: str, payload: dict, key: str | None = None) -> tuple[int, dict | list]:
    headers = {"Content-Type": "application/json", **({"Authorization": f"Bearer {key}"} if key else {})}
    request = urllib.request.Request(url, data=json.dumps(payload).encode(), method="POST", headers=headers)
    try:
        with urllib.request.urlopen(request, timeout=30) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as error:
        return error.code, json.loads(error.read())


def wait_until_ready(url: str, server: subprocess.Popen, timeout_s: float) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if server.poll() is not None:
            raise RuntimeError(f"bentoml serve exited with {server.returncode}")
        try:
            with urllib.request.urlopen(url, timeout=2) as response:
                if response.status == 200:
                    return
        except OSError:
            pass
        time.sleep(0.25)
    raise TimeoutError(f"{url} not ready after {timeout_s} s")


def test_serve_command_targets_the_bento():
    command = serve_command("conveyor-lm:abc", "127.0.0.1", 3001)
    assert command[-6:] == ["serve", "conveyor-lm:abc", "--host", "127.0.0.1", "--port", "3001"]


def test_bentofile_ships_only_sources_and_does_not_lock():
    bentofile = yaml.safe_load(BENTOFILE.read_text())
    assert bentofile["service"] == "serving.service:ConveyorLM"
    assert bentofile["include"] == ["serving/*.py", "serving/*.txt", "core/*.py", "data/__init__.py", "data/pii.py",
                                    "data/addresses.py", "data/layout_names.py", "data/language.py", "data/pii_scorer.py",
                                    "data/lexicons/__init__.py", "data/lexicons/*.txt"]
    assert bentofile["python"]["lock_packages"] is False
    assert "torch==2.13.0" in bentofile["python"]["packages"]


def test_the_shipped_sources_import_on_their_own(tmp_path):
    """The files bentofile.yaml ships are all the service's own code has at serve time: copied
    alone, its modules (the guard's PII detectors and what they import) import. The repo's
    editable install would hide a missing file, so its finder is removed first."""
    bentofile = yaml.safe_load(BENTOFILE.read_text())
    for pattern in bentofile["include"]:
        for path in REPO_ROOT.glob(pattern):
            (tmp_path / path.relative_to(REPO_ROOT)).parent.mkdir(parents=True, exist_ok=True)
            (tmp_path / path.relative_to(REPO_ROOT)).write_bytes(path.read_bytes())
    check = ("import sys\n"
             "sys.meta_path[:] = [f for f in sys.meta_path if not getattr(f, '__module__', '').startswith('__editable__')]\n"
             "sys.path_hooks[:] = [h for h in sys.path_hooks if not getattr(h, '__module__', '').startswith('__editable__')]\n"
             "import serving.service, serving.guard, data.pii\n"
             "assert data.pii.__file__.startswith(sys.argv[1]), data.pii.__file__\n"
             "data.pii.PiiDetector(data.pii.ENTITIES, ner=False).find('call Ana at 12 Elm Street')\n")
    result = subprocess.run([sys.executable, "-c", check, str(tmp_path)], cwd=tmp_path, capture_output=True, text=True,
                            env={k: v for k, v in os.environ.items() if k != "PYTHONPATH"}, timeout=120)
    assert result.returncode == 0, result.stderr[-2000:]


@pytest.fixture
def bentoml_home(tmp_path, monkeypatch):
    home = tmp_path / "bentoml"
    assert not home.is_relative_to(REPO_ROOT), "BENTOML_HOME must lie outside the build context"
    # BentoML reads BENTOML_HOME once per process, at its first use: set it before any import.
    monkeypatch.setenv("BENTOML_HOME", str(home))
    return home


@pytest.mark.slow
def test_built_bento_serves_generate(bentoml_home, tmp_path):
    from serving.package import build_bento, import_model

    model_dir = make_tiny_model_folder(tmp_path / "model")
    (model_dir / "README.md").write_text("---\nlibrary_name: transformers\n---\n# the tiny model's card\n")
    # A model packaged before the serving block existed stored only the limit: still honoured.
    model_tag = import_model(model_dir, "conveyor-lm-test", labels={"alias": "champion"},
                             metadata={"max_new_tokens_limit": 8, "lineage": {"parent_version": None}})
    assert (bentoml_home / "models" / model_tag.replace(":", "/") / "conveyor.json").is_file()

    start = time.perf_counter()
    bento_tag = build_bento("conveyor-lm-test", model_tag)
    build_s = time.perf_counter() - start
    bento_dir = bentoml_home / "bentos" / bento_tag.replace(":", "/")
    shipped = sorted(str(p.relative_to(bento_dir / "src")) for p in (bento_dir / "src").rglob("*") if p.is_file())
    assert all(p.startswith(("serving/", "core/", "data/")) or p == "bentofile.yaml" for p in shipped), shipped
    assert "data/pii.py" in shipped and "data/lexicons/first_names.txt" in shipped
    assert yaml.safe_load((bento_dir / "bento.yaml").read_text())["args"] == {"model_tag": model_tag}

    port = free_port()
    # A different CONVEYOR_BENTO_MODEL at serve time: the bento must still serve its own model.
    from serving.auth import KeyFile

    _entry, key = KeyFile(tmp_path / "keys.json").add("test")
    env = {**os.environ, "CONVEYOR_BENTO_MODEL": "not-this-model:latest", "CONVEYOR_API_KEYS": str(tmp_path / "keys.json"),
           "CONVEYOR_REQUEST_LOG": str(tmp_path / "requests.jsonl")}
    start = time.perf_counter()
    server = subprocess.Popen(serve_command(bento_tag, "127.0.0.1", port), env=env, cwd=tmp_path,
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    try:
        wait_until_ready(f"http://127.0.0.1:{port}/readyz", server, READY_TIMEOUT_S)
        ready_s = time.perf_counter() - start
        print(f"\nbento build {build_s:.1f} s, server ready {ready_s:.1f} s")

        status, body = post_json(f"http://127.0.0.1:{port}/generate", {"prompt": "hello", "max_new_tokens": 5}, key)
        assert status == 200, body
        assert isinstance(body["text"], str) and body["new_tokens"] == 5 and body["model"] == model_tag

        status, body = post_json(f"http://127.0.0.1:{port}/generate", {"prompt": "hi", "max_new_tokens": 100}, key)
        assert status == 200 and body["new_tokens"] == 8, body  # capped by the model's metadata

        status, body = post_json(f"http://127.0.0.1:{port}/generate", {"prompt": "   "}, key)
        assert 400 <= status < 500 and "prompt is empty" in json.dumps(body)

        status, body = post_json(f"http://127.0.0.1:{port}/generate", {"prompt": "hi", "max_new_tokens": 0}, key)
        assert status == 400, body

        card_request = urllib.request.Request(f"http://127.0.0.1:{port}/card", headers={"Authorization": f"Bearer {key}"})
        with urllib.request.urlopen(card_request, timeout=10) as response:
            assert response.status == 200 and response.headers["Content-Type"].startswith("text/markdown")
            assert "# the tiny model's card" in response.read().decode()
        status, body = post_json(f"http://127.0.0.1:{port}/generate", {"prompt": "hello", "max_new_tokens": 2}, key)
        assert status == 200, body  # the mounted routes leave the BentoML API alone
    finally:
        from serving.local import stop_server

        stop_server(server)
