"""``/v1``: OpenAI-compatible embeddings, search over the served index, and document ingest."""

from __future__ import annotations

import asyncio
import base64
import time
from typing import Any

import numpy as np
from fastapi import APIRouter, Request

from ..contract.schemas import (
    BulkDeleteRequest,
    CommitResponse,
    DeleteResponse,
    EmbeddingsRequest,
    EmbeddingsResponse,
    SearchRequest,
    SearchResponse,
    UpsertRequest,
    UpsertResponse,
)
from ..contract.workers_ai import Code, ContractError, bad_input
from .app import ServerState, body, error_responses, read_json, validate

__all__ = ["router"]

router = APIRouter(prefix="/v1")


def _state(request: Request) -> ServerState:
    return request.app.state.server


# ------------------------------------------------------------------------------------------- embeddings
@router.post("/embeddings", tags=["openai"], summary="OpenAI-compatible embeddings", response_model=EmbeddingsResponse,
             responses=error_responses(400, 401, 413, 503), openapi_extra=body(EmbeddingsRequest))  # fmt: skip
async def embeddings(request: Request) -> Any:
    """OpenAI's ``POST /v1/embeddings``: ``input`` (string or list), ``model``, ``encoding_format`` (``float`` or
    ``base64``: little-endian float32 bytes), ``dimensions`` (only the model's own width). Over-long inputs are
    refused (400 / 5006), as OpenAI does."""
    state = _state(request)
    req = validate(EmbeddingsRequest, await read_json(request))
    model, batcher = state.need_model()
    accepted = {model.name, model.encoder.info.name, model.encoder.info.model_id}
    if req.model not in accepted:
        raise ContractError(Code.NO_SUCH_MODEL, f"No such model {req.model!r}; this server runs {model.name!r}")
    texts = [req.input] if isinstance(req.input, str) else list(req.input)
    if len(texts) > state.config.max_texts:
        raise bad_input(f"'/input' has {len(texts)} items; at most {state.config.max_texts} per request")
    if req.dimensions is not None and req.dimensions != model.dim:
        raise bad_input(f"dimensions={req.dimensions} is not supported: {model.name} returns {model.dim}-dimensional "
                        "vectors and does not shorten them; leave dimensions out")  # fmt: skip
    fitted = model.fit(texts, truncate=False)
    enc = await batcher.encode(fitted.texts, is_query=False, outputs=("dense",))
    vectors = np.ascontiguousarray(enc.dense, dtype="<f4")
    if req.encoding_format == "base64":
        data = [base64.b64encode(v.tobytes()).decode("ascii") for v in vectors]
    else:
        data = vectors.tolist()
    tokens = sum(fitted.tokens)
    state.metrics.tokens.inc(tokens)
    return {
        "object": "list",
        "data": [{"object": "embedding", "index": i, "embedding": e} for i, e in enumerate(data)],
        "model": req.model,
        "usage": {"prompt_tokens": tokens, "total_tokens": tokens},
    }


# ----------------------------------------------------------------------------------------------- search
@router.post("/search", tags=["search"], summary="search the served index", response_model=SearchResponse,
             responses=error_responses(400, 401, 404, 413, 503), openapi_extra=body(SearchRequest))  # fmt: skip
async def search(request: Request) -> Any:
    """A text query through the index's :class:`~hybridsearch.Retriever` (its recorded defaults and the server's
    reranker): ``mode`` (a bge-m3 paper mode), ``k``, ``fusion``, ``rerank`` (reranker on/off), ``candidates`` and
    a metadata ``filter``. Returns the hits with text, metadata, the final score and each view's score and rank,
    whether a rerank stage ran, and timings in milliseconds (``search_ms`` includes the reranker)."""
    state = _state(request)
    req = validate(SearchRequest, await read_json(request))
    store, batcher = state.need_store()
    if req.k > state.config.max_k:
        raise bad_input(f"k={req.k} is over this server's limit of {state.config.max_k}")
    retriever = store.retriever
    t0 = time.perf_counter()
    mode = retriever.resolve_mode(req.mode)
    use_reranker = req.rerank and retriever.reranker is not None
    depth = max(req.k, retriever.rerank_depth) if use_reranker else req.k
    candidates = max(req.candidates or retriever.candidates, depth)
    query = await batcher.encode([req.query], is_query=True, outputs=retriever.query_views(mode))
    t1 = time.perf_counter()
    hits = await asyncio.to_thread(store.search, query, k=depth, mode=mode, filter=req.filter, candidates=candidates,
                                   fusion=req.fusion or retriever.fusion)  # fmt: skip
    if use_reranker:
        hits = await retriever.reranker.arerank([req.query], hits, k=req.k)
    t2 = time.perf_counter()
    results = hits[0]
    reranked = use_reranker or "multivector" in hits.modes
    if use_reranker and hits.reranked is not None and not bool(hits.reranked[0]):
        reranked = False  # the reranker fell back to the first-stage order (its note says why)
    out = [
        {"id": h.doc_id, "score": float(h.score), "text": h.text, "metadata": h.metadata,
         "ranks": {m: int(r) for m, r in h.ranks.items()}, "scores": {m: float(v) for m, v in h.scores.items()}}
        for h in results
    ]  # fmt: skip
    ms = lambda a, b: round((b - a) * 1e3, 3)  # noqa: E731
    return {"hits": out, "mode": mode, "reranked": reranked,
            "reranker": type(retriever.reranker).__name__ if use_reranker else None,
            "timing": {"encode_ms": ms(t0, t1), "search_ms": ms(t1, t2), "total_ms": ms(t0, time.perf_counter())}}  # fmt: skip


