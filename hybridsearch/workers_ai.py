"""Client for Cloudflare Workers AI ``@cf/baai/bge-m3`` and any server that speaks the same wire contract.

The contract (request forms, response forms, REST envelope, batch queue, error codes) is the one described in
``workers-ai-bge-m3-api.md``. Two clients share one implementation: :class:`WorkersAIClient` (blocking, on
``httpx.Client``) and :class:`AsyncWorkersAIClient` (``async``, on ``httpx.AsyncClient``). Every operation is
written once as a plan that yields "POST this" / "sleep that long" steps; each client only executes the steps,
so request building, parsing, retries and error mapping cannot drift apart between the two.

Usage::

    from hybridsearch.workers_ai import WorkersAIClient

    with WorkersAIClient() as client:  # reads CLOUDFLARE_ACCOUNT_ID and CLOUDFLARE_API_TOKEN
        vectors = client.embed(["hello world", "hybrid search"])       # float32 (2, 1024)
        scores = client.score("greeting", ["hello world", "tax law"])  # float32 (2,), in context order
        batch = client.run_batch([{"text": ["a", "b"], "external_reference": "doc-1"}], timeout=300)
        batch.by_reference()["doc-1"].embeddings()                      # float32 (2, 1024)

    # A self-hosted compatible server: base_url is everything before the model id.
    client = WorkersAIClient(base_url="http://127.0.0.1:8000/ai/run")

``base_url``
    The URL prefix the model id is appended to: the run URL is ``{base_url}/{model}``. Left out, it is
    ``https://api.cloudflare.com/client/v4/accounts/{account_id}/ai/run``, so the run URL is
    ``https://api.cloudflare.com/client/v4/accounts/{account_id}/ai/run/@cf/baai/bge-m3``. AI Gateway works the
    same way (``https://gateway.ai.cloudflare.com/v1/{account_id}/{gateway_id}/workers-ai``). A literal
    ``{account_id}`` in ``base_url`` is replaced by the account id.

Credentials
    ``account_id`` and ``api_token`` default to ``CLOUDFLARE_ACCOUNT_ID`` and ``CLOUDFLARE_API_TOKEN``. Both are
    required for the default Cloudflare URL. With ``base_url`` the token is optional (sent as
    ``Authorization: Bearer ...`` when known) and the account id is needed only for an ``{account_id}`` placeholder.

Retries
    HTTP 408, 429 and 5xx answers and transport failures (connection refused or dropped, timeouts) are retried up
    to ``max_retries`` times. The wait is ``Retry-After`` when the server sends one (seconds or an HTTP date),
    otherwise ``min(backoff_max, backoff_initial * 2**attempt)`` scaled by a random factor in [0.5, 1]. A
    ``Retry-After`` longer than ``retry_after_max`` is not waited for, and 429 with code 3036 (the daily free
    allocation is used up) is not retried: the error is raised at once. Other 4xx answers are never retried.
    Note that a queue submit retried after a timeout may have been queued twice.
"""

from __future__ import annotations

import asyncio
import email.utils
import itertools
import json
import logging
import math
import os
import random
import time
from collections.abc import Callable, Generator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import timezone
from typing import Any, TypeVar
from urllib.parse import quote

import httpx
import numpy as np

from ._version import __version__
from .encoders.base import check_texts
from .errors import (
    APIConnectionError,
    APIResponseError,
    APIStatusError,
    AuthenticationError,
    BadRequestError,
    ConfigError,
    InputError,
    NotFoundError,
    PayloadTooLargeError,
    PermissionDeniedError,
    QueueTimeoutError,
    RateLimitError,
    RequestTimeoutError,
    ServerError,
    WorkersAIError,
)

__all__ = [
    "DEFAULT_API_BASE",
    "DEFAULT_MODEL",
    "ENV_ACCOUNT_ID",
    "ENV_API_TOKEN",
    "MAX_BATCH_BYTES",
    "MAX_TEXTS_PER_CALL",
    "AsyncWorkersAIClient",
    "BatchResponse",
    "BatchResult",
    "BatchStatus",
    "EmbedResult",
    "WorkersAIClient",
    "parse_retry_after",
]

logger = logging.getLogger(__name__)

DEFAULT_API_BASE = "https://api.cloudflare.com/client/v4"
DEFAULT_MODEL = "@cf/baai/bge-m3"
ENV_ACCOUNT_ID = "CLOUDFLARE_ACCOUNT_ID"
ENV_API_TOKEN = "CLOUDFLARE_API_TOKEN"
MAX_TEXTS_PER_CALL = 100  # schema maxItems of `text`; also used for `contexts`, which has no documented cap
MAX_BATCH_BYTES = 10_000_000  # a queued batch payload must stay under 10 MB
PENDING_STATUSES = ("queued", "running")
_DAILY_ALLOCATION_CODE = 3036

