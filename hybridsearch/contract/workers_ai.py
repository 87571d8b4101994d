"""The Workers AI ``@cf/baai/bge-m3`` wire contract, shared by the client, the server and the tests.

Everything here is free of I/O: the input forms and their validation, the output forms, the REST envelope, the
batch-queue bodies, the error codes with their HTTP statuses, and the parsing rules a client applies to answers.
The section numbers (§) refer to ``workers-ai-bge-m3-api.md``, the contract this module implements.

Server side::

    form = classify_input(body)                 # "A" | "B" | "C" | "poll", or raises ContractError (400 / 5006)
    return success(embedding_output(vectors))   # {"result": {...}, "success": true, "errors": [], "messages": []}

Client side::

    result = unwrap_envelope(status, body)      # the envelope's "result", or APIResponseError
    vectors = parse_vectors(result, n, "data").vectors
"""

from __future__ import annotations

import email.utils
import math
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import timezone
from enum import IntEnum
from typing import Any

import numpy as np

from ..errors import (
    APIResponseError,
    APIStatusError,
    AuthenticationError,
    BadRequestError,
    NotFoundError,
    PayloadTooLargeError,
    PermissionDeniedError,
    RateLimitError,
    RequestTimeoutError,
    ServerError,
    WorkersAIError,
)

__all__ = [
    "MAX_BATCH_BYTES",
    "MAX_INPUT_TOKENS",
    "MAX_REQUEST_TOKENS",
    "MAX_TEXTS_PER_CALL",
    "MODEL",
    "NOT_JSON",
    "PENDING_STATUSES",
    "POOLING",
    "BatchResponse",
    "BatchResult",
    "BatchStatus",
    "Code",
    "ContractError",
    "EmbedResult",
    "async_output",
    "bad_input",
    "classify_input",
    "contexts_output",
    "done_output",
    "embedding_output",
    "failure",
    "input_texts",
    "is_poll",
    "parse_poll",
    "parse_retry_after",
    "parse_scores",
    "parse_vectors",
    "pending_output",
    "query_output",
    "status_error",
    "success",
    "unwrap_envelope",
]

MODEL = "@cf/baai/bge-m3"
POOLING = "cls"  # what bge-m3 reports (§3, observed)
MAX_TEXTS_PER_CALL = 100  # schema maxItems of `text`; clients also send `contexts` 100 at a time (§8, §11.6)
MAX_BATCH_BYTES = 10_000_000  # a queued batch payload must stay under 10 MB (§5)
MAX_INPUT_TOKENS = 8192  # bge-m3's native maximum per input (§8)
MAX_REQUEST_TOKENS = 60_000  # the model's context window, applied per request (§11.5)
PENDING_STATUSES = ("queued", "running")


class Code(IntEnum):
    """Error codes of the envelope's ``errors[].code`` (§6.2); codes marked local are this server's own choice."""

    NO_SUCH_MODEL = 5007
    INVALID_DATA = 5004
    INCOMPLETE_REQUEST = 3003
    BAD_INPUT = 5006
    PRIVATE_MODEL = 5018
    ACCOUNT_BLOCKED = 3023
    DEPRECATED_SDK = 5019
    INVALID_MODEL_ID = 3042
    TOO_LARGE = 3006
    TIMEOUT = 3007
    ABORTED = 3008
    DAILY_ALLOCATION = 3036
    OUT_OF_CAPACITY = 3040
    AUTHENTICATION = 10000
    METHOD_NOT_ALLOWED = 7001
    UNKNOWN_REQUEST = 7404  # local (§11.14): unknown or expired request_id, HTTP 404
    NO_ROUTE = 7000  # local: no such URI, HTTP 404
    INTERNAL = 5000  # local: the server failed, HTTP 500
    NOT_READY = 7503  # local: the model or index is still loading, HTTP 503
    UNKNOWN_DOCUMENT = 7405  # local: a document id the index does not hold, HTTP 404

    @property
    def http_status(self) -> int:
        """The HTTP status that goes with this code."""
        return _CODE_STATUS[self]


