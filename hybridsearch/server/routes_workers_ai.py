"""The Workers AI ``@cf/baai/bge-m3`` routes: both URL forms, the three input forms, the queue (§1 to §5)."""

from __future__ import annotations

from typing import Any

import numpy as np
from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse

from ..contract.schemas import BatchInput, PollInput, QueryContextsInput, SuccessEnvelope, TextInput
from ..contract.workers_ai import (
    Code,
    ContractError,
    async_output,
    bad_input,
    classify_input,
    contexts_output,
    embedding_output,
    input_texts,
    query_output,
    success,
)
from .app import ServerState, body, error_responses, read_json
from .model import score_contexts

__all__ = ["router", "run_one"]

router = APIRouter(tags=["workers-ai"])


async def run_one(state: ServerState, req: dict[str, Any]) -> tuple[dict[str, Any], int]:
    """Answer one validated form A or B request: ``(output, prompt_tokens)``; ContractError on a limit."""
    model, batcher = state.need_model()
    cfg = state.config
    truncate = bool(req.get("truncate_inputs", False))
    query, texts = input_texts(req)
    if "text" in req and len(texts) > cfg.max_texts:
        raise bad_input(f"'/text' must NOT have more than {cfg.max_texts} items (has {len(texts)})")
    if "contexts" in req and len(texts) > cfg.max_contexts:
        raise bad_input(f"'/contexts' has {len(texts)} items; this server takes at most {cfg.max_contexts} per request")
    if "contexts" in req and not texts:
        raise bad_input("'/contexts' must NOT have fewer than 1 items")
    if query is None:
        fitted = model.fit(texts, truncate=truncate)
        enc = await batcher.encode(fitted.texts, is_query=False, outputs=("dense",))
        state.metrics.tokens.inc(sum(fitted.tokens))
        out = embedding_output(enc.dense) if "text" in req else contexts_output(enc.dense)
        return out, sum(fitted.tokens)
    names = ["query", *(f"input {i}" for i in range(len(texts)))]
    fitted = model.fit([query, *texts], truncate=truncate, names=names)
    outputs = ("dense",) if cfg.score == "dense" else tuple(model.encoder.supported_outputs)
    q = await batcher.encode(fitted.texts[:1], is_query=True, outputs=outputs)
    c = await batcher.encode(fitted.texts[1:], is_query=False, outputs=outputs)
    scores = score_contexts(q, c, mode=cfg.score, weights=cfg.score_weights)
    if not np.isfinite(scores).all():
        raise ContractError(Code.INTERNAL, "the model produced a non-finite score")
    state.metrics.tokens.inc(sum(fitted.tokens))
    return query_output(scores), sum(fitted.tokens)


async def _run(state: ServerState, request: Request, model: str) -> JSONResponse:
    if model != state.config.model_name:
        raise ContractError(Code.NO_SUCH_MODEL, f"No such model {model} or task; this server runs {state.config.model_name}")
    payload = await read_json(request)
    queued = request.query_params.get("queueRequest", "").lower() == "true"
    form = classify_input(payload)
    queue = state.queue
    assert queue is not None
    if form == "poll":  # with or without ?queueRequest=true (§5.2)
        state.need_ready()
        return JSONResponse(success(queue.poll(payload["request_id"])))
    if form == "C":
        state.need_model()
        if not queued:  # §11.9: answer synchronously with the done body
            return JSONResponse(success(await queue.run_batch(payload["requests"])))
        rid = queue.submit(payload["requests"])
        state.metrics.queue_depth.set(queue.depth)
        return JSONResponse(success(async_output(rid, state.config.model_name)))
    if queued:
        raise bad_input("queueRequest=true needs a body with 'requests' (a batch)")
    out, _ = await run_one(state, payload)
    return JSONResponse(success(out))


_DOC = dict(
    response_model=SuccessEnvelope,
    responses=error_responses(400, 401, 404, 405, 413, 429, 503),
    openapi_extra=body(QueryContextsInput, TextInput, BatchInput, PollInput),
)

_DESCRIPTION = """Run ``@cf/baai/bge-m3``. Body forms: ``{"text": str | [str]}`` (embeddings),
``{"query"?, "contexts": [{"text"}]}`` (scores, or context embeddings without ``query``),
``{"requests": [...]}`` (a batch; queued with ``?queueRequest=true``) and ``{"request_id"}`` (poll a batch)."""


@router.post("/client/v4/accounts/{account_id}/ai/run/{model:path}", summary="Workers AI run (Cloudflare URL)",
             description=_DESCRIPTION, **_DOC)  # fmt: skip
async def run_cloudflare_url(account_id: str, model: str, request: Request) -> Any:
    return await _run(request.app.state.server, request, model)


@router.post("/ai/run/{model:path}", summary="Workers AI run (short URL)", description=_DESCRIPTION, **_DOC)
async def run_short_url(model: str, request: Request) -> Any:
    return await _run(request.app.state.server, request, model)