T = TypeVar("T")


# ----------------------------------------------------------------------------------------------- results
@dataclass(frozen=True, eq=False)
class EmbedResult:
    """Vectors as the server sent them (float32, not re-normalised) and the ``pooling`` it reported."""

    vectors: np.ndarray
    pooling: str | None = None


@dataclass(frozen=True)
class BatchStatus:
    """A queued batch that is not done yet: ``status`` is ``"queued"`` or ``"running"``."""

    status: str
    request_id: str


@dataclass(frozen=True, eq=False)
class BatchResponse:
    """The outcome of one request of a batch.

    ``id`` is the request's index in the submitted list, ``result`` its ordinary sync output (unwrapped to a
    single nesting), ``external_reference`` the caller's id echoed back (``None`` when none was sent).
    """

    id: int
    success: bool
    result: Any = field(repr=False)
    external_reference: str | None = None
    errors: tuple[dict[str, Any], ...] = ()

    def _ok(self) -> Any:
        if not self.success:
            detail = "; ".join(str(e.get("message", e)) for e in self.errors) or "no error message"
            raise WorkersAIError(
                f"batch request {self.id} (external_reference={self.external_reference!r}) failed: {detail}"
            )
        return self.result

    def embeddings(self) -> np.ndarray:
        """float32 ``(n, d)``: the vectors of a ``text`` request or of a ``contexts`` request without query."""
        result = self._ok()
        key = "data" if isinstance(result, Mapping) and isinstance(result.get("data"), list) else "response"
        return _parse_vectors(result, None, key).vectors

    def scores(self) -> np.ndarray:
        """float32 ``(n_contexts,)``: the scores of a query + contexts request, mapped by id to context order."""
        result = self._ok()
        items = result.get("response") if isinstance(result, Mapping) else None
        return _parse_scores(result, len(items) if isinstance(items, list) else 0)


@dataclass(frozen=True, eq=False)
class BatchResult:
    """A finished batch: ``responses`` sorted by ``id`` plus the batch's token ``usage`` (``None`` if absent)."""

    request_id: str
    responses: tuple[BatchResponse, ...]
    usage: dict[str, Any] | None = None

    def by_reference(self) -> dict[str, BatchResponse]:
        """Responses keyed by ``external_reference`` (responses without one are left out)."""
        return {r.external_reference: r for r in self.responses if r.external_reference is not None}


# ------------------------------------------------------------------------------------------------ parsing
def _contract(msg: str) -> APIResponseError:
    return APIResponseError(f"the Workers AI response breaks the wire contract: {msg}")


def _parse_vectors(result: Any, n: int | None, key: str) -> EmbedResult:
    """Output form 3 (``key="data"``) or form 2 (``key="response"``) -> float32 ``(n, d)``."""
    if not isinstance(result, Mapping):
        raise _contract(f"expected an object with {key!r}, got {type(result).__name__}")
    rows = result.get(key)
    if not isinstance(rows, list) or any(not isinstance(r, list) for r in rows):
        raise _contract(f"{key!r} must be a list of vectors (lists of numbers), got {_preview(rows)}")
    if n is not None and len(rows) != n:
        raise _contract(f"sent {n} texts but received {len(rows)} vectors")
    try:
        vectors = np.asarray(rows, dtype=np.float32)
    except (TypeError, ValueError):
        raise _contract(f"{key!r} holds vectors of different lengths or non-numbers") from None
    if len(rows) == 0:
        vectors = vectors.reshape(0, 0)
    if vectors.ndim != 2 or (len(rows) and vectors.shape[1] == 0):
        raise _contract(f"{key!r} must be a 2-D array of numbers, got shape {vectors.shape}")
    if not np.isfinite(vectors).all():
        raise _contract(f"{key!r} contains NaN or infinite values")
    shape = result.get("shape")
    if shape is not None and (
        not isinstance(shape, list) or [int(s) for s in shape if isinstance(s, (int, float))] != list(vectors.shape)
    ):
        raise _contract(f"'shape' is {shape} but {key!r} has shape {list(vectors.shape)}")
    pooling = result.get("pooling")
    return EmbedResult(vectors, pooling if isinstance(pooling, str) else None)