_CODE_STATUS = {
    Code.NO_SUCH_MODEL: 400, Code.INVALID_DATA: 400, Code.INCOMPLETE_REQUEST: 400, Code.BAD_INPUT: 400,
    Code.PRIVATE_MODEL: 403, Code.ACCOUNT_BLOCKED: 403, Code.DEPRECATED_SDK: 405, Code.INVALID_MODEL_ID: 404,
    Code.TOO_LARGE: 413, Code.TIMEOUT: 408, Code.ABORTED: 408, Code.DAILY_ALLOCATION: 429,
    Code.OUT_OF_CAPACITY: 429, Code.AUTHENTICATION: 401, Code.METHOD_NOT_ALLOWED: 405,
    Code.UNKNOWN_REQUEST: 404, Code.NO_ROUTE: 404, Code.INTERNAL: 500, Code.NOT_READY: 503,
    Code.UNKNOWN_DOCUMENT: 404,
}  # fmt: skip


class ContractError(Exception):
    """A request the server answers with the failure envelope: ``code`` and its HTTP status, and a message."""

    def __init__(self, code: Code, message: str, *, status: int | None = None, headers: dict[str, str] | None = None) -> None:
        super().__init__(message)
        self.code = Code(code)
        self.status = status if status is not None else self.code.http_status
        self.message = message
        self.headers = headers or {}


def bad_input(detail: str) -> ContractError:
    """400 / 5006 in Cloudflare's wording (``AiError: Bad input: Error: ...``, §6.1)."""
    return ContractError(Code.BAD_INPUT, f"AiError: Bad input: Error: {detail}")


# ------------------------------------------------------------------------------------------- the envelope
def success(result: Any) -> dict[str, Any]:
    """The success envelope of §4."""
    return {"result": result, "success": True, "errors": [], "messages": []}


def failure(code: int, message: str) -> dict[str, Any]:
    """The failure envelope of §4; ``result`` is ``{}`` for schema failures (observed) and ``null`` otherwise."""
    return {"result": {} if code == Code.BAD_INPUT else None, "success": False,
            "errors": [{"code": int(code), "message": message}], "messages": []}  # fmt: skip


# ------------------------------------------------------------------------------ input forms (§2, oneOf)
def _nonempty_str(v: Any) -> bool:
    # The schema says minLength 1; a whitespace-only text is refused too: its vector would mean nothing.
    return isinstance(v, str) and bool(v.strip())


def _form_a(b: Any) -> str | None:
    if not isinstance(b, dict):
        return "'/' must be an object"
    if "contexts" not in b:
        return "required properties at '/' are 'contexts'"
    if not isinstance(b["contexts"], list):
        return "'/contexts' must be an array"
    for i, c in enumerate(b["contexts"]):
        if not isinstance(c, dict) or not _nonempty_str(c.get("text")):
            return f"'/contexts/{i}/text' must be a string with at least one non-whitespace character"
    if "query" in b and not _nonempty_str(b["query"]):
        return "'/query' must be a string with at least one non-whitespace character"
    if "truncate_inputs" in b and not isinstance(b["truncate_inputs"], bool):
        return "'/truncate_inputs' must be a boolean"
    return None


def _form_b(b: Any) -> str | None:
    if not isinstance(b, dict):
        return "'/' must be an object"
    if "text" not in b:
        return "required properties at '/' are 'text'"
    t = b["text"]
    if isinstance(t, list):
        if not t:
            return "'/text' must NOT have fewer than 1 items"
        if len(t) > MAX_TEXTS_PER_CALL:
            return f"'/text' must NOT have more than {MAX_TEXTS_PER_CALL} items (has {len(t)})"
        bad = [i for i, x in enumerate(t) if not _nonempty_str(x)]
        if bad:
            return f"'/text/{bad[0]}' must be a string with at least one non-whitespace character"
    elif not _nonempty_str(t):
        return "'/text' must be a string with at least one non-whitespace character or an array of strings"
    if "truncate_inputs" in b and not isinstance(b["truncate_inputs"], bool):
        return "'/truncate_inputs' must be a boolean"
    return None


def _form_c(b: Any) -> str | None:
    if not isinstance(b, dict) or "requests" not in b:
        return "required properties at '/' are 'requests'"
    if not isinstance(b["requests"], list) or not b["requests"]:
        return "'/requests' must be a non-empty array"
    for i, r in enumerate(b["requests"]):
        errs = [_form_a(r), _form_b(r)]
        if errs.count(None) != 1:
            why = "2 matches" if errs.count(None) == 2 else "0 matches: " + ", ".join(e for e in errs if e)
            return f"oneOf at '/requests/{i}' not met, {why}"
        ref = r.get("external_reference")
        if ref is not None and not isinstance(ref, str):
            return f"'/requests/{i}/external_reference' must be a string"
    return None


