"""``hybridsearch serve`` on a real uvicorn server on 127.0.0.1, driven by real HTTP clients (httpx, requests,
the ``openai`` SDK): every route, every error path, auth, limits, the queue, ingest during searches, shutdown."""

from __future__ import annotations

import base64
import json
import threading
import time
from concurrent.futures import ThreadPoolExecutor

import httpx
import numpy as np
import pytest
from loopback import start_server
from server_index import DOCS, build_index, copy_index

from hybridsearch.contract.workers_ai import Code
from hybridsearch.index import HybridIndex
from hybridsearch.server import ServerConfig, ServerThread

RUN = "/ai/run/@cf/baai/bge-m3"
CF_RUN = "/client/v4/accounts/0123abcd/ai/run/@cf/baai/bge-m3"
pytestmark = pytest.mark.timeout(300)


@pytest.fixture(scope="module")
def enc(tiny_bge_m3_encoder):
    return tiny_bge_m3_encoder


@pytest.fixture(scope="module")
def index_dir(tmp_path_factory, enc, tiny_bge_m3_dir):
    return build_index(tmp_path_factory.mktemp("served") / "index", enc, tiny_bge_m3_dir)


@pytest.fixture(scope="module")
def srv(enc, index_dir, tmp_path_factory):
    path = copy_index(index_dir, tmp_path_factory.mktemp("ro") / "index")
    s = start_server(enc, index_encoder=enc, index=str(path))
    yield s
    s.stop()


@pytest.fixture
def http(srv):
    with httpx.Client(base_url=srv.url, timeout=30) as c:
        yield c


@pytest.fixture
def fresh(enc, index_dir, tmp_path):
    """A server of its own on a private copy of the index (for tests that change or stop it)."""
    started: list[ServerThread] = []

    def make(**config):
        path = copy_index(index_dir, tmp_path / f"index{len(started)}")
        s = start_server(enc, index_encoder=enc, index=str(path), **config)
        started.append(s)
        return s, path

    yield make
    for s in started:
        s.stop()


def dense(enc, texts, query=False):
    fn = enc.encode_queries if query else enc.encode_corpus
    return fn(texts, outputs="dense").dense


def err(r: httpx.Response) -> tuple[int, int, str]:
    body = r.json()
    assert body["success"] is False and body["messages"] == [] and len(body["errors"]) == 1
    return r.status_code, body["errors"][0]["code"], body["errors"][0]["message"]


# ------------------------------------------------------------------------------------------ operations
def test_health_ready_metrics_and_docs(http, srv):
    assert http.get("/health").json() == {"status": "ok"}
    assert http.get("/ready").json() == {"ready": True, "model": "@cf/baai/bge-m3", "index_documents": len(DOCS)}
    http.post(RUN, json={"text": "the cat"})
    text = http.get("/metrics").text
    assert 'hybridsearch_requests_total{method="POST",route="/ai/run/{model:path}",status="200"}' in text
    assert f"hybridsearch_index_documents {float(len(DOCS))}" in text
    for name in ("hybridsearch_request_seconds_bucket", "hybridsearch_queue_depth", "hybridsearch_encode_batch_texts_bucket"):
        assert name in text
    spec = http.get("/openapi.json").json()
    assert {"/v1/embeddings", "/v1/search", "/v1/documents", "/ai/run/{model}"} <= set(spec["paths"])
    assert "requestBody" in spec["paths"]["/v1/search"]["post"]
    assert http.get("/docs").status_code == 200
    r = http.get(RUN)
    assert err(r)[:2] == (405, Code.METHOD_NOT_ALLOWED)
    assert err(http.get("/nowhere"))[:2] == (404, Code.NO_ROUTE)


