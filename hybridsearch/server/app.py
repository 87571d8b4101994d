"""The FastAPI application: state, middleware (auth, body limit, metrics), error envelope, health and metrics.

:func:`create_app` builds the app from a :class:`~.config.ServerConfig`. Encoders may be passed in ready-made
(tests share one loaded model across servers); otherwise they are loaded in the background at startup, while
``/health`` already answers and ``/ready`` says 503 until the model and index are loaded and warmed.

Every error of every route is the Workers AI failure envelope ``{result, success: false, errors: [{code,
message}], messages}`` with the codes of :class:`~hybridsearch.contract.workers_ai.Code`.
"""

from __future__ import annotations

import asyncio
import hmac
import json
import logging
import time
import uuid
from collections.abc import Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.openapi.utils import get_openapi
from fastapi.responses import JSONResponse, Response
from pydantic import BaseModel, ValidationError
from pydantic.json_schema import models_json_schema
from starlette.exceptions import HTTPException as StarletteHTTPException

from .._version import __version__
from ..contract.workers_ai import Code, ContractError, bad_input, failure
from ..encoders.base import Encoder
from ..errors import ConfigError, HybridSearchError, UnknownIdError
from .batcher import MicroBatcher
from .config import ServerConfig
from .jobs import BatchQueue
from .metrics import CONTENT_TYPE_LATEST, Metrics
from .model import EmbeddingModel
from .reranking import build_reranker, warm_up_reranker
from .store import IndexStore

__all__ = ["ServerState", "create_app"]

logger = logging.getLogger("hybridsearch.server")
OPEN_PATHS = frozenset({"/health", "/ready", "/docs", "/openapi.json", "/docs/oauth2-redirect", "/redoc"})


@dataclass
class ServerState:
    """What the routes share. ``model``/``batcher`` serve the embedding routes, ``store``/``store_batcher`` the
    index routes (the same batcher when one encoder does both)."""

    config: ServerConfig
    metrics: Metrics = field(default_factory=Metrics)
    model: EmbeddingModel | None = None
    batcher: MicroBatcher | None = None
    store: IndexStore | None = None
    store_batcher: MicroBatcher | None = None
    queue: BatchQueue | None = None
    ready: bool = False
    load_error: str | None = None
    load_exception: BaseException | None = None
    built_reranker: Any = None  # the reranker made from ``config.reranker`` (closed at shutdown)
    on_load_error: Callable[[], None] | None = None  # ``serve`` stops the server: a process that cannot load exits
    tasks: list[asyncio.Task] = field(default_factory=list)

    def need_model(self) -> tuple[EmbeddingModel, MicroBatcher]:
        self.need_ready()
        if self.model is None or self.batcher is None:
            raise ContractError(Code.NO_SUCH_MODEL, "this server has no embedding model; start it with --encoder "
                                "(e.g. bge-m3) or an index whose encoder yields dense vectors")  # fmt: skip
        return self.model, self.batcher

    def need_store(self) -> tuple[IndexStore, MicroBatcher]:
        self.need_ready()
        if self.store is None or self.store_batcher is None:
            raise ContractError(Code.NO_ROUTE, "this server was started without an index; start it with --index DIR")
        return self.store, self.store_batcher

    def need_ready(self) -> None:
        if not self.ready:
            why = f"failed to load: {self.load_error}" if self.load_error else "still loading the model and index"
            raise ContractError(Code.NOT_READY, f"the server is not ready ({why})", headers={"Retry-After": "1"})


# ------------------------------------------------------------------------------------------ body helpers
def _reject_constant(name: str) -> Any:
    raise ValueError(f"{name} is not valid JSON")


async def read_json(request: Request) -> Any:
    """The request body as JSON; NaN, Infinity, invalid UTF-8 or non-JSON bodies are 400 / 5004."""
    raw = await request.body()
    if not raw.strip():
        raise ContractError(Code.INVALID_DATA, "Invalid data: the request body is empty; send a JSON object")
    try:
        return json.loads(raw, parse_constant=_reject_constant)
    except (ValueError, UnicodeDecodeError) as exc:
        raise ContractError(Code.INVALID_DATA, f"Invalid data: the body is not valid JSON ({exc})") from None


