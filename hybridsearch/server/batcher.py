"""Micro-batching: concurrent encode calls are merged into one encoder call.

A call that finds the encoder idle goes at once (or after waiting at most ``max_wait`` seconds for company, when
``max_wait > 0``); calls that arrive while the encoder is busy are merged and go together as soon as it is free,
so a lone request pays no batching delay and a burst is encoded in a few large batches (the dynamic batching of
inference servers such as Triton's and text-embeddings-inference's). A batch closes when it holds ``max_texts``
texts. Calls are grouped by (query or document, outputs), since those change what the encoder computes. All
encoding runs on one worker thread, so the encoder (torch) is never entered twice at once and the event loop
stays free.

Queries come first: when the encoder frees up, waiting queries go before waiting documents, and documents are
encoded ``doc_chunk`` texts per encoder call with the queries that arrived meanwhile encoded between chunks, so a
search waits for at most one chunk of an ingest, not for the whole ingest request.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

import numpy as np

from ..encoders.base import Encoder
from ..errors import ConfigError
from ..types import Encoded

__all__ = ["MicroBatcher"]


@dataclass
class _Call:
    texts: list[str]
    future: asyncio.Future
    queued_at: float = field(default_factory=time.monotonic)


class MicroBatcher:
    """Merge concurrent ``encode`` calls on one encoder.

    ``on_batch(n_texts, n_calls)`` is called for every encoder call (for metrics). ``enabled=False`` encodes
    each call alone (still on the one worker thread), which is the baseline the benchmark compares against.
    ``max_wait`` (seconds, default 0) only delays calls that find the encoder idle. ``doc_chunk`` (default 8):
    texts per encoder call for documents, between which waiting queries are encoded.
    """

    def __init__(
        self,
        encoder: Encoder,
        *,
        max_texts: int = 64,
        max_wait: float = 0.0,
        enabled: bool = True,
        doc_chunk: int = 8,
        on_batch: Callable[[int, int], None] | None = None,
    ) -> None:
        if doc_chunk < 1:
            raise ConfigError(f"doc_chunk must be >= 1, got {doc_chunk!r}")
        self.encoder = encoder
        self.doc_chunk = doc_chunk
        self.max_texts = max_texts
        self.max_wait = max_wait
        self.enabled = enabled
        self.on_batch = on_batch
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="encoder")
        self._pending: dict[tuple[bool, tuple[str, ...]], list[_Call]] = {}
        self._timers: dict[tuple[bool, tuple[str, ...]], asyncio.TimerHandle] = {}
        self._closed = False
        self._inflight = 0  # encoder calls handed to the worker thread and not finished

    def _run(self, texts: list[str], is_query: bool, outputs: tuple[str, ...]) -> Encoded:
        fn = self.encoder.encode_queries if is_query else self.encoder.encode_corpus
        return fn(texts, outputs=outputs)

    async def encode(self, texts: list[str], *, is_query: bool, outputs: tuple[str, ...]) -> Encoded:
        """Encode validated, non-empty ``texts``; the rows come back in order."""
        if self._closed:
            raise RuntimeError("the encoder is shut down")
        loop = asyncio.get_running_loop()
        if not self.enabled:
            if self.on_batch:
                self.on_batch(len(texts), 1)
            self._inflight += 1
            try:
                return await loop.run_in_executor(self._executor, self._run, texts, is_query, outputs)
            finally:
                self._done()
        key = (is_query, tuple(outputs))
        call = _Call(list(texts), loop.create_future())
        group = self._pending.setdefault(key, [])
        group.append(call)
        if sum(len(c.texts) for c in group) >= self.max_texts:
            self._flush(key)
        elif self._inflight == 0:  # idle: go now, or after max_wait
            if self.max_wait <= 0:
                self._flush(key)
            elif key not in self._timers:
                self._timers[key] = loop.call_later(self.max_wait, self._flush, key)
        # else: busy; _done() sends this group when the running call finishes
        return await call.future

    def _done(self) -> None:
        """An encoder call finished: when none is left running, send everything that queued meanwhile."""
        self._inflight -= 1
        if self._inflight == 0:
            for key in sorted(self._pending, key=lambda k: not k[0]):  # queries first
                self._flush(key)

    def _flush(self, key: tuple[bool, tuple[str, ...]]) -> None:
        timer = self._timers.pop(key, None)
        if timer is not None:
            timer.cancel()
        calls = self._pending.pop(key, [])
        if calls:
            self._inflight += 1
            asyncio.ensure_future(self._encode_group(key, calls))

    async def _encode_group(self, key: tuple[bool, tuple[str, ...]], calls: list[_Call]) -> None:
        try:
            await self._resolve(key, calls)
        finally:
            self._done()

    async def _resolve(self, key: tuple[bool, tuple[str, ...]], calls: list[_Call]) -> None:
        """Encode ``calls`` (documents chunk by chunk, waiting queries between chunks) and answer their futures."""
        texts = [t for c in calls for t in c.texts]
        is_query, outputs = key
        loop = asyncio.get_running_loop()
        try:
            if is_query or len(texts) <= self.doc_chunk:
                if self.on_batch:
                    self.on_batch(len(texts), len(calls))
                enc = await loop.run_in_executor(self._executor, self._run, texts, is_query, outputs)
            else:
                parts = []
                ends = np.cumsum([len(c.texts) for c in calls])
                for start in range(0, len(texts), self.doc_chunk):
                    if start:
                        await self._queries_first()
                    chunk = texts[start : start + self.doc_chunk]
                    if self.on_batch:  # the calls with texts in this chunk
                        first = int(np.searchsorted(ends, start, side="right"))
                        last = int(np.searchsorted(ends, start + len(chunk) - 1, side="right"))
                        self.on_batch(len(chunk), last - first + 1)
                    parts.append(await loop.run_in_executor(self._executor, self._run, chunk, is_query, outputs))
                enc = Encoded.concat(parts)
        except BaseException as exc:  # the same failure for every call of the batch
            for c in calls:
                if not c.future.done():
                    c.future.set_exception(exc)
            if isinstance(exc, asyncio.CancelledError):
                raise
            return
        start = 0
        for c in calls:
            rows = np.arange(start, start + len(c.texts))
            start += len(c.texts)
            if not c.future.done():
                c.future.set_result(enc.take(rows))

    async def _queries_first(self) -> None:
        """Encode the queries waiting now (between two chunks of documents)."""
        for key in [k for k in self._pending if k[0]]:
            timer = self._timers.pop(key, None)
            if timer is not None:
                timer.cancel()
            calls = self._pending.pop(key, [])
            if calls:
                await self._resolve(key, calls)

    def close(self) -> None:
        """Stop taking calls and let the worker thread finish what it runs."""
        self._closed = True
        self._executor.shutdown(wait=True)
