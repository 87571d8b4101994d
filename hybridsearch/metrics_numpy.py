"""An independent numpy implementation of the trec_eval measures in :mod:`.metrics`, kept as a cross-check.

Written from the measures' definitions (Järvelin & Kekäläinen 2002 for nDCG; trec_eval's ``ndcg_cut``, ``recall``,
``map_cut``, ``P`` and ``recip_rank`` documentation), not from trec_eval's code:

- ranking: score descending, ties by doc id descending (trec_eval's order);
- ``nDCG@k = DCG@k / IDCG@k`` with ``DCG@k = sum_{i<=k} max(rel_i, 0) / log2(i + 1)`` and IDCG over the query's
  judged labels sorted descending; 0 when the query has no positive label;
- binary measures count ``rel >= 1`` as relevant: ``R@k = |rel in top k| / |rel|``, ``P@k = |rel in top k| / k``,
  ``MRR@k = 1 / rank of the first relevant document in the top k``, ``MAP@k = sum over relevant documents in
  the top k of precision at their rank / |rel|``; all 0 for a query without relevant documents.
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np

__all__ = ["per_query_numpy"]


def _ranked_labels(scores: Mapping[str, float], rels: Mapping[str, int], k: int) -> np.ndarray:
    """Relevance labels (int64) of the top ``k`` documents in trec_eval order; unjudged documents are 0."""
    if not scores:
        return np.zeros(0, np.int64)
    ids = np.array(list(scores), dtype=object)
    s = np.fromiter(scores.values(), np.float64, count=len(scores))
    # lexsort sorts by the last key first, ascending: rank by (-score, doc id descending).
    id_rank = np.empty(len(ids), np.int64)
    id_rank[np.argsort(ids.astype(str), kind="stable")] = np.arange(len(ids))
    order = np.lexsort((-id_rank, -s))[:k]
    return np.array([rels.get(d, 0) for d in ids[order]], dtype=np.int64)


def _one(key: str, k: int, scores: Mapping[str, float], rels: Mapping[str, int]) -> float:
    labels = _ranked_labels(scores, rels, k)
    n_rel = sum(1 for r in rels.values() if r >= 1)
    hit = labels >= 1
    if key == "ndcg":
        ideal = np.sort(np.fromiter((r for r in rels.values() if r > 0), np.float64))[::-1][:k]
        if ideal.size == 0:
            return 0.0
        idcg = float((ideal / np.log2(np.arange(2, ideal.size + 2))).sum())
        gains = np.maximum(labels, 0).astype(np.float64)
        dcg = float((gains / np.log2(np.arange(2, gains.size + 2))).sum())
        return dcg / idcg
    if key == "p":
        return float(hit.sum()) / k
    if n_rel == 0:
        return 0.0
    if key == "recall":
        return float(hit.sum()) / n_rel
    if key == "rr":
        first = np.flatnonzero(hit)
        return 1.0 / float(first[0] + 1) if first.size else 0.0
    if key == "ap":
        ranks = np.flatnonzero(hit) + 1
        return float((np.arange(1, ranks.size + 1) / ranks).sum()) / n_rel
    raise AssertionError(key)


def per_query_numpy(qrels: Mapping[str, Mapping[str, int]], run: Mapping[str, Mapping[str, float]], measure: str) -> dict[str, float]:
    """``{query_id: value}`` for every query in both ``qrels`` and ``run`` (as pytrec_eval returns them)."""
    from .metrics import parse_measure

    key, k = parse_measure(measure)
    return {q: _one(key, k, run[q], rels) for q, rels in qrels.items() if q in run}
