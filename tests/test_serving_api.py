"""The served API over real HTTP: `bentoml serve serving.service:ConveyorLM` on a tiny model, the
official `openai` client, API keys, metrics, the request log, guardrails and hostile input."""

from __future__ import annotations

import concurrent.futures
import json
import re
import socket
import time
import uuid

import pytest

from model_fixtures import make_tiny_model_folder
from serving.local import served

pytestmark = pytest.mark.slow

CHAT_TEMPLATE = ("{% for m in messages %}<{{ m['role'] }}>{{ m['content'] }}\n{% endfor %}"
                 "{% if add_generation_prompt %}<assistant>{% endif %}")
SERVING = {"max_new_tokens_limit": 16, "max_prompt_tokens": 64, "kv_cache_tokens": 2048, "max_body_bytes": 100_000,
           "rate_limit_per_minute": 100_000, "guard": {"blocklist": ["forbidden phrase"]}}
# Personal data sent in requests: none of it may appear in any log.
SECRET_EMAIL = "jane.secret.doe@example.com"
SECRET_CARD = "4111 1111 1111 1111"


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory):
    folder = make_tiny_model_folder(tmp_path_factory.mktemp("served") / "model")
    (folder / "chat_template.jinja").write_text(CHAT_TEMPLATE)
    return folder


@pytest.fixture(scope="module")
def server(model_dir, tmp_path_factory):
    with served(tmp_path_factory.mktemp("server"), model_dir, serving=SERVING) as running:
        yield running


def reference(model_dir, prompt: str, new_tokens: int) -> str:
    import torch

    from core.models import load_model

    model, tokenizer = load_model(model_dir)
    ids = tokenizer(prompt, add_special_tokens=False, return_tensors="pt").input_ids
    with torch.inference_mode():
        out = model.generate(ids, attention_mask=torch.ones_like(ids), max_new_tokens=new_tokens, do_sample=False,
                             pad_token_id=tokenizer.pad_token_id)
    return tokenizer.decode(out[0, ids.shape[1]:], skip_special_tokens=True)


def test_openai_client_works_unchanged(server, model_dir):
    import openai

    client = openai.OpenAI(base_url=server.url + "/v1", api_key=server.key, max_retries=0)
    assert [m.id for m in client.models.list().data] == ["conveyor-test"]

    expected = reference(model_dir, "It was the best of times", 10)
    completion = client.completions.create(model="conveyor-test", prompt="It was the best of times", max_tokens=10,
                                           temperature=0)
    assert completion.choices[0].text == expected
    assert completion.usage.completion_tokens == 10 and completion.choices[0].finish_reason == "length"

    chunks = list(client.completions.create(model="conveyor-test", prompt="It was the best of times", max_tokens=10,
                                            temperature=0, stream=True))
    assert "".join(c.choices[0].text for c in chunks) == expected and len(chunks) > 1
    assert chunks[-1].choices[0].finish_reason == "length"

    messages = [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "hello world"}]
    chat_prompt = "<system>Be brief.\n<user>hello world\n<assistant>"
    chat = client.chat.completions.create(model="conveyor-test", messages=messages, max_tokens=8, temperature=0)
    assert chat.choices[0].message.role == "assistant"
    assert chat.choices[0].message.content == reference(model_dir, chat_prompt, 8)
    streamed = list(client.chat.completions.create(model="conveyor-test", messages=messages, max_tokens=8,
                                                   temperature=0, stream=True))
    assert "".join(c.choices[0].delta.content or "" for c in streamed) == chat.choices[0].message.content

    with pytest.raises(openai.AuthenticationError):
        openai.OpenAI(base_url=server.url + "/v1", api_key="cvk_00000000_" + "x" * 43,
                      max_retries=0).models.list()
    with pytest.raises(openai.NotFoundError):
        client.completions.create(model="gpt-4", prompt="hi", max_tokens=2)
    with pytest.raises(openai.BadRequestError) as too_many:
        client.completions.create(model="conveyor-test", prompt="hi", max_tokens=17)
    assert "at most 16" in str(too_many.value)


