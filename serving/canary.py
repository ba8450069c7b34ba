"""Canary rollout: a newly promoted champion first answers a share of the traffic beside the
previous champion (the stable version, which answers the rest). The server feeds every finished
request to a `Judge`; once both versions have answered enough requests, the judge compares them
and decides: finish the rollout (the canary answers everything from then on) or roll back (the
stable version does). The server applies the decision at once and writes it to the decision file
beside the request log; `conveyor canary` (and the pipeline's next run) apply it to the registry,
where a rollback moves the champion alias back and the audit history records why.

What counts, per version (requests the server answered, not those it refused before generating):
- errors: responses with a 5xx status (engine failure, timeout); 4xx are the client's;
- latency: milliseconds per generated token of each request (end to end over tokens), so long and
  short completions compare; the judge compares the 95th percentiles;
- guard outcomes: the share of completions the output guard withheld or redacted.
"""

from __future__ import annotations

import json
import threading
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

from pydantic import Field

from core.config import FrozenConfig

DECISION_FILE = "conveyor-canary-{model}-v{version}.json"  # beside the request log, per rollout


class CanaryConfig(FrozenConfig):

    share: float = Field(
        default=0.0, ge=0, lt=1,
        description="share of requests the new champion answers while the previous champion answers the "
                    "rest; 0: no canary, the new champion answers everything at once")
    min_requests: int = Field(default=50, ge=1, description="requests each version answers before the decision")
    max_error_rate_increase: float = Field(
        default=0.02, ge=0, le=1, description="canary's 5xx rate may exceed the stable version's by this much")
    max_latency_ratio: float = Field(
        default=1.5, gt=0, description="canary's p95 ms per generated token over the stable version's")
    max_guard_rate_increase: float = Field(
        default=0.05, ge=0, le=1,
        description="canary's share of completions the output guard withheld or redacted, over stable's")


@dataclass
class VersionStats:
    requests: int = 0
    errors: int = 0
    guarded: int = 0
    ms_per_token: list[float] = field(default_factory=list)

    def add(self, status: int, e2e_ms: float | None, new_tokens: int, guarded: bool) -> None:
        self.requests += 1
        self.errors += status >= 500
        self.guarded += guarded
        if status < 400 and e2e_ms is not None and new_tokens > 0:
            self.ms_per_token.append(e2e_ms / new_tokens)

    def summary(self) -> dict:
        return {"requests": self.requests, "error_rate": round(self.error_rate, 4),
                "guard_rate": round(self.guarded / self.requests, 4) if self.requests else 0.0,
                "p95_ms_per_token": None if self.p95 is None else round(self.p95, 2)}

    @property
    def error_rate(self) -> float:
        return self.errors / self.requests if self.requests else 0.0

    @property
    def p95(self) -> float | None:
        if not self.ms_per_token:
            return None
        ordered = sorted(self.ms_per_token)
        return ordered[min(len(ordered) - 1, int(0.95 * len(ordered)))]


@dataclass(frozen=True)
class Decision:
    action: str  # "finish" or "rollback"
    model: str
    canary_version: str
    stable_version: str
    reasons: list[str]
    canary: dict
    stable: dict
    time: str

    def line(self) -> str:
        verb = "finished: it answers all requests" if self.action == "finish" else \
            f"rolled back: version {self.stable_version} answers all requests"
        return (f"canary of {self.model} version {self.canary_version} {verb} "
                f"({'; '.join(self.reasons)})")


