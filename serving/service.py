"""The BentoML service: one Conveyor model folder behind serving.api's HTTP API.

BentoML gives the process, the model store, the bento (build, containerize) and the health
probes; the routes are a FastAPI app mounted at `/` (serving.api), the engine is transformers'
continuous batching (serving.engine), and `serving.api.Gate` wraps every route in API-key
checks.

Which BentoML model it serves is fixed when the bento is built: `serving.package.build_bento`
passes the tag as the bento argument `model_tag`, which `bentoml build` records in bento.yaml and
`bentoml serve <bento>` restores, so the served bento never depends on the serving environment.
Run from the source tree (`bentoml serve serving.service:ConveyorLM`), the tag comes from
`--arg model_tag=...` or CONVEYOR_BENTO_MODEL. The serving settings come from the model's metadata
(written by the packaging step from the profile); the environment names the key file
(CONVEYOR_API_KEYS) and the request log (CONVEYOR_REQUEST_LOG).
"""

from __future__ import annotations

import os

# Before torch loads: the engine thread takes the cores for itself (serving/engine.py says why).
os.environ.setdefault("OMP_NUM_THREADS", "1")

import asyncio  # noqa: E402
import logging  # noqa: E402
import threading  # noqa: E402
from pathlib import Path  # noqa: E402

import bentoml  # noqa: E402

from serving import api  # noqa: E402
from serving.config import ServingConfig  # noqa: E402

# A child of the "bentoml" logger, so records go wherever `bentoml serve` sends its own.
logger = logging.getLogger("bentoml.conveyor")

KEYS_ENV = "CONVEYOR_API_KEYS"
REQUEST_LOG_ENV = "CONVEYOR_REQUEST_LOG"
CARD_FILE = "README.md"  # evaluation/card.py writes it into every registered model folder


def model_tag_to_serve() -> str:
    bento_args = bentoml.use_arguments()
    return getattr(bento_args, "model_tag", None) or os.environ.get("CONVEYOR_BENTO_MODEL", "conveyor-lm:latest")


def shadow_tag_to_serve() -> str | None:
    """The challenger packaged beside the champion (serving.shadow_share > 0), if any."""
    bento_args = bentoml.use_arguments()
    return getattr(bento_args, "shadow_tag", None) or os.environ.get("CONVEYOR_SHADOW_MODEL") or None


def stable_tag_to_serve() -> str | None:
    """The previous champion packaged beside a new one for a canary rollout (serving.canary.share > 0)."""
    bento_args = bentoml.use_arguments()
    return getattr(bento_args, "stable_tag", None) or os.environ.get("CONVEYOR_STABLE_MODEL") or None


def serving_config(metadata: dict) -> ServingConfig:
    """The profile's settings stored at packaging; models packaged before only stored the limit."""
    stored = metadata.get("serving") or {}
    if not stored and "max_new_tokens_limit" in metadata:
        stored = {"max_new_tokens_limit": int(metadata["max_new_tokens_limit"])}
    return ServingConfig(**stored)


def place(model, fmt: str, config: ServingConfig):
    """On the GPU when there is one (config.device auto) or it is asked for: float formats in bf16
    (the engine then uses flash attention if installed, CUDA graphs where transformers decides).
    int4 stays on CPU: its packed layout is torchao's CPU one."""
    import torch

    wanted = config.device
    if wanted == "auto":
        wanted = "cuda" if torch.cuda.is_available() else "cpu"
    if wanted == "cpu":
        return model
    if not torch.cuda.is_available():
        raise RuntimeError("serving.device is cuda but torch sees no GPU")
    if fmt == "int4":
        logger.warning("int4 weights use torchao's CPU layout: serving this model on CPU")
        return model
    if fmt in ("hf", "sparse-bitmask"):
        return model.to(device="cuda", dtype=torch.bfloat16)
    return model.to("cuda")


def default_request_log() -> Path:
    from bentoml._internal.configuration.containers import BentoMLContainer

    return Path(BentoMLContainer.bentoml_home.get()) / "logs" / "conveyor-requests.jsonl"


