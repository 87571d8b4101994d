"""HybridIndex: exact search against brute force, fusion by hand, updates, typed errors that change nothing, SciFact."""

from __future__ import annotations

import numpy as np
import pytest
import scipy.sparse as sp
from index_helpers import ALL, TOY, assert_same_ranking, build, make_encoded, maxsim, snapshot, topk

from hybridsearch.errors import (
    ConfigError,
    DimensionMismatchError,
    DuplicateIdError,
    FilterError,
    IndexMismatchError,
    InputError,
    UnknownIdError,
)
from hybridsearch.hits import Hits
from hybridsearch.index import DenseIndex, HybridIndex, MultiVectorStore, SparseIndex
from hybridsearch.types import Encoded, EncoderInfo, MultiVectors

N = 120


@pytest.fixture()
def corpus():
    return build(N)


@pytest.fixture()
def queries():
    return make_encoded(4, seed=99)


def dense_scores(enc: Encoded, q: Encoded) -> np.ndarray:
    return q.dense @ enc.dense.T


def sparse_scores(enc: Encoded, q: Encoded) -> np.ndarray:
    return (q.sparse @ enc.sparse.T).toarray().astype(np.float32)


# ----------------------------------------------------------------------------------------------- exactness
def test_dense_mode_equals_brute_force(corpus, queries):
    index, enc, ids = corpus
    hits = index.search(queries, k=7, mode="dense")
    rows, scores = topk(dense_scores(enc, queries), np.arange(N), 7)
    np.testing.assert_array_equal(hits.rows, rows)
    np.testing.assert_allclose(hits.scores, scores, rtol=1e-5)
    assert hits.doc_ids.tolist() == [[ids[r] for r in q] for q in rows]
    assert hits.modes == ("dense",)
    assert hits.ranks["dense"].tolist() == [list(range(1, 8))] * 4


def test_sparse_mode_equals_brute_force(corpus, queries):
    index, enc, _ = corpus
    hits = index.search(queries, k=9, mode="sparse")
    s = sparse_scores(enc, queries)
    rows, scores = topk(np.where(s > 0, s, -np.inf), np.arange(N), 9)  # only documents sharing a term
    assert_same_ranking(hits.rows, hits.scores, rows, scores, s)


def test_multivector_mode_reranks_dense_candidates_by_maxsim(corpus, queries):
    index, enc, _ = corpus
    c, k = 20, 5
    hits = index.search(queries, k=k, mode="multivector", candidates=c)
    first, _ = topk(dense_scores(enc, queries), np.arange(N), c)
    for i in range(len(queries)):
        ms = np.array([maxsim(queries.multivector[i], enc.multivector[int(r)]) for r in first[i]], np.float32)
        rows, scores = topk(ms[None, :], first[i], k)
        np.testing.assert_array_equal(hits.rows[i], rows[0])
        np.testing.assert_allclose(hits.scores[i], scores[0], rtol=1e-5)
        # ranks: the first-stage (dense) position and the MaxSim position among the candidates
        assert hits.ranks["dense"][i].tolist() == [int(np.flatnonzero(first[i] == r)[0]) + 1 for r in rows[0]]
        assert hits.ranks["multivector"][i].tolist() == [1, 2, 3, 4, 5]


def test_multivector_mode_uses_sparse_without_dense(queries):
    index, enc, _ = build(60, views=("sparse", "multivector"))
    hits = index.search(queries.select(["sparse", "multivector"]), k=3, mode="multivector", candidates=10)
    assert hits.modes == ("sparse", "multivector")
    first, _ = topk(np.where(sparse_scores(enc, queries) > 0, sparse_scores(enc, queries), -np.inf), np.arange(60), 10)
    assert set(hits.rows[0]) <= set(first[0])


