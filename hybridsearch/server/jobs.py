"""The async batch queue of the Workers AI routes (``?queueRequest=true``, §5 of the contract).

A submitted batch is ``queued``, then ``running`` while one worker runs its requests in order, then done; its
result is kept for ``retention`` seconds after it finishes and then forgotten (a poll then answers 404 / 7404).
At most ``capacity`` batches may be unfinished at once; one more is refused with 429 / 3040 (out of capacity).
"""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

from ..contract.workers_ai import Code, ContractError, done_output, pending_output

__all__ = ["BatchQueue"]

# Runs one request of a batch: returns (output, prompt_tokens) or raises ContractError.
RunOne = Callable[[dict[str, Any]], Awaitable[tuple[Any, int]]]


@dataclass
class _Job:
    request_id: str
    requests: list[dict[str, Any]]
    status: str = "queued"
    result: dict[str, Any] | None = None
    finished_at: float | None = None
    submitted_at: float = field(default_factory=time.monotonic)


class BatchQueue:
    """A bounded FIFO of batches with one worker task, started by :meth:`start` inside the event loop."""

    def __init__(self, run_one: RunOne, *, capacity: int, retention: float) -> None:
        self.run_one = run_one
        self.capacity = capacity
        self.retention = retention
        self._jobs: dict[str, _Job] = {}
        self._queue: asyncio.Queue[str] | None = None
        self._worker: asyncio.Task | None = None
        self._running = asyncio.Event()
        self._running.set()

    @property
    def depth(self) -> int:
        """Batches not finished yet (queued or running)."""
        return sum(1 for j in self._jobs.values() if j.result is None)

    def start(self) -> None:
        self._queue = asyncio.Queue()
        self._worker = asyncio.create_task(self._work(), name="batch-queue")

    def pause(self) -> None:
        """Hold the worker before its next batch (maintenance); submitted batches stay ``queued``."""
        self._running.clear()

    def resume(self) -> None:
        self._running.set()

    def submit(self, requests: list[dict[str, Any]]) -> str:
        """Queue a validated batch; return its request id. Raises ContractError 429 / 3040 when full."""
        self._expire()
        if self._queue is None:
            raise ContractError(Code.OUT_OF_CAPACITY, "the queue is not running (the server is starting or stopping)", headers={"Retry-After": "1"})
        if self.depth >= self.capacity:
            raise ContractError(
                Code.OUT_OF_CAPACITY,
                f"Out of capacity: {self.depth} batches are waiting, the queue holds {self.capacity}; retry later",
                headers={"Retry-After": "1"},
            )
        rid = str(uuid.uuid4())
        self._jobs[rid] = _Job(rid, requests)
        self._queue.put_nowait(rid)
        return rid

    def poll(self, request_id: Any) -> dict[str, Any]:
        """The poll ``result``: pending status or the done body. Raises ContractError 404 / 7404 when unknown."""
        self._expire()
        job = self._jobs.get(request_id) if isinstance(request_id, str) else None
        if job is None:
            raise ContractError(Code.UNKNOWN_REQUEST, f"Unknown or expired request_id {request_id!r}")
        if job.result is None:
            return pending_output(job.status, job.request_id)
        return job.result

    def _expire(self) -> None:
        now = time.monotonic()
        for rid in [r for r, j in self._jobs.items() if j.finished_at is not None and now - j.finished_at > self.retention]:
            del self._jobs[rid]

    async def run_batch(self, requests: list[dict[str, Any]]) -> dict[str, Any]:
        """Run every request of a batch; one failing request fails only its own response (§5.4)."""
        responses, tokens = [], 0
        for i, req in enumerate(requests):
            item: dict[str, Any] = {"id": i, "external_reference": req.get("external_reference")}
            try:
                out, n = await self.run_one(req)
            except ContractError as exc:
                item.update(result=None, success=False, errors=[{"code": int(exc.code), "message": exc.message}])
            else:
                tokens += n
                item.update(result=out, success=True)
            responses.append(item)
        return done_output(responses, tokens)

    async def _work(self) -> None:
        assert self._queue is not None
        while True:
            rid = await self._queue.get()
            try:
                await self._running.wait()
                job = self._jobs.get(rid)
                if job is None:
                    continue
                job.status = "running"
                try:
                    job.result = await self.run_batch(job.requests)
                except Exception as exc:  # a server failure: report it per request rather than lose the batch
                    err = {"code": int(Code.INTERNAL), "message": f"internal error: {type(exc).__name__}: {exc}"}
                    job.result = done_output([{"id": i, "result": None, "success": False, "errors": [err],
                                               "external_reference": r.get("external_reference")}
                                              for i, r in enumerate(job.requests)], 0)  # fmt: skip
                job.finished_at = time.monotonic()
                job.status = "done"
            finally:
                self._queue.task_done()

    async def drain(self, timeout: float) -> None:
        """Finish the queued batches (shutdown), waiting at most ``timeout`` seconds; then stop the worker."""
        if self._queue is not None:
            self.resume()
            try:
                await asyncio.wait_for(self._queue.join(), timeout)
            except asyncio.TimeoutError:
                pass
        if self._worker is not None:
            self._worker.cancel()
            try:
                await self._worker
            except (asyncio.CancelledError, Exception):
                pass
        self._queue = None
