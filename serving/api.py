"""The HTTP API: OpenAI-compatible completions and chat (streamed as server-sent events), models,
Conveyor's `/generate`, the model card and the metrics; plus the gate every request passes.

`Gate` is an ASGI middleware around the whole BentoML app (serving.service adds it): health
probes pass; everything else needs a valid API key (401), keeps to its key's rate (429), and a
body under `max_body_bytes` (413). Routes answer errors in OpenAI's shape
(`{"error": {"message", "type", "code", "param"}}`), and a request that fails validation is told
which field and why, never its own input back: bodies hold personal data, and nothing here logs
or echoes them (pydantic's `input_value` included).
"""

from __future__ import annotations

import asyncio
import json
import logging
import math
import time
import uuid
from dataclasses import dataclass, field
from typing import Annotated, Literal

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, PlainTextResponse, Response, StreamingResponse
from pydantic import BaseModel, ConfigDict, Field, StrictBool, field_validator
from starlette.exceptions import HTTPException as StarletteHTTPException

from serving.engine import Delta, EngineFailed, Overloaded, Timings
from serving.guard import Hits, Refused

logger = logging.getLogger("bentoml.conveyor")

HEALTH_PATHS = ("/livez", "/readyz", "/healthz")
MAX_STOP = 4


# -- errors ---------------------------------------------------------------------------------------
class ApiError(Exception):
    def __init__(self, status: int, message: str, code: str, kind: str = "invalid_request_error",
                 param: str | None = None, headers: dict | None = None):
        super().__init__(message)
        self.status, self.message, self.code, self.kind, self.param = status, message, code, kind, param
        self.headers = headers or {}


def error_body(message: str, code: str, kind: str = "invalid_request_error", param: str | None = None) -> dict:
    return {"error": {"message": message, "type": kind, "code": code, "param": param}}


def error_response(status: int, message: str, code: str, kind: str = "invalid_request_error",
                   param: str | None = None, headers: dict | None = None) -> JSONResponse:
    return JSONResponse(error_body(message, code, kind, param), status_code=status, headers=headers)


# -- request bodies -------------------------------------------------------------------------------
class _Body(BaseModel):
    # OpenAI clients send fields this server does not use (user, seed, penalties...): ignored.
    model_config = ConfigDict(extra="ignore")

    model: str | None = None
    max_tokens: Annotated[int, Field(ge=1)] | None = None
    max_completion_tokens: Annotated[int, Field(ge=1)] | None = None
    temperature: Annotated[float, Field(ge=0.0, le=2.0, allow_inf_nan=False)] = 1.0
    top_p: Annotated[float, Field(gt=0.0, le=1.0, allow_inf_nan=False)] = 1.0
    stream: StrictBool = False
    stop: str | list[str] | None = None
    n: Annotated[int, Field(ge=1, le=1)] = 1  # one choice per request
    logprobs: None | Literal[False] | int = None

    @field_validator("stop")
    @classmethod
    def _stops(cls, value):
        stops = [value] if isinstance(value, str) else (value or [])
        if len(stops) > MAX_STOP or any(not s for s in stops):
            raise ValueError(f"stop: at most {MAX_STOP} non-empty strings")
        return stops

    @field_validator("logprobs")
    @classmethod
    def _no_logprobs(cls, value):
        if value not in (None, False, 0):
            raise ValueError("logprobs are not served")
        return value


class CompletionBody(_Body):
    prompt: str | list[str]
    echo: Literal[False] = False
    suffix: None = None

    @field_validator("prompt")
    @classmethod
    def _one_prompt(cls, value):
        if isinstance(value, list):
            if len(value) != 1:
                raise ValueError("one prompt per request (send a string or a list of one)")
            value = value[0]
        return value


class TextPart(BaseModel):
    model_config = ConfigDict(extra="ignore")
    type: Literal["text"]
    text: str


