"""BM25's idf comes from the index's live documents at search time: it follows adds, deletes, upserts and
compaction exactly, survives save/load, and leaves scores on an unchanged corpus as the fitted statistics give."""

from __future__ import annotations

import math

import numpy as np
import pytest

from hybridsearch.encoders.bm25 import BM25WordEncoder
from hybridsearch.index import HybridIndex

K1, B = 0.9, 0.4
TINY = ["a b b c", "b c d e f", "a a a"]  # dl 4, 5, 3; avgdl 4


def idf(n: int, df: int) -> float:
    return math.log(1 + (n - df + 0.5) / (df + 0.5))


def tfw(tf: int, dl: int, avgdl: float = 4.0) -> float:
    return tf * (K1 + 1) / (tf + K1 * (1 - B + B * dl / avgdl))


def score(index: HybridIndex, enc: BM25WordEncoder, query: str, doc: str) -> float:
    hits = index.search(enc.encode_queries([query]), k=10, mode="sparse")
    got = {d: float(s) for d, s in zip(hits.doc_ids[0], hits.scores[0], strict=True) if d}
    return got.get(doc, 0.0)


def test_idf_follows_the_live_documents(tmp_path):
    enc = BM25WordEncoder().fit(TINY)
    index = HybridIndex()
    index.add(["d0", "d1", "d2"], enc.encode_corpus(TINY))
    # unchanged corpus: the fitted statistics, as the encoder alone computes them
    assert score(index, enc, "a", "d0") == pytest.approx(idf(3, 2) * tfw(1, 4), rel=1e-6)
    fitted = (enc.apply_idf(enc.encode_queries(["a b"])).sparse @ enc.encode_corpus(TINY).sparse.T).toarray()[0]
    hits = index.search(enc.encode_queries(["a b"]), k=3, mode="sparse")
    np.testing.assert_allclose(hits.scores[0], np.sort(fitted)[::-1], rtol=1e-6)
    # a new document holding "a": N = 4, df(a) = 3, and d0's score follows exactly (its vector did not change)
    index.add(["d3"], enc.encode_corpus(["a x"]))  # "x" is outside the vocabulary but counts in dl
    assert score(index, enc, "a", "d0") == pytest.approx(idf(4, 3) * tfw(1, 4), rel=1e-6)
    assert score(index, enc, "a", "d3") == pytest.approx(idf(4, 3) * tfw(1, 2), rel=1e-6)
    # deleting documents takes them out of N and df (before any compaction)
    index.delete(["d2", "d3"])
    assert score(index, enc, "a", "d0") == pytest.approx(idf(2, 1) * tfw(1, 4), rel=1e-6)
    assert score(index, enc, "c", "d0") == pytest.approx(idf(2, 2) * tfw(1, 4), rel=1e-6)
    # an upsert counts once: the old version is gone, the new one counts
    index.upsert(["d1"], enc.encode_corpus(["a b"]))
    assert score(index, enc, "a", "d0") == pytest.approx(idf(2, 2) * tfw(1, 4), rel=1e-6)
    assert score(index, enc, "c", "d0") == pytest.approx(idf(2, 1) * tfw(1, 4), rel=1e-6)
    index.compact()
    assert score(index, enc, "c", "d0") == pytest.approx(idf(2, 1) * tfw(1, 4), rel=1e-6)
    # the setting and the statistics survive a save and load
    loaded = HybridIndex.load(index.save(tmp_path / "ix"))
    assert loaded.info()["config"]["sparse"]["idf"] is True
    assert score(loaded, enc, "c", "d0") == pytest.approx(idf(2, 1) * tfw(1, 4), rel=1e-6)


def test_a_refitted_encoder_still_queries_the_index():
    enc = BM25WordEncoder().fit(TINY)
    index = HybridIndex()
    index.add(["d0", "d1", "d2"], enc.encode_corpus(TINY))
    refit = BM25WordEncoder().fit(["a b b c", "b c d e f", "a a e"])  # same words, same avgdl, other df
    assert refit.info == enc.info
    assert score(index, refit, "a", "d0") == pytest.approx(idf(3, 2) * tfw(1, 4), rel=1e-6)


def test_other_sparse_encoders_are_searched_as_given():
    import scipy.sparse as sp

    from hybridsearch.types import Encoded

    index = HybridIndex()
    docs = sp.csr_matrix(np.array([[1.0, 0.5], [0.0, 2.0]], np.float32))
    index.add(["x", "y"], Encoded(sparse=docs))
    assert index.info()["config"]["sparse"]["idf"] is False
    hits = index.search(Encoded(sparse=sp.csr_matrix(np.array([[1.0, 1.0]], np.float32))), k=2, mode="sparse")
    assert hits.doc_ids[0].tolist() == ["y", "x"] and hits.scores[0].tolist() == [2.0, 1.5]


def test_a_composite_encoder_with_a_bm25_sparse_view_gets_query_time_idf():
    """The hybrid's sparse view (CompositeEncoder(sparse=bm25-word)) is weighted exactly as bm25-word alone."""
    from hybridsearch.encoders import CompositeEncoder

    enc = BM25WordEncoder().fit(TINY)
    alone, composite = HybridIndex(), HybridIndex()
    alone.add(["d0", "d1", "d2"], enc.encode_corpus(TINY))
    both = CompositeEncoder(sparse=enc)
    composite.add(["d0", "d1", "d2"], both.encode_corpus(TINY))
    assert composite.info()["config"]["sparse"]["idf"] is True
    want = alone.search(enc.encode_queries(["a b"]), k=3, mode="sparse")
    got = composite.search(both.encode_queries(["a b"]), k=3, mode="sparse")
    np.testing.assert_allclose(got.scores, want.scores, rtol=1e-6)
    assert score(composite, both, "a", "d0") == pytest.approx(idf(3, 2) * tfw(1, 4), rel=1e-6)
