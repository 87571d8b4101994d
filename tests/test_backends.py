"""Milvus (milvus-lite) and Qdrant (local mode) behind the index API: migration, agreement, round trips, filters."""

from __future__ import annotations

import numpy as np
import pytest

pytest.importorskip("pymilvus")
pytest.importorskip("qdrant_client")

from scifact_views import scifact  # noqa: E402

from hybridsearch.backends import MilvusDatabase, QdrantDatabase, doc_key  # noqa: E402
from hybridsearch.backends.filters import to_milvus  # noqa: E402
from hybridsearch.errors import (  # noqa: E402
    ConfigError,
    DuplicateIdError,
    FilterError,
    IndexMismatchError,
    InputError,
    UnknownIdError,
)
from hybridsearch.index import HybridIndex  # noqa: E402

pytestmark = pytest.mark.filterwarnings("ignore:Local mode performs exact")


def _overlap(a, b) -> float:
    return float(np.mean([len(set(x) & set(y)) / max(len(x), 1) for x, y in zip(a.doc_ids.tolist(), b.doc_ids.tolist(), strict=False)]))


def _index(n: int) -> tuple[HybridIndex, dict]:
    d = scifact()
    index = HybridIndex(multivector_compression="fp32")
    index.add(d["ids"][:n], d["docs"][:n], texts=d["texts"][:n], metadata=d["metadata"][:n])
    return index, d


FILTERS = [{"bucket": {"$ne": "a"}, "year": {"$gte": 2010}}, {"$or": [{"long": True}, {"bucket": {"$in": ["b"]}}]},
           {"year": {"$nin": [2001, 2002]}, "long": {"$exists": True}}]


@pytest.mark.slow
@pytest.mark.timeout(600)
def test_milvus_agrees_with_the_embedded_index_on_scifact(tmp_path):
    index, d = _index(1000)
    db = MilvusDatabase("scifact", uri=str(tmp_path / "milvus.db"))
    assert db.from_index(index, batch_size=2000) == len(index) == len(db)
    assert db.modes == ("dense", "sparse")  # Milvus holds no ColBERT vectors here
    q = d["queries"][:30]
    overlap = {}
    for mode, fusion in [("dense", "rrf"), ("sparse", "rrf"), ("hybrid", "rrf"), ("hybrid", "weighted_sum"), ("hybrid", "minmax")]:
        want = index.search(q, k=10, mode=mode, fusion=fusion, rerank=False)
        got = db.search(q, k=10, mode=mode, fusion=fusion)
        overlap[f"{mode}/{fusion}"] = _overlap(want, got)
        np.testing.assert_allclose(np.sort(got.scores, axis=1), np.sort(want.scores, axis=1), rtol=1e-4, atol=1e-5)
    print("Milvus top-10 overlap with the embedded index:", overlap)
    # equal score lists show that only the order of exactly tied documents (RRF sums) can differ: the engine keys
    # (hashes of ids) break ties, where the embedded index uses insertion order
    assert min(overlap.values()) >= 0.95, overlap
    for flt in FILTERS:
        assert _overlap(index.search(q, k=10, mode="hybrid", filter=flt, rerank=False), db.search(q, k=10, mode="hybrid", filter=flt)) >= 0.95
    engine = db.search(q, k=10, mode="hybrid", fusion="rrf", fusion_in="engine")  # Milvus's RRFRanker(60)
    assert _overlap(index.search(q, k=10, mode="hybrid", fusion="rrf", rerank=False), engine) >= 0.9
    assert engine.modes == ()  # the engine reports no per-view ranks
    with pytest.raises(ConfigError, match="Milvus cannot fuse with 'minmax'"):
        db.search(q, mode="hybrid", fusion="minmax", fusion_in="engine")
    with pytest.raises(ConfigError, match="cannot store"):
        MilvusDatabase("x", uri=str(tmp_path / "m2.db"), views=["multivector"])


