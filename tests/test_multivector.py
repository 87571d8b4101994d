from __future__ import annotations

import json
import math

import numpy as np
import pytest
from scipy.stats import spearmanr

from hybridsearch.errors import (
    ConfigError,
    DimensionMismatchError,
    DuplicateIdError,
    IndexCorruptedError,
    IndexVersionError,
    InputError,
    UnknownIdError,
)
from hybridsearch.index import multivector as mvmod
from hybridsearch.index.multivector import DEFAULT_COMPRESSION, MultiVectorStore, binary_scale, pool_tokens
from hybridsearch.types import MultiVectors


def unit(a: np.ndarray) -> np.ndarray:
    return (a / np.linalg.norm(a, axis=1, keepdims=True)).astype(np.float32)


def hand_maxsim(q: np.ndarray, d: np.ndarray) -> float:
    """(1/Nq) Σ_i max_j q_i·d_j, written out with loops."""
    total = 0.0
    for qi in np.asarray(q, np.float64):
        total += max(float(qi @ dj) for dj in np.asarray(d, np.float64))
    return total / len(q)


def corpus(rng: np.random.Generator, n_docs: int, dim: int, *, n_topics: int = 6, max_len: int = 24):
    """Token vectors with structure: each text mixes two topic directions plus noise."""
    topics = unit(rng.normal(size=(n_topics, dim)))

    def text(n: int) -> np.ndarray:
        a, b = rng.choice(n_topics, 2, replace=False)
        w = rng.uniform(0, 1, size=(n, 1))
        return unit(w * topics[a] + (1 - w) * topics[b] + 0.08 * rng.normal(size=(n, dim)))

    docs = [text(int(n)) for n in rng.integers(3, max_len, n_docs)]
    queries = [text(int(n)) for n in rng.integers(2, 9, 6)]
    return docs, queries


@pytest.fixture(scope="module")
def data():
    rng = np.random.default_rng(7)
    docs, queries = corpus(rng, 60, 96)
    rows = np.arange(60, dtype=np.int64) * 3 + 5  # sparse, increasing global ids
    cand = np.stack([rng.permutation(rows)[:40] for _ in queries])
    return docs, queries, rows, cand


def build(docs, rows, **kw) -> MultiVectorStore:
    store = MultiVectorStore(len(docs[0][0]), **kw)
    half = len(docs) // 2  # two add() calls: two segments
    store.add(MultiVectors.from_list(docs[:half], dtype=np.float32), rows[:half])
    store.add(MultiVectors.from_list(docs[half:], dtype=np.float32), rows[half:])
    return store


def reference(docs, queries, rows, cand) -> np.ndarray:
    by_row = dict(zip(rows.tolist(), docs, strict=True))
    return np.array([[hand_maxsim(q, by_row[r]) for r in c] for q, c in zip(queries, cand.tolist(), strict=True)])


# ------------------------------------------------------------------------------------------------ scores
def test_fp32_and_fp16_equal_hand_written_maxsim(data):
    docs, queries, rows, cand = data
    q = MultiVectors.from_list(queries, dtype=np.float32)
    got32 = build(docs, rows, compression="fp32").maxsim(q, cand)
    assert got32.dtype == np.float32 and got32.shape == cand.shape
    np.testing.assert_allclose(got32, reference(docs, queries, rows, cand), atol=1e-5)
    docs16 = [d.astype(np.float16) for d in docs]
    got16 = build(docs16, rows, compression="fp16").maxsim(q, cand)
    np.testing.assert_allclose(got16, reference(docs16, queries, rows, cand), atol=1e-5)


@pytest.mark.parametrize("compression, min_rho, max_err", [("int8", 0.995, 0.002), ("binary", 0.9, 0.08)])
def test_compressed_scores_track_fp32(data, compression, min_rho, max_err):
    docs, queries, rows, cand = data
    q = MultiVectors.from_list(queries, dtype=np.float32)
    exact = reference(docs, queries, rows, cand)
    got = build(docs, rows, compression=compression).maxsim(q, cand)
    for i in range(len(queries)):
        assert spearmanr(got[i], exact[i]).statistic > min_rho
    # the binary decode scale keeps scores on the float scale (weighted fusion adds them to other scores);
    # the max over noisy token estimates leans a little high
    assert np.abs(got - exact).mean() < max_err
    assert 0.95 < got.mean() / exact.mean() < 1.25


