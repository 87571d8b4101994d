"""SparseIndex against brute-force ``queries @ docs.T`` scoring on real arrays (numba and numpy paths)."""

from __future__ import annotations

import importlib.util
import json
import os
from pathlib import Path

import numpy as np
import pytest
import scipy.sparse as sp

from hybridsearch.errors import (
    ConfigError,
    DimensionMismatchError,
    IndexCorruptedError,
    IndexVersionError,
    InputError,
    UnknownIdError,
)
from hybridsearch.index.sparse import SparseIndex, numba_available

BACKENDS = ["numba", "numpy"]
SYNTH = Path(__file__).resolve().parents[2] / "shared" / "bench" / "synth.py"
if not SYNTH.exists() and os.environ.get("HYBRIDSEARCH_DATA"):  # a checkout outside the project folder
    SYNTH = Path(os.environ["HYBRIDSEARCH_DATA"]).resolve().parent / "bench" / "synth.py"


# ----------------------------------------------------------------------------- data
def make_docs(n: int, vocab: int, *, seed: int, weights: str = "uniform", dense_terms: int = 6) -> sp.csr_matrix:
    """Random documents: ``dense_terms`` frequent columns (in 30-90 % of the documents) plus rare ones."""
    rng = np.random.default_rng(seed)
    freq = sp.random(n, dense_terms, density=0.6, random_state=rng, format="csr", dtype=np.float32)
    rare = sp.random(
        n, vocab - dense_terms, density=min(1.0, 8 / vocab), random_state=rng, format="csr", dtype=np.float32
    )
    m = sp.hstack([freq, rare], format="csr").astype(np.float32)
    if weights == "bm25":  # large, spread-out weights
        m.data = (m.data * 12 + 0.05).astype(np.float32)
    elif weights == "ties":  # few distinct values: many exactly equal scores
        m.data = np.ceil(m.data * 3).astype(np.float32)
    elif weights == "tiny":  # bge-m3-like lexical weights
        m.data = (m.data * 0.4 + 1e-3).astype(np.float32)
    m.sort_indices()
    return m


def make_queries(nq: int, vocab: int, *, seed: int, ties: bool = False) -> sp.csr_matrix:
    rng = np.random.default_rng(seed)
    q = sp.random(nq, vocab, density=min(1.0, 6 / vocab), random_state=rng, format="csr", dtype=np.float32)
    q = sp.hstack(
        [sp.random(nq, 6, density=0.4, random_state=rng, format="csr", dtype=np.float32), q[:, 6:]], format="csr"
    )
    q = q.astype(np.float32)
    if ties:
        q.data = np.ceil(q.data * 2).astype(np.float32)
    return q


def brute_scores(queries: sp.csr_matrix, docs: sp.csr_matrix) -> np.ndarray:
    return (queries.astype(np.float64) @ docs.astype(np.float64).T).toarray()


def assert_topk(rows, scores, ref, doc_rows, k, allowed=None, rtol=1e-5):
    """``rows``/``scores`` are a correct top-k of ``ref`` (n_queries, n_docs; column j is row ``doc_rows[j]``).

    Exact up to float summation order: returned scores equal the reference, every document clearly above the
    k-th score is returned, ties are ordered by row id, missing hits are padded with -1 / -inf.
    """
    doc_rows = np.asarray(doc_rows)
    col_of = {int(r): j for j, r in enumerate(doc_rows)}
    assert rows.shape == scores.shape == (ref.shape[0], k)
    assert rows.dtype == np.int64 and scores.dtype == np.float32
    for i in range(ref.shape[0]):
        valid = ref[i] > 0
        if allowed is not None:
            ok = doc_rows < allowed.size
            ok[ok] = allowed[doc_rows[ok]]
            valid &= ok
        count = min(k, int(valid.sum()))
        assert (rows[i, count:] == -1).all() and np.isneginf(scores[i, count:]).all(), (i, rows[i], count)
        got = rows[i, :count]
        assert (got >= 0).all() and len(set(got.tolist())) == count
        cols = np.array([col_of[int(r)] for r in got], dtype=np.int64)
        assert valid[cols].all()
        np.testing.assert_allclose(scores[i, :count], ref[i, cols], rtol=rtol, atol=1e-12)
        s = scores[i, :count]
        assert (np.diff(s) <= 0).all()
        same = np.flatnonzero(np.diff(s) == 0)
        assert (got[same] < got[same + 1]).all(), "ties must be ordered by row id"
        if count:
            kth = np.sort(ref[i][valid])[::-1][count - 1]
            must = doc_rows[valid & (ref[i] > kth * (1 + rtol) + 1e-12)]
            assert set(must.tolist()) <= set(got.tolist()), i


