"""Retriever: every paper mode and fusion through a real (tiny) bge-m3, per-view encoder identity, save/load, CLI."""

from __future__ import annotations

import asyncio
import json

import numpy as np
import pytest

from hybridsearch import Retriever
from hybridsearch.cli import main
from hybridsearch.encoders import get_encoder
from hybridsearch.encoders.bge_m3 import BGEM3Encoder
from hybridsearch.encoders.workers_ai import WorkersAIEncoder
from hybridsearch.errors import ConfigError, IndexMismatchError, InputError
from hybridsearch.identity import cloudflare_fingerprint, declare_same_view, same_view
from hybridsearch.index import HybridIndex
from hybridsearch.modes import PAPER_MODES
from hybridsearch.types import Encoded, EncoderInfo

DOCS = [
    "the cat sits on the red sun",
    "a dog runs in the rain",
    "protein gene cell cancer study",
    "vaccine dose reduces virus risk in patient blood",
    "the bird eats fish from the water",
    "sparse dense hybrid retrieval index",
    "a small horse sleeps in the snow",
    "brain heart disease risk increases with old age",
    "the moon rises over the cloud and the sky",
    "query document token vector score rank",
    "a large cow grows in the green field of the earth",
    "drug study reduces cancer risk",
]
IDS = [f"d{i}" for i in range(len(DOCS))]
QUERIES = ["what causes cancer", "does a dog run in rain", "hybrid sparse dense search"]
FUSIONS = ["rrf", "weighted_sum", "minmax", "dbsf", "zscore", "rrf(k=10,dense=2,sparse=1,multivector=1)"]


@pytest.fixture(scope="module")
def m3(tiny_bge_m3_dir):
    return BGEM3Encoder(str(tiny_bge_m3_dir), device="cpu", multivector_dtype="float32")


@pytest.fixture(scope="module")
def index(m3):
    idx = HybridIndex(multivector_compression="fp32")
    idx.add(IDS, m3.encode_corpus(DOCS, outputs=("dense", "sparse", "multivector")), texts=DOCS,
            metadata=[{"n": i} for i in range(len(DOCS))])
    return idx


@pytest.fixture(scope="module")
def vectors(m3):
    views = ("dense", "sparse", "multivector")
    return m3.encode_queries(QUERIES, outputs=views), m3.encode_corpus(DOCS, outputs=views)


@pytest.mark.parametrize("mode", [*PAPER_MODES, "hybrid"])
@pytest.mark.parametrize("fusion", FUSIONS)
def test_every_mode_and_fusion_reports_each_views_exact_score(m3, index, vectors, mode, fusion):
    r = Retriever(m3, index, mode=mode, fusion=fusion, candidates=6)
    hits = r.retrieve(QUERIES, k=4)
    assert hits.n_queries == 3 and hits.k == 4 and (hits.counts >= 1).all()
    if mode != "sparse":  # sparse returns only documents sharing a term with the query
        assert (hits.counts == 4).all()
    q, d = vectors
    expected_views = {"dense": {"dense"}, "sparse": {"sparse"}, "multivector": {"dense", "multivector"},
                      "dense+sparse": {"dense", "sparse"}, "all": {"dense", "sparse", "multivector"},
                      "hybrid": {"dense", "sparse", "multivector"}}[mode]
    assert set(hits.view_scores) == expected_views
    assert hits.stages[0]["stage"] == "retrieval"
    for i in range(3):
        for h in hits[i]:
            j = IDS.index(h.doc_id)
            assert h.text == DOCS[j] and h.metadata == {"n": j}
            assert set(h.scores) <= expected_views
            if "dense" in h.scores:
                assert h.scores["dense"] == pytest.approx(float(q.dense[i] @ d.dense[j]), abs=1e-5)
            if "sparse" in h.scores:
                assert h.scores["sparse"] == pytest.approx(float((q.sparse[i] @ d.sparse[j].T).toarray()[0, 0]), rel=1e-5)
            if "multivector" in h.scores:
                sim = q.multivector[i].astype(np.float32) @ d.multivector[j].astype(np.float32).T
                assert h.scores["multivector"] == pytest.approx(float(sim.max(axis=1).mean()), abs=1e-4)
    if mode == "dense":  # a single view: the final score is that view's score, in order
        assert [h.score for h in hits[0]] == [h.scores["dense"] for h in hits[0]]


