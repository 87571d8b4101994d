"""Retrieval metrics with trec_eval semantics: nDCG@k and Recall@k.

A run is ``{query_id: {doc_id: score}}`` and qrels are ``{query_id: {doc_id: relevance}}``, the format
shared by BEIR, ir_measures, ranx and pytrec_eval. As in trec_eval, documents are ranked by score
descending with ties broken by doc id descending, gains are the graded relevance, and queries with no
relevant document are skipped. A judged query missing from the run scores 0.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping

from .errors import ConfigError

__all__ = ["evaluate", "ndcg", "parse_measure", "recall", "per_query"]

Run = Mapping[str, Mapping[str, float]]
Qrels = Mapping[str, Mapping[str, int]]


def parse_measure(measure: str) -> tuple[str, int]:
    """``"nDCG@10"`` -> ``("ndcg", 10)``; ``"R@100"`` / ``"Recall@100"`` -> ``("recall", 100)``."""
    name, sep, k = measure.partition("@")
    key = {"ndcg": "ndcg", "r": "recall", "recall": "recall"}.get(name.lower())
    if not sep or key is None or not k.isdigit() or int(k) <= 0:
        raise ConfigError(f"unknown measure {measure!r}; write it like 'nDCG@10' or 'R@100'")
    return key, int(k)


def _ranked(scores: Mapping[str, float], k: int) -> list[str]:
    return [d for d, _ in sorted(scores.items(), key=lambda x: (x[1], x[0]), reverse=True)[:k]]


def ndcg(scores: Mapping[str, float], rels: Mapping[str, int], k: int) -> float:
    ideal = sorted((r for r in rels.values() if r > 0), reverse=True)[:k]
    idcg = sum(g / math.log2(i + 2) for i, g in enumerate(ideal))
    if idcg == 0:
        return 0.0
    dcg = sum(max(rels.get(d, 0), 0) / math.log2(i + 2) for i, d in enumerate(_ranked(scores, k)))
    return dcg / idcg


def recall(scores: Mapping[str, float], rels: Mapping[str, int], k: int) -> float:
    relevant = {d for d, r in rels.items() if r > 0}
    if not relevant:
        return 0.0
    return len(relevant.intersection(_ranked(scores, k))) / len(relevant)


_FUNCS = {"ndcg": ndcg, "recall": recall}


def per_query(run: Run, qrels: Qrels, measure: str) -> dict[str, float]:
    """The measure for every judged query that has at least one relevant document."""
    key, k = parse_measure(measure)
    fn = _FUNCS[key]
    return {
        q: fn(run.get(q, {}), rels, k) for q, rels in qrels.items() if any(r > 0 for r in rels.values())
    }


def evaluate(run: Run, qrels: Qrels, measures: Iterable[str] = ("nDCG@10", "R@100")) -> dict[str, float]:
    """Mean of each measure over judged queries, e.g. ``{"nDCG@10": 0.66, "R@100": 0.89}``."""
    out = {}
    for m in measures:
        vals = per_query(run, qrels, m)
        out[m] = sum(vals.values()) / len(vals) if vals else 0.0
    return out