def recall(a: np.ndarray, b: np.ndarray) -> float:
    hits = [
        len(set(x[x >= 0].tolist()) & set(y[y >= 0].tolist())) / max(1, (y >= 0).sum())
        for x, y in zip(a, b, strict=True)
    ]
    return float(np.mean(hits))


@pytest.fixture(params=BACKENDS)
def backend(request) -> str:
    return request.param


# ----------------------------------------------------------------------------- exactness
@pytest.mark.parametrize("weights", ["uniform", "bm25", "ties", "tiny"])
@pytest.mark.parametrize("block_size", [1, 2, 16])
def test_exact_top_k_matches_brute_force(weights, block_size, backend):
    vocab = 300
    docs = make_docs(3000, vocab, seed=1, weights=weights)
    q = make_queries(40, vocab, seed=2, ties=weights == "ties")
    index = SparseIndex(vocab, block_size=block_size, dense_min_docs=0, backend=backend)
    index.add(docs, np.arange(3000))
    assert index._segments[0].f_terms.size >= 6  # the frequent columns are stored as dense terms
    for k in (1, 10, 37):
        rows, scores = index.search(q, k)
        assert_topk(rows, scores, brute_scores(q, docs), np.arange(3000), k)


@pytest.mark.parametrize("n_dense", [0, 1, 2, 40])
def test_exact_for_any_number_of_dense_query_terms(n_dense):
    """Bounds stay upper bounds however many dense terms a query has (including more than are bounded per block)."""
    vocab = 400
    rng = np.random.default_rng(25 + n_dense)
    docs = make_docs(4000, vocab, seed=25, dense_terms=48)
    index = SparseIndex(vocab, dense_min_docs=0)
    index.add(docs, np.arange(4000))
    dense = index._segments[0].f_terms
    assert dense.size >= 40
    rows_, cols, vals = [], [], []
    for i in range(30):
        picked = rng.choice(dense, n_dense, replace=False).tolist() + rng.integers(48, vocab, 5).tolist()
        rows_ += [i] * len(picked)
        cols += picked
        vals += rng.uniform(0.1, 3.0, len(picked)).tolist()
    q = sp.csr_matrix((np.array(vals, np.float32), (rows_, cols)), shape=(30, vocab))
    rows, scores = index.search(q, 10)
    assert_topk(rows, scores, brute_scores(q, docs), np.arange(4000), 10)


def test_exact_across_partitions_with_gaps_in_row_ids(backend):
    """More than two 65,536-document partitions, non-contiguous row ids, dense and sparse terms."""
    n, vocab = 140_000, 3000
    rng = np.random.default_rng(3)
    docs = make_docs(n, vocab, seed=3, dense_terms=4)
    doc_rows = np.cumsum(rng.integers(1, 4, size=n)) + 1000
    q = make_queries(15, vocab, seed=4)
    index = SparseIndex(vocab, backend=backend)
    index.add(docs, doc_rows)
    assert index._segments[0].f_terms.size == 4 and index._segments[0].row_ids.size == n
    rows, scores = index.search(q, 10)
    assert_topk(rows, scores, brute_scores(q, docs), doc_rows, 10)


