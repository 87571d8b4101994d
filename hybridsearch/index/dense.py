"""Dense vectors in a FAISS index, searched by inner product and addressed by stable int64 row ids.

The index type comes from a FAISS factory string (``"Flat"``, ``"HNSW32"``, ``"IVF1024,Flat"``,
``"IVF256,PQ64"``, ``"SQfp16"``, ``"SQ8"``, ...). The metric is always inner product: vectors are expected to
be L2-normalised, so scores are cosine similarities.

Row ids
    The caller assigns row ids, strictly increasing across :meth:`DenseIndex.add` calls. FAISS stores the
    vectors at sequential positions ``0..n-1`` and this class keeps the sorted ``rows`` array that maps a
    position to its row id (a row id finds its position by binary search). No ``IndexIDMap`` is used, so
    HNSW graphs and memory-mapped files work unchanged and no hash table is kept in memory.

Filtering
    ``allowed`` masks are applied inside the FAISS search (``SearchParameters.sel`` with an
    ``IDSelectorBitmap``), before top-k. On exhaustive types (``Flat``, ``SQ*``) the scan still touches every
    vector and only skips the disallowed ones when collecting results. Graph and IVF searches can come back
    with fewer than ``k`` hits under a selective mask; such queries, and masks allowing at most
    ``max(k, 2048)`` rows, are answered by an exact scan of the allowed (reconstructed) vectors instead, so a
    search returns ``min(k, allowed rows)`` hits. Types whose FAISS search takes no selector (``PQ*``,
    ``RQ*``) use that exact scan for every masked search.

Deletion
    Deletions are tracked by the caller; :meth:`DenseIndex.compact` drops them physically. Exhaustive types
    (Flat, SQ, PQ) remove codes in place, IVF types remove list entries and renumber the remaining positions
    (codes are kept bit for bit), and HNSW graphs are rebuilt from the stored vectors: exact for
    ``HNSW*`` / ``HNSW*,SQfp16`` / ``HNSW*,SQ8`` (decoding then re-encoding a scalar code gives the same code),
    and a full rebuild costs as much as building the graph again.

Files
    :meth:`DenseIndex.save` writes ``dense.faiss`` (``faiss.write_index``), ``dense_rows.npy`` and
    ``dense.json``. :meth:`DenseIndex.load` memory-maps the codes with ``faiss.IO_FLAG_MMAP_IFC`` (flat codes,
    HNSW storage and IVF lists; the HNSW graph itself is read into memory) and falls back to a normal read
    where FAISS refuses. A memory-mapped index is copied into memory the first time it is changed.
"""

from __future__ import annotations

import copy
import json
import logging
import re
from pathlib import Path
from typing import Any

import faiss
import numpy as np

from .._rwlock import RWLock
from ..errors import (
    ConfigError,
    DimensionMismatchError,
    IndexCorruptedError,
    IndexVersionError,
    InputError,
    UnknownIdError,
)

__all__ = ["DEFAULT_EF_SEARCH", "DEFAULT_NPROBE", "DenseIndex"]

logger = logging.getLogger(__name__)

DEFAULT_EF_SEARCH = 64
"""HNSW ``efSearch`` when none is given (FAISS's own default of 16 loses recall on 1024-d vectors)."""
DEFAULT_NPROBE = 16
"""IVF ``nprobe`` when none is given (FAISS's own default of 1 searches a single list)."""

FACTORY_EXAMPLES = ("Flat", "HNSW32", "HNSW32,SQfp16", "IVF1024,Flat", "IVF256,PQ64", "SQfp16", "SQ8")

_FORMAT = "hybridsearch.dense"
_FORMAT_VERSION = 1
_INDEX_FILE, _ROWS_FILE, _META_FILE = "dense.faiss", "dense_rows.npy", "dense.json"
_EXACT_SCAN_ROWS = 2048  # masks allowing this few rows are scanned exactly on approximate types
_CHUNK = 4096  # vectors reconstructed at a time by exact scans, compaction and score()
_KMEANS_POINTS_PER_CENTROID = 39  # FAISS warns below this many training points per centroid


def _faiss_message(exc: BaseException) -> str:
    """The useful tail of a FAISS C++ error (``... failed: <message>``) without file and function names."""
    text = str(exc).strip().splitlines()[-1] if str(exc).strip() else type(exc).__name__
    m = re.search(r"(?:failed: |Error: )([^:].*)$", text)
    return (m.group(1) if m else text).strip()


def _unwrap(index: Any) -> Any:
    """The innermost index under any ``IndexPreTransform`` (OPQ, PCA ...), downcast to its real class."""
    idx = faiss.downcast_index(index)
    while isinstance(idx, faiss.IndexPreTransform):
        idx = faiss.downcast_index(idx.index)
    return idx