class Message(BaseModel):
    model_config = ConfigDict(extra="ignore")
    role: Literal["system", "user", "assistant", "developer"]
    content: str | list[TextPart]

    def text(self) -> str:
        return self.content if isinstance(self.content, str) else "".join(part.text for part in self.content)


class ChatBody(_Body):
    messages: Annotated[list[Message], Field(min_length=1)]


class GenerateBody(BaseModel):
    model_config = ConfigDict(extra="forbid")
    prompt: str
    max_new_tokens: Annotated[int, Field(ge=1)] = 32
    temperature: Annotated[float, Field(ge=0.0, le=2.0, allow_inf_nan=False)] = 0.0


# -- the served model's state ---------------------------------------------------------------------
@dataclass
class Shadow:
    """The challenger beside the champion: a share of requests also runs on it, unseen."""

    engine: object
    metrics: object
    version: str
    share: float


@dataclass
class Lane:
    """A model answering requests: the champion's engine, or the stable version's during a canary."""

    engine: object
    metrics: object
    version: str


DECISION_POLL_SECONDS = 2.0


@dataclass
class Canary:
    """A new champion (the server's own model) rolling out beside the stable version (the previous
    champion): until `judge` decides, the new one answers `share` of the requests (serving.canary).

    Each replica of the server judges the requests it answered; the first to decide writes the
    decision file (beside the request log, which replicas share), and the others take it from
    there within DECISION_POLL_SECONDS, so all of them route the same way."""

    stable: Lane
    share: float
    judge: object  # serving.canary.Judge
    decision_path: object  # Path of the decision file
    _checked: float = 0.0

    def action(self) -> str | None:
        """"finish" or "rollback" once decided, here or by another replica; None until then."""
        judge = self.judge
        if judge.decision is None and time.monotonic() - self._checked >= DECISION_POLL_SECONDS:
            from serving.canary import read_decision

            self._checked = time.monotonic()
            try:
                if judge.adopt(read_decision(self.decision_path)):
                    logger.warning("%s (decided by another replica)", judge.decision.line())
            except (OSError, ValueError, TypeError) as exc:  # half-written elsewhere: next time
                logger.debug("canary decision file not read: %s", exc)
        return None if judge.decision is None else judge.decision.action


@dataclass
class Server:
    """Everything a request needs; built once per worker by serving.service."""

    engine: object
    tokenizer: object
    config: object  # ServingConfig
    guard: object
    auth: object | None  # Authenticator, None when auth is "none"
    limiter: object
    metrics: object
    log: object
    model_name: str
    model_tag: str
    version: str
    context_tokens: int
    card: str | None = None
    created: int = field(default_factory=lambda: int(time.time()))
    ready: bool = False
    shadow: Shadow | None = None
    canary: Canary | None = None
    background: set = field(default_factory=set)  # shadow tasks, kept referenced until done

    def own_lane(self) -> Lane:
        return Lane(self.engine, self.metrics, self.version)

    def lane(self) -> Lane:
        """Who answers the next request: the champion, or during a canary the stable version for
        the share that is not the canary's, or everything once the judge decided."""
        import random

        canary = self.canary
        action = None if canary is None else canary.action()
        if canary is None or action == "finish":
            return self.own_lane()
        if action == "rollback" or random.random() >= canary.share:
            return canary.stable
        return self.own_lane()


app = FastAPI(openapi_url=None, docs_url=None, redoc_url=None)
_current: dict[str, Server] = {}


def install(server: Server) -> None:
    _current["server"] = server


def current() -> Server | None:
    return _current.get("server")


def _server(request: Request) -> Server:
    server = current()
    if server is None or not server.ready:
        raise ApiError(503, "the model is still loading", "not_ready", kind="server_error")
    return server


@app.exception_handler(ApiError)
async def _api_error(_request: Request, exc: ApiError) -> JSONResponse:
    return error_response(exc.status, exc.message, exc.code, exc.kind, exc.param, exc.headers)


