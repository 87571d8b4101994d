"""Rerankers: the scoring API over real HTTP to the real server (``hybridsearch serve``, tiny bge-m3) on loopback
(ids, splitting, concurrency, time budget, failures), bge-m3 compute_score semantics and the cross-encoder on tiny
models built at test time. A fault-injecting httpx transport (tests/loopback.py) delays requests or answers what
the real server cannot be made to answer on demand (5xx, 429, malformed bodies)."""

from __future__ import annotations

import asyncio
import logging

import numpy as np
import pytest
from loopback import Loopback, start_server

from hybridsearch import Retriever
from hybridsearch.encoders import get_encoder
from hybridsearch.errors import ConfigError, ModelLoadError
from hybridsearch.hits import Hits
from hybridsearch.index import HybridIndex
from hybridsearch.rerankers import BGEM3Reranker, CrossEncoderReranker, Reranker, ScoringAPIReranker
from hybridsearch.server.model import find_tokenizer

DOCS = [
    "the cat sits on the red sun", "a dog runs in the rain", "protein gene cell cancer study",
    "vaccine dose reduces virus risk in patient blood", "the bird eats fish from the water",
    "sparse dense hybrid retrieval index", "a small horse sleeps in the snow",
    "brain heart disease risk increases with old age", "the moon rises over the cloud and the sky",
    "drug study reduces cancer risk",
]
IDS = [f"d{i}" for i in range(len(DOCS))]
QUERIES = ["cancer risk study", "dog in the rain"]
CLIENT = {"timeout": 10.0, "backoff_initial": 0.01, "backoff_max": 0.05}


def make_hits(n_queries: int = 2, k: int = 8, texts: list[str] = DOCS) -> Hits:
    """First-stage hits: query i gets documents i, i+1, ... in that order, with their texts."""
    rows = np.array([[(i + j) % len(texts) for j in range(k)] for i in range(n_queries)])
    scores = np.tile(np.linspace(1.0, 0.1, k), (n_queries, 1))
    doc_ids = np.array([[f"d{r}" for r in row] for row in rows], dtype=object)
    tx = np.array([[texts[r] for r in row] for row in rows], dtype=object)
    return Hits(rows, scores, doc_ids, {"sparse": np.tile(np.arange(1, k + 1), (n_queries, 1))}, texts=tx)


@pytest.fixture(scope="module")
def model(tiny_bge_m3_encoder):
    return tiny_bge_m3_encoder


@pytest.fixture(scope="module")
def running(model):
    srv = start_server(model)
    yield srv
    srv.stop()


@pytest.fixture
def server(running):
    return Loopback(running)


def reranker(server: Loopback, max_retries: int = 1, **options) -> ScoringAPIReranker:
    """A ScoringAPIReranker whose blocking and async clients go through ``server``'s fault transport."""
    client = server.client(max_retries=max_retries, **CLIENT)
    aclient = server.async_client(max_retries=max_retries, **CLIENT)
    return ScoringAPIReranker(base_url=server.base_url, client=client, async_client=aclient, **options)


def score_value(query: str, context: str, model) -> float:
    """The model's score in process: cosine of the dense vectors, rounded to fp16 like Cloudflare's."""
    q = model.encode_queries([query], outputs="dense").dense[0]
    return float(np.float16(float(model.encode_corpus([context], outputs="dense").dense[0] @ q)))


def served(server: Loopback) -> dict[tuple[str, str], float]:
    """``(query, context) -> score`` as the server answered it, each score placed by the id it came with."""
    out = {}
    for rec in server.calls("query"):
        if rec.status == 200 and isinstance(rec.response, dict):
            for it in rec.response["result"]["response"]:
                out[rec.body["query"], rec.body["contexts"][it["id"]]["text"]] = it["score"]
    return out