def test_reference_workload_matches_brute_force():
    """The bge-m3-like synthetic workload of the benchmark, at a size that builds in a second."""
    spec = importlib.util.spec_from_file_location("synth", SYNTH)
    assert spec is not None and spec.loader is not None, f"missing {SYNTH}"
    synth = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(synth)
    docs = synth.make_corpus(20_000)
    q = synth.make_queries(60)
    index = SparseIndex(synth.VOCAB, block_size=2, dense_min_docs=0)
    index.add(docs, np.arange(docs.shape[0]))
    sparse_only = SparseIndex(synth.VOCAB, dense_min_docs=10**9)
    sparse_only.add(docs, np.arange(docs.shape[0]))
    # dense terms are added only within the budget (max_bytes_per_nnz) or where they save bytes
    assert index.nbytes <= max(7.5 * index.nnz, sparse_only.nbytes)
    rows, scores = index.search(q, 10)
    assert_topk(rows, scores, brute_scores(q, docs), np.arange(docs.shape[0]), 10)
    csc = docs.tocsc()
    for i in range(10):
        top, _ = synth.csc_topk(csc, q[i], 10)
        assert set(top.tolist()) == set(rows[i].tolist())


def test_ties_at_the_cut_prefer_lower_rows(backend):
    vocab = 50
    docs = sp.csr_matrix(np.ones((40, vocab), dtype=np.float32))  # every document scores the same
    index = SparseIndex(vocab, dense_min_docs=0, backend=backend)
    index.add(docs[:25], np.arange(25))
    index.add(docs[25:], np.arange(100, 115))
    q = sp.csr_matrix(np.eye(1, vocab, 7, dtype=np.float32))
    rows, scores = index.search(q, 30)
    assert rows[0].tolist() == list(range(25)) + list(range(100, 105))
    assert (scores == 1.0).all()


# ----------------------------------------------------------------------------- segments, masks, edge cases
def test_multiple_segments_merge_and_stay_exact(backend):
    vocab = 200
    docs = make_docs(4000, vocab, seed=5)
    sizes = [3000, 1, 9, 90, 400, 500]  # the small ones merge; the first stays apart
    index = SparseIndex(vocab, merge_factor=2, dense_min_docs=500, backend=backend)
    start = 0
    for size in sizes:
        index.add(docs[start : start + size], np.arange(start, start + size) * 2)
        start += size
    assert len(index) == 4000 and index.nnz == docs.nnz
    assert 1 < index.n_segments < len(sizes)
    q = make_queries(30, vocab, seed=6)
    rows, scores = index.search(q, 10)
    assert_topk(rows, scores, brute_scores(q, docs), np.arange(4000) * 2, 10)


def test_allowed_masks_apply_before_top_k(backend):
    vocab = 200
    n = 5000
    docs = make_docs(n, vocab, seed=7)
    index = SparseIndex(vocab, dense_min_docs=0, backend=backend)
    index.add(docs[:3000], np.arange(3000))
    index.add(docs[3000:], np.arange(3000, n))
    q = make_queries(25, vocab, seed=8)
    ref = brute_scores(q, docs)
    rng = np.random.default_rng(9)
    tombstones = rng.random(n) > 0.3
    selective = np.zeros(n, bool)
    selective[rng.choice(n, 5, replace=False)] = True
    short = np.ones(2500, bool)  # rows past the end are not allowed
    for allowed in (tombstones, selective, short):
        rows, scores = index.search(q, 10, allowed=allowed)
        assert_topk(rows, scores, ref, np.arange(n), 10, allowed=allowed)
    rows, scores = index.search(q, 10, allowed=np.zeros(n, bool))
    assert (rows == -1).all() and np.isneginf(scores).all()


