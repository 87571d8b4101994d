"""A point-in-time, read-only view of a :class:`~.hybrid.HybridIndex`: the :class:`Searcher`.

A searcher holds one snapshot of every part: views of the dense FAISS index (``DenseIndex.snapshot``), the
sparse segments, the multi-vector blocks and the document-store parts, plus the row counter. The immutable pieces
(sparse segments, document parts, multi-vector blocks) are shared with the writer, not copied. Every search, id
lookup and ``get`` of one searcher sees the same documents, whatever a writer does meanwhile: all of an ``add``,
``upsert`` or ``delete`` or none of it, never a deleted or superseded document, and never an error caused by the
writer. :meth:`HybridIndex.searcher` returns the newest one; :meth:`HybridIndex.search` uses it per call.

Search
    Modes are named as in the bge-m3 paper (see :mod:`hybridsearch.modes`). ``mode="dense"`` / ``"sparse"``: that
    component's exact (or ANN) top-k. ``"multivector"``: dense (or sparse, without dense) proposes ``candidates``
    rows and MaxSim reranks them. ``"dense+sparse"``: every first-stage view (dense, sparse) proposes
    ``candidates`` rows, the union is scored exactly by each view, and :mod:`hybridsearch.fusion` combines them.
    ``"all"``: then the fused top ``candidates`` are rescored with MaxSim and fused again over all three views.
    ``"hybrid"`` is ``"all"`` when the index and the query both hold multi-vectors, else ``"dense+sparse"``.
    Every hit carries each view's score (:attr:`~hybridsearch.hits.Hits.view_scores`). Metadata filters and
    tombstones become an ``allowed`` mask that every component applies before its top-k. In every mode equal scores are ordered by
    ascending row id (the order documents were added), so a top-k is always a prefix of a larger top-k.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import scipy.sparse as sp

from ..errors import DimensionMismatchError, InputError, UnknownIdError, positive_int
from ..fusion import DEFAULT_FUSION, Fusion, parse_fusion
from ..hits import Hits
from ..identity import check_views as check_view_identity
from ..modes import FIRST_STAGE, SEARCH_MODES, index_search_args, pick_mode
from ..types import MODES, Encoded, EncoderInfo
from .dense import DenseIndex
from .docstore import DocStore, StoredDocument
from .filters import parse_filter
from .multivector import MultiVectorStore
from .sparse import SparseIndex

__all__ = ["SEARCH_MODES", "Searcher"]

_ID_PREVIEW = 5


def preview(items: Sequence[Any]) -> str:
    shown = ", ".join(repr(x) for x in items[:_ID_PREVIEW])
    return shown + (f", ... ({len(items)} in all)" if len(items) > _ID_PREVIEW else "")


def _ranks_of(cand: np.ndarray, lists: np.ndarray) -> np.ndarray:
    """For each candidate row, its 1-based position in the same query's ``lists`` row (0 when absent)."""
    nq, m = cand.shape
    out = np.zeros((nq, m), np.int32)
    if nq == 0 or m == 0 or lists.shape[1] == 0:
        return out
    stride = int(max(cand.max(initial=-1), lists.max(initial=-1))) + 2
    q_off = np.arange(nq, dtype=np.int64)[:, None] * stride
    ok = lists >= 0
    keys = (q_off + lists)[ok]
    pos = np.broadcast_to(np.arange(1, lists.shape[1] + 1, dtype=np.int32), lists.shape)[ok]
    if keys.size == 0:
        return out
    order = np.argsort(keys, kind="stable")
    keys, pos = keys[order], pos[order]
    c_ok = cand >= 0
    ck = (q_off + cand)[c_ok]
    at = np.minimum(np.searchsorted(keys, ck), keys.size - 1)
    out[c_ok] = np.where(keys[at] == ck, pos[at], 0)
    return out


