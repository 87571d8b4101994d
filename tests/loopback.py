"""Helpers for tests against the real server on 127.0.0.1.

:class:`FaultTransport` is an httpx transport that forwards every request to the real server over a real
connection and records it, except when a fault is queued: then it answers what a real server cannot be made to
answer on demand (429 with Retry-After, 5xx, a dropped connection, a read timeout, a malformed 200 body) without
sending the request, or (``forward=True``) holds the request ``delay`` seconds and then sends it (a slow server).
It counts requests in flight (:attr:`FaultTransport.max_in_flight`). :class:`Loopback` pairs a running server with such a transport and makes clients on it.
"""

from __future__ import annotations

import asyncio
import json
import threading
import time
import uuid
from collections import deque
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qs

import httpx

from hybridsearch.contract.workers_ai import failure
from hybridsearch.server import ServerConfig, ServerThread
from hybridsearch.workers_ai import AsyncWorkersAIClient, WorkersAIClient

__all__ = ["Fault", "FaultTransport", "Loopback", "Recorded", "start_server"]


def start_server(encoder: Any, *, index_encoder: Any = None, **config: Any) -> ServerThread:
    """A started :class:`ServerThread` on a free loopback port with ``encoder`` and the given config fields."""
    config.setdefault("port", 0)
    config.setdefault("shutdown_timeout_s", 10.0)
    return ServerThread(ServerConfig(**config), encoder=encoder, index_encoder=index_encoder).start()


@dataclass
class Fault:
    """A canned answer for the next ``times`` requests."""

    status: int = 500
    times: int = 1
    code: int | None = None
    message: str = "injected failure"
    retry_after: str | None = None
    body: Any = None  # JSON-able object or raw bytes sent instead of the error envelope
    style: str = "envelope"  # or "openai": {"error": {"message", "type", "code"}}
    delay: float = 0.0  # seconds before answering; past the client's read timeout it is a timeout
    drop: bool = False  # the connection closes without an answer
    forward: bool = False  # after ``delay``, send the request to the real server and return its answer


@dataclass
class Recorded:
    """One request as sent, and the status it got (from the server, or from a fault)."""

    method: str
    path: str
    query: dict[str, list[str]]
    headers: dict[str, str]
    body: Any
    status: int = 0
    request_id: str = ""
    response: Any = None  # the decoded JSON answer of the real server
    at: float = field(default_factory=time.monotonic)

    @property
    def kind(self) -> str:
        b = self.body if isinstance(self.body, dict) else {}
        if "request_id" in b and not ({"text", "contexts", "requests"} & set(b)):
            return "poll"
        if "requests" in b:
            return "batch"
        if "text" in b:
            return "text"
        if "contexts" in b:
            return "query" if "query" in b else "contexts"
        return "other"


def _past_read_timeout(request: httpx.Request, fault: Fault) -> bool:
    read_timeout = (request.extensions.get("timeout") or {}).get("read")
    return bool(fault.delay) and read_timeout is not None and fault.delay > read_timeout