def is_poll(body: Any) -> bool:
    """``{"request_id": ...}`` without any input field: a poll of a queued batch (§2.4), checked before the schema."""
    return isinstance(body, dict) and "request_id" in body and not ({"text", "contexts", "requests"} & set(body))


def classify_input(body: Any) -> str:
    """``"poll"``, or which ``oneOf`` branch ``body`` matches: ``"A"`` (query + contexts), ``"B"`` (text),
    ``"C"`` (batch requests). Raises :class:`ContractError` 400 / 5006 naming what failed (§6.1).

    Unknown extra keys are ignored (§11.8). Texts must hold a non-whitespace character (stricter than
    ``minLength: 1``: a vector of blanks means nothing).
    """
    if is_poll(body):
        return "poll"
    checks = {"A": _form_a(body), "B": _form_b(body), "C": _form_c(body)}
    matches = [k for k, err in checks.items() if err is None]
    if len(matches) == 1:
        return matches[0]
    why = f"{len(matches)} matches" if matches else "0 matches: " + ", ".join(e for e in checks.values() if e)
    raise bad_input(f"oneOf at '/' not met, {why}")


def input_texts(body: Mapping[str, Any]) -> tuple[str | None, list[str]]:
    """``(query or None, texts)`` of a validated form A or B body."""
    if "text" in body:
        t = body["text"]
        return None, [t] if isinstance(t, str) else list(t)
    return body.get("query"), [c["text"] for c in body["contexts"]]


# ------------------------------------------------------------------------------------ output forms (§3)
def embedding_output(vectors: np.ndarray) -> dict[str, Any]:
    """Output form 3 for ``text`` requests: ``{shape, data, pooling}``."""
    return {"shape": list(vectors.shape), "data": vectors.tolist(), "pooling": POOLING}


def contexts_output(vectors: np.ndarray) -> dict[str, Any]:
    """Output form 2 for ``contexts`` without ``query``: ``{response, shape, pooling}``."""
    return {"response": vectors.tolist(), "shape": list(vectors.shape), "pooling": POOLING}


def query_output(scores: Sequence[float]) -> dict[str, Any]:
    """Output form 1: one ``{id, score}`` per context, best first (§11.2), scores rounded to fp16 (§9)."""
    items = [{"id": i, "score": float(np.float16(s))} for i, s in enumerate(scores)]
    items.sort(key=lambda it: (-it["score"], it["id"]))
    return {"response": items}


def async_output(request_id: str, model: str = MODEL) -> dict[str, Any]:
    """The queue-submit ``result`` (§5.1)."""
    return {"status": "queued", "request_id": request_id, "model": model}


def pending_output(status: str, request_id: str) -> dict[str, Any]:
    """The poll ``result`` while a batch is queued or running (§5.3)."""
    return {"status": status, "request_id": request_id}


def done_output(responses: Sequence[Mapping[str, Any]], prompt_tokens: int) -> dict[str, Any]:
    """The poll ``result`` of a finished batch (§5.4): ``responses`` plus token ``usage``; no ``status``."""
    usage = {"prompt_tokens": prompt_tokens, "completion_tokens": 0, "total_tokens": prompt_tokens}
    return {"responses": list(responses), "usage": usage}


# ------------------------------------------------------------------------------- client-side results
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
        return parse_vectors(result, None, key).vectors

    def scores(self) -> np.ndarray:
        """float32 ``(n_contexts,)``: the scores of a query + contexts request, mapped by id to context order."""
        result = self._ok()
        items = result.get("response") if isinstance(result, Mapping) else None
        return parse_scores(result, len(items) if isinstance(items, list) else 0)


@dataclass(frozen=True, eq=False)
class BatchResult:
    """A finished batch: ``responses`` sorted by ``id`` plus the batch's token ``usage`` (``None`` if absent)."""

    request_id: str
    responses: tuple[BatchResponse, ...]
    usage: dict[str, Any] | None = None

    def by_reference(self) -> dict[str, BatchResponse]:
        """Responses keyed by ``external_reference`` (responses without one are left out)."""
        return {r.external_reference: r for r in self.responses if r.external_reference is not None}