def test_scores_equal_maxsim_against_decoded_vectors(data):
    docs, queries, rows, cand = data
    q = MultiVectors.from_list(queries, dtype=np.float32)
    for compression in ("int8", "binary"):
        store = build(docs, rows, compression=compression)
        got = store.maxsim(q, cand)
        want = [[hand_maxsim(qq, store.get(r)) for r in c] for qq, c in zip(queries, cand.tolist(), strict=True)]
        np.testing.assert_allclose(got, want, atol=1e-5)
    decoded = build(docs, rows, compression="binary").get(int(rows[0]))
    assert set(np.unique(np.abs(decoded)).tolist()) == pytest.approx([binary_scale(96)])
    np.testing.assert_array_equal(decoded > 0, docs[0] > 0)


def slow_binary_maxsim(q: np.ndarray, packed: np.ndarray, dim: int) -> float:
    """The binary formula written plainly: unpack bits, map 1 -> +1 and 0 -> -1, scale, then MaxSim."""
    signs = np.unpackbits(packed, axis=1)[:, :dim].astype(np.float64) * 2 - 1
    if len(signs) == 0:
        return 0.0
    return hand_maxsim(q, signs * math.sqrt(math.pi / (2 * dim)))


@pytest.mark.parametrize("dim", [64, 100, 1024])  # 100: a dimension that is not a multiple of 8
def test_binary_kernels_equal_slow_reference(dim):
    rng = np.random.default_rng(dim)
    lens = np.array([5, 0, 1, 17, 3], np.int64)
    x = rng.normal(size=(int(lens.sum()), dim))
    packed = np.packbits(x > 0, axis=1)
    q = unit(rng.normal(size=(7, dim)))
    starts = np.concatenate([[0], np.cumsum(lens)])
    want = [slow_binary_maxsim(q, packed[a:b], dim) for a, b in zip(starts[:-1], starts[1:], strict=True)]
    lut = mvmod._binary_lut(q, binary_scale(dim))
    np.testing.assert_allclose(mvmod._binary_scores_numpy(packed, lens, lut), want, rtol=1e-5, atol=1e-6)
    assert mvmod._numba_kernel(), "numba is installed in the test environment; the fast kernel must compile"
    np.testing.assert_allclose(mvmod._binary_scores_lut(packed, lens, lut), want, rtol=1e-5, atol=1e-6)


def test_binary_store_uses_the_formula_of_the_reference(data):
    docs, queries, rows, cand = data
    store = build(docs, rows, compression="binary")
    got = store.maxsim(MultiVectors.from_list(queries[:1], dtype=np.float32), cand[:1])
    by_row = dict(zip(rows.tolist(), docs, strict=True))
    want = [slow_binary_maxsim(queries[0], np.packbits(by_row[r] > 0, axis=1), 96) for r in cand[0].tolist()]
    np.testing.assert_allclose(got[0], want, rtol=1e-5, atol=1e-6)


def test_numpy_fallback_and_chunking_give_the_same_scores(data, monkeypatch):
    docs, queries, rows, cand = data
    q = MultiVectors.from_list(queries, dtype=np.float32)
    stores = {c: build(docs, rows, compression=c) for c in ("fp16", "int8", "binary")}
    want = {c: s.maxsim(q, cand) for c, s in stores.items()}
    monkeypatch.setattr(mvmod, "_NUMBA_KERNEL", False)  # as without the `fast` extra
    np.testing.assert_allclose(stores["binary"].maxsim(q, cand), want["binary"], atol=1e-6)
    monkeypatch.setattr(mvmod, "_CHUNK_TOKENS", 16)  # many small blocks, documents straddling block edges
    for c, store in stores.items():
        np.testing.assert_allclose(store.maxsim(q, cand), want[c], atol=1e-6)