def expected_order(query: str, hits: Hits, i: int, scores: dict[tuple[str, str], float]) -> list[str]:
    vals = [(-scores[query, DOCS[int(r)]], j) for j, r in enumerate(hits.rows[i])]
    return [hits.doc_ids[i, j] for _, j in sorted(vals)]


# ----------------------------------------------------------------------------------- scoring API
def test_scores_are_placed_by_returned_id_and_reorder_the_hits(server, model):
    rr = reranker(server)
    hits = make_hits()
    out = rr.rerank(QUERIES, hits)
    # The server lists results best first, not in context order: the reranker must map them by id.
    listed = [[it["id"] for it in rec.response["result"]["response"]] for rec in server.calls("query")]
    assert any(ids != sorted(ids) for ids in listed) and all(sorted(ids) == list(range(8)) for ids in listed)
    got = served(server)
    for i, q in enumerate(QUERIES):
        assert [h.doc_id for h in out[i]] == expected_order(q, hits, i, got)
        for h in out[i]:
            assert h.scores["rerank"] == pytest.approx(got[q, DOCS[h.row]], abs=1e-6)
            assert h.scores["rerank"] == pytest.approx(score_value(q, DOCS[h.row], model), abs=1e-3)
            assert h.score == h.scores["rerank"] and h.reranked is True and h.ranks["sparse"] == h.row - i + 1
    assert out.stages[-1]["stage"] == "rerank" and out.stages[-1]["combine"] == "replace"
    assert out.stages[-1]["reranker"]["run_url"].startswith("http://127.0.0.1:")
    assert rr.rerank(QUERIES, hits, k=3).k == 3


def test_calls_are_split_within_count_and_token_limits(model):
    srv = start_server(model, max_request_tokens=30)  # tokens per request on this server, special tokens included
    try:
        server = Loopback(srv)
        tok = find_tokenizer(model)  # the tokenizer the server counts with
        tokens = lambda t: len(tok(t, add_special_tokens=True)["input_ids"])  # noqa: E731 - as the server counts
        rr = reranker(server, max_contexts_per_call=3, max_tokens_per_call=30, token_counter=tokens)
        hits = make_hits()
        plan = rr.plan(QUERIES, hits)
        assert all(len(c.texts) <= 3 for c in plan)
        assert all(tokens(QUERIES[c.query]) + sum(tokens(t) for t in c.texts) <= 30 for c in plan)
        out = rr.rerank(QUERIES, hits)
        assert out.reranked.all(), out.notes
        calls = server.calls("query")
        assert len(calls) == len(plan) and all(r.status == 200 for r in calls)
        assert [h.doc_id for h in out[0]] == expected_order(QUERIES[0], hits, 0, served(server))
        # Without the token limit the same server refuses the oversized requests: the stage degrades, never raises.
        big = reranker(server, max_retries=0).rerank(QUERIES, hits)
        assert not big.reranked.any() and "BadRequestError" in big.notes[0]
        assert server.calls("query")[-1].status == 400
    finally:
        srv.stop()


def test_concurrency_is_bounded(server):
    server.inject(200, times=100, delay=0.05, forward=True)  # a slow scorer: every call held 50 ms
    rr = reranker(server, max_contexts_per_call=1, concurrency=3)
    out = rr.rerank(QUERIES, make_hits())
    assert out.reranked.all()
    assert len(server.calls("query")) == 16 and server.transport.max_in_flight == 3


