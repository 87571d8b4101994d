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

from ..errors import ConfigError, InputError
from ..fusion import Fusion, parse_fusion
from ..index.hybrid import SEARCH_MODES, _positive_int, _ranks_of, _take, _top, _union
from ..types import Encoded

__all__ = ["CandidateSource", "coordinate", "merge_topk"]

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


def pick_mode(modes: tuple[str, ...], query: Encoded, mode: str | None) -> str:
    """``mode`` or, as HybridIndex does, ``"hybrid"`` when query and index share more than one view."""
    if mode is not None:
        if mode not in SEARCH_MODES:
            raise ConfigError(f"unknown search mode {mode!r}; expected one of: {', '.join(SEARCH_MODES)}")
        return mode
    shared = [m for m in modes if getattr(query, m) is not None]
    if not shared:
        raise InputError(f"the queries hold {list(query.modes)} but the index holds {list(modes)}: no view in common")
    return "hybrid" if len(shared) > 1 else shared[0]


def coordinate(
    source: CandidateSource, query: Encoded, k: int = 10, *, mode: str | None = None,
    filter: Mapping[str, Any] | None = None, candidates: int = 100, fusion: str | Fusion = "rrf",  # noqa: A002
    rerank: bool | None = None,
) -> tuple[np.ndarray, np.ndarray, dict[str, np.ndarray]]:
    """Keys ``(nq, k)``, fused scores and per-view ranks, exactly as ``HybridIndex.search`` computes them."""
    if not isinstance(query, Encoded):
        raise InputError(f"query must be an Encoded (from an encoder's encode_queries), got {type(query).__name__}")
    k = _positive_int(k, "k")
    c = max(_positive_int(candidates, "candidates"), k)
    fz = parse_fusion(fusion)
    held = tuple(source.modes)
    mode = pick_mode(held, query, mode)
    first = [m for m in _FIRST if m in held]

    def need(views: list[str]) -> None:
        for v in views:
            if v not in held:
                raise InputError(f"this index holds no {v} view (it holds {list(held)})")
            if getattr(query, v) is None:
                raise InputError(f"the queries lack the {v} view this search needs (they have {list(query.modes)})")

    if mode in _FIRST:
        need([mode])
        rows, scores = source.first_stage(mode, query, k, filter)
        return rows, scores, {mode: np.where(rows >= 0, np.arange(1, k + 1, dtype=np.int32), 0)}
    if mode == "multivector":
        fs = next((m for m in first if getattr(query, m) is not None), first[0] if first else "dense")
        need([fs, "multivector"])
        cand, _ = source.first_stage(fs, query, c, filter)
        mv = source.score("multivector", query, cand)
        rows, scores, order = _top(cand, mv, k)
        valid = rows >= 0
        first_rank = _take(np.broadcast_to(np.arange(1, c + 1, dtype=np.int32), cand.shape), order, valid, 0)
        return rows, scores, {fs: first_rank, "multivector": np.where(valid, np.arange(1, k + 1, dtype=np.int32), 0)}
    use_mv = "multivector" in held and query.multivector is not None and rerank is not False
    if rerank and not use_mv:
        raise InputError("rerank=True needs multi-vectors in both the index and the query")
    need(first)
    lists = {m: source.first_stage(m, query, c, filter)[0] for m in first}
    cand = lists[first[0]]
    for m in first[1:]:
        cand = _union(cand, lists[m])
    ranks = {m: _ranks_of(cand, lists[m]) for m in first}
    exact = {m: source.score(m, query, cand) for m in first} if fz.needs == "scores" else {}
    fused = fz(scores=exact, ranks=ranks)
    rows, scores, order = _top(cand, fused, c if use_mv else k)
    valid = rows >= 0
    ranks = {m: _take(r, order, valid, 0) for m, r in ranks.items()}
    if not use_mv:
        return rows, scores, ranks
    exact = {m: _take(s, order, valid, -np.inf) for m, s in exact.items()}
    mv = source.score("multivector", query, rows)
    _, _, mv_order = _top(rows, mv, rows.shape[1])
    mv_rank = np.zeros(rows.shape, np.int32)
    np.put_along_axis(mv_rank, mv_order, np.arange(1, rows.shape[1] + 1, dtype=np.int32)[None, :].repeat(rows.shape[0], 0), axis=1)
    mv_rank[~valid] = 0
    exact["multivector"] = mv
    ranks["multivector"] = mv_rank
    fused = fz(scores=exact, ranks=ranks)
    rows2, scores2, order2 = _top(rows, fused, k)
    valid2 = rows2 >= 0
    return rows2, scores2, {m: _take(r, order2, valid2, 0) for m, r in ranks.items()}
