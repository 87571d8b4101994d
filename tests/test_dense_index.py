"""DenseIndex against numpy brute force, on real FAISS indexes over small clustered data."""

from __future__ import annotations

import json
from pathlib import Path

import faiss
import numpy as np
import pytest

from hybridsearch.errors import (
    ConfigError,
    DimensionMismatchError,
    IndexCorruptedError,
    IndexVersionError,
    InputError,
    UnknownIdError,
)
from hybridsearch.index.dense import DEFAULT_EF_SEARCH, DEFAULT_NPROBE, DenseIndex

DIM = 32
N = 2000
K = 10

# factory -> (constructor options, minimum recall@10 against exact search)
TYPES = {
    "Flat": ({}, 1.0),
    "HNSW32": ({"ef_search": 128, "ef_construction": 80}, 0.95),
    "HNSW16,SQ8": ({"ef_search": 128}, 0.85),
    "IVF16,Flat": ({"nprobe": 16}, 1.0),
    "SQfp16": ({}, 0.98),
    "SQ8": ({}, 0.95),
    "IVF16,PQ16": ({"nprobe": 16}, 0.7),
    "PQ16": ({}, 0.6),
}
APPROX = [f for f in TYPES if f != "Flat"]


def clustered(n: int, seed: int, centers: int = 30) -> np.ndarray:
    rng = np.random.default_rng(seed)
    c = np.random.default_rng(1234).standard_normal((centers, DIM))
    x = c[rng.integers(0, centers, n)] + 0.5 * rng.standard_normal((n, DIM))
    return (x / np.linalg.norm(x, axis=1, keepdims=True)).astype(np.float32)


X = clustered(N, seed=0)
Q = clustered(40, seed=1)
ROWS = np.arange(N, dtype=np.int64) * 3 + 7  # gapped, not starting at 0


def brute(q: np.ndarray, x: np.ndarray, rows: np.ndarray, k: int, allowed: np.ndarray | None = None):
    s = q @ x.T
    if allowed is not None:
        ok = np.zeros(rows.size, bool)
        inside = rows < allowed.size
        ok[inside] = allowed[rows[inside]]
        s[:, ~ok] = -np.inf
    order = np.argsort(-s, axis=1, kind="stable")[:, :k]
    top_s = np.take_along_axis(s, order, axis=1).astype(np.float32)
    return np.where(np.isfinite(top_s), rows[order], -1), top_s


def recall(got: np.ndarray, want: np.ndarray) -> float:
    return float(
        np.mean([len(set(g[g >= 0]) & set(w[w >= 0])) / max(1, (w >= 0).sum()) for g, w in zip(got, want, strict=True)])
    )


def build(factory: str, **options) -> DenseIndex:
    index = DenseIndex(DIM, factory=factory, **options)
    index.add(X[:1200], ROWS[:1200])  # trains on the first batch where needed
    index.add(X[1200:], ROWS[1200:])
    return index