def test_k_beyond_matches_and_empty_queries(backend):
    vocab = 100
    docs = sp.csr_matrix(
        (np.array([1.0, 2.0, 3.0], np.float32), (np.array([0, 1, 2]), np.array([5, 5, 9]))), shape=(4, vocab)
    )
    index = SparseIndex(vocab, backend=backend)
    index.add(docs, np.array([10, 11, 12, 13]))
    q = sp.csr_matrix(
        (np.array([1.0, 1.0], np.float32), (np.array([0, 2]), np.array([5, 60]))), shape=(4, vocab)
    )  # rows 1 and 3 are empty, row 2 matches nothing
    rows, scores = index.search(q, 5)
    assert rows[0].tolist() == [11, 10, -1, -1, -1]
    assert scores[0, :2].tolist() == [2.0, 1.0] and np.isneginf(scores[0, 2:]).all()
    assert (rows[1:] == -1).all() and np.isneginf(scores[1:]).all()
    rows, scores = index.search(sp.csr_matrix((0, vocab), dtype=np.float32), 3)
    assert rows.shape == scores.shape == (0, 3)


def test_empty_index_returns_padding(backend):
    index = SparseIndex(10, backend=backend)
    index.add(sp.csr_matrix((0, 10), dtype=np.float32), np.zeros(0, np.int64))
    rows, scores = index.search(sp.csr_matrix(np.ones((2, 10), np.float32)), 3)
    assert (rows == -1).all() and np.isneginf(scores).all()
    assert len(index) == 0 and index.nnz == 0 and index.nbytes == 0


# ----------------------------------------------------------------------------- score, compact, persistence
def test_score_matches_brute_force(backend):
    vocab = 300
    n = 3000
    docs = make_docs(n, vocab, seed=10, weights="bm25")
    index = SparseIndex(vocab, dense_min_docs=0, backend=backend)
    index.add(docs[:1000], np.arange(1000) * 3)
    index.add(docs[1000:], np.arange(1000, n) * 3)
    q = make_queries(8, vocab, seed=11)
    ref = brute_scores(q, docs)
    rng = np.random.default_rng(12)
    cand = rng.choice(n, size=(8, 20), replace=True)
    rows = cand * 3
    rows[:, 0] = -1  # padding
    rows[:, 1] = 1  # never added: unknown, as in the dense and multi-vector parts
    with pytest.raises(UnknownIdError, match="row 1 "):
        index.score(q, rows)
    rows[:, 1] = -1
    out = index.score(q, rows)
    assert out.shape == (8, 20) and out.dtype == np.float32
    assert np.isneginf(out[:, :2]).all()
    np.testing.assert_allclose(out[:, 2:], np.take_along_axis(ref, cand[:, 2:], axis=1), rtol=1e-5)
    shared = index.score(q, rows[0])  # the same rows for every query
    np.testing.assert_array_equal(shared[0], out[0])
    # search() reports the same float32 scores as score() for the rows it returns
    top, top_scores = index.search(q, 10)
    np.testing.assert_array_equal(index.score(q, top), top_scores)


def test_compact_drops_rows_and_keeps_results(backend):
    vocab = 200
    n = 4000
    docs = make_docs(n, vocab, seed=13)
    index = SparseIndex(vocab, dense_min_docs=0, merge_factor=64, backend=backend)
    for a in range(0, n, 1000):
        index.add(docs[a : a + 1000], np.arange(a, a + 1000))
    assert index.n_segments == 4
    alive = np.random.default_rng(14).random(n) > 0.4
    q = make_queries(20, vocab, seed=15)
    before = index.search(q, 10, allowed=alive)
    index.compact(alive)
    assert index.n_segments == 1 and len(index) == int(alive.sum())
    assert index.nnz == docs[alive].nnz
    after = index.search(q, 10)
    np.testing.assert_array_equal(after[0], before[0])
    np.testing.assert_array_equal(after[1], before[1])
    with pytest.raises(UnknownIdError):  # dropped rows are unknown, as in the dense and multi-vector parts
        index.score(q, np.flatnonzero(~alive)[:5])
    index.compact(np.ones(10, bool))  # rows past the end of the mask are dropped
    assert len(index) == int(alive[:10].sum())
    index.compact(np.zeros(n, bool))
    assert len(index) == 0 and index.n_segments == 0