def test_hybrid_weighted_sum_equals_brute_force_over_the_candidate_union(queries):
    index, enc, _ = build(N, views=("dense", "sparse"))
    c, k = 15, 6
    hits = index.search(queries, k=k, mode="hybrid", fusion="weighted_sum", candidates=c)
    ds, ss = dense_scores(enc, queries), sparse_scores(enc, queries)
    d_top, _ = topk(ds, np.arange(N), c)
    s_top, _ = topk(np.where(ss > 0, ss, -np.inf), np.arange(N), c)
    for i in range(len(queries)):
        union = np.union1d(d_top[i][d_top[i] >= 0], s_top[i][s_top[i] >= 0])
        fused = ds[i, union] + 0.3 * ss[i, union]
        rows, scores = topk(fused[None, :], union, k)
        np.testing.assert_array_equal(hits.rows[i], rows[0])
        np.testing.assert_allclose(hits.scores[i], scores[0], rtol=1e-5)
        for j, r in enumerate(hits.rows[i]):
            in_d = np.flatnonzero(d_top[i] == r)
            in_s = np.flatnonzero(s_top[i] == r)
            assert hits.ranks["dense"][i, j] == (in_d[0] + 1 if in_d.size else 0)
            assert hits.ranks["sparse"][i, j] == (in_s[0] + 1 if in_s.size else 0)


TINY_DENSE = np.array([[1.0, 0.0], [0.6, 0.8], [0.0, 1.0], [0.8, 0.6]], np.float32)
TINY_SPARSE = sp.csr_matrix(np.array([[0, 0, 0], [2.0, 0, 0], [1.0, 1.0, 0], [0, 0, 3.0]], np.float32))


@pytest.fixture()
def tiny():
    index = HybridIndex()
    index.add(["a", "b", "c", "d"], Encoded(dense=TINY_DENSE, sparse=TINY_SPARSE))
    q = Encoded(dense=np.array([[1.0, 0.0]], np.float32), sparse=sp.csr_matrix(np.array([[1.0, 0.5, 0]], np.float32)))
    return index, q


def test_hybrid_fusions_by_hand(tiny):
    index, q = tiny
    # dense scores: a 1.0, b 0.6, c 0.0, d 0.8  -> dense list (candidates = max(candidates, k) = 4): a, d, b, c
    # sparse scores: a 0, b 2.0, c 1.5, d 0     -> sparse list (documents sharing a term): b, c
    h = index.search(q, k=4, mode="hybrid", fusion="weighted_sum", candidates=2)
    expected = {"b": 0.6 + 0.3 * 2.0, "a": 1.0 + 0.3 * 0.0, "d": 0.8, "c": 0.0 + 0.3 * 1.5}
    assert h.doc_ids[0].tolist() == ["b", "a", "d", "c"]
    np.testing.assert_allclose(h.scores[0], [expected[d] for d in ["b", "a", "d", "c"]], rtol=1e-6)
    assert [x.ranks for x in h[0]] == [
        {"dense": 3, "sparse": 1}, {"dense": 1, "sparse": 0}, {"dense": 2, "sparse": 0}, {"dense": 4, "sparse": 2}
    ]

    h = index.search(q, k=4, mode="hybrid", fusion="rrf", candidates=2)
    rrf = {"a": 1 / 61, "b": 1 / 63 + 1 / 61, "c": 1 / 64 + 1 / 62, "d": 1 / 62}
    assert h.doc_ids[0].tolist() == ["b", "c", "a", "d"]
    np.testing.assert_allclose(h.scores[0], [rrf[d] for d in ["b", "c", "a", "d"]], rtol=1e-6)

    h = index.search(q, k=4, mode="hybrid", fusion="minmax(dense=0.5,sparse=0.5)", candidates=2)
    # over the union {a, b, c, d}: dense (s - 0) / 1.0, sparse (s - 0) / 2.0
    mm = {"a": 0.5 * 1.0 + 0.0, "b": 0.5 * 0.6 + 0.5 * 1.0, "c": 0.0 + 0.5 * 0.75, "d": 0.5 * 0.8}
    assert h.doc_ids[0].tolist() == sorted(mm, key=lambda d: -mm[d])
    np.testing.assert_allclose(h.scores[0], sorted(mm.values(), reverse=True), rtol=1e-6)

    # with k = 2 and candidates = 1 each list proposes one row: a (dense) and b (sparse), tied under RRF
    h = index.search(q, k=1, mode="hybrid", fusion="rrf", candidates=1)
    assert h.doc_ids[0].tolist() == ["a"] and h.scores[0, 0] == pytest.approx(1 / 61)
    assert h[0][0].ranks == {"dense": 1, "sparse": 0}


