"""Metadata filters: the language, its errors, and filtering before top-k in every search mode."""

from __future__ import annotations

import numpy as np
import pytest
from index_helpers import build, make_encoded, meta

from hybridsearch.errors import FilterError
from hybridsearch.index import HybridIndex
from hybridsearch.index.filters import build_columns, parse_filter

METAS = [
    {"lang": "sw", "year": 2001, "ok": True},
    {"lang": "yo", "year": 1999.0, "ok": False, "tags": ["x"]},
    {"lang": "sw", "year": "2001"},  # a string, not a number
    {"year": 2010, "lang": None},
    {},
]


def matches(spec) -> list[int]:
    cols = build_columns(METAS)
    return np.flatnonzero(parse_filter(spec).evaluate(cols, len(METAS))).tolist()


@pytest.mark.parametrize(
    ("spec", "expected"),
    [
        ({"lang": "sw"}, [0, 2]),
        ({"lang": {"$eq": "yo"}}, [1]),
        ({"lang": {"$ne": "sw"}}, [1, 3, 4]),  # documents without the field match $ne
        ({"lang": {"$in": ["sw", "yo"]}}, [0, 1, 2]),
        ({"lang": {"$nin": ["sw"]}}, [1, 3, 4]),
        ({"lang": None}, [3]),
        ({"year": 2001}, [0]),  # the string "2001" is not the number 2001
        ({"year": "2001"}, [2]),
        ({"year": 1999}, [1]),  # 1999 equals 1999.0
        ({"year": {"$gte": 2000, "$lt": 2010}}, [0]),
        ({"year": {"$gt": 1999, "$lte": 2010}}, [0, 3]),
        ({"year": {"$lt": 1e9}}, [0, 1, 3]),
        ({"ok": True}, [0]),
        ({"ok": 1}, []),  # true is not 1
        ({"ok": {"$exists": True}}, [0, 1]),
        ({"tags": {"$exists": True}}, [1]),
        ({"lang": {"$exists": False}}, [4]),
        ({"lang": "sw", "year": 2001}, [0]),
        ({"$or": [{"lang": "yo"}, {"year": 2010}]}, [1, 3]),
        ({"$and": [{"lang": "sw"}, {"$or": [{"ok": True}, {"year": "2001"}]}]}, [0, 2]),
        ({"absent": {"$nin": [1]}}, [0, 1, 2, 3, 4]),
    ],
)
def test_filter_semantics(spec, expected):
    assert matches(spec) == expected


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        ({"lang": {"$regex": "s.*"}}, "unsupported operator '\\$regex'; supported: \\$eq, \\$ne, \\$in"),
        ({"lang": {"sub": 1}}, "nested objects cannot be matched"),
        ({"$not": {"lang": "sw"}}, "unknown operator '\\$not'"),
        ({"lang": ["sw", "yo"]}, "use \\$in"),
        ({"lang": {"$in": "sw"}}, "takes a list"),
        ({"year": {"$gt": "2000"}}, "compares numbers only"),
        ({"year": {"$gt": True}}, "compares numbers only"),
        ({"year": float("nan")}, "NaN never matches"),
        ({"lang": {"$exists": 1}}, "true or false"),
        ({"lang": {}}, "empty operator dict"),
        ({}, "the filter is empty"),
        ({"$or": []}, "non-empty list"),
        ({1: "x"}, "field names"),
        ({"lang": {"$eq": object()}}, "compares strings, numbers"),
    ],
)
def test_malformed_filters_raise(spec, message):
    with pytest.raises(FilterError, match=message):
        parse_filter(spec)
    with pytest.raises(FilterError):
        parse_filter(["lang"])  # type: ignore[arg-type]


def test_filter_fields_and_conditions():
    f = parse_filter({"a": 1, "$or": [{"b": {"$in": [1, 2]}}, {"c": {"$gt": 0, "$lt": 5}}]})
    assert f.fields == {"a", "b", "c"}
    assert [c.op for c in f.conditions] == ["$eq", "$in", "$gt", "$lt"]


# ----------------------------------------------------------------------------------------------- in the index
N = 150


@pytest.fixture()
def corpus():
    return build(N)


def allowed_ids(spec) -> set[str]:
    keep = set()
    f = parse_filter(spec)
    cols = build_columns([meta(i) for i in range(N)])
    for i in np.flatnonzero(f.evaluate(cols, N)):
        keep.add(f"d{i}")
    return keep