def test_save_load_round_trip_memory_mapped(tmp_path, backend):
    vocab = 300
    docs = make_docs(3000, vocab, seed=16)
    index = SparseIndex(vocab, dense_min_docs=0, block_size=8, merge_factor=64)
    index.add(docs[:2000], np.arange(2000))
    index.add(docs[2000:], np.arange(2005, 3005))
    q = make_queries(20, vocab, seed=17)
    expected = index.search(q, 10)
    names = index.save(tmp_path)
    assert sorted(names) == sorted(p.name for p in tmp_path.iterdir())
    assert "sparse.json" in names and all(n.endswith(".npy") for n in names if n != "sparse.json")
    loaded = SparseIndex.load(tmp_path, backend=backend)
    assert isinstance(loaded._segments[0].r_w, np.memmap)
    assert len(loaded) == len(index) and loaded.nnz == index.nnz and loaded.nbytes == index.nbytes
    assert loaded.block_size == 8 and loaded.vocab_size == vocab
    got = loaded.search(q, 10)
    np.testing.assert_array_equal(got[0], expected[0])
    np.testing.assert_array_equal(got[1], expected[1])
    # a loaded index takes new documents and compacts
    loaded.add(docs[:10], np.arange(5000, 5010))
    loaded.compact()
    assert len(loaded) == 3010
    in_ram = SparseIndex.load(tmp_path, mmap=False)
    assert not isinstance(in_ram._segments[0].r_w, np.memmap)


def test_load_rejects_missing_newer_or_truncated_files(tmp_path):
    index = SparseIndex(50, dense_min_docs=0)
    index.add(make_docs(100, 50, seed=18), np.arange(100))
    with pytest.raises(IndexCorruptedError):
        SparseIndex.load(tmp_path)
    index.save(tmp_path)
    meta = json.loads((tmp_path / "sparse.json").read_text())
    (tmp_path / "sparse.json").write_text(json.dumps({**meta, "version": 99}))
    with pytest.raises(IndexVersionError):
        SparseIndex.load(tmp_path)
    (tmp_path / "sparse.json").write_text(json.dumps(meta))
    np.save(tmp_path / "sparse.seg0.r_w.npy", np.zeros(3, np.float32))
    with pytest.raises(IndexCorruptedError):
        SparseIndex.load(tmp_path)
    (tmp_path / "sparse.seg0.r_lo.npy").unlink()
    with pytest.raises(IndexCorruptedError):
        SparseIndex.load(tmp_path)


# ----------------------------------------------------------------------------- approximate search
def test_approximate_trades_recall_for_fewer_evaluations():
    vocab = 400
    docs = make_docs(20_000, vocab, seed=19, dense_terms=8)
    q = make_queries(60, vocab, seed=20)
    index = SparseIndex(vocab, dense_min_docs=0)
    index.add(docs, np.arange(20_000))
    exact = index.search(q, 10)
    evaluated_exact = index._last_stats[:, 1].sum()
    same = index.search(q, 10, approximate=1.0)
    np.testing.assert_array_equal(same[0], exact[0])
    rows, scores = index.search(q, 10, approximate=0.95)
    assert index._last_stats[:, 1].sum() < evaluated_exact
    assert recall(rows, exact[0]) >= 0.85
    # whatever it returns carries its exact score
    ok = rows >= 0
    np.testing.assert_array_equal(index.score(q, np.where(ok, rows, -1))[ok], scores[ok])


def test_max_evaluations_caps_work_and_keeps_exact_scores():
    vocab = 400
    docs = make_docs(20_000, vocab, seed=31, dense_terms=8)
    q = make_queries(60, vocab, seed=32)
    index = SparseIndex(vocab, dense_min_docs=0)
    index.add(docs, np.arange(20_000))
    exact = index.search(q, 10)
    evaluated = index._last_stats[:, 1].copy()
    big = index.search(q, 10, max_evaluations=int(evaluated.max()) + 1)
    np.testing.assert_array_equal(big[0], exact[0])
    np.testing.assert_array_equal(big[1], exact[1])
    rows, scores = index.search(q, 10, max_evaluations=40)
    # the budget plus the documents evaluated at once to fill the top-k (k + 32 best bounds, their blocks)
    assert (index._last_stats[:, 1] <= 40 + 3 * (10 + 32)).all()
    assert index._last_stats[:, 1].sum() < evaluated.sum()
    ok = rows >= 0
    np.testing.assert_array_equal(index.score(q, np.where(ok, rows, -1))[ok], scores[ok])
    assert recall(rows, exact[0]) >= 0.5