def test_ready_fails_while_loading_fails_and_health_still_answers(tmp_path):
    s = ServerThread(ServerConfig(port=0, index=str(tmp_path / "missing")))
    s.start(wait_ready=False)
    try:
        deadline = time.monotonic() + 30
        while not s.state.load_error and time.monotonic() < deadline:
            time.sleep(0.02)
        assert httpx.get(s.url + "/health").status_code == 200
        status, code, msg = err(httpx.get(s.url + "/ready"))
        assert (status, code) == (503, Code.NOT_READY) and "failed to load" in msg
        assert err(httpx.post(s.url + RUN, json={"text": "a"}))[:2] == (503, Code.NOT_READY)
    finally:
        s.stop()


# ---------------------------------------------------------------------------------- Workers AI routes
def test_cloudflare_documented_requests_work_unchanged(srv, enc):
    """The Python example of Cloudflare's bge-m3 page, with only the URL changed."""
    import requests

    API_BASE_URL = f"{srv.url}/client/v4/accounts/0123abcd/ai/run/"
    headers = {"Authorization": "Bearer {API_TOKEN}"}

    def run(model, input):
        response = requests.post(f"{API_BASE_URL}{model}", headers=headers, json=input, timeout=30)
        return response.json()

    texts = ["This is a story about an orange cloud", "This is a story about a llama",
             "This is a story about a hugging emoji"]  # fmt: skip
    output = run("@cf/baai/bge-m3", {"text": texts})
    assert output["success"] is True and output["errors"] == [] and output["messages"] == []
    res = output["result"]
    assert res["shape"] == [3, 32] and res["pooling"] == "cls"
    np.testing.assert_allclose(res["data"], dense(enc, texts), rtol=1e-5, atol=2e-6)

    contexts = [{"text": "This is a story about an orange cloud"}, {"text": "This is a story about a llama"},
                {"text": "This is a story about a hugging emoji"}]  # fmt: skip
    output = run("@cf/baai/bge-m3", {"query": "A story about a llama", "contexts": contexts})
    items = output["result"]["response"]
    assert sorted(it["id"] for it in items) == [0, 1, 2]
    assert [it["score"] for it in items] == sorted((it["score"] for it in items), reverse=True)
    expected = dense(enc, [c["text"] for c in contexts]) @ dense(enc, ["A story about a llama"], query=True)[0]
    got = np.array([next(it["score"] for it in items if it["id"] == i) for i in range(3)])
    np.testing.assert_allclose(got, expected, atol=1e-3)
    assert all(np.float16(s) == s for s in got)  # fp16-rounded, as Cloudflare's

    output = run("@cf/baai/bge-m3", {"contexts": contexts})  # no query: context embeddings (form 2)
    assert output["result"]["shape"] == [3, 32] and len(output["result"]["response"]) == 3


def test_both_url_forms_and_unknown_model(http):
    a = http.post(RUN, json={"text": "the cat"}).json()["result"]["data"]
    b = http.post(CF_RUN, json={"text": "the cat"}).json()["result"]["data"]
    np.testing.assert_allclose(a, b, rtol=1e-5, atol=2e-6)
    assert err(http.post("/ai/run/@cf/baai/bge-m4", json={"text": "a"}))[:2] == (400, Code.NO_SUCH_MODEL)


def test_score_all_views_with_weights(enc, index_dir, tmp_path):
    s = start_server(enc, score="all", score_weights=(1.0, 0.0, 0.0))
    try:
        q, ctx = "the cat", ["the cat sits", "the sun"]
        r = httpx.post(s.url + RUN, json={"query": q, "contexts": [{"text": t} for t in ctx]}, timeout=30).json()
        got = {it["id"]: it["score"] for it in r["result"]["response"]}
        expected = dense(enc, ctx) @ dense(enc, [q], query=True)[0]  # weight only on dense: the dense score
        np.testing.assert_allclose([got[0], got[1]], expected, atol=1e-3)
    finally:
        s.stop()
    s = start_server(enc, score="all")
    try:
        r = httpx.post(s.url + RUN, json={"query": "the cat", "contexts": [{"text": "the cat sits"}]}, timeout=30)
        assert r.status_code == 200 and len(r.json()["result"]["response"]) == 1
    finally:
        s.stop()


