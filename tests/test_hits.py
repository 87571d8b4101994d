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
    scores = evaluate({"q1": {"b": 1}, "q2": {"z": 1}}, run, ["nDCG@10"])
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