def _parse_scores(result: Any, n: int) -> np.ndarray:
    """Output form 1 -> float32 ``(n,)`` in context order; entries are placed by ``id``, never by position."""
    items = result.get("response") if isinstance(result, Mapping) else None
    if not isinstance(items, list) or any(not isinstance(it, Mapping) for it in items):
        raise _contract(f"expected 'response' as a list of {{id, score}} objects, got {_preview(items)}")
    scores = np.full(n, np.nan, dtype=np.float32)
    for it in items:
        i, s = it.get("id"), it.get("score")
        if isinstance(i, bool) or not isinstance(i, int) or not 0 <= i < n:
            raise _contract(f"score id {i!r} is not a context index in [0, {n})")
        if isinstance(s, bool) or not isinstance(s, (int, float)) or not math.isfinite(s):
            raise _contract(f"score {s!r} for id {i} is not a finite number")
        if not np.isnan(scores[i]):
            raise _contract(f"context id {i} is scored twice")
        scores[i] = s
    missing = np.flatnonzero(np.isnan(scores))
    if missing.size:
        raise _contract(f"{missing.size} of {n} contexts have no score (first id {int(missing[0])})")
    return scores


def _unwrap_nested(obj: Any, has_content: Callable[[Mapping], bool]) -> Any:
    """Accept the doubly nested ``{"result": {...}}`` form some batch results use."""
    while isinstance(obj, Mapping) and not has_content(obj) and isinstance(obj.get("result"), Mapping):
        obj = obj["result"]
    return obj


def _has_output(obj: Mapping) -> bool:
    return any(k in obj for k in ("data", "response", "shape"))


def _parse_poll(result: Any, request_id: str) -> BatchStatus | BatchResult:
    result = _unwrap_nested(result, lambda o: "responses" in o or "status" in o)
    if not isinstance(result, Mapping):
        raise _contract(f"expected a batch status object, got {_preview(result)}")
    if "responses" in result:
        items = result["responses"]
        if not isinstance(items, list) or any(not isinstance(it, Mapping) for it in items):
            raise _contract(f"'responses' must be a list of objects, got {_preview(items)}")
        responses = []
        for pos, it in enumerate(items):
            rid, ref = it.get("id", pos), it.get("external_reference")
            if isinstance(rid, bool) or not isinstance(rid, int):
                raise _contract(f"responses[{pos}].id is {rid!r}, not an integer")
            inner = _unwrap_nested(it.get("result"), _has_output)
            errors = it.get("errors") or (inner.get("errors") if isinstance(inner, Mapping) else None) or []
            responses.append(
                BatchResponse(
                    id=rid,
                    success=it.get("success", True) is not False,
                    result=inner,
                    external_reference=None if ref is None else str(ref),
                    errors=tuple(e if isinstance(e, dict) else {"message": str(e)} for e in errors if e is not None),
                )
            )
        responses.sort(key=lambda r: r.id)
        if len({r.id for r in responses}) != len(responses):
            raise _contract("two batch responses share one id")
        usage = result.get("usage")
        return BatchResult(request_id, tuple(responses), dict(usage) if isinstance(usage, Mapping) else None)
    status = result.get("status")
    if status in PENDING_STATUSES:
        rid = result.get("request_id")
        return BatchStatus(str(status), rid if isinstance(rid, str) and rid else request_id)
    raise _contract(f"batch {request_id} has status {status!r} but no 'responses'")


def _preview(obj: Any, limit: int = 120) -> str:
    text = repr(obj)
    return text if len(text) <= limit else text[:limit] + "..."


_STATUS_ERRORS: dict[int, type[APIStatusError]] = {
    400: BadRequestError,
    401: AuthenticationError,
    403: PermissionDeniedError,
    404: NotFoundError,
    408: RequestTimeoutError,
    413: PayloadTooLargeError,
    429: RateLimitError,
}
_HINTS: dict[int, str] = {
    401: f"check the API token (api_token= or {ENV_API_TOKEN})",
    403: "the token needs the Workers AI permission, or the model is private to another account",
    413: "send fewer or shorter texts per request",
    429: "rate limited; wait, lower the request rate or raise max_retries",
}


def _status_error(response: httpx.Response) -> APIStatusError:
    """Map an error answer (Cloudflare envelope or OpenAI-style ``error`` object) to a typed exception."""
    try:
        body = response.json()
    except ValueError:
        body = None
    errors: list[dict] = []
    if isinstance(body, Mapping):
        if isinstance(body.get("errors"), list):
            errors = [e if isinstance(e, dict) else {"message": str(e)} for e in body["errors"]]
        err = body.get("error")
        if not errors and err:
            errors = [dict(err) if isinstance(err, Mapping) else {"message": str(err)}]
    code = next((_as_int(e.get("code")) for e in errors if _as_int(e.get("code")) is not None), None)
    message = "; ".join(str(e.get("message", "")) for e in errors if e.get("message")) or (
        response.text[:300].strip() or response.reason_phrase
    )
    status = response.status_code
    cls = _STATUS_ERRORS.get(status) or (ServerError if status >= 500 else APIStatusError)
    hint = _HINTS.get(status)
    if code == 5006:
        hint = "the input failed the model's schema; over-long inputs can be truncated with truncate_inputs=True"
    text = f"Workers AI answered HTTP {status}" + (f" (code {code})" if code is not None else "") + f": {message}"
    return cls(
        text + (f" [{hint}]" if hint else ""),
        status_code=status,
        code=code,
        errors=errors,
        request_id=response.headers.get("cf-ai-req-id"),
    )


