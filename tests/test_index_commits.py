"""One writer per directory, damaged manifests, overwrite, rollback failures, dense ties, exact integer filters and
duplicate token ids: each case that used to lose or mix up documents silently."""

from __future__ import annotations

import numpy as np
import pytest
import scipy.sparse as sp
from index_helpers import build, make_encoded

from hybridsearch.errors import (
    CommitConflictError,
    IndexCorruptedError,
    IndexExistsError,
    InputError,
    WriterPoisonedError,
)
from hybridsearch.index import HybridIndex
from hybridsearch.index.manifest import read_manifest
from hybridsearch.index.sparse import SparseIndex
from hybridsearch.types import Encoded


def _one(seed: int, n: int = 1) -> Encoded:
    return make_encoded(n, seed=seed)


def test_two_writers_never_lose_a_commit(tmp_path):
    d = tmp_path / "ix"
    a = HybridIndex()
    a.add(["a"], _one(1))
    a.save(d)
    w1, w2 = HybridIndex.load(d), HybridIndex.load(d)
    w1.add(["b"], _one(2))
    w1.save()
    w2.add(["c"], _one(3))
    with pytest.raises(CommitConflictError, match="generation 2.*generation 1"):
        w2.save()
    assert HybridIndex.load(d).doc_ids() == ["a", "b"]  # nothing was written by the refused save
    w3 = HybridIndex.load(d)
    w3.add(["c"], _one(3))
    w3.save()
    assert HybridIndex.load(d).doc_ids() == ["a", "b", "c"]
    w2.save(overwrite=True)  # the caller says so: w2's state replaces the commit
    assert HybridIndex.load(d).doc_ids() == ["a", "c"]


def test_a_damaged_manifest_is_refused_on_save_and_recovered(tmp_path):
    d = tmp_path / "ix"
    index, _, ids = build(20)
    index.save(d)
    index.delete(ids[:3])
    index.save()
    (d / "manifest.json").write_text("{garbage")
    other, _, _ = build(5, seed=9)
    with pytest.raises(IndexCorruptedError, match="recover"):
        other.save(d, overwrite=False)
    with pytest.raises(IndexCorruptedError, match="recover"):
        index.save()
    with pytest.raises(IndexCorruptedError):
        HybridIndex.load(d)
    assert (d / "gen-000002").is_dir()  # nothing was deleted
    assert HybridIndex.recover(d) == 2
    loaded = HybridIndex.load(d)
    assert loaded.doc_ids() == ids[3:] and loaded.generation == 2
    # a damaged newest generation: recovery falls back to the newest one whose checksums verify
    loaded.add(["new"], _one(5))
    loaded.save()
    gen3 = d / "gen-000003"
    part = next(p for p in sorted(gen3.rglob("*.npy")) if p.stat().st_size > 64 and "docs" in str(p))
    raw = bytearray(part.read_bytes())
    raw[-1] ^= 0xFF
    part.write_bytes(bytes(raw))
    (d / "manifest.json").write_text("{garbage")
    with pytest.raises(IndexCorruptedError):
        HybridIndex.recover(d)  # generation 2 was deleted after generation 3 was committed
    # a damaged manifest can be replaced on purpose
    other.save(d, overwrite=True)
    assert HybridIndex.load(d).doc_ids() == other.doc_ids()


def test_a_fresh_index_does_not_replace_an_existing_one(tmp_path):
    d = tmp_path / "ix"
    first = HybridIndex()
    first.add(["a", "b"], _one(1, 2))
    first.save(d)
    fresh = HybridIndex()
    fresh.add(["z"], _one(2))
    with pytest.raises(IndexExistsError, match="overwrite=True"):
        fresh.save(d)
    assert HybridIndex.load(d).doc_ids() == ["a", "b"]
    fresh.save(d, overwrite=True)
    assert HybridIndex.load(d).doc_ids() == ["z"]
    # a loaded index saved into another directory that holds an index is refused the same way
    elsewhere = tmp_path / "other"
    first.save(elsewhere)
    with pytest.raises(IndexExistsError):
        HybridIndex.load(d).save(elsewhere)


def test_a_failed_rollback_poisons_the_writer(tmp_path, monkeypatch):
    d = tmp_path / "ix"
    index, _, _ = build(10)
    index.save(d)
    before = HybridIndex.load(d).doc_ids()

    def broken_append(*args, **kwargs):
        raise OSError("disk full")

    def broken_compact(self, alive=None):
        raise RuntimeError("cannot undo")

    monkeypatch.setattr(type(index._docs), "append", broken_append)
    monkeypatch.setattr(SparseIndex, "compact", broken_compact)
    with pytest.raises(OSError, match="disk full"):
        index.add(["x"], _one(3))
    monkeypatch.undo()
    for call in (lambda: index.add(["y"], _one(4)), lambda: index.delete(["d1"]), index.compact, index.save):
        with pytest.raises(WriterPoisonedError, match="SparseIndex"):
            call()
    assert HybridIndex.load(d).doc_ids() == before  # the last commit is untouched
    assert "x" not in index and len(index) == 10  # searches still see the last published state


