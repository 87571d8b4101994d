"""Rerank through the Workers AI bge-m3 scoring form: ``{"query": q, "contexts": [{"text": ...}, ...]}``.

:class:`ScoringAPIReranker` sends each query with its candidates' texts to Cloudflare Workers AI
``@cf/baai/bge-m3`` or any server speaking the same contract (``workers-ai-bge-m3-api.md``), through
:class:`~hybridsearch.workers_ai.WorkersAIClient` (blocking calls) or
:class:`~hybridsearch.workers_ai.AsyncWorkersAIClient` (``arerank``).

- **By id.** The answer lists ``{id, score}`` objects; scores are placed by ``id`` (the client checks every id is
  a context index, none is missing or repeated), never by position.
- **Within the API's limits.** A query's candidates are split into calls of at most ``max_contexts_per_call``
  contexts (100: the documented cap of ``text`` lists; ``contexts`` has none documented) and at most
  ``max_tokens_per_call`` tokens (60,000: the model's context window, applied per request as the contract's
  reference server does), counting the query in every call. Tokens are estimated by ``token_counter``
  (default: UTF-8 bytes / 3 + 2, an over-estimate of XLM-R tokens for English and about right for CJK) and capped
  at 8,192 per text, since ``truncate_inputs`` is on. Each context's score depends only on its own text, so
  splitting does not change scores.
- **Bounded concurrency.** At most ``concurrency`` calls are in flight at once, across all queries of a batch.
- **Time budget.** ``time_budget`` seconds for the whole ``rerank`` call. A query whose calls fail (HTTP error
  after the client's retries, connection failure, malformed answer) or are still running when the budget runs
  out keeps its first-stage order and is marked ``reranked=False`` with the reason; a WARNING is logged. The
  stage never raises because of the scorer. Calls still running when the budget expires are abandoned (the
  blocking path's worker threads end at the client's own timeout, ``request_timeout``, default the budget).
"""

from __future__ import annotations

import asyncio
import concurrent.futures as cf
import math
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np

from ..errors import ConfigError, HybridSearchError
from ..hits import Hits
from ..workers_ai import DEFAULT_MODEL, MAX_TEXTS_PER_CALL, AsyncWorkersAIClient, WorkersAIClient
from .base import Reranker, ScoredBatch, candidate_texts

__all__ = ["DEFAULT_MAX_TOKENS_PER_CALL", "ScoringAPIReranker", "estimate_tokens"]

DEFAULT_MAX_TOKENS_PER_CALL = 60_000
"""bge-m3's 60,000-token context window, kept per request (``workers-ai-bge-m3-api.md`` §8, §11.5)."""
MAX_TOKENS_PER_TEXT = 8_192
"""bge-m3's per-input limit; longer inputs are truncated by the server (``truncate_inputs``)."""


def estimate_tokens(text: str) -> int:
    """A cheap upper estimate of a text's XLM-R token count: UTF-8 bytes / 3, plus ``<s>`` and ``</s>``."""
    return len(text.encode("utf-8")) // 3 + 2


@dataclass
class _Call:
    query: int
    slots: list[int]
    texts: list[str]


def _split(query: str, items: list[tuple[int, str]], max_n: int, max_tokens: int, count: Callable[[str], int], qi: int) -> list[_Call]:
    """Greedy split of one query's candidates into calls within the count and token limits."""
    q_tokens = min(count(query), MAX_TOKENS_PER_TEXT)
    calls: list[_Call] = []
    cur = _Call(qi, [], [])
    used = q_tokens
    for slot, text in items:
        t = min(count(text), MAX_TOKENS_PER_TEXT)
        if cur.slots and (len(cur.slots) >= max_n or used + t > max_tokens):
            calls.append(cur)
            cur, used = _Call(qi, [], []), q_tokens
        cur.slots.append(slot)
        cur.texts.append(text)
        used += t
    if cur.slots:
        calls.append(cur)
    return calls


def _reason(exc: BaseException) -> str:
    kind = type(exc).__name__
    return f"scorer failed: {kind}: {exc}" if isinstance(exc, HybridSearchError) else f"scorer failed: {kind}: {exc!r}"