def test_padding_unknown_rows_and_empty_documents():
    rng = np.random.default_rng(1)
    docs = [unit(rng.normal(size=(4, 16))), np.zeros((0, 16), np.float32), unit(rng.normal(size=(2, 16)))]
    for compression in ("fp32", "int8", "binary"):
        store = MultiVectorStore(16, compression=compression)
        store.add(MultiVectors.from_list(docs, dtype=np.float32), np.array([0, 1, 2]))
        q = MultiVectors.from_list([unit(rng.normal(size=(3, 16))), unit(rng.normal(size=(1, 16)))])
        with pytest.raises(UnknownIdError, match="row 99 "):  # a row that is not stored
            store.maxsim(q, np.array([[2, -1, 1, 99, 2], [-1, -1, -1, -1, -1]]))
        out = store.maxsim(q, np.array([[2, -1, 1, -1, 2], [-1, -1, -1, -1, -1]]))
        assert out[0, 1] == -np.inf and out[0, 3] == -np.inf  # padding
        assert out[0, 2] == 0.0  # a document without token vectors
        assert out[0, 0] == out[0, 4] and np.isfinite(out[0, 0])  # repeated candidates score alike
        assert (out[1] == -np.inf).all()
        assert store.get(1).shape == (0, 16)
    empty = MultiVectorStore(16)
    assert (empty.maxsim(q, np.array([[-1, -1], [-1, -1]])) == -np.inf).all()
    with pytest.raises(UnknownIdError):
        empty.maxsim(q, np.array([[0, 1], [-1, 3]]))
    assert empty.maxsim(q, np.zeros((2, 0), np.int64)).shape == (2, 0)


@pytest.mark.parametrize("compression", ["fp32", "fp16"])
def test_store_does_not_share_the_callers_buffer(compression):
    mv = MultiVectors.from_list([np.eye(3, 8, dtype=np.float32)], dtype=np.dtype(compression.replace("fp", "float")))
    store = MultiVectorStore(8, compression=compression)
    store.add(mv, np.array([0]))
    mv.vectors[:] = 0
    np.testing.assert_array_equal(store.get(0), np.eye(3, 8))


# --------------------------------------------------------------------------------------------- pooling
@pytest.mark.parametrize("n, factor", [(0, 2), (1, 2), (2, 2), (3, 2), (7, 2), (10, 3), (9, 3), (16, 4), (5, 1)])
def test_pooling_counts(n, factor):
    x = unit(np.random.default_rng(n).normal(size=(max(n, 1), 32)))[:n]
    pooled = pool_tokens(x, factor)
    assert pooled.shape == (math.ceil(n / factor), 32)
    if n:
        np.testing.assert_allclose(np.linalg.norm(pooled, axis=1), 1.0, atol=1e-5)


def test_pooling_is_exact_with_duplicate_tokens_and_merges_the_closest():
    rng = np.random.default_rng(3)
    a, b = unit(rng.normal(size=(2, 32)))
    x = np.stack([a, a, a, b, b, b])  # ties everywhere
    assert pool_tokens(x, 2).shape == (3, 32)
    pooled = pool_tokens(x, 3)  # two clusters: exactly a and b
    np.testing.assert_allclose(sorted(pooled @ a), sorted([1.0, float(a @ b)]), atol=1e-5)


def test_pooled_store_has_fewer_vectors_and_close_scores(data):
    docs, queries, rows, cand = data
    q = MultiVectors.from_list(queries, dtype=np.float32)
    exact = reference(docs, queries, rows, cand)
    for factor in (2, 3):
        store = build(docs, rows, compression="fp32", pool_factor=factor)
        assert store.n_tokens == sum(math.ceil(len(d) / factor) for d in docs)
        assert store.get(int(rows[0])).shape[0] == math.ceil(len(docs[0]) / factor)
        got = store.maxsim(q, cand)
        print(
            factor, np.abs(got - exact).mean(), min(spearmanr(g, e).statistic for g, e in zip(got, exact, strict=True))
        )
        assert np.abs(got - exact).mean() < 0.05
        assert min(spearmanr(g, e).statistic for g, e in zip(got, exact, strict=True)) > 0.9


def test_bytes_per_passage_at_bge_m3_width():
    assert MultiVectorStore(1024, compression="fp32").bytes_per_passage() == 1024 * 1024
    assert MultiVectorStore(1024, compression="fp16").bytes_per_passage() == 512 * 1024
    assert MultiVectorStore(1024, compression="int8").bytes_per_passage() == 256 * (1024 + 4)
    assert MultiVectorStore(1024, compression="binary").bytes_per_passage() == 32 * 1024
    assert MultiVectorStore(1024, compression="binary", pool_factor=2).bytes_per_passage() == 16 * 1024
    assert MultiVectorStore(1024, compression="int8", pool_factor=3).bytes_per_passage(255) == 85 * 1028
    assert MultiVectorStore(1024).bytes_per_passage(256) <= 32 * 1024  # the default meets the storage target
    assert MultiVectorStore(1024).compression == DEFAULT_COMPRESSION


