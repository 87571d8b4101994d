"""``hybridsearch serve`` on a real uvicorn server on 127.0.0.1, driven by real HTTP clients (httpx, requests,
the ``openai`` SDK): every route, every error path, auth, limits, the queue, ingest during searches, shutdown."""

from __future__ import annotations

import base64
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
    assert http.get("/ready").json() == {"ready": True, "model": "@cf/baai/bge-m3", "index_documents": len(DOCS),
                                         "reranker": None}
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
    s = start_server(enc, score="all", score_weights=(0.0, 1.0, 0.0))
    try:
        q, ctx = "the cat", ["the cat sits", "the sun"]
        r = httpx.post(s.url + RUN, json={"query": q, "contexts": [{"text": t} for t in ctx]}, timeout=30).json()
        got = {it["id"]: it["score"] for it in r["result"]["response"]}
        qs, cs = enc.encode_queries([q], outputs="sparse").sparse, enc.encode_corpus(ctx, outputs="sparse").sparse
        lexical = np.asarray((cs @ qs.T).todense()).ravel()  # bge-m3's lexical matching score
        assert lexical[0] > 0 and lexical[1] >= 0
        np.testing.assert_allclose([got[0], got[1]], lexical, atol=1e-3, rtol=1e-3)
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
        assert total == 12 + 1 and count < total  # 12 requests and the warm-up call, in fewer encoder calls
    finally:
        s.stop()


# ----------------------------------------------------------------------------------------------- search
def test_search_modes_filter_and_fields(http, enc, index_dir):
    ref = HybridIndex.load(index_dir)
    q = "the cat dog"
    for mode in ("dense", "sparse", "hybrid", "multivector"):
        r = http.post("/v1/search", json={"query": q, "k": 5, "mode": mode})
        assert r.status_code == 200, r.text
        body = r.json()
        assert body["mode"] == mode and len(body["hits"]) == 5
        expected = ref.search(enc.encode_queries([q], outputs=("dense", "sparse", "multivector")), k=5, mode=mode)[0]
        assert [h["id"] for h in body["hits"]] == [h.doc_id for h in expected]
        np.testing.assert_allclose([h["score"] for h in body["hits"]], [h.score for h in expected], rtol=1e-4, atol=1e-6)
        top = body["hits"][0]
        assert top["text"] == next(d["text"] for d in DOCS if d["id"] == top["id"])
        assert top["metadata"] == next(d["metadata"] for d in DOCS if d["id"] == top["id"])
        assert set(body["timing"]) == {"encode_ms", "search_ms", "total_ms"} and body["timing"]["total_ms"] >= 0
        assert body["reranked"] == (mode in ("hybrid", "multivector")) and body["reranker"] is None
    fused = http.post("/v1/search", json={"query": q, "k": 3, "mode": "dense+sparse"}).json()
    assert fused["reranked"] is False and fused["reranker"] is None and set(fused["hits"][0]["ranks"]) == {"dense", "sparse"}
    top = fused["hits"][0]
    assert set(top["scores"]) == {"dense", "sparse"}
    qd = enc.encode_queries([q], outputs="dense").dense[0]
    np.testing.assert_allclose(top["scores"]["dense"], float(dense(enc, [top["text"]])[0] @ qd), rtol=1e-4, atol=1e-5)
    flt = http.post("/v1/search", json={"query": q, "k": 30, "filter": {"topic": "sky"}}).json()
    assert flt["hits"] and {h["metadata"]["topic"] for h in flt["hits"]} == {"sky"}
    ws = http.post("/v1/search", json={"query": q, "fusion": "weighted_sum(dense=1,sparse=0.3)", "mode": "dense+sparse"})
    assert ws.status_code == 200 and ws.json()["mode"] == "dense+sparse"