@pytest.mark.slow
@pytest.mark.timeout(600)
def test_qdrant_agrees_with_the_embedded_index_on_scifact():
    index, d = _index(500)
    db = QdrantDatabase("scifact", location=":memory:")
    assert db.from_index(index, batch_size=400) == 500
    assert db.modes == ("dense", "sparse", "multivector")
    q = d["queries"][:20]
    overlap = {}
    for mode, fusion in [("dense", "rrf"), ("sparse", "rrf"), ("multivector", "rrf"), ("hybrid", "rrf"),
                         ("hybrid", "weighted_sum"), ("hybrid", "minmax")]:
        want, got = index.search(q, k=10, mode=mode, fusion=fusion), db.search(q, k=10, mode=mode, fusion=fusion)
        overlap[f"{mode}/{fusion}"] = _overlap(want, got)
        if fusion != "rrf":  # RRF ranks move when exactly tied scores are ordered by another key (see above)
            np.testing.assert_allclose(np.sort(got.scores, axis=1), np.sort(want.scores, axis=1), rtol=1e-4, atol=1e-5)
    print("Qdrant top-10 overlap with the embedded index:", overlap)
    # equal score lists show that only the order of exactly tied documents (RRF sums) can differ: the engine keys
    # (hashes of ids) break ties, where the embedded index uses insertion order
    assert min(overlap.values()) >= 0.95, overlap
    for flt in FILTERS:
        assert _overlap(index.search(q, k=10, mode="hybrid", filter=flt), db.search(q, k=10, mode="hybrid", filter=flt)) >= 0.95
    # the Query API: prefetch dense + sparse, RRF (k=60 is Qdrant's Rrf(k=61)), MaxSim over the fused candidates
    engine = db.search(q, k=10, mode="hybrid", fusion="rrf(k=60)", rerank=False, fusion_in="engine")
    assert _overlap(index.search(q, k=10, mode="hybrid", fusion="rrf", rerank=False), engine) >= 0.9
    np.testing.assert_allclose(engine.scores[:, 0], index.search(q, k=1, mode="hybrid", rerank=False).scores[:, 0], rtol=1e-5)
    # with multi-vectors the engine reranks the fused candidates by MaxSim alone; Qdrant sums over query tokens
    # where the library averages (same order per query)
    reranked = db.search(q, k=10, mode="hybrid", fusion_in="engine")
    mine = db.score("multivector", q, reranked.rows)
    np.testing.assert_allclose(reranked.scores / q.multivector.lengths[:, None], mine, rtol=1e-4)
    with pytest.raises(ConfigError, match="Qdrant cannot fuse with 'weighted_sum'"):
        db.search(q, mode="hybrid", fusion="weighted_sum", fusion_in="engine")


@pytest.mark.timeout(300)
@pytest.mark.parametrize("engine", ["milvus", "qdrant"])
def test_round_trip_of_ids_metadata_upserts_and_deletes(tmp_path, engine):
    index, d = _index(40)

    def open_db():
        if engine == "milvus":
            return MilvusDatabase("rt", uri=str(tmp_path / "m.db"))
        return QdrantDatabase("rt", path=str(tmp_path / "q"))

    db = open_db()
    db.from_index(index)
    ids = d["ids"][:40]
    views = db.modes
    stored = db.vectors(ids)
    ref = d["docs"][:40].select(views)
    assert np.array_equal(stored.dense, ref.dense)
    assert np.array_equal(stored.sparse.indices, ref.sparse.indices) and np.array_equal(stored.sparse.data, ref.sparse.data)
    if "multivector" in views:
        assert np.array_equal(stored.multivector.vectors, ref.multivector.vectors)
    assert db.get(ids[3]).metadata == d["metadata"][3] and db.get(ids[3]).text == d["texts"][3]

    new = d["docs"][[40, 41]].select(views)
    db.upsert([ids[5], "new-doc"], new, texts=["replaced", "added"], metadata=[{"bucket": "z", "n": None}, {"bucket": "y"}])
    with pytest.raises(DuplicateIdError):
        db.add(["new-doc"], new[[0]])
    db.delete([ids[7], ids[8]])
    with pytest.raises(UnknownIdError):
        db.delete([ids[7]])
    with pytest.raises(UnknownIdError):
        db.get(ids[7])
    if engine == "qdrant":
        db.close()
    db = open_db()  # reopened from disk: same documents, views and encoder
    assert len(db) == 39 and db.modes == views and db.encoder == index.encoder
    assert db.get(ids[5]).text == "replaced" and db.get(ids[5]).metadata == {"bucket": "z", "n": None}
    assert np.array_equal(db.vectors(["new-doc"]).dense, new[[1]].dense)
    hits = db.search(new[[0]], k=3, mode="dense")
    assert hits[0][0].doc_id == ids[5] and hits[0][0].text == "replaced"
    assert hits.rows[0, 0] == doc_key(ids[5])
    hits = db.search(new[[0]], k=40, mode="sparse", filter={"bucket": {"$in": ["y", "z"]}})
    assert sorted(h.doc_id for h in hits[0]) == sorted(["new-doc", ids[5]])[: len(hits[0])] and len(hits[0]) >= 1
    with pytest.raises(FilterError):
        db.search(new[[0]], filter={"bucket": {"$gt": "a"}})
    with pytest.raises(InputError, match="lack"):
        db.upsert(["x"], new[[0]].select(["sparse"]))