def _union(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Row-wise union of two ``-1``-padded row arrays, ``-1``-padded (order: ascending row, padding last)."""
    u = np.sort(np.concatenate([a, b], axis=1), axis=1)
    if u.shape[1] > 1:
        dup = np.zeros(u.shape, bool)
        dup[:, 1:] = u[:, 1:] == u[:, :-1]
        u[dup] = -1
    u[u < 0] = np.iinfo(np.int64).max
    u.sort(axis=1)
    u[u == np.iinfo(np.int64).max] = -1
    width = int((u >= 0).sum(axis=1).max(initial=0))
    return np.ascontiguousarray(u[:, : max(width, 1)])


def _top(rows: np.ndarray, scores: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Sort each query's candidates by score (descending, ties by row id), padding last; keep ``k``.

    Returns the rows, scores and the column order used (to carry other per-candidate arrays along).
    """
    s = np.where(rows >= 0, scores, -np.inf).astype(np.float32)
    big = np.where(rows >= 0, rows, np.iinfo(np.int64).max)
    order = np.lexsort((big, -s.astype(np.float64)), axis=-1)[:, :k]
    r = np.take_along_axis(rows, order, axis=1)
    sc = np.take_along_axis(s, order, axis=1)
    if r.shape[1] < k:
        pad = k - r.shape[1]
        r = np.pad(r, ((0, 0), (0, pad)), constant_values=-1)
        sc = np.pad(sc, ((0, 0), (0, pad)), constant_values=-np.inf)
        order = np.pad(order, ((0, 0), (0, pad)), constant_values=0)
    sc[r < 0] = -np.inf
    return r, sc, order


def _take(a: np.ndarray, order: np.ndarray, valid: np.ndarray, fill: Any) -> np.ndarray:
    """``a``'s columns in ``order`` (from :func:`_top`), ``fill`` where the slot is padding."""
    if a.shape[1] == 0:
        return np.full(order.shape, fill, a.dtype)
    out = np.take_along_axis(a, np.minimum(order, a.shape[1] - 1), axis=1)
    return np.where(valid, out, fill).astype(a.dtype)



def check_encoder(
    have: EncoderInfo | None, info: EncoderInfo | None, what: str, views: Sequence[str]
) -> None:
    """IndexMismatchError unless ``info``'s ``views`` match ``have`` (the index's encoder), per
    :mod:`hybridsearch.identity`."""
    check_view_identity(have, info, views, what)


def check_views(enc: Encoded, modes: Sequence[str], what: str, index_modes: Sequence[str], dims: Mapping[str, int]) -> None:
    """InputError for a missing view, DimensionMismatchError for a width that differs from the index's."""
    missing = [m for m in modes if getattr(enc, m) is None]
    if missing:
        raise InputError(
            f"the {what} lack the {', '.join(missing)} view(s) this index needs (the {what} have {list(enc.modes)}, "
            f"the index holds {list(index_modes)}); encode with outputs={tuple(modes)!r}"
        )
    checks = {"dense": enc.dense_dim, "sparse": enc.vocab_size, "multivector": enc.multivector_dim}
    for m in modes:
        have, want = checks[m], dims.get(m)
        if want is not None and have != want:
            if m == "multivector" and enc.multivector is not None and enc.multivector.vectors.shape[0] == 0:
                continue
            noun = "vocabulary size" if m == "sparse" else "width"
            raise DimensionMismatchError(f"the {what}' {m} {noun} is {have} but this index holds {want}")


def check_values(enc: Encoded, modes: Sequence[str], what: str) -> None:
    """NaN/inf and negative sparse weights (arrays can be changed in place after an Encoded was built)."""
    if "dense" in modes and enc.dense is not None and enc.dense.size and not np.isfinite(enc.dense).all():
        raise InputError(f"the {what}' dense vectors contain NaN or infinite values")
    if "sparse" in modes and enc.sparse is not None and enc.sparse.nnz:
        data = enc.sparse.data
        if not np.isfinite(data).all():
            raise InputError(f"the {what}' sparse weights contain NaN or infinite values")
        if (data < 0).any():
            raise InputError(f"the {what}' sparse weights must be non-negative; found {float(data.min())}")
    if "multivector" in modes and enc.multivector is not None and enc.multivector.vectors.size:
        if not np.isfinite(enc.multivector.vectors).all():
            raise InputError(f"the {what}' multi-vectors contain NaN or infinite values")




class Searcher:
    """One point-in-time view of an index: search, look up and read documents; never changes.

    Built by :class:`~.hybrid.HybridIndex` (``index.searcher()``); safe to use from many threads at once while
    the index's writer goes on. Holds the parts' snapshots, so memory of dropped rows is released only when the
    last searcher that sees them is gone.
    """

    def __init__(
        self,
        *,
        modes: tuple[str, ...],
        encoder: EncoderInfo | None,
        dims: dict[str, int],
        dense: DenseIndex | None,
        sparse: SparseIndex | None,
        mv: MultiVectorStore | None,
        docs: DocStore,
        next_row: int,
        generation: int | None,
        path: Path | None,
        sparse_idf: bool = False,
    ) -> None:
        self._modes, self._encoder, self._dims = modes, encoder, dims
        self._dense, self._sparse, self._mv, self._docs = dense, sparse, mv, docs
        self._next_row, self._generation, self._path = next_row, generation, path
        self._alive: np.ndarray | None = None  # filled on first use (one assignment: safe across threads)
        self._sparse_idf = sparse_idf
        self._df: dict[int, int] = {}  # live document frequency per term, filled as queries need them

    def doc_freq(self, terms: Sequence[int]) -> np.ndarray:
        """Live document frequency of each sparse term id: int64, over every segment, deleted documents excluded."""
        t = np.asarray(terms, dtype=np.int64)
        cache = self._df
        missing = [x for x in dict.fromkeys(t.tolist()) if x not in cache]
        if missing and self._sparse is not None:
            dead = self._docs.deleted_rows()
            cache.update(zip(missing, self._sparse.doc_freq(np.array(missing, np.int64), dead).tolist(), strict=True))
        return np.array([cache.get(x, 0) for x in t.tolist()], np.int64)

    def _with_idf(self, query: Encoded) -> Encoded:
        """The query with each sparse weight multiplied by BM25's idf over this view's live documents."""
        if not self._sparse_idf:
            return query
        return idf_weighted(query, self.doc_freq, len(self))

    def __len__(self) -> int:
        """Live documents."""
        return self._docs.n_live

    def __contains__(self, doc_id: object) -> bool:
        return isinstance(doc_id, str) and self._docs.row_of(doc_id) is not None

    @property
    def modes(self) -> tuple[str, ...]:
        return self._modes

    @property
    def encoder(self) -> EncoderInfo | None:
        return self._encoder

    @property
    def generation(self) -> int | None:
        """The committed generation this view was loaded from or last saved as; ``None`` when never committed
        (a view with uncommitted changes reports the generation they are based on)."""
        return self._generation

    def doc_ids(self) -> list[str]:
        """The ids of all live documents, in row order."""
        return self._docs.live_doc_ids()

    def get(self, doc_id: str) -> StoredDocument:
        """The stored text and metadata of a live document; UnknownIdError when this view does not hold it."""
        row = self._docs.row_of(doc_id) if isinstance(doc_id, str) else None
        if row is None:
            raise UnknownIdError(f"no document with id {doc_id!r} in this index")
        return self._docs.get(row)

    def __repr__(self) -> str:
        return f"Searcher(documents={len(self)}, modes={self._modes!r}, generation={self._generation})"

    def _check_encoder(self, info: EncoderInfo | None, what: str, views: Sequence[str] | None = None) -> None:
        check_encoder(self._encoder, info, what, self._modes if views is None else views)

    def _check_views(self, enc: Encoded, modes: Sequence[str], what: str) -> None:
        check_views(enc, modes, what, self._modes, self._dims)

    _check_values = staticmethod(check_values)

    def _allowed(self, flt: Any) -> np.ndarray | None:
        if flt is not None:
            return self._docs.filter_mask(parse_filter(flt), self._next_row)
        if self._docs.n_deleted == 0:
            return None
        if self._alive is None:
            self._alive = self._docs.alive_mask(self._next_row)
        return self._alive

    def search(
        self,
        query: Encoded,
        k: int = 10,
        *,
        mode: str | None = None,
        filter: Mapping[str, Any] | None = None,  # noqa: A002 - the natural name in a search API
        candidates: int = 100,
        fusion: str | Fusion = DEFAULT_FUSION,
        rerank: bool | None = None,
        ef_search: int | None = None,
        nprobe: int | None = None,
        approximate: float | None = None,
    ) -> Hits:
        """Search for each query row; returns :class:`~hybridsearch.hits.Hits` with ``k`` slots per query.

        ``mode``: ``"dense"``, ``"sparse"``, ``"multivector"`` (first stage from dense, or sparse without dense,
        reranked by MaxSim), ``"dense+sparse"`` (fusion of every first-stage view), ``"all"`` (then MaxSim
        rescoring and fusion over three views) or ``"hybrid"`` (``"all"`` when both sides hold multi-vectors, else
        ``"dense+sparse"``). ``None`` picks ``"hybrid"`` when the query and the index share more than one view,
        else the one they share. The queries' views must come from the index's encoder or one declared
        interchangeable for those views (:mod:`hybridsearch.identity`), else IndexMismatchError.

        ``filter``: a metadata filter (see :mod:`.filters`), applied before top-k in every mode.
        ``candidates``: rows each first stage proposes (at least ``k``). ``fusion``: a spec string such as
        ``"rrf"`` (default, k=60), ``"weighted_sum"`` (bge-m3's 1 / 0.3 / 1), ``"minmax"``, ``"dbsf"`` or
        ``"weighted_sum(dense=0.4,sparse=0.2,multivector=0.4)"``. ``rerank``: MaxSim-rescore the fused candidates
        in hybrid mode (``None``: when possible). ``ef_search`` / ``nprobe`` tune HNSW / IVF dense search,
        ``approximate`` in ``(0, 1]`` the sparse search.
        """
        if not isinstance(query, Encoded):
            raise InputError(f"query must be an Encoded (from an encoder's encode_queries), got {type(query).__name__}")
        k = positive_int(k, "k")
        c = max(positive_int(candidates, "candidates"), k)
        fz = parse_fusion(fusion)
        if mode is not None:
            mode, rerank = index_search_args(mode, rerank)
        mode = pick_mode(self._modes, query, mode)
        flt = None if filter is None else parse_filter(filter)
        nq = len(query)
        if not self._modes or nq == 0:
            self._check_encoder(query.encoder, "queries", query.modes)
            if flt is not None:
                self._docs.filter_mask(flt, self._next_row)  # unknown fields still raise FilterError
            return Hits.empty(nq, k, self._rank_modes(mode, query, rerank))
        first = [m for m in FIRST_STAGE if m in self._modes]
        use_mv = False
        if mode == "hybrid":
            use_mv = "multivector" in self._modes and query.multivector is not None and rerank is not False
            if rerank and not use_mv:
                raise InputError("rerank=True needs multi-vectors in both the index and the query")
            needed = first + (["multivector"] if use_mv else [])
        elif mode == "multivector":
            if "multivector" not in self._modes:
                raise InputError(f"this index holds no multi-vectors (it holds {list(self._modes)})")
            has = [m for m in FIRST_STAGE if m in self._modes]
            first = [next((m for m in has if getattr(query, m) is not None), has[0])]
            needed = [*first, "multivector"]
        else:
            if mode not in self._modes:
                raise InputError(f"this index holds no {mode} view (it holds {list(self._modes)})")
            needed = [mode]
        self._check_encoder(query.encoder, "queries", needed)
        self._check_views(query, needed, "queries")
        self._check_values(query, needed, "queries")
        allowed = self._allowed(flt)
        query = self._with_idf(query)
        knobs = {"ef_search": ef_search, "nprobe": nprobe, "approximate": approximate}
        if mode in ("dense", "sparse"):
            rows, scores = self._first_stage(mode, query, k, allowed, knobs)
            ranks = {mode: np.where(rows >= 0, np.arange(1, k + 1, dtype=np.int32), 0)}
            views = {mode: np.where(rows >= 0, scores, -np.inf)}
            record = {"stage": "retrieval", "mode": mode}
        elif mode == "multivector":
            rows, scores, ranks, views = self._multivector(query, first[0], k, c, allowed, knobs)
            record = {"stage": "retrieval", "mode": mode, "candidates": c}
        else:
            rows, scores, ranks, views = self._hybrid(query, first, use_mv, k, c, fz, allowed, knobs)
            record = {"stage": "retrieval", "mode": "all" if use_mv else "dense+sparse", "fusion": str(fz), "candidates": c}
        return self._hits(rows, scores, ranks, views, record)

    @staticmethod
    def _rank_modes(mode: str, query: Encoded, rerank: bool | None) -> list[str]:
        """The representations an empty result names (the index holds nothing to search)."""
        if mode in ("dense", "sparse"):
            return [mode]
        modes = [m for m in query.modes if m != "multivector"]
        wants_mv = mode == "multivector" or (query.multivector is not None and rerank is not False)
        return modes + (["multivector"] if wants_mv else [])

    def _first_stage(
        self, mode: str, q: Encoded, k: int, allowed: np.ndarray | None, knobs: dict[str, Any]
    ) -> tuple[np.ndarray, np.ndarray]:
        if mode == "dense":
            assert self._dense is not None
            return self._dense.search(q.dense, k, allowed=allowed, ef_search=knobs["ef_search"], nprobe=knobs["nprobe"])  # type: ignore[arg-type]
        assert self._sparse is not None
        return self._sparse.search(q.sparse, k, allowed=allowed, approximate=knobs["approximate"])  # type: ignore[arg-type]

    def _exact(self, mode: str, q: Encoded, rows: np.ndarray) -> np.ndarray:
        if mode == "dense":
            assert self._dense is not None
            return self._dense.score(q.dense, rows)  # type: ignore[arg-type]
        if mode == "sparse":
            assert self._sparse is not None
            return self._sparse.score(q.sparse, rows)  # type: ignore[arg-type]
        assert self._mv is not None and q.multivector is not None
        return self._mv.maxsim(q.multivector, rows)

    def _multivector(
        self, q: Encoded, first: str, k: int, c: int, allowed: np.ndarray | None, knobs: dict[str, Any]
    ) -> tuple[np.ndarray, np.ndarray, dict[str, np.ndarray], dict[str, np.ndarray]]:
        cand, cand_scores = self._first_stage(first, q, c, allowed, knobs)
        mv = self._exact("multivector", q, cand)
        rows, scores, order = _top(cand, mv, k)
        valid = rows >= 0
        first_rank = _take(np.broadcast_to(np.arange(1, c + 1, dtype=np.int32), cand.shape), order, valid, 0)
        ranks = {first: first_rank, "multivector": np.where(valid, np.arange(1, k + 1, dtype=np.int32), 0)}
        views = {first: _take(np.asarray(cand_scores, np.float32), order, valid, -np.inf), "multivector": scores}
        return rows, scores, ranks, views

    def _hybrid(
        self, q: Encoded, first: list[str], use_mv: bool, k: int, c: int, fz: Fusion, allowed: np.ndarray | None,
        knobs: dict[str, Any],
    ) -> tuple[np.ndarray, np.ndarray, dict[str, np.ndarray], dict[str, np.ndarray]]:
        lists = {m: self._first_stage(m, q, c, allowed, knobs)[0] for m in first}
        cand = lists[first[0]]
        for m in first[1:]:
            cand = _union(cand, lists[m])
        ranks = {m: _ranks_of(cand, lists[m]) for m in first}
        # Every view's exact score of every candidate: what rank fusion does not need, the hits still report.
        exact = {m: self._exact(m, q, cand) for m in first}
        fused = fz(scores=exact, ranks=ranks)
        keep = c if use_mv else k
        rows, scores, order = _top(cand, fused, keep)
        valid = rows >= 0
        ranks = {m: _take(r, order, valid, 0) for m, r in ranks.items()}
        exact = {m: _take(s, order, valid, -np.inf) for m, s in exact.items()}
        if not use_mv:
            return rows, scores, ranks, exact
        return fuse_with_maxsim(rows, valid, ranks, exact, self._exact("multivector", q, rows), fz, k)

    def _hits(
        self, rows: np.ndarray, scores: np.ndarray, ranks: dict[str, np.ndarray],
        views: dict[str, np.ndarray] | None = None, record: dict[str, Any] | None = None,
    ) -> Hits:
        valid = rows >= 0
        doc_ids = np.full(rows.shape, "", dtype=object)
        if valid.any():
            doc_ids[valid] = self._docs.doc_ids(rows[valid])
        ordered = {m: ranks[m] for m in MODES if m in ranks}
        view_scores = {m: np.where(valid, views[m], -np.inf) for m in MODES if views and m in views}
        docs = self._docs
        return Hits(rows, scores, doc_ids, ordered, view_scores, lookup=docs.lookup, stages=[record] if record else ())


def idf_weighted(query: Encoded, doc_freq: Callable[[np.ndarray], np.ndarray], n_docs: int) -> Encoded:
    """``query`` with each sparse weight multiplied by BM25's idf, ``ln(1 + (N - df + 0.5) / (df + 0.5))``.

    ``doc_freq(terms)`` gives the live document frequency (int64) of each term id in ``terms`` (sorted, unique);
    ``n_docs`` is ``N``. Terms no document holds get weight 0 and are dropped. The caller's arrays are not changed.
    Used by the index's searcher, the sharded coordinator (global ``df`` summed over shards) and the
    vector-database adapters.
    """
    q = query.sparse
    if q is None or not q.nnz:
        return query
    from ..encoders.bm25 import bm25_idf

    terms = np.unique(q.indices)
    idf = np.zeros(int(terms.max()) + 1, np.float64)
    idf[terms] = bm25_idf(np.asarray(doc_freq(terms), np.int64), int(n_docs))
    weighted = sp.csr_matrix(  # own index arrays: dropping zeros below must not touch the caller's query
        ((q.data * idf[q.indices]).astype(np.float32), q.indices.copy(), q.indptr.copy()), shape=q.shape
    )
    weighted.eliminate_zeros()
    return dataclasses.replace(query, sparse=weighted)


def fuse_with_maxsim(
    rows: np.ndarray, valid: np.ndarray, ranks: dict[str, np.ndarray], exact: dict[str, np.ndarray],
    mv: np.ndarray, fz: Fusion, k: int,
) -> tuple[np.ndarray, np.ndarray, dict[str, np.ndarray], dict[str, np.ndarray]]:
    """The second stage of mode ``all``: MaxSim scores ``mv`` of the fused candidates ``rows`` ``(nq, c)`` join the
    first-stage views (``ranks``, ``exact``; ``valid`` marks real rows) and everything is fused again with ``fz``;
    returns the top ``k`` rows, fused scores, and each view's ranks and scores. Shared by the index's searcher and
    the sharded / database coordinator, so both rank identically."""
    _, _, mv_order = _top(rows, mv, rows.shape[1])
    mv_rank = np.zeros(rows.shape, np.int32)
    np.put_along_axis(mv_rank, mv_order, np.arange(1, rows.shape[1] + 1, dtype=np.int32)[None, :].repeat(rows.shape[0], 0), axis=1)
    mv_rank[~valid] = 0
    exact = {**exact, "multivector": mv}
    ranks = {**ranks, "multivector": mv_rank}
    fused = fz(scores=exact, ranks=ranks)
    rows2, scores2, order2 = _top(rows, fused, k)
    valid2 = rows2 >= 0
    ranks2 = {m: _take(r, order2, valid2, 0) for m, r in ranks.items()}
    return rows2, scores2, ranks2, {m: _take(s, order2, valid2, -np.inf) for m, s in exact.items()}