def test_search_with_a_reranker_on_and_off(enc, index_dir, tmp_path):
    from hybridsearch.rerankers import BGEM3Reranker

    path = copy_index(index_dir, tmp_path / "index")
    reranker = BGEM3Reranker(enc)
    s = ServerThread(ServerConfig(port=0, index=str(path)), encoder=enc, index_encoder=enc, reranker=reranker).start()
    try:
        with httpx.Client(base_url=s.url, timeout=30) as h:
            q = "the cat dog"
            on = h.post("/v1/search", json={"query": q, "k": 4, "mode": "dense"}).json()
            off = h.post("/v1/search", json={"query": q, "k": 4, "mode": "dense", "rerank": False}).json()
        assert on["reranked"] is True and on["reranker"] == "BGEM3Reranker" and len(on["hits"]) == 4
        assert off["reranked"] is False and off["reranker"] is None
        assert "rerank" in on["hits"][0]["ranks"] and "rerank" not in off["hits"][0]["ranks"]
        from hybridsearch.retriever import Retriever

        expected = Retriever(enc, HybridIndex.load(path), reranker=reranker).retrieve(q, k=4, mode="dense")[0]
        assert [x["id"] for x in on["hits"]] == [x.doc_id for x in expected]
    finally:
        s.stop()


@pytest.mark.parametrize(
    "body",
    [
        {"query": ""}, {"query": "  "}, {"query": None}, {"query": 5}, {"k": 3}, {"query": "a", "k": 0},
        {"query": "a", "k": "ten"}, {"query": "a", "mode": "telepathy"}, {"query": "a", "filter": {"nosuch": 1}},
        {"query": "a", "fusion": "magic"}, {"query": "a", "surprise": 1}, {"query": "a", "k": 5000},
        {"query": "a", "filter": {"topic": {"$regex": "x"}}},
    ],
    ids=["empty", "whitespace", "none", "int", "missing", "k0", "k-str", "mode", "filter-field", "fusion", "unknown-field",
         "k-over-limit", "filter-op"],
)  # fmt: skip
def test_bad_search_requests(http, body):
    status, code, _ = err(http.post("/v1/search", json=body))
    assert (status, code) == (400, Code.BAD_INPUT)


# ----------------------------------------------------------------------------------------------- ingest
def _search_ids(h, q, k=30):
    return [x["id"] for x in h.post("/v1/search", json={"query": q, "k": k}).json()["hits"]]


def test_ingest_upsert_delete_and_commit_policy(fresh):
    s, path = fresh(commit_every=3, commit_interval_s=3600)
    gen0 = HybridIndex.load(path).generation
    with httpx.Client(base_url=s.url, timeout=30) as h:
        new = [{"id": "n1", "text": "the red fish sleeps", "metadata": {"topic": "new"}},
               {"id": "n2", "text": "the blue bird rises"}]  # fmt: skip
        r = h.post("/v1/documents", json={"documents": new}).json()
        assert r == {"upserted": 2, "documents": len(DOCS) + 2, "uncommitted": 2}
        assert HybridIndex.load(path).generation == gen0  # below commit_every: not on disk yet
        assert "n1" in _search_ids(h, "red fish sleeps")
        hit = next(x for x in h.post("/v1/search", json={"query": "red fish", "k": 30}).json()["hits"] if x["id"] == "n1")
        assert hit["metadata"] == {"topic": "new"} and hit["text"] == "the red fish sleeps"
        # Replace n1: same id, new text.
        r = h.post("/v1/documents", json={"documents": [{"id": "n1", "text": "the green cow eats"}]}).json()
        assert r["documents"] == len(DOCS) + 2 and r["uncommitted"] == 0  # the third change committed
        on_disk = HybridIndex.load(path)
        assert on_disk.generation > gen0 and on_disk.get("n1").text == "the green cow eats" and "n2" in on_disk
        # Delete one, then a bulk delete with an unknown id deletes nothing.
        assert h.delete("/v1/documents/n2").json() == {"deleted": 1, "documents": len(DOCS) + 1, "uncommitted": 1}
        status, code, msg = err(h.delete("/v1/documents/n2"))
        assert (status, code) == (404, Code.UNKNOWN_DOCUMENT) and "n2" in msg
        status, code, _ = err(h.post("/v1/documents/delete", json={"ids": ["animal-0", "nope"]}))
        assert (status, code) == (404, Code.UNKNOWN_DOCUMENT)
        assert "animal-0" in _search_ids(h, "the cat dog bird fish")
        r = h.post("/v1/documents/delete", json={"ids": ["animal-0", "animal-1", "animal-0"]}).json()
        assert r["deleted"] == 2 and r["documents"] == len(DOCS) - 1
        assert not {"animal-0", "animal-1", "n2"} & set(_search_ids(h, "the cat dog bird fish"))
        assert h.post("/v1/commit").json()["committed"] in (True, False)
        assert h.post("/v1/commit").json()["committed"] is False  # nothing left to commit
    on_disk = HybridIndex.load(path)
    assert len(on_disk) == len(DOCS) - 1 and "animal-0" not in on_disk