def test_time_budget_returns_first_stage_order_marks_and_logs(server, caplog):
    server.inject(200, times=100, delay=2.0, forward=True)  # a slow scorer: every call held 2 s
    rr = reranker(server, time_budget=0.25)
    hits = make_hits()
    with caplog.at_level(logging.WARNING, logger="hybridsearch.rerankers"):
        out = rr.rerank(QUERIES, hits)
    # The stage returned before the scorer answered: every call is still held (no status recorded yet).
    assert server.calls() and all(c.status == 0 for c in server.calls())
    np.testing.assert_array_equal(out.rows, hits.rows)
    np.testing.assert_allclose(out.scores, hits.scores)
    assert out.reranked.tolist() == [False, False]
    assert "time budget of 0.25 s exceeded" in out.notes[0] and out[0][0].note == out.notes[0]
    assert "kept their first-stage order" in caplog.text
    # The async twin honours the budget the same way: its calls are given up, never answered.
    n = len(server.calls())
    aout = asyncio.run(rr.arerank(QUERIES, hits))
    assert not aout.reranked.any() and all(c.status == 0 for c in server.calls()[n:])
    rr.close()


@pytest.mark.parametrize(
    ("fault", "reason"),
    [
        ({"status": 500, "times": 10}, "ServerError"),
        ({"status": 200, "times": 10, "body": {"result": {"response": [{"id": 99, "score": 0.5}]}, "success": True,
                                               "errors": [], "messages": []}}, "APIResponseError"),
        ({"status": 200, "times": 10, "body": b"not json"}, "APIResponseError"),
        ({"status": 429, "times": 10, "code": 3036}, "RateLimitError"),
    ],
)
def test_failures_and_malformed_answers_degrade_per_query(server, fault, reason):
    server.inject(**fault)
    rr = reranker(server, max_retries=0)
    hits = make_hits()
    out = rr.rerank(QUERIES, hits)
    np.testing.assert_array_equal(out.rows, hits.rows)
    assert not out.reranked.any() and reason in out.notes[0]


def test_one_query_failing_does_not_spoil_the_others(server):
    server.inject(500, times=1)
    rr = reranker(server, max_retries=0, concurrency=1)
    hits = make_hits()
    out = rr.rerank(QUERIES, hits)
    assert out.reranked.tolist() == [False, True]
    assert [h.doc_id for h in out[1]] == expected_order(QUERIES[1], hits, 1, served(server))
    assert [h.doc_id for h in out[0]] == list(hits.doc_ids[0])


def test_aclose_closes_the_clients_the_reranker_made(server):
    rr = ScoringAPIReranker(base_url=server.base_url)  # makes its own clients
    hits = make_hits()

    async def rerank_then_close():
        await rr.arerank(QUERIES, hits)
        made = rr._async_client
        assert made is not None and not made._http.is_closed
        await rr.aclose()
        return made

    made = asyncio.run(rerank_then_close())
    assert made._http.is_closed and rr._async_client is None
    # closing twice, or a reranker that never made an async client, is fine
    asyncio.run(rr.aclose())
    supplied = reranker(server)  # clients passed in stay open: their owner closes them
    asyncio.run(supplied.arerank(QUERIES, hits))
    asyncio.run(supplied.aclose())
    assert not supplied._async_client._http.is_closed


def test_async_twin_matches_and_fused_combine_is_recorded(server):
    hits = make_hits()
    rr = reranker(server, combine="rrf")
    sync = rr.rerank(QUERIES, hits)
    got = asyncio.run(rr.arerank(QUERIES, hits))
    np.testing.assert_array_equal(got.rows, sync.rows)
    np.testing.assert_allclose(got.scores, sync.scores)
    assert sync.stages[-1]["combine"] == "rrf(k=60)"
    # RRF of the first-stage order and the reranker's order.
    r0 = {h.doc_id: h for h in sync[0]}
    h = r0["d0"]
    assert h.score == pytest.approx(1 / (60 + h.ranks["sparse"]) + 1 / (60 + h.ranks["rerank"]), rel=1e-6)


def test_hits_without_texts_are_kept_and_marked(server):
    hits = make_hits()
    bare = Hits(hits.rows, hits.scores, hits.doc_ids, hits.ranks)
    out = reranker(server).rerank(QUERIES, bare)
    np.testing.assert_array_equal(out.rows, bare.rows)
    assert not out.reranked.any() and "no document text" in out.notes[0]
    assert server.calls("query") == []


