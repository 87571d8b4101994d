"""Client for Cloudflare Workers AI ``@cf/baai/bge-m3`` and any server that speaks the same wire contract.

The contract (request forms, response forms, REST envelope, batch queue, error codes) is the one described in
``workers-ai-bge-m3-api.md``; it is implemented once, in :mod:`hybridsearch.contract.workers_ai`, which this client
and the server (``hybridsearch serve``) share. Two clients share one implementation: :class:`WorkersAIClient` (blocking, on
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
import itertools
import json
import logging
import os
import random
import time
from collections.abc import Generator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, TypeVar
from urllib.parse import quote

import httpx
import numpy as np

from ._version import __version__
from .contract.workers_ai import (
    MAX_BATCH_BYTES,
    MAX_TEXTS_PER_CALL,
    NOT_JSON,
    PENDING_STATUSES,
    BatchResponse,
    BatchResult,
    BatchStatus,
    Code,
    EmbedResult,
    _contract,
    _preview,
    parse_poll,
    parse_retry_after,
    parse_scores,
    parse_vectors,
    status_error,
    unwrap_envelope,
)
from .contract.workers_ai import MODEL as DEFAULT_MODEL
from .encoders.base import check_texts
from .errors import APIConnectionError, APIStatusError, ConfigError, InputError, QueueTimeoutError, WorkersAIError

__all__ = [
    "DEFAULT_API_BASE",
    "DEFAULT_MODEL",
    "ENV_ACCOUNT_ID",
    "ENV_API_TOKEN",
    "MAX_BATCH_BYTES",
    "MAX_TEXTS_PER_CALL",
    "PENDING_STATUSES",
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
ENV_ACCOUNT_ID = "CLOUDFLARE_ACCOUNT_ID"
ENV_API_TOKEN = "CLOUDFLARE_API_TOKEN"
_DAILY_ALLOCATION_CODE = Code.DAILY_ALLOCATION

T = TypeVar("T")


# ------------------------------------------------------------------------------------------- responses
def _decode(response: httpx.Response) -> Any:
    try:
        return response.json()
    except ValueError:
        return NOT_JSON


def _status_error(response: httpx.Response) -> APIStatusError:
    body = _decode(response)
    return status_error(
        response.status_code, None if body is NOT_JSON else body, text=response.text,
        reason=response.reason_phrase, request_id=response.headers.get("cf-ai-req-id"),
    )  # fmt: skip


def _unwrap_envelope(response: httpx.Response) -> Any:
    return unwrap_envelope(response.status_code, _decode(response), response.text)


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
            parts.append(parse_vectors(result, len(chunk), "data"))
        return _merge(parts)

    def embed_contexts(self, contexts: Any, truncate_inputs: bool) -> _Plan[EmbedResult]:
        contexts = check_texts(contexts)
        flag = _check_flag("truncate_inputs", truncate_inputs)
        parts = []
        for chunk in _chunks(contexts, MAX_TEXTS_PER_CALL):
            payload = {"contexts": [{"text": t} for t in chunk], "truncate_inputs": flag}
            result = yield from self.call(payload)
            parts.append(parse_vectors(result, len(chunk), "response"))
        return _merge(parts)

    def score(self, query: Any, contexts: Any, truncate_inputs: bool) -> _Plan[np.ndarray]:
        query = _check_query(query)
        contexts = check_texts(contexts)
        flag = _check_flag("truncate_inputs", truncate_inputs)
        out = []
        for chunk in _chunks(contexts, MAX_TEXTS_PER_CALL):
            payload = {"query": query, "contexts": [{"text": t} for t in chunk], "truncate_inputs": flag}
            result = yield from self.call(payload)
            out.append(parse_scores(result, len(chunk)))
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
        return parse_poll(result, request_id)

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
