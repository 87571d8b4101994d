"""Retrieval metrics computed by trec_eval (through ``pytrec_eval``), with a numpy cross-check.

Arguments follow pytrec_eval, ranx, ir_measures and BEIR: ``evaluate(qrels, run)``, where

- ``qrels`` is ``{query_id: {doc_id: relevance}}`` with whole-number (graded) relevance labels;
- ``run`` is ``{query_id: {doc_id: score}}``, e.g. from :meth:`hybridsearch.hits.Hits.to_run`.

Measures are written ``nDCG@10``, ``R@100`` (or ``Recall@100``), ``MRR@10`` (or ``RR@10``), ``MAP@1000`` (or
``AP@1000``) and ``P@10``; they map to trec_eval's ``ndcg_cut.10``, ``recall.100``, ``recip_rank`` on the run
cut at 10, ``map_cut.1000`` and ``P.10``. As in trec_eval: documents are ranked by score descending, ties by doc
id descending; nDCG gains are the graded labels (labels <= 0 gain nothing); the binary measures count a document
as relevant when its label is >= 1; a judged query with no relevant document scores 0 and is counted.

**Judged queries missing from the run.** trec_eval averages over the queries in both qrels and run unless given
``-c``, which counts the missing ones as 0 (MIRACL's and Anserini's setting); pytrec_eval and BEIR drop them.
The default here is ``missing="zero"`` (trec_eval ``-c``): a system that answers nothing for a query is not
rewarded for it. ``missing="drop"`` gives pytrec_eval/BEIR numbers. :class:`Evaluation` records which was used
and which queries were missing. Run queries that have no judgements are ignored (and counted).

``backend="numpy"`` computes the same numbers with an independent implementation (:mod:`.metrics_numpy`); the
tests compare both on real runs and edge cases.
"""

from __future__ import annotations

import math
import numbers
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Literal

from ._optional import require
from .errors import ConfigError, InputError

__all__ = ["MEASURES", "Evaluation", "evaluate", "evaluate_run", "parse_measure", "per_query"]

Run = Mapping[str, Mapping[str, float]]
Qrels = Mapping[str, Mapping[str, int]]
MissingPolicy = Literal["zero", "drop"]

#: The measures ``hybridsearch eval`` reports by default.
MEASURES = ("nDCG@10", "R@100", "MRR@10", "MAP@1000", "R@1000")

_NAMES = {
    "ndcg": "ndcg", "r": "recall", "recall": "recall", "mrr": "rr", "rr": "rr", "recip_rank": "rr",
    "map": "ap", "ap": "ap", "p": "p", "precision": "p",
}
_TREC = {"ndcg": "ndcg_cut", "recall": "recall", "ap": "map_cut", "p": "P"}


def parse_measure(measure: str) -> tuple[str, int]:
    """``"nDCG@10"`` -> ``("ndcg", 10)``; also ``R@k``/``Recall@k``, ``MRR@k``/``RR@k``, ``MAP@k``/``AP@k``, ``P@k``.

    Raises :class:`~hybridsearch.errors.ConfigError` for anything else.
    """
    if not isinstance(measure, str):
        raise ConfigError(f"a measure is a string like 'nDCG@10', got {type(measure).__name__}")
    name, sep, k = measure.partition("@")
    key = _NAMES.get(name.strip().lower())
    if not sep or key is None or not k.isdigit() or int(k) <= 0:
        raise ConfigError(
            f"unknown measure {measure!r}; write it like 'nDCG@10', 'R@100', 'MRR@10', 'MAP@1000' or 'P@10'"
        )
    return key, int(k)


def _measure_list(measures: str | Iterable[str]) -> list[str]:
    ms = [measures] if isinstance(measures, str) else list(measures)
    if not ms:
        raise ConfigError("no measures given; e.g. measures=('nDCG@10', 'R@100')")
    for m in ms:
        parse_measure(m)
    if len(set(ms)) != len(ms):
        raise ConfigError(f"measures named twice: {ms}")
    return ms


