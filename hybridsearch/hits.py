"""Search results for a batch of queries: :class:`Hits` (padded arrays) and :class:`Hit` (one result).

Every search mode returns the same type. For ``n_queries`` queries and ``k`` results each:

- ``rows``: int64 ``(n_queries, k)``, the index's row ids, padded with ``-1``;
- ``scores``: float32 ``(n_queries, k)``, descending, padded with ``-inf``;
- ``doc_ids``: object ``(n_queries, k)`` of ``str``, padded with ``""``;
- ``ranks``: ``{representation: int32 (n_queries, k)}``, the 1-based rank of each hit in that representation's
  own result list, ``0`` where the representation did not retrieve it (and on padding).

>>> import numpy as np
>>> hits = Hits(rows=np.array([[4, 2]]), scores=np.array([[0.75, 0.5]]), doc_ids=np.array([["a", "b"]], object),
...             ranks={"dense": np.array([[1, 0]]), "sparse": np.array([[2, 1]])})
>>> hits[0][0]
Hit(doc_id='a', score=0.75, row=4, ranks={'dense': 1, 'sparse': 2})
>>> hits.to_run(["q1"])
{'q1': {'a': 0.75, 'b': 0.5}}
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
    """One result: the document id, its final score, its row id and its rank in each representation's list.

    ``text`` and ``metadata`` are filled when the hits come from an index that stores them.
    """

    doc_id: str
    score: float
    row: int
    ranks: dict[str, int] = field(default_factory=dict)
    text: str | None = field(default=None, repr=False)
    metadata: dict[str, Any] | None = field(default=None, repr=False)


# Looks up (text, metadata) for row ids; set by the index that produced the hits.
Lookup = Callable[[np.ndarray], tuple[list[str], list[dict[str, Any]]]]


class Hits:
    """Results of one search over a batch of queries, as padded ``(n_queries, k)`` arrays.

    ``len(hits)`` is the number of queries; ``hits[i]`` is query ``i``'s results as a list of :class:`Hit` (padding
    left out); ``hits[a:b]`` is a :class:`Hits` for those queries; iterating yields one list per query.
    :meth:`to_run` gives the ``{query_id: {doc_id: score}}`` form that :func:`hybridsearch.metrics.evaluate` reads.
    """

    __slots__ = ("_lookup", "doc_ids", "ranks", "rows", "scores")

    def __init__(
        self,
        rows: np.ndarray,
        scores: np.ndarray,
        doc_ids: np.ndarray,
        ranks: Mapping[str, np.ndarray] | None = None,
        *,
        lookup: Lookup | None = None,
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
        self.rows = r
        self.scores = s
        self.doc_ids = d
        self.ranks: dict[str, np.ndarray] = rk
        self._lookup = lookup

    @classmethod
    def empty(cls, n_queries: int, k: int, modes: Sequence[str] = ()) -> Hits:
        """Hits with no results: every slot is padding."""
        return cls(
            np.full((n_queries, k), -1, np.int64),
            np.full((n_queries, k), -np.inf, np.float32),
            np.full((n_queries, k), "", dtype=object),
            {m: np.zeros((n_queries, k), np.int32) for m in modes},
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
        """The representations that ranked these hits, e.g. ``("dense", "sparse")``."""
        return tuple(self.ranks)

    @property
    def counts(self) -> np.ndarray:
        """Real (non-padding) results per query, int64 ``(n_queries,)``."""
        return (self.rows >= 0).sum(axis=1)

    def __len__(self) -> int:
        return self.n_queries

    # ------------------------------------------------------------------ access
    def __getitem__(self, i: int | slice) -> Any:
        if isinstance(i, slice):
            return Hits(
                self.rows[i], self.scores[i], self.doc_ids[i], {m: v[i] for m, v in self.ranks.items()}, lookup=self._lookup
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

    def _records(self, i: int) -> list[Hit]:
        keep = np.flatnonzero(self.rows[i] >= 0)
        texts: list[str | None] = [None] * keep.size
        metas: list[dict[str, Any] | None] = [None] * keep.size
        if self._lookup is not None and keep.size:
            t, m = self._lookup(self.rows[i, keep])
            texts, metas = list(t), list(m)
        return [
            Hit(
                doc_id=str(self.doc_ids[i, j]),
                score=float(self.scores[i, j]),
                row=int(self.rows[i, j]),
                ranks={m: int(v[i, j]) for m, v in self.ranks.items()},
                text=texts[n],
                metadata=metas[n],
            )
            for n, j in enumerate(keep.tolist())
        ]

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

    def __repr__(self) -> str:
        head = f"Hits(n_queries={self.n_queries}, k={self.k}, modes={self.modes!r}"
        if self.n_queries == 0 or not (self.rows[0] >= 0).any():
            return head + ")"
        shown = []
        for h in self._records_head(0, 3):
            ranks = ", ".join(f"{m}={r}" for m, r in h.ranks.items())
            shown.append(f"{h.doc_id!r}: {h.score:.4f}" + (f" ({ranks})" if ranks else ""))
        more = ", ..." if int(self.counts[0]) > 3 else ""
        return f"{head}, first query: [{'; '.join(shown)}{more}])"

    def _records_head(self, i: int, n: int) -> list[Hit]:
        keep = np.flatnonzero(self.rows[i] >= 0)[:n]
        return [
            Hit(str(self.doc_ids[i, j]), float(self.scores[i, j]), int(self.rows[i, j]),
                {m: int(v[i, j]) for m, v in self.ranks.items()})
            for j in keep.tolist()
        ]