def test_every_route_but_health_probes_needs_a_key(server):
    for path in ("/livez", "/readyz", "/healthz"):
        assert server.request("GET", path, key=None)[0] == 200
    for method, path in (("GET", "/v1/models"), ("POST", "/v1/completions"), ("POST", "/v1/chat/completions"),
                         ("POST", "/generate"), ("GET", "/card"), ("GET", "/metrics"), ("GET", "/"),
                         ("GET", "/docs.json"), ("GET", "/no-such-route")):
        status, headers, body = server.request(method, path, {"prompt": "hi"}, key=None)
        assert status == 401, (path, status)
        assert body["error"]["code"] == "invalid_api_key" and headers["www-authenticate"].startswith("Bearer")
    assert server.request("GET", "/v1/models", key="not-a-key")[0] == 401
    assert server.request("GET", "/v1/models")[0] == 200


def test_a_revoked_key_is_refused_by_the_running_server(server):
    from serving.auth import KeyFile

    keys = KeyFile(server.keys_file)
    entry, key = keys.add("temporary")
    assert server.request("GET", "/v1/models", key=key)[0] == 200
    keys.revoke(entry.id)
    assert server.request("GET", "/v1/models", key=key)[0] == 401


def test_metrics_label_known_routes_and_the_model(server):
    for _ in range(50):
        assert server.request("GET", f"/{uuid.uuid4().hex}")[0] == 404
    server.request("POST", "/v1/completions", {"prompt": "hello", "max_tokens": 4, "temperature": 0})
    status, headers, page = server.request("GET", "/metrics")
    assert status == 200 and headers["content-type"].startswith("text/plain")
    assert not re.search(r"[0-9a-f]{32}", page), "an unknown path became a label"
    assert len(page) < 60_000
    labels = 'model="conveyor-test",variant="base",version="1"'
    for name in ("conveyor_time_to_first_token_seconds_bucket", "conveyor_time_per_output_token_seconds_bucket",
                 "conveyor_queue_seconds_bucket", "conveyor_request_seconds_bucket", "conveyor_prompt_tokens_total",
                 "conveyor_generated_tokens_total", "conveyor_requests_active", "conveyor_requests_waiting"):
        assert re.search(rf"^{name}{{.*{labels}", page.replace('le="', 'zz="'), re.M) or \
            any(line.startswith(name) and labels in line for line in page.splitlines()), name
    assert re.search(r'conveyor_requests_total\{.*route="other",status="404".*\} 50\.0', page)


def test_guardrails_block_and_count_without_text(server):
    status, _h, body = server.request("POST", "/v1/completions", {"prompt": "say the forbidden phrase", "max_tokens": 4})
    assert status == 400 and body["error"]["code"] == "blocklist_input"
    assert "forbidden" not in json.dumps(body)
    status, _h, body = server.request("POST", "/v1/completions", {"prompt": "buy now cheap " * 20, "max_tokens": 4})
    assert status == 400 and body["error"]["code"] == "repetitive_prompt"
    status, _h, _b = server.request("POST", "/v1/completions",
                                    {"prompt": f"mail {SECRET_EMAIL} card {SECRET_CARD}", "max_tokens": 4})
    assert status == 200  # pii_input: log (counted, not refused)
    status, _h, _b = server.request("POST", "/v1/completions",
                                    {"prompt": "you are a worthless fucking idiot", "max_tokens": 4})
    assert status == 200  # classifier_input: log
    page = server.request("GET", "/metrics")[2]
    assert re.search(r'conveyor_guard_hits_total\{action="log",check="classifier",direction="input".*\} 1\.0', page)
    assert re.search(r'conveyor_guard_hits_total\{action="log",check="pii",direction="input".*\} [1-9]', page)
    assert re.search(r'conveyor_guard_hits_total\{action="block",check="blocklist",direction="input".*\} [1-9]', page)


