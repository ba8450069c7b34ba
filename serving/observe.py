"""What operators see: Prometheus metrics and a JSONL request log, neither holding any text.

Metrics live in a registry of their own, served at `/metrics` by serving.api (BentoML's
middleware labels every path it sees, so 200 random 404 paths grew its page from 50 KB to 834 KB;
its metrics are turned off in serving.service). Routes are labelled by template from a fixed set;
anything else is "other". Every series carries the model name, version and variant.
"""

from __future__ import annotations

import json
import logging
import logging.handlers
import time
from pathlib import Path

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, disable_created_metrics

disable_created_metrics()  # the *_created series double the page and say nothing an operator uses

ROUTES = ("/v1/completions", "/v1/chat/completions", "/v1/models", "/generate", "/card", "/metrics")
LATENCY_BUCKETS = (0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 20, 40, 80, 160)
TOKEN_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5)
MODEL_LABELS = ("model", "version", "variant")


def route_label(path: str) -> str:
    return path if path in ROUTES else "other"


class Metrics:
    def __init__(self, model: str, version: str, variant: str, registry: CollectorRegistry | None = None):
        """A second Metrics on the same registry (the shadow's) shares the metric families."""
        self.labels = {"model": model, "version": version, "variant": variant}
        if registry is not None:
            self.registry = registry
            self.__dict__.update({k: v for k, v in registry._conveyor_families.items()})
            return
        self.registry = CollectorRegistry()
        r, m = self.registry, MODEL_LABELS
        self.requests = Counter("conveyor_requests", "HTTP requests by route and status", (*m, "route", "status"),
                                registry=r)
        self.e2e = Histogram("conveyor_request_seconds", "end-to-end latency of generation requests", m,
                             buckets=LATENCY_BUCKETS, registry=r)
        self.ttft = Histogram("conveyor_time_to_first_token_seconds", "time to first token", m,
                              buckets=LATENCY_BUCKETS, registry=r)
        self.tpot = Histogram("conveyor_time_per_output_token_seconds", "decode time per output token after the first",
                              m, buckets=TOKEN_BUCKETS, registry=r)
        self.queue = Histogram("conveyor_queue_seconds", "time from admission to the start of prefill", m,
                               buckets=LATENCY_BUCKETS, registry=r)
        self.prompt_tokens = Counter("conveyor_prompt_tokens", "prompt tokens of admitted requests", m, registry=r)
        self.generated_tokens = Counter("conveyor_generated_tokens", "tokens generated", m, registry=r)
        self.active = Gauge("conveyor_requests_active", "requests admitted and not finished (running + waiting)",
                            m, registry=r)
        self.running = Gauge("conveyor_requests_running", "requests in the engine's batch", m, registry=r)
        self.waiting = Gauge("conveyor_requests_waiting", "requests admitted, waiting for a batch slot", m,
                             registry=r)
        self.guard = Counter("conveyor_guard_hits", "guardrail findings", (*m, "check", "direction", "action"),
                             registry=r)
        self.rejected = Counter("conveyor_rejected", "requests refused before generation, by reason",
                                (*m, "reason"), registry=r)
        r._conveyor_families = {k: v for k, v in self.__dict__.items() if k not in ("registry", "labels")}

    def request(self, route: str, status: int) -> None:
        self.requests.labels(**self.labels, route=route_label(route), status=str(status)).inc()

    def generation(self, prompt_tokens: int, new_tokens: int, timings) -> None:
        labels = self.labels
        self.prompt_tokens.labels(**labels).inc(prompt_tokens)
        self.generated_tokens.labels(**labels).inc(new_tokens)
        if timings.finished is not None:
            self.e2e.labels(**labels).observe(timings.finished - timings.submitted)
        if timings.ttft_s is not None:
            self.ttft.labels(**labels).observe(timings.ttft_s)
            if new_tokens > 1 and timings.finished is not None:
                self.tpot.labels(**labels).observe((timings.finished - timings.first_token) / (new_tokens - 1))
        if timings.queue_s is not None:
            self.queue.labels(**labels).observe(timings.queue_s)

    def guard_hits(self, hits) -> None:
        for (check, direction, action), count in hits.counts.items():
            self.guard.labels(**self.labels, check=check, direction=direction, action=action).inc(count)

    def reject(self, reason: str) -> None:
        self.rejected.labels(**self.labels, reason=reason).inc()

    def load(self, active: int, running: int) -> None:
        self.active.labels(**self.labels).set(active)
        self.running.labels(**self.labels).set(running)
        self.waiting.labels(**self.labels).set(max(0, active - running))


class RequestLog:
    """One JSON line per request: route, status, key id, lengths, timings, guard outcomes, model
    version. Never a prompt, a completion or a header value. Rotated by size (5 files kept)."""

    def __init__(self, path: Path | None, max_bytes: int):
        self.logger = logging.getLogger(f"conveyor.requests.{id(self)}")
        self.logger.propagate = False
        self.logger.setLevel(logging.INFO)
        self.path = path
        if path is not None:
            path.parent.mkdir(parents=True, exist_ok=True)
            handler = logging.handlers.RotatingFileHandler(path, maxBytes=max_bytes, backupCount=5,
                                                           encoding="utf-8")
            handler.setFormatter(logging.Formatter("%(message)s"))
            self.logger.addHandler(handler)

    def write(self, **fields) -> None:
        if self.path is not None:
            record = {"ts": round(time.time(), 3), **{k: v for k, v in fields.items() if v is not None}}
            self.logger.info(json.dumps(record, separators=(",", ":")))

    def close(self) -> None:
        for handler in list(self.logger.handlers):
            handler.close()
            self.logger.removeHandler(handler)