def test_paper_modes_match_the_index_search_and_hybrid_is_all_with_multivectors(m3, index):
    q = m3.encode_queries(QUERIES, outputs=("dense", "sparse", "multivector"))
    r = Retriever(m3, index, candidates=6)
    assert r.resolve_mode() == "hybrid"
    for mode, (imode, rerank) in {"dense+sparse": ("hybrid", False), "all": ("hybrid", True)}.items():
        got = r.retrieve(QUERIES, k=5, mode=mode)
        want = index.search(q, k=5, mode=imode, rerank=rerank, candidates=6)
        np.testing.assert_array_equal(got.rows, want.rows)
    np.testing.assert_array_equal(r.retrieve(QUERIES, k=5, mode="hybrid").rows, r.retrieve(QUERIES, k=5, mode="all").rows)
    # dense+sparse never runs MaxSim; all always does.
    assert "multivector" not in r.retrieve(QUERIES, k=3, mode="dense+sparse").view_scores
    with pytest.raises(ConfigError, match="unknown search mode 'colbert'"):
        r.retrieve(QUERIES, mode="colbert")


def test_async_twin_returns_the_same_hits(m3, index):
    r = Retriever(m3, index, fusion="dbsf", candidates=6)
    sync = r.retrieve(QUERIES, k=4)
    got = asyncio.run(r.aretrieve(QUERIES, k=4))
    np.testing.assert_array_equal(got.rows, sync.rows)
    np.testing.assert_allclose(got.scores, sync.scores)


def test_filter_and_bad_input(m3, index):
    r = Retriever(m3, index)
    hits = r.retrieve("cancer", k=3, filter={"n": {"$gte": 10}})
    assert {h.doc_id for h in hits[0]} <= {"d10", "d11"}
    with pytest.raises(InputError, match="empty"):
        r.retrieve([""])
    with pytest.raises(InputError, match="k must be a positive integer"):
        r.retrieve("cancer", k=0)
    with pytest.raises(ConfigError, match="name no weight for sparse"):
        r.retrieve("cancer", mode="dense+sparse", fusion="minmax(dense=0.7)")


def test_save_and_load_in_one_call_then_cli_needs_no_flags(m3, index, tmp_path, tiny_bge_m3_dir, capsys):
    r = Retriever(m3, index, mode="dense+sparse", fusion="weighted_sum(dense=1,sparse=0.3)", candidates=7)
    out = r.save(tmp_path / "idx")
    spec = json.loads((out / "encoder.json").read_text())
    assert spec == {"spec": "bge-m3", "options": {"model": m3.model_id}}
    loaded = Retriever.load(out)
    assert (loaded.mode, str(loaded.fusion), loaded.candidates) == ("dense+sparse", "weighted_sum(dense=1,sparse=0.3)", 7)
    np.testing.assert_array_equal(loaded.retrieve(QUERIES, k=5).rows, r.retrieve(QUERIES, k=5).rows)
    capsys.readouterr()
    assert main(["search", str(out), "what causes cancer", "-k", "3", "--json"]) == 0
    printed = json.loads(capsys.readouterr().out)
    want = r.retrieve("what causes cancer", k=3)[0]
    assert [h["doc_id"] for h in printed] == [h.doc_id for h in want]
    assert set(printed[0]["scores"]) == {"dense", "sparse"}
    assert Retriever.load(out, mode="sparse").retrieve("cancer", k=2).modes == ("sparse",)
    with pytest.raises(ConfigError, match="unknown Retriever option"):
        Retriever.load(out, depth=3)


def test_bm25_retriever_saves_its_fitted_state(tmp_path):
    enc = get_encoder("bm25-word")
    enc.fit(DOCS)
    idx = HybridIndex()
    idx.add(IDS, enc.encode_corpus(DOCS), texts=DOCS)
    out = Retriever(enc, idx).save(tmp_path / "bm25")
    assert (out / "encoder-state.npz").is_file()
    hits = Retriever.load(out).retrieve("dog rain", k=1)
    assert hits[0][0].doc_id == "d1" and hits[0][0].scores["sparse"] > 0


def test_mode_the_encoder_cannot_serve_is_a_config_error(index):
    enc = get_encoder("bm25-word").fit(DOCS)
    r = Retriever(enc, index)
    with pytest.raises(ConfigError, match="needs dense query vectors"):
        r.retrieve("cancer", mode="dense")


