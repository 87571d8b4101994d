"""Global fusion over candidate lists that come from somewhere else: index shards or a vector database.

:func:`coordinate` runs the search algorithm of :meth:`HybridIndex.search <hybridsearch.index.HybridIndex.search>`
on top of two primitives that a :class:`CandidateSource` provides:

- ``first_stage(view, query, c, filter)``: the global top-``c`` rows of one view (dense or sparse), scores
  descending, ties by ascending key; for shards this is the merge of every shard's own top-``c``;
- ``score(view, query, keys)``: the exact scores of given keys in one view (dense, sparse or MaxSim).

Keys are int64 document keys that order documents as the single index's row ids do (ties break on them).
Because fusion only ever sees *each view's* global candidate list and exact scores of the union, the fused
result is the single index's result for every fusion (RRF, weighted sum, min-max) and every mode; fusing
per-shard fused lists instead would not be (RRF ranks and min-max ranges are global quantities).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Protocol

import numpy as np

from ..errors import InputError, positive_int
from ..fusion import DEFAULT_FUSION, Fusion, parse_fusion
from ..hits import Hits
from ..identity import check_views
from ..index.searcher import _ranks_of, _take, _top, _union, fuse_with_maxsim
from ..modes import index_search_args, pick_mode
from ..types import MODES, Encoded, EncoderInfo

__all__ = ["CandidateSource", "coordinate", "merge_topk", "to_hits"]

_FIRST = ("dense", "sparse")


class CandidateSource(Protocol):
    """What :func:`coordinate` needs from shards or an engine."""

    @property
    def modes(self) -> tuple[str, ...]: ...

    def first_stage(self, view: str, query: Encoded, c: int, flt: Mapping[str, Any] | None) -> tuple[np.ndarray, np.ndarray]: ...

    def score(self, view: str, query: Encoded, keys: np.ndarray) -> np.ndarray: ...


def merge_topk(parts: list[tuple[np.ndarray, np.ndarray]], k: int) -> tuple[np.ndarray, np.ndarray]:
    """Merge per-shard ``(keys, scores)`` lists (``(nq, c_i)``, ``-1``/``-inf`` padded) into the global top ``k``
    (scores descending, ties by ascending key), padded the same way."""
    keys = np.concatenate([p[0] for p in parts], axis=1)
    scores = np.concatenate([p[1] for p in parts], axis=1)
    rows, sc, _ = _top(keys, scores, k)
    return rows, sc


Result = tuple[np.ndarray, np.ndarray, dict[str, np.ndarray], dict[str, np.ndarray], dict[str, Any]]


def coordinate(
    source: CandidateSource, query: Encoded, k: int = 10, *, mode: str | None = None,
    filter: Mapping[str, Any] | None = None, candidates: int = 100, fusion: str | Fusion = DEFAULT_FUSION,  # noqa: A002
    rerank: bool | None = None, encoder: EncoderInfo | None = None,
) -> Result:
    """Keys ``(nq, k)``, fused scores, per-view ranks, per-view scores and the stage record, exactly as
    ``HybridIndex.search`` computes them (modes ``dense``, ``sparse``, ``multivector``, ``dense+sparse``, ``all``,
    ``hybrid``). ``encoder`` is the documents' encoder; queries from an encoder that does not match it (per
    :mod:`hybridsearch.identity`) raise IndexMismatchError."""
    if not isinstance(query, Encoded):
        raise InputError(f"query must be an Encoded (from an encoder's encode_queries), got {type(query).__name__}")
    k = positive_int(k, "k")
    c = max(positive_int(candidates, "candidates"), k)
    fz = parse_fusion(fusion)
    if mode is not None:
        mode, rerank = index_search_args(mode, rerank)
    held = tuple(source.modes)
    mode = pick_mode(held, query, mode)
    first = [m for m in _FIRST if m in held]

    def need(views: list[str]) -> None:
        check_views(encoder, query.encoder, views, "queries")  # IndexMismatchError for another encoder's queries
        for v in views:
            if v not in held:
                raise InputError(f"this index holds no {v} view (it holds {list(held)})")
            if getattr(query, v) is None:
                raise InputError(f"the queries lack the {v} view this search needs (they have {list(query.modes)})")

    if mode in _FIRST:
        need([mode])
        rows, scores = source.first_stage(mode, query, k, filter)
        ranks = {mode: np.where(rows >= 0, np.arange(1, k + 1, dtype=np.int32), 0)}
        return rows, scores, ranks, {mode: np.where(rows >= 0, scores, -np.inf)}, {"stage": "retrieval", "mode": mode}
    if mode == "multivector":
        fs = next((m for m in first if getattr(query, m) is not None), first[0] if first else "dense")
        need([fs, "multivector"])
        cand, cand_scores = source.first_stage(fs, query, c, filter)
        mv = source.score("multivector", query, cand)
        rows, scores, order = _top(cand, mv, k)
        valid = rows >= 0
        first_rank = _take(np.broadcast_to(np.arange(1, c + 1, dtype=np.int32), cand.shape), order, valid, 0)
        ranks = {fs: first_rank, "multivector": np.where(valid, np.arange(1, k + 1, dtype=np.int32), 0)}
        views = {fs: _take(np.asarray(cand_scores, np.float32), order, valid, -np.inf), "multivector": scores}
        return rows, scores, ranks, views, {"stage": "retrieval", "mode": mode, "candidates": c}
    use_mv = "multivector" in held and query.multivector is not None and rerank is not False
    if rerank and not use_mv:
        raise InputError("rerank=True needs multi-vectors in both the index and the query")
    need(first + (["multivector"] if use_mv else []))
    record = {"stage": "retrieval", "mode": "all" if use_mv else "dense+sparse", "fusion": str(fz), "candidates": c}
    lists = {m: source.first_stage(m, query, c, filter)[0] for m in first}
    cand = lists[first[0]]
    for m in first[1:]:
        cand = _union(cand, lists[m])
    ranks = {m: _ranks_of(cand, lists[m]) for m in first}
    exact = {m: source.score(m, query, cand) for m in first}  # the hits report every view's score
    fused = fz(scores=exact, ranks=ranks)
    rows, scores, order = _top(cand, fused, c if use_mv else k)
    valid = rows >= 0
    ranks = {m: _take(r, order, valid, 0) for m, r in ranks.items()}
    exact = {m: _take(s, order, valid, -np.inf) for m, s in exact.items()}
    if not use_mv:
        return rows, scores, ranks, exact, record
    return (*fuse_with_maxsim(rows, valid, ranks, exact, source.score("multivector", query, rows), fz, k), record)


def to_hits(keys: np.ndarray, scores: np.ndarray, ranks: dict[str, np.ndarray], views: dict[str, np.ndarray],
            record: dict[str, Any], doc_ids: np.ndarray, lookup: Any) -> Hits:
    """The :class:`Hits` ``HybridIndex`` would build from a coordinated result."""
    valid = keys >= 0
    ordered = {m: ranks[m] for m in MODES if m in ranks}
    view_scores = {m: np.where(valid, views[m], -np.inf) for m in MODES if m in views}
    return Hits(keys, scores, doc_ids, ordered, view_scores, lookup=lookup, stages=[record] if record else ())