@app.exception_handler(RequestValidationError)
async def _validation_error(_request: Request, exc: RequestValidationError) -> JSONResponse:
    # Field locations and pydantic's messages only: `input` and `ctx` can hold the body's text.
    problems = []
    for error in exc.errors()[:5]:
        where = ".".join(str(part) for part in error.get("loc", ()) if part != "body") or "body"
        if error.get("type") == "json_invalid":
            problems.append("the body is not valid JSON")
        else:
            problems.append(f"{where}: {error.get('msg', 'invalid')}")
    return error_response(400, "; ".join(problems), "invalid_request")


@app.exception_handler(StarletteHTTPException)
async def _http_error(_request: Request, exc: StarletteHTTPException) -> JSONResponse:
    return error_response(exc.status_code, str(exc.detail), "not_found" if exc.status_code == 404 else "http_error")


# -- generation shared by the routes --------------------------------------------------------------
@dataclass
class Job:
    route: str
    prompt_ids: list[int]
    max_tokens: int
    temperature: float
    top_p: float
    stop: list[str]
    hits: Hits
    timings: Timings = field(default_factory=Timings)
    new_tokens: int = 0
    finish_reason: str | None = None
    lane: Lane | None = None  # set at admission


def _check_text(text: str, what: str) -> None:
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        raise ApiError(400, f"{what} holds invalid Unicode (a lone surrogate)", "invalid_unicode") from None


async def _tokenize(server: Server, text: str) -> list[int]:
    limit = server.config.max_prompt_tokens
    ids = (await asyncio.to_thread(server.tokenizer, text, add_special_tokens=False)).input_ids
    if len(ids) > limit:
        raise ApiError(413, f"the prompt has {len(ids)} tokens; this server takes at most {limit}",
                       "prompt_too_long", param="prompt")
    if not ids:
        raise ApiError(400, "the prompt is empty", "empty_prompt", param="prompt")
    return ids


def _max_tokens(server: Server, body: _Body, default: int) -> int:
    asked = body.max_completion_tokens or body.max_tokens or default
    limit = server.config.max_new_tokens_limit
    if asked > limit:
        raise ApiError(400, f"max_tokens is {asked}; this server generates at most {limit}",
                       "max_tokens_too_large", param="max_tokens")
    return asked


def _check_model(server: Server, body: _Body) -> None:
    if body.model not in (None, "", server.model_name, server.model_tag):
        raise ApiError(404, f"model {body.model[:100]!r} is not served here; GET /v1/models lists it",
                       "model_not_found", param="model")


async def _prepare(server: Server, route: str, prompt: str, body: _Body, default_tokens: int) -> Job:
    # Characters first: neither the guard nor the tokenizer sees a prompt that cannot fit (no
    # tokenizer has more than 16 characters per token on average).
    limit = server.config.max_prompt_tokens
    if len(prompt) > limit * 16:
        raise ApiError(413, f"the prompt is longer than {limit} tokens", "prompt_too_long", param="prompt")
    _check_text(prompt, "the prompt")
    for stop in body.stop or []:
        _check_text(stop, "stop")
    hits = Hits()
    try:
        prompt = server.guard.check_prompt(prompt, hits)
    except Refused as refused:
        server.metrics.guard_hits(hits)
        raise ApiError(400, str(refused), refused.code, param="prompt") from None
    ids, max_tokens = await _tokenize(server, prompt), _max_tokens(server, body, default_tokens)
    if len(ids) + max_tokens > server.context_tokens:
        raise ApiError(400, f"the prompt ({len(ids)} tokens) and max_tokens ({max_tokens}) exceed the model's "
                       f"context of {server.context_tokens} tokens", "context_length_exceeded", param="max_tokens")
    return Job(route, ids, max_tokens, body.temperature, body.top_p, list(body.stop or []), hits)