# ---------------------------------------------------------------------------------------- persistence
@pytest.mark.parametrize("compression", ["fp16", "int8", "binary"])
def test_save_load_mmap_round_trip(tmp_path, data, compression):
    docs, queries, rows, cand = data
    q = MultiVectors.from_list(queries, dtype=np.float32)
    store = build(docs, rows, compression=compression, pool_factor=2)
    names = store.save(tmp_path)
    assert sorted(names) == sorted(p.name for p in tmp_path.iterdir())
    params = json.loads((tmp_path / "multivector.json").read_text())
    assert params["compression"] == compression and params["pool_factor"] == 2

    loaded = MultiVectorStore.load(tmp_path)
    assert all(isinstance(seg[1], np.memmap) for seg in loaded._segments)  # codes stay on disk
    assert len(loaded) == len(store) and loaded.nbytes == store.nbytes
    np.testing.assert_array_equal(loaded.rows, rows)
    np.testing.assert_array_equal(loaded.maxsim(q, cand), store.maxsim(q, cand))
    np.testing.assert_array_equal(loaded.get(int(rows[7])), store.get(int(rows[7])))

    in_ram = MultiVectorStore.load(tmp_path, mmap=False)
    assert not any(isinstance(seg[1], np.memmap) for seg in in_ram._segments)
    np.testing.assert_array_equal(in_ram.maxsim(q, cand), store.maxsim(q, cand))

    # add to the mapped store (a new in-memory segment), save over the mapped files, load again
    extra = [unit(np.random.default_rng(0).normal(size=(6, 96)))]
    loaded.add(MultiVectors.from_list(extra), np.array([1000]))
    before = loaded.maxsim(q, np.array([[1000, int(rows[0])]] * len(queries)))
    loaded.save(tmp_path)
    again = MultiVectorStore.load(tmp_path)
    np.testing.assert_array_equal(again.maxsim(q, np.array([[1000, int(rows[0])]] * len(queries))), before)
    assert len(again) == len(rows) + 1


def test_save_load_empty_store(tmp_path):
    store = MultiVectorStore(8, compression="int8")
    store.save(tmp_path)
    loaded = MultiVectorStore.load(tmp_path)
    assert len(loaded) == 0 and loaded.n_tokens == 0
    loaded.add(MultiVectors.from_list([np.eye(3, 8, dtype=np.float32)]), np.array([4]))
    assert loaded.maxsim(MultiVectors.from_list([np.eye(1, 8)]), np.array([[4]]))[0, 0] == pytest.approx(1.0, abs=1e-2)


def test_load_rejects_damaged_directories(tmp_path, data):
    docs, _, rows, _ = data
    build(docs, rows, compression="binary").save(tmp_path)
    with pytest.raises(IndexCorruptedError):
        MultiVectorStore.load(tmp_path / "missing")
    params = json.loads((tmp_path / "multivector.json").read_text())
    (tmp_path / "multivector.json").write_text(json.dumps(params | {"version": 99}))
    with pytest.raises(IndexVersionError):
        MultiVectorStore.load(tmp_path)
    (tmp_path / "multivector.json").write_text(json.dumps(params | {"tokens": params["tokens"] + 1}))
    with pytest.raises(IndexCorruptedError, match="inconsistent"):
        MultiVectorStore.load(tmp_path)
    (tmp_path / "multivector.json").write_text(json.dumps(params))
    codes = tmp_path / "multivector.codes.npy"
    codes.write_bytes(codes.read_bytes()[:-100])  # truncated
    with pytest.raises(IndexCorruptedError):
        MultiVectorStore.load(tmp_path)
    (tmp_path / "multivector.rows.npy").unlink()
    with pytest.raises(IndexCorruptedError, match="missing"):
        MultiVectorStore.load(tmp_path)


