"""Streaming export of an index's stored vectors, ids and metadata."""

from __future__ import annotations

import numpy as np
import pytest
import scipy.sparse as sp

from hybridsearch.errors import ConfigError, InputError
from hybridsearch.index import HybridIndex
from hybridsearch.index.export import export_index, export_info
from hybridsearch.types import Encoded, EncoderInfo, MultiVectors

N = 60


@pytest.fixture
def encoded() -> Encoded:
    rng = np.random.default_rng(3)
    d = rng.normal(size=(N, 16)).astype(np.float32)
    d /= np.linalg.norm(d, axis=1, keepdims=True)
    s = sp.random(N, 300, density=0.05, random_state=1, format="csr", dtype=np.float32)
    s.data += 0.01
    mv = MultiVectors.from_list([rng.normal(size=(1 + i % 4, 16)) for i in range(N)], dtype=np.float32)
    return Encoded(dense=d, sparse=s, multivector=mv, encoder=EncoderInfo("test", "m", "f1"))


def _build(encoded: Encoded, **kw) -> tuple[HybridIndex, list[str]]:
    ids = [f"doc-{i}" for i in range(N)]
    index = HybridIndex(multivector_compression="fp32", **kw)
    index.add(ids[:25], encoded[:25], texts=[f"text {i}" for i in range(25)], metadata=[{"i": i, "tag": "a"} for i in range(25)])
    index.add(ids[25:], encoded[25:], metadata=[{"i": i} for i in range(25, N)])
    index.upsert(["doc-7"], encoded[[7]], texts=["seven again"], metadata=[{"i": 7, "tag": "b"}])
    index.delete(["doc-3", "doc-40"])
    return index, ids


@pytest.mark.parametrize("saved", [False, True])
def test_export_streams_exactly_what_is_stored(encoded, tmp_path, saved):
    index, ids = _build(encoded)
    if saved:
        index.save(tmp_path / "ix")
        index = HybridIndex.load(tmp_path / "ix")
    batches = list(export_index(index, batch_size=8))
    assert max(len(b) for b in batches) == 8
    got = Encoded.concat([b.encoded for b in batches])
    out_ids = [i for b in batches for i in b.ids]
    expect = [i for i in range(N) if i not in (3, 7, 40)] + [7]  # the upserted document comes last (new row)
    assert out_ids == [ids[i] for i in expect]
    assert np.array_equal(got.dense, encoded.dense[expect])
    ref = encoded.sparse[expect]
    assert np.array_equal(got.sparse.indptr, ref.indptr) and np.array_equal(got.sparse.data, ref.data)
    assert np.array_equal(got.multivector.vectors, encoded.multivector.take(expect).vectors.astype(np.float32))
    assert got.encoder == index.encoder
    meta = {i: m for b in batches for i, m in zip(b.ids, b.metadata, strict=False)}
    texts = {i: t for b in batches for i, t in zip(b.ids, b.texts, strict=False)}
    assert meta["doc-7"] == {"i": 7, "tag": "b"} and texts["doc-7"] == "seven again" and meta["doc-30"] == {"i": 30}
    assert export_info(index)["exact"] == {"dense": True, "sparse": True, "multivector": True}


def test_export_rebuilds_an_equal_index(encoded):
    index, _ = _build(encoded)
    copy = HybridIndex(multivector_compression="fp32")
    for b in export_index(index, batch_size=13):
        copy.add(b.ids, b.encoded, texts=b.texts, metadata=b.metadata)
    q = encoded[[1, 2, 50]]
    for mode in ("dense", "sparse", "multivector", "hybrid"):
        a, b = index.search(q, k=10, mode=mode), copy.search(q, k=10, mode=mode)
        assert a.to_run() == b.to_run()


def test_export_selected_views_and_lossy_parts(encoded):
    index, _ = _build(encoded, dense_factory="SQ8")
    info = export_info(index)
    assert info["exact"]["dense"] is False and info["documents"] == N - 2
    first = next(export_index(index, modes=["sparse"]))
    assert first.encoded.modes == ("sparse",)
    with pytest.raises(InputError, match="cannot export"):
        next(export_index(HybridIndex().__class__(modes=["dense"]), modes=["sparse"]))
    with pytest.raises(ConfigError):
        next(export_index(index, batch_size=0))