@pytest.mark.parametrize("factory", ["Flat", "HNSW32", "SQfp16"])
def test_dense_ties_are_ordered_by_row_in_every_factory(factory):
    rng = np.random.default_rng(0)
    v = rng.normal(size=(3, 16)).astype(np.float32)
    v /= np.linalg.norm(v, axis=1, keepdims=True)
    dense = np.stack([v[0], v[0], v[1], v[0]])  # a, b and d are identical
    index = HybridIndex(dense_factory=factory)
    index.add(["a", "b", "c", "d"], Encoded(dense=dense))
    q = Encoded(dense=v[:1])
    tops = [index.search(q, k=k, mode="dense").doc_ids[0].tolist() for k in (1, 2, 3, 4)]
    assert tops[0] == ["a"] and tops[1] == ["a", "b"] and tops[2] == ["a", "b", "d"]
    for small, large in zip(tops, tops[1:], strict=False):
        assert large[: len(small)] == small  # a top-k is a prefix of a larger top-k


def test_integer_filters_past_2_53_keep_python_semantics(tmp_path):
    index = HybridIndex()
    meta = [{"tid": 1983516295378495150}, {"tid": 1983516295378495200}, {"tid": 7}]
    index.add(["x", "y", "z"], _one(1, 3), metadata=meta)
    q = _one(9)

    def ids(flt, ix=index):
        return sorted(d for d in ix.search(q, k=3, mode="dense", filter=flt).doc_ids[0] if d)

    for ix in (index, HybridIndex.load(index.save(tmp_path / "ix"))):
        assert ids({"tid": 1983516295378495150}, ix) == ["x"]
        assert ids({"tid": {"$gt": 1983516295378495150}}, ix) == ["y"]
        assert ids({"tid": {"$ne": 1983516295378495150}}, ix) == ["y", "z"]
        assert ids({"tid": {"$lte": 1983516295378495199}}, ix) == ["x", "z"]
        assert ids({"tid": {"$in": [1983516295378495200]}}, ix) == ["y"]
        assert ids({"tid": 1983516295378495150.0}, ix) == []  # that float is ...5232 exactly: equal to neither
        assert ids({"tid": {"$gt": 2.5}}, ix) == ["x", "y", "z"]
    with pytest.raises(InputError, match="64-bit"):
        index.add(["w"], _one(2), metadata=[{"tid": 2**70}])


def test_duplicate_token_ids_raise_on_every_path():
    m = sp.csr_matrix((np.array([0.2, 0.3], np.float32), np.array([1, 1]), np.array([0, 0, 2])), shape=(2, 5))
    with pytest.raises(InputError, match="row 1 holds token id 1"):
        Encoded(sparse=m)
    with pytest.raises(InputError, match="row 0 holds token id 1"):
        Encoded.sparse_from_dicts([{1: 0.2, "1": 0.3}], vocab_size=5)
    with pytest.raises(InputError, match="row 0 holds token id 1"):
        Encoded.sparse_from_qdrant([{"indices": [1, 1], "values": [0.2, 0.3]}], vocab_size=5)
    with pytest.raises(InputError, match="row 0 holds token id 1"):
        Encoded.sparse_from_milvus(sp.csr_matrix(m[1:]), vocab_size=5)
    with pytest.raises(InputError, match="row 1 holds token id 1"):
        SparseIndex(5).add(m, np.arange(2))
    ok = Encoded.sparse_from_qdrant([{"indices": [3, 1], "values": [0.2, 0.3]}], vocab_size=5)
    assert ok.indices.tolist() == [1, 3] and ok.data.tolist() == pytest.approx([0.3, 0.2])


def test_manifest_names_generation(tmp_path):
    index, _, _ = build(5)
    index.save(tmp_path / "ix")
    assert read_manifest(tmp_path / "ix").generation == 1
    assert (tmp_path / "ix" / "gen-000001" / "commit.json").is_file()


@pytest.mark.parametrize("factory", ["Flat", "HNSW32", "IVF4,Flat", "SQ8"])
def test_a_searcher_keeps_its_view_through_compaction_of_a_mapped_index(tmp_path, factory):
    index, enc, ids = build(300, dense_factory=factory)
    index.save(tmp_path / "ix")
    loaded = HybridIndex.load(tmp_path / "ix")  # memory-mapped parts
    before = loaded.searcher()
    expected = before.search(enc[:3], k=5, mode="hybrid")
    loaded.delete(ids[:50])
    loaded.compact()
    loaded.add(["new"], enc[:1])
    again = before.search(enc[:3], k=5, mode="hybrid")
    np.testing.assert_array_equal(again.rows, expected.rows)
    np.testing.assert_array_equal(again.scores, expected.scores)
    assert before.get("d0").doc_id == "d0" and len(before) == 300
    assert "d0" not in loaded and loaded.search(enc[:1], k=1, mode="dense").doc_ids[0, 0] == "new"
    loaded.save()
    assert HybridIndex.load(tmp_path / "ix").doc_ids() == loaded.doc_ids()


@pytest.mark.parametrize("factory", ["Flat", "HNSW32", "PQ4x4", "IVF4,Flat"])
def test_a_searcher_never_returns_rows_appended_after_it(factory):
    index, enc, _ = build(200, dense_factory=factory)
    before = index.searcher()
    index.add(["new"], enc[:1])  # the same vectors as d0: the best hit of that query for a newer view
    for s, want in ((before, "d0"), (index.searcher(), None)):
        for flt in (None, {"lang": "sw"}):
            hits = s.search(enc[:1], k=3, mode="dense", filter=flt)
            got = [d for d in hits.doc_ids[0] if d]
            if want is not None:
                assert "new" not in got and len(got) == 3
            elif flt is None:  # "new" has no metadata, so the filter leaves it out
                assert "new" in got
