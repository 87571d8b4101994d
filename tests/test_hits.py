"""The Hits result type: shapes, per-query records, runs for evaluation, repr."""

from __future__ import annotations

import numpy as np
import pytest

from hybridsearch.errors import InputError
from hybridsearch.hits import Hit, Hits
from hybridsearch.metrics import evaluate


def make_hits(lookup=None) -> Hits:
    return Hits(
        rows=np.array([[7, 3, -1], [5, -1, -1]]),
        scores=np.array([[2.5, 1.25, -np.inf], [0.5, -np.inf, -np.inf]]),
        doc_ids=np.array([["a", "b", ""], ["c", "", ""]], dtype=object),
        ranks={"dense": np.array([[1, 0, 0], [2, 0, 0]]), "sparse": np.array([[3, 1, 0], [0, 0, 0]])},
        lookup=lookup,
    )


def test_shapes_and_counts():
    hits = make_hits()
    assert len(hits) == 2 and hits.n_queries == 2 and hits.k == 3
    assert hits.modes == ("dense", "sparse")
    assert hits.counts.tolist() == [2, 1]
    assert hits.rows.dtype == np.int64 and hits.scores.dtype == np.float32
    assert all(v.dtype == np.int32 for v in hits.ranks.values())


def test_getitem_returns_records_without_padding():
    hits = make_hits()
    assert hits[0] == [
        Hit(doc_id="a", score=2.5, row=7, ranks={"dense": 1, "sparse": 3}),
        Hit(doc_id="b", score=1.25, row=3, ranks={"dense": 0, "sparse": 1}),
    ]
    assert hits[-1] == [Hit(doc_id="c", score=0.5, row=5, ranks={"dense": 2, "sparse": 0})]
    assert [len(q) for q in hits] == [2, 1]
    with pytest.raises(IndexError):
        hits[2]
    with pytest.raises(InputError):
        hits["0"]  # type: ignore[index]


def test_slices_are_hits():
    tail = make_hits()[1:]
    assert isinstance(tail, Hits) and len(tail) == 1 and tail[0][0].doc_id == "c"


def test_lookup_fills_text_and_metadata():
    store = {7: ("seven", {"lang": "sw"}), 3: ("three", {}), 5: ("five", {"x": 1})}

    def lookup(rows):
        return [store[int(r)][0] for r in rows], [store[int(r)][1] for r in rows]

    first = make_hits(lookup)[0][0]
    assert (first.text, first.metadata) == ("seven", {"lang": "sw"})
    assert make_hits()[0][0].text is None  # no store attached


def test_to_run_feeds_evaluate():
    hits = make_hits()
    run = hits.to_run(["q1", "q2"])
    assert run == {"q1": {"a": 2.5, "b": 1.25}, "q2": {"c": 0.5}}
    assert hits.to_run() == {"0": run["q1"], "1": run["q2"]}
    scores = evaluate(run, {"q1": {"b": 1}, "q2": {"z": 1}}, ["nDCG@10"])
    assert scores["nDCG@10"] == pytest.approx((1 / np.log2(3)) / 2)
    with pytest.raises(InputError, match="2 queries"):
        hits.to_run(["q1"])
    with pytest.raises(InputError, match="duplicates"):
        hits.to_run(["q", "q"])


def test_repr_is_readable():
    text = repr(make_hits())
    assert text.startswith("Hits(n_queries=2, k=3, modes=('dense', 'sparse'), first query: ['a': 2.5000 (dense=1, sparse=3)")
    assert repr(Hits.empty(1, 4, ["dense"])) == "Hits(n_queries=1, k=4, modes=('dense',))"


def test_empty_and_shape_checks():
    empty = Hits.empty(2, 5, ["dense", "sparse"])
    assert empty[0] == [] and empty.to_run(["a", "b"]) == {"a": {}, "b": {}}
    with pytest.raises(InputError, match="one shape"):
        Hits(np.zeros((1, 2)), np.zeros((1, 3)), np.zeros((1, 2), object))
    with pytest.raises(InputError, match="ranks"):
        Hits(np.zeros((1, 2)), np.zeros((1, 2)), np.zeros((1, 2), object), {"dense": np.zeros((1, 3))})