def _kind(index: Any, factory: str) -> str:
    """``"flat"`` (exhaustive codes), ``"hnsw"`` or ``"ivf"``; ConfigError for families we cannot serve."""
    base = _unwrap(index)
    if isinstance(base, faiss.IndexIDMap):
        raise ConfigError(
            f"factory {factory!r} wraps the index in an IDMap, but DenseIndex keeps the row ids itself; "
            f"drop 'IDMap' from the string (e.g. {FACTORY_EXAMPLES[1]!r})"
        )
    if isinstance(base, faiss.IndexHNSW):
        return "hnsw"
    if isinstance(base, faiss.IndexIVF):
        return "ivf"
    if isinstance(base, faiss.IndexFlatCodes):
        return "flat"
    raise ConfigError(
        f"factory {factory!r} builds a {type(base).__name__}, which DenseIndex does not support; use a Flat, "
        f"SQ*, PQ*, HNSW* or IVF* index, optionally after a pre-transform such as OPQ, e.g. "
        + ", ".join(repr(f) for f in FACTORY_EXAMPLES)
    )


def _native_selector(index: Any) -> bool:
    """Whether FAISS's own search on this index takes an ``IDSelector`` (PQ and RQ flat codes do not)."""
    base = _unwrap(index)
    return isinstance(base, (faiss.IndexHNSW, faiss.IndexIVF, faiss.IndexFlat, faiss.IndexScalarQuantizer))


def _training_needs(index: Any) -> tuple[int, int]:
    """``(minimum, recommended)`` number of training vectors: k-means needs one point per centroid at least."""
    clusters = [1]
    idx = faiss.downcast_index(index)
    while isinstance(idx, faiss.IndexPreTransform):
        for i in range(idx.chain.size()):
            if isinstance(faiss.downcast_VectorTransform(idx.chain.at(i)), faiss.OPQMatrix):
                clusters.append(256)  # OPQ trains an 8-bit PQ internally
        idx = faiss.downcast_index(idx.index)
    if isinstance(idx, faiss.IndexHNSW):
        idx = faiss.downcast_index(idx.storage)
    if isinstance(idx, faiss.IndexIVF):
        clusters.append(int(idx.nlist))
    pq = getattr(idx, "pq", None)
    if pq is not None:
        clusters.append(int(pq.ksub))
    nbits = getattr(idx, "rq", None) or getattr(idx, "aq", None)
    if nbits is not None:
        clusters.append(2 ** max(int(b) for b in faiss.vector_to_array(nbits.nbits)))
    need = max(clusters)
    return need, need * _KMEANS_POINTS_PER_CENTROID if need > 1 else 1


def _index_nbytes(index: Any) -> int:
    """Approximate bytes held by a FAISS index: codes, ids, graph links and trained tables."""
    idx = faiss.downcast_index(index)
    if isinstance(idx, faiss.IndexPreTransform):
        return _index_nbytes(idx.index) + 4 * idx.d * faiss.downcast_index(idx.index).d
    if isinstance(idx, faiss.IndexHNSW):
        h = idx.hnsw
        return _index_nbytes(idx.storage) + 4 * h.neighbors.size() + 8 * h.offsets.size() + 4 * h.levels.size()
    extra = 0
    pq = getattr(idx, "pq", None)
    if pq is not None:
        extra += 4 * pq.centroids.size()
    if isinstance(idx, faiss.IndexIVF):
        dm = 8 * idx.ntotal if idx.direct_map.type == faiss.DirectMap.Array else 0
        return idx.ntotal * (idx.code_size + 8) + dm + _index_nbytes(idx.quantizer) + extra
    return int(idx.ntotal) * int(getattr(idx, "code_size", 4 * idx.d)) + extra


def _positive_int(value: Any, name: str, error: type[Exception]) -> int:
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, (int, np.integer)) or value <= 0:
        raise error(f"{name} must be a positive integer, got {value!r}")
    return int(value)


def _tie_order(scores: np.ndarray, positions: np.ndarray) -> np.ndarray:
    """Per row, the column order by score descending, then position ascending (``-1`` padding last)."""
    big = np.where(positions >= 0, positions, np.iinfo(np.int64).max)
    return np.lexsort((big, -scores.astype(np.float64)), axis=-1)


def _mask(mask: Any, name: str) -> np.ndarray:
    m = np.asarray(mask)
    if m.ndim != 1 or m.dtype != np.bool_:
        raise InputError(
            f"{name} must be a 1-D bool array indexed by row id (True = keep), got dtype {m.dtype} and shape {m.shape}"
        )
    return m