# ------------------------------------------------------------------------------------- parsing (§10)
def _contract(msg: str) -> APIResponseError:
    return APIResponseError(f"the Workers AI response breaks the wire contract: {msg}")


def _preview(obj: Any, limit: int = 120) -> str:
    text = repr(obj)
    return text if len(text) <= limit else text[:limit] + "..."


def parse_vectors(result: Any, n: int | None, key: str) -> EmbedResult:
    """Output form 3 (``key="data"``) or form 2 (``key="response"``) -> float32 ``(n, d)``.

    Raises :class:`APIResponseError` for ragged rows, non-numbers, NaN/inf, a wrong count or a ``shape`` that
    disagrees with the rows.
    """
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


def parse_scores(result: Any, n: int) -> np.ndarray:
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
    """Accept the doubly nested ``{"result": {...}}`` form some batch results use (§5.4)."""
    while isinstance(obj, Mapping) and not has_content(obj) and isinstance(obj.get("result"), Mapping):
        obj = obj["result"]
    return obj


def _has_output(obj: Mapping) -> bool:
    return any(k in obj for k in ("data", "response", "shape"))


def parse_poll(result: Any, request_id: str) -> BatchStatus | BatchResult:
    """A poll's ``result``: :class:`BatchStatus` while pending, :class:`BatchResult` once ``responses`` appear."""
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


NOT_JSON: Any = object()  # stands for a body that did not decode as JSON


def unwrap_envelope(status: int, body: Any, text: str = "") -> Any:
    """The ``result`` of a 2xx envelope; ``body`` is the decoded JSON (:data:`NOT_JSON` if it did not decode)."""
    if body is NOT_JSON:
        raise _contract(f"HTTP {status} body is not JSON: {text[:200]!r}")
    if not isinstance(body, Mapping):
        raise _contract(f"expected the {{result, success, errors, messages}} envelope, got {_preview(body)}")
    if body.get("success") is False or body.get("error"):
        errs = body.get("errors") or [body.get("error")]
        raise _contract(f"HTTP {status} with success=false: {_preview(errs, 300)}")
    if "result" not in body:
        raise _contract(f"the envelope has no 'result': {_preview(body)}")
    return body["result"]


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
    401: "check the API token (api_token= or CLOUDFLARE_API_TOKEN)",
    403: "the token needs the Workers AI permission, or the model is private to another account",
    413: "send fewer or shorter texts per request",
    429: "rate limited; wait, lower the request rate or raise max_retries",
}


def _as_int(v: Any) -> int | None:
    if isinstance(v, bool):
        return None
    if isinstance(v, int):
        return v
    if isinstance(v, str) and v.strip().isdigit():
        return int(v)
    return None


def status_error(
    status: int, body: Any, *, text: str = "", reason: str = "", request_id: str | None = None
) -> APIStatusError:
    """Map an error answer (Cloudflare envelope or OpenAI-style ``error`` object, §10) to a typed exception."""
    errors: list[dict] = []
    if isinstance(body, Mapping):
        if isinstance(body.get("errors"), list):
            errors = [e if isinstance(e, dict) else {"message": str(e)} for e in body["errors"]]
        err = body.get("error")
        if not errors and err:
            errors = [dict(err) if isinstance(err, Mapping) else {"message": str(err)}]
    code = next((_as_int(e.get("code")) for e in errors if _as_int(e.get("code")) is not None), None)
    message = "; ".join(str(e.get("message", "")) for e in errors if e.get("message")) or (text[:300].strip() or reason)
    cls = _STATUS_ERRORS.get(status) or (ServerError if status >= 500 else APIStatusError)
    hint = _HINTS.get(status)
    if code == Code.BAD_INPUT:
        hint = "the input failed the model's schema; over-long inputs can be truncated with truncate_inputs=True"
    msg = f"Workers AI answered HTTP {status}" + (f" (code {code})" if code is not None else "") + f": {message}"
    return cls(msg + (f" [{hint}]" if hint else ""), status_code=status, code=code, errors=errors, request_id=request_id)


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