def test_commit_after_an_interval(fresh):
    s, path = fresh(commit_every=1000, commit_interval_s=0.2)
    with httpx.Client(base_url=s.url, timeout=30) as h:
        h.post("/v1/documents", json={"documents": [{"id": "t1", "text": "the sun rises"}]}).raise_for_status()
        deadline = time.monotonic() + 20
        while "t1" not in HybridIndex.load(path):
            assert time.monotonic() < deadline, "no commit after the interval"
            time.sleep(0.05)
        assert "hybridsearch_index_commits_total 1.0" in h.get("/metrics").text


@pytest.mark.parametrize(
    "body",
    [
        {"documents": []}, {"documents": [{"id": "x", "text": ""}]}, {"documents": [{"id": "x", "text": "  "}]},
        {"documents": [{"id": "", "text": "a"}]}, {"documents": [{"id": "x", "text": None}]},
        {"documents": [{"id": 5, "text": "a"}]}, {"documents": [{"id": "x", "text": "a", "extra": 1}]},
        {"documents": [{"id": "x", "text": "a"}, {"id": "x", "text": "b"}]}, {"documents": "x"}, {"docs": []},
        {"documents": [{"id": "x", "text": "a", "metadata": [1, 2]}]},
    ],
    ids=["none", "empty-text", "whitespace", "empty-id", "null-text", "int-id", "unknown-field", "dup-id", "not-list",
         "wrong-key", "metadata-list"],
)  # fmt: skip
def test_bad_ingest_never_changes_the_index(fresh, body):
    s, path = fresh(commit_every=1, commit_interval_s=0.05)
    before = sorted(p.name for p in path.iterdir())
    with httpx.Client(base_url=s.url, timeout=30) as h:
        status, code, _ = err(h.post("/v1/documents", json=body))
        assert (status, code) == (400, Code.BAD_INPUT)
        assert h.get("/ready").json()["index_documents"] == len(DOCS)
        status, _, _ = err(h.post("/v1/documents/delete", json={"ids": []}))
        assert status == 400
    time.sleep(0.2)
    assert sorted(p.name for p in path.iterdir()) == before and len(HybridIndex.load(path)) == len(DOCS)