def test_hybrid_rerank_with_multivectors_matches_a_reimplementation(queries):
    index, enc, _ = build(N)
    c, k = 12, 5
    ds, ss = dense_scores(enc, queries), sparse_scores(enc, queries)
    d_top, _ = topk(ds, np.arange(N), c)
    s_top, _ = topk(np.where(ss > 0, ss, -np.inf), np.arange(N), c)
    hits = index.search(queries, k=k, mode="hybrid", fusion="weighted_sum", candidates=c)
    assert hits.modes == ("dense", "sparse", "multivector")
    for i in range(len(queries)):
        union = np.union1d(d_top[i][d_top[i] >= 0], s_top[i][s_top[i] >= 0])
        stage1, _ = topk((ds[i, union] + 0.3 * ss[i, union])[None, :], union, c)
        cand = stage1[0][stage1[0] >= 0]
        ms = np.array([maxsim(queries.multivector[i], enc.multivector[int(r)]) for r in cand], np.float32)
        final = ds[i, cand] + 0.3 * ss[i, cand] + 1.0 * ms
        rows, scores = topk(final[None, :], cand, k)
        np.testing.assert_array_equal(hits.rows[i], rows[0])
        np.testing.assert_allclose(hits.scores[i], scores[0], rtol=1e-5)
        mv_order, _ = topk(ms[None, :], cand, cand.size)
        assert hits.ranks["multivector"][i].tolist() == [int(np.flatnonzero(mv_order[0] == r)[0]) + 1 for r in rows[0]]
    plain = index.search(queries, k=k, mode="hybrid", fusion="weighted_sum", candidates=c, rerank=False)
    assert plain.modes == ("dense", "sparse")


def test_hybrid_rrf_ranks_are_each_lists_own(corpus, queries):
    index, _, _ = corpus
    hits = index.search(queries, k=10, mode="hybrid", candidates=30, rerank=False)
    dense = index.search(queries, k=30, mode="dense")
    sparse = index.search(queries, k=30, mode="sparse")
    for i in range(len(queries)):
        for h in hits[i]:
            for mode, single in (("dense", dense), ("sparse", sparse)):
                r = h.ranks[mode]
                if r:
                    assert single.rows[i, r - 1] == h.row
                else:
                    assert h.row not in single.rows[i]
            assert h.score == pytest.approx(sum(1 / (60 + r) for r in h.ranks.values() if r), rel=1e-6)


def test_auto_mode_follows_the_shared_views(corpus, queries):
    index, _, _ = corpus
    assert index.search(queries, k=3).modes == ("dense", "sparse", "multivector")
    assert index.search(queries.select(["dense"]), k=3).modes == ("dense",)
    assert index.search(queries.select(["sparse"]), k=3).modes == ("sparse",)


def test_k_larger_than_the_index_pads(corpus, queries):
    index, _, _ = corpus
    hits = index.search(queries, k=N + 5, mode="dense")
    assert hits.counts.tolist() == [N] * 4
    assert (hits.rows[:, N:] == -1).all() and np.isneginf(hits.scores[:, N:]).all()
    assert (hits.doc_ids[:, N:] == "").all()