def _as_int(v: Any) -> int | None:
    if isinstance(v, bool):
        return None
    if isinstance(v, int):
        return v
    if isinstance(v, str) and v.strip().isdigit():
        return int(v)
    return None


def _unwrap_envelope(response: httpx.Response) -> Any:
    """The ``result`` of a 2xx envelope, or :class:`APIResponseError`."""
    try:
        body = response.json()
    except ValueError:
        raise _contract(f"HTTP {response.status_code} body is not JSON: {response.text[:200]!r}") from None
    if not isinstance(body, Mapping):
        raise _contract(f"expected the {{result, success, errors, messages}} envelope, got {_preview(body)}")
    if body.get("success") is False or body.get("error"):
        errs = body.get("errors") or [body.get("error")]
        raise _contract(f"HTTP {response.status_code} with success=false: {_preview(errs, 300)}")
    if "result" not in body:
        raise _contract(f"the envelope has no 'result': {_preview(body)}")
    return body["result"]


def parse_retry_after(value: str | None, *, now: float | None = None) -> float | None:
    """Seconds to wait from a ``Retry-After`` header (delta seconds or an HTTP date); ``None`` if absent/invalid."""
    if value is None or not value.strip():
        return None
    value = value.strip()
    try:
        seconds = float(value)
    except ValueError:
        try:
            when = email.utils.parsedate_to_datetime(value)
        except (TypeError, ValueError):
            return None
        if when.tzinfo is None:
            when = when.replace(tzinfo=timezone.utc)
        seconds = when.timestamp() - (time.time() if now is None else now)
    return max(0.0, seconds) if math.isfinite(seconds) else None


# ------------------------------------------------------------------------------------------ input checks
def _check_query(query: Any) -> str:
    if not isinstance(query, str):
        raise InputError(f"query must be a str, got {type(query).__name__}")
    if not query.strip():
        raise InputError("query is empty or whitespace-only; the API needs at least one character")
    return query


def _check_flag(name: str, value: Any) -> bool:
    if not isinstance(value, bool):
        raise InputError(f"{name} must be True or False, got {value!r}")
    return value


def _check_batch(requests: Any) -> list[dict[str, Any]]:
    """Validate a ``requests`` list (form A / form B objects) and return wire-ready copies."""
    if isinstance(requests, Mapping) or not isinstance(requests, Sequence) or isinstance(requests, (str, bytes)):
        raise InputError(f"requests must be a list of request objects, got {type(requests).__name__}")
    if not requests:
        raise InputError("requests is empty; pass at least one request")
    out = []
    for i, req in enumerate(requests):
        if not isinstance(req, Mapping):
            raise InputError(f"requests[{i}] must be a dict like {{'text': [...]}}, got {type(req).__name__}")
        req = dict(req)
        if ("text" in req) == ("contexts" in req):
            raise InputError(f"requests[{i}] needs exactly one of 'text' (embeddings) or 'contexts' (scores)")
        try:
            if "text" in req:
                req["text"] = check_texts(req["text"], max_items=MAX_TEXTS_PER_CALL)
            else:
                ctx = req["contexts"]
                if isinstance(ctx, Sequence) and not isinstance(ctx, str):
                    ctx = [c.get("text") if isinstance(c, Mapping) else c for c in ctx]
                req["contexts"] = [{"text": t} for t in check_texts(ctx)]
                if "query" in req:
                    req["query"] = _check_query(req["query"])
        except InputError as exc:
            raise InputError(f"requests[{i}]: {exc}") from None
        if "truncate_inputs" in req:
            _check_flag(f"requests[{i}].truncate_inputs", req["truncate_inputs"])
        ref = req.get("external_reference")
        if ref is not None and not isinstance(ref, str):
            raise InputError(f"requests[{i}].external_reference must be a str, got {type(ref).__name__}")
        out.append(req)
    size = len(json.dumps({"requests": out}, ensure_ascii=False).encode("utf-8"))
    if size >= MAX_BATCH_BYTES:
        raise InputError(f"the batch payload is {size / 1e6:.1f} MB; the queue takes under 10 MB, so split it")
    return out


def _chunks(items: list[T], size: int) -> list[list[T]]:
    return [items[i : i + size] for i in range(0, len(items), size)]


def _merge(parts: list[EmbedResult]) -> EmbedResult:
    if len({p.vectors.shape[1] for p in parts}) > 1:
        raise _contract(f"vectors of different widths across calls: {sorted({p.vectors.shape[1] for p in parts})}")
    poolings = {p.pooling for p in parts}
    if len(poolings) > 1:
        raise _contract(f"different pooling across calls: {sorted(map(str, poolings))}")
    vectors = parts[0].vectors if len(parts) == 1 else np.concatenate([p.vectors for p in parts])
    return EmbedResult(vectors, parts[0].pooling)


