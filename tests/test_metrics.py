"""Metrics: pytrec_eval (trec_eval) against the independent numpy implementation, edge cases, API traps."""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from hybridsearch.errors import ConfigError, InputError
from hybridsearch.metrics import MEASURES, evaluate, evaluate_run, parse_measure, per_query

ALL = (*MEASURES, "P@5", "nDCG@1", "MRR@1")


def both(qrels, run, measures=ALL, **kw):
    a = evaluate_run(qrels, run, measures, backend="pytrec_eval", **kw)
    b = evaluate_run(qrels, run, measures, backend="numpy", **kw)
    for m in measures:
        assert a.per_query[m].keys() == b.per_query[m].keys(), m
        for q in a.per_query[m]:
            assert a.per_query[m][q] == pytest.approx(b.per_query[m][q], abs=1e-12), (m, q)
    return a


def test_hand_computed_values():
    qrels = {"q": {"a": 2, "b": 1, "c": 0}}
    run = {"q": {"x": 3.0, "a": 2.0, "c": 1.0, "b": 0.5}}
    e = both(qrels, run)
    dcg = 2 / math.log2(3) + 1 / math.log2(5)
    idcg = 2 / math.log2(2) + 1 / math.log2(3)
    assert e["nDCG@10"] == pytest.approx(dcg / idcg)
    assert e["MRR@10"] == pytest.approx(1 / 2)
    assert e["MAP@1000"] == pytest.approx((1 / 2 + 2 / 4) / 2)
    assert e["R@100"] == 1.0 and e["P@5"] == pytest.approx(2 / 5)
    assert e["nDCG@1"] == 0.0 and e["MRR@1"] == 0.0


def test_ties_are_broken_by_doc_id_descending():
    # all three tie; trec_eval ranks c, b, a: the relevant 'a' is third
    e = both({"q": {"a": 1}}, {"q": {"a": 0.5, "b": 0.5, "c": 0.5}})
    assert e["MRR@10"] == pytest.approx(1 / 3)
    assert e["nDCG@1"] == 0.0
    e = both({"q": {"c": 1}}, {"q": {"a": 0.5, "b": 0.5, "c": 0.5}})
    assert e["MRR@10"] == 1.0


def test_graded_relevance_and_negative_labels():
    qrels = {"q": {"a": 3, "b": 1, "n": -1}}
    e = both(qrels, {"q": {"n": 9.0, "b": 2.0, "a": 1.0}})
    dcg = 1 / math.log2(3) + 3 / math.log2(4)  # the negative label gains nothing
    idcg = 3 + 1 / math.log2(3)
    assert e["nDCG@10"] == pytest.approx(dcg / idcg)
    assert e["MRR@10"] == pytest.approx(1 / 2)


def test_query_without_relevant_documents_counts_as_zero():
    e = both({"q1": {"a": 1}, "q2": {"a": 0}}, {"q1": {"a": 1.0}, "q2": {"a": 1.0}})
    assert e.queries == 2 and e["nDCG@10"] == pytest.approx(0.5)


def test_missing_query_policies():
    qrels = {"q1": {"a": 1}, "q2": {"b": 1}}
    run = {"q1": {"a": 1.0}, "q3": {"a": 1.0}}
    zero = both(qrels, run, missing="zero")
    drop = both(qrels, run, missing="drop")
    assert zero["nDCG@10"] == pytest.approx(0.5) and zero.queries == 2
    assert drop["nDCG@10"] == 1.0 and drop.queries == 1
    assert zero.missing_from_run == ("q2",) and zero.unjudged == ("q3",)
    assert "counted as 0" in zero.describe() and "left out" in drop.describe()
    # an empty result list is "answered nothing", scored 0 under both policies
    assert evaluate(qrels, {"q1": {"a": 1.0}, "q2": {}}, missing="drop")["nDCG@10"] == pytest.approx(0.5)
    assert evaluate(qrels, {}, missing="zero")["nDCG@10"] == 0.0
    assert evaluate_run(qrels, {}, missing="drop").queries == 0