class FaultTransport(httpx.BaseTransport, httpx.AsyncBaseTransport):
    """Forward to the real server (sync and async), record, and answer queued faults instead when asked."""

    def __init__(self) -> None:
        self.log: list[Recorded] = []
        self._faults: deque[Fault] = deque()
        self._lock = threading.Lock()
        self._sync = httpx.HTTPTransport()
        self._async = httpx.AsyncHTTPTransport()
        self.in_flight = 0
        self.max_in_flight = 0

    def inject(self, status: int = 500, **options: Any) -> None:
        with self._lock:
            self._faults.append(Fault(status=status, **options))

    def calls(self, kind: str | None = None) -> list[Recorded]:
        with self._lock:
            return [r for r in self.log if kind is None or r.kind == kind]

    def _record(self, request: httpx.Request) -> tuple[Recorded, Fault | None]:
        try:
            body = json.loads(request.content) if request.content else None
        except ValueError:
            body = request.content
        rec = Recorded(request.method, request.url.path, parse_qs(request.url.query.decode()),
                       {k.lower(): v for k, v in request.headers.items()}, body)  # fmt: skip
        with self._lock:
            self.log.append(rec)
            fault = None
            if self._faults:
                fault = self._faults[0]
                fault.times -= 1
                if fault.times <= 0:
                    self._faults.popleft()
        return rec, fault

    def _answer(self, request: httpx.Request, rec: Recorded, fault: Fault) -> httpx.Response:
        read_timeout = (request.extensions.get("timeout") or {}).get("read")
        if fault.delay and read_timeout is not None and fault.delay > read_timeout:
            raise httpx.ReadTimeout("timed out waiting for the answer", request=request)
        if fault.drop:
            raise httpx.RemoteProtocolError("Server disconnected without sending a response.", request=request)
        rec.status = fault.status
        rec.request_id = str(uuid.uuid4())
        headers = {"cf-ai-req-id": rec.request_id}
        if fault.retry_after is not None:
            headers["Retry-After"] = fault.retry_after
        if fault.body is not None:
            content = fault.body if isinstance(fault.body, bytes) else json.dumps(fault.body).encode()
        elif fault.style == "openai":
            content = json.dumps({"error": {"message": fault.message, "type": "invalid_request_error", "code": fault.code}}).encode()
        else:
            env = failure(fault.code, fault.message) if fault.code is not None else {
                "result": None, "success": False, "errors": [{"message": fault.message}], "messages": []}
            content = json.dumps(env).encode()
        return httpx.Response(fault.status, headers=headers, content=content, request=request)

    def _enter(self) -> None:
        with self._lock:
            self.in_flight += 1
            self.max_in_flight = max(self.max_in_flight, self.in_flight)

    def _leave(self) -> None:
        with self._lock:
            self.in_flight -= 1

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        rec, fault = self._record(request)
        self._enter()
        try:
            if fault is not None:
                if fault.delay:
                    time.sleep(min(fault.delay, (request.extensions.get("timeout") or {}).get("read") or fault.delay))
                if not fault.forward or _past_read_timeout(request, fault):
                    return self._answer(request, rec, fault)
            response = self._sync.handle_request(request)
            response.read()
        finally:
            self._leave()
        self._note(rec, response)
        return response

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        rec, fault = self._record(request)
        self._enter()
        try:
            if fault is not None:
                if fault.delay:
                    await asyncio.sleep(min(fault.delay, (request.extensions.get("timeout") or {}).get("read") or fault.delay))
                if not fault.forward or _past_read_timeout(request, fault):
                    return self._answer(request, rec, fault)
            response = await self._async.handle_async_request(request)
            await response.aread()
        finally:
            self._leave()
        self._note(rec, response)
        return response

    @staticmethod
    def _note(rec: Recorded, response: httpx.Response) -> None:
        rec.status, rec.request_id = response.status_code, response.headers.get("cf-ai-req-id", "")
        try:
            rec.response = response.json()
        except ValueError:
            rec.response = response.content

    def close(self) -> None:
        self._sync.close()


class Loopback:
    """A running server seen through one :class:`FaultTransport`."""

    def __init__(self, server: ServerThread) -> None:
        self.server = server
        self.transport = FaultTransport()
        self.url = server.url
        self.base_url = server.url + "/ai/run"
        self.inject = self.transport.inject
        self.calls = self.transport.calls

    def client(self, **options: Any) -> WorkersAIClient:
        options.setdefault("base_url", self.base_url)
        return WorkersAIClient(http_client=httpx.Client(transport=self.transport), **options)

    def async_client(self, **options: Any) -> AsyncWorkersAIClient:
        options.setdefault("base_url", self.base_url)
        return AsyncWorkersAIClient(http_client=httpx.AsyncClient(transport=self.transport), **options)