class Judge:
    """Per-version counts of one rollout, and the decision once both versions have enough."""

    def __init__(self, config: CanaryConfig, model: str, canary_version: str, stable_version: str) -> None:
        self.config, self.model = config, model
        self.canary_version, self.stable_version = canary_version, stable_version
        self.stats = {canary_version: VersionStats(), stable_version: VersionStats()}
        self.decision: Decision | None = None
        self._lock = threading.Lock()

    def adopt(self, decision: Decision | None) -> bool:
        """Take a decision made elsewhere (another replica of this server, or before a restart) if
        none was made here; returns whether it was taken."""
        with self._lock:
            if decision is None or self.decision is not None:
                return False
            self.decision = decision
            return True

    def observe(self, version: str, status: int, e2e_ms: float | None, new_tokens: int,
                guarded: bool) -> Decision | None:
        """Count one answered request; the decision, the first time there is one."""
        with self._lock:
            if self.decision is not None or version not in self.stats:
                return None
            self.stats[version].add(status, e2e_ms, new_tokens, guarded)
            if min(s.requests for s in self.stats.values()) < self.config.min_requests:
                return None
            self.decision = self._decide()
            return self.decision

    def _decide(self) -> Decision:
        canary, stable, c = self.stats[self.canary_version], self.stats[self.stable_version], self.config
        failed = []
        if canary.error_rate > stable.error_rate + c.max_error_rate_increase:
            failed.append(f"error rate {canary.error_rate:.1%} vs {stable.error_rate:.1%}")
        if canary.p95 is not None and stable.p95 is not None and canary.p95 > c.max_latency_ratio * stable.p95:
            failed.append(f"p95 {canary.p95:.1f} vs {stable.p95:.1f} ms per token "
                          f"(more than {c.max_latency_ratio:g}x)")
        canary_guard, stable_guard = (s.guarded / s.requests for s in (canary, stable))
        if canary_guard > stable_guard + c.max_guard_rate_increase:
            failed.append(f"guard withheld or redacted {canary_guard:.1%} vs {stable_guard:.1%}")
        reasons = failed or [f"after {canary.requests} requests: error rate {canary.error_rate:.1%} "
                             f"(stable {stable.error_rate:.1%}), p95 {_ms(canary.p95)} (stable {_ms(stable.p95)}) "
                             f"ms per token, guard {canary_guard:.1%} (stable {stable_guard:.1%})"]
        return Decision(action="rollback" if failed else "finish", model=self.model,
                        canary_version=self.canary_version, stable_version=self.stable_version, reasons=reasons,
                        canary=canary.summary(), stable=stable.summary(),
                        time=time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()))


def _ms(value: float | None) -> str:
    return "-" if value is None else f"{value:.1f}"


def write_decision(path: Path, decision: Decision) -> None:
    from core.atomic import atomic_write_text

    atomic_write_text(path, json.dumps(asdict(decision), indent=2))


def read_decision(path: Path) -> Decision | None:
    if not path.is_file():
        return None
    return Decision(**json.loads(path.read_text()))


def apply_decisions(model_name: str, folder: Path) -> tuple[list[str], bool]:
    """Apply the decision files of `model_name`'s rollouts in `folder` (beside the request log) to
    the registry: a rollback moves the champion back to the stable version, a finish is recorded
    (the alias stays); both go to the audit history with the decision as evidence. Each file is
    renamed `*.applied.json` once done. Returns what was done, one line each, and whether the
    champion's Bento needs rebuilding (it served a rollout that is now decided)."""
    from core import registry

    pending = sorted(path for path in Path(folder).glob(DECISION_FILE.format(model=model_name, version="*"))
                     if not path.name.endswith(".applied.json"))
    lines, rebuild = [], False
    for path in pending:
        decision = read_decision(path)
        champion = registry.get_by_alias(model_name, "champion")
        if champion is None or champion.version != decision.canary_version:
            lines.append(f"{decision.line()}: version {decision.canary_version} is no longer the champion; "
                         "nothing to do")
        elif decision.action == "rollback":
            moved = registry.rollback(model_name, decision.line(), evidence={"canary": asdict(decision)})
            lines.append(f"{model_name}@champion: version {moved.previous_version} -> {moved.version} "
                         "(canary rolled back)")
            rebuild = True
        else:
            registry.set_alias(model_name, "champion", champion.version, decision.line(), action="canary-finish",
                               evidence={"canary": asdict(decision)})
            lines.append(f"{model_name}@champion: version {champion.version} keeps it (canary finished)")
            rebuild = True
        path.rename(path.with_name(path.name.removesuffix(".json") + ".applied.json"))
    return lines, rebuild
