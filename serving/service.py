"""The BentoML service: text generation from one Conveyor model folder, with guardrails.

Which BentoML model it serves is fixed when the bento is built: `serving.package.build_bento`
passes the tag as the bento argument `model_tag`, which `bentoml build` records in bento.yaml and
`bentoml serve <bento>` restores, so the served bento never depends on the serving environment.
Run from the source tree (`bentoml serve serving.service:ConveyorLM`), the tag comes from
`--arg model_tag=...` or CONVEYOR_BENTO_MODEL.
"""

from __future__ import annotations

import logging
import os
import time
from typing import Annotated

import bentoml
import torch
from bentoml.exceptions import InvalidArgument
from fastapi import FastAPI
from fastapi.responses import PlainTextResponse
from pydantic import Field

from core.models import load_model, read_manifest
from serving.config import ServingConfig

# A child of the "bentoml" logger, so records go wherever `bentoml serve` sends its own.
logger = logging.getLogger("bentoml.conveyor")


def model_tag_to_serve() -> str:
    bento_args = bentoml.use_arguments()
    return getattr(bento_args, "model_tag", None) or os.environ.get("CONVEYOR_BENTO_MODEL", "conveyor-lm:latest")


# Plain GET routes beside the BentoML APIs (which are POST): the model card.
routes = FastAPI()
CARD_FILE = "README.md"  # evaluation/card.py writes it into every registered model folder


@bentoml.service(traffic={"timeout": 120}, labels={"project": "conveyor"})
@bentoml.asgi_app(routes, path="/")
class ConveyorLM:
    model_ref = bentoml.models.BentoModel(model_tag_to_serve())

    def __init__(self) -> None:
        stored = self.model_ref
        self.model, self.tokenizer = load_model(stored.path)
        self.model_tag = str(stored.tag)
        self.context_tokens = self.model.config.max_position_embeddings
        # The packaging step may put the serving config's limit in the model's metadata.
        self.max_new_tokens_limit = int(stored.info.metadata.get("max_new_tokens_limit",
                                                                 ServingConfig().max_new_tokens_limit))
        card = stored.path_of(CARD_FILE)
        self.card = open(card, encoding="utf-8").read() if os.path.isfile(card) else None
        logger.info("serving %s (format %s, context %d tokens, max_new_tokens <= %d)", self.model_tag,
                    read_manifest(stored.path)["format"], self.context_tokens, self.max_new_tokens_limit)

    @routes.get("/card", response_class=PlainTextResponse)
    def model_card(self) -> PlainTextResponse:
        """The served model's card (Markdown with its YAML metadata block)."""
        if self.card is None:
            return PlainTextResponse("this model has no card (registered before cards existed)\n", status_code=404)
        return PlainTextResponse(self.card, media_type="text/markdown; charset=utf-8")

    @bentoml.api
    def generate(
        self,
        prompt: str,
        max_new_tokens: Annotated[int, Field(ge=1)] = 32,
        temperature: Annotated[float, Field(ge=0.0, le=5.0)] = 0.0,
    ) -> dict:
        if not prompt.strip():
            # InvalidArgument is answered as HTTP 400 with this message.
            raise InvalidArgument("prompt is empty")
        start = time.perf_counter()
        new_tokens = min(max_new_tokens, self.max_new_tokens_limit, self.context_tokens - 1)
        prompt_ids = self.tokenizer(prompt, return_tensors="pt", add_special_tokens=False).input_ids
        # Keep the end of a long prompt: it is what the continuation follows from.
        truncated = prompt_ids.shape[1] > self.context_tokens - new_tokens
        prompt_ids = prompt_ids[:, -(self.context_tokens - new_tokens):]
        sampling = {"do_sample": True, "temperature": temperature} if temperature > 0 else {"do_sample": False}
        with torch.inference_mode():
            output = self.model.generate(
                prompt_ids,
                attention_mask=torch.ones_like(prompt_ids),
                max_new_tokens=new_tokens,
                pad_token_id=self.tokenizer.pad_token_id,
                **sampling,
            )
        generated = output[0, prompt_ids.shape[1]:]
        # Lengths and timing only: prompts and outputs may hold personal data.
        logger.info("generate prompt_tokens=%d truncated=%s new_tokens=%d latency_ms=%.1f",
                    prompt_ids.shape[1], truncated, len(generated), 1000 * (time.perf_counter() - start))
        return {
            "text": self.tokenizer.decode(generated, skip_special_tokens=True),
            "model": self.model_tag,
            "new_tokens": len(generated),
        }