# ----------------------------------------------------------------------------------- per-view encoder identity
def test_identity_table():
    local = EncoderInfo("bge-m3", "BAAI/bge-m3", "0123456789abcdef")
    cloud = EncoderInfo("workers-ai", "@cf/baai/bge-m3", cloudflare_fingerprint())
    other_server = EncoderInfo("workers-ai", "@cf/baai/bge-m3", "ffffffffffffffff")
    minilm = EncoderInfo("minilm", "sentence-transformers/all-MiniLM-L6-v2", "aaaa")
    assert same_view(local, cloud, "dense") and same_view(cloud, local, "dense")
    assert not same_view(local, cloud, "sparse")  # Workers AI serves only the dense view
    assert not same_view(local, other_server, "dense")  # an unknown self-hosted server is not assumed to be bge-m3
    assert not same_view(local, minilm, "dense")
    composite = EncoderInfo("dense=minilm,sparse=bm25", "x", "y", parts={"dense": minilm, "sparse": EncoderInfo("bm25", "b", "c")})
    assert same_view(composite, minilm, "dense") and not same_view(composite, minilm, "sparse")
    assert EncoderInfo.from_dict(composite.to_dict()).parts == composite.parts


def test_workers_ai_dense_queries_search_a_local_bge_m3_index_over_http(tiny_bge_m3_encoder):
    from loopback import start_server

    server = start_server(tiny_bge_m3_encoder)  # the real server (hybridsearch serve) on 127.0.0.1
    try:
        base_url = server.url + "/ai/run"
        docs = ["alpha beta", "gamma delta", "epsilon zeta"]
        vecs = tiny_bge_m3_encoder.encode_corpus(docs, outputs="dense").dense
        local = EncoderInfo("bge-m3", "BAAI/bge-m3", "0123456789abcdef")
        idx = HybridIndex()
        idx.add(["a", "b", "c"], Encoded(dense=vecs, encoder=local), texts=docs)
        # The loopback server stands in for Cloudflare: it is given Cloudflare's fingerprint, i.e. declared the same.
        cf = WorkersAIEncoder(base_url=base_url, fingerprint=cloudflare_fingerprint())
        hits = Retriever(cf, idx).retrieve(["gamma delta"], k=1)
        assert hits[0][0].doc_id == "b" and hits[0][0].scores["dense"] == pytest.approx(1.0, abs=1e-4)
        # The same server without that declaration is refused, naming the view and both encoders.
        plain = WorkersAIEncoder(base_url=base_url)
        with pytest.raises(IndexMismatchError, match="dense view.*'workers-ai'.*'bge-m3'"):
            Retriever(plain, idx).retrieve("gamma delta")
        declare_same_view("dense", "BAAI/bge-m3", plain.info)
        assert Retriever(plain, idx).retrieve("gamma delta", k=1)[0][0].doc_id == "b"
    finally:
        server.stop()


def test_minilm_queries_on_a_bge_m3_index_are_refused(m3, index):
    minilm = get_encoder("minilm")
    with pytest.raises(IndexMismatchError, match="'minilm'"):
        Retriever(minilm, index).retrieve("cancer", mode="dense")


def test_cli_index_records_defaults_that_search_uses(tmp_path, capsys):
    corpus = tmp_path / "c.tsv"
    corpus.write_text("".join(f"{i}\t{t}\n" for i, t in zip(IDS, DOCS, strict=True)), encoding="utf-8")
    out = tmp_path / "idx"
    assert main(["index", "--input", str(corpus), "--encoder", "bm25-word", "--fusion", "dbsf", "--candidates", "20",
                 "--out", str(out), "-q"]) == 0
    assert json.loads((out / "retriever.json").read_text())["fusion"] == "dbsf"
    r = Retriever.load(out)
    assert (str(r.fusion), r.candidates, r.mode) == ("dbsf", 20, None)
    capsys.readouterr()
    assert main(["search", str(out), "dog rain", "-k", "1"]) == 0
    assert "(sparse mode" in capsys.readouterr().out
    assert main(["index", "--input", str(corpus), "--encoder", "bm25-word", "--fusion", "borda", "--out", str(tmp_path / "x")]) == 2
    assert "unknown fusion 'borda'" in capsys.readouterr().err
    assert not (tmp_path / "x").exists()  # refused before building anything