# ------------------------------------------------------------------------------- the shared plan layer
@dataclass(frozen=True)
class _Post:
    json: dict[str, Any]
    params: dict[str, str] | None = None


@dataclass(frozen=True)
class _Sleep:
    seconds: float


_Reply = httpx.Response | httpx.TransportError | None
_Plan = Generator[_Post | _Sleep, _Reply, T]


@dataclass
class _Protocol:
    """Everything about the wire contract and the retry policy, free of I/O."""

    run_url: str
    headers: dict[str, str]
    max_retries: int
    backoff_initial: float
    backoff_max: float
    retry_after_max: float
    rng: random.Random = field(default_factory=random.Random)

    def backoff(self, attempt: int) -> float:
        return min(self.backoff_max, self.backoff_initial * 2.0**attempt) * self.rng.uniform(0.5, 1.0)

    def retry_delay(self, response: httpx.Response, err: APIStatusError, attempt: int) -> float | None:
        status = response.status_code
        if status not in (408, 429) and status < 500:
            return None
        if status == 429 and err.code == _DAILY_ALLOCATION_CODE:
            return None
        retry_after = parse_retry_after(response.headers.get("retry-after"))
        if retry_after is None:
            return self.backoff(attempt)
        return retry_after if retry_after <= self.retry_after_max else None

    def call(self, payload: dict[str, Any], params: dict[str, str] | None = None) -> _Plan[Any]:
        """POST one payload with retries; return the envelope's ``result``."""
        for attempt in itertools.count():
            reply = yield _Post(payload, params)
            if isinstance(reply, httpx.TransportError):
                err: WorkersAIError = APIConnectionError(
                    f"could not reach {self.run_url}: {type(reply).__name__}: {reply or 'no detail'}"
                )
                delay: float | None = self.backoff(attempt)
            else:
                assert isinstance(reply, httpx.Response)
                if reply.is_success:
                    return _unwrap_envelope(reply)
                err = _status_error(reply)
                delay = self.retry_delay(reply, err, attempt)
            if delay is None or attempt >= self.max_retries:
                raise err from (reply if isinstance(reply, Exception) else None)
            logger.info("Workers AI attempt %d failed (%s); retrying in %.2f s", attempt + 1, err, delay)
            yield _Sleep(delay)
        raise AssertionError("unreachable")

    def embed(self, texts: Any, truncate_inputs: bool) -> _Plan[EmbedResult]:
        texts = check_texts(texts)
        flag = _check_flag("truncate_inputs", truncate_inputs)
        parts = []
        for chunk in _chunks(texts, MAX_TEXTS_PER_CALL):
            result = yield from self.call({"text": chunk, "truncate_inputs": flag})
            parts.append(_parse_vectors(result, len(chunk), "data"))
        return _merge(parts)

    def embed_contexts(self, contexts: Any, truncate_inputs: bool) -> _Plan[EmbedResult]:
        contexts = check_texts(contexts)
        flag = _check_flag("truncate_inputs", truncate_inputs)
        parts = []
        for chunk in _chunks(contexts, MAX_TEXTS_PER_CALL):
            payload = {"contexts": [{"text": t} for t in chunk], "truncate_inputs": flag}
            result = yield from self.call(payload)
            parts.append(_parse_vectors(result, len(chunk), "response"))
        return _merge(parts)

    def score(self, query: Any, contexts: Any, truncate_inputs: bool) -> _Plan[np.ndarray]:
        query = _check_query(query)
        contexts = check_texts(contexts)
        flag = _check_flag("truncate_inputs", truncate_inputs)
        out = []
        for chunk in _chunks(contexts, MAX_TEXTS_PER_CALL):
            payload = {"query": query, "contexts": [{"text": t} for t in chunk], "truncate_inputs": flag}
            result = yield from self.call(payload)
            out.append(_parse_scores(result, len(chunk)))
        return np.concatenate(out)

    def submit(self, requests: Any, *, checked: bool = False) -> _Plan[str]:
        payload = {"requests": requests if checked else _check_batch(requests)}
        result = yield from self.call(payload, {"queueRequest": "true"})
        rid = result.get("request_id") if isinstance(result, Mapping) else None
        if not isinstance(rid, str) or not rid:
            raise _contract(f"the queue submit answer has no request_id: {_preview(result)}")
        return rid

    def poll(self, request_id: Any) -> _Plan[BatchStatus | BatchResult]:
        if not isinstance(request_id, str) or not request_id.strip():
            raise InputError(f"request_id must be a non-empty str, got {request_id!r}")
        result = yield from self.call({"request_id": request_id}, {"queueRequest": "true"})
        return _parse_poll(result, request_id)

    def wait(
        self, request_id: Any, poll_interval: float, backoff: float, max_poll_interval: float, timeout: float | None
    ) -> _Plan[BatchResult]:
        if not poll_interval > 0 or not backoff >= 1 or not max_poll_interval >= poll_interval:
            raise ConfigError("need poll_interval > 0, backoff >= 1 and max_poll_interval >= poll_interval")
        if timeout is not None and not timeout > 0:
            raise ConfigError(f"timeout must be positive seconds or None, got {timeout!r}")
        deadline = None if timeout is None else time.monotonic() + timeout
        interval = poll_interval
        while True:
            state = yield from self.poll(request_id)
            if isinstance(state, BatchResult):
                return state
            wait = interval
            if deadline is not None:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    raise QueueTimeoutError(
                        f"batch {request_id} is still {state.status} after {timeout:g} s; call wait() again "
                        "later or pass a longer timeout",
                        request_id=request_id,
                    )
                wait = min(wait, remaining)
            yield _Sleep(wait)
            interval = min(interval * backoff, max_poll_interval)

    def run_batch(self, requests: Any, wait_args: tuple) -> _Plan[BatchResult]:
        checked = _check_batch(requests)
        rid = yield from self.submit(checked, checked=True)
        result = yield from self.wait(rid, *wait_args)
        if len(result.responses) != len(checked):
            raise _contract(f"submitted {len(checked)} requests but batch {rid} returned {len(result.responses)}")
        return result


