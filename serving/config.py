"""What the server does, from the profile's `serving:` block.

The packaging step stores the runtime part (`ServingConfig.runtime()`) in the BentoML model's
metadata, so a built Bento serves with the settings of the profile that built it; the
environment names only what belongs to the machine (where the key file and the request log are).
"""

from __future__ import annotations

from typing import Literal

from pydantic import Field, model_validator

from core.config import FrozenConfig

from serving.canary import CanaryConfig

GuardAction = Literal["block", "redact", "log", "off"]


class GuardConfig(FrozenConfig):
    """Checks on the prompt (`input`) and on the completion (`output`). `block` answers 400 with a
    reason code (on output: the completion is withheld), `redact` replaces what was found,
    `log` only counts it, `off` skips the check."""

    pii_input: GuardAction = Field(default="log", description="personal data in the prompt")
    pii_output: GuardAction = Field(default="redact", description="personal data in the completion")
    pii_entities: list[str] = Field(
        default=["EMAIL", "PHONE", "IP_ADDRESS", "CREDIT_CARD", "IBAN", "US_SSN", "URL_CREDENTIALS"],
        description="data.pii entity types the PII checks look for (PERSON/LOCATION need NER, off here)")
    blocklist_input: GuardAction = "block"
    blocklist_output: GuardAction = "redact"
    blocklist: list[str] = Field(default=[], description="extra terms, beside serving/blocklist.txt")
    classifier_input: Literal["block", "log", "off"] = Field(
        default="log", description="offensive-language classifier (alt-profanity-check) on the prompt")
    classifier_output: Literal["block", "log", "off"] = Field(
        default="block", description="... and on the completion (a stream ends with finish_reason content_filter)")
    classifier_threshold: float = Field(default=0.9, gt=0, lt=1, description="probability from which text counts")
    stream_holdback_chars: int = Field(
        default=48, ge=0, le=1000,
        description="characters of a streamed completion kept back while an output check may still match "
                    "them (a card number split across tokens); only when an output check redacts or blocks")
    max_repeated_ngram_share: float = Field(
        default=0.5, gt=0, le=1,
        description="a prompt whose most frequent 3-word sequence covers more than this share of its words "
                    "is refused as repetition (400 repetitive_prompt); 1 turns the check off")

    @model_validator(mode="after")
    def _known_entities(self):
        from data.pii import ENTITIES

        unknown = sorted(set(self.pii_entities) - set(ENTITIES))
        if unknown:
            raise ValueError(f"guard.pii_entities: no detector for {unknown}; known: {list(ENTITIES)}")
        return self


class ServingConfig(FrozenConfig):
    bento_name: str = Field(default="conveyor-lm", pattern=r"^[a-z0-9][a-z0-9_.-]*$")
    host: str = "127.0.0.1"
    port: int = Field(default=3000, ge=1, le=65535)
    max_new_tokens_limit: int = Field(default=256, ge=1, description="largest max_tokens a request may ask")
    max_prompt_tokens: int = Field(default=1024, ge=1, description="longer prompts get 413")
    max_body_bytes: int = Field(default=1_000_000, ge=1024, description="larger request bodies get 413")
    auth: Literal["api_key", "none"] = Field(
        default="api_key", description="api_key: Authorization: Bearer <key> on every route but health probes")
    rate_limit_per_minute: int = Field(default=600, ge=1, description="requests per key per minute (429 beyond)")
    # The engine (transformers' continuous batching).
    max_batch_requests: int = Field(default=16, ge=1, description="requests decoded together in one step")
    max_waiting_requests: int = Field(default=64, ge=0, description="queued beyond the batch; more get 429")
    request_timeout_s: float = Field(default=120, gt=0, description="a request running longer gets 504")
    kv_cache_tokens: int = Field(default=16384, ge=256, description="KV cache size in tokens, all requests")
    prefill_chunk_tokens: int = Field(default=256, ge=16, description="prompt tokens per step (chunked prefill)")
    threads: int | None = Field(default=None, ge=1, description="torch threads of the engine; default all cores")
    device: Literal["auto", "cpu", "cuda"] = Field(
        default="auto", description="auto: the GPU when torch sees one (weights in bf16 for float formats)")
    guard: GuardConfig = GuardConfig()
    shadow_share: float = Field(
        default=0.0, ge=0, le=1,
        description="share of requests also run on the challenger (packaged beside the champion when one "
                    "exists); its answers are never returned, its latency and guard outcomes are recorded "
                    "under its version")
    canary: CanaryConfig = Field(
        default=CanaryConfig(),
        description="rollout of a new champion: it answers canary.share of the requests beside the previous "
                    "champion until serving.canary decides to finish or roll back")
    request_log_max_bytes: int = Field(default=20_000_000, ge=10_000, description="rotate the JSONL log beyond")

    @model_validator(mode="after")
    def _fits(self):
        if self.max_prompt_tokens + self.max_new_tokens_limit > self.kv_cache_tokens:
            raise ValueError(f"serving: max_prompt_tokens + max_new_tokens_limit "
                             f"({self.max_prompt_tokens + self.max_new_tokens_limit}) must fit in kv_cache_tokens "
                             f"({self.kv_cache_tokens}), or one request could never run")
        return self

    def runtime(self) -> dict:
        """The settings the server reads from the model's metadata (not where it listens)."""
        return self.model_dump(exclude={"bento_name", "host", "port"})