SELECTIVE = {"lang": "sw", "year": {"$gte": 2005, "$lt": 2012}}  # 15 of 150 documents


@pytest.mark.parametrize("mode", ["dense", "sparse", "multivector", "hybrid"])
def test_filters_apply_before_top_k_in_every_mode(corpus, mode):
    index, _, _ = corpus
    q = make_encoded(3, seed=77)
    keep = allowed_ids(SELECTIVE)
    assert len(keep) == 15
    k = 10
    hits = index.search(q, k=k, mode=mode, filter=SELECTIVE, candidates=k)
    for query_hits in hits:
        assert {h.doc_id for h in query_hits} <= keep
    if mode != "sparse":  # dense scores every document, so k of the 15 matching ones come back
        assert hits.counts.tolist() == [k] * 3
    else:  # sparse returns only documents sharing a term with the query
        full = index.search(q, k=N, mode="sparse")
        reachable = [len({d for d in row if d} & keep) for row in full.doc_ids]
        assert hits.counts.tolist() == [min(k, r) for r in reachable]
    # the filtered ranking is the unfiltered ranking restricted to matching documents
    if mode in ("dense", "sparse"):
        full = index.search(q, k=N, mode=mode)
        for i in range(3):
            expected = [d for d in full.doc_ids[i] if d in keep][:k]
            assert hits.doc_ids[i][: len(expected)].tolist() == expected


def test_filter_and_deletions_combine(corpus):
    index, _, _ = corpus
    q = make_encoded(2, seed=5)
    keep = allowed_ids({"lang": "yo"})
    deleted = sorted(keep)[:10]
    index.delete(deleted)
    hits = index.search(q, k=N, mode="dense", filter={"lang": "yo"})
    assert set(hits.doc_ids[0][hits.rows[0] >= 0]) == keep - set(deleted)


def test_filters_survive_upsert_compaction_and_reload(corpus, tmp_path):
    index, _, _ = corpus
    q = make_encoded(2, seed=6)
    index.upsert(["d0"], make_encoded(1, seed=8), metadata=[{"lang": "xx", "year": 3000}])
    index.add(["n1"], make_encoded(1, seed=9), metadata=[{"lang": "xx", "rating": 4.5}])
    spec = {"lang": "xx"}
    got = set(index.search(q, k=5, mode="dense", filter=spec).doc_ids[0]) - {""}
    assert got == {"d0", "n1"}
    assert set(index.search(q, k=5, mode="dense", filter={"rating": {"$gt": 4}}).doc_ids[0]) - {""} == {"n1"}
    index.compact()
    assert set(index.search(q, k=5, mode="dense", filter=spec).doc_ids[0]) - {""} == {"d0", "n1"}
    index.save(tmp_path / "ix")
    loaded = HybridIndex.load(tmp_path / "ix")
    for flt in (spec, SELECTIVE, {"year": {"$gt": 2015}}, {"tag": None}, {"even": False, "lang": {"$ne": "en"}}):
        a = index.search(q, k=20, mode="hybrid", filter=flt)
        b = loaded.search(q, k=20, mode="hybrid", filter=flt)
        np.testing.assert_array_equal(a.rows, b.rows)


def test_filter_on_unknown_or_unfilterable_fields(corpus):
    index, _, _ = corpus
    q = make_encoded(1, seed=1)
    with pytest.raises(FilterError, match="no document has the field"):
        index.search(q, k=3, filter={"country": "ke"})
    with pytest.raises(FilterError, match="holds only lists or objects"):
        index.search(q, k=3, filter={"keywords": "a"})
    hits = index.search(q, k=N, mode="dense", filter={"keywords": {"$exists": True}})
    assert {d for d in hits.doc_ids[0] if d} == {f"d{i}" for i in range(0, N, 7)}
    with pytest.raises(FilterError):
        HybridIndex().search(q, k=3, filter={"lang": "sw"})  # an empty index has no fields at all


def test_filter_matching_nothing_returns_padding(corpus):
    index, _, _ = corpus
    hits = index.search(make_encoded(2, seed=3), k=4, filter={"year": {"$gt": 5000}})
    assert hits.counts.tolist() == [0, 0] and (hits.rows == -1).all()