def test_bad_configuration_is_refused_up_front(monkeypatch):
    with pytest.raises(ConfigError, match="time_budget"):
        ScoringAPIReranker(base_url="http://127.0.0.1:9", time_budget=0)
    with pytest.raises(ConfigError, match="concurrency"):
        ScoringAPIReranker(base_url="http://127.0.0.1:9", concurrency=0)
    with pytest.raises(ConfigError, match="combine must be"):
        ScoringAPIReranker(base_url="http://127.0.0.1:9", combine="borda")
    monkeypatch.delenv("CLOUDFLARE_ACCOUNT_ID", raising=False)
    monkeypatch.delenv("CLOUDFLARE_API_TOKEN", raising=False)
    with pytest.raises(ConfigError, match="account id and an API token"):
        ScoringAPIReranker()


def test_retriever_with_scoring_api_reranker_end_to_end(server):
    enc = get_encoder("bm25-word").fit(DOCS)
    idx = HybridIndex()
    idx.add(IDS, enc.encode_corpus(DOCS), texts=DOCS)
    rr = reranker(server)
    r = Retriever(enc, idx, reranker=rr, rerank_depth=5)
    hits = r.retrieve(QUERIES, k=3)
    first = Retriever(enc, idx).retrieve(QUERIES, k=5)
    assert hits.k == 3 and hits.reranked.all()
    assert [s["stage"] for s in hits.stages] == ["retrieval", "rerank"]
    got = served(server)
    for i, q in enumerate(QUERIES):
        cand = [h.doc_id for h in first[i]]
        want = sorted(cand, key=lambda d: -got[q, DOCS[IDS.index(d)]])[:3]
        assert [h.doc_id for h in hits[i]] == want
    assert [h.doc_id for h in r.retrieve(QUERIES, k=3, rerank=False)[0]] == [h.doc_id for h in first[0]][:3]
    got = asyncio.run(r.aretrieve(QUERIES, k=3))
    np.testing.assert_array_equal(got.rows, hits.rows)


# ----------------------------------------------------------------------------------- bge-m3 in process
@pytest.fixture(scope="module")
def m3_reranker(tiny_bge_m3_dir):
    return BGEM3Reranker(str(tiny_bge_m3_dir), device="cpu")


def test_bge_m3_reranker_equals_flag_embedding_compute_score(m3_reranker):
    pairs = [(q, d) for q in QUERIES for d in DOCS[:5]]
    ours = m3_reranker.compute_score(pairs)
    flag = m3_reranker.encoder._flag
    # batch_size=1: no padding inside compute_score (see the module docstring)
    want = flag.compute_score(pairs, batch_size=1, max_query_length=512, max_passage_length=512,
                              weights_for_different_modes=[0.4, 0.2, 0.4])
    for name in ("dense", "sparse", "colbert", "sparse+dense", "colbert+sparse+dense"):
        np.testing.assert_allclose(ours[name], want[name], atol=2e-5, err_msg=name)


def test_bge_m3_reranker_reorders_by_the_weighted_score(m3_reranker):
    hits = make_hits()
    out = m3_reranker.rerank(QUERIES, hits)
    want = m3_reranker.compute_score([(QUERIES[0], DOCS[int(r)]) for r in hits.rows[0]])["colbert+sparse+dense"]
    assert [h.row for h in out[0]] == [int(hits.rows[0][j]) for j in np.argsort(-want, kind="stable")]
    assert out.stages[-1]["reranker"]["weights"] == [0.4, 0.2, 0.4]
    dense_only = BGEM3Reranker(m3_reranker.encoder, score="dense").rerank(QUERIES, hits)
    d = m3_reranker.compute_score([(QUERIES[1], DOCS[int(r)]) for r in hits.rows[1]])["dense"]
    assert [h.scores["rerank"] for h in dense_only[1]] == pytest.approx(sorted(d, reverse=True), abs=1e-6)
    with pytest.raises(ConfigError, match="score must be one of"):
        BGEM3Reranker(m3_reranker.encoder, score="all")
    with pytest.raises(ConfigError, match="weights"):
        BGEM3Reranker(m3_reranker.encoder, weights=(1, 1))