# ------------------------------------------------------------------------------------------------ compact
def test_compact_keeps_rows_and_scores(tmp_path, data):
    docs, queries, rows, cand = data
    q = MultiVectors.from_list(queries, dtype=np.float32)
    store = build(docs, rows, compression="int8")
    full = store.maxsim(q, cand)
    store.compact()  # no rows dropped: two segments become one
    assert len(store._segments) == 1
    np.testing.assert_array_equal(store.maxsim(q, cand), full)

    mask = np.arange(len(rows)) % 3 != 0
    alive = np.zeros(int(rows.max()) + 1, bool)
    alive[rows[mask]] = True
    store.compact(alive)
    assert len(store) == mask.sum() and store.n_tokens == sum(len(d) for d, m in zip(docs, mask, strict=True) if m)
    np.testing.assert_array_equal(store.rows, rows[mask])
    kept = np.isin(cand, rows[mask])
    got = store.maxsim(q, np.where(kept, cand, -1))
    np.testing.assert_allclose(got[kept], full[kept], atol=1e-6)
    assert (got[~kept] == -np.inf).all()
    with pytest.raises(UnknownIdError):  # a row the store does not hold is a caller's mistake, as in every part
        store.maxsim(q, cand)

    store.save(tmp_path)
    mapped = MultiVectorStore.load(tmp_path)
    alive = np.zeros(int(rows[2]) + 1, bool)  # rows past the end of the mask are dropped
    alive[rows[1:3]] = True
    mapped.compact(alive)
    np.testing.assert_array_equal(mapped.rows, rows[1:3])
    assert not isinstance(mapped._segments[0][1], np.memmap)
    np.testing.assert_array_equal(mapped.get(int(rows[2])), store.get(int(rows[2])))
    mapped.compact(np.zeros(2, bool))
    assert len(mapped) == 0 and mapped.n_tokens == 0
    with pytest.raises(InputError):
        store.compact(np.array([int(rows[0])]))  # row ids are not a mask


# -------------------------------------------------------------------------------------------- bad input
@pytest.mark.parametrize(
    "kw", [{"compression": "int4"}, {"pool_factor": 0}, {"pool_factor": 1.5}, {"pool_factor": True}]
)
def test_bad_configuration(kw):
    with pytest.raises(ConfigError):
        MultiVectorStore(32, **kw)
    with pytest.raises(ConfigError):
        MultiVectorStore(0)


def test_bad_input_leaves_the_store_unchanged(data):
    docs, queries, rows, cand = data
    store = build(docs[:10], rows[:10], compression="binary")
    q = MultiVectors.from_list(queries, dtype=np.float32)
    cand = np.where(np.isin(cand, rows[:10]), cand, -1)
    snapshot = (len(store), store.n_tokens, store.nbytes, store.maxsim(q, cand).copy())
    good = MultiVectors.from_list(docs[10:12], dtype=np.float32)
    nan = MultiVectors.from_list(docs[10:12], dtype=np.float32)
    nan.vectors[3, 5] = np.nan  # MultiVectors checks at construction; the store checks again
    bad_adds = [
        (DimensionMismatchError, MultiVectors.from_list([np.ones((2, 8))]), np.array([500])),
        (InputError, nan, np.array([500, 501])),
        (InputError, good, np.array([500])),  # one id for two documents
        (InputError, good, np.array([501, 500])),  # decreasing
        (DuplicateIdError, good, np.array([500, 500])),
        (DuplicateIdError, good, rows[8:10]),  # already stored
        (InputError, good, np.array([rows[5] + 1, 600])),  # not after the last stored row
        (InputError, good, np.array([500.0, 501.0])),
        (InputError, good, np.array([-3, 501])),
        (InputError, [np.ones((2, 96))], np.array([500])),
    ]
    for exc, mv, r in bad_adds:
        with pytest.raises(exc):
            store.add(mv, r)
    assert (len(store), store.n_tokens, store.nbytes) == snapshot[:3]
    np.testing.assert_array_equal(store.maxsim(q, cand), snapshot[3])

    with pytest.raises(DimensionMismatchError):
        store.maxsim(MultiVectors.from_list([np.ones((2, 8))]), cand[:1])
    with pytest.raises(InputError):
        store.maxsim(q, cand[0])  # 1-D rows
    with pytest.raises(InputError):
        store.maxsim(q, cand[:2])  # fewer rows than queries
    with pytest.raises(InputError):
        store.maxsim(q, cand.astype(np.float64))
    with pytest.raises(InputError, match="-1"):
        store.maxsim(q, np.full(cand.shape, -2))
    with pytest.raises(InputError, match="no token vectors"):
        store.maxsim(MultiVectors.from_list([np.ones((2, 96)), np.zeros((0, 96))]), cand[:2])
    with pytest.raises(UnknownIdError):
        store.get(int(rows[11]))
    for bad_row in (-1, 2**70, True, "5"):
        with pytest.raises(UnknownIdError):
            store.get(bad_row)
    with pytest.raises(InputError):
        store.bytes_per_passage(-1)
    store.add(good, np.array([500, 501]))  # still usable after all that
    assert len(store) == 12