def validate(model: type[BaseModel], body: Any) -> Any:
    """``model`` validated from ``body``; schema failures are 400 / 5006 naming each failing field."""
    try:
        return model.model_validate(body)
    except ValidationError as exc:
        parts = []
        for err in exc.errors()[:5]:
            loc = "/" + "/".join(str(x) for x in err["loc"])
            parts.append(f"'{loc}': {err['msg']}")
        more = f" (and {exc.error_count() - 5} more)" if exc.error_count() > 5 else ""
        raise bad_input("; ".join(parts) + more) from None


def envelope_error(exc: ContractError, path: str = "") -> JSONResponse:
    """The failure envelope; on ``/v1/...`` also OpenAI's ``error`` object, which OpenAI SDKs read messages from."""
    content = failure(exc.code, exc.message)
    if path.startswith("/v1/"):
        kind = "authentication_error" if exc.status == 401 else "invalid_request_error" if exc.status < 500 else "server_error"
        content["error"] = {"message": exc.message, "type": kind, "code": int(exc.code)}
    return JSONResponse(content, status_code=exc.status, headers=exc.headers)


def library_error(exc: HybridSearchError) -> ContractError:
    """Map an error the library raised on a request (bad filter, duplicate id, unknown id, ...) to the envelope."""
    if isinstance(exc, UnknownIdError):
        return ContractError(Code.UNKNOWN_DOCUMENT, str(exc))
    return bad_input(f"{type(exc).__name__}: {exc}")


