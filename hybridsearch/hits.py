"""Search results for a batch of queries: :class:`Hits` (padded arrays) and :class:`Hit` (one result).

Every search mode and every later stage (reranking) returns the same type. For ``n_queries`` queries and ``k``
results each:

- ``rows``: int64 ``(n_queries, k)``, the index's row ids, padded with ``-1``;
- ``scores``: float32 ``(n_queries, k)``, the final score, descending, padded with ``-inf``;
- ``doc_ids``: object ``(n_queries, k)`` of ``str``, padded with ``""``;
- ``ranks``: ``{view: int32 (n_queries, k)}``, the 1-based rank of each hit in that view's own result list,
  ``0`` where the view did not retrieve it (and on padding);
- ``view_scores``: ``{view: float32 (n_queries, k)}``, each view's own score of the hit (dense cosine, sparse
  dot product, MaxSim, a reranker's score), ``-inf`` where that view did not score it (and on padding).

Views are ``"dense"``, ``"sparse"``, ``"multivector"`` and, after :meth:`Hits.rerank`, the stage name
(``"rerank"``). ``stages`` records how the hits were made (search mode, fusion, reranker and how its score was
combined), and ``reranked`` / ``notes`` say per query whether the last rerank stage ran or why it did not.

>>> import numpy as np
>>> hits = Hits(rows=np.array([[4, 2]]), scores=np.array([[0.75, 0.5]]), doc_ids=np.array([["a", "b"]], object),
...             ranks={"dense": np.array([[1, 0]]), "sparse": np.array([[2, 1]])})
>>> hits[0][0]
Hit(doc_id='a', score=0.75, row=4, ranks={'dense': 1, 'sparse': 2}, scores={})
>>> hits.to_run(["q1"])
{'q1': {'a': 0.75, 'b': 0.5}}
>>> reranked = hits.rerank(np.array([[0.1, 0.9]]))   # a reranker prefers "b"
>>> [(h.doc_id, round(h.score, 2), h.ranks["rerank"]) for h in reranked[0]]
[('b', 0.9, 1), ('a', 0.1, 2)]

Pickling (Ray, process pools, a server's workers) carries each hit's text and metadata, never the document
store the hits were looked up in.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from .errors import InputError

__all__ = ["Hit", "Hits"]


@dataclass(frozen=True)
class Hit:
    """One result: document id, final score, row id, its rank and score in each view's list.

    ``text`` and ``metadata`` are filled when the hits come from an index that stores them. ``reranked`` is
    ``None`` when no rerank stage ran, ``False`` when it ran but fell back to the first-stage order for this
    query (``note`` says why), ``True`` otherwise.
    """

    doc_id: str
    score: float
    row: int
    ranks: dict[str, int] = field(default_factory=dict)
    scores: dict[str, float] = field(default_factory=dict)
    text: str | None = field(default=None, repr=False)
    metadata: dict[str, Any] | None = field(default=None, repr=False)
    reranked: bool | None = field(default=None, repr=False)
    note: str | None = field(default=None, repr=False)


# Looks up (text, metadata) for row ids; set by the index that produced the hits.
Lookup = Callable[[np.ndarray], tuple[list[str], list[dict[str, Any]]]]

_REPLACE = "replace"


class Hits:
    """Results of one search over a batch of queries, as padded ``(n_queries, k)`` arrays.

    ``len(hits)`` is the number of queries; ``hits[i]`` is query ``i``'s results as a list of :class:`Hit` (padding
    left out); ``hits[a:b]`` is a :class:`Hits` for those queries; iterating yields one list per query.
    :meth:`to_run` gives the ``{query_id: {doc_id: score}}`` form that :func:`hybridsearch.metrics.evaluate` reads.
    :meth:`rerank` attaches a new stage's scores and reorders.
    """

    __slots__ = (
        "_lookup", "_metas", "_texts", "doc_ids", "notes", "ranks", "reranked", "rows", "scores", "stages", "view_scores",
    )

    def __init__(
        self,
        rows: np.ndarray,
        scores: np.ndarray,
        doc_ids: np.ndarray,
        ranks: Mapping[str, np.ndarray] | None = None,
        view_scores: Mapping[str, np.ndarray] | None = None,
        *,
        lookup: Lookup | None = None,
        texts: np.ndarray | None = None,
        metadata: np.ndarray | None = None,
        stages: Sequence[Mapping[str, Any]] = (),
        reranked: np.ndarray | None = None,
        notes: Sequence[str | None] | None = None,
    ) -> None:
        r = np.asarray(rows, dtype=np.int64)
        s = np.asarray(scores, dtype=np.float32)
        d = np.asarray(doc_ids, dtype=object)
        if r.ndim != 2 or s.shape != r.shape or d.shape != r.shape:
            raise InputError(
                f"rows, scores and doc_ids must be 2-D arrays of one shape (n_queries, k); got {r.shape}, {s.shape}, {d.shape}"
            )
        rk = {str(m): np.asarray(v, dtype=np.int32) for m, v in (ranks or {}).items()}
        for m, v in rk.items():
            if v.shape != r.shape:
                raise InputError(f"ranks[{m!r}] has shape {v.shape}, expected {r.shape}")
        vs = {str(m): np.asarray(v, dtype=np.float32) for m, v in (view_scores or {}).items()}
        for m, v in vs.items():
            if v.shape != r.shape:
                raise InputError(f"view_scores[{m!r}] has shape {v.shape}, expected {r.shape}")
        for name, arr in (("texts", texts), ("metadata", metadata)):
            if arr is not None and np.shape(arr) != r.shape:
                raise InputError(f"{name} has shape {np.shape(arr)}, expected {r.shape}")
        n = r.shape[0]
        if reranked is not None:
            reranked = np.asarray(reranked, dtype=bool)
            if reranked.shape != (n,):
                raise InputError(f"reranked must have shape ({n},), got {reranked.shape}")
        if notes is not None and len(notes) != n:
            raise InputError(f"notes must hold one entry per query ({n}), got {len(notes)}")
        self.rows = r
        self.scores = s
        self.doc_ids = d
        self.ranks: dict[str, np.ndarray] = rk
        self.view_scores: dict[str, np.ndarray] = vs
        self.stages: tuple[dict[str, Any], ...] = tuple(dict(x) for x in stages)
        self.reranked: np.ndarray | None = reranked
        self.notes: tuple[str | None, ...] = tuple(notes) if notes is not None else (None,) * n
        self._lookup = lookup
        self._texts = None if texts is None else np.asarray(texts, dtype=object)
        self._metas = None if metadata is None else np.asarray(metadata, dtype=object)

    @classmethod
    def empty(cls, n_queries: int, k: int, modes: Sequence[str] = ()) -> Hits:
        """Hits with no results: every slot is padding."""
        return cls(
            np.full((n_queries, k), -1, np.int64),
            np.full((n_queries, k), -np.inf, np.float32),
            np.full((n_queries, k), "", dtype=object),
            {m: np.zeros((n_queries, k), np.int32) for m in modes},
            {m: np.full((n_queries, k), -np.inf, np.float32) for m in modes},
        )

    # ------------------------------------------------------------------ shape
    @property
    def k(self) -> int:
        """Result slots per query (some may be padding)."""
        return int(self.rows.shape[1])

    @property
    def n_queries(self) -> int:
        return int(self.rows.shape[0])

    @property
    def modes(self) -> tuple[str, ...]:
        """The views that ranked these hits, e.g. ``("dense", "sparse")`` (plus ``"rerank"`` after a rerank)."""
        return tuple(self.ranks)

    @property
    def counts(self) -> np.ndarray:
        """Real (non-padding) results per query, int64 ``(n_queries,)``."""
        return (self.rows >= 0).sum(axis=1)

    def __len__(self) -> int:
        return self.n_queries

    # ------------------------------------------------------------------ copies
    def _replace(self, **changes: Any) -> Hits:
        state = {
            "rows": self.rows, "scores": self.scores, "doc_ids": self.doc_ids, "ranks": self.ranks,
            "view_scores": self.view_scores, "lookup": self._lookup, "texts": self._texts, "metadata": self._metas,
            "stages": self.stages, "reranked": self.reranked, "notes": self.notes,
        }  # fmt: skip
        state.update(changes)
        return Hits(**state)

    def _select(self, q: Any, cols: np.ndarray | None = None) -> dict[str, Any]:
        """Arrays for queries ``q`` (slice or index array), columns ``cols`` (per-row order) when given."""

        def pick(a: np.ndarray | None) -> np.ndarray | None:
            if a is None:
                return None
            a = a[q]
            return a if cols is None else np.take_along_axis(a, cols, axis=1)

        return {
            "rows": pick(self.rows), "scores": pick(self.scores), "doc_ids": pick(self.doc_ids),
            "ranks": {m: pick(v) for m, v in self.ranks.items()},
            "view_scores": {m: pick(v) for m, v in self.view_scores.items()},
            "texts": pick(self._texts), "metadata": pick(self._metas),
        }  # fmt: skip

    def with_documents(self) -> Hits:
        """The same hits holding their texts and metadata, detached from the index's document store."""
        if self._lookup is None:
            return self
        texts = np.full(self.rows.shape, None, dtype=object)
        metas = np.full(self.rows.shape, None, dtype=object)
        valid = self.rows >= 0
        if valid.any():
            t, m = self._lookup(self.rows[valid])
            texts[valid] = _object_array(t)
            metas[valid] = _object_array(m)
        return self._replace(lookup=None, texts=texts, metadata=metas)

    def __getstate__(self) -> dict[str, Any]:
        # The lookup closes over the whole document store; ship the hits' own texts instead.
        h = self.with_documents()
        return {name: getattr(h, name) for name in Hits.__slots__}

    def __setstate__(self, state: dict[str, Any]) -> None:
        for name in Hits.__slots__:
            object.__setattr__(self, name, state.get(name))

    # ------------------------------------------------------------------ access
    def __getitem__(self, i: int | slice) -> Any:
        if isinstance(i, slice):
            sel = self._select(i)
            return self._replace(
                **sel, reranked=None if self.reranked is None else self.reranked[i], notes=self.notes[i]
            )
        if isinstance(i, (bool, np.bool_)) or not isinstance(i, (int, np.integer)):
            raise InputError(f"hits[i] takes a query number or a slice, got {type(i).__name__}")
        n = self.n_queries
        if not -n <= i < n:
            raise IndexError(f"query {i} out of range for {n} queries")
        return self._records(int(i) % n)

    def __iter__(self) -> Iterator[list[Hit]]:
        for i in range(self.n_queries):
            yield self._records(i)

    def _documents(self, i: int, keep: np.ndarray) -> tuple[list[Any], list[Any]]:
        if self._texts is not None:
            return list(self._texts[i, keep]), list(self._metas[i, keep]) if self._metas is not None else [None] * keep.size
        if self._lookup is not None and keep.size:
            t, m = self._lookup(self.rows[i, keep])
            return list(t), list(m)
        return [None] * keep.size, [None] * keep.size

    def _records(self, i: int, limit: int | None = None, documents: bool = True) -> list[Hit]:
        keep = np.flatnonzero(self.rows[i] >= 0)[:limit]
        texts, metas = self._documents(i, keep) if documents else ([None] * keep.size, [None] * keep.size)
        reranked = None if self.reranked is None else bool(self.reranked[i])
        out = []
        for n, j in enumerate(keep.tolist()):
            vs = {m: float(v[i, j]) for m, v in self.view_scores.items() if np.isfinite(v[i, j])}
            out.append(
                Hit(
                    doc_id=str(self.doc_ids[i, j]),
                    score=float(self.scores[i, j]),
                    row=int(self.rows[i, j]),
                    ranks={m: int(v[i, j]) for m, v in self.ranks.items()},
                    scores=vs,
                    text=texts[n],
                    metadata=metas[n],
                    reranked=reranked,
                    note=self.notes[i],
                )
            )
        return out

    def texts(self, i: int) -> list[str | None]:
        """Query ``i``'s result texts in order (``None`` where the index stores none)."""
        keep = np.flatnonzero(self.rows[i] >= 0)
        return self._documents(i, keep)[0]

    def to_run(self, query_ids: Sequence[str] | None = None) -> dict[str, dict[str, float]]:
        """``{query_id: {doc_id: score}}`` for :func:`hybridsearch.metrics.evaluate` (padding left out).

        ``query_ids`` names the queries in order; ``None`` uses ``"0"``, ``"1"``, ...
        """
        if query_ids is None:
            qids = [str(i) for i in range(self.n_queries)]
        else:
            if isinstance(query_ids, str):
                raise InputError("query_ids must be a sequence of ids, not one string")
            qids = [str(q) for q in query_ids]
            if len(qids) != self.n_queries:
                raise InputError(f"{len(qids)} query ids given for {self.n_queries} queries")
            if len(set(qids)) != len(qids):
                raise InputError("query_ids contains duplicates; each query needs its own id")
        run: dict[str, dict[str, float]] = {}
        for i, q in enumerate(qids):
            keep = self.rows[i] >= 0
            run[q] = dict(zip(self.doc_ids[i, keep].tolist(), self.scores[i, keep].astype(np.float64).tolist(), strict=True))
        return run

    # ------------------------------------------------------------------ stages
    def with_stage(self, **record: Any) -> Hits:
        """The same hits with one more entry in :attr:`stages` (a JSON-able description of a pipeline step)."""
        return self._replace(stages=(*self.stages, record))

    def rerank(
        self,
        scores: np.ndarray,
        *,
        combine: Any = _REPLACE,
        k: int | None = None,
        stage: str = "rerank",
        failed: Sequence[str | None] | None = None,
        record: Mapping[str, Any] | None = None,
    ) -> Hits:
        """Attach a new stage's scores and reorder each query's hits by them.

        ``scores``: float ``(n_queries, self.k)``, aligned with the current slots; ``NaN`` or ``-inf`` where the
        stage has no score (padding, a document without text). ``combine``: ``"replace"`` (the stage's score
        becomes the final score; unscored hits keep their order after the scored ones, with score ``-inf``) or a
        fusion spec over the names ``"retrieval"`` (the current score and order) and ``"rerank"`` (the new
        one), e.g. ``"rrf"`` (RRF of the two orders) or ``"minmax(retrieval=0.3,rerank=0.7)"``.
        ``failed[i]``: a reason when the stage could not score query ``i``; that query keeps its current order
        and scores and is marked ``reranked=False`` with the reason as its note. ``k``: results kept per query
        (default: all). Ties keep the current order. The stage's own scores and ranks are recorded under
        ``stage`` in :attr:`view_scores` and :attr:`ranks`; ``record`` is added to :attr:`stages`.
        """
        from .fusion import parse_fusion

        nq, width = self.rows.shape
        s = np.asarray(scores, dtype=np.float64)
        if s.shape != (nq, width):
            raise InputError(f"scores must have shape {(nq, width)} (one per current slot), got {s.shape}")
        if np.isposinf(s).any():
            raise InputError("scores hold +inf; use NaN or -inf for 'not scored'")
        if not isinstance(stage, str) or not stage or stage in ("dense", "sparse", "multivector"):
            raise InputError(f"stage must be a new name such as 'rerank', got {stage!r}")
        k = width if k is None else int(k)
        if k <= 0:
            raise InputError(f"k must be a positive integer, got {k}")
        fails = [None] * nq if failed is None else list(failed)
        if len(fails) != nq:
            raise InputError(f"failed must hold one entry per query ({nq}), got {len(fails)}")
        bad = np.array([f is not None for f in fails], bool)
        valid = self.rows >= 0
        has = valid & np.isfinite(s) & ~bad[:, None]
        stage_scores = np.where(has, s, -np.inf)
        position = np.broadcast_to(np.arange(width, dtype=np.int64), (nq, width))
        stage_rank = _rank_desc(stage_scores, has, position)
        if combine == _REPLACE:
            method = _REPLACE
            new = stage_scores.copy()
        else:
            fz = parse_fusion(combine)
            method = str(fz)
            if fz.needs == "ranks":
                cur_rank = np.where(valid, position + 1, 0).astype(np.int32)
                new = fz(ranks={"retrieval": cur_rank, "rerank": stage_rank}).astype(np.float64)
            else:
                cur = np.where(valid, self.scores.astype(np.float64), -np.inf)
                new = fz(scores={"retrieval": cur, "rerank": stage_scores}).astype(np.float64)
        new = np.where(bad[:, None], self.scores.astype(np.float64), new)
        new = np.where(valid, new, -np.inf)
        # Sort: real slots first, then by new score (descending), ties by current position.
        order = np.lexsort((position, -np.where(valid, new, -np.inf), ~valid), axis=-1)
        order = np.where(bad[:, None], position, order)[:, :k]
        if order.shape[1] < k:
            order = np.pad(order, ((0, 0), (0, k - order.shape[1])), constant_values=0)
        sel = self._select(slice(None), order)
        pad = np.arange(k) >= width
        out_valid = (sel["rows"] >= 0) & ~pad
        sel["rows"] = np.where(out_valid, sel["rows"], -1)
        sel["scores"] = np.where(out_valid, np.take_along_axis(new, order, axis=1), -np.inf)
        sel["doc_ids"] = np.where(out_valid, sel["doc_ids"], "")
        sel["ranks"] = {m: np.where(out_valid, v, 0) for m, v in sel["ranks"].items()}
        sel["ranks"][stage] = np.where(out_valid, np.take_along_axis(stage_rank, order, axis=1), 0)
        sel["view_scores"] = {m: np.where(out_valid, v, -np.inf) for m, v in sel["view_scores"].items()}
        sel["view_scores"][stage] = np.where(out_valid, np.take_along_axis(stage_scores, order, axis=1), -np.inf)
        for key in ("texts", "metadata"):
            if sel[key] is not None:
                sel[key] = np.where(out_valid, sel[key], None)
        entry = {"stage": stage, "combine": method, **(record or {})}
        return self._replace(
            **sel, stages=(*self.stages, entry), reranked=~bad, notes=tuple(fails),
        )

    # ------------------------------------------------------------------ display
    def __repr__(self) -> str:
        head = f"Hits(n_queries={self.n_queries}, k={self.k}, modes={self.modes!r}"
        if self.n_queries == 0 or not (self.rows[0] >= 0).any():
            return head + ")"
        shown = []
        for h in self._records(0, 3, documents=False):
            ranks = ", ".join(f"{m}={r}" for m, r in h.ranks.items())
            shown.append(f"{h.doc_id!r}: {h.score:.4f}" + (f" ({ranks})" if ranks else ""))
        more = ", ..." if int(self.counts[0]) > 3 else ""
        return f"{head}, first query: [{'; '.join(shown)}{more}])"


def _object_array(items: Sequence[Any]) -> np.ndarray:
    out = np.empty(len(items), dtype=object)
    for i, x in enumerate(items):
        out[i] = x
    return out


def _rank_desc(scores: np.ndarray, has: np.ndarray, position: np.ndarray) -> np.ndarray:
    """1-based rank of each scored slot by descending score (ties by position), 0 where not scored."""
    order = np.lexsort((position, -scores, ~has), axis=-1)
    ranks = np.zeros(scores.shape, np.int32)
    np.put_along_axis(ranks, order, np.arange(1, scores.shape[1] + 1, dtype=np.int32)[None, :].repeat(scores.shape[0], 0), axis=1)
    return np.where(has, ranks, 0).astype(np.int32)