# ------------------------------------------------------------------------------------------------ clients
class _ClientBase:
    def __init__(
        self,
        *,
        account_id: str | None,
        api_token: str | None,
        base_url: str | None,
        model: str,
        timeout: float,
        max_retries: int,
        backoff_initial: float,
        backoff_max: float,
        retry_after_max: float,
    ) -> None:
        account_id = account_id or os.environ.get(ENV_ACCOUNT_ID) or None
        api_token = api_token or os.environ.get(ENV_API_TOKEN) or None
        if not isinstance(model, str) or not model or any(c.isspace() or c in "?#" for c in model):
            raise ConfigError(f"model must be a model id like {DEFAULT_MODEL!r}, got {model!r}")
        if base_url is None:
            missing = [env for env, v in ((ENV_ACCOUNT_ID, account_id), (ENV_API_TOKEN, api_token)) if not v]
            if missing:
                raise ConfigError(
                    f"Workers AI needs an account id and an API token, missing: {', '.join(missing)}. Pass "
                    f"account_id= and api_token= or set {ENV_ACCOUNT_ID} and {ENV_API_TOKEN}; for a self-hosted "
                    "compatible server pass base_url= instead"
                )
            base = f"{DEFAULT_API_BASE}/accounts/{quote(str(account_id), safe='')}/ai/run"
        else:
            if not isinstance(base_url, str) or not base_url.startswith(("http://", "https://")):
                raise ConfigError(f"base_url must be an http(s) URL, got {base_url!r}")
            base = base_url
            if "{account_id}" in base:
                if not account_id:
                    raise ConfigError(f"base_url contains {{account_id}}: pass account_id= or set {ENV_ACCOUNT_ID}")
                base = base.replace("{account_id}", quote(str(account_id), safe=""))
        if not (isinstance(timeout, (int, float)) and timeout > 0):
            raise ConfigError(f"timeout must be positive seconds, got {timeout!r}")
        if not (isinstance(max_retries, int) and max_retries >= 0):
            raise ConfigError(f"max_retries must be an int >= 0, got {max_retries!r}")
        if not (backoff_initial >= 0 and backoff_max >= backoff_initial and retry_after_max >= 0):
            raise ConfigError("need 0 <= backoff_initial <= backoff_max and retry_after_max >= 0")
        headers = {"User-Agent": f"hybridsearch/{__version__}", "Accept": "application/json"}
        if api_token:
            headers["Authorization"] = f"Bearer {api_token}"
        self._timeout = httpx.Timeout(float(timeout))
        self._proto = _Protocol(
            run_url=f"{base.rstrip('/')}/{model}",
            headers=headers,
            max_retries=max_retries,
            backoff_initial=float(backoff_initial),
            backoff_max=float(backoff_max),
            retry_after_max=float(retry_after_max),
        )
        self.model = model

    @property
    def run_url(self) -> str:
        """The URL every call is POSTed to: ``{base_url}/{model}``."""
        return self._proto.run_url

    def __repr__(self) -> str:
        return f"{type(self).__name__}(run_url={self.run_url!r})"