def test_spent_budget_ends_the_sweep():
    """Once ``max_evaluations`` is spent on a full top-k, the later partitions of the segment are not swept:
    nothing more could enter the top-k, and buffering their candidates only cost time."""
    vocab = 300
    n = 3 * 65_536 + 100  # four partitions in one segment
    docs = make_docs(n, vocab, seed=41, dense_terms=8)
    q = make_queries(20, vocab, seed=42)
    index = SparseIndex(vocab, dense_min_docs=0)
    index.add(docs, np.arange(n))
    assert index.n_segments == 1
    index.search(q, 10)
    touched_exact = index._last_stats[:, 0].copy()
    rows, scores = index.search(q, 10, max_evaluations=1)
    touched = index._last_stats[:, 0]
    assert (touched <= touched_exact).all() and (touched < touched_exact).any()
    assert (rows >= 0).all()  # the top-k was filled before the budget ended the sweep
    np.testing.assert_array_equal(index.score(q, rows), scores)


# ----------------------------------------------------------------------------- adversarial inputs (exact)
@pytest.mark.slow
def test_exact_when_ties_overflow_the_candidate_buffer():
    """Every document ties on the frequent terms: more candidates than the buffer holds at once (several
    partitions), so the buffer is drained mid-sweep; ties must still resolve to the lowest row ids."""
    n, vocab = 200_000, 50
    rng = np.random.default_rng(41)
    cols = np.stack([np.zeros(n, np.int64), np.ones(n, np.int64), 2 + rng.integers(0, vocab - 2, n)], axis=1)
    docs = sp.csr_matrix((np.ones(3 * n, np.float32), cols.ravel(), np.arange(0, 3 * n + 1, 3)), shape=(n, vocab))
    docs.sum_duplicates()
    index = SparseIndex(vocab)
    index.add(docs, np.arange(n))
    assert index._segments[0].f_terms.size >= 2  # the tied terms are dense: bounded, not traversed
    q = sp.csr_matrix(np.array([[1.0, 1.0] + [0.0] * (vocab - 2), [1.0, 0.5, 0.25] + [0.0] * (vocab - 3)], np.float32))
    rows, scores = index.search(q, 25)
    assert_topk(rows, scores, brute_scores(q, docs), np.arange(n), 25)
    assert rows[0].tolist() == list(range(25))  # all tie at 2.0: lowest rows first
    assert index._last_stats[0, 2] > 2 * 65_536  # the buffer really overflowed


@pytest.mark.parametrize("shape", ["single_term", "long", "all_dense"])
def test_exact_on_single_term_and_very_long_queries(shape, backend):
    vocab = 3000
    n = 70_000  # two partitions
    docs = make_docs(n, vocab, seed=43, dense_terms=40, weights="tiny")
    rng = np.random.default_rng(44)
    nq = 12
    if shape == "single_term":
        cols = rng.integers(0, vocab, nq)
        cols[:6] = np.arange(6)  # frequent terms alone
        q = sp.csr_matrix((np.ones(nq, np.float32), (np.arange(nq), cols)), shape=(nq, vocab))
    elif shape == "long":  # 400 terms: frequent and rare, many more than a query usually has
        q = sp.random(nq, vocab, density=400 / vocab, random_state=rng, format="csr", dtype=np.float32)
    else:  # only frequent terms, more of them than the bounds sum in integer arithmetic (32)
        q = sp.random(nq, 40, density=0.9, random_state=rng, format="csr", dtype=np.float32)
        q = sp.hstack([q, sp.csr_matrix((nq, vocab - 40), dtype=np.float32)], format="csr")
    q = sp.csr_matrix(q, dtype=np.float32)
    index = SparseIndex(vocab, backend=backend)
    index.add(docs, np.arange(n))
    rows, scores = index.search(q, 10)
    assert_topk(rows, scores, brute_scores(q, docs), np.arange(n), 10)


