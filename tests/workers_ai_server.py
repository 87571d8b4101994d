"""A small Workers AI ``@cf/baai/bge-m3`` compatible HTTP server for tests (stdlib only).

It follows the wire contract in ``workers-ai-bge-m3-api.md``: the REST envelope, input forms A (query +
contexts), B (text) and C (batch requests), the ``?queueRequest=true`` queue with polling by ``{"request_id"}``,
and the error envelope with Cloudflare codes. Embeddings are deterministic stand-ins: :func:`embed_text` seeds a
random unit vector from the text's hash, and a query's score for a context is the dot product of their vectors
rounded to fp16, listed best first (§11.2). Tokens are whitespace-separated words.

>>> with WorkersAIServer(dim=16) as server:                                     # doctest: +SKIP
...     WorkersAIClient(base_url=server.base_url).embed(["a b"]).shape
(1, 16)

Routes: ``POST {anything}/ai/run/{model}``; ``base_url`` is ``http://127.0.0.1:{port}/ai/run``, and any prefix
works, so ``/client/v4/accounts/{id}/ai/run`` (the Cloudflare layout) is served too.

Local choices where the contract leaves room (§11): an unknown ``request_id`` answers 404 with code
:data:`UNKNOWN_REQUEST_CODE`; each poll moves a job one step through ``queue_steps`` and then to done; a runtime
failure of one request inside a batch (e.g. an over-long input) gives that response ``success: false`` with an
``errors`` list; a schema failure anywhere in a batch rejects the whole submit with 400 / 5006.

Fault injection: :meth:`WorkersAIServer.inject` queues canned answers that the next requests get before any
normal handling (an error envelope with any status/code and ``Retry-After``, an OpenAI-style error, an arbitrary
body, a delay, or a dropped connection). Every request is recorded in :attr:`WorkersAIServer.log`.
"""

from __future__ import annotations

import hashlib
import json
import re
import threading
import time
import uuid
from collections import deque
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, unquote, urlsplit

import numpy as np

__all__ = ["UNKNOWN_REQUEST_CODE", "Fault", "Recorded", "WorkersAIServer", "embed_text", "score_value"]

MODEL = "@cf/baai/bge-m3"
UNKNOWN_REQUEST_CODE = 7404  # local: unknown or expired request_id (HTTP 404)
_ROUTE = re.compile(r"^(?:/.*)?/ai/run/(?P<model>.+)$")
_MAX_BODY = 12_000_000


def embed_text(text: str, dim: int) -> np.ndarray:
    """The server's deterministic unit vector for ``text`` (float32 ``(dim,)``)."""
    seed = int.from_bytes(hashlib.blake2b(text.encode("utf-8"), digest_size=8).digest(), "little")
    v = np.random.default_rng(seed).standard_normal(dim)
    return (v / np.linalg.norm(v)).astype(np.float32)


def score_value(query: str, context: str, dim: int) -> float:
    """The server's score: dot product of the two unit vectors, rounded to fp16 like Cloudflare's."""
    return float(np.float16(float(np.dot(embed_text(query, dim), embed_text(context, dim)))))


class _ApiError(Exception):
    def __init__(self, status: int, code: int, message: str) -> None:
        super().__init__(message)
        self.status, self.code, self.message = status, code, message


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
    delay: float = 0.0  # seconds to wait before answering
    drop: bool = False  # close the connection without an answer


@dataclass
class Recorded:
    """One request as the server saw it, and the status it answered."""

    method: str
    path: str
    query: dict[str, list[str]]
    headers: dict[str, str]
    body: Any
    status: int = 0
    request_id: str = ""  # the cf-ai-req-id header of the answer
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


@dataclass
class _Job:
    request_id: str
    done_body: dict[str, Any]
    polls: int = 0