def _label(qid: str, did: str, value: object) -> int:
    """A relevance label as int; whole-number floats (``2.0``) are accepted."""
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise InputError(f"qrels[{qid!r}][{did!r}] = {value!r} is not a relevance label (a whole number)")
    f = float(value)
    if not math.isfinite(f) or not f.is_integer():
        raise InputError(
            f"qrels[{qid!r}][{did!r}] = {value!r} is not a whole-number relevance label. evaluate takes "
            "(qrels, run) in that order, as pytrec_eval, ranx, ir_measures and BEIR do: did you pass the run first?"
        )
    return int(f)


def _check_qrels(qrels: object) -> dict[str, dict[str, int]]:
    if type(qrels).__name__ == "Hits":
        raise InputError("qrels must be {query_id: {doc_id: relevance}}; got Hits (they go second, as hits.to_run(query_ids))")
    if not isinstance(qrels, Mapping):
        raise InputError(f"qrels must be a mapping {{query_id: {{doc_id: relevance}}}}, got {type(qrels).__name__}")
    out: dict[str, dict[str, int]] = {}
    for q, docs in qrels.items():
        if not isinstance(docs, Mapping):
            raise InputError(f"qrels[{q!r}] must be a mapping {{doc_id: relevance}}, got {type(docs).__name__}")
        if docs:  # a query with no judgement lines is not judged (trec_eval never sees it)
            out[str(q)] = {str(d): _label(str(q), str(d), r) for d, r in docs.items()}
    return out


def _check_run(run: object) -> dict[str, dict[str, float]]:
    if type(run).__name__ == "Hits":
        raise InputError("run must be {query_id: {doc_id: score}}; convert Hits with hits.to_run(query_ids)")
    if not isinstance(run, Mapping):
        raise InputError(f"run must be a mapping {{query_id: {{doc_id: score}}}}, got {type(run).__name__}")
    out: dict[str, dict[str, float]] = {}
    for q, docs in run.items():
        if not isinstance(docs, Mapping):
            raise InputError(f"run[{q!r}] must be a mapping {{doc_id: score}}, got {type(docs).__name__}")
        scores: dict[str, float] = {}
        for d, s in docs.items():
            if isinstance(s, bool) or not isinstance(s, numbers.Real) or math.isnan(float(s)):
                raise InputError(f"run[{q!r}][{d!r}] = {s!r} is not a score (a real number, not NaN)")
            scores[str(d)] = float(s)
        out[str(q)] = scores
    return out


@dataclass(frozen=True)
class Evaluation:
    """The result of :func:`evaluate_run`.

    ``means``: ``{measure: mean over the evaluated queries}``; ``per_query``: ``{measure: {query_id: value}}``;
    ``missing``: the policy used for judged queries absent from the run (``"zero"`` or ``"drop"``);
    ``queries``: how many queries the means average over; ``missing_from_run``: judged queries the run lacks
    (scored 0 under ``"zero"``, left out under ``"drop"``); ``unjudged``: run queries without judgements (ignored).
    """

    means: dict[str, float]
    per_query: dict[str, dict[str, float]]
    missing: MissingPolicy
    queries: int
    missing_from_run: tuple[str, ...] = field(default=())
    unjudged: tuple[str, ...] = field(default=())
    backend: str = "pytrec_eval"

    def __getitem__(self, measure: str) -> float:
        return self.means[measure]

    def describe(self) -> str:
        """One line on what was averaged, e.g. for a table's footnote."""
        rule = "counted as 0 (trec_eval -c)" if self.missing == "zero" else "left out (pytrec_eval/BEIR)"
        return (
            f"{self.queries} queries ({self.backend}); judged queries missing from the run: "
            f"{len(self.missing_from_run)}, {rule}; run queries without judgements ignored: {len(self.unjudged)}"
        )