def test_threads_give_the_same_results():
    vocab = 400
    docs = make_docs(30_000, vocab, seed=45, dense_terms=8)
    q = make_queries(37, vocab, seed=46)
    index = SparseIndex(vocab, dense_min_docs=0)
    index.add(docs[:20_000], np.arange(20_000))
    index.add(docs[20_000:], np.arange(20_000, 30_000))
    one = index.search(q, 10)
    for threads in (2, 3, 64):
        many = index.search(q, 10, threads=threads)
        np.testing.assert_array_equal(many[0], one[0])
        np.testing.assert_array_equal(many[1], one[1])
    assert_topk(one[0], one[1], brute_scores(q, docs), np.arange(30_000), 10)


# ----------------------------------------------------------------------------- backends
def test_numpy_fallback_equals_numba():
    if not numba_available():
        pytest.fail("numba is installed in the test environment; the fast path must import")
    vocab = 300
    docs = make_docs(6000, vocab, seed=21, weights="bm25")
    q = make_queries(30, vocab, seed=22)
    allowed = np.random.default_rng(23).random(6000) > 0.2
    fast = SparseIndex(vocab, dense_min_docs=0, backend="numba")
    slow = SparseIndex(vocab, dense_min_docs=0, backend="numpy")
    for index in (fast, slow):
        index.add(docs[:4000], np.arange(4000))
        index.add(docs[4000:], np.arange(4000, 6000))
    for kwargs in ({}, {"allowed": allowed}):
        a, b = fast.search(q, 12, **kwargs), slow.search(q, 12, **kwargs)
        np.testing.assert_array_equal(a[0], b[0])
        np.testing.assert_array_equal(a[1], b[1])
    rows = np.arange(0, 6000, 7)
    np.testing.assert_array_equal(fast.score(q, rows), slow.score(q, rows))


# ----------------------------------------------------------------------------- errors
def test_bad_input_raises_typed_errors():
    index = SparseIndex(20)
    docs = sp.csr_matrix(np.eye(3, 20, dtype=np.float32))
    index.add(docs, np.array([0, 1, 2]))
    q = sp.csr_matrix(np.ones((1, 20), np.float32))
    for k in (0, -1, True, 2.5):
        with pytest.raises(InputError):
            index.search(q, k)
    with pytest.raises(DimensionMismatchError):
        index.search(sp.csr_matrix(np.ones((1, 21), np.float32)), 3)
    with pytest.raises(DimensionMismatchError):
        index.add(sp.csr_matrix(np.ones((1, 19), np.float32)), np.array([5]))
    with pytest.raises(InputError, match="non-negative"):
        index.add(sp.csr_matrix(-np.eye(1, 20, dtype=np.float32)), np.array([5]))
    with pytest.raises(InputError, match="non-negative"):
        index.search(sp.csr_matrix(-np.ones((1, 20), np.float32)), 3)
    with pytest.raises(InputError, match="NaN"):
        index.search(sp.csr_matrix(np.full((1, 20), np.nan, np.float32)), 3)
    with pytest.raises(InputError):
        index.search(np.ones((1, 20)), 3)
    with pytest.raises(InputError, match="greater than every stored row"):
        index.add(docs, np.array([2, 3, 4]))
    with pytest.raises(InputError, match="strictly increasing"):
        index.add(docs, np.array([5, 5, 6]))
    with pytest.raises(InputError):
        index.add(docs, np.array([5, 6]))
    with pytest.raises(InputError):
        index.search(q, 3, allowed=np.ones(3, np.int64))
    for a in (0.0, 1.5, -1, "0.5"):
        with pytest.raises(InputError):
            index.search(q, 3, approximate=a)
    for m in (0, -3, 2.0, True):
        with pytest.raises(InputError, match="max_evaluations"):
            index.search(q, 3, max_evaluations=m)
    for t in (0, 1.5, False):
        with pytest.raises(InputError, match="threads"):
            index.search(q, 3, threads=t)
    with pytest.raises(InputError):
        index.score(q, np.ones((2, 3), np.int64))
    assert len(index) == 3  # nothing was changed
    for kwargs in (
        {"max_bytes_per_nnz": 0},
        {"block_size": 3},
        {"block_size": 512},
        {"dense_fraction": 0},
        {"merge_factor": 1},
        {"backend": "gpu"},
    ):
        with pytest.raises(ConfigError):
            SparseIndex(20, **kwargs)
    with pytest.raises(ConfigError):
        SparseIndex(0)