class ScoringAPIReranker(Reranker):
    """Rerank with the bge-m3 query/contexts scoring API of Workers AI or a compatible server.

    Parameters
    ----------
    base_url, account_id, api_token, model:
        Where to send calls, as for :class:`~hybridsearch.workers_ai.WorkersAIClient` (Cloudflare by default,
        credentials from ``CLOUDFLARE_ACCOUNT_ID`` / ``CLOUDFLARE_API_TOKEN``).
    client, async_client:
        Ready clients to use instead (the caller owns them). Without them the reranker creates its clients
        with ``request_timeout`` and ``max_retries``.
    time_budget:
        Seconds for a whole ``rerank`` call (``None``: no limit). Default 5.
    concurrency:
        Calls in flight at once (default 8).
    max_contexts_per_call, max_tokens_per_call, token_counter:
        Call splitting (see the module docstring).
    combine:
        ``"replace"`` or a fusion spec with the first stage (see :mod:`.base`).
    request_timeout, max_retries:
        For the clients it creates: per-request timeout (default: the time budget, or 60 s without one) and
        retries of 408 / 429 / 5xx / connection failures (default 1).
    """

    def __init__(
        self,
        *,
        base_url: str | None = None,
        account_id: str | None = None,
        api_token: str | None = None,
        model: str = DEFAULT_MODEL,
        client: WorkersAIClient | None = None,
        async_client: AsyncWorkersAIClient | None = None,
        time_budget: float | None = 5.0,
        concurrency: int = 8,
        max_contexts_per_call: int = MAX_TEXTS_PER_CALL,
        max_tokens_per_call: int = DEFAULT_MAX_TOKENS_PER_CALL,
        token_counter: Callable[[str], int] | None = None,
        combine: str = "replace",
        request_timeout: float | None = None,
        max_retries: int = 1,
    ) -> None:
        super().__init__(combine=combine)
        if time_budget is not None and (isinstance(time_budget, bool) or not isinstance(time_budget, (int, float))
                                        or not math.isfinite(time_budget) or time_budget <= 0):
            raise ConfigError(f"time_budget must be positive seconds or None, got {time_budget!r}")
        for name, value in (("concurrency", concurrency), ("max_contexts_per_call", max_contexts_per_call),
                            ("max_tokens_per_call", max_tokens_per_call)):
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ConfigError(f"{name} must be a positive integer, got {value!r}")
        if client is not None and not isinstance(client, WorkersAIClient):
            raise ConfigError(f"client must be a WorkersAIClient, got {type(client).__name__}")
        if async_client is not None and not isinstance(async_client, AsyncWorkersAIClient):
            raise ConfigError(f"async_client must be an AsyncWorkersAIClient, got {type(async_client).__name__}")
        if token_counter is not None and not callable(token_counter):
            raise ConfigError("token_counter must be a function str -> int")
        self.time_budget = None if time_budget is None else float(time_budget)
        self.concurrency = concurrency
        self.max_contexts_per_call = max_contexts_per_call
        self.max_tokens_per_call = max_tokens_per_call
        self.token_counter = token_counter or estimate_tokens
        timeout = request_timeout if request_timeout is not None else (self.time_budget or 60.0)
        self._options = {"base_url": base_url, "account_id": account_id, "api_token": api_token, "model": model,
                         "timeout": timeout, "max_retries": max_retries}  # fmt: skip
        # Created now, so that missing credentials or a bad URL fail here and not at the first query.
        self._client = client if client is not None or async_client is not None else WorkersAIClient(**self._options)
        self._owns_client = client is None
        self._async_client = async_client
        self._owns_async_client = False  # True once this reranker makes its own (see _aclient)
        self._async_loop: asyncio.AbstractEventLoop | None = None
        self._lock = threading.Lock()
        self.run_url = (client or async_client or self._client).run_url  # type: ignore[union-attr]

    def describe(self) -> dict[str, Any]:
        return {
            "type": "ScoringAPIReranker", "run_url": self.run_url, "time_budget": self.time_budget,
            "concurrency": self.concurrency, "max_contexts_per_call": self.max_contexts_per_call,
            "max_tokens_per_call": self.max_tokens_per_call,
        }  # fmt: skip

    # ------------------------------------------------------------------ clients
    def _sync_client(self) -> WorkersAIClient:
        with self._lock:
            if self._client is None:
                self._client = WorkersAIClient(**self._options)
            return self._client

    def _aclient(self) -> AsyncWorkersAIClient:
        loop = asyncio.get_running_loop()
        if self._async_client is not None and (self._async_loop is None or self._async_loop is loop):
            self._async_loop = loop
            return self._async_client
        # An httpx.AsyncClient belongs to one event loop: make one per loop.
        self._async_client = AsyncWorkersAIClient(**self._options)
        self._owns_async_client = True
        self._async_loop = loop
        return self._async_client

    def close(self) -> None:
        """Close the blocking client if this reranker created it."""
        if self._owns_client and self._client is not None:
            self._client.close()
            self._client = None

    async def aclose(self) -> None:
        """Close the blocking client and the ``async`` client if this reranker created them; call it from the
        event loop that ran the ``async`` reranks (an ``httpx.AsyncClient`` belongs to one loop)."""
        self.close()
        if self._owns_async_client and self._async_client is not None:
            await self._async_client.aclose()
            self._async_client = None
            self._owns_async_client = False

    def check(self) -> None:
        """Score one (query, context) pair now; raise the client's error (after its retries) if the API cannot.

        A start-up check (e.g. before a server turns ready): :meth:`rerank` never raises because of the scorer.
        """
        self._sync_client().score("check", ["check"], truncate_inputs=True)

    async def acheck(self) -> None:
        """The ``async`` twin of :meth:`check`."""
        await self._aclient().score("check", ["check"], truncate_inputs=True)

    # ------------------------------------------------------------------ planning
    def plan(self, queries: list[str], hits: Hits) -> list[_Call]:
        """The API calls a rerank of ``hits`` makes, in order (for inspection and tests)."""
        calls: list[_Call] = []
        for i, items in enumerate(candidate_texts(hits)):
            calls += _split(queries[i], items, self.max_contexts_per_call, self.max_tokens_per_call, self.token_counter, i)
        return calls

    def _assemble(self, hits: Hits, calls: list[_Call], results: list[Any]) -> ScoredBatch:
        """``results[c]``: scores array, an exception, or ``None`` (not finished within the budget)."""
        scores = np.full(hits.rows.shape, np.nan)
        failed: list[str | None] = [None] * hits.n_queries
        unfinished = [0] * hits.n_queries
        for call, res in zip(calls, results, strict=True):
            i = call.query
            if res is None:
                unfinished[i] += 1
            elif isinstance(res, BaseException):
                failed[i] = failed[i] or _reason(res)
            else:
                scores[i, call.slots] = res
        for i, n in enumerate(unfinished):
            if n and failed[i] is None:
                total = sum(c.query == i for c in calls)
                failed[i] = f"time budget of {self.time_budget:g} s exceeded ({n} of {total} scoring calls unfinished)"
        for i, reason in enumerate(failed):
            if reason is not None:
                scores[i] = np.nan
        return ScoredBatch(scores, failed)

    # ------------------------------------------------------------------ blocking
    def score(self, queries: list[str], hits: Hits) -> ScoredBatch:
        calls = self.plan(queries, hits)
        if not calls:
            return ScoredBatch(np.full(hits.rows.shape, np.nan), [None] * hits.n_queries)
        client = self._sync_client()
        deadline = None if self.time_budget is None else time.monotonic() + self.time_budget
        results: list[Any] = [None] * len(calls)
        pool = cf.ThreadPoolExecutor(max_workers=min(self.concurrency, len(calls)), thread_name_prefix="rerank")
        try:
            futures = {
                pool.submit(client.score, queries[c.query], c.texts, truncate_inputs=True): n for n, c in enumerate(calls)
            }
            timeout = None if deadline is None else max(0.0, deadline - time.monotonic())
            done, _ = cf.wait(futures, timeout=timeout)
            for fut in done:
                n = futures[fut]
                exc = fut.exception()
                results[n] = exc if exc is not None else fut.result()
        finally:
            pool.shutdown(wait=False, cancel_futures=True)
        return self._assemble(hits, calls, results)

    # ------------------------------------------------------------------ async
    async def ascore(self, queries: list[str], hits: Hits) -> ScoredBatch:
        calls = self.plan(queries, hits)
        if not calls:
            return ScoredBatch(np.full(hits.rows.shape, np.nan), [None] * hits.n_queries)
        client = self._aclient()
        sem = asyncio.Semaphore(self.concurrency)

        async def one(c: _Call) -> np.ndarray:
            async with sem:
                return await client.score(queries[c.query], c.texts, truncate_inputs=True)

        tasks = [asyncio.ensure_future(one(c)) for c in calls]
        done, pending = await asyncio.wait(tasks, timeout=self.time_budget)
        for t in pending:
            t.cancel()
        if pending:
            await asyncio.gather(*pending, return_exceptions=True)
        results: list[Any] = []
        for t in tasks:
            if t in done:
                exc = t.exception()
                results.append(exc if exc is not None else t.result())
            else:
                results.append(None)
        return self._assemble(hits, calls, results)