# ----------------------------------------------------------------------------------------------- documents
def test_get_contains_len_info(corpus):
    index, enc, ids = corpus
    assert len(index) == N and "d5" in index and "nope" not in index and 5 not in index
    doc = index.get("d5")
    assert (doc.doc_id, doc.text, doc.metadata, doc.row) == ("d5", "text of d5", {"lang": "en", "year": 1995, "even": False, "tag": None}, 5)
    info = index.info()
    assert info["documents"] == N and info["deleted"] == 0 and info["modes"] == list(ALL)
    assert info["dims"] == {"dense": 16, "sparse": 64, "multivector": 8}
    assert info["encoder"] == TOY.to_dict()
    assert set(info["bytes"]) == {"dense", "sparse", "multivector", "docs", "total"}
    assert info["bytes"]["dense"] >= N * 16 * 4
    assert index.doc_ids() == ids
    assert index.encoder == TOY and index.modes == ALL
    assert repr(index) == "HybridIndex(documents=120, modes=('dense', 'sparse', 'multivector'), encoder='toy')"
    with pytest.raises(UnknownIdError, match="no document with id 'nope'"):
        index.get("nope")


def test_hits_records_carry_text_and_metadata(corpus, queries):
    index, _, _ = corpus
    h = index.search(queries, k=2, mode="dense")[0][0]
    assert h.text == f"text of {h.doc_id}" and h.metadata == index.get(h.doc_id).metadata


def test_exports():
    import hybridsearch.index as pkg

    assert pkg.DenseIndex is DenseIndex and pkg.SparseIndex is SparseIndex
    assert pkg.MultiVectorStore is MultiVectorStore and pkg.HybridIndex is HybridIndex
    assert sorted(pkg.__all__) == pkg.__all__


# ----------------------------------------------------------------------------------------------- updates
@pytest.mark.parametrize("mode", ["dense", "sparse", "multivector", "hybrid"])
def test_deleted_documents_are_never_returned(corpus, queries, mode):
    index, _, _ = corpus
    before = index.search(queries, k=10, mode=mode)
    gone = sorted({d for q in before for d in (h.doc_id for h in q)})[:12]
    index.delete(gone)
    assert len(index) == N - len(gone)
    for k in (10, N):
        hits = index.search(queries, k=k, mode=mode, candidates=N)
        assert not set(hits.doc_ids.ravel()) & set(gone)
    hits = index.search(queries, k=10, mode=mode)
    assert hits.counts.min() == 10 or mode == "sparse"  # deletions are masked before top-k
    for d in gone:
        assert d not in index
        with pytest.raises(UnknownIdError):
            index.get(d)


def test_upsert_replaces_content_under_a_new_row(corpus):
    index, enc, _ = corpus
    new = make_encoded(1, seed=1234)
    index.upsert(["d3"], new, texts=["brand new"], metadata=[{"lang": "xx"}])
    assert len(index) == N
    doc = index.get("d3")
    assert (doc.text, doc.metadata, doc.row) == ("brand new", {"lang": "xx"}, N)
    hits = index.search(new, k=1, mode="dense")
    assert hits[0][0].doc_id == "d3" and hits[0][0].row == N and hits[0][0].score == pytest.approx(1.0, abs=1e-5)
    old = index.search(enc[[3]], k=N, mode="dense")
    assert old.rows[0].tolist().count(3) == 0  # the old row is gone
    index.upsert(["d3", "fresh"], make_encoded(2, seed=7))  # mixes replace and insert
    assert len(index) == N + 1 and index.get("fresh").row == N + 2


def test_compact_keeps_results_and_row_ids(corpus, queries):
    index, _, ids = corpus
    index.delete(ids[::3])
    index.upsert(["d1"], make_encoded(1, seed=5))
    before = {m: index.search(queries, k=15, mode=m) for m in ("dense", "sparse", "multivector", "hybrid")}
    rows_before = {d: index.get(d).row for d in index.doc_ids()}
    index.compact()
    info = index.info()
    assert info["stored"] == info["documents"] == len(index) and info["deleted"] == 0
    assert {d: index.get(d).row for d in index.doc_ids()} == rows_before
    for m, h in before.items():
        after = index.search(queries, k=15, mode=m)
        np.testing.assert_array_equal(after.rows, h.rows)
        np.testing.assert_allclose(after.scores, h.scores, rtol=1e-6)
    index.add(["later"], make_encoded(1, seed=6))
    assert index.get("later").row == N + 1  # row ids are never reused
    index.compact()  # nothing deleted: a no-op
    assert len(index) == len(rows_before) + 1