BAD_RUN_BODIES = {
    "empty-text": {"text": ""},
    "whitespace-text": {"text": "   "},
    "whitespace-in-list": {"text": ["ok", " \n"]},
    "null-text": {"text": None},
    "number-text": {"text": 5},
    "empty-list": {"text": []},
    "over-100": {"text": ["a"] * 101},
    "both-forms": {"text": "a", "contexts": [{"text": "b"}]},
    "context-without-text": {"contexts": [{"external_reference": "x"}]},
    "empty-query": {"query": "", "contexts": [{"text": "b"}]},
    "bad-flag": {"text": "a", "truncate_inputs": "yes"},
    "not-an-object": ["a"],
    "queue-without-batch": None,
}


@pytest.mark.parametrize("name", sorted(BAD_RUN_BODIES))
def test_bad_workers_ai_input_gets_5006(http, name):
    body = BAD_RUN_BODIES[name]
    if name == "queue-without-batch":
        r = http.post(RUN, json={"text": "a"}, params={"queueRequest": "true"})
    else:
        r = http.post(RUN, json=body)
    status, code, msg = err(r)
    assert (status, code) == (400, Code.BAD_INPUT) and msg.startswith("AiError: Bad input: Error:")
    assert r.json()["result"] == {}


@pytest.mark.parametrize("raw", [b"{", b"", b'{"text": NaN}', b'{"text": ["a"], "x": Infinity}', b"\xff\xfe"],
                         ids=["truncated", "empty", "nan", "infinity", "not-utf8"])  # fmt: skip
def test_invalid_json_gets_5004_on_every_route(http, raw):
    for path in (RUN, "/v1/embeddings", "/v1/search", "/v1/documents"):
        r = http.post(path, content=raw, headers={"Content-Type": "application/json"})
        assert err(r)[:2] == (400, Code.INVALID_DATA), path


def test_unknown_keys_are_ignored_on_the_workers_ai_route(http):
    r = http.post(RUN, json={"text": "a", "unknown": 1, "contexts_x": []})
    assert r.status_code == 200 and r.json()["result"]["shape"] == [1, 32]


def test_token_limits_and_truncation(enc):
    s = start_server(enc, max_input_tokens=10, max_request_tokens=30)
    tok = enc._flag.tokenizer
    long_text = "the cat the dog the bird the fish the cow the sun"  # 12 words + 2 specials
    try:
        with httpx.Client(base_url=s.url, timeout=30) as h:
            status, code, msg = err(h.post(RUN, json={"text": ["the cat", long_text]}))
            assert (status, code) == (400, 5006) and "input 1 has 14 tokens, over the 10-token limit" in msg
            status, code, msg = err(h.post(RUN, json={"query": long_text, "contexts": [{"text": "a"}]}))
            assert "query has 14 tokens" in msg
            r = h.post(RUN, json={"text": ["the cat", long_text], "truncate_inputs": True}).json()["result"]
            cut = tok.decode(tok(long_text, add_special_tokens=False)["input_ids"][:8])
            np.testing.assert_allclose(r["data"], dense(enc, ["the cat", cut]), rtol=1e-5, atol=2e-6)
            status, code, msg = err(h.post(RUN, json={"text": ["the cat the dog the bird the"] * 4}))
            assert code == 5006 and "over the 30-token limit per request" in msg
            status, code, msg = err(h.post("/v1/embeddings", json={"input": long_text, "model": "@cf/baai/bge-m3"}))
            assert code == 5006 and "14 tokens" in msg
    finally:
        s.stop()


