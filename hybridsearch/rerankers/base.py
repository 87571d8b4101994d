"""The :class:`Reranker` protocol: score each query's first-stage hits again and reorder them.

``rerank(queries, hits, k) -> Hits`` (and the ``async`` twin ``arerank``) scores the hits' texts for each query and
calls :meth:`Hits.rerank <hybridsearch.hits.Hits.rerank>`. How the new score is used is the reranker's
``combine``:

- ``"replace"`` (default): the reranker's score becomes the final score;
- a fusion spec over ``retrieval`` (the first-stage score / order) and ``rerank``: ``"rrf"`` fuses the two
  orders (k = 60), ``"minmax(retrieval=0.3,rerank=0.7)"`` or ``"dbsf(retrieval=1,rerank=1)"`` their normalised
  scores (see :mod:`hybridsearch.fusion`).

The result records it: ``hits.stages[-1] == {"stage": "rerank", "combine": "replace", "reranker": {...},
"seconds": ...}``; the reranker's own scores and ranks are ``hits.view_scores["rerank"]`` / ``hits.ranks["rerank"]``.
A query the reranker could not score keeps its first-stage order and is marked ``reranked=False`` with a note
(and a WARNING is logged); a query whose hits have no text is one such case.
"""

from __future__ import annotations

import abc
import asyncio
import logging
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from ..encoders.base import check_texts
from ..errors import ConfigError, InputError
from ..fusion import parse_fusion
from ..hits import Hits

__all__ = ["Reranker", "ScoredBatch", "candidate_texts"]

logger = logging.getLogger("hybridsearch.rerankers")


@dataclass
class ScoredBatch:
    """What a reranker's scoring step returns for a :class:`~hybridsearch.hits.Hits` of ``n`` queries × ``k``.

    ``scores``: float64 ``(n, k)``, ``NaN`` where a slot was not scored; ``failed[i]``: why query ``i`` could not
    be scored (``None`` when it was).
    """

    scores: np.ndarray
    failed: list[str | None]


def candidate_texts(hits: Hits) -> list[list[tuple[int, str]]]:
    """Per query, ``(slot, text)`` of every real hit whose stored text is non-empty, in slot order."""
    out = []
    for i in range(hits.n_queries):
        slots = np.flatnonzero(hits.rows[i] >= 0).tolist()
        texts = hits.texts(i)
        out.append([(j, t) for j, t in zip(slots, texts, strict=True) if isinstance(t, str) and t.strip()])
    return out


def _check_combine(combine: Any) -> str:
    if combine == "replace":
        return "replace"
    try:
        return str(parse_fusion(combine))
    except ConfigError as exc:
        raise ConfigError(f"combine must be 'replace' or a fusion spec such as 'rrf' or 'minmax(retrieval=0.3,rerank=0.7)': {exc}") from None


class Reranker(abc.ABC):
    """Scores ``(query, document text)`` pairs of first-stage hits and reorders them.

    Subclasses implement :meth:`score` (and may override :meth:`ascore` with a native ``async`` version; the
    default runs :meth:`score` in a worker thread) and :meth:`describe`.
    """

    def __init__(self, *, combine: str = "replace") -> None:
        self.combine = _check_combine(combine)

    @abc.abstractmethod
    def score(self, queries: list[str], hits: Hits) -> ScoredBatch:
        """Score every real slot of ``hits`` (one row per query) for its query."""

    async def ascore(self, queries: list[str], hits: Hits) -> ScoredBatch:
        return await asyncio.to_thread(self.score, queries, hits)

    def describe(self) -> dict[str, Any]:
        """A JSON-able description recorded in ``hits.stages`` (no secrets)."""
        return {"type": type(self).__name__}

    def __repr__(self) -> str:
        items = ", ".join(f"{k}={v!r}" for k, v in self.describe().items() if k != "type")
        return f"{type(self).__name__}({items})"

    # ------------------------------------------------------------------ driver
    @staticmethod
    def _check(queries: str | Sequence[str], hits: Hits) -> list[str]:
        if not isinstance(hits, Hits):
            raise InputError(f"hits must be a Hits (from a search), got {type(hits).__name__}")
        texts = check_texts(queries)
        if len(texts) != hits.n_queries:
            raise InputError(f"{len(texts)} queries given for hits of {hits.n_queries} queries; pass one query per row")
        return texts

    def _finish(self, hits: Hits, batch: ScoredBatch, k: int | None, seconds: float) -> Hits:
        if batch.scores.shape != hits.rows.shape or len(batch.failed) != hits.n_queries:
            raise AssertionError(f"{type(self).__name__} returned scores of shape {batch.scores.shape} for {hits.rows.shape}")
        failed = list(batch.failed)
        texts = candidate_texts(hits)
        for i, cand in enumerate(texts):
            if failed[i] is None and hits.counts[i] > 0 and not cand:
                failed[i] = "the hits carry no document text to score (the index stores no texts)"
        n_bad = sum(f is not None for f in failed)
        if n_bad:
            first = next(f for f in failed if f is not None)
            logger.warning("%s: %d of %d queries kept their first-stage order (%s)", type(self).__name__, n_bad, len(failed), first)
        record = {"reranker": self.describe(), "seconds": round(seconds, 6)}
        return hits.rerank(batch.scores, combine=self.combine, k=k, failed=failed, record=record)

    def rerank(self, queries: str | Sequence[str], hits: Hits, k: int | None = None) -> Hits:
        """Rerank ``hits`` (one row per query) and keep the top ``k`` (default: all). Never raises because the
        scorer failed: such queries keep their first-stage order (see the module docstring)."""
        texts = self._check(queries, hits)
        t0 = time.perf_counter()
        batch = self.score(texts, hits)
        return self._finish(hits, batch, k, time.perf_counter() - t0)

    async def arerank(self, queries: str | Sequence[str], hits: Hits, k: int | None = None) -> Hits:
        """The ``async`` twin of :meth:`rerank`."""
        texts = self._check(queries, hits)
        t0 = time.perf_counter()
        batch = await self.ascore(texts, hits)
        return self._finish(hits, batch, k, time.perf_counter() - t0)