async def _deltas(server: Server, job: Job):
    """The guarded deltas of one admitted job; raises ApiError for a timeout or an engine failure."""
    output = server.guard.output_filter(job.hits)
    try:
        async with asyncio.timeout(server.config.request_timeout_s):
            async for delta in job.lane.engine.stream(job.prompt_ids, job.max_tokens, job.temperature, job.top_p,
                                                      job.stop, job.timings):
                job.new_tokens = delta.tokens
                try:
                    text = output.feed(delta.text)
                    if delta.finish_reason:
                        text += output.finish()
                except Refused:
                    job.finish_reason = "content_filter"
                    yield Delta("", delta.tokens, "content_filter")
                    return
                job.finish_reason = delta.finish_reason
                if text or delta.finish_reason:
                    yield Delta(text, delta.tokens, delta.finish_reason)
    except TimeoutError:
        raise ApiError(504, f"generation took longer than {server.config.request_timeout_s:g} s",
                       "timeout", kind="server_error") from None
    except EngineFailed as failed:
        raise ApiError(500, str(failed), "engine_error", kind="server_error") from None


def _maybe_shadow(server: Server, request: Request, job: Job) -> None:
    """Send a sampled share of jobs to the challenger too; its answer goes nowhere but the metrics
    and the request log (under its version), so a promotion can cite serving evidence."""
    import random

    shadow = server.shadow
    if shadow is None or random.random() >= shadow.share:
        return
    try:
        shadow.engine.admit()
    except Overloaded:
        shadow.metrics.reject("overloaded")
        return
    twin = Job(job.route, job.prompt_ids, job.max_tokens, job.temperature, job.top_p, job.stop, Hits())
    key_id = getattr(request.state, "key_id", None)

    async def run():
        status, pieces = 200, []
        try:
            async with asyncio.timeout(server.config.request_timeout_s):
                async for delta in shadow.engine.stream(twin.prompt_ids, twin.max_tokens, twin.temperature,
                                                        twin.top_p, twin.stop, twin.timings):
                    twin.new_tokens, twin.finish_reason = delta.tokens, delta.finish_reason
                    pieces.append(delta.text)
            try:
                server.guard.check_completion("".join(pieces), twin.hits)
            except Refused:
                twin.finish_reason = "content_filter"
        except TimeoutError:
            status = 504
        except EngineFailed:
            status = 500
        shadow.metrics.generation(len(twin.prompt_ids), twin.new_tokens, twin.timings)
        shadow.metrics.guard_hits(twin.hits)
        t = twin.timings
        server.log.write(route=twin.route, status=status, key=key_id, model=server.model_name, version=shadow.version,
                         shadow=True, prompt_tokens=len(twin.prompt_ids), new_tokens=twin.new_tokens,
                         finish=twin.finish_reason, ttft_ms=_ms(t.ttft_s),
                         e2e_ms=_ms(None if t.finished is None else t.finished - t.submitted),
                         guard=twin.hits.summary() or None)

    task = asyncio.ensure_future(run())
    server.background.add(task)
    task.add_done_callback(server.background.discard)


def _admit(server: Server, job: Job) -> None:
    lane = job.lane = server.lane()
    try:
        lane.engine.admit()
    except Overloaded as busy:
        lane.metrics.reject("overloaded")
        raise ApiError(429, str(busy), "overloaded", kind="rate_limit_error",
                       headers={"Retry-After": str(busy.retry_after_s)}) from None
    lane.metrics.load(lane.engine.active, lane.engine.running())