def test_sizes_are_reported():
    vocab = 300
    docs = make_docs(5000, vocab, seed=24)
    index = SparseIndex(vocab, dense_min_docs=0)
    index.add(docs, np.arange(5000))
    assert index.nnz == docs.nnz and len(index) == 5000
    assert 0 < index.nbytes <= 7.5 * docs.nnz
    tight = SparseIndex(vocab, dense_min_docs=0, max_bytes_per_nnz=6.2)  # fewer dense terms fit
    tight.add(docs, np.arange(5000))
    assert tight.nbytes <= 6.2 * docs.nnz and tight._segments[0].f_terms.size < index._segments[0].f_terms.size
    assert "SparseIndex(rows=5000" in repr(index)


def test_segment_decoding_matches_per_term_reference() -> None:
    """Merging decodes segments back to CSR with array operations; it must equal term-by-term decoding."""
    rng = np.random.default_rng(7)
    n, vocab = 150_000, 3_000  # several 65,536-document superblocks, frequent and rare terms
    nnz_per_doc = 6
    cols = np.concatenate([rng.integers(0, 20, size=n * 2), rng.integers(20, vocab, size=n * (nnz_per_doc - 2))])
    rows_ = np.concatenate([np.repeat(np.arange(n), 2), np.repeat(np.arange(n), nnz_per_doc - 2)])
    m = sp.csr_matrix((rng.uniform(0.01, 1.0, size=cols.size).astype(np.float32), (rows_, cols)), shape=(n, vocab))
    m.sum_duplicates()
    index = SparseIndex(vocab)
    index.add(m, np.arange(n, dtype=np.int64))
    for seg in index._segments:
        fast, slow = seg.to_csr(vocab), seg._to_csr_per_term(vocab)
        assert fast.shape == slow.shape and (fast != slow).nnz == 0
    assert (index._segments[0].to_csr(vocab) != m).nnz == 0


@pytest.mark.skipif(not numba_available(), reason="the numba kernels are the optional 'fast' extra")
def test_built_and_loaded_segments_share_one_compiled_kernel(tmp_path):
    """A segment built in memory has the array types of a loaded (memory-mapped, read-only) one, so the first
    search after an ingest does not compile the kernels a second time."""
    from hybridsearch.index import _sparse_kernels

    vocab = 200
    docs = make_docs(3_000, vocab, seed=51, dense_terms=4)
    q = make_queries(3, vocab, seed=52)
    built = SparseIndex(vocab)
    built.add(docs, np.arange(3_000))
    built.save(tmp_path)
    loaded = SparseIndex.load(tmp_path)
    loaded.search(q, 5)
    loaded.score(q, np.arange(5))
    before = (len(_sparse_kernels.search_segment.signatures), len(_sparse_kernels.score_segment.signatures))
    rows, scores = built.search(q, 5)
    built.score(q, np.arange(5))
    after = (len(_sparse_kernels.search_segment.signatures), len(_sparse_kernels.score_segment.signatures))
    assert after == before
    np.testing.assert_array_equal(rows, loaded.search(q, 5)[0])