# ------------------------------------------------------------------------------------------- the queue
def test_queue_capacity_retention_and_external_reference(enc):
    s = start_server(enc, queue_capacity=2, queue_retention_s=0.5)
    try:
        with httpx.Client(base_url=s.url, timeout=30) as h:
            s.state.queue.pause()
            q = {"queueRequest": "true"}
            ids = []
            for ref in ("r1", "r2"):
                body = {"requests": [{"text": ["the cat"], "external_reference": ref},
                                     {"query": "cat", "contexts": [{"text": "the cat"}]}]}  # fmt: skip
                res = h.post(RUN, params=q, json=body).json()["result"]
                assert res["status"] == "queued" and res["model"] == "@cf/baai/bge-m3"
                ids.append(res["request_id"])
            full = h.post(RUN, params=q, json={"requests": [{"text": "x"}]})
            status, code, msg = err(full)
            assert (status, code) == (429, Code.OUT_OF_CAPACITY) and full.headers["retry-after"] == "1"
            assert "hybridsearch_queue_depth 2.0" in h.get("/metrics").text
            assert h.post(RUN, json={"request_id": ids[0]}).json()["result"] == {"status": "queued", "request_id": ids[0]}
            s.state.queue.resume()
            deadline = time.monotonic() + 30
            while "responses" not in (done := h.post(RUN, json={"request_id": ids[1]}).json()["result"]):
                assert done["status"] in ("queued", "running") and time.monotonic() < deadline
                time.sleep(0.02)
            assert [r["external_reference"] for r in done["responses"]] == ["r2", None]
            assert all(r["success"] for r in done["responses"]) and done["usage"]["prompt_tokens"] > 0
            assert "status" not in done
            time.sleep(0.7)  # past the retention time
            status, code, _ = err(h.post(RUN, json={"request_id": ids[1]}, params=q))
            assert (status, code) == (404, Code.UNKNOWN_REQUEST)
    finally:
        s.stop()


# ----------------------------------------------------------------------------------------------- auth
def test_bearer_auth(enc):
    s = start_server(enc, api_token="s3cret")
    try:
        with httpx.Client(base_url=s.url, timeout=30) as h:
            for headers in ({}, {"Authorization": "Bearer wrong"}, {"Authorization": "s3cret"}, {"Authorization": "Bearer s3cre"}, {"Authorization": "bearer s3cret"}):
                status, code, _ = err(h.post(RUN, json={"text": "a"}, headers=headers))
                assert (status, code) == (401, Code.AUTHENTICATION)
            assert err(h.get("/metrics"))[:2] == (401, Code.AUTHENTICATION)
            assert err(h.post("/v1/embeddings", json={"input": "a", "model": "@cf/baai/bge-m3"}))[0] == 401
            assert h.get("/health").status_code == 200 and h.get("/ready").status_code == 200
            good = {"Authorization": "Bearer s3cret"}
            assert h.post(RUN, json={"text": "a"}, headers=good).status_code == 200
            assert h.get("/metrics", headers=good).status_code == 200
    finally:
        s.stop()


def test_body_and_count_limits(enc):
    s = start_server(enc, max_body_bytes=2000, max_texts=3, max_contexts=2)
    try:
        with httpx.Client(base_url=s.url, timeout=30) as h:
            status, code, _ = err(h.post(RUN, json={"text": "x" * 5000}))
            assert (status, code) == (413, Code.TOO_LARGE)

            def chunks():  # no Content-Length: the limit is counted while reading
                for _ in range(10):
                    yield b" " * 500

            r = h.post(RUN, content=chunks(), headers={"Content-Type": "application/json"})
            assert err(r)[:2] == (413, Code.TOO_LARGE)
            assert err(h.post(RUN, json={"text": ["a", "b", "c", "d"]}))[:2] == (400, 5006)
            assert err(h.post(RUN, json={"query": "q", "contexts": [{"text": "a"}] * 3}))[:2] == (400, 5006)
            assert err(h.post("/v1/embeddings", json={"input": ["a"] * 4, "model": "@cf/baai/bge-m3"}))[:2] == (400, 5006)
            assert h.post(RUN, json={"text": ["a", "b", "c"]}).status_code == 200
    finally:
        s.stop()