def test_add_existing_id_says_to_upsert(corpus):
    index, _, _ = corpus
    with pytest.raises(DuplicateIdError, match=r"already in the index: 'd1'.*use upsert\(\)"):
        index.add(["new", "d1"], make_encoded(2, seed=3))


def test_delete_unknown_id_deletes_nothing(corpus):
    index, _, _ = corpus
    with pytest.raises(UnknownIdError, match="'ghost'"):
        index.delete(["d1", "ghost"])
    assert "d1" in index and len(index) == N
    index.delete(["d2", "d2"])  # a repeated id counts once
    assert len(index) == N - 1


def test_empty_index():
    index = HybridIndex()
    assert len(index) == 0 and index.modes == () and index.info()["documents"] == 0
    hits = index.search(make_encoded(2, seed=1), k=3)
    assert isinstance(hits, Hits) and hits.rows.shape == (2, 3) and hits.counts.tolist() == [0, 0]
    index.add([], make_encoded(0, seed=1))
    assert len(index) == 0 and index.modes == ()


def test_index_with_explicit_modes_ignores_extra_views(queries):
    index = HybridIndex(modes=["dense"])
    index.add(["a", "b"], make_encoded(2, seed=1))
    assert index.modes == ("dense",) and index.dims == {"dense": 16}
    assert index.search(queries, k=1).modes == ("dense",)
    with pytest.raises(ConfigError, match="dense or sparse"):
        HybridIndex(modes=["multivector"])
    with pytest.raises(ConfigError, match="subset"):
        HybridIndex(modes=["colbert"])
    bad = HybridIndex(dense_factory="NoSuchIndex")  # checked against the width at the first add
    with pytest.raises(ConfigError, match="NoSuchIndex"):
        bad.add(["a"], make_encoded(1, seed=1))
    assert len(bad) == 0 and bad.modes == ()
    with pytest.raises(ConfigError):
        HybridIndex(ef_search=0)
    with pytest.raises(ConfigError):
        HybridIndex(multivector_compression="int4")


def test_multivector_only_documents_are_refused():
    with pytest.raises(InputError, match="dense or sparse view"):
        HybridIndex().add(["a"], make_encoded(1, seed=1, views=("multivector",)))


def test_hnsw_dense_factory_is_used(queries):
    index, enc, _ = build(200, views=("dense",), dense_factory="HNSW16", ef_search=128)
    assert index.info()["config"]["dense"]["factory"] == "HNSW16"
    hits = index.search(queries.select(["dense"]), k=5)
    rows, _ = topk(dense_scores(enc, queries), np.arange(200), 5)
    assert np.mean([len(set(a) & set(b)) / 5 for a, b in zip(hits.rows, rows, strict=True)]) >= 0.8