class WorkersAIServer:
    """The server, on ``127.0.0.1`` and a free port, run in a daemon thread while used as a context manager.

    Options: ``dim`` (vector width), ``api_token`` (when set, requests need ``Authorization: Bearer <token>``
    or get 401 / 10000), ``max_tokens`` (words per input, 8,192 like bge-m3), ``max_request_tokens`` (per request,
    60,000), ``max_contexts`` (``None``: no cap), ``queue_steps`` (statuses a job reports before it is done),
    ``batch_nesting`` (``"single"`` as documented, ``"inner"`` for ``responses[].result.result``, ``"outer"`` for
    ``result.result.responses``), ``score_order`` (``"score"`` best first, or ``"id"``), ``extra_keys`` (add the
    observed ``response: null`` and ``meta`` to text answers).
    """

    def __init__(
        self,
        *,
        dim: int = 16,
        model: str = MODEL,
        api_token: str | None = None,
        max_tokens: int = 8192,
        max_request_tokens: int = 60_000,
        max_contexts: int | None = None,
        queue_steps: tuple[str, ...] = ("queued", "running"),
        batch_nesting: str = "single",
        score_order: str = "score",
        extra_keys: bool = True,
    ) -> None:
        self.dim, self.model, self.api_token = dim, model, api_token
        self.max_tokens, self.max_request_tokens, self.max_contexts = max_tokens, max_request_tokens, max_contexts
        self.queue_steps, self.batch_nesting = tuple(queue_steps), batch_nesting
        self.score_order, self.extra_keys = score_order, extra_keys
        self.log: list[Recorded] = []
        self._faults: deque[Fault] = deque()
        self._jobs: dict[str, _Job] = {}
        self._lock = threading.Lock()
        self._httpd: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None

    # ------------------------------------------------------------------ lifecycle
    def start(self) -> WorkersAIServer:
        handler = type("Handler", (_Handler,), {"app": self})
        self._httpd = ThreadingHTTPServer(("127.0.0.1", 0), handler)
        self._httpd.timeout = 5
        self._thread = threading.Thread(target=self._httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        if self._httpd is not None:
            self._httpd.shutdown()
            self._httpd.server_close()
            assert self._thread is not None
            self._thread.join(timeout=5)
            self._httpd = None

    def __enter__(self) -> WorkersAIServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    @property
    def url(self) -> str:
        assert self._httpd is not None, "server not started"
        return f"http://127.0.0.1:{self._httpd.server_address[1]}"

    @property
    def base_url(self) -> str:
        """What a client takes as ``base_url``: the run URL is ``{base_url}/{model}``."""
        return f"{self.url}/ai/run"

    # ------------------------------------------------------------------ test knobs
    def inject(self, status: int = 500, **options: Any) -> None:
        """Queue a :class:`Fault` (keyword options as its fields) for the next requests."""
        with self._lock:
            self._faults.append(Fault(status=status, **options))

    def calls(self, kind: str | None = None) -> list[Recorded]:
        """Recorded requests, optionally only one kind: text, query, contexts, batch, poll, other."""
        with self._lock:
            return [r for r in self.log if kind is None or r.kind == kind]

    def _next_fault(self) -> Fault | None:
        with self._lock:
            if not self._faults:
                return None
            fault = self._faults[0]
            fault.times -= 1
            if fault.times <= 0:
                self._faults.popleft()
            return fault

    # ------------------------------------------------------------------ the API
    def handle(self, path: str, query: dict[str, list[str]], headers: dict[str, str], body: Any, req_id: str) -> Any:
        """Answer one POST: return the ``result`` object or raise :class:`_ApiError`."""
        m = _ROUTE.match(path)
        if not m:
            raise _ApiError(404, 7000, "No route for that URI")
        if self.api_token is not None and headers.get("authorization") != f"Bearer {self.api_token}":
            raise _ApiError(401, 10000, "Authentication error")
        if m.group("model") != self.model:
            raise _ApiError(400, 5007, f"No such model {m.group('model')} or task")
        if body is _INVALID_JSON:
            raise _ApiError(400, 5004, "Invalid data: the body is not JSON")
        queued = query.get("queueRequest", [""])[-1].lower() == "true"
        if isinstance(body, dict) and "request_id" in body and not ({"text", "contexts", "requests"} & set(body)):
            return self._poll(body["request_id"])
        branch = _one_of(body, req_id)
        if branch == "C":
            outs = [self._run_one(r, req_id) for r in body["requests"]]
            done = self._done_body(body["requests"], outs)
            if not queued:  # §11.9: answer synchronously
                return done
            rid = str(uuid.uuid4())
            with self._lock:
                self._jobs[rid] = _Job(rid, done)
            return {"status": "queued", "request_id": rid, "model": self.model}
        if queued:
            raise _ApiError(400, 5006, _bad_input("queueRequest needs a body with 'requests'", req_id))
        return self._run_one(body, req_id, raise_errors=True)

    def _poll(self, request_id: Any) -> Any:
        with self._lock:
            job = self._jobs.get(request_id) if isinstance(request_id, str) else None
            if job is None:
                raise _ApiError(404, UNKNOWN_REQUEST_CODE, f"Unknown or expired request_id {request_id!r}")
            step = job.polls
            job.polls += 1
        if step < len(self.queue_steps):
            return {"status": self.queue_steps[step], "request_id": job.request_id}
        return job.done_body

    def _done_body(self, requests: list[dict], outs: list[tuple[bool, Any]]) -> dict[str, Any]:
        responses = []
        for i, (req, (ok, out)) in enumerate(zip(requests, outs, strict=True)):
            item: dict[str, Any] = {"id": i, "result": out if ok else None, "success": ok,
                                    "external_reference": req.get("external_reference")}  # fmt: skip
            if not ok:
                item["errors"] = [out]
            elif self.batch_nesting == "inner":
                item["result"] = {"result": out}
            responses.append(item)
        tokens = sum(_count_tokens(r) for r in requests)
        done = {
            "responses": responses,
            "usage": {"prompt_tokens": tokens, "completion_tokens": 0, "total_tokens": tokens},
        }
        return {"result": done} if self.batch_nesting == "outer" else done

    def _run_one(self, req: dict, req_id: str, raise_errors: bool = False) -> Any:
        try:
            out = self._run_checked(req, req_id)
        except _ApiError as exc:
            if raise_errors:
                raise
            return False, {"code": exc.code, "message": exc.message}
        return out if raise_errors else (True, out)

    def _run_checked(self, req: dict, req_id: str) -> Any:
        truncate = bool(req.get("truncate_inputs", False))
        if "text" in req:
            texts = [req["text"]] if isinstance(req["text"], str) else list(req["text"])
            texts = self._fit(texts, truncate, req_id)
            data = [embed_text(t, self.dim).tolist() for t in texts]
            out: dict[str, Any] = {"shape": [len(data), self.dim], "data": data, "pooling": "cls"}
            if self.extra_keys:
                n = sum(len(t.split()) for t in texts)
                out.update(response=None, meta={"cost_metric_name_1": "input_tokens", "cost_metric_value_1": n})
            return out
        contexts = [c["text"] for c in req["contexts"]]
        if self.max_contexts is not None and len(contexts) > self.max_contexts:
            raise _ApiError(400, 5006, _bad_input(f"{len(contexts)} contexts, at most {self.max_contexts}", req_id))
        if "query" not in req:
            contexts = self._fit(contexts, truncate, req_id)
            vecs = [embed_text(t, self.dim).tolist() for t in contexts]
            return {"response": vecs, "shape": [len(vecs), self.dim], "pooling": "cls"}
        query, *contexts = self._fit([req["query"], *contexts], truncate, req_id, first_is_query=True)
        items = [{"id": i, "score": score_value(query, c, self.dim)} for i, c in enumerate(contexts)]
        if self.score_order == "score":
            items.sort(key=lambda it: -it["score"])
        return {"response": items}

    def _fit(self, texts: list[str], truncate: bool, req_id: str, first_is_query: bool = False) -> list[str]:
        """Apply the per-input and per-request token limits (§11.3 to §11.5)."""
        out = []
        for i, t in enumerate(texts):
            words = t.split()
            if len(words) > self.max_tokens:
                if not truncate:
                    name = "query" if first_is_query and i == 0 else f"input {i - first_is_query}"
                    raise _ApiError(400, 5006, _bad_input(
                        f"{name} has {len(words)} tokens, over the {self.max_tokens}-token limit; "
                        "set truncate_inputs to true to truncate it", req_id))  # fmt: skip
                t = " ".join(words[: self.max_tokens])
            out.append(t)
        total = sum(len(t.split()) for t in out)
        if total > self.max_request_tokens:
            raise _ApiError(
                400, 5006, _bad_input(f"the request has {total} tokens, over {self.max_request_tokens}", req_id)
            )
        return out


# -------------------------------------------------------------------------------- schema (oneOf A | B | C)
_INVALID_JSON = object()


def _bad_input(detail: str, req_id: str) -> str:
    return f"AiError: Bad input: Error: {detail} ({req_id})"


def _nonempty_str(v: Any) -> bool:
    return isinstance(v, str) and len(v) >= 1


def _form_a(b: Any) -> str | None:
    if not isinstance(b, dict):
        return "'/' must be an object"
    if "contexts" not in b:
        return "required properties at '/' are 'contexts'"
    if not isinstance(b["contexts"], list):
        return "'/contexts' must be an array"
    for i, c in enumerate(b["contexts"]):
        if not isinstance(c, dict) or not _nonempty_str(c.get("text")):
            return f"'/contexts/{i}/text' must be a string of at least 1 character"
    if "query" in b and not _nonempty_str(b["query"]):
        return "'/query' must be a string of at least 1 character"
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
        if len(t) > 100:
            return f"'/text' must NOT have more than 100 items (has {len(t)})"
        bad = [i for i, x in enumerate(t) if not _nonempty_str(x)]
        if bad:
            return f"'/text/{bad[0]}' must be a string of at least 1 character"
    elif not _nonempty_str(t):
        return "'/text' must be a string of at least 1 character or an array of strings"
    if "truncate_inputs" in b and not isinstance(b["truncate_inputs"], bool):
        return "'/truncate_inputs' must be a boolean"
    return None


def _form_c(b: Any) -> str | None:
    if not isinstance(b, dict) or "requests" not in b:
        return "required properties at '/' are 'requests'"
    if not isinstance(b["requests"], list):
        return "'/requests' must be an array"
    for i, r in enumerate(b["requests"]):
        errs = [_form_a(r), _form_b(r)]
        if errs.count(None) != 1:
            why = "2 matches" if errs.count(None) == 2 else "0 matches: " + ", ".join(e for e in errs if e)
            return f"oneOf at '/requests/{i}' not met, {why}"
    return None


def _one_of(body: Any, req_id: str) -> str:
    checks = {"A": _form_a(body), "B": _form_b(body), "C": _form_c(body)}
    matches = [k for k, err in checks.items() if err is None]
    if len(matches) == 1:
        return matches[0]
    why = f"{len(matches)} matches" if matches else "0 matches: " + ", ".join(e for e in checks.values() if e)
    raise _ApiError(400, 5006, _bad_input(f"oneOf at '/' not met, {why}", req_id))


def _count_tokens(req: dict) -> int:
    texts = [req["text"]] if isinstance(req.get("text"), str) else list(req.get("text") or [])
    texts += [c["text"] for c in req.get("contexts") or []] + ([req["query"]] if "query" in req else [])
    return sum(len(t.split()) for t in texts)


# ----------------------------------------------------------------------------------------------- HTTP layer
class _Handler(BaseHTTPRequestHandler):
    app: WorkersAIServer
    protocol_version = "HTTP/1.1"

    def log_message(self, format: str, *args: Any) -> None:  # keep test output quiet
        pass

    def _send(self, status: int, payload: Any, req_id: str, extra_headers: dict[str, str] | None = None) -> None:
        data = payload if isinstance(payload, bytes) else json.dumps(payload).encode("utf-8")
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.send_header("cf-ai-req-id", req_id)
        for k, v in (extra_headers or {}).items():
            self.send_header(k, v)
        self.end_headers()
        self.wfile.write(data)

    def _error(
        self, status: int, code: int | None, message: str, req_id: str, headers: dict[str, str] | None = None
    ) -> None:
        result: Any = {} if code == 5006 else None
        err: dict[str, Any] = {"message": message} if code is None else {"code": code, "message": message}
        body = {"result": result, "success": False, "errors": [err], "messages": []}
        self._send(status, body, req_id, headers)

    def _read(self) -> tuple[Recorded, bytes]:
        parts = urlsplit(self.path)
        length = int(self.headers.get("Content-Length") or 0)
        raw = self.rfile.read(min(length, _MAX_BODY)) if length else b""
        try:
            body: Any = json.loads(raw) if raw else None
        except ValueError:
            body = _INVALID_JSON
        rec = Recorded(self.command, unquote(parts.path), parse_qs(parts.query),
                       {k.lower(): v for k, v in self.headers.items()}, body)  # fmt: skip
        with self.app._lock:
            self.app.log.append(rec)
        return rec, raw

    def do_POST(self) -> None:
        rec, raw = self._read()
        req_id = rec.request_id = str(uuid.uuid4())
        fault = self.app._next_fault()
        if fault is not None:
            rec.status = fault.status
            self._fault(fault, req_id)
            return
        try:
            if len(raw) >= 10_000_000:
                raise _ApiError(413, 3006, "Request is too large")
            result = self.app.handle(rec.path, rec.query, rec.headers, rec.body, req_id)
        except _ApiError as exc:
            rec.status = exc.status
            self._error(exc.status, exc.code, exc.message, req_id)
            return
        except Exception as exc:  # a bug in this server: answer 500 instead of dropping the connection
            rec.status = 500
            self._error(500, None, f"test server error: {exc!r}", req_id)
            return
        rec.status = 200
        self._send(200, {"result": result, "success": True, "errors": [], "messages": []}, req_id)

    def _fault(self, fault: Fault, req_id: str) -> None:
        if fault.delay:
            time.sleep(fault.delay)
        if fault.drop:
            self.close_connection = True
            return
        headers = {"Retry-After": fault.retry_after} if fault.retry_after is not None else None
        if fault.body is not None:
            self._send(fault.status, fault.body, req_id, headers)
        elif fault.style == "openai":
            err = {"error": {"message": fault.message, "type": "invalid_request_error", "code": fault.code}}
            self._send(fault.status, err, req_id, headers)
        else:
            self._error(fault.status, fault.code, fault.message, req_id, headers)

    def _not_allowed(self) -> None:
        rec, _ = self._read()
        rec.status = 405
        self._error(405, 7001, f"{self.command} not supported for requested URI.", str(uuid.uuid4()))

    do_GET = do_PUT = do_DELETE = do_PATCH = _not_allowed