# ----------------------------------------------------------------------------------- view scores, rerank, pickling
def test_view_scores_reach_each_hit():
    hits = Hits(
        rows=np.array([[7, 3]]), scores=np.array([[0.9, 0.1]]), doc_ids=np.array([["a", "b"]], object),
        ranks={"dense": np.array([[1, 2]]), "sparse": np.array([[0, 1]])},
        view_scores={"dense": np.array([[0.71, 0.5]]), "sparse": np.array([[-np.inf, 0.18]])},
    )
    assert hits[0][0].scores == pytest.approx({"dense": 0.71})
    assert hits[0][1].scores == pytest.approx({"dense": 0.5, "sparse": 0.18})


def test_rerank_replace_reorders_records_the_stage_and_keeps_unscored_hits_last():
    hits = make_hits()
    new = np.array([[0.2, np.nan, np.nan], [0.7, np.nan, np.nan]])
    out = hits.rerank(np.array([[0.2, 0.9, np.nan], [np.nan, np.nan, np.nan]]), k=2)
    assert [h.doc_id for h in out[0]] == ["b", "a"] and out[0][0].scores["rerank"] == pytest.approx(0.9)
    assert out[0][0].ranks == {"dense": 0, "sparse": 1, "rerank": 1}
    assert out.k == 2 and out.stages[-1] == {"stage": "rerank", "combine": "replace"}
    assert [h.doc_id for h in out[1]] == ["c"] and out[1][0].score == -np.inf  # unscored: kept, after the scored
    assert out.reranked.tolist() == [True, True] and out[0][0].reranked is True
    partial = hits.rerank(new)
    assert [h.doc_id for h in partial[0]] == ["a", "b"]  # a scored, b not: b stays after


def test_rerank_fused_with_rrf_and_minmax():
    hits = Hits(rows=np.array([[1, 2, 3]]), scores=np.array([[3.0, 2.0, 1.0]]), doc_ids=np.array([["x", "y", "z"]], object))
    stage = np.array([[0.0, 0.5, 1.0]])
    rrf_out = hits.rerank(stage, combine="rrf")
    # x: 1/61 + 1/63, y: 1/62 + 1/62, z: 1/63 + 1/61 -> x and z tie above y (convexity); x keeps its place.
    assert [h.doc_id for h in rrf_out[0]] == ["x", "z", "y"]
    assert rrf_out[0][0].score == pytest.approx(1 / 61 + 1 / 63, rel=1e-6)
    assert rrf_out[0][2].score == pytest.approx(2 / 62, rel=1e-6)
    assert rrf_out.stages[-1]["combine"] == "rrf(k=60)"
    mm = hits.rerank(stage, combine="minmax(retrieval=0.3,rerank=0.7)")
    assert [h.doc_id for h in mm[0]] == ["z", "y", "x"] and mm[0][0].score == pytest.approx(0.7)
    with pytest.raises(InputError, match="shape"):
        hits.rerank(np.zeros((1, 2)))


def test_rerank_failure_keeps_first_stage_order_and_says_why():
    hits = make_hits()
    out = hits.rerank(np.array([[0.1, 0.9, np.nan], [0.3, np.nan, np.nan]]), failed=[None, "scorer timed out"])
    assert [h.doc_id for h in out[0]] == ["b", "a"]
    assert [(h.doc_id, h.score, h.reranked, h.note) for h in out[1]] == [("c", 0.5, False, "scorer timed out")]
    assert out.notes == (None, "scorer timed out") and out[1:].notes == ("scorer timed out",)


class _Store:
    """A stand-in for a large document store: counts lookups."""

    def __init__(self):
        self.calls = 0
        self.payload = "x" * 1_000_000

    def lookup(self, rows):
        self.calls += 1
        return [f"text {int(r)}" for r in rows], [{"row": int(r)} for r in rows]


def test_pickling_carries_the_hits_texts_not_the_store():
    import pickle

    store = _Store()
    hits = make_hits(store.lookup)
    data = pickle.dumps(hits)
    assert len(data) < 5_000  # the million-character store did not come along
    back = pickle.loads(data)
    calls = store.calls
    assert back[0][0].text == "text 7" and back[0][0].metadata == {"row": 7} and back[1][0].text == "text 5"
    assert store.calls == calls  # the copy answers from its own texts
    np.testing.assert_array_equal(back.rows, hits.rows)
    assert back.modes == hits.modes