# --------------------------------------------------------------------------------------------- documents
@router.post("/documents", tags=["ingest"], summary="add or replace documents", response_model=UpsertResponse,
             responses=error_responses(400, 401, 404, 413, 503), openapi_extra=body(UpsertRequest))  # fmt: skip
async def upsert_documents(request: Request) -> Any:
    """Encode and upsert ``documents`` (``id``, ``text``, optional ``metadata``); a document whose id is present
    is replaced. Searches keep running meanwhile. Changes are committed on the server's commit policy."""
    state = _state(request)
    req = validate(UpsertRequest, await read_json(request))
    store, batcher = state.need_store()
    docs = req.documents
    if len(docs) > state.config.max_documents:
        raise bad_input(f"'/documents' has {len(docs)} items; at most {state.config.max_documents} per request")
    ids = [d.id for d in docs]
    if len(set(ids)) != len(ids):
        dup = next(i for i in ids if ids.count(i) > 1)
        raise bad_input(f"document id {dup!r} appears more than once in the request")
    encoded = await batcher.encode([d.text for d in docs], is_query=False, outputs=store.outputs)
    await asyncio.to_thread(store.upsert, ids, encoded, [d.text for d in docs], [d.metadata for d in docs])
    state.metrics.index_documents.set(len(store))
    return {"upserted": len(docs), "documents": len(store), "uncommitted": store.uncommitted}


async def _delete(state: ServerState, ids: list[str]) -> dict[str, Any]:
    store, _ = state.need_store()
    await asyncio.to_thread(store.delete, ids)
    state.metrics.index_documents.set(len(store))
    return {"deleted": len(set(ids)), "documents": len(store), "uncommitted": store.uncommitted}


@router.delete("/documents/{doc_id:path}", tags=["ingest"], summary="delete one document", response_model=DeleteResponse,
               responses=error_responses(400, 401, 404, 503))  # fmt: skip
async def delete_document(doc_id: str, request: Request) -> Any:
    """Delete one document; 404 / 7405 when the index does not hold it."""
    if not doc_id.strip():
        raise bad_input("the document id is empty")
    return await _delete(_state(request), [doc_id])


@router.post("/documents/delete", tags=["ingest"], summary="delete several documents", response_model=DeleteResponse,
             responses=error_responses(400, 401, 404, 413, 503), openapi_extra=body(BulkDeleteRequest))  # fmt: skip
async def delete_documents(request: Request) -> Any:
    """Delete every id in ``ids``; when any is unknown, 404 / 7405 and nothing is deleted."""
    state = _state(request)
    req = validate(BulkDeleteRequest, await read_json(request))
    if len(req.ids) > state.config.max_documents:
        raise bad_input(f"'/ids' has {len(req.ids)} items; at most {state.config.max_documents} per request")
    return await _delete(state, list(req.ids))


@router.post("/commit", tags=["ingest"], summary="commit pending changes now", response_model=CommitResponse,
             responses=error_responses(401, 404, 503))  # fmt: skip
async def commit(request: Request) -> Any:
    """Write pending changes to the index directory now (they are also committed on the policy and at shutdown)."""
    state = _state(request)
    store, _ = state.need_store()
    saved = await asyncio.to_thread(store.commit)
    if saved:
        state.metrics.commits.inc()
    return {"committed": saved, "generation": store.index.generation, "documents": len(store)}