def test_filters_translate_to_milvus_expressions():
    assert to_milvus({"lang": "sw", "year": {"$gte": 2000}}) == '((metadata["lang"] == "sw") and (metadata["year"] >= 2000))'
    assert to_milvus({"lang": {"$ne": "sw"}}) == '((not exists metadata["lang"] or metadata["lang"] != "sw"))'
    assert to_milvus({"$or": [{"ok": True}, {"n": {"$in": [1, 2.5]}}]}) == \
        '((((metadata["ok"] == true)) or ((metadata["n"] == 1 or metadata["n"] == 2.5))))'
    with pytest.raises(FilterError, match="Milvus cannot compare a JSON field with null"):
        to_milvus({"tag": None})


@pytest.mark.timeout(300)
def test_retriever_serves_backends_and_shards_like_the_index(tmp_path):
    from hybridsearch.encoders import get_encoder
    from hybridsearch.retriever import Retriever
    from hybridsearch.scale.sharded import ShardedIndex

    d = scifact()
    texts, ids = d["texts"][:300], d["ids"][:300]
    encoder = get_encoder("bm25-word").fit(texts)
    index = HybridIndex()
    index.add(ids, encoder.encode_corpus(texts), texts=texts, metadata=d["metadata"][:300])
    db = QdrantDatabase("bm25", location=":memory:")
    db.from_index(index)
    ShardedIndex.split(index, tmp_path / "shards", 2)
    queries = ["cancer cells and protein expression", "vaccine dose risk", "brain development in infants"]
    want = Retriever(encoder, index).retrieve(queries, k=5)
    for other in (db, ShardedIndex(tmp_path / "shards", use_ray=False)):
        got = Retriever(encoder, other).retrieve(queries, k=5)
        assert got.doc_ids.tolist() == want.doc_ids.tolist()
        np.testing.assert_allclose(got.scores, want.scores, rtol=1e-5)
        assert got[0][0].text == want[0][0].text
    with pytest.raises(IndexMismatchError):
        db.search(get_encoder("bm25-word").fit(["other corpus words"]).encode_queries(["words"]), k=3)


def test_vector_databases_follow_bm25_document_frequencies_through_writes():
    """Query-time idf in Qdrant: the adapter's document frequencies follow its adds, upserts and deletes, so scores
    equal an embedded index holding the same documents; without the statistics a search is refused, not wrong."""
    from hybridsearch.encoders import get_encoder

    d = scifact()
    texts, ids = d["texts"][:120], d["ids"][:120]
    encoder = get_encoder("bm25-word").fit(texts)
    index = HybridIndex()
    index.add(ids[:100], encoder.encode_corpus(texts[:100]), texts=texts[:100])
    db = QdrantDatabase("idf", location=":memory:")
    db.from_index(index)
    for target in (index, db):
        target.add(ids[100:], encoder.encode_corpus(texts[100:]), texts=texts[100:])
        target.upsert(ids[:5], encoder.encode_corpus(texts[60:65]), texts=texts[60:65])
        target.delete(ids[10:30])
    q = encoder.encode_queries(["cancer cells and protein expression", "vaccine dose risk"])
    want, got = index.search(q, k=10, mode="sparse"), db.search(q, k=10, mode="sparse")
    assert got.doc_ids.tolist() == want.doc_ids.tolist()
    np.testing.assert_allclose(got.scores, want.scores, rtol=1e-5)
    fresh = QdrantDatabase("idf", location=":memory:")
    fresh.upsert(ids[:3], encoder.encode_corpus(texts[:3]))
    with pytest.raises(ConfigError, match="set_idf_statistics"):
        fresh.search(q, k=3, mode="sparse")
