"""Continuous batching for the served model, on transformers' own engine.

`Engine` wraps transformers' `ContinuousBatchingManager` (paged KV cache, requests joining and
leaving the batch between decode steps, chunked prefill): it works on every model folder Conveyor
produces (fp32/bf16, torchao int8/int4, sparse, distilled), on CPU and on GPU. What it adds is
what a server needs around it: admission with a bound (`Overloaded` -> 429), per-request
streaming into asyncio, stop strings, cancellation (client gone, timeout), and timings (queue,
time to first token, per output token) for the metrics.

Sampling is a property of the whole manager in transformers (greedy argmax or multinomial for
every row), so greedy requests and sampled ones run on two managers that share the model's
weights; the sampling one starts on the first sampled request and takes per-request temperature
and top_p.

CPU threads: generation runs in the manager's own thread. With the process's OpenMP pool already
created by the main thread (model loading), small matmuls in a second thread ran 2x slower here
(tests/serving measurements in benchmarks/serve_bench.py); the service sets OMP_NUM_THREADS=1
before torch loads and the engine thread takes `threads` for itself.
"""

from __future__ import annotations

import asyncio
import itertools
import logging
import math
import os
import threading
import time
from dataclasses import dataclass, field
from typing import AsyncIterator

logger = logging.getLogger("bentoml.conveyor.engine")

PAGE_SIZE = 64  # tokens per KV page: small pages waste less on short requests
GREEDY_BELOW = 1e-2  # temperatures under this are greedy: 1e-40 would divide logits into inf


class Overloaded(Exception):
    """More requests than the batch and the queue hold: answer 429 with Retry-After."""

    def __init__(self, retry_after_s: int):
        super().__init__(f"server busy: retry after {retry_after_s} s")
        self.retry_after_s = retry_after_s


class EngineFailed(Exception):
    """The engine reported an error for a request (the message names no prompt text)."""


@dataclass
class Timings:
    submitted: float = field(default_factory=time.perf_counter)
    first_token: float | None = None
    finished: float | None = None
    scheduled: float | None = None  # when prefill began (end of queueing)

    @property
    def queue_s(self) -> float | None:
        return None if self.scheduled is None else max(0.0, self.scheduled - self.submitted)

    @property
    def ttft_s(self) -> float | None:
        return None if self.first_token is None else self.first_token - self.submitted


@dataclass
class Delta:
    """A piece of a completion: new text since the last delta; `finish_reason` on the last one
    ("stop": end of sequence or a stop string, "length": max_tokens reached)."""

    text: str
    tokens: int  # generated tokens so far
    finish_reason: str | None = None


def _manager_class():
    from transformers.generation.continuous_batching.continuous_api import ContinuousBatchingManager

    class ThreadedManager(ContinuousBatchingManager):
        """The manager, with torch's thread count set inside its generation thread (OpenMP's
        setting is per thread; see the module docstring)."""

        threads: int | None = None

        def _run_generation_loop(self, use_inference_mode: bool) -> None:
            import torch

            if self.threads:
                torch.set_num_threads(self.threads)
            super()._run_generation_loop(use_inference_mode)

    return ThreadedManager