def test_empty_judgements_raise():
    with pytest.raises(InputError, match="no judged query"):
        evaluate({}, {"q": {"a": 1.0}})
    with pytest.raises(InputError, match="no judged query"):
        evaluate({"q": {}}, {"q": {"a": 1.0}})  # a query with no judgement lines is not judged
    for backend in ("pytrec_eval", "numpy"):
        assert per_query({"q": {}, "r": {"a": 0}}, {"q": {"a": 1.0}, "r": {"a": 1.0}}, "nDCG@10", backend=backend) == {"r": 0.0}


def test_swapped_arguments_are_detected():
    qrels = {"q": {"a": 1}}
    run = {"q": {"a": 0.73, "b": 0.41}}
    with pytest.raises(InputError, match=r"\(qrels, run\)"):
        evaluate(run, qrels)
    assert evaluate(qrels, run) == {"nDCG@10": 1.0, "R@100": 1.0}


def test_measures_as_a_string_and_bad_measures():
    assert evaluate({"q": {"a": 1}}, {"q": {"a": 1.0}}, "nDCG@10") == {"nDCG@10": 1.0}
    assert parse_measure("Recall@100") == ("recall", 100) and parse_measure("RR@10") == ("rr", 10)
    for bad in ("nDCG", "nDCG@0", "foo@10", "nDCG@x"):
        with pytest.raises(ConfigError):
            evaluate({"q": {"a": 1}}, {"q": {"a": 1.0}}, bad)
    with pytest.raises(ConfigError):
        evaluate({"q": {"a": 1}}, {"q": {"a": 1.0}}, [])
    with pytest.raises(ConfigError, match="missing"):
        evaluate({"q": {"a": 1}}, {"q": {"a": 1.0}}, missing="skip")  # type: ignore[arg-type]


def test_bad_inputs_name_the_entry():
    with pytest.raises(InputError, match="NaN"):
        evaluate({"q": {"a": 1}}, {"q": {"a": float("nan")}})
    with pytest.raises(InputError, match="whole-number"):
        evaluate({"q": {"a": 0.5}}, {"q": {"a": 1.0}})
    assert evaluate({"q": {"a": 2.0}}, {"q": {"a": 1.0}}) == {"nDCG@10": 1.0, "R@100": 1.0}


def test_hits_are_refused_with_a_hint():
    from hybridsearch.hits import Hits

    hits = Hits.empty(1, 2)
    with pytest.raises(InputError, match="to_run"):
        evaluate({"q": {"a": 1}}, hits)  # type: ignore[arg-type]


ids = st.sampled_from(list("abcdefgh"))


@settings(max_examples=150, deadline=None)
@given(
    qrels=st.dictionaries(st.sampled_from(["q1", "q2", "q3"]), st.dictionaries(ids, st.integers(-1, 3), max_size=6), max_size=3),
    run=st.dictionaries(st.sampled_from(["q1", "q2", "q4"]), st.dictionaries(ids, st.sampled_from([0.0, 0.5, 1.0, 2.5, -1.0]), max_size=8), max_size=3),
    missing=st.sampled_from(["zero", "drop"]),
)
def test_numpy_agrees_with_trec_eval_on_random_runs(qrels, run, missing):
    if not any(qrels.values()):
        with pytest.raises(InputError):
            evaluate(qrels, run)
        return
    both(qrels, run, missing=missing)


@pytest.mark.slow
def test_numpy_agrees_with_trec_eval_on_a_real_run(data_root):
    from hybridsearch.datasets import load_dataset
    from hybridsearch.encoders.bm25 import BM25WordEncoder

    ds = load_dataset("scifact")
    docs = list(ds.corpus)
    enc = BM25WordEncoder()
    d = enc.fit_encode_corpus([x.contents for x in docs]).sparse
    qids = list(ds.queries)
    # documents carry BM25's term-frequency part; apply_idf weights the queries as an index does at search time
    s = (enc.apply_idf(enc.encode_queries([ds.queries[q] for q in qids])).sparse @ d.T).toarray()
    run = {}
    for i, q in enumerate(qids):
        top = np.argsort(-s[i], kind="stable")[:1000]
        run[q] = {docs[j].doc_id: float(s[i, j]) for j in top}
    e = both(ds.qrels, run)
    assert 0.6 < e["nDCG@10"] < 0.7