# ----------------------------------------------------------------------------------------------- errors
def _bad_calls(index: HybridIndex, enc: Encoded):
    good = make_encoded(2, seed=50)
    nan = make_encoded(2, seed=51)
    nan.dense[0, 0] = np.nan  # arrays can change after an Encoded was checked
    neg = make_encoded(2, seed=52)
    neg.sparse.data[0] = -1.0
    inf_mv = make_encoded(2, seed=53)
    inf_mv.multivector.vectors[0, 0] = np.inf
    wide = Encoded(dense=np.ones((2, 17), np.float32), sparse=good.sparse, multivector=good.multivector, encoder=TOY)
    vocab = Encoded(dense=good.dense, sparse=sp.csr_matrix((2, 65), dtype=np.float32), multivector=good.multivector, encoder=TOY)
    other = make_encoded(2, seed=54, encoder=EncoderInfo("toy", "toy/v1", "another-fingerprint"))
    return [
        ("dim", lambda: index.add(["x", "y"], wide), DimensionMismatchError),
        ("vocab", lambda: index.add(["x", "y"], vocab), DimensionMismatchError),
        ("nan", lambda: index.add(["x", "y"], nan), InputError),
        ("negative", lambda: index.add(["x", "y"], neg), InputError),
        ("inf multivector", lambda: index.add(["x", "y"], inf_mv), InputError),
        ("batch duplicate", lambda: index.add(["x", "x"], good), DuplicateIdError),
        ("present", lambda: index.add(["x", "d0"], good), DuplicateIdError),
        ("upsert duplicate", lambda: index.upsert(["d0", "d0"], good), DuplicateIdError),
        ("length", lambda: index.add(["x"], good), InputError),
        ("missing view", lambda: index.add(["x", "y"], good.select(["dense", "sparse"])), InputError),
        ("encoder", lambda: index.add(["x", "y"], other), IndexMismatchError),
        ("not encoded", lambda: index.add(["x"], np.zeros((1, 16))), InputError),
        ("int id", lambda: index.add([1, 2], good), InputError),
        ("empty id", lambda: index.add(["", "y"], good), InputError),
        ("texts length", lambda: index.add(["x", "y"], good, texts=["one"]), InputError),
        ("text type", lambda: index.add(["x", "y"], good, texts=["one", 2]), InputError),
        ("metadata type", lambda: index.add(["x", "y"], good, metadata=[{"a": 1}, "b"]), InputError),
        ("metadata json", lambda: index.add(["x", "y"], good, metadata=[{"a": object()}, {}]), InputError),
        ("metadata nan", lambda: index.add(["x", "y"], good, metadata=[{"a": float("nan")}, {}]), InputError),
        ("unknown delete", lambda: index.delete(["d0", "zz"]), UnknownIdError),
        ("k zero", lambda: index.search(good, k=0), InputError),
        ("k negative", lambda: index.search(good, k=-3), InputError),
        ("k bool", lambda: index.search(good, k=True), InputError),
        ("candidates", lambda: index.search(good, k=3, candidates=0), InputError),
        ("mode", lambda: index.search(good, k=3, mode="colbert"), ConfigError),
        ("fusion", lambda: index.search(good, k=3, fusion="borda"), ConfigError),
        ("filter field", lambda: index.search(good, k=3, filter={"nope": 1}), FilterError),
        ("filter operator", lambda: index.search(good, k=3, filter={"year": {"$regex": "x"}}), FilterError),
        ("query encoder", lambda: index.search(other, k=3), IndexMismatchError),
        ("query width", lambda: index.search(wide, k=3, mode="dense"), DimensionMismatchError),
        ("query view", lambda: index.search(good.select(["dense"]), k=3, mode="sparse"), InputError),
        ("query nan", lambda: index.search(nan, k=3, mode="dense"), InputError),
        ("rerank without multivector", lambda: index.search(good.select(["dense", "sparse"]), k=3, mode="hybrid", rerank=True), InputError),
    ]


def test_bad_input_raises_typed_errors_and_changes_nothing(corpus, queries):
    index, enc, _ = corpus
    index.delete(["d7"])
    before = snapshot(index, queries)
    for name, call, error in _bad_calls(index, enc):
        with pytest.raises(error):
            call()
        assert snapshot(index, queries) == before, f"{name} changed the index"


def test_filter_error_messages(corpus, queries):
    index, _, _ = corpus
    with pytest.raises(FilterError, match=r"no document has the field\(s\) 'country'; fields present: 'even', 'keywords', 'lang'"):
        index.search(queries, k=3, filter={"country": "ke"})
    with pytest.raises(FilterError, match="unsupported operator '\\$like'"):
        index.search(queries, k=3, filter={"lang": {"$like": "s%"}})


