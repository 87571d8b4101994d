from __future__ import annotations

import numpy as np
import pytest
import scipy.sparse as sp

from hybridsearch import Encoded, EncoderInfo, MultiVectors
from hybridsearch.errors import DimensionMismatchError, InputError
from hybridsearch.types import BGE_M3_VOCAB_SIZE


def _encoded(n: int = 4, seed: int = 0) -> Encoded:
    rng = np.random.default_rng(seed)
    dense = rng.normal(size=(n, 8)).astype(np.float32)
    dense /= np.linalg.norm(dense, axis=1, keepdims=True)
    sparse = sp.random(n, BGE_M3_VOCAB_SIZE, density=2e-5, format="csr", random_state=seed, dtype=np.float32)
    mv = MultiVectors.from_list([rng.normal(size=(i + 1, 8)) for i in range(n)])
    return Encoded(dense=dense, sparse=sparse, multivector=mv, encoder=EncoderInfo("bge-m3", "BAAI/bge-m3", "abc"))


def _same(a: Encoded, b: Encoded) -> None:
    assert a.modes == b.modes
    np.testing.assert_array_equal(a.dense, b.dense)
    assert (a.sparse != b.sparse).nnz == 0
    np.testing.assert_array_equal(a.sparse.indices, b.sparse.indices)
    np.testing.assert_array_equal(a.multivector.vectors, b.multivector.vectors)
    np.testing.assert_array_equal(a.multivector.offsets, b.multivector.offsets)


def test_canonical_dtypes() -> None:
    e = _encoded()
    assert e.dense.dtype == np.float32 and e.dense.flags.c_contiguous
    assert e.sparse.indices.dtype == np.int32 and e.sparse.data.dtype == np.float32
    assert e.multivector.vectors.dtype == np.float16 and e.multivector.offsets.dtype == np.int64
    assert len(e) == 4 and e.modes == ("dense", "sparse", "multivector")
    assert e.vocab_size == BGE_M3_VOCAB_SIZE and e.dense_dim == 8 and e.multivector_dim == 8


def test_flag_embedding_round_trip_is_exact() -> None:
    e = _encoded()
    flag = e.to_flag_embedding()
    # FlagEmbedding's own types: id-string keys and numpy float32 values.
    assert all(isinstance(k, str) for d in flag["lexical_weights"] for k in d)
    assert all(isinstance(v, np.float32) for d in flag["lexical_weights"] for v in d.values())
    assert [v.shape[0] for v in flag["colbert_vecs"]] == [1, 2, 3, 4]
    _same(e, Encoded.from_flag_embedding(flag))


def test_from_flag_embedding_single_text_and_fp32_multivectors() -> None:
    rng = np.random.default_rng(1)
    colbert = rng.normal(size=(3, 8)).astype(np.float32)
    out = {"dense_vecs": rng.normal(size=8).astype(np.float16), "lexical_weights": {"6083": np.float32(0.25)},
           "colbert_vecs": colbert}
    e = Encoded.from_flag_embedding(out, multivector_dtype=np.float32)
    assert len(e) == 1 and e.dense.dtype == np.float32
    assert e.sparse_dicts() == [{6083: 0.25}]
    np.testing.assert_array_equal(e.multivector[0], colbert)


def test_sparse_dicts_and_milvus_qdrant_forms() -> None:
    e = _encoded()
    rows = e.to_milvus_sparse()
    assert all(isinstance(k, int) and isinstance(v, float) for r in rows for k, v in r.items())
    back = Encoded.sparse_from_milvus(rows)
    assert (back != e.sparse).nnz == 0
    assert (Encoded.sparse_from_milvus(e.sparse) != e.sparse).nnz == 0
    q = e.to_qdrant_sparse()
    assert list(q[0].indices) == e.sparse[0].indices.tolist()
    assert (Encoded.sparse_from_qdrant(q) != e.sparse).nnz == 0
    dict_rows = [{"indices": list(v.indices), "values": list(v.values)} for v in q]
    assert (Encoded.sparse_from_qdrant(dict_rows) != e.sparse).nnz == 0


def test_save_load_round_trip(tmp_path) -> None:
    e = _encoded()
    path = e.save(tmp_path / "bundle")
    assert path.name == "bundle.npz"
    loaded = Encoded.load(path)
    _same(e, loaded)
    assert loaded.encoder == e.encoder


def test_load_rejects_truncated_and_foreign_files(tmp_path) -> None:
    path = _encoded().save(tmp_path / "b.npz")
    path.write_bytes(path.read_bytes()[:100])
    with pytest.raises(InputError, match="not a readable"):
        Encoded.load(path)
    np.savez(tmp_path / "other.npz", x=np.zeros(3))
    with pytest.raises(InputError):
        Encoded.load(tmp_path / "other.npz")
    with pytest.raises(InputError, match="no encoded bundle"):
        Encoded.load(tmp_path / "missing.npz")


def test_take_concat_select() -> None:
    e = _encoded()
    part = e.take([3, 1])
    np.testing.assert_array_equal(part.dense, e.dense[[3, 1]])
    np.testing.assert_array_equal(part.multivector[0], e.multivector[3])
    _same(Encoded.concat([e[:2], e[2:]]), e)
    assert e.select(["dense"]).modes == ("dense",)
    with pytest.raises(InputError):
        e.select(["colbert"])


@pytest.mark.parametrize(
    "kwargs, match",
    [
        ({}, "at least one"),
        ({"dense": np.array([[np.nan, 1.0]], np.float32)}, "NaN"),
        ({"dense": np.ones(3, np.float32)}, "2-D"),
        ({"sparse": sp.csr_matrix(np.array([[0.0, -1.0]]))}, "non-negative"),
        ({"sparse": np.ones((1, 3))}, "scipy.sparse"),
        ({"dense": np.ones((2, 3), np.float32), "sparse": sp.csr_matrix(np.ones((3, 3)))}, "same number of rows"),
    ],
)
def test_bad_input(kwargs, match) -> None:
    with pytest.raises(InputError, match=match):
        Encoded(**kwargs)


def test_multivector_validation() -> None:
    with pytest.raises(DimensionMismatchError):
        MultiVectors.from_list([np.ones((2, 4)), np.ones((1, 5))])
    with pytest.raises(InputError, match="offsets"):
        MultiVectors(np.ones((3, 4), np.float16), np.array([0, 2]))
    empty = MultiVectors.from_list([np.zeros((0, 4)), np.ones((2, 4))])
    assert empty.lengths.tolist() == [0, 2] and empty[0].shape == (0, 4)


def test_sparse_from_dicts_checks_ids() -> None:
    with pytest.raises(InputError, match="outside the vocabulary"):
        Encoded.sparse_from_dicts([{300000: 1.0}])
    with pytest.raises(InputError, match="non-integer"):
        Encoded.sparse_from_dicts([{"x": 1.0}])
    m = Encoded.sparse_from_dicts([{"5": 0.5, 2: 0.25}, {}])
    assert m.shape == (2, BGE_M3_VOCAB_SIZE) and m[0].indices.tolist() == [2, 5] and m[1].nnz == 0
