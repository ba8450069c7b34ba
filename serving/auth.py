"""API keys: `Authorization: Bearer <key>` for every route but the health probes.

A key reads `cvk_<id>_<secret>`: the id (8 hex characters) names it in `conveyor keys list`, the
request log and the metrics; the secret (32 random bytes) is never stored, only the SHA-256 of
the whole key. A fast hash is right for random 256-bit secrets (as GitHub's and Stripe's tokens):
there is nothing to brute-force, and checking costs microseconds per request.

The key file is JSON (`{"keys": [{"id", "sha256", "name", "created", "revoked"}]}`), written
atomically with mode 0600; the server re-reads it when it changes, so `conveyor keys revoke`
takes effect on the next request without a restart. Its path comes from CONVEYOR_API_KEYS
(`conveyor serve` sets it to the state root's `serving/api_keys.json`).
"""

from __future__ import annotations

import hashlib
import hmac
import json
import os
import re
import secrets
import threading
import time
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path

KEYS_ENV = "CONVEYOR_API_KEYS"
KEY_PATTERN = re.compile(r"^cvk_([0-9a-f]{8})_[A-Za-z0-9_-]{43}$")


class KeyFileError(Exception):
    """A key file problem the CLI reports in one line."""


@dataclass(frozen=True)
class ApiKey:
    id: str
    sha256: str
    name: str
    created: str
    revoked: str | None = None


def digest(key: str) -> str:
    return hashlib.sha256(key.encode()).hexdigest()


def new_key() -> tuple[str, str]:
    """(key id, key): the key is shown once and never stored."""
    key_id = secrets.token_hex(4)
    return key_id, f"cvk_{key_id}_{secrets.token_urlsafe(32)}"


class KeyFile:
    def __init__(self, path: Path):
        self.path = Path(path)

    def load(self) -> list[ApiKey]:
        if not self.path.exists():
            return []
        try:
            raw = json.loads(self.path.read_text())
            return [ApiKey(**entry) for entry in raw["keys"]]
        except (ValueError, KeyError, TypeError) as exc:
            raise KeyFileError(f"{self.path} is not a Conveyor key file ({type(exc).__name__}); "
                            "move it away and create keys with `conveyor keys add`") from None

    def _write(self, keys: list[ApiKey]) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        tmp = self.path.with_name(f".{self.path.name}.{os.getpid()}.tmp")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as handle:
            json.dump({"keys": [key.__dict__ for key in keys]}, handle, indent=1)
        os.replace(tmp, self.path)

    def add(self, name: str = "") -> tuple[ApiKey, str]:
        key_id, key = new_key()
        entry = ApiKey(id=key_id, sha256=digest(key), name=name,
                       created=datetime.now(timezone.utc).isoformat(timespec="seconds"))
        self._write([*self.load(), entry])
        return entry, key

    def revoke(self, key_id: str) -> ApiKey:
        keys = self.load()
        match = [key for key in keys if key.id == key_id]
        if not match:
            raise KeyFileError(f"no key with id {key_id!r} in {self.path}; `conveyor keys list` shows them")
        now = datetime.now(timezone.utc).isoformat(timespec="seconds")
        keys = [ApiKey(**{**key.__dict__, "revoked": key.revoked or now}) if key.id == key_id else key
                for key in keys]
        self._write(keys)
        return next(key for key in keys if key.id == key_id)

    def active(self) -> list[ApiKey]:
        return [key for key in self.load() if key.revoked is None]


class Authenticator:
    """The server's view of the key file, re-read when its modification time changes."""

    def __init__(self, path: Path | None):
        self.path = Path(path) if path else None
        self._lock = threading.Lock()
        self._stamp: tuple | None = None
        self._by_digest: dict[str, str] = {}

    def _refresh(self) -> None:
        if self.path is None:
            return
        try:
            stat = self.path.stat()
            stamp = (stat.st_mtime_ns, stat.st_size, stat.st_ino)
        except FileNotFoundError:
            stamp = None
        if stamp == self._stamp:
            return
        with self._lock:
            keys = KeyFile(self.path).active() if stamp else []
            self._by_digest = {key.sha256: key.id for key in keys}
            self._stamp = stamp

    def key_count(self) -> int:
        self._refresh()
        return len(self._by_digest)

    def identify(self, authorization: str | None) -> str | None:
        """The key id of a valid, unrevoked `Bearer` key; None otherwise."""
        if not authorization:
            return None
        scheme, _, key = authorization.partition(" ")
        key = key.strip()
        if scheme.lower() != "bearer" or not KEY_PATTERN.match(key):
            return None
        self._refresh()
        candidate = digest(key)
        for stored, key_id in self._by_digest.items():
            if hmac.compare_digest(stored, candidate):
                return key_id
        return None


class RateLimiter:
    """A token bucket per key: `per_minute` requests a minute, bursts up to the same number."""

    def __init__(self, per_minute: int):
        self.rate = per_minute / 60.0
        self.burst = float(per_minute)
        self._buckets: dict[str, tuple[float, float]] = {}

    def allow(self, key_id: str) -> float:
        """0 when the request may go; otherwise the seconds until it could."""
        now = time.monotonic()
        tokens, last = self._buckets.get(key_id, (self.burst, now))
        tokens = min(self.burst, tokens + (now - last) * self.rate)
        if tokens >= 1:
            self._buckets[key_id] = (tokens - 1, now)
            return 0.0
        self._buckets[key_id] = (tokens, now)
        return (1 - tokens) / self.rate
