"""The Workers AI client, its encoder and the compatible test server, over real HTTP on 127.0.0.1."""

from __future__ import annotations

import asyncio
import email.utils
import time

import httpx
import numpy as np
import pytest
from workers_ai_server import UNKNOWN_REQUEST_CODE, WorkersAIServer, embed_text, score_value

from hybridsearch.encoders import get_encoder
from hybridsearch.encoders.workers_ai import WorkersAIEncoder, endpoint_fingerprint
from hybridsearch.errors import (
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
from hybridsearch.workers_ai import (
    AsyncWorkersAIClient,
    BatchResult,
    BatchStatus,
    WorkersAIClient,
    parse_retry_after,
)

DIM = 16
FAST = {"timeout": 5.0, "backoff_initial": 0.01, "backoff_max": 0.05}


@pytest.fixture
def server():
    with WorkersAIServer(dim=DIM) as srv:
        yield srv


@pytest.fixture
def client(server):
    with WorkersAIClient(base_url=server.base_url, **FAST) as c:
        yield c


def oracle(texts: list[str]) -> np.ndarray:
    return np.stack([embed_text(t, DIM) for t in texts])


# ------------------------------------------------------------------------------------------ embeddings
def test_embed_returns_float32_vectors_in_order(client, server):
    texts = ["hybrid search", "dense and sparse", "ColBERT token vectors"]
    out = client.embed(texts)
    assert out.dtype == np.float32 and out.shape == (3, DIM)
    np.testing.assert_allclose(out, oracle(texts), rtol=1e-6)
    assert client.embed("one text").shape == (1, DIM)
    sent = server.calls("text")[0]
    assert sent.body == {"text": texts, "truncate_inputs": False}
    assert sent.path == "/ai/run/@cf/baai/bge-m3" and sent.query == {}


def test_embed_chunks_250_texts_into_three_calls_keeping_order(client, server):
    texts = [f"passage number {i}" for i in range(250)]
    out = client.embed(texts)
    calls = server.calls("text")
    assert [len(c.body["text"]) for c in calls] == [100, 100, 50]
    assert [t for c in calls for t in c.body["text"]] == texts
    np.testing.assert_allclose(out, oracle(texts), rtol=1e-6)


def test_embed_result_reports_pooling_and_ignores_unknown_keys(client, server):
    res = client.embed_result(["a b c"])
    assert res.pooling == "cls" and res.vectors.shape == (1, DIM)
    # The observed text-mode body carries `response: null` and `meta`, plus keys we have never seen.
    body = {
        "result": {"data": [[3.0, 4.0]], "shape": [1, 2], "pooling": "cls", "response": None,
                   "meta": {"neurons": 0.02}, "usage": {"prompt_tokens": 3}, "novel": [1, 2]},
        "success": True, "errors": [], "messages": [], "extra": "ignored",
    }  # fmt: skip
    server.inject(200, body=body)
    np.testing.assert_array_equal(client.embed("x"), [[3.0, 4.0]])


def test_embed_contexts_uses_form_a_without_query(client, server):
    texts = [f"context {i}" for i in range(120)]
    out = client.embed_contexts(texts)
    calls = server.calls("contexts")
    assert [len(c.body["contexts"]) for c in calls] == [100, 20]
    assert "query" not in calls[0].body and calls[0].body["contexts"][0] == {"text": "context 0"}
    np.testing.assert_allclose(out, oracle(texts), rtol=1e-6)


# --------------------------------------------------------------------------------------------- scores
@pytest.mark.parametrize("order", ["score", "id"])
def test_score_maps_results_by_id(order):
    contexts = [f"candidate passage {i}" for i in range(230)]
    expected = np.array([score_value("which passage?", c, DIM) for c in contexts], dtype=np.float32)
    with WorkersAIServer(dim=DIM, score_order=order) as srv, WorkersAIClient(base_url=srv.base_url, **FAST) as c:
        scores = c.score("which passage?", contexts)
        calls = srv.calls("query")
    assert [len(call.body["contexts"]) for call in calls] == [100, 100, 30]
    assert scores.dtype == np.float32 and scores.shape == (230,)
    np.testing.assert_array_equal(scores, expected)
    if order == "score":  # the server really listed them out of id order
        assert not np.array_equal(np.argsort(-expected[:100], kind="stable"), np.arange(100))


def test_score_from_a_hand_made_sorted_answer(client, server):
    answer = {"response": [{"id": 2, "score": 0.75}, {"id": 0, "score": 0.5}, {"id": 1, "score": 0.25}]}
    server.inject(200, body={"result": answer, "success": True, "errors": [], "messages": []})
    np.testing.assert_array_equal(client.score("q", ["a", "b", "c"]), [0.5, 0.25, 0.75])


@pytest.mark.parametrize(
    "answer",
    [
        {"response": [{"id": 0, "score": 0.5}, {"id": 0, "score": 0.4}]},  # duplicate id
        {"response": [{"id": 0, "score": 0.5}]},  # missing id
        {"response": [{"id": 0, "score": 0.5}, {"id": 7, "score": 0.4}]},  # out of range
        {"response": [{"id": 0, "score": "high"}, {"id": 1, "score": 0.4}]},  # not a number
        {"response": [[0.1, 0.2], [0.3, 0.4]]},  # embeddings instead of scores
        {"response": None, "data": [[0.1]]},
    ],
    ids=["duplicate", "missing", "out-of-range", "non-number", "vectors", "null-response"],
)
def test_score_answers_that_break_the_contract(client, server, answer):
    server.inject(200, body={"result": answer, "success": True, "errors": [], "messages": []})
    with pytest.raises(APIResponseError):
        client.score("q", ["a", "b"])


# ----------------------------------------------------------------------------------------- bad input
@pytest.mark.parametrize(
    "texts",
    [[], ["ok", "   "], None, ["ok", 3], b"bytes", [""]],
    ids=["empty-list", "whitespace", "none", "non-str", "bytes", "empty-string"],
)
def test_bad_input_is_rejected_before_any_request(client, server, texts):
    with pytest.raises(InputError):
        client.embed(texts)
    with pytest.raises(InputError):
        client.score("query", texts)
    assert server.calls() == []


def test_bad_query_and_flags(client, server):
    for query in ("", "  ", None, 5):
        with pytest.raises(InputError, match="query"):
            client.score(query, ["a"])
    with pytest.raises(InputError, match="truncate_inputs"):
        client.embed(["a"], truncate_inputs="yes")
    assert server.calls() == []


def test_over_long_input_fails_or_is_truncated():
    long_text = " ".join(f"w{i}" for i in range(12))
    with WorkersAIServer(dim=DIM, max_tokens=8) as srv, WorkersAIClient(base_url=srv.base_url, **FAST) as c:
        with pytest.raises(BadRequestError) as info:
            c.embed(["short one", long_text])
        err = info.value
        assert err.code == 5006 and err.status_code == 400 and err.request_id
        assert "input 1 has 12 tokens, over the 8-token limit" in str(err)
        assert "input 1 has 12 tokens" in err.errors[0]["message"]
        out = c.embed(["short one", long_text], truncate_inputs=True)
        np.testing.assert_allclose(out, oracle(["short one", " ".join(long_text.split()[:8])]), rtol=1e-6)
        assert srv.calls("text")[-1].body["truncate_inputs"] is True
        assert len(srv.calls()) == 2  # a 400 is not retried


# ------------------------------------------------------------------------------------------ the queue
@pytest.mark.parametrize("nesting", ["single", "inner", "outer"])
def test_batch_lifecycle_with_external_references(nesting):
    requests = [
        {"text": ["alpha", "beta"], "external_reference": "doc-1"},
        {"query": "alpha?", "contexts": ["alpha", {"text": "gamma"}], "truncate_inputs": True},
        {"contexts": [{"text": "delta"}], "external_reference": "ctx"},
    ]
    with WorkersAIServer(dim=DIM, batch_nesting=nesting) as srv, WorkersAIClient(base_url=srv.base_url, **FAST) as c:
        rid = c.submit_batch(requests)
        submit = srv.calls("batch")[0]
        assert submit.query == {"queueRequest": ["true"]}
        assert submit.body["requests"][1]["contexts"] == [{"text": "alpha"}, {"text": "gamma"}]
        states = [c.poll(rid), c.poll(rid)]
        assert states == [BatchStatus("queued", rid), BatchStatus("running", rid)]
        done = c.poll(rid)
        assert isinstance(done, BatchResult) and done.request_id == rid
        assert c.poll(rid).responses[0].id == 0  # a finished batch can be read again
    assert [r.id for r in done.responses] == [0, 1, 2]
    assert [r.external_reference for r in done.responses] == ["doc-1", None, "ctx"]
    assert all(r.success for r in done.responses)
    np.testing.assert_allclose(done.by_reference()["doc-1"].embeddings(), oracle(["alpha", "beta"]), rtol=1e-6)
    np.testing.assert_array_equal(
        done.responses[1].scores(), [score_value("alpha?", "alpha", DIM), score_value("alpha?", "gamma", DIM)]
    )
    np.testing.assert_allclose(done.by_reference()["ctx"].embeddings(), oracle(["delta"]), rtol=1e-6)
    assert done.usage == {"prompt_tokens": 6, "completion_tokens": 0, "total_tokens": 6}


def test_run_batch_polls_with_backoff_until_done(client, server):
    result = client.run_batch([{"text": "one"}, {"text": ["two", "three"]}], poll_interval=0.01, timeout=10)
    assert [k.kind for k in server.calls()] == ["batch", "poll", "poll", "poll"]
    assert all(p.query == {"queueRequest": ["true"]} for p in server.calls("poll"))
    np.testing.assert_allclose(result.responses[1].embeddings(), oracle(["two", "three"]), rtol=1e-6)


def test_batch_with_a_failed_request(server, client):
    server.max_tokens = 3
    result = client.run_batch(
        [{"text": ["a b c d e"], "external_reference": "long"}, {"text": ["ok"]}], poll_interval=0.01, timeout=10
    )
    failed, ok = result.responses
    assert not failed.success and "5 tokens, over the 3-token limit" in failed.errors[0]["message"]
    with pytest.raises(WorkersAIError, match="batch request 0 .*'long'.* failed"):
        failed.embeddings()
    assert ok.embeddings().shape == (1, DIM)


def test_queue_timeout(server, client):
    server.queue_steps = ("queued",) * 10_000
    rid = client.submit_batch([{"text": "slow"}])
    with pytest.raises(QueueTimeoutError) as info:
        client.wait(rid, poll_interval=0.02, timeout=0.2)
    assert info.value.request_id == rid and "still queued" in str(info.value)
    assert 2 <= len(server.calls("poll")) <= 20


def test_unknown_request_id_is_not_found(client):
    with pytest.raises(NotFoundError) as info:
        client.poll("no-such-id")
    assert info.value.code == UNKNOWN_REQUEST_CODE and info.value.status_code == 404


def test_server_accepts_poll_without_query_param_and_sync_requests(server, client):
    rid = client.submit_batch([{"text": "x"}])
    with httpx.Client(timeout=5) as http:
        url = f"{server.base_url}/@cf/baai/bge-m3"
        assert http.post(url, json={"request_id": rid}).json()["result"]["status"] == "queued"
        assert (
            http.post(url, json={"request_id": rid}, params={"queueRequest": "true"}).json()["result"]["status"]
            == "running"
        )
        sync = http.post(url, json={"requests": [{"text": "x", "external_reference": "r"}]}).json()["result"]
        assert sync["responses"][0]["external_reference"] == "r" and "request_id" not in sync


@pytest.mark.parametrize(
    "requests, match",
    [
        ([], "empty"),
        ({"text": "a"}, "list of request objects"),
        (["just a string"], "dict"),
        ([{"query": "q"}], "exactly one of"),
        ([{"text": "a", "contexts": ["b"]}], "exactly one of"),
        ([{"text": [f"t{i}" for i in range(101)]}], "at most 100"),
        ([{"contexts": ["a", ""]}], "empty"),
        ([{"contexts": [{"txt": "a"}]}], "NoneType"),
        ([{"text": "a", "external_reference": 5}], "external_reference"),
        ([{"text": ["x" * 1_000_000] * 10}], "under 10 MB"),
    ],
    ids=["empty", "dict", "non-dict-item", "no-contexts", "both-forms", "over-100", "empty-context",
         "context-without-text", "bad-reference", "over-10MB"],
)  # fmt: skip
def test_bad_batches_are_rejected_before_any_request(client, server, requests, match):
    with pytest.raises(InputError, match=match):
        client.submit_batch(requests)
    assert server.calls() == []


# -------------------------------------------------------------------------------------------- retries
def test_429_is_retried_after_retry_after(client, server):
    server.inject(429, times=2, code=3040, message="Out of capacity", retry_after="0.05")
    out = client.embed(["again"])
    np.testing.assert_allclose(out, oracle(["again"]), rtol=1e-6)
    calls = server.calls()
    assert [c.status for c in calls] == [429, 429, 200]
    assert all(b.at - a.at >= 0.045 for a, b in zip(calls, calls[1:], strict=False))


def test_retry_after_as_http_date(client, server):
    past = email.utils.formatdate(time.time() - 30, usegmt=True)
    server.inject(503, retry_after=past)
    client.embed("x")
    assert [c.status for c in server.calls()] == [503, 200]
    future = email.utils.formatdate(time.time() + 30, usegmt=True)
    assert 25 < parse_retry_after(future) <= 30
    assert parse_retry_after("1.5") == 1.5 and parse_retry_after("soon") is None and parse_retry_after(None) is None


@pytest.mark.parametrize("status", [500, 502, 503, 408])
def test_server_errors_are_retried_then_succeed(client, server, status):
    server.inject(status, times=2)
    assert client.embed("x").shape == (1, DIM)
    assert [c.status for c in server.calls()] == [status, status, 200]


@pytest.mark.parametrize("status, exc", [(429, RateLimitError), (500, ServerError), (503, ServerError)])
def test_retries_exhausted(server, status, exc):
    server.inject(status, times=10, code=3040 if status == 429 else None)
    with WorkersAIClient(base_url=server.base_url, max_retries=2, **FAST) as c, pytest.raises(exc) as info:
        c.embed("x")
    assert info.value.status_code == status
    assert len(server.calls()) == 3


def test_no_retry_for_daily_allocation_or_long_retry_after(client, server):
    server.inject(429, code=3036, message="daily free allocation used up")
    with pytest.raises(RateLimitError) as info:
        client.embed("x")
    assert info.value.code == 3036 and len(server.calls()) == 1
    server.inject(429, code=3040, retry_after="3600")
    with pytest.raises(RateLimitError):
        client.embed("x")
    assert len(server.calls()) == 2


def test_other_4xx_are_not_retried(client, server):
    server.inject(400, code=5004, message="Invalid data")
    with pytest.raises(BadRequestError):
        client.embed("x")
    assert len(server.calls()) == 1


# ------------------------------------------------------------------------------------- error mapping
@pytest.mark.parametrize(
    "code, status, exc",
    [
        (5007, 400, BadRequestError), (5004, 400, BadRequestError), (3003, 400, BadRequestError),
        (5006, 400, BadRequestError), (5018, 403, PermissionDeniedError), (3041, 403, PermissionDeniedError),
        (3023, 403, PermissionDeniedError), (5019, 405, APIStatusError), (3042, 404, NotFoundError),
        (3006, 413, PayloadTooLargeError), (3007, 408, RequestTimeoutError), (3008, 408, RequestTimeoutError),
        (3036, 429, RateLimitError), (3040, 429, RateLimitError), (10000, 401, AuthenticationError),
        (7001, 405, APIStatusError),
    ],
)  # fmt: skip
def test_every_documented_error_code(server, code, status, exc):
    server.inject(status, code=code, message=f"message for {code}")
    with WorkersAIClient(base_url=server.base_url, max_retries=0, **FAST) as c, pytest.raises(exc) as info:
        c.embed("x")
    err = info.value
    assert type(err) is exc
    assert err.code == code and err.status_code == status
    assert err.errors == [{"code": code, "message": f"message for {code}"}]
    assert f"message for {code}" in str(err) and f"HTTP {status}" in str(err)
    assert err.request_id and err.request_id == server.calls()[0].request_id  # from the cf-ai-req-id header


def test_openai_style_error_body(client, server):
    server.inject(401, style="openai", message="Invalid API key", code="invalid_api_key")
    with pytest.raises(AuthenticationError, match="Invalid API key") as info:
        client.embed("x")
    assert info.value.code is None and info.value.errors[0]["code"] == "invalid_api_key"
    server.inject(400, style="openai", message="bad", code=5006)
    with pytest.raises(BadRequestError) as info:
        client.embed("x")
    assert info.value.code == 5006


def test_error_body_that_is_not_json(client, server):
    server.inject(502, times=10, body=b"<html>Bad gateway</html>")
    with (
        WorkersAIClient(base_url=server.base_url, max_retries=0, **FAST) as c,
        pytest.raises(ServerError, match="Bad gateway"),
    ):
        c.embed("x")


@pytest.mark.parametrize(
    "body",
    [
        b"not json",
        [1, 2],
        {"success": True, "errors": [], "messages": []},
        {"result": None, "success": False, "errors": [{"code": 1, "message": "odd"}], "messages": []},
        {"result": {"data": [[0.1, 0.2], [0.3]], "shape": [2, 2]}, "success": True},
        {"result": {"data": [[0.1, 0.2]], "shape": [1, 2]}, "success": True},
        {"result": {"data": [[0.1, 0.2], [0.3, 0.4]], "shape": [2, 3]}, "success": True},
        {"result": {"data": [[0.1, None], [0.3, 0.4]]}, "success": True},
        {"result": {"response": None, "shape": [2, 2]}, "success": True},
        {"error": {"message": "in a 200"}},
    ],
    ids=["not-json", "not-object", "no-result", "success-false", "ragged", "too-few-rows", "wrong-shape",
         "null-number", "no-data", "openai-error-200"],
)  # fmt: skip
def test_malformed_200_bodies(client, server, body):
    server.inject(200, body=body)
    with pytest.raises(APIResponseError):
        client.embed(["a", "b"])
    assert len(server.calls()) == 1  # a broken 200 is not retried


def test_server_side_schema_validation(server):
    url = f"{server.base_url}/@cf/baai/bge-m3"
    with httpx.Client(timeout=5) as http:
        cases = {
            "both-forms": http.post(url, json={"text": "a", "contexts": [{"text": "b"}]}),
            "empty-text": http.post(url, json={"text": ""}),
            "context-without-text": http.post(url, json={"contexts": [{"external_reference": "x"}]}),
            "over-100": http.post(url, json={"text": ["a"] * 101}),
            "not-json": http.post(url, content=b"{", headers={"Content-Type": "application/json"}),
        }
        assert http.post(url, json={"text": "a", "unknown": 1}).status_code == 200  # extra keys tolerated
        get = http.get(url)
        wrong_model = http.post(f"{server.base_url}/@cf/baai/bge-m4", json={"text": "a"})
    for name, r in cases.items():
        assert r.status_code == 400, name
        assert r.json()["success"] is False and r.json()["errors"][0]["code"] == (5004 if name == "not-json" else 5006)
    assert "2 matches" in cases["both-forms"].json()["errors"][0]["message"]
    assert "100 items" in cases["over-100"].json()["errors"][0]["message"]
    assert get.status_code == 405 and get.json()["errors"][0]["code"] == 7001
    assert wrong_model.json()["errors"][0]["code"] == 5007


# ------------------------------------------------------------------------------------ connection errors
def test_connection_refused_is_an_api_connection_error():
    srv = WorkersAIServer().start()  # a port that was just freed: nobody listens there
    dead = srv.base_url
    srv.stop()
    with (
        WorkersAIClient(base_url=dead, max_retries=1, **FAST) as c,
        pytest.raises(APIConnectionError, match="could not reach"),
    ):
        c.embed("x")


def test_dropped_connection_is_retried(client, server):
    server.inject(drop=True)
    assert client.embed("x").shape == (1, DIM)
    assert len(server.calls()) == 2


def test_read_timeout_is_an_api_connection_error(server):
    server.inject(200, delay=0.5, times=2)
    with WorkersAIClient(base_url=server.base_url, timeout=0.1, max_retries=1, backoff_initial=0.01) as c:
        with pytest.raises(APIConnectionError, match="Timeout"):
            c.embed("x")
    assert len(server.calls()) == 2


# ---------------------------------------------------------------------------------- auth and config
def test_token_is_sent_and_checked():
    with WorkersAIServer(dim=DIM, api_token="secret") as srv:
        with (
            WorkersAIClient(base_url=srv.base_url, api_token="wrong", **FAST) as c,
            pytest.raises(AuthenticationError) as info,
        ):
            c.embed("x")
        assert info.value.code == 10000 and len(srv.calls()) == 1
        with WorkersAIClient(base_url=srv.base_url, api_token="secret", **FAST) as c:
            assert c.embed("x").shape == (1, DIM)
        assert srv.calls()[-1].headers["authorization"] == "Bearer secret"


def test_credentials_from_the_environment(monkeypatch):
    monkeypatch.setenv("CLOUDFLARE_ACCOUNT_ID", "acc123")
    monkeypatch.setenv("CLOUDFLARE_API_TOKEN", "envtoken")
    c = WorkersAIClient()
    assert c.run_url == "https://api.cloudflare.com/client/v4/accounts/acc123/ai/run/@cf/baai/bge-m3"
    assert "envtoken" not in repr(c)
    c.close()
    with WorkersAIServer(dim=DIM, api_token="envtoken") as srv:
        base = srv.url + "/client/v4/accounts/{account_id}/ai/run"
        with WorkersAIClient(base_url=base, **FAST) as c:
            assert c.embed("x").shape == (1, DIM)
        assert srv.calls()[0].path == "/client/v4/accounts/acc123/ai/run/@cf/baai/bge-m3"


def test_missing_credentials(monkeypatch):
    monkeypatch.delenv("CLOUDFLARE_ACCOUNT_ID", raising=False)
    monkeypatch.delenv("CLOUDFLARE_API_TOKEN", raising=False)
    with pytest.raises(ConfigError, match="CLOUDFLARE_ACCOUNT_ID.*CLOUDFLARE_API_TOKEN"):
        WorkersAIClient()
    with pytest.raises(ConfigError, match="CLOUDFLARE_API_TOKEN"):
        WorkersAIClient(account_id="acc")
    with pytest.raises(ConfigError, match="account_id"):
        WorkersAIClient(base_url="http://127.0.0.1:1/accounts/{account_id}/ai/run")
    WorkersAIClient(base_url="http://127.0.0.1:1/ai/run").close()  # self-hosted: no token needed
    for bad in ({"base_url": "ftp://x"}, {"timeout": 0}, {"max_retries": -1}, {"model": "bad model"}):
        with pytest.raises(ConfigError):
            WorkersAIClient(**{"base_url": "http://127.0.0.1:1/ai/run", **bad})


def test_injected_http_client_is_not_closed(server):
    with httpx.Client() as http:
        with WorkersAIClient(base_url=server.base_url, http_client=http, **FAST) as c:
            assert c.embed("x").shape == (1, DIM)
        assert not http.is_closed


# ---------------------------------------------------------------------------------------------- async
def test_async_client(server):
    texts = [f"async text {i}" for i in range(150)]

    async def main():
        async with AsyncWorkersAIClient(base_url=server.base_url, **FAST) as c:
            vectors = await c.embed(texts)
            scores = await c.score("q", ["a", "b", "c"])
            server.inject(429, retry_after="0.01", code=3040)
            contexts = await c.embed_contexts(["a"])
            batch = await c.run_batch([{"text": "a", "external_reference": "r"}], poll_interval=0.01, timeout=10)
            with pytest.raises(NotFoundError):
                await c.poll("missing")
            server.queue_steps = ("running",) * 1000
            rid = await c.submit_batch([{"text": "b"}])
            with pytest.raises(QueueTimeoutError):
                await c.wait(rid, poll_interval=0.02, timeout=0.1)
            with pytest.raises(InputError):
                await c.embed([])
            return vectors, scores, contexts, batch

    vectors, scores, contexts, batch = asyncio.run(main())
    np.testing.assert_allclose(vectors, oracle(texts), rtol=1e-6)
    assert [len(c.body["text"]) for c in server.calls("text")] == [100, 50]
    np.testing.assert_array_equal(scores, [score_value("q", t, DIM) for t in "abc"])
    np.testing.assert_allclose(contexts, oracle(["a"]), rtol=1e-6)
    assert [c.status for c in server.calls("contexts")] == [429, 200]
    assert batch.by_reference()["r"].embeddings().shape == (1, DIM)


# -------------------------------------------------------------------------------------------- encoder
def test_encoder_through_the_registry(server):
    texts = [f"document {i}" for i in range(130)]
    with get_encoder("workers-ai", base_url=server.base_url, max_retries=1) as enc:
        assert isinstance(enc, WorkersAIEncoder) and enc.dim is None
        docs = enc.encode_corpus(texts)
        queries = enc.encode_queries("document 3")
    assert docs.modes == ("dense",) and docs.dense.shape == (130, DIM) and enc.dim == DIM and enc.pooling == "cls"
    np.testing.assert_allclose(np.linalg.norm(docs.dense, axis=1), 1.0, rtol=1e-5)
    np.testing.assert_allclose(docs.dense, oracle(texts), rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(queries.dense[0], docs.dense[3], rtol=1e-6)
    assert docs.encoder == enc.info and enc.info.name == "workers-ai" and enc.info.model_id == "@cf/baai/bge-m3"
    assert [c.body["truncate_inputs"] for c in server.calls("text")] == [True, True, True]


def test_encoder_with_empty_documents_skips_them_or_says_to(server):
    """The API rejects empty texts (schema minLength 1), so keeping them is refused before any request."""
    texts = ["document 1", "", "document 2", "  "]
    with WorkersAIEncoder(base_url=server.base_url, max_retries=0) as enc:
        with pytest.raises(InputError, match=r"2 documents are empty.*\(indices 1, 3\).*empty='skip'"):
            enc.encode_corpus(texts)
        assert server.calls("text") == []
        docs = enc.encode_corpus(texts, empty="skip")
    np.testing.assert_allclose(docs.dense, oracle(["document 1", "document 2"]), rtol=1e-5, atol=1e-6)


def test_encoder_normalises_and_checks_what_the_server_sends(server):
    def body(rows, pooling="cls"):
        return {"result": {"data": rows, "shape": [len(rows), len(rows[0])], "pooling": pooling}, "success": True}

    enc = WorkersAIEncoder(base_url=server.base_url, max_retries=0)
    server.inject(200, body=body([[3.0, 4.0], [0.0, 2.0]]))
    np.testing.assert_allclose(enc.encode_corpus(["a", "b"]).dense, [[0.6, 0.8], [0.0, 1.0]], rtol=1e-6)
    server.inject(200, body=body([[1.0, 0.0, 0.0]]))
    with pytest.raises(APIResponseError, match="3-d vectors after 2-d"):
        enc.encode_corpus(["a"])
    server.inject(200, body=body([[1.0, 0.0]], pooling="mean"))
    with pytest.raises(APIResponseError, match="pooling"):
        enc.encode_corpus(["a"])
    server.inject(200, body=body([[0.0, 0.0]]))
    with pytest.raises(APIResponseError, match="all-zero"):
        enc.encode_corpus(["a"])
    enc.close()


def test_encoder_fingerprint_and_options(server):
    cf = endpoint_fingerprint(
        "@cf/baai/bge-m3", "https://api.cloudflare.com/client/v4/accounts/a/ai/run/@cf/baai/bge-m3"
    )
    gw = endpoint_fingerprint("@cf/baai/bge-m3", "https://gateway.ai.cloudflare.com/v1/b/g/workers-ai/@cf/baai/bge-m3")
    local = WorkersAIEncoder(base_url=server.base_url)
    assert cf == gw and local.info.fingerprint != cf
    assert endpoint_fingerprint("@cf/baai/bge-small-en-v1.5", "https://api.cloudflare.com/x") != cf
    assert WorkersAIEncoder(base_url=server.base_url, fingerprint="pinned").info.fingerprint == "pinned"
    with WorkersAIClient(base_url=server.base_url) as c:
        shared = WorkersAIEncoder(client=c)
        assert shared.info == local.info
        shared.close()
        assert c.embed("still open").shape == (1, DIM)
        with pytest.raises(ConfigError):
            WorkersAIEncoder(client=c, base_url=server.base_url)
    with pytest.raises(ConfigError):
        WorkersAIEncoder(base_url=server.base_url, truncate_inputs="no")
    with pytest.raises(InputError):
        local.encode_queries([""])
    local.close()