class WorkersAIClient(_ClientBase):
    """Blocking client for ``@cf/baai/bge-m3`` on Workers AI or a compatible server.

    >>> with WorkersAIClient(base_url="http://127.0.0.1:8000/ai/run") as client:  # doctest: +SKIP
    ...     client.embed(["hello", "world"]).shape
    (2, 1024)

    ``http_client`` lets the caller supply (and own) a configured ``httpx.Client``; otherwise the client
    creates one and closes it in :meth:`close`.
    """

    def __init__(
        self,
        *,
        account_id: str | None = None,
        api_token: str | None = None,
        base_url: str | None = None,
        model: str = DEFAULT_MODEL,
        timeout: float = 60.0,
        max_retries: int = 3,
        backoff_initial: float = 0.5,
        backoff_max: float = 8.0,
        retry_after_max: float = 60.0,
        http_client: httpx.Client | None = None,
    ) -> None:
        super().__init__(
            account_id=account_id, api_token=api_token, base_url=base_url, model=model, timeout=timeout,
            max_retries=max_retries, backoff_initial=backoff_initial, backoff_max=backoff_max,
            retry_after_max=retry_after_max,
        )  # fmt: skip
        self._owns_http = http_client is None
        self._http = http_client if http_client is not None else httpx.Client(timeout=self._timeout)

    def _run(self, plan: _Plan[T]) -> T:
        reply: _Reply = None
        while True:
            try:
                step = plan.send(reply)
            except StopIteration as stop:
                return stop.value
            if isinstance(step, _Sleep):
                time.sleep(step.seconds)
                reply = None
                continue
            try:
                reply = self._http.post(
                    self._proto.run_url, json=step.json, params=step.params, headers=self._proto.headers,
                    timeout=self._timeout,
                )  # fmt: skip
            except httpx.TransportError as exc:
                reply = exc

    def embed(self, texts: Sequence[str] | str, *, truncate_inputs: bool = False) -> np.ndarray:
        """float32 ``(n, d)`` vectors of ``texts`` in order, sent 100 per call (form B ``text``).

        Vectors are returned as the server sent them. An over-long input fails with :class:`BadRequestError`
        (code 5006) unless ``truncate_inputs`` is set.
        """
        return self._run(self._proto.embed(texts, truncate_inputs)).vectors

    def embed_result(self, texts: Sequence[str] | str, *, truncate_inputs: bool = False) -> EmbedResult:
        """Like :meth:`embed`, also returning the ``pooling`` the server reported (``"cls"`` for bge-m3)."""
        return self._run(self._proto.embed(texts, truncate_inputs))

    def embed_contexts(self, contexts: Sequence[str] | str, *, truncate_inputs: bool = False) -> np.ndarray:
        """float32 ``(n, d)`` vectors of ``contexts`` via form A without a query, 100 contexts per call."""
        return self._run(self._proto.embed_contexts(contexts, truncate_inputs)).vectors

    def score(self, query: str, contexts: Sequence[str] | str, *, truncate_inputs: bool = False) -> np.ndarray:
        """float32 ``(n_contexts,)``: the score of each context for ``query``, in context order.

        Results are placed by their ``id``, whatever order the server lists them in. Long lists go 100
        contexts per call; each score depends only on its own context, so chunking does not change them.
        """
        return self._run(self._proto.score(query, contexts, truncate_inputs))

    def submit_batch(self, requests: Sequence[Mapping[str, Any]]) -> str:
        """Queue a batch (``POST ?queueRequest=true`` with ``{"requests": [...]}``); return its request id.

        Each request is a form A (``{"query"?, "contexts", "truncate_inputs"?}``) or form B
        (``{"text", "truncate_inputs"?}``) dict and may carry an ``external_reference`` string. Contexts may be
        given as plain strings. A ``text`` list holds at most 100 texts; the whole payload must stay under 10 MB.
        """
        return self._run(self._proto.submit(requests))

    def poll(self, request_id: str) -> BatchStatus | BatchResult:
        """One poll: :class:`BatchStatus` while queued or running, :class:`BatchResult` once done.

        An unknown or expired id raises :class:`~hybridsearch.errors.NotFoundError`.
        """
        return self._run(self._proto.poll(request_id))

    def wait(
        self,
        request_id: str,
        *,
        poll_interval: float = 1.0,
        backoff: float = 1.5,
        max_poll_interval: float = 10.0,
        timeout: float | None = 600.0,
    ) -> BatchResult:
        """Poll until the batch is done; the interval grows by ``backoff`` up to ``max_poll_interval``.

        Raises :class:`~hybridsearch.errors.QueueTimeoutError` when ``timeout`` seconds pass first.
        """
        return self._run(self._proto.wait(request_id, poll_interval, backoff, max_poll_interval, timeout))

    def run_batch(
        self,
        requests: Sequence[Mapping[str, Any]],
        *,
        poll_interval: float = 1.0,
        backoff: float = 1.5,
        max_poll_interval: float = 10.0,
        timeout: float | None = 600.0,
    ) -> BatchResult:
        """:meth:`submit_batch` then :meth:`wait`; ``responses[i]`` answers ``requests[i]``."""
        return self._run(self._proto.run_batch(requests, (poll_interval, backoff, max_poll_interval, timeout)))

    def close(self) -> None:
        """Close the HTTP connection pool (unless it was passed in as ``http_client``)."""
        if self._owns_http:
            self._http.close()

    def __enter__(self) -> WorkersAIClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class AsyncWorkersAIClient(_ClientBase):
    """The ``async`` twin of :class:`WorkersAIClient`: same arguments, same methods, awaited.

    >>> async with AsyncWorkersAIClient() as client:  # doctest: +SKIP
    ...     vectors = await client.embed(["hello", "world"])
    """

    def __init__(
        self,
        *,
        account_id: str | None = None,
        api_token: str | None = None,
        base_url: str | None = None,
        model: str = DEFAULT_MODEL,
        timeout: float = 60.0,
        max_retries: int = 3,
        backoff_initial: float = 0.5,
        backoff_max: float = 8.0,
        retry_after_max: float = 60.0,
        http_client: httpx.AsyncClient | None = None,
    ) -> None:
        super().__init__(
            account_id=account_id, api_token=api_token, base_url=base_url, model=model, timeout=timeout,
            max_retries=max_retries, backoff_initial=backoff_initial, backoff_max=backoff_max,
            retry_after_max=retry_after_max,
        )  # fmt: skip
        self._owns_http = http_client is None
        self._http = http_client if http_client is not None else httpx.AsyncClient(timeout=self._timeout)

    async def _run(self, plan: _Plan[T]) -> T:
        reply: _Reply = None
        while True:
            try:
                step = plan.send(reply)
            except StopIteration as stop:
                return stop.value
            if isinstance(step, _Sleep):
                await asyncio.sleep(step.seconds)
                reply = None
                continue
            try:
                reply = await self._http.post(
                    self._proto.run_url, json=step.json, params=step.params, headers=self._proto.headers,
                    timeout=self._timeout,
                )  # fmt: skip
            except httpx.TransportError as exc:
                reply = exc

    async def embed(self, texts: Sequence[str] | str, *, truncate_inputs: bool = False) -> np.ndarray:
        """See :meth:`WorkersAIClient.embed`."""
        return (await self._run(self._proto.embed(texts, truncate_inputs))).vectors

    async def embed_result(self, texts: Sequence[str] | str, *, truncate_inputs: bool = False) -> EmbedResult:
        """See :meth:`WorkersAIClient.embed_result`."""
        return await self._run(self._proto.embed(texts, truncate_inputs))

    async def embed_contexts(self, contexts: Sequence[str] | str, *, truncate_inputs: bool = False) -> np.ndarray:
        """See :meth:`WorkersAIClient.embed_contexts`."""
        return (await self._run(self._proto.embed_contexts(contexts, truncate_inputs))).vectors

    async def score(self, query: str, contexts: Sequence[str] | str, *, truncate_inputs: bool = False) -> np.ndarray:
        """See :meth:`WorkersAIClient.score`."""
        return await self._run(self._proto.score(query, contexts, truncate_inputs))

    async def submit_batch(self, requests: Sequence[Mapping[str, Any]]) -> str:
        """See :meth:`WorkersAIClient.submit_batch`."""
        return await self._run(self._proto.submit(requests))

    async def poll(self, request_id: str) -> BatchStatus | BatchResult:
        """See :meth:`WorkersAIClient.poll`."""
        return await self._run(self._proto.poll(request_id))

    async def wait(
        self,
        request_id: str,
        *,
        poll_interval: float = 1.0,
        backoff: float = 1.5,
        max_poll_interval: float = 10.0,
        timeout: float | None = 600.0,
    ) -> BatchResult:
        """See :meth:`WorkersAIClient.wait`."""
        return await self._run(self._proto.wait(request_id, poll_interval, backoff, max_poll_interval, timeout))

    async def run_batch(
        self,
        requests: Sequence[Mapping[str, Any]],
        *,
        poll_interval: float = 1.0,
        backoff: float = 1.5,
        max_poll_interval: float = 10.0,
        timeout: float | None = 600.0,
    ) -> BatchResult:
        """See :meth:`WorkersAIClient.run_batch`."""
        return await self._run(self._proto.run_batch(requests, (poll_interval, backoff, max_poll_interval, timeout)))

    async def aclose(self) -> None:
        """Close the HTTP connection pool (unless it was passed in as ``http_client``)."""
        if self._owns_http:
            await self._http.aclose()

    async def __aenter__(self) -> AsyncWorkersAIClient:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()