@pytest.mark.slow
def test_concurrent_ingest_and_search(fresh):
    s, path = fresh(commit_every=10, commit_interval_s=0.1)
    errors: list[str] = []
    stop = threading.Event()
    searched = [0]

    def searcher():
        with httpx.Client(base_url=s.url, timeout=60) as h:
            while not stop.is_set() and searched[0] < 2000:
                r = h.post("/v1/search", json={"query": "the cat sun", "k": 5, "mode": "hybrid"})
                if r.status_code != 200 or len(r.json()["hits"]) != 5:
                    errors.append(r.text)
                searched[0] += 1

    threads = [threading.Thread(target=searcher) for _ in range(3)]
    for t in threads:
        t.start()
    try:
        with httpx.Client(base_url=s.url, timeout=60) as h:
            for b in range(8):
                docs = [{"id": f"c{b}-{i}", "text": f"the cat {b} sun {i}"} for i in range(5)]
                r = h.post("/v1/documents", json={"documents": docs})
                assert r.status_code == 200, r.text
            h.post("/v1/documents/delete", json={"ids": [f"c0-{i}" for i in range(5)]}).raise_for_status()
    finally:
        stop.set()
        for t in threads:
            t.join(60)
    assert not errors and searched[0] > 0
    with httpx.Client(base_url=s.url, timeout=30) as h:
        assert h.get("/ready").json()["index_documents"] == len(DOCS) + 35
    s.stop()
    assert len(HybridIndex.load(path)) == len(DOCS) + 35


@pytest.mark.slow
def test_shutdown_finishes_requests_in_flight_and_commits(fresh):
    s, path = fresh(commit_every=1000, commit_interval_s=3600, batch_max_wait_ms=1)
    with httpx.Client(base_url=s.url, timeout=30) as h:
        h.post("/v1/documents", json={"documents": [{"id": "late", "text": "the moon falls"}]}).raise_for_status()
    assert "late" not in HybridIndex.load(path)
    long_texts = [" ".join(["the cat sits with the dog"] * 200)] * 16
    results: list[int] = []

    def call():
        with httpx.Client(timeout=60) as h:
            results.append(h.post(s.url + RUN, json={"text": long_texts}).status_code)

    workers = [threading.Thread(target=call) for _ in range(4)]
    for w in workers:
        w.start()
    deadline = time.monotonic() + 30
    while s.state.metrics.in_flight._value.get() < 4 and time.monotonic() < deadline:
        time.sleep(0.005)
    s.stop()
    for w in workers:
        w.join(60)
    assert results == [200, 200, 200, 200]
    assert "late" in HybridIndex.load(path)  # committed on shutdown


# --------------------------------------------------------------------------------------------- command
@pytest.mark.slow
def test_serve_command_needs_only_the_index_and_stops_on_sigterm(index_dir, tmp_path, enc):
    import os
    import signal
    import socket
    import subprocess
    import sys

    path = copy_index(index_dir, tmp_path / "index")
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    env = {**os.environ, "HYBRIDSEARCH_COMMIT_INTERVAL_S": "3600", "HYBRIDSEARCH_API_TOKEN": "tok"}
    proc = subprocess.Popen([sys.executable, "-m", "hybridsearch.cli", "serve", "--index", str(path), "--port", str(port)],
                            env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)  # fmt: skip
    try:
        url, auth = f"http://127.0.0.1:{port}", {"Authorization": "Bearer tok"}
        deadline = time.monotonic() + 120
        while True:
            assert proc.poll() is None and time.monotonic() < deadline, proc.stdout.read().decode() if proc.poll() is not None else "not ready"
            try:
                if httpx.get(url + "/ready", timeout=5).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            time.sleep(0.2)
        with httpx.Client(base_url=url, headers=auth, timeout=30) as h:
            hits = h.post("/v1/search", json={"query": "the cat dog", "k": 3}).json()["hits"]
            q = enc.encode_queries(["the cat dog"], outputs=("dense", "sparse", "multivector"))
            assert [x["id"] for x in hits] == [x.doc_id for x in HybridIndex.load(path).search(q, k=3)[0]]
            assert h.post(RUN, json={"text": "the cat"}).json()["result"]["shape"] == [1, 32]
            h.post("/v1/documents", json={"documents": [{"id": "cli", "text": "the star shines"}]}).raise_for_status()
        assert "cli" not in HybridIndex.load(path)
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(60) in (0, -signal.SIGTERM)  # uvicorn re-raises the signal after a clean shutdown
        assert "cli" in HybridIndex.load(path)  # committed on shutdown
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(10)