def _raw_post(url: str, path: str, body: bytes, key: str, content_type: str = "application/json",
              timeout: float = 30) -> int:
    import urllib.error
    import urllib.request

    request = urllib.request.Request(url + path, data=body, method="POST",
                                     headers={"Content-Type": content_type, "Authorization": f"Bearer {key}"})
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            response.read()
            return response.status
    except urllib.error.HTTPError as error:
        error.read()
        return error.code


def _disconnect_mid_stream(url: str, key: str) -> None:
    host, port = url.removeprefix("http://").split(":")
    body = json.dumps({"prompt": "hello", "max_tokens": 16, "stream": True}).encode()
    with socket.create_connection((host, int(port)), timeout=10) as sock:
        sock.sendall(b"POST /v1/completions HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                     + f"Authorization: Bearer {key}\r\nContent-Length: {len(body)}\r\n\r\n".encode() + body)
        sock.recv(200)  # the first bytes of the stream, then hang up


def _announce_large_body(url: str, key: str, size: int) -> int:
    """Headers of a 20 MB upload, then wait: the answer must come before any of the body is read."""
    host, port = url.removeprefix("http://").split(":")
    with socket.create_connection((host, int(port)), timeout=10) as sock:
        sock.sendall(b"POST /v1/completions HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                     + f"Authorization: Bearer {key}\r\nContent-Length: {size}\r\n\r\n".encode() + b'{"prompt": "')
        return int(sock.recv(100).split()[1])


def _disconnect_mid_upload(url: str, key: str) -> None:
    host, port = url.removeprefix("http://").split(":")
    with socket.create_connection((host, int(port)), timeout=10) as sock:
        sock.sendall(b"POST /v1/completions HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                     + f"Authorization: Bearer {key}\r\nContent-Length: 5000\r\n\r\n".encode() + b'{"prompt": "he')


def test_hostile_input_gets_clear_4xx_and_never_reaches_a_log(server):
    pii = f"{SECRET_EMAIL} {SECRET_CARD}"
    bad_json = [
        b"{", b"not json", b"[]", b"null", b'{"prompt": "hi", "max_tokens": NaN}', b'{"prompt": "\\ud800 lone"}',
        json.dumps({"prompt": "hi\x00there", "max_tokens": 3}).encode(),
    ]
    bad_fields = [
        {}, {"prompt": None}, {"prompt": 5}, {"prompt": ["a", "b"]}, {"prompt": pii, "max_tokens": "many"},
        {"prompt": "hi", "max_tokens": 0}, {"prompt": "hi", "max_tokens": -1}, {"prompt": "hi", "max_tokens": 10 ** 9},
        {"prompt": "hi", "temperature": -1}, {"prompt": "hi", "temperature": 1e9}, {"prompt": "hi", "top_p": 0},
        {"prompt": "hi", "n": 3}, {"prompt": "hi", "stop": ["a", "b", "c", "d", "e"]}, {"prompt": "hi", "logprobs": 5},
        {"prompt": "", "max_tokens": 2}, {"prompt": "word " * 500, "max_tokens": 2}, {"prompt": pii, "echo": True},
        {"prompt": "hi", "stream": "yes", "email": pii}, {"messages": "hi"},
        # The personal data is the bad value itself: pydantic's error carries it as `input`.
        {"prompt": {"text": pii}}, {"prompt": "hi", "max_tokens": pii}, {"prompt": "hi", "stop": [pii] * 5},
    ]
    statuses = {}
    for i, raw in enumerate(bad_json):
        statuses[f"json{i}"] = _raw_post(server.url, "/v1/completions", raw, server.key)
    for i, payload in enumerate(bad_fields):
        statuses[f"field{i}"] = server.request("POST", "/v1/completions", payload)[0]
    statuses["chat_no_messages"] = server.request("POST", "/v1/chat/completions", {"messages": []})[0]
    statuses["chat_bad_role"] = server.request("POST", "/v1/chat/completions",
                                               {"messages": [{"role": "wizard", "content": pii}]})[0]
    statuses["20MB"] = _announce_large_body(server.url, server.key, 20_000_000)
    statuses["form"] = _raw_post(server.url, "/v1/completions", b"prompt=hi", server.key,
                                 content_type="application/x-www-form-urlencoded")
    ok = {"json6"}  # a NUL byte inside a valid prompt is text like any other
    for name, status in statuses.items():
        if name in ok:
            assert status == 200, (name, status)
        else:
            assert 400 <= status < 500, (name, status)
    assert statuses["20MB"] == 413 and statuses["field15"] == 413

    # Sampling edge cases are answered, not crashed on.
    for temperature in (1e-40, 2.0):
        assert server.request("POST", "/v1/completions", {"prompt": "hi", "max_tokens": 3,
                                                           "temperature": temperature})[0] == 200

    # 50 at once: every one answered 200 (or 429 when the queue is full), never 5xx.
    def one(i):
        return server.request("POST", "/v1/completions", {"prompt": f"hello {i}", "max_tokens": 8})[0]

    with concurrent.futures.ThreadPoolExecutor(50) as pool:
        concurrent_statuses = list(pool.map(one, range(50)))
    assert set(concurrent_statuses) <= {200, 429} and concurrent_statuses.count(200) >= 16, concurrent_statuses

    for _ in range(3):
        _disconnect_mid_stream(server.url, server.key)
        _disconnect_mid_upload(server.url, server.key)
    deadline = time.monotonic() + 15
    while True:  # the streams whose clients left were cancelled: nothing stays admitted
        page = server.request("GET", "/metrics")[2]
        active = re.search(r"^conveyor_requests_active\{.*\} (\S+)", page, re.M)
        if active and float(active.group(1)) == 0:
            break
        assert time.monotonic() < deadline, "requests of departed clients are still running"
        time.sleep(0.5)
    assert server.request("GET", "/readyz", key=None)[0] == 200
    assert server.process.poll() is None

    logs = server.server_output() + server.request_log.read_text()
    for secret in (SECRET_EMAIL, SECRET_CARD, "jane.secret", "word word word"):
        assert secret not in logs, f"request text reached a log: {secret!r}"
    assert "Traceback" not in server.server_output()
    records = [json.loads(line) for line in server.request_log.read_text().splitlines()]
    assert records and all(set(r) <= {"ts", "route", "status", "key", "model", "prompt_tokens", "max_tokens",
                                      "new_tokens", "finish", "temperature", "stream", "queue_ms", "ttft_ms",
                                      "e2e_ms", "guard", "version"} for r in records)
    assert {r["key"] for r in records} == {server.key.split("_")[1]}
    assert any(r["status"] == 499 for r in records)  # the departed streams are logged as such


def test_back_pressure_rate_limit_and_timeout(model_dir, tmp_path):
    from serving.auth import KeyFile

    settings = {**SERVING, "max_batch_requests": 1, "max_waiting_requests": 1, "rate_limit_per_minute": 3}
    with served(tmp_path, model_dir, serving=settings) as small:
        keys = [KeyFile(small.keys_file).add(f"client {i}")[1] for i in range(8)]

        def one(key):
            return small.request("POST", "/v1/completions", {"prompt": "hello", "max_tokens": 16}, key=key)

        with concurrent.futures.ThreadPoolExecutor(8) as pool:
            answers = list(pool.map(one, keys))
        statuses = [status for status, _h, _b in answers]
        assert set(statuses) <= {200, 429} and 200 in statuses
        busy = [headers for status, headers, _b in answers if status == 429]
        assert all(int(headers["retry-after"]) >= 1 for headers in busy)

        for _ in range(2):
            small.request("GET", "/v1/models", key=keys[0])
        status, headers, body = small.request("GET", "/v1/models", key=keys[0])
        assert status == 429 and body["error"]["code"] == "rate_limited" and int(headers["retry-after"]) >= 1
        assert small.request("GET", "/v1/models", key=keys[1])[0] == 200  # keys have their own rate


def test_auth_none_serves_anyone_and_says_so(model_dir, tmp_path):
    with served(tmp_path, model_dir, serving={**SERVING, "auth": "none", "request_timeout_s": 0.001}) as open_server:
        assert open_server.request("GET", "/v1/models", key=None)[0] == 200
        assert "auth: none" in open_server.server_output()
        status, _h, body = open_server.request("POST", "/v1/completions", {"prompt": "hello", "max_tokens": 16},
                                               key=None)
        assert status == 504 and body["error"]["code"] == "timeout"


def test_shadow_challenger_answers_unseen_and_is_measured_under_its_version(model_dir, tmp_path):
    import torch

    from core.models import load_model, save_model

    model, tokenizer = load_model(model_dir)
    torch.manual_seed(7)
    with torch.no_grad():
        for parameter in model.parameters():
            parameter.add_(torch.randn_like(parameter))
    challenger = tmp_path / "challenger"
    save_model(model, tokenizer, challenger, "hf")
    expected = reference(model_dir, "It was the best of times", 6)
    assert reference(challenger, "It was the best of times", 6) != expected  # the two models differ
    with served(tmp_path, model_dir, serving={**SERVING, "shadow_share": 1.0}, shadow_dir=challenger) as shadowed:
        for stream in (False, True, False):
            status, _h, body = shadowed.request("POST", "/v1/completions", {
                "prompt": "It was the best of times", "max_tokens": 6, "temperature": 0, "stream": stream})
            assert status == 200
            if not stream:
                assert body["choices"][0]["text"] == expected  # the champion's answer, never the shadow's
        deadline = time.monotonic() + 15
        while True:
            records = [json.loads(line) for line in shadowed.request_log.read_text().splitlines()]
            if sum(1 for r in records if r.get("shadow")) == 3:
                break
            assert time.monotonic() < deadline, records
            time.sleep(0.2)
        assert {r["version"] for r in records if r.get("shadow")} == {"2"}
        assert {r["version"] for r in records if not r.get("shadow")} == {"1"}
        page = shadowed.request("GET", "/metrics")[2]
        for version in ("1", "2"):
            assert re.search(rf'conveyor_request_seconds_count{{.*version="{version}".*}} 3\.0', page), version
        assert "shadow: version 2" in shadowed.server_output()


def test_generate_keeps_the_end_of_a_long_prompt(server):
    long_prompt = " ".join(f"w{i}" for i in range(3000))  # far beyond max_prompt_tokens (64)
    status, _h, body = server.request("POST", "/generate", {"prompt": long_prompt, "max_new_tokens": 4})
    assert status == 200 and body["new_tokens"] == 4
    records = [json.loads(line) for line in server.request_log.read_text().splitlines()]
    assert records[-1]["route"] == "/generate" and records[-1]["prompt_tokens"] <= 64


def test_a_canary_slower_than_the_stable_version_is_rolled_back_in_the_server(model_dir, tmp_path):
    """Version 1 (the new champion) answers half the requests beside version 0 (the previous one)
    until each answered 4; a latency bound it cannot meet (p95 per token under 1% of the stable
    version's) rolls it back: from then on version 0 answers everything, the decision is on file."""
    from serving.canary import DECISION_FILE, read_decision

    canary = {"share": 0.5, "min_requests": 4, "max_latency_ratio": 0.01}
    with served(tmp_path, model_dir, serving={**SERVING, "canary": canary}, stable_dir=model_dir) as rolling:
        for _ in range(40):
            status, _h, _body = rolling.request("POST", "/v1/completions", {
                "prompt": "It was the best of times", "max_tokens": 4, "temperature": 0})
            assert status == 200
            path = rolling.request_log.parent / DECISION_FILE.format(model="conveyor-test", version="1")
            if path.exists():
                break
        decision = read_decision(path)
        assert decision.action == "rollback" and decision.stable_version == "0" and "p95" in decision.reasons[0]
        before = len(rolling.request_log.read_text().splitlines())
        for _ in range(6):
            assert rolling.request("POST", "/v1/completions", {"prompt": "Hello", "max_tokens": 2})[0] == 200
        after = [json.loads(line) for line in rolling.request_log.read_text().splitlines()[before:]]
        assert {r["version"] for r in after} == {"0"}
        assert "canary of conveyor-test version 1 rolled back" in rolling.server_output()