def _finish(server: Server, request: Request, job: Job, status: int) -> None:
    lane = job.lane
    lane.metrics.load(lane.engine.active, lane.engine.running())
    lane.metrics.generation(len(job.prompt_ids), job.new_tokens, job.timings)
    lane.metrics.guard_hits(job.hits)
    t = job.timings
    e2e_ms = _ms(None if t.finished is None else t.finished - t.submitted)
    server.log.write(
        route=job.route, status=status, key=getattr(request.state, "key_id", None), model=server.model_name,
        version=lane.version, canary=True if server.canary is not None else None,
        prompt_tokens=len(job.prompt_ids), max_tokens=job.max_tokens, new_tokens=job.new_tokens,
        finish=job.finish_reason, temperature=job.temperature, stream=getattr(request.state, "stream", False),
        queue_ms=_ms(t.queue_s), ttft_ms=_ms(t.ttft_s), e2e_ms=e2e_ms,
        guard=job.hits.summary() or None,
    )
    if server.canary is not None and status != 499:  # a client that went away says nothing of the model
        _judge(server, lane, status, e2e_ms, job)


def _judge(server: Server, lane: Lane, status: int, e2e_ms: float | None, job: Job) -> None:
    """Feed the canary's judge; apply its decision the moment there is one."""
    from serving.canary import write_decision

    canary = server.canary
    guarded = job.finish_reason == "content_filter" or any(
        direction == "output" and action in ("block", "redact") for _check, direction, action in job.hits.counts)
    decision = canary.judge.observe(lane.version, status, e2e_ms, job.new_tokens, guarded)
    if decision is None:
        return
    try:
        write_decision(canary.decision_path, decision)
    except OSError as exc:  # the decision holds in this process; `conveyor canary` needs the file
        logger.error("canary decision not written to %s: %s", canary.decision_path, exc)
    logger.warning("%s; `conveyor canary` applies it to the registry", decision.line())


def _ms(seconds: float | None) -> float | None:
    return None if seconds is None else round(1000 * seconds, 1)


async def _complete(server: Server, request: Request, job: Job) -> str:
    """Run a job to the end (not streamed), cancelling it if the client goes away."""
    _admit(server, job)
    _maybe_shadow(server, request, job)
    status = 500
    pieces: list[str] = []

    async def run():
        async for delta in _deltas(server, job):
            pieces.append(delta.text)

    task = asyncio.ensure_future(run())
    watch = asyncio.ensure_future(_disconnected(request))
    try:
        done, _ = await asyncio.wait({task, watch}, return_when=asyncio.FIRST_COMPLETED)
        if task not in done:  # the client went away: stop generating for nobody
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)
            status = 499
            raise ApiError(499, "client closed the request", "client_closed")
        task.result()
        status = 200
        return "".join(pieces)
    except ApiError as error:
        status = error.status
        raise
    finally:
        watch.cancel()
        if not task.done():
            task.cancel()
        _finish(server, request, job, status)


async def _disconnected(request: Request) -> None:
    while True:
        message = await request.receive()
        if message["type"] == "http.disconnect":
            return