@bentoml.service(
    # serving.api enforces each request's own timeout; this one only bounds a stuck stream.
    traffic={"timeout": 3600},
    # BentoML's HTTP metrics label every path (unbounded); serving.observe serves /metrics instead.
    metrics={"enabled": False},
    labels={"project": "conveyor"},
)
@bentoml.asgi_app(api.app, path="/")
class ConveyorLM:
    model_ref = bentoml.models.BentoModel(model_tag_to_serve())
    shadow_ref = bentoml.models.BentoModel(shadow_tag_to_serve()) if shadow_tag_to_serve() else None
    stable_ref = bentoml.models.BentoModel(stable_tag_to_serve()) if stable_tag_to_serve() else None

    def __init__(self) -> None:
        from core.models import load_model, read_manifest
        from serving.auth import Authenticator, RateLimiter
        from serving.engine import Engine
        from serving.guard import Guard
        from serving.observe import Metrics, RequestLog

        stored = self.model_ref
        metadata = stored.info.metadata
        config = serving_config(metadata)
        model, tokenizer = load_model(stored.path)
        model = place(model, read_manifest(stored.path)["format"], config)
        labels = stored.info.labels
        name = labels.get("registered_model", stored.tag.name)
        version = str(labels.get("version", stored.tag.version))
        card = stored.path_of(CARD_FILE)

        auth = None
        if config.auth == "api_key":
            keys = os.environ.get(KEYS_ENV)
            auth = Authenticator(Path(keys) if keys else None)
            if auth.key_count() == 0:
                logger.warning("no API key in %s: every request gets 401 until `conveyor keys add` creates one",
                               keys or f"${KEYS_ENV} (unset)")
        else:
            logger.warning("auth: none: this server answers anyone who can reach its port")
        log_path = Path(os.environ.get(REQUEST_LOG_ENV) or default_request_log())
        self.server = api.Server(
            engine=Engine(model, tokenizer, config), tokenizer=tokenizer, config=config,
            guard=Guard(config.guard), auth=auth, limiter=RateLimiter(config.rate_limit_per_minute),
            metrics=Metrics(name, version, labels.get("variant", "unknown")),
            log=RequestLog(log_path, config.request_log_max_bytes),
            model_name=name, model_tag=str(stored.tag), version=version,
            context_tokens=model.config.max_position_embeddings,
            card=open(card, encoding="utf-8").read() if os.path.isfile(card) else None,
        )
        self.server.engine.start()
        if self.shadow_ref is not None and config.shadow_share > 0:
            self.server.shadow = self._load_shadow(config)
        if self.stable_ref is not None and config.canary.share > 0:
            self.server.canary = self._load_canary(config, log_path)
        self._warm_up()
        api.install(self.server)
        logger.info("serving %s (format %s, context %d tokens, prompt <= %d tokens, max_tokens <= %d, "
                    "batch <= %d, auth %s, request log %s)", stored.tag, read_manifest(stored.path)["format"],
                    model.config.max_position_embeddings, config.max_prompt_tokens, config.max_new_tokens_limit,
                    config.max_batch_requests, config.auth, log_path)

    def _second_lane(self, stored, config: ServingConfig) -> "api.Lane":
        """Another BentoML model beside the served one (a shadow, or a canary's stable version): its own
        engine, its metrics on the champion's registry, told apart by the version label."""
        from core.models import load_model, read_manifest
        from serving.engine import Engine
        from serving.observe import Metrics

        labels = stored.info.labels
        model, _tokenizer = load_model(stored.path)
        model = place(model, read_manifest(stored.path)["format"], config)
        version = str(labels.get("version", stored.tag.version))
        engine = Engine(model, self.server.tokenizer, config)
        engine.start()
        metrics = Metrics(labels.get("registered_model", stored.tag.name), version, labels.get("variant", "unknown"),
                          registry=self.server.metrics.registry)
        return api.Lane(engine, metrics, version)

    def _load_shadow(self, config: ServingConfig) -> "api.Shadow":
        lane = self._second_lane(self.shadow_ref, config)
        logger.info("shadow: version %s (%s) answers %.0f%% of the requests unseen", lane.version, self.shadow_ref.tag,
                    100 * config.shadow_share)
        return api.Shadow(engine=lane.engine, metrics=lane.metrics, version=lane.version, share=config.shadow_share)

    def _load_canary(self, config: ServingConfig, log_path: Path) -> "api.Canary":
        """The previous champion as the stable lane; a decision already on file (a restarted server)
        holds from the start."""
        from serving.canary import DECISION_FILE, Judge, read_decision

        stable = self._second_lane(self.stable_ref, config)
        version = stable.version
        name, canary_version = self.server.model_name, self.server.version
        path = log_path.parent / DECISION_FILE.format(model=name, version=canary_version)
        canary = api.Canary(stable=stable, share=config.canary.share,
                            judge=Judge(config.canary, name, canary_version, version), decision_path=path)
        if canary.judge.adopt(read_decision(path)):
            logger.warning("%s (decided before this start)", canary.judge.decision.line())
        else:
            logger.info("canary: version %s answers %.0f%% of the requests, version %s the rest, until %d each "
                        "decide it", canary_version, 100 * config.canary.share, version, config.canary.min_requests)
        return canary

    def __is_ready__(self) -> bool:
        """Ready once the model is loaded and a warm-up generation went through the engine."""
        return self.server.ready and self.server.engine.is_running()

    def _warm_up(self) -> None:
        """One short generation before the first request (it pays for the engine's set-up). In a
        thread with its own event loop: __init__ may run inside BentoML's."""
        engine, ids = self.server.engine, self.server.tokenizer("Hello", add_special_tokens=False).input_ids or [0]

        async def generate():
            engine.admit()
            async for _ in engine.stream(ids, 2):
                pass

        failure = []
        thread = threading.Thread(target=lambda: _run(generate(), failure))
        thread.start()
        thread.join()
        if failure:
            raise RuntimeError(f"warm-up generation failed: {failure[0]}")
        self.server.ready = True
        logger.info("warm-up generation done: ready")

    @bentoml.on_shutdown
    def shutdown(self) -> None:
        self.server.engine.stop()
        if self.server.shadow is not None:
            self.server.shadow.engine.stop()
        if self.server.canary is not None:
            self.server.canary.stable.engine.stop()
        self.server.log.close()


def _run(coroutine, failure: list) -> None:
    try:
        asyncio.run(coroutine)
    except Exception as exc:  # reported by the caller
        failure.append(exc)


ConveyorLM.add_asgi_middleware(api.Gate)