# ----------------------------------------------------------------------------------- cross-encoder
@pytest.fixture(scope="module")
def tiny_reranker_dir(tmp_path_factory):
    from tiny_reranker import build_tiny_reranker

    return build_tiny_reranker(tmp_path_factory.mktemp("tiny-reranker"))


@pytest.mark.slow
def test_cross_encoder_scores_equal_flag_reranker_and_a_plain_forward(tiny_reranker_dir):
    import torch
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    rr = CrossEncoderReranker(str(tiny_reranker_dir), device="cpu", batch_size=3)
    pairs = [(q, d) for q in QUERIES for d in DOCS[:6]]
    ours = rr.compute_score(pairs)
    np.testing.assert_allclose(ours, rr._flag.compute_score(pairs, batch_size=4), atol=1e-5)
    tok = AutoTokenizer.from_pretrained(str(tiny_reranker_dir))
    model = AutoModelForSequenceClassification.from_pretrained(str(tiny_reranker_dir)).eval()
    with torch.no_grad():
        for n, (q, d) in enumerate(pairs[:3]):
            logit = model(**tok(q, d, return_tensors="pt")).logits.item()
            assert ours[n] == pytest.approx(logit, abs=1e-5)
    hits = make_hits()
    out = rr.rerank(QUERIES, hits)
    s = rr.compute_score([(QUERIES[0], DOCS[int(r)]) for r in hits.rows[0]])
    assert [h.scores["rerank"] for h in out[0]] == pytest.approx(sorted(s, reverse=True), abs=1e-6)
    assert isinstance(rr, Reranker) and out.stages[-1]["reranker"]["type"] == "CrossEncoderReranker"
    norm = CrossEncoderReranker(str(tiny_reranker_dir), device="cpu", normalize=True).compute_score(pairs[:2])
    np.testing.assert_allclose(norm, 1 / (1 + np.exp(-ours[:2])), atol=1e-6)


def test_cross_encoder_refuses_missing_weights_and_a_missing_head(tmp_path, tiny_reranker_dir):
    import shutil

    from tiny_reranker import build_tiny_reranker

    broken = tmp_path / "no-weights"
    shutil.copytree(tiny_reranker_dir, broken)
    (broken / "model.safetensors").unlink()
    with pytest.raises(ModelLoadError, match="missing model weights"):
        CrossEncoderReranker(str(broken), device="cpu")
    headless = build_tiny_reranker(tmp_path / "headless", head=False)
    with pytest.raises(ModelLoadError, match="classifier.*random"):
        CrossEncoderReranker(str(headless), device="cpu")
    with pytest.raises(ModelLoadError, match="not available offline"):
        CrossEncoderReranker("BAAI/bge-reranker-v2-m3", device="cpu")


def test_readme_five_line_example(tiny_bge_m3_dir, server):
    from hybridsearch import HybridIndex as Index
    from hybridsearch import Retriever as R
    from hybridsearch import get_encoder as ge

    ids, texts = IDS, DOCS
    encoder, index = ge("bge-m3", model=str(tiny_bge_m3_dir), device="cpu"), Index()
    index.add(ids, encoder.encode_corpus(texts), texts=texts)
    hits = R(encoder, index, mode="dense+sparse", reranker=ScoringAPIReranker(base_url=server.base_url, time_budget=2.0)).retrieve("what causes cancer?", k=5)
    assert hits.k == 5 and hits.reranked.all() and [s["stage"] for s in hits.stages] == ["retrieval", "rerank"]
    assert all({"dense", "sparse", "rerank"} >= set(h.scores) and "rerank" in h.scores for h in hits[0])