def _stream(server: Server, request: Request, job: Job, chunk) -> StreamingResponse:
    """Server-sent events: one `data: {...}` per delta, then `data: [DONE]`."""
    _admit(server, job)
    _maybe_shadow(server, request, job)
    request.state.stream = True

    async def events():
        status = 200
        try:
            async for delta in _deltas(server, job):
                yield f"data: {json.dumps(chunk(delta))}\n\n"
            yield "data: [DONE]\n\n"
        except ApiError as error:
            status = error.status
            yield f"data: {json.dumps(error_body(error.message, error.code, error.kind))}\n\n"
        except asyncio.CancelledError:  # the client disconnected: engine.stream cancelled the request
            status = 499
            raise
        finally:
            _finish(server, request, job, status)

    return StreamingResponse(events(), media_type="text/event-stream",
                             headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"})


def _usage(job: Job) -> dict:
    return {"prompt_tokens": len(job.prompt_ids), "completion_tokens": job.new_tokens,
            "total_tokens": len(job.prompt_ids) + job.new_tokens}


# -- routes ---------------------------------------------------------------------------------------
@app.post("/v1/completions")
async def completions(body: CompletionBody, request: Request):
    server = _server(request)
    _check_model(server, body)
    job = await _prepare(server, "/v1/completions", body.prompt, body, default_tokens=16)
    ident, created = f"cmpl-{uuid.uuid4().hex}", int(time.time())

    def chunk(delta: Delta) -> dict:
        return {"id": ident, "object": "text_completion", "created": created, "model": server.model_name,
                "choices": [{"index": 0, "text": delta.text, "logprobs": None,
                             "finish_reason": delta.finish_reason}]}

    if body.stream:
        return _stream(server, request, job, chunk)
    text = await _complete(server, request, job)
    return {"id": ident, "object": "text_completion", "created": created, "model": server.model_name,
            "choices": [{"index": 0, "text": text, "logprobs": None, "finish_reason": job.finish_reason}],
            "usage": _usage(job)}


@app.post("/v1/chat/completions")
async def chat_completions(body: ChatBody, request: Request):
    server = _server(request)
    _check_model(server, body)
    if not getattr(server.tokenizer, "chat_template", None):
        raise ApiError(400, "this model has no chat template; use /v1/completions", "no_chat_template")
    messages = [{"role": "system" if m.role == "developer" else m.role, "content": m.text()} for m in body.messages]
    for message in messages:
        _check_text(message["content"], "a message")
    prompt = server.tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
    job = await _prepare(server, "/v1/chat/completions", prompt, body, default_tokens=server.config.max_new_tokens_limit)
    ident, created = f"chatcmpl-{uuid.uuid4().hex}", int(time.time())
    first = [True]

    def chunk(delta: Delta) -> dict:
        content = {"role": "assistant", "content": delta.text} if first[0] else {"content": delta.text}
        first[0] = False
        return {"id": ident, "object": "chat.completion.chunk", "created": created, "model": server.model_name,
                "choices": [{"index": 0, "delta": content, "finish_reason": delta.finish_reason}]}

    if body.stream:
        return _stream(server, request, job, chunk)
    text = await _complete(server, request, job)
    return {"id": ident, "object": "chat.completion", "created": created, "model": server.model_name,
            "choices": [{"index": 0, "message": {"role": "assistant", "content": text},
                         "finish_reason": job.finish_reason}],
            "usage": _usage(job)}


@app.get("/v1/models")
async def models(request: Request):
    server = _server(request)
    return {"object": "list", "data": [{"id": server.model_name, "object": "model", "created": server.created,
                                        "owned_by": "conveyor", "version": server.version, "tag": server.model_tag}]}


@app.post("/generate")
async def generate(body: GenerateBody, request: Request):
    """Conveyor's own API (before the OpenAI routes): max_new_tokens is capped at the limit."""
    server = _server(request)
    if not body.prompt.strip():
        raise ApiError(400, "prompt is empty", "empty_prompt", param="prompt")
    # Capped, not refused (its contract before the OpenAI routes); a long prompt keeps its end.
    new_tokens = min(body.max_new_tokens, server.config.max_new_tokens_limit, server.context_tokens // 2)
    capped = _Body(max_tokens=new_tokens, temperature=body.temperature)
    room = min(server.context_tokens - new_tokens, server.config.max_prompt_tokens)
    prompt = body.prompt[-room * 16:]  # no tokenizer has more than 16 characters a token on average
    ids = (await asyncio.to_thread(server.tokenizer, prompt, add_special_tokens=False)).input_ids
    if len(ids) > room:
        prompt = server.tokenizer.decode(ids[-room:])
    job = await _prepare(server, "/generate", prompt, capped, default_tokens=new_tokens)
    text = await _complete(server, request, job)
    return {"text": text, "model": server.model_tag, "new_tokens": job.new_tokens}


@app.get("/card", response_class=PlainTextResponse)
async def model_card(request: Request) -> PlainTextResponse:
    """The served model's card (Markdown with its YAML metadata block)."""
    server = _server(request)
    if server.card is None:
        return PlainTextResponse("this model has no card (registered before cards existed)\n", status_code=404)
    return PlainTextResponse(server.card, media_type="text/markdown; charset=utf-8")


@app.get("/metrics")
async def metrics(request: Request) -> Response:
    from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

    server = _server(request)
    server.metrics.load(server.engine.active, server.engine.running())  # as of this scrape
    if server.shadow is not None:
        server.shadow.metrics.load(server.shadow.engine.active, server.shadow.engine.running())
    if server.canary is not None:
        stable = server.canary.stable
        stable.metrics.load(stable.engine.active, stable.engine.running())
    return Response(generate_latest(server.metrics.registry), media_type=CONTENT_TYPE_LATEST)


# -- the gate -------------------------------------------------------------------------------------
class Gate:
    """ASGI middleware around the whole service: key, rate, body size, per-route counts."""

    def __init__(self, app):
        self.app = app

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http" or scope["path"] in HEALTH_PATHS:
            return await self.app(scope, receive, send)
        server = current()
        path = scope["path"]
        if server is None:
            return await _send_error(send, 503, "the model is still loading", "not_ready", "server_error")
        status_seen = [0]

        async def counted_send(message):
            if message["type"] == "http.response.start":
                status_seen[0] = message["status"]
            await send(message)

        try:
            headers = {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in scope.get("headers", [])}
            if server.auth is not None:
                key_id = server.auth.identify(headers.get("authorization"))
                if key_id is None:
                    server.metrics.reject("unauthorized")
                    return await _send_error(counted_send, 401, "a valid API key is required: "
                                             "Authorization: Bearer <key> (create one with `conveyor keys add`)",
                                             "invalid_api_key", "authentication_error",
                                             {"WWW-Authenticate": 'Bearer realm="conveyor"'})
                wait = server.limiter.allow(key_id)
                if wait > 0:
                    server.metrics.reject("rate_limited")
                    return await _send_error(counted_send, 429, "rate limit reached for this key", "rate_limited",
                                             "rate_limit_error", {"Retry-After": str(math.ceil(wait))})
                scope.setdefault("state", {})["key_id"] = key_id
            limit = server.config.max_body_bytes
            length = headers.get("content-length")
            if length is not None and (not length.isdigit() or int(length) > limit):
                server.metrics.reject("body_too_large")
                return await _send_error(counted_send, 413, f"the request body is larger than {limit} bytes",
                                         "body_too_large")
            if length is None and scope["method"] in ("POST", "PUT", "PATCH"):
                body = await _read_limited(receive, limit)
                if body is None:
                    server.metrics.reject("body_too_large")
                    return await _send_error(counted_send, 413, f"the request body is larger than {limit} bytes",
                                             "body_too_large")
                receive = _replay(body, receive)
            await self.app(scope, receive, counted_send)
        finally:
            server.metrics.request(path, status_seen[0] or 499)


async def _read_limited(receive, limit: int) -> bytes | None:
    chunks, size = [], 0
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            return b"".join(chunks)
        chunk = message.get("body", b"")
        size += len(chunk)
        if size > limit:
            return None
        chunks.append(chunk)
        if not message.get("more_body", False):
            return b"".join(chunks)


def _replay(body: bytes, receive):
    sent = [False]

    async def replay():
        if not sent[0]:
            sent[0] = True
            return {"type": "http.request", "body": body, "more_body": False}
        return await receive()

    return replay


async def _send_error(send, status: int, message: str, code: str, kind: str = "invalid_request_error",
                      headers: dict | None = None) -> None:
    payload = json.dumps(error_body(message, code, kind)).encode()
    raw_headers = [(b"content-type", b"application/json"), (b"content-length", str(len(payload)).encode())]
    raw_headers += [(k.lower().encode(), v.encode()) for k, v in (headers or {}).items()]
    await send({"type": "http.response.start", "status": status, "headers": raw_headers})
    await send({"type": "http.response.body", "body": payload})