@pytest.fixture(scope="module")
def saved(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """Every index type built once and saved; tests load private copies."""
    out = {}
    for factory, (options, _) in TYPES.items():
        d = tmp_path_factory.mktemp(factory.replace(",", "_"))
        build(factory, **options).save(d)
        out[factory] = d
    return out


def fresh(saved: dict[str, Path], factory: str, mmap: bool = False) -> DenseIndex:
    return DenseIndex.load(saved[factory], mmap=mmap)


def test_flat_equals_numpy_brute_force():
    index = build("Flat")
    rows, scores = index.search(Q, K)
    want_rows, want_scores = brute(Q, X, ROWS, K)
    np.testing.assert_array_equal(rows, want_rows)
    np.testing.assert_allclose(scores, want_scores, rtol=1e-5, atol=1e-6)
    assert rows.dtype == np.int64 and scores.dtype == np.float32 and rows.shape == (len(Q), K)
    assert len(index) == N and index.is_trained


@pytest.mark.parametrize("factory", APPROX)
def test_recall_against_exact(saved, factory):
    index = fresh(saved, factory)
    rows, scores = index.search(Q, K)
    want, _ = brute(Q, X, ROWS, K)
    assert recall(rows, want) >= TYPES[factory][1]
    assert (np.diff(scores, axis=1) <= 1e-6).all(), "scores must be descending"
    np.testing.assert_allclose(scores, index.score(Q, rows), rtol=1e-4, atol=1e-4)


def test_ef_search_changes_the_hnsw_search(saved):
    index = fresh(saved, "HNSW32")
    assert index.ef_search == 128 and index.nprobe is None
    stats = faiss.cvar.hnsw_stats

    def distances(**kw) -> int:
        stats.reset()
        index.search(Q, K, **kw)
        return stats.ndis

    narrow, wide = distances(ef_search=10), distances(ef_search=400)
    assert wide > 2 * narrow
    index.ef_search = 400
    assert distances() == wide
    index.ef_search = None
    assert index.ef_search == DEFAULT_EF_SEARCH


def test_nprobe_changes_the_ivf_search(saved):
    index = fresh(saved, "IVF16,Flat")
    stats = faiss.cvar.indexIVF_stats
    queries = np.random.default_rng(11).standard_normal((40, DIM)).astype(np.float32)  # between the clusters
    stats.reset()
    low, _ = index.search(queries, K, nprobe=1)
    assert stats.nlist == len(queries) * 1
    stats.reset()
    full, _ = index.search(queries, K, nprobe=16)
    assert stats.nlist == len(queries) * 16
    want_rows, _ = brute(queries, X, ROWS, K)
    np.testing.assert_array_equal(full, want_rows)  # probing every list is exact
    assert recall(low, want_rows) < 0.95
    index.nprobe = 1
    np.testing.assert_array_equal(index.search(queries, K)[0], low)
    index.nprobe = None
    assert index.nprobe == DEFAULT_NPROBE and index.ef_search is None


def test_under_filled_ivf_search_is_completed_exactly(saved):
    index = fresh(saved, "IVF16,Flat")
    rows, scores = index.search(Q, 300, nprobe=1)  # one list holds far fewer than 300 vectors
    want_rows, want_scores = brute(Q, X, ROWS, 300)
    np.testing.assert_array_equal(rows, want_rows)
    np.testing.assert_allclose(scores, want_scores, rtol=1e-5, atol=1e-6)


def test_pre_transform_factory(tmp_path):
    index = DenseIndex(DIM, factory="RR32,IVF4,Flat", nprobe=4)  # a random rotation keeps inner products
    index.add(X, ROWS)
    rows, scores = index.search(Q, K)
    want_rows, want_scores = brute(Q, X, ROWS, K)
    np.testing.assert_array_equal(rows, want_rows)
    np.testing.assert_allclose(scores, want_scores, rtol=1e-4, atol=1e-5)
    alive = np.ones(ROWS[-1] + 1, bool)
    alive[ROWS[:100]] = False
    kept = index.score(Q, ROWS[100:110])
    index.compact(alive)
    np.testing.assert_allclose(index.score(Q, ROWS[100:110]), kept, rtol=1e-5, atol=1e-5)
    index.save(tmp_path)
    np.testing.assert_array_equal(DenseIndex.load(tmp_path).search(Q, K)[0], index.search(Q, K)[0])


def test_flat_allowed_mask_matches_brute_force():
    index = build("Flat")
    rng = np.random.default_rng(5)
    for fraction in (0.5, 0.02):
        allowed = rng.random(ROWS[-1] + 1) < fraction
        rows, scores = index.search(Q, K, allowed=allowed)
        want_rows, want_scores = brute(Q, X, ROWS, K, allowed)
        np.testing.assert_array_equal(rows, want_rows)
        np.testing.assert_allclose(scores, want_scores, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("factory", list(TYPES))
@pytest.mark.parametrize("fraction", [0.6, 0.03], ids=["broad", "selective"])
def test_allowed_mask_applies_before_top_k(saved, factory, fraction):
    index = fresh(saved, factory)
    allowed = np.random.default_rng(7).random(ROWS[-1] + 1) < fraction
    rows, scores = index.search(Q, K, allowed=allowed, nprobe=2)  # few lists: IVF must still fill k
    assert (rows >= 0).all(), "k hits whenever at least k rows are allowed"
    assert allowed[rows].all()
    want, _ = brute(Q, X, ROWS, K, allowed)
    assert recall(rows, want) >= min(0.6, TYPES[factory][1] - 0.1)
    assert np.isfinite(scores).all()


@pytest.mark.parametrize("factory", ["Flat", "HNSW32", "IVF16,Flat", "PQ16"])
def test_mask_edge_cases(saved, factory):
    index = fresh(saved, factory)
    none_allowed = index.search(Q, K, allowed=np.zeros(ROWS[-1] + 1, bool))
    assert (none_allowed[0] == -1).all() and np.isneginf(none_allowed[1]).all()

    short = np.ones(ROWS[5], bool)  # rows 7, 10, ..., 19 are inside, everything after is not allowed
    rows, scores = index.search(Q, K, allowed=short)
    np.testing.assert_array_equal(np.sort(rows[:, :5], axis=1), np.tile(ROWS[:5], (len(Q), 1)))
    assert (rows[:, 5:] == -1).all() and np.isneginf(scores[:, 5:]).all()
    np.testing.assert_allclose(scores[:, :5], index.score(Q, rows[:, :5]), rtol=1e-5, atol=1e-5)

    everything = np.ones(ROWS[-1] + 1, bool)
    np.testing.assert_array_equal(index.search(Q, K, allowed=everything)[0], index.search(Q, K)[0])

    with pytest.raises(InputError, match="bool"):
        index.search(Q, K, allowed=np.flatnonzero(everything))


def test_score_equals_brute_force_for_flat():
    index = build("Flat")
    cand = np.array([[ROWS[0], ROWS[10], -1], [ROWS[-1], -1, ROWS[3]]])
    got = index.score(Q[:2], cand)
    full = Q[:2] @ X.T
    want = np.array([[full[0, 0], full[0, 10], -np.inf], [full[1, -1], -np.inf, full[1, 3]]], np.float32)
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-6)
    shared = index.score(Q, ROWS[:50])  # one candidate list for every query
    np.testing.assert_allclose(shared, Q @ X[:50].T, rtol=1e-5, atol=1e-6)
    with pytest.raises(UnknownIdError, match="row 8 "):
        index.score(Q[:1], np.array([[8]]))
    with pytest.raises(InputError):
        index.score(Q[:2], np.zeros((3, 2), np.int64))


@pytest.mark.parametrize("factory", list(TYPES))
def test_compact_drops_rows_and_keeps_the_rest(saved, factory):
    index = fresh(saved, factory, mmap=True)  # compaction must first copy the mapped index into memory
    reference = fresh(saved, factory)
    alive = np.ones(ROWS[-1] + 1, bool)
    alive[ROWS[::4]] = False
    alive[ROWS[-1]] = False
    before = reference.score(Q, ROWS[alive[ROWS]])
    index.compact(alive)
    kept = ROWS[alive[ROWS]]
    assert len(index) == kept.size
    np.testing.assert_array_equal(index.rows, kept)
    np.testing.assert_allclose(index.score(Q, kept), before, rtol=1e-5, atol=1e-5)  # codes survive untouched
    rows, _ = index.search(Q, K)
    assert alive[rows].all() and (rows >= 0).all()
    want, _ = brute(Q, X, ROWS, K, alive)
    assert recall(rows, want) >= TYPES[factory][1] - 0.05
    index.add(X[:3], np.array([10_000, 10_001, 10_002]))  # ids continue after the last row held before compaction
    assert index.search(X[:1], 1)[0][0, 0] in (10_000, ROWS[0])
    index.compact(None)
    assert len(index) == kept.size + 3


def test_compact_flat_matches_brute_force_and_can_empty():
    index = build("Flat")
    alive = np.zeros(ROWS[-1] + 1, bool)
    alive[ROWS[1::2]] = True
    index.compact(alive)
    np.testing.assert_array_equal(index.search(Q, K)[0], brute(Q, X[1::2], ROWS[1::2], K)[0])
    index.compact(np.zeros(0, bool))  # shorter than every row: nothing survives
    assert len(index) == 0
    assert (index.search(Q, K)[0] == -1).all()


@pytest.mark.parametrize("mmap", [True, False], ids=["mmap", "read"])
@pytest.mark.parametrize("factory", list(TYPES))
def test_save_load_round_trip(saved, tmp_path, factory, mmap):
    original = fresh(saved, factory)
    loaded = DenseIndex.load(saved[factory], mmap=mmap)
    assert (loaded.dim, loaded.factory, len(loaded)) == (DIM, factory, N)
    assert (loaded.ef_search, loaded.nprobe) == (original.ef_search, original.nprobe)
    allowed = np.random.default_rng(3).random(ROWS[-1] + 1) < 0.5
    for kwargs in ({}, {"allowed": allowed}):
        a, b = original.search(Q, K, **kwargs), loaded.search(Q, K, **kwargs)
        np.testing.assert_array_equal(a[0], b[0])
        np.testing.assert_array_equal(a[1], b[1])
    np.testing.assert_array_equal(original.score(Q, ROWS[:20]), loaded.score(Q, ROWS[:20]))
    # a loaded (possibly memory-mapped) index accepts new vectors and saves again
    extra = clustered(5, seed=9)
    loaded.add(extra, np.array([9000, 9001, 9002, 9003, 9004]))
    original.add(extra, np.array([9000, 9001, 9002, 9003, 9004]))
    np.testing.assert_array_equal(loaded.search(extra, 3)[0], original.search(extra, 3)[0])
    names = loaded.save(tmp_path)
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(names)
    assert len(DenseIndex.load(tmp_path)) == N + 5


def test_save_over_the_mapped_source(saved, tmp_path):
    fresh(saved, "HNSW32").save(tmp_path)
    index = DenseIndex.load(tmp_path, mmap=True)
    before = index.search(Q, K)
    index.save(tmp_path)
    np.testing.assert_array_equal(index.search(Q, K)[0], before[0])
    np.testing.assert_array_equal(DenseIndex.load(tmp_path).search(Q, K)[0], before[0])


def test_load_leaves_saved_files_untouched(saved):
    before = {p.name: p.read_bytes() for p in saved["SQ8"].iterdir()}
    index = DenseIndex.load(saved["SQ8"], mmap=True)
    index.add(clustered(4, seed=2), np.arange(4) + 100_000)
    index.compact(np.ones(7, bool))
    assert {p.name: p.read_bytes() for p in saved["SQ8"].iterdir()} == before


def test_training_rules():
    index = DenseIndex(DIM, factory="IVF64,Flat")
    assert not index.is_trained
    with pytest.raises(InputError, match="at least 64 vectors"):
        index.add(X[:50], ROWS[:50])
    with pytest.raises(InputError, match="at least 64 vectors"):
        index.train(X[:10])
    assert len(index) == 0 and not index.is_trained
    index.train(X[:500])
    assert index.is_trained
    index.add(X[:10], ROWS[:10])  # already trained: a small batch is fine
    with pytest.raises(InputError, match="before add"):
        index.train(X)
    pq = DenseIndex(DIM, factory="IVF4,PQ8")
    with pytest.raises(InputError, match="at least 256 vectors"):
        pq.add(X[:100], ROWS[:100])
    flat = DenseIndex(DIM, factory="HNSW16")
    flat.train(X[:5])  # nothing to learn: accepted and ignored
    assert flat.is_trained and len(flat) == 0


@pytest.mark.parametrize(
    "factory,match",
    [("Flatt", "valid strings"), ("IVF,Flat", "valid strings"), ("IDMap,Flat", "IDMap"), ("NSG32", "does not support"),
     ("HNSW0", "M >= 2"), ("HNSW1,Flat", "M >= 2")],  # FAISS would kill the process on the first add
)
def test_bad_factory_strings(factory, match):
    with pytest.raises(ConfigError, match=match):
        DenseIndex(DIM, factory=factory)


def test_bad_options():
    with pytest.raises(ConfigError):
        DenseIndex(0)
    with pytest.raises(ConfigError):
        DenseIndex(DIM, factory="HNSW32", ef_search=0)
    index = DenseIndex(DIM, factory="HNSW32")
    with pytest.raises(ConfigError):
        index.nprobe = -1
    with pytest.raises(InputError):
        index.search(Q, K, ef_search=0)


def test_bad_input_leaves_the_index_unchanged():
    index = build("HNSW32")
    before = index.search(Q, K)
    nan = X[:2].copy()
    nan[1, 3] = np.nan
    bad_adds = [
        (X[:2, :-1], [10_000, 10_001], DimensionMismatchError),
        (nan, [10_000, 10_001], InputError),
        (X[:2], [10_001, 10_000], InputError),  # decreasing
        (X[:2], [10_000, 10_000], InputError),  # duplicate
        (X[:2], [ROWS[-1], 10_000], InputError),  # not after the last row held
        (X[:2], [10_000], InputError),  # one id for two vectors
        (X[:2], [10_000.0, 10_001.0], InputError),
        (X[0], [10_000], InputError),  # 1-D
        (X[:2], [-5, 10_000], InputError),
    ]
    for vectors, rows, error in bad_adds:
        with pytest.raises(error):
            index.add(vectors, np.asarray(rows))
    assert len(index) == N
    after = index.search(Q, K)
    np.testing.assert_array_equal(before[0], after[0])
    with pytest.raises(DimensionMismatchError):
        index.search(Q[:, :16], K)
    with pytest.raises(InputError):
        index.search(np.full((1, DIM), np.inf, np.float32), K)
    for k in (0, -3, True, 2.5):
        with pytest.raises(InputError):
            index.search(Q, k)


def test_k_larger_than_index_and_empty_cases():
    index = DenseIndex(DIM, factory="HNSW32")
    rows, scores = index.search(Q[:2], 5)  # empty index
    assert (rows == -1).all() and np.isneginf(scores).all()
    assert index.search(Q[:0], 5)[0].shape == (0, 5)
    index.add(X[:3], ROWS[:3])
    rows, scores = index.search(Q[:4], 8)
    assert rows.shape == (4, 8)
    np.testing.assert_array_equal(np.sort(rows[:, :3], axis=1), np.tile(ROWS[:3], (4, 1)))
    assert (rows[:, 3:] == -1).all() and np.isneginf(scores[:, 3:]).all()
    untrained = DenseIndex(DIM, factory="IVF8,Flat")
    assert (untrained.search(Q[:1], 3)[0] == -1).all()


def test_nbytes_follows_code_size(saved):
    sizes = {f: fresh(saved, f).nbytes for f in ("Flat", "SQfp16", "SQ8", "IVF16,PQ16")}
    assert sizes["Flat"] == N * (4 * DIM + 8)
    assert sizes["SQfp16"] == N * (2 * DIM + 8)
    assert sizes["SQ8"] == N * (DIM + 8)  # the trained ranges (2 * DIM floats) are left out
    # IVF-PQ: 16-byte codes + list id + direct-map entry + row id, coarse centroids, PQ codebooks
    assert sizes["IVF16,PQ16"] == N * (16 + 8 + 8 + 8) + 16 * DIM * 4 + 256 * DIM * 4


def test_load_rejects_broken_directories(saved, tmp_path):
    index = fresh(saved, "Flat")
    index.save(tmp_path)
    meta = json.loads((tmp_path / "dense.json").read_text())
    (tmp_path / "dense.json").write_text(json.dumps({**meta, "format_version": 99}))
    with pytest.raises(IndexVersionError):
        DenseIndex.load(tmp_path)
    (tmp_path / "dense.json").write_text(json.dumps(meta))
    data = (tmp_path / "dense.faiss").read_bytes()
    (tmp_path / "dense.faiss").write_bytes(data[: len(data) // 2])
    for mmap in (True, False):
        with pytest.raises(IndexCorruptedError):
            DenseIndex.load(tmp_path, mmap=mmap)
    (tmp_path / "dense.faiss").write_bytes(data)
    np.save(tmp_path / "dense_rows.npy", ROWS[:-1])
    with pytest.raises(IndexCorruptedError, match="inconsistent"):
        DenseIndex.load(tmp_path)
    (tmp_path / "dense_rows.npy").unlink()
    with pytest.raises(IndexCorruptedError, match="missing"):
        DenseIndex.load(tmp_path)