# ---------------------------------------------------------------------------------------------- middleware
class Gate:
    """Pure ASGI middleware: request id, bearer auth, body-size limit, and per-route metrics."""

    def __init__(self, app: Any, state: ServerState) -> None:
        self.app = app
        self.state = state

    async def __call__(self, scope: dict, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        cfg, metrics = self.state.config, self.state.metrics
        req_id = str(uuid.uuid4())
        status_box = [500]

        async def send_wrapped(message: dict) -> None:
            if message["type"] == "http.response.start":
                status_box[0] = message["status"]
                message.setdefault("headers", [])
                message["headers"] = [*message["headers"], (b"cf-ai-req-id", req_id.encode())]
            await send(message)

        start = time.perf_counter()
        metrics.in_flight.inc()
        try:
            error = self._check_auth(scope, cfg)
            if error is None:
                body, error = await self._read_body(scope, receive, cfg.max_body_bytes)
            if error is not None:
                await envelope_error(error, scope["path"])(scope, receive, send_wrapped)
            else:
                await self.app(scope, _replay(body), send_wrapped)
        finally:
            metrics.in_flight.dec()
            route = scope.get("route")
            label = getattr(route, "path", None) or "unmatched"
            metrics.requests.labels(scope["method"], label, str(status_box[0])).inc()
            metrics.latency.labels(scope["method"], label).observe(time.perf_counter() - start)

    @staticmethod
    def _check_auth(scope: dict, cfg: ServerConfig) -> ContractError | None:
        if cfg.api_token is None or scope["path"] in OPEN_PATHS:
            return None
        headers = dict(scope.get("headers") or [])
        got = headers.get(b"authorization", b"")
        want = f"Bearer {cfg.api_token}".encode()
        if hmac.compare_digest(got, want):  # constant time: no timing signal about the token
            return None
        return ContractError(Code.AUTHENTICATION, "Authentication error: send 'Authorization: Bearer <token>'",
                             headers={"WWW-Authenticate": "Bearer"})  # fmt: skip

    @staticmethod
    async def _read_body(scope: dict, receive: Any, limit: int) -> tuple[bytes, ContractError | None]:
        too_large = ContractError(Code.TOO_LARGE, f"Request is too large: the body limit is {limit:,} bytes")
        headers = dict(scope.get("headers") or [])
        declared = headers.get(b"content-length")
        if declared is not None and declared.isdigit() and int(declared) > limit:
            return b"", too_large
        chunks, size = [], 0
        while True:
            message = await receive()
            if message["type"] == "http.disconnect":
                break
            chunk = message.get("body", b"")
            size += len(chunk)
            if size > limit:
                return b"", too_large
            chunks.append(chunk)
            if not message.get("more_body", False):
                break
        return b"".join(chunks), None


def _replay(body: bytes) -> Any:
    sent = False

    async def receive() -> dict:
        nonlocal sent
        if not sent:
            sent = True
            return {"type": "http.request", "body": body, "more_body": False}
        await asyncio.Event().wait()  # like a client that keeps the connection open
        return {"type": "http.disconnect"}

    return receive


# --------------------------------------------------------------------------------------------- loading
def _load(state: ServerState, encoder: Encoder | None, index_encoder: Encoder | None, reranker: Any = None) -> None:
    """Load encoders and index (blocking; runs in a thread at startup)."""
    from ..encoders import get_encoder
    from ..encoders.stored import load_encoder

    cfg = state.config
    if cfg.index is not None:
        reuses_index_model = cfg.reranker == "bge-m3" and cfg.reranker_model is None
        if reranker is None and not reuses_index_model:
            reranker = state.built_reranker = build_reranker(cfg)  # before the index's model: bad settings fail fast
        if index_encoder is None:
            index_encoder = load_encoder(cfg.index)
        if reranker is None:
            reranker = state.built_reranker = build_reranker(cfg, index_encoder)
        state.store = IndexStore(cfg.index, index_encoder, commit_every=cfg.commit_every, commit_interval=cfg.commit_interval_s,
                                 reranker=reranker, rerank_depth=cfg.rerank_depth)  # fmt: skip
    if encoder is None and cfg.encoder is not None:
        options = dict(cfg.encoder_options)
        if cfg.encoder == "bge-m3":  # accept inputs up to the token limit instead of cutting them at 512
            options.setdefault("query_max_length", cfg.max_input_tokens)
            options.setdefault("passage_max_length", cfg.max_input_tokens)
        encoder = get_encoder(cfg.encoder, **options)
    if encoder is None and index_encoder is not None and "dense" in index_encoder.supported_outputs:
        encoder = index_encoder
    if encoder is not None:
        state.model = EmbeddingModel(encoder, name=cfg.model_name, max_input_tokens=cfg.max_input_tokens,
                                     max_request_tokens=cfg.max_request_tokens)  # fmt: skip


def _batcher(state: ServerState, encoder: Encoder) -> MicroBatcher:
    cfg = state.config
    return MicroBatcher(encoder, max_texts=cfg.batch_max_texts, max_wait=cfg.batch_max_wait_ms / 1000.0,
                        enabled=cfg.micro_batching, on_batch=state.metrics.on_batch)  # fmt: skip


async def _warm_up(state: ServerState) -> None:
    if state.batcher is not None and state.model is not None:
        out = ("dense",) if state.config.score == "dense" else state.model.encoder.supported_outputs
        await state.batcher.encode(["warm up"], is_query=True, outputs=tuple(out))
        state.model.dim = state.model.dim or int((await state.batcher.encode(["warm up"], is_query=False, outputs=("dense",))).dense.shape[1])
    if state.store is not None and state.store_batcher is not None:
        retriever = state.store.retriever
        mode = retriever.resolve_mode()
        q = await state.store_batcher.encode(["warm up"], is_query=True, outputs=retriever.query_views(mode))
        if len(state.store):
            await asyncio.to_thread(state.store.search, q, k=1, mode=mode)
        if retriever.reranker is not None:
            await warm_up_reranker(retriever.reranker, state.store, q, mode)
        state.metrics.index_documents.set(len(state.store))


async def _startup(state: ServerState, encoder: Encoder | None, index_encoder: Encoder | None, reranker: Any) -> None:
    try:
        await asyncio.to_thread(_load, state, encoder, index_encoder, reranker)
        if state.model is not None:
            state.batcher = _batcher(state, state.model.encoder)
        if state.store is not None:
            same = state.model is not None and state.store.encoder is state.model.encoder
            state.store_batcher = state.batcher if same else _batcher(state, state.store.encoder)
        await _warm_up(state)
    except Exception as exc:  # keep serving /health and say why /ready fails (``serve`` stops the process instead)
        if isinstance(exc, HybridSearchError):  # a setting or a file to fix: the message says which
            logger.error("server failed to load: %s: %s", type(exc).__name__, exc)
        else:
            logger.exception("server failed to load")
        state.load_error = f"{type(exc).__name__}: {exc}"
        state.load_exception = exc
        if state.on_load_error is not None:
            state.on_load_error()
        return
    state.ready = True
    logger.info("ready: model=%s index=%s", state.model and state.model.encoder, state.store and state.store.path)


async def _commit_loop(state: ServerState) -> None:
    while True:
        await asyncio.sleep(max(0.05, min(1.0, state.config.commit_interval_s / 4)))
        store = state.store
        if store is not None and store.commit_due():
            if await asyncio.to_thread(store.commit):
                state.metrics.commits.inc()
            state.metrics.uncommitted.set(store.uncommitted)


# -------------------------------------------------------------------------------------------------- app
def create_app(
    config: ServerConfig, *, encoder: Encoder | None = None, index_encoder: Encoder | None = None, reranker: Any = None
) -> FastAPI:
    """The server app. ``encoder`` / ``index_encoder`` replace the ones the config would load; ``reranker`` (a
    :class:`~hybridsearch.rerankers.Reranker`) reranks ``/v1/search`` results unless a request turns it off; it
    replaces ``config.reranker`` (ConfigError when both are given)."""
    if reranker is not None and config.reranker is not None:
        raise ConfigError(f"a reranker object was passed and config.reranker={config.reranker!r} names one; give one of them")
    from .routes_v1 import router as v1_router
    from .routes_workers_ai import router as workers_ai_router
    from .routes_workers_ai import run_one

    state = ServerState(config)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> Any:
        state.queue = BatchQueue(lambda req: run_one(state, req), capacity=config.queue_capacity,
                                 retention=config.queue_retention_s)  # fmt: skip
        state.queue.start()
        state.tasks.append(asyncio.create_task(_startup(state, encoder, index_encoder, reranker), name="startup"))
        state.tasks.append(asyncio.create_task(_commit_loop(state), name="commit"))
        try:
            yield
        finally:
            await _shutdown(state)

    app = FastAPI(
        title="hybridsearch",
        version=__version__,
        description="Workers AI-compatible bge-m3 embeddings, OpenAI-compatible /v1/embeddings, and hybrid "
        "search with ingest over a hybridsearch index. Errors use the Workers AI envelope.",
        lifespan=lifespan,
    )
    app.state.server = state
    app.include_router(workers_ai_router)
    app.include_router(v1_router)
    _operations(app, state)
    _error_handlers(app)
    _openapi(app)
    app.add_middleware(Gate, state=state)
    return app


async def _shutdown(state: ServerState) -> None:
    """In-flight requests are finished by uvicorn before this runs; then finish queued batches and commit."""
    state.ready = False
    for t in state.tasks:
        t.cancel()
    for t in state.tasks:
        try:
            await t
        except (asyncio.CancelledError, Exception):
            pass
    if state.queue is not None:
        await state.queue.drain(state.config.shutdown_timeout_s)
    if state.store is not None:
        try:
            if await asyncio.to_thread(state.store.commit):
                state.metrics.commits.inc()
        except Exception:
            logger.exception("final commit failed")
    for b in {id(x): x for x in (state.batcher, state.store_batcher) if x is not None}.values():
        await asyncio.to_thread(b.close)
    aclose = getattr(state.built_reranker, "aclose", None)
    close = getattr(state.built_reranker, "close", None)
    if aclose is not None:  # also closes the async client the reranker made on this loop
        await aclose()
    elif close is not None:
        close()


def _operations(app: FastAPI, state: ServerState) -> None:
    from ..contract.schemas import ErrorEnvelope

    class Health(BaseModel):
        status: str

    class Ready(BaseModel):
        ready: bool
        model: str | None
        index_documents: int | None
        reranker: dict[str, Any] | None = None

    @app.get("/health", response_model=Health, tags=["operations"], summary="liveness: the process answers")
    async def health() -> Any:
        return {"status": "ok"}

    @app.get("/ready", response_model=Ready, tags=["operations"], responses={503: {"model": ErrorEnvelope}},
             summary="readiness: model and index loaded and warmed")  # fmt: skip
    async def ready() -> Any:
        state.need_ready()
        reranker = state.store.retriever.reranker if state.store else None
        return {"ready": True, "model": state.model.name if state.model else None,
                "index_documents": len(state.store) if state.store else None,
                "reranker": reranker.describe() if reranker is not None else None}  # fmt: skip

    @app.get("/metrics", tags=["operations"], summary="Prometheus metrics", response_class=Response,
             responses={200: {"content": {CONTENT_TYPE_LATEST: {"schema": {"type": "string"}}}},
                        401: {"model": ErrorEnvelope}})  # fmt: skip
    async def metrics() -> Response:
        if state.queue is not None:
            state.metrics.queue_depth.set(state.queue.depth)
        if state.store is not None:
            state.metrics.index_documents.set(len(state.store))
            state.metrics.uncommitted.set(state.store.uncommitted)
        return Response(state.metrics.render(), media_type=CONTENT_TYPE_LATEST)


def _error_handlers(app: FastAPI) -> None:
    @app.exception_handler(ContractError)
    async def contract_error(request: Request, exc: ContractError) -> JSONResponse:
        return envelope_error(exc, request.url.path)

    @app.exception_handler(HybridSearchError)
    async def library(request: Request, exc: HybridSearchError) -> JSONResponse:
        return envelope_error(library_error(exc), request.url.path)

    @app.exception_handler(RequestValidationError)
    async def invalid(request: Request, exc: RequestValidationError) -> JSONResponse:
        detail = "; ".join(f"'/{'/'.join(map(str, e['loc']))}': {e['msg']}" for e in exc.errors()[:5])
        return envelope_error(bad_input(detail), request.url.path)

    @app.exception_handler(StarletteHTTPException)
    async def http_error(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        if exc.status_code == 405:
            err = ContractError(Code.METHOD_NOT_ALLOWED, f"{request.method} not supported for requested URI.")
        elif exc.status_code == 404:
            err = ContractError(Code.NO_ROUTE, f"No route for {request.url.path}")
        else:
            err = ContractError(Code.INTERNAL, str(exc.detail), status=exc.status_code)
        return envelope_error(err, request.url.path)

    @app.exception_handler(Exception)
    async def crash(request: Request, exc: Exception) -> JSONResponse:
        logger.exception("unhandled error on %s %s", request.method, request.url.path)
        return envelope_error(ContractError(Code.INTERNAL, f"internal error: {type(exc).__name__}"), request.url.path)


# ------------------------------------------------------------------------------------------------ OpenAPI
def _openapi(app: FastAPI) -> None:
    """Request bodies are parsed by hand (strict JSON, envelope errors); their schemas are added here."""

    def openapi() -> dict[str, Any]:
        if app.openapi_schema:
            return app.openapi_schema
        schema = get_openapi(title=app.title, version=app.version, description=app.description, routes=app.routes)
        if BODY_MODELS:
            _, defs = models_json_schema([(m, "validation") for m in BODY_MODELS.values()],
                                         ref_template="#/components/schemas/{model}")  # fmt: skip
            schema.setdefault("components", {}).setdefault("schemas", {}).update(defs.get("$defs", {}))
        for path_item in schema.get("paths", {}).values():
            for op in path_item.values():
                names = op.pop("x-body-models", None)
                if names:
                    refs = [{"$ref": f"#/components/schemas/{n}"} for n in names]
                    body_schema = refs[0] if len(refs) == 1 else {"anyOf": refs}
                    op["requestBody"] = {"required": True, "content": {"application/json": {"schema": body_schema}}}
        app.openapi_schema = schema
        return schema

    app.openapi = openapi  # type: ignore[method-assign]


BODY_MODELS: dict[str, type[BaseModel]] = {}


def body(*models: type[BaseModel]) -> dict[str, Any]:
    """``openapi_extra`` naming the models a hand-parsed request body follows (any of them)."""
    for m in models:
        BODY_MODELS[m.__name__] = m
    return {"x-body-models": [m.__name__ for m in models]}


def error_responses(*statuses: int) -> dict[int | str, dict[str, Any]]:
    from ..contract.schemas import ErrorEnvelope

    return {s: {"model": ErrorEnvelope, "description": "error envelope"} for s in statuses}