def _trec_per_query(qrels: dict[str, dict[str, int]], run: dict[str, dict[str, float]], measures: list[str]) -> dict[str, dict[str, float]]:
    pytrec_eval = require("pytrec_eval", extra="eval", package="pytrec-eval-terrier")
    out: dict[str, dict[str, float]] = {m: {} for m in measures}
    plain = {m: parse_measure(m) for m in measures if parse_measure(m)[0] != "rr"}
    if plain:
        names = {f"{_TREC[key]}.{k}" for key, k in plain.values()}
        res = pytrec_eval.RelevanceEvaluator(qrels, names).evaluate(run)
        for m, (key, k) in plain.items():
            col = f"{_TREC[key]}_{k}"
            out[m] = {q: float(v[col]) for q, v in res.items()}
    for m in measures:
        key, k = parse_measure(m)
        if key == "rr":  # trec_eval's recip_rank has no cutoff: cut the run at k in trec_eval's order first
            cut = {q: dict(sorted(d.items(), key=lambda x: (x[1], x[0]), reverse=True)[:k]) for q, d in run.items()}
            res = pytrec_eval.RelevanceEvaluator(qrels, {"recip_rank"}).evaluate(cut)
            out[m] = {q: float(v["recip_rank"]) for q, v in res.items()}
    return out


def evaluate_run(
    qrels: Qrels,
    run: Run,
    measures: str | Iterable[str] = ("nDCG@10", "R@100"),
    *,
    missing: MissingPolicy = "zero",
    backend: Literal["pytrec_eval", "numpy"] = "pytrec_eval",
) -> Evaluation:
    """Score ``run`` against ``qrels``: means, per-query values and what was averaged (see the module docstring).

    Raises :class:`~hybridsearch.errors.InputError` for malformed qrels or runs: a relevance label that is not a
    whole number (what a run passed first looks like: its scores are the labels then), a NaN score, for qrels with no judged query, and
    :class:`~hybridsearch.errors.ConfigError` for unknown measures, policies or backends.
    """
    ms = _measure_list(measures)
    if missing not in ("zero", "drop"):
        raise ConfigError(f"missing must be 'zero' (trec_eval -c) or 'drop' (pytrec_eval/BEIR), got {missing!r}")
    q = _check_qrels(qrels)
    r = _check_run(run)
    if not q:
        raise InputError("the qrels hold no judged query; nothing can be evaluated")
    judged_in_run = {qid: r[qid] for qid in q if qid in r}
    if backend == "pytrec_eval":
        pq = _trec_per_query(q, judged_in_run, ms)
    elif backend == "numpy":
        from .metrics_numpy import per_query_numpy

        pq = {m: per_query_numpy(q, judged_in_run, m) for m in ms}
    else:
        raise ConfigError(f"backend must be 'pytrec_eval' or 'numpy', got {backend!r}")
    absent = tuple(qid for qid in q if qid not in r)
    if missing == "zero":
        for m in ms:
            pq[m].update(dict.fromkeys(absent, 0.0))
    order = [qid for qid in q if qid in pq[ms[0]]]
    pq = {m: {qid: pq[m][qid] for qid in order} for m in ms}
    means = {m: (math.fsum(v.values()) / len(v) if v else 0.0) for m, v in pq.items()}
    return Evaluation(
        means=means,
        per_query=pq,
        missing=missing,
        queries=len(order),
        missing_from_run=absent,
        unjudged=tuple(qid for qid in r if qid not in q),
        backend=backend,
    )


def evaluate(
    qrels: Qrels,
    run: Run,
    measures: str | Iterable[str] = ("nDCG@10", "R@100"),
    *,
    missing: MissingPolicy = "zero",
    backend: Literal["pytrec_eval", "numpy"] = "pytrec_eval",
) -> dict[str, float]:
    """Mean of each measure, e.g. ``{"nDCG@10": 0.66, "R@100": 0.89}``; see :func:`evaluate_run`.

    >>> evaluate({"q1": {"d1": 1}}, {"q1": {"d1": 0.9, "d2": 0.5}}, "nDCG@10")
    {'nDCG@10': 1.0}
    """
    return evaluate_run(qrels, run, measures, missing=missing, backend=backend).means


def per_query(
    qrels: Qrels, run: Run, measure: str, *, missing: MissingPolicy = "zero", backend: Literal["pytrec_eval", "numpy"] = "pytrec_eval"
) -> dict[str, float]:
    """``{query_id: value}`` of one measure for every evaluated query (see :func:`evaluate_run`)."""
    return evaluate_run(qrels, run, [measure], missing=missing, backend=backend).per_query[measure]