# --------------------------------------------------------------------------------------- /v1/embeddings
def test_openai_sdk_against_the_server(srv, enc):
    import openai

    client = openai.OpenAI(base_url=srv.url + "/v1", api_key="unused", max_retries=0)
    texts = ["the cat sits", "the dog runs"]
    for fmt in ("float", "base64", None):
        kwargs = {} if fmt is None else {"encoding_format": fmt}
        resp = client.embeddings.create(model="@cf/baai/bge-m3", input=texts, **kwargs)
        rows = [d.embedding for d in sorted(resp.data, key=lambda d: d.index)]
        if fmt == "base64":  # asked for explicitly, the SDK hands the string over as sent
            rows = [np.frombuffer(base64.b64decode(r), dtype="<f4") for r in rows]
        got = np.array(rows, np.float32)
        np.testing.assert_allclose(got, dense(enc, texts), rtol=1e-5, atol=2e-6)
    tok = enc._flag.tokenizer
    n = sum(len(tok(t)["input_ids"]) for t in texts)
    assert resp.usage.prompt_tokens == n and resp.usage.total_tokens == n and resp.model == "@cf/baai/bge-m3"
    one = client.embeddings.create(model="@cf/baai/bge-m3", input="the cat sits", encoding_format="float")
    assert len(one.data) == 1 and len(one.data[0].embedding) == 32
    with pytest.raises(openai.BadRequestError, match="dimensions=16 is not supported"):
        client.embeddings.create(model="@cf/baai/bge-m3", input="a", dimensions=16)
    assert client.embeddings.create(model="@cf/baai/bge-m3", input="a", dimensions=32).data[0].index == 0
    with pytest.raises(openai.BadRequestError):
        client.embeddings.create(model="text-embedding-3-small", input="a")


def test_embeddings_base64_bytes_and_bad_requests(http, enc):
    r = http.post("/v1/embeddings", json={"input": "the cat", "model": "@cf/baai/bge-m3", "encoding_format": "base64"})
    vec = np.frombuffer(base64.b64decode(r.json()["data"][0]["embedding"]), dtype="<f4")
    np.testing.assert_allclose(vec, dense(enc, ["the cat"])[0], rtol=1e-5, atol=2e-6)
    bad = [
        {"input": "", "model": "@cf/baai/bge-m3"},
        {"input": ["a", "  "], "model": "@cf/baai/bge-m3"},
        {"input": None, "model": "@cf/baai/bge-m3"},
        {"input": [1, 2, 3], "model": "@cf/baai/bge-m3"},
        {"input": "a"},
        {"input": "a", "model": "@cf/baai/bge-m3", "encoding_format": "int8"},
        {"input": "a", "model": "@cf/baai/bge-m3", "surprise": True},
    ]
    for body in bad:
        assert err(http.post("/v1/embeddings", json=body))[:2] == (400, Code.BAD_INPUT), body


def test_micro_batching_merges_concurrent_requests(enc):
    s = start_server(enc, batch_max_wait_ms=50, batch_max_texts=64)
    try:
        texts = [f"the cat number {i}" for i in range(12)]
        with ThreadPoolExecutor(12) as pool, httpx.Client(base_url=s.url, timeout=30) as h:
            answers = list(pool.map(lambda t: h.post(RUN, json={"text": t}).json()["result"]["data"][0], texts))
            metrics = h.get("/metrics").text
        np.testing.assert_allclose(answers, dense(enc, texts), rtol=1e-4, atol=1e-5)
        count = float(next(line.split()[-1] for line in metrics.splitlines() if line.startswith("hybridsearch_encode_batch_calls_count")))
        total = float(next(line.split()[-1] for line in metrics.splitlines() if line.startswith("hybridsearch_encode_batch_calls_sum")))
        assert total >= 12 + 2 and count < total  # 12 requests (plus warm-up) in fewer encoder calls
    finally:
        s.stop()