class DenseIndex:
    """A FAISS inner-product index over L2-normalised float32 vectors with caller-assigned int64 row ids.

    Parameters
    ----------
    dim:
        Vector width (1024 for bge-m3).
    factory:
        FAISS factory string, e.g. ``"Flat"`` (exact), ``"HNSW32"``, ``"IVF1024,Flat"``, ``"IVF256,PQ64"``,
        ``"SQfp16"``, ``"SQ8"``.
    ef_search, nprobe:
        HNSW ``efSearch`` and IVF ``nprobe`` used by :meth:`search` (``None``: :data:`DEFAULT_EF_SEARCH`,
        :data:`DEFAULT_NPROBE`). Settable attributes; reading them gives ``None`` for types without the knob.
    ef_construction:
        HNSW ``efConstruction`` (``None``: FAISS's default, 40).

    >>> import numpy as np
    >>> index = DenseIndex(4)
    >>> index.add(np.eye(4, dtype=np.float32), np.array([10, 11, 12, 13]))
    >>> rows, scores = index.search(np.array([[0.0, 1.0, 0.0, 0.0]], np.float32), 2)
    >>> rows[0].tolist(), scores[0].tolist()
    ([11, 10], [1.0, 0.0])
    """

    def __init__(
        self,
        dim: int,
        *,
        factory: str = "Flat",
        ef_search: int | None = None,
        nprobe: int | None = None,
        ef_construction: int | None = None,
    ) -> None:
        self._dim = _positive_int(dim, "dim", ConfigError)
        if not isinstance(factory, str) or not factory.strip():
            raise ConfigError(f"factory must be a FAISS factory string such as {FACTORY_EXAMPLES!r}, got {factory!r}")
        self._factory = factory.strip()
        self._ef_construction = (
            None if ef_construction is None else _positive_int(ef_construction, "ef_construction", ConfigError)
        )
        self._ef_search: int | None = None
        self._nprobe: int | None = None
        self.ef_search = ef_search
        self.nprobe = nprobe
        self._index = self._new_index()
        self._kind = _kind(self._index, self._factory)
        self._native_sel = _native_selector(self._index)
        self._rows = np.zeros(0, np.int64)
        self._mmapped = False
        self._source: Path | None = None  # directory a memory-mapped index was loaded from
        self._lock = RWLock()  # FAISS objects are appended to in place: reads share, appends exclude

    # ----------------------------------------------------------------------------------------- attributes

    @property
    def dim(self) -> int:
        return self._dim

    @property
    def factory(self) -> str:
        return self._factory

    @property
    def ef_search(self) -> int | None:
        """HNSW search breadth used when :meth:`search` gets none; ``None`` for non-HNSW types."""
        if self._kind != "hnsw":
            return None
        return self._ef_search if self._ef_search is not None else DEFAULT_EF_SEARCH

    @ef_search.setter
    def ef_search(self, value: int | None) -> None:
        self._ef_search = None if value is None else _positive_int(value, "ef_search", ConfigError)

    @property
    def nprobe(self) -> int | None:
        """IVF lists probed when :meth:`search` gets none; ``None`` for non-IVF types."""
        if self._kind != "ivf":
            return None
        return self._nprobe if self._nprobe is not None else DEFAULT_NPROBE

    @nprobe.setter
    def nprobe(self, value: int | None) -> None:
        self._nprobe = None if value is None else _positive_int(value, "nprobe", ConfigError)

    @property
    def is_trained(self) -> bool:
        return bool(self._index.is_trained)

    @property
    def nbytes(self) -> int:
        """Approximate bytes of the index in memory (and on disk): FAISS codes and links plus 8 per row id."""
        return _index_nbytes(self._index) + 8 * len(self._rows)

    @property
    def rows(self) -> np.ndarray:
        """Row ids held, ascending (read-only view)."""
        view = self._rows.view()
        view.flags.writeable = False
        return view

    def __len__(self) -> int:
        return int(self._rows.size)

    def __repr__(self) -> str:
        return f"DenseIndex(dim={self._dim}, factory={self._factory!r}, n={len(self)})"

    def snapshot(self) -> DenseIndex:
        """A read-only view of the rows held now, unaffected by later :meth:`add` and :meth:`compact` calls.

        It shares the FAISS object (appends happen in place under a lock, and the view only ever returns the
        positions it knew); compaction gives this index a new FAISS object and leaves the view's untouched.
        Costs a shallow copy. The view must not be changed.
        """
        return copy.copy(self)

    # ----------------------------------------------------------------------------------------- building

    def _new_index(self) -> Any:
        try:
            index = faiss.index_factory(self._dim, self._factory, faiss.METRIC_INNER_PRODUCT)
        except RuntimeError as exc:
            raise ConfigError(
                f"FAISS cannot build an index from factory string {self._factory!r} ({_faiss_message(exc)}); "
                "examples of valid strings: " + ", ".join(repr(f) for f in FACTORY_EXAMPLES)
            ) from None
        base = _unwrap(index)
        if isinstance(base, faiss.IndexHNSW) and (
            base.hnsw.cum_nneighbor_per_level.size() < 2 or base.hnsw.nb_neighbors(0) < 4
        ):
            # FAISS accepts HNSW0 / HNSW1 here and then kills the process (an assertion, a segfault) on the first add.
            raise ConfigError(
                f"factory string {self._factory!r}: HNSW needs at least 2 neighbours per node (M >= 2), e.g. 'HNSW32'"
            )
        if isinstance(base, faiss.IndexHNSW) and self._ef_construction is not None:
            base.hnsw.efConstruction = self._ef_construction
        codes = faiss.downcast_index(base.storage) if isinstance(base, faiss.IndexHNSW) else base
        if hasattr(codes, "do_polysemous_training"):
            # The factory turns on polysemous training, which only serves Hamming-filtered L2 search; skipping it
            # makes PQ training many times faster and leaves inner-product results unchanged.
            codes.do_polysemous_training = False
        if isinstance(base, faiss.IndexIVF):
            base.set_direct_map_type(faiss.DirectMap.Array)  # position -> list entry, for reconstruct()
        return index

    def _check_vectors(self, vectors: Any, name: str) -> np.ndarray:
        x = np.asarray(vectors)
        if x.ndim != 2:
            raise InputError(
                f"{name} must be a 2-D array (n, {self._dim}), got shape {x.shape}; use v[None, :] for one vector"
            )
        if x.shape[1] != self._dim:
            raise DimensionMismatchError(
                f"{name} have width {x.shape[1]} but this dense index holds {self._dim}-d vectors"
            )
        if x.dtype.kind not in "fiu":
            raise InputError(f"{name} must be a float array, got dtype {x.dtype}")
        x = np.ascontiguousarray(x, dtype=np.float32)
        if x.size and not np.isfinite(x).all():
            bad = int(np.flatnonzero(~np.isfinite(x).all(axis=1))[0])
            raise InputError(f"{name} contain NaN or infinite values (first at row {bad}); clean the vectors first")
        return x

    def _training_error(self, got: int) -> InputError:
        need, advised = _training_needs(self._index)
        return InputError(
            f"factory {self._factory!r} must be trained on at least {need:,} vectors "
            f"(FAISS advises {advised:,} or more) but got {got:,}; call train() with a larger sample "
            "or pass more vectors to the first add()"
        )

    def _trained_index(self, x: np.ndarray) -> Any:
        """A fresh index trained on ``x``; the current index is left alone."""
        need, _ = _training_needs(self._index)
        if x.shape[0] < need:
            raise self._training_error(x.shape[0])
        index = self._new_index()
        try:
            index.train(x)
        except RuntimeError as exc:
            raise InputError(
                f"FAISS could not train {self._factory!r} on {x.shape[0]:,} vectors: {_faiss_message(exc)}"
            ) from None
        return index

    def train(self, vectors: np.ndarray) -> None:
        """Train the quantisers (IVF centroids, PQ codebooks, SQ ranges) on ``vectors``, float32 ``(n, dim)``.

        Types without training (Flat, HNSW over float vectors, SQfp16) accept the call and ignore it. Training
        must happen before the first :meth:`add`; raises :class:`InputError` with the count needed when
        ``vectors`` is too small.
        """
        x = self._check_vectors(vectors, "training vectors")
        if len(self):
            raise InputError(
                f"the dense index already holds {len(self):,} vectors; train() must come before add() "
                "(build a new DenseIndex to train again)"
            )
        if self._new_index().is_trained:  # nothing in this type learns from data
            return
        self._index = self._trained_index(x)
        self._mmapped = False

    def _check_rows(self, rows: Any, n: int) -> np.ndarray:
        r = np.asarray(rows)
        if r.ndim != 1 or r.shape[0] != n:
            raise InputError(f"rows must be a 1-D array with one id per vector ({n}), got shape {r.shape}")
        if r.dtype.kind not in "iu":
            raise InputError(f"rows must be integer row ids, got dtype {r.dtype}")
        if n == 0:
            return np.zeros(0, np.int64)
        if r.dtype.kind == "u" and int(r.max()) > np.iinfo(np.int64).max:
            raise InputError("rows must fit in int64")
        r = r.astype(np.int64, copy=False)
        if r[0] < 0:
            raise InputError(f"rows must be non-negative, got {int(r[0])}")
        steps = np.diff(r)
        if steps.size and (steps <= 0).any():
            at = int(np.flatnonzero(steps <= 0)[0])
            raise InputError(
                f"rows must be strictly increasing without duplicates; row {int(r[at + 1])} follows {int(r[at])} "
                f"at position {at + 1}"
            )
        if len(self) and r[0] <= self._rows[-1]:
            raise InputError(
                f"rows must continue after the last row already indexed ({int(self._rows[-1])}), got {int(r[0])}"
            )
        return np.ascontiguousarray(r)

    def add(self, vectors: np.ndarray, rows: np.ndarray) -> None:
        """Append float32 ``(n, dim)`` vectors under int64 ``rows`` (strictly increasing, above every row held).

        An untrained index is trained on this batch when it is large enough, otherwise :class:`InputError`
        says how many vectors training needs. Nothing changes when a check fails.
        """
        x = self._check_vectors(vectors, "vectors")
        r = self._check_rows(rows, x.shape[0])
        if x.shape[0] == 0:
            return
        if not self._index.is_trained:
            if x.shape[0] < _training_needs(self._index)[0]:
                raise self._training_error(x.shape[0])
            self._index = self._trained_index(x)
            self._mmapped = False
        self._materialize()
        with self._lock.write():
            self._index.add(x)
        self._rows = np.concatenate([self._rows, r])

    def _materialize(self) -> None:
        """Copy a memory-mapped index into memory before changing it (FAISS aborts on writes to a mapped view)."""
        if self._mmapped:
            self._index = faiss.deserialize_index(faiss.serialize_index(self._index))
            self._rows = np.array(self._rows, dtype=np.int64)
            self._mmapped = False
            self._source = None

    # ----------------------------------------------------------------------------------------- searching

    def _restrict(self, mask: np.ndarray) -> np.ndarray:
        """A row-id mask turned into a position mask: True where the row at that position is set."""
        n = len(self)
        out = np.zeros(n, np.bool_)
        cut = int(np.searchsorted(self._rows, mask.size))  # rows beyond the mask are not set
        if cut:
            lo, hi = int(self._rows[0]), int(self._rows[cut - 1])
            out[:cut] = mask[lo : hi + 1] if hi - lo + 1 == cut else mask[self._rows[:cut]]
        return out

    def _reconstruct(self, positions: np.ndarray) -> np.ndarray:
        if positions.size == 0:
            return np.zeros((0, self._dim), np.float32)
        with self._lock.read():
            return self._index.reconstruct_batch(np.ascontiguousarray(positions, dtype=np.int64))

    def _exact(self, queries: np.ndarray, positions: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        """Exact top-``k`` positions and scores over the (reconstructed) vectors at ``positions``."""
        nq = queries.shape[0]
        best_p = np.full((nq, k), -1, np.int64)
        best_s = np.full((nq, k), -np.inf, np.float32)
        for start in range(0, positions.size, _CHUNK):
            pos = positions[start : start + _CHUNK]
            s = np.hstack([best_s, queries @ self._reconstruct(pos).T])
            p = np.hstack([best_p, np.broadcast_to(pos, (nq, pos.size))])
            if s.shape[1] > k:
                top = _tie_order(s, p)[:, :k]  # score descending, then position (= row) ascending
                s, p = np.take_along_axis(s, top, axis=1), np.take_along_axis(p, top, axis=1)
            best_s, best_p = s, p
        order = _tie_order(best_s, best_p)
        return np.take_along_axis(best_p, order, axis=1), np.take_along_axis(best_s, order, axis=1)

    def _params(self, ok: np.ndarray | None, ef_search: int, nprobe: int, limit: int) -> tuple[Any, list[Any]]:
        """FAISS search parameters plus the objects that must outlive the search call.

        ``limit``: positions at or beyond it were appended after this view was taken and are never returned.
        """
        keep: list[Any] = []
        if ok is None and limit < self._index.ntotal:
            sel = faiss.IDSelectorRange(0, limit)
            keep.append(sel)
        else:
            sel = None
        if self._kind == "hnsw":
            params = faiss.SearchParametersHNSW()
            params.efSearch = ef_search
        elif self._kind == "ivf":
            params = faiss.SearchParametersIVF()
            params.nprobe = nprobe
        elif ok is not None or sel is not None:
            params = faiss.SearchParameters()
        else:
            return None, keep
        if ok is not None:
            bits = np.packbits(ok, bitorder="little")  # ``len(self)`` bits: later positions are never members
            sel = faiss.IDSelectorBitmap(bits.size, faiss.swig_ptr(bits))
            keep += [bits, sel]
        if sel is not None:
            params.sel = sel
        return params, keep

    def search(
        self,
        queries: np.ndarray,
        k: int,
        *,
        allowed: np.ndarray | None = None,
        ef_search: int | None = None,
        nprobe: int | None = None,
    ) -> tuple[np.ndarray, np.ndarray]:
        """Return ``(rows, scores)`` of the ``k`` best inner products for each query.

        ``rows``: int64 ``(n_queries, k)``, padded with ``-1``; ``scores``: float32 ``(n_queries, k)``, descending,
        padded with ``-inf``. ``allowed`` is a bool array indexed by row id (rows at or beyond its length are
        not allowed), applied before top-k. ``ef_search`` / ``nprobe`` override the attributes for this call
        and are ignored by types without that knob.
        """
        q = self._check_vectors(queries, "queries")
        k = _positive_int(k, "k", InputError)
        ef = (
            _positive_int(ef_search, "ef_search", InputError)
            if ef_search is not None
            else (self.ef_search or DEFAULT_EF_SEARCH)
        )
        npb = _positive_int(nprobe, "nprobe", InputError) if nprobe is not None else (self.nprobe or DEFAULT_NPROBE)
        ok = self._restrict(_mask(allowed, "allowed")) if allowed is not None else None
        nq, n = q.shape[0], len(self)
        out_rows = np.full((nq, k), -1, np.int64)
        out_scores = np.full((nq, k), -np.inf, np.float32)
        n_ok = n if ok is None else int(np.count_nonzero(ok))
        if ok is not None and n_ok == n:
            ok = None
        if nq == 0 or n_ok == 0:
            return out_rows, out_scores
        kk = min(k, n_ok)
        if ok is not None and (not self._native_sel or (self._kind != "flat" and n_ok <= max(kk, _EXACT_SCAN_ROWS))):
            pos, scores = self._exact(q, np.flatnonzero(ok), kk)
        else:
            pos, scores = self._faiss_search(q, kk, ok, ef, npb, n, n_ok)
        hit = pos >= 0
        out_rows[:, :kk] = np.where(hit, self._rows[np.where(hit, pos, 0)], -1)
        out_scores[:, :kk] = np.where(hit, scores, -np.inf)
        return out_rows, out_scores

    def _faiss_search(
        self, q: np.ndarray, kk: int, ok: np.ndarray | None, ef: int, npb: int, n: int, n_ok: int
    ) -> tuple[np.ndarray, np.ndarray]:
        """FAISS's top-``kk`` positions, ties ordered by position (= row id) so that a top-k is a prefix of a larger one.

        FAISS orders equal scores as its heap leaves them (faiss issue #808). One more result than needed is asked
        for; while the last wanted score ties the first unwanted one, the search is repeated with twice as many.
        """
        want = kk
        while True:
            ask = min(want + 1, n_ok)
            with self._lock.read():  # the size check and the search see the same FAISS contents
                if self._index.ntotal > n and not self._native_sel:
                    scores = pos = None  # appended after this view was taken, and no selector can hide them
                else:
                    params, _keep = self._params(ok, ef, npb, n)
                    scores, pos = self._index.search(q, ask, params=params)
            if pos is None:
                return self._exact(q, np.flatnonzero(ok) if ok is not None else np.arange(n, dtype=np.int64), kk)
            short = (pos >= 0).sum(axis=1) < ask  # graph / IVF searches can come back under-filled
            if short.any():
                candidates = np.flatnonzero(ok) if ok is not None else np.arange(n, dtype=np.int64)
                pos[short], scores[short] = self._exact(q[short], candidates, ask)
            order = _tie_order(scores, pos)
            scores, pos = np.take_along_axis(scores, order, axis=1), np.take_along_axis(pos, order, axis=1)
            if ask == n_ok or ask <= kk or not (scores[:, kk - 1] == scores[:, ask - 1]).any():
                return pos[:, :kk], scores[:, :kk]
            want = 2 * want

    def score(self, queries: np.ndarray, rows: np.ndarray) -> np.ndarray:
        """Return float32 ``(n_queries, m)`` inner products of each query with its candidate ``rows``.

        ``rows`` is int64 ``(n_queries, m)`` (or ``(m,)``, the same candidates for every query); ``-1`` scores
        ``-inf``. Exact for ``Flat`` and HNSW over float vectors; quantised types (SQ, PQ, IVF-PQ) score the
        reconstructed (decoded) vectors, which matches what their search returns. Raises
        :class:`UnknownIdError` for a row the index does not hold.
        """
        q = self._check_vectors(queries, "queries")
        r = np.asarray(rows)
        if r.dtype.kind not in "iu" or r.ndim not in (1, 2):
            raise InputError(
                f"rows must be an integer array (n_queries, m) or (m,), got dtype {r.dtype}, shape {r.shape}"
            )
        if r.ndim == 1:
            r = np.broadcast_to(r, (q.shape[0], r.shape[0]))
        if r.shape[0] != q.shape[0]:
            raise InputError(f"rows has {r.shape[0]} lines but there are {q.shape[0]} queries")
        r = r.astype(np.int64, copy=False)
        if (r < -1).any():
            raise InputError("rows may only hold row ids and -1 for padding")
        out = np.full(r.shape, -np.inf, np.float32)
        qi, ci = np.nonzero(r >= 0)
        if qi.size == 0:
            return out
        uniq, inv = np.unique(r[qi, ci], return_inverse=True)
        pos = np.searchsorted(self._rows, uniq)
        found = pos < len(self)
        found[found] = self._rows[pos[found]] == uniq[found]
        if not found.all():
            raise UnknownIdError(f"row {int(uniq[~found][0])} is not in the dense index")
        order = np.argsort(inv, kind="stable")
        bounds = np.searchsorted(inv[order], np.arange(0, uniq.size + _CHUNK, _CHUNK))
        vals = np.empty(qi.size, np.float32)
        for c, start in enumerate(range(0, uniq.size, _CHUNK)):
            vecs = self._reconstruct(pos[start : start + _CHUNK])
            entries = order[bounds[c] : bounds[c + 1]]
            for e0 in range(0, entries.size, _CHUNK):
                e = entries[e0 : e0 + _CHUNK]
                vals[e] = np.einsum("ij,ij->i", q[qi[e]], vecs[inv[e] - start])
        out[qi, ci] = vals
        return out

    def vectors(self, rows: np.ndarray) -> np.ndarray:
        """The stored vectors of ``rows`` (int64 ``(m,)``), float32 ``(m, dim)`` in that order.

        Exact for ``Flat`` and HNSW over float vectors, decoded for quantised types (what search scores).
        Raises :class:`UnknownIdError` for a row the index does not hold.
        """
        r = np.asarray(rows, dtype=np.int64).reshape(-1)
        pos = np.searchsorted(self._rows, r)
        found = pos < len(self)
        found[found] = self._rows[pos[found]] == r[found]
        if not found.all():
            raise UnknownIdError(f"row {int(r[~found][0])} is not in the dense index")
        return np.asarray(self._reconstruct(pos), dtype=np.float32)

    # ----------------------------------------------------------------------------------------- deletion

    def compact(self, alive: np.ndarray | None = None) -> None:
        """Physically drop the rows where ``alive[row]`` is False (rows beyond ``alive`` count as dead).

        ``None`` keeps every row. Flat/SQ/PQ codes are removed in place, IVF lists lose the entries and keep
        every other code unchanged, HNSW graphs are rebuilt from the stored vectors (see the module notes).
        """
        if alive is None or len(self) == 0:
            return
        keep = self._restrict(_mask(alive, "alive"))
        if keep.all():
            return
        drop_bits = np.packbits(~keep, bitorder="little")
        drop = faiss.IDSelectorBitmap(drop_bits.size, faiss.swig_ptr(drop_bits))
        # Copy on write: snapshots taken before keep searching the old FAISS object unchanged. A mapped index is
        # first read into a private in-memory copy (FAISS aborts on writes to a mapped view), which is changed.
        private = self._mmapped
        self._materialize()
        if self._kind == "flat":
            index = self._index if private else self._copy_index()
            index.remove_ids(drop)  # IndexFlatCodes keeps the survivors in order
        elif self._kind == "ivf":
            index = self._index if private else self._copy_index()
            self._compact_ivf(index, keep, drop)
        else:
            index = self._rebuilt(np.flatnonzero(keep))
        self._index, self._mmapped, self._source = index, False, None
        self._rows = np.ascontiguousarray(self._rows[keep])

    def _copy_index(self) -> Any:
        with self._lock.read():
            if self._index.ntotal == len(self):
                return faiss.deserialize_index(faiss.serialize_index(self._index))
        # vectors beyond the rows (appended after a view was taken, or by a failed add): leave them out of the copy
        return self._rebuilt(np.arange(len(self), dtype=np.int64))

    @staticmethod
    def _compact_ivf(index: Any, keep: np.ndarray, drop: Any) -> None:
        ivf = faiss.extract_index_ivf(index)
        ivf.set_direct_map_type(faiss.DirectMap.NoMap)
        index.remove_ids(drop)
        new_pos = np.cumsum(keep, dtype=np.int64) - 1
        lists = ivf.invlists
        for list_no in range(ivf.nlist):
            size = lists.list_size(list_no)
            if size:
                ids = faiss.rev_swig_ptr(lists.get_ids(list_no), size)  # a view into the list: renumber in place
                ids[:] = new_pos[ids]
        ivf.make_direct_map(True)

    def _rebuilt(self, keep_pos: np.ndarray) -> Any:
        """The same trained index, emptied and refilled with the vectors at ``keep_pos``."""
        with self._lock.read():  # a serialised copy: clone_index keeps a mapped index's read-only storage
            index = faiss.deserialize_index(faiss.serialize_index(self._index))
        index.reset()
        for start in range(0, keep_pos.size, _CHUNK):
            index.add(self._reconstruct(keep_pos[start : start + _CHUNK]))
        return index

    # ----------------------------------------------------------------------------------------- files

    def save(self, directory: Path) -> list[str]:
        """Write ``dense.faiss``, ``dense_rows.npy`` and ``dense.json`` into the existing ``directory``.

        Returns the file names. Writes in place; atomicity is the caller's business.
        """
        directory = Path(directory)
        if self._mmapped and self._source is not None and directory.resolve() == self._source:
            self._materialize()  # rewriting a file that is mapped would pull the pages out from under us
        faiss.write_index(self._index, str(directory / _INDEX_FILE))
        np.save(directory / _ROWS_FILE, np.ascontiguousarray(self._rows, dtype=np.int64), allow_pickle=False)
        meta = {
            "format": _FORMAT,
            "format_version": _FORMAT_VERSION,
            "dim": self._dim,
            "factory": self._factory,
            "ef_search": self._ef_search,
            "nprobe": self._nprobe,
            "ef_construction": self._ef_construction,
            "count": len(self),
        }
        (directory / _META_FILE).write_text(json.dumps(meta, indent=2) + "\n", encoding="utf-8")
        return [_INDEX_FILE, _ROWS_FILE, _META_FILE]

    @classmethod
    def load(cls, directory: Path, *, mmap: bool = True) -> DenseIndex:
        """Read an index written by :meth:`save`.

        With ``mmap`` the FAISS codes and the row ids are memory-mapped (``faiss.IO_FLAG_MMAP_IFC``); a type or
        FAISS build that cannot map is read normally. Raises :class:`IndexCorruptedError` for missing,
        truncated or inconsistent files and :class:`IndexVersionError` for a newer format.
        """
        directory = Path(directory)
        for name in (_META_FILE, _ROWS_FILE, _INDEX_FILE):
            if not (directory / name).is_file():
                raise IndexCorruptedError(f"dense index file {name} is missing in {directory}")
        try:
            meta = json.loads((directory / _META_FILE).read_text(encoding="utf-8"))
            version, dim, factory = int(meta["format_version"]), int(meta["dim"]), str(meta["factory"])
        except (ValueError, KeyError, TypeError) as exc:
            raise IndexCorruptedError(
                f"{directory / _META_FILE} is not a valid dense index description: {exc}"
            ) from None
        if meta.get("format") != _FORMAT:
            raise IndexCorruptedError(f"{directory / _META_FILE} does not describe a dense index")
        if version > _FORMAT_VERSION:
            raise IndexVersionError(
                f"dense index format {version} in {directory} is newer than this library reads ({_FORMAT_VERSION}); "
                "upgrade hybridsearch"
            )
        try:
            rows = np.load(directory / _ROWS_FILE, mmap_mode="r" if mmap else None, allow_pickle=False)
        except (ValueError, OSError) as exc:
            raise IndexCorruptedError(f"cannot read {directory / _ROWS_FILE}: {exc}") from None
        index, mapped = _read_index(directory / _INDEX_FILE, mmap)
        if rows.ndim != 1 or rows.dtype != np.int64 or index.ntotal != rows.size or index.d != dim:
            raise IndexCorruptedError(
                f"dense index in {directory} is inconsistent: {index.ntotal} vectors of width {index.d}, "
                f"{rows.size} row ids, expected width {dim}"
            )
        if rows.size > 1 and (np.diff(rows) <= 0).any():
            raise IndexCorruptedError(f"row ids in {directory / _ROWS_FILE} are not strictly increasing")
        obj = cls.__new__(cls)
        obj._dim, obj._factory = dim, factory
        try:
            obj._ef_construction, obj._ef_search, obj._nprobe = (
                None if meta.get(key) is None else _positive_int(meta[key], key, ValueError)
                for key in ("ef_construction", "ef_search", "nprobe")
            )
        except ValueError as exc:
            raise IndexCorruptedError(f"{directory / _META_FILE}: {exc}") from None
        obj._index, obj._rows, obj._mmapped = index, rows, mapped
        obj._lock = RWLock()
        obj._source = directory.resolve() if mapped else None
        try:
            obj._kind = _kind(index, factory)
        except ConfigError as exc:
            raise IndexCorruptedError(f"dense index in {directory}: {exc}") from None
        obj._native_sel = _native_selector(index)
        return obj


def _read_index(path: Path, mmap: bool) -> tuple[Any, bool]:
    flags = getattr(faiss, "IO_FLAG_MMAP_IFC", None)
    if mmap and flags is not None:
        try:
            return faiss.read_index(str(path), flags | faiss.IO_FLAG_READ_ONLY), True
        except RuntimeError as exc:
            logger.debug("memory-mapping %s failed (%s); reading it into memory", path, _faiss_message(exc))
    try:
        return faiss.read_index(str(path)), False
    except RuntimeError as exc:
        raise IndexCorruptedError(f"FAISS cannot read {path}: {_faiss_message(exc)}") from None