def test_queries_without_encoder_info_are_trusted(corpus):
    index, enc, _ = corpus
    anonymous = Encoded(dense=enc.dense[:2], sparse=enc.sparse[:2], multivector=enc.multivector.take([0, 1]))
    hits = index.search(anonymous, k=1, mode="dense")
    assert hits.doc_ids[:, 0].tolist() == ["d0", "d1"]


def test_failed_first_add_leaves_an_empty_index():
    index = HybridIndex(dense_factory="IVF64,Flat")  # needs at least 64 training vectors
    with pytest.raises(InputError, match="trained"):
        index.add(["a", "b"], make_encoded(2, seed=1))
    assert len(index) == 0 and index.modes == () and index.encoder is None
    index.add([f"d{i}" for i in range(100)], make_encoded(100, seed=1))
    assert len(index) == 100


def test_empty_multivector_query_and_documents():
    index = HybridIndex(multivector_compression="fp32")
    enc = make_encoded(3, seed=2)
    mv = MultiVectors.from_list([enc.multivector[0], np.zeros((0, 8), np.float32), enc.multivector[2]], dim=8, dtype=np.float32)
    index.add(["a", "b", "c"], Encoded(dense=enc.dense, sparse=enc.sparse, multivector=mv, encoder=TOY))
    hits = index.search(enc[[1]], k=3, mode="multivector")
    assert hits.counts.tolist() == [3]
    assert dict(zip(hits.doc_ids[0], hits.scores[0], strict=True))["b"] == 0.0  # no token vectors: MaxSim 0


# ----------------------------------------------------------------------------------------------- real data
@pytest.mark.slow
def test_scifact_bm25_end_to_end(data_root, tmp_path):
    from hybridsearch.datasets import load_dataset
    from hybridsearch.encoders.bm25 import BM25Encoder
    from hybridsearch.metrics import evaluate

    ds = load_dataset("scifact")
    texts = [d.contents for d in ds.corpus]
    bm25 = BM25Encoder()
    docs = bm25.fit_encode_corpus(texts)
    qids = list(ds.queries)
    q = bm25.encode_queries([ds.queries[x] for x in qids])
    index = HybridIndex()
    index.add([d.doc_id for d in ds.corpus], docs, texts=texts,
              metadata=[{"title_words": len(d.title.split())} for d in ds.corpus])
    hits = index.search(q, k=100, mode="sparse")
    # exact: the same run as brute-force sparse dot products (the index applies idf from its live documents,
    # which on this unchanged corpus are the fitted statistics)
    s = (bm25.apply_idf(q).sparse @ docs.sparse.T).toarray()
    rows, scores = topk(np.where(s > 0, s, -np.inf).astype(np.float32), np.arange(len(texts)), 100)
    assert_same_ranking(hits.rows, hits.scores, rows, scores, s)  # float sums may order near-ties differently
    quality = evaluate(ds.qrels, hits.to_run(qids), ("nDCG@10", "R@100"))
    assert quality["nDCG@10"] > 0.60 and quality["R@100"] > 0.85  # BM25 on SciFact: about 0.65 / 0.89
    # filters before top-k on real data: every hit passes, and k hits still come back
    short = index.search(q[:20], k=10, mode="sparse", filter={"title_words": {"$lte": 8}})
    for query_hits in short:
        assert all(h.metadata["title_words"] <= 8 for h in query_hits)
    # a saved and reloaded index answers identically
    index.save(tmp_path / "scifact")
    loaded = HybridIndex.load(tmp_path / "scifact")
    again = loaded.search(q, k=100, mode="sparse")
    np.testing.assert_array_equal(again.rows, hits.rows)
    assert loaded.encoder == bm25.info
    other = BM25Encoder().fit(texts[:100])  # same name, another avgdl: other document vectors
    with pytest.raises(IndexMismatchError, match="fingerprint"):
        loaded.search(other.encode_queries(["cancer"]), k=5)