class Engine:
    def __init__(self, model, tokenizer, config, attention: str = "paged|eager"):
        import torch

        self.model, self.tokenizer, self.config = model.eval(), tokenizer, config
        self.threads = config.threads or len(os.sched_getaffinity(0))
        if model.device.type == "cpu":
            # sdpa's paged path measured slower on CPU (benchmarks/serve_bench.py --attention)
            model.set_attn_implementation(attention)
        generation = model.generation_config
        eos = generation.eos_token_id if generation.eos_token_id is not None else tokenizer.eos_token_id
        self.eos_ids = set(eos if isinstance(eos, list) else [eos]) - {None}
        self._managers: dict[str, object] = {}
        self._lock = threading.Lock()
        self._ids = itertools.count()
        self.active = 0  # admitted and not finished: running plus waiting
        self.torch = torch

    # -- managers ---------------------------------------------------------------------------------
    def _manager(self, sampling: bool):
        kind = "sampling" if sampling else "greedy"
        with self._lock:
            if kind not in self._managers:
                self._managers[kind] = self._start(sampling)
            return self._managers[kind]

    def _start(self, sampling: bool):
        from transformers import GenerationConfig
        from transformers.generation.configuration_utils import ContinuousBatchingConfig

        config = self.config
        generation = GenerationConfig(
            max_new_tokens=config.max_new_tokens_limit, do_sample=sampling,
            eos_token_id=sorted(self.eos_ids) or -1,
            pad_token_id=self.tokenizer.pad_token_id if self.tokenizer.pad_token_id is not None else 0,
            # Not 1.0: transformers only builds the temperature processor for other values, and
            # per-request values need the processor to exist.
            **({"temperature": 0.7, "top_p": 0.95} if sampling else {}),
        )
        batching = ContinuousBatchingConfig(
            page_size=PAGE_SIZE,
            num_blocks=math.ceil(config.kv_cache_tokens / PAGE_SIZE),
            max_batch_tokens=config.prefill_chunk_tokens + config.max_batch_requests,
            max_requests_per_batch=config.max_batch_requests,
            allow_block_sharing=False,  # prefix sharing: not worth it for short prompts, costs on CPU
            per_request_processors=sampling,
            auto_switch_to_flash=self.model.device.type == "cuda",
        )
        manager = _manager_class()(self.model, generation, batching)
        manager.threads = self.threads if self.model.device.type == "cpu" else None
        with self.torch.inference_mode():
            manager.start()
        logger.info("engine: %s manager started (batch <= %d requests, KV cache %d tokens, %d threads)",
                    "sampling" if sampling else "greedy", config.max_batch_requests, config.kv_cache_tokens,
                    self.threads)
        return manager

    def start(self) -> None:
        self._manager(sampling=False)

    def stop(self) -> None:
        with self._lock:
            for manager in self._managers.values():
                manager.stop(block=True, timeout=10)
            self._managers.clear()

    def is_running(self) -> bool:
        return bool(self._managers) and all(m.is_running() for m in self._managers.values())

    def running(self) -> int:
        """Requests in a batch now (prefilling or decoding), from transformers' scheduler; the
        rest of `active` waits (for a batch slot or KV pages)."""
        count = 0
        for manager in list(self._managers.values()):
            processor = getattr(manager, "batch_processor", None)
            scheduler = getattr(processor, "scheduler", None)
            count += len(getattr(scheduler, "active_requests", ()))
        return min(count, self.active)

    @property
    def capacity(self) -> int:
        return self.config.max_batch_requests + self.config.max_waiting_requests

    # -- requests ---------------------------------------------------------------------------------
    def admit(self) -> None:
        """Count a request in, or raise Overloaded. Call `release` when it ends (stream() does)."""
        if self.active >= self.capacity:
            # Roughly how long until a batch slot frees: one request's share of the queue.
            raise Overloaded(retry_after_s=max(1, math.ceil(self.active / max(1, self.config.max_batch_requests))))
        self.active += 1

    def release(self) -> None:
        self.active -= 1

    async def stream(self, prompt_ids: list[int], max_new_tokens: int, temperature: float = 0.0,
                     top_p: float = 1.0, stop: list[str] | None = None, timings: Timings | None = None,
                     ) -> AsyncIterator[Delta]:
        """Generate for one admitted request, yielding text deltas. Leaving the iteration early (client
        gone, timeout: the caller cancels the task) cancels the request in the engine. Releases
        the admission when done."""
        timings = timings or Timings()
        sampling = temperature >= GREEDY_BELOW
        manager = self._manager(sampling)
        request_id = f"r{next(self._ids)}"
        updates: asyncio.Queue = asyncio.Queue()
        manager.register_result_handler(request_id, updates.put_nowait)
        kwargs = {"temperature": float(temperature), "top_p": float(top_p)} if sampling else {}
        engine_done = False
        try:
            added = manager.add_request(prompt_ids, request_id=request_id, max_new_tokens=max_new_tokens,
                                        streaming=True, record_timestamps=False, **kwargs)
            if added is None:
                raise EngineFailed("the engine is not accepting requests (stopped)")
            sent_chars, text, emitted_tokens = 0, "", 0
            while True:
                output = await updates.get()
                engine_done = output.is_finished()
                if output.error is not None:
                    raise EngineFailed("generation failed in the engine")
                if timings.scheduled is None and output.lifespan[0] > 0:
                    timings.scheduled = output.lifespan[0]
                tokens = output.generated_tokens
                if tokens and timings.first_token is None:
                    timings.first_token = time.perf_counter()
                done = engine_done
                hit_eos = bool(tokens) and tokens[-1] in self.eos_ids
                visible = tokens[:-1] if hit_eos else tokens
                text = self.tokenizer.decode(visible, skip_special_tokens=True)
                reason = None
                if stop:
                    cut = min((i for i in (text.find(s) for s in stop) if i >= 0), default=-1)
                    if cut >= 0:
                        text, done, reason = text[:cut], True, "stop"
                if done:
                    reason = reason or ("stop" if hit_eos or len(tokens) < max_new_tokens else "length")
                    timings.finished = time.perf_counter()
                    yield Delta(text[sent_chars:], len(tokens), reason)
                    return
                # Hold back a trailing replacement char: a multi-byte character split across tokens.
                safe = len(text.rstrip("\ufffd"))
                # Hold back what could be the start of a stop string.
                if stop:
                    safe = min(safe, *(len(text) - _partial_suffix(text, s) for s in stop))
                if safe > sent_chars and len(tokens) > emitted_tokens:
                    emitted_tokens = len(tokens)
                    yield Delta(text[sent_chars:safe], len(tokens))
                    sent_chars = safe
        finally:
            if not engine_done:
                # Client gone, timeout or a stop string: free the batch slot and the KV pages now.
                manager.cancel_request(request_id)
                with manager.output_router._lock:  # the handler only removes itself on a finished output
                    manager.output_router.result_handlers.pop(request_id, None)
            if timings.finished is None:
                timings.finished = time.perf_counter()
            self.release()


def _partial_suffix(text: str, stop: str) -> int:
    """Length of the longest end of `text` that is a proper start of `stop`."""
    for length in range(min(len(stop) - 1, len(text)), 0, -1):
        if text.endswith(stop[:length]):
            return length
    return 0
