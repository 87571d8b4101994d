"""An inverted index for sparse vectors (bge-m3 lexical weights, BM25), exact top-k by dynamic pruning.

Scores are dot products ``query . document`` over non-negative weights. Row ids are int64s assigned by the
caller, strictly increasing across :meth:`SparseIndex.add` calls; deletions are the caller's, passed as an
``allowed`` mask at search time and dropped physically by :meth:`SparseIndex.compact`.

Layout
    Each :meth:`~SparseIndex.add` appends an immutable *segment*; the newest ``merge_factor`` segments are
    merged when they share a size class (powers of ``merge_factor`` above 1,024 documents), so a long series
    of small adds keeps O(log n) segments. Inside a segment documents have local ids ``0..n-1`` and every
    term's postings are sorted by local id. Terms are split by document frequency:

    - *sparse terms*: ``uint16`` low bits of the local id and a ``float32`` weight, plus one
      ``(superblock, offset)`` pair (6 bytes) per 65,536-document range the list touches;
    - *dense terms* (frequent tokens, in at least ``dense_fraction`` of the documents): ``uint8`` low bits and
      a ``float32`` weight, a ``uint32`` offset per 256-document chunk, and a ``uint8`` quantised maximum per
      ``block_size`` documents (``n / block_size`` bytes a term). Terms become dense most frequent first while
      the segment's estimated size stays within ``max_bytes_per_nnz`` (7.5 bytes per non-zero by default).

    On the reference workload (1M bge-m3-like documents, 76 non-zeros each) that is about 7.5 bytes per
    non-zero; the search scratch adds a fixed 3.4 MiB per searching thread.
    Weights stay ``float32``, so scores are exact: a returned score is the float64 sum of the products
    ``query_weight * doc_weight`` added in the query's term order, rounded once to float32. Every path (numba,
    numpy, :meth:`~SparseIndex.score`) and every segment layout adds in that same order, so they give the same
    bits, and ties are real ties (broken by row id).

Search (numba, the ``fast`` extra; see :mod:`hybridsearch.index._sparse_kernels`)
    A segment is swept in 65,536-document partitions. Sparse terms are scored term at a time; dense terms are
    never traversed: their block maxima, summed with integer query weights, bound each document's dense
    part, and only documents whose partial score plus bound reaches the running top-k threshold are
    evaluated, by direct lookups in the dense lists, best bound first. The threshold is shared across
    segments. Without numba, an exact numpy term-at-a-time search gives the same results, more slowly.

Approximate search
    ``max_evaluations=m`` evaluates at most ``m`` candidates per query and segment once the top-k is full (the
    ``k + 32`` best bounds evaluated to fill it count against the budget but are evaluated whatever it is, so
    with a small ``m`` a query evaluates those and stops). Candidates are evaluated
    best bound first, so the budget drops the least promising ones; it bounds the slowest queries (those whose
    many frequent terms leave many candidates). ``approximate=a`` in ``(0, 1]`` evaluates a document only when
    ``a`` times its bound reaches the threshold. Both can miss true top-k documents; every returned score is
    still exact. The numpy path always searches exactly.

    Neither knob makes the pass over the query's postings and block bounds any shorter, so the gain is
    bounded by the share of evaluation in a query. On the workloads of ``benchmarks/bench_sparse.py`` (1M
    documents) ``max_evaluations=800`` kept recall@10 at 0.96 on long queries while cutting p99 from 6.4 to
    3.8 ms, but p50 only by 10%; ``approximate=0.95`` lost 13-22 points of recall for at most 1.3x. There, the
    11th score is a fraction of a percent below the 10th (the benchmark reports these gaps), so any estimate off
    by more than that reorders documents across the cut; use the knobs to bound the slowest queries.

Batches
    ``search(queries, k, threads=t)`` splits a batch of queries into ``t`` contiguous slices searched on
    ``t`` threads (the numba kernels release the GIL; each thread has its own scratch); results do not depend
    on ``t``.

Files
    :meth:`~SparseIndex.save` writes ``sparse.json`` and ``sparse.seg<i>.<array>.npy`` files;
    :meth:`~SparseIndex.load` memory-maps the arrays read-only.
"""

from __future__ import annotations

import copy
import json
import math
import threading
from collections.abc import Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import numpy as np
import scipy.sparse as sp

from ..errors import (
    ConfigError,
    DimensionMismatchError,
    IndexCorruptedError,
    InputError,
    UnknownIdError,
)
from ..types import check_unique_tokens
from .manifest import read_part_header

try:  # the optional ``fast`` extra
    from . import _sparse_kernels as _kernels
except ImportError:  # pragma: no cover - exercised where numba is missing
    _kernels = None  # type: ignore[assignment]

__all__ = ["SparseIndex", "numba_available"]

_FORMAT = "hybridsearch.sparse"
_FORMAT_VERSION = 1
_META_FILE = "sparse.json"
_SB_SHIFT = 16
_CHUNK_SHIFT = 8
_MAX_SEGMENT_DOCS = 2**31 - 1
_NO_BUDGET = 2**62  # max_evaluations when there is none
_N_SELECT_MIN = 32  # a partition's k + this best-bound documents are evaluated at once while the heap fills

Backend = Literal["auto", "numba", "numpy"]

_SEGMENT_ARRAYS = (
    "r_terms", "r_ptr", "r_lo", "r_w", "r_pptr", "r_psb", "r_poff",
    "f_terms", "f_ptr", "f_loc", "f_w", "f_chunk", "f_bmax", "f_scale", "row_ids",
)  # fmt: skip


def numba_available() -> bool:
    """Whether the numba kernels (extra ``fast``) can be used."""
    return _kernels is not None


# ============================================================================ segments
@dataclass(eq=False)
class _Segment:
    """One immutable block of documents (see the module docstring for the layout)."""

    n_docs: int
    row_base: int  # row id of local document 0
    block_shift: int  # dense-term block = 2**block_shift documents
    r_terms: np.ndarray  # int32 (nR,) sorted term ids of sparse terms
    r_ptr: np.ndarray  # int64 (nR+1,) posting ranges
    r_lo: np.ndarray  # uint16 (nnzR,) local id & 0xFFFF
    r_w: np.ndarray  # float32 (nnzR,)
    r_pptr: np.ndarray  # int64 (nR+1,) ranges into the pair arrays; pair arrays are empty when n_docs <= 65,536
    r_psb: np.ndarray  # uint16 (pairs,) local id >> 16
    r_poff: np.ndarray  # uint32 (pairs,) first posting of the pair, relative to r_ptr[term]
    f_terms: np.ndarray  # int32 (nF,) sorted term ids of dense terms
    f_ptr: np.ndarray  # int64 (nF+1,)
    f_loc: np.ndarray  # uint8 (nnzF,) local id & 255
    f_w: np.ndarray  # float32 (nnzF,)
    f_chunk: np.ndarray  # uint32 (nF, chunks+1) first posting of each 256-document chunk, relative to f_ptr
    f_bmax: np.ndarray  # uint8 (nF, blocks) block maximum / f_scale, rounded up; 0 = no posting in the block
    f_scale: np.ndarray  # float32 (nF,)
    row_ids: np.ndarray  # int64 (n_docs,) row id of each local document, or (0,) when rows are contiguous

    def __post_init__(self) -> None:
        # Read-only like the memory maps of a loaded segment: numba compiles a kernel once per array type, and
        # writable arrays are another type, so a segment built in memory (the first add after loading an index)
        # would otherwise pay a second compilation, seconds long, in the middle of serving.
        for name in _SEGMENT_ARRAYS:
            getattr(self, name).flags.writeable = False

    @property
    def nnz(self) -> int:
        return int(self.r_w.shape[0] + self.f_w.shape[0])

    @property
    def nbytes(self) -> int:
        return int(sum(getattr(self, name).nbytes for name in _SEGMENT_ARRAYS))

    @property
    def first_row(self) -> int:
        return int(self.row_ids[0]) if self.row_ids.size else self.row_base

    @property
    def last_row(self) -> int:
        return int(self.row_ids[-1]) if self.row_ids.size else self.row_base + self.n_docs - 1

    def rows(self) -> np.ndarray:
        if self.row_ids.size:
            return np.asarray(self.row_ids, dtype=np.int64)
        return np.arange(self.row_base, self.row_base + self.n_docs, dtype=np.int64)

    def kernel_args(self) -> tuple[np.ndarray, ...]:
        return tuple(getattr(self, name) for name in _SEGMENT_ARRAYS)

    # ------------------------------------------------------------------ decoding (numpy)
    def sparse_postings(self, i: int) -> tuple[np.ndarray, np.ndarray]:
        a, b = int(self.r_ptr[i]), int(self.r_ptr[i + 1])
        if self.r_pptr.size == 0:  # one superblock: no pairs stored
            return np.asarray(self.r_lo[a:b], dtype=np.int64), np.asarray(self.r_w[a:b])
        p0, p1 = int(self.r_pptr[i]), int(self.r_pptr[i + 1])
        starts = np.append(np.asarray(self.r_poff[p0:p1], dtype=np.int64), b - a)
        hi = np.repeat(np.asarray(self.r_psb[p0:p1], dtype=np.int64) << _SB_SHIFT, np.diff(starts))
        return hi | self.r_lo[a:b], np.asarray(self.r_w[a:b])

    def dense_postings(self, i: int) -> tuple[np.ndarray, np.ndarray]:
        a, b = int(self.f_ptr[i]), int(self.f_ptr[i + 1])
        counts = np.diff(np.asarray(self.f_chunk[i], dtype=np.int64))
        hi = np.repeat(np.arange(counts.size, dtype=np.int64) << _CHUNK_SHIFT, counts)
        return hi | self.f_loc[a:b], np.asarray(self.f_w[a:b])

    def postings(self, term: int) -> tuple[np.ndarray, np.ndarray] | None:
        """Local doc ids and weights of ``term`` (``None`` when this segment does not hold it)."""
        i = int(np.searchsorted(self.r_terms, term))
        if i < self.r_terms.size and self.r_terms[i] == term:
            return self.sparse_postings(i)
        i = int(np.searchsorted(self.f_terms, term))
        if i < self.f_terms.size and self.f_terms[i] == term:
            return self.dense_postings(i)
        return None

    def to_csr(self, vocab_size: int) -> sp.csr_matrix:
        """The segment's documents as a CSR matrix (local ids as rows), decoded with array operations only."""
        terms, docs, weights = [], [], []
        if self.r_terms.size:
            lens = np.diff(np.asarray(self.r_ptr, dtype=np.int64))
            lo = np.asarray(self.r_lo, dtype=np.int64)
            if self.r_pptr.size:  # postings carry their 65,536-document superblock in (superblock, offset) pairs
                pair_term = np.repeat(np.arange(self.r_terms.size), np.diff(np.asarray(self.r_pptr, dtype=np.int64)))
                pair_start = np.asarray(self.r_ptr, dtype=np.int64)[pair_term] + np.asarray(self.r_poff, dtype=np.int64)
                pair_of = np.searchsorted(pair_start, np.arange(lo.size), side="right") - 1
                lo = (np.asarray(self.r_psb, dtype=np.int64)[pair_of] << _SB_SHIFT) | lo
            docs.append(lo)
            weights.append(np.asarray(self.r_w))
            terms.append(np.repeat(np.asarray(self.r_terms, dtype=np.int32), lens))
        if self.f_terms.size:
            chunk = np.asarray(self.f_chunk, dtype=np.int64)
            counts = np.diff(chunk, axis=1)
            hi = np.repeat(np.tile(np.arange(counts.shape[1], dtype=np.int64) << _CHUNK_SHIFT, counts.shape[0]), counts.ravel())
            docs.append(hi | np.asarray(self.f_loc, dtype=np.int64))
            weights.append(np.asarray(self.f_w))
            terms.append(np.repeat(np.asarray(self.f_terms, dtype=np.int32), np.diff(np.asarray(self.f_ptr, dtype=np.int64))))
        if not docs:
            return sp.csr_matrix((self.n_docs, vocab_size), dtype=np.float32)
        m = sp.csc_matrix(
            (np.concatenate(weights), (np.concatenate(docs), np.concatenate(terms))),
            shape=(self.n_docs, vocab_size),
            dtype=np.float32,
        )
        return m.tocsr()

    def _to_csr_per_term(self, vocab_size: int) -> sp.csr_matrix:
        """Reference decoding, one term at a time (used by the tests to check :meth:`to_csr`)."""
        terms, docs, weights = [], [], []
        for ids, kind in ((self.r_terms, "r"), (self.f_terms, "f")):
            for i in range(ids.size):
                d, w = self.sparse_postings(i) if kind == "r" else self.dense_postings(i)
                docs.append(d)
                weights.append(w)
                terms.append(np.full(d.size, ids[i], dtype=np.int32))
        if not docs:
            return sp.csr_matrix((self.n_docs, vocab_size), dtype=np.float32)
        return sp.csc_matrix(
            (np.concatenate(weights), (np.concatenate(docs), np.concatenate(terms))),
            shape=(self.n_docs, vocab_size),
            dtype=np.float32,
        ).tocsr()


def _choose_dense(
    df: np.ndarray, n: int, *, block_shift: int, dense_fraction: float, dense_min_docs: int, max_bytes: float
) -> np.ndarray:
    """Which terms to store as dense terms: those in at least ``dense_fraction`` of the documents, most frequent
    first, as long as the segment's estimated size stays within ``max_bytes`` per non-zero.

    A sparse posting costs 6 bytes (plus 6 per 65,536-document range its list touches); a dense one 5, plus
    ``n / block_size`` bytes of block maxima and ``n / 64`` bytes of chunk offsets per term.
    """
    is_dense = np.zeros(df.size, dtype=bool)
    if n < dense_min_docs or n == 0:
        return is_dense
    cand = np.flatnonzero(df >= max(1, math.ceil(dense_fraction * n)))
    cand = cand[np.argsort(-df[cand], kind="stable")]
    n_sb = (n + (1 << _SB_SHIFT) - 1) >> _SB_SHIFT
    present = df > 0
    pairs = 6 * np.minimum(df, n_sb) + 8 * present if n_sb > 1 else 0
    sparse_cost = 6 * df + pairs + 12 * present  # postings, (superblock, offset) pairs, per-term arrays
    dense_cost = 5 * df + ((n + (1 << block_shift) - 1) >> block_shift) + 4 * ((n + 255) // 256 + 1) + 20
    total = float(sparse_cost.sum()) + 8 * n  # row ids when they are not contiguous
    budget = max_bytes * float(df.sum())
    for t in cand.tolist():
        delta = float(dense_cost[t] - sparse_cost[t])
        if delta > 0 and total + delta > budget:
            break
        total += delta
        is_dense[t] = True
    return is_dense


def _build_segment(
    m: sp.csr_matrix,
    rows: np.ndarray,
    *,
    block_shift: int,
    dense_fraction: float,
    dense_min_docs: int,
    max_bytes_per_nnz: float = 7.5,
) -> _Segment:
    """Build a segment from a canonical CSR (sorted, unique, positive float32 weights), vectorised."""
    n, vocab = m.shape
    csc = m.tocsc()
    csc.sort_indices()
    df = np.diff(csc.indptr).astype(np.int64)
    is_dense = _choose_dense(
        df,
        n,
        block_shift=block_shift,
        dense_fraction=dense_fraction,
        dense_min_docs=dense_min_docs,
        max_bytes=max_bytes_per_nnz,
    )
    dense_post = np.repeat(is_dense, df)
    # local ids stay int32 (a segment holds < 2**31 documents): half the memory traffic of int64 below
    docs = csc.indices if csc.indices.dtype == np.int32 else csc.indices.astype(np.int64)
    weights = csc.data.astype(np.float32, copy=False)
    del csc

    # sparse terms
    r_terms = np.flatnonzero((df > 0) & ~is_dense).astype(np.int32)
    r_df = df[r_terms]
    r_ptr = np.zeros(r_terms.size + 1, np.int64)
    np.cumsum(r_df, out=r_ptr[1:])
    sel = ~dense_post
    r_docs = docs[sel]
    r_w = np.ascontiguousarray(weights[sel])
    r_lo = (r_docs & 0xFFFF).astype(np.uint16)
    r_sb = r_docs >> _SB_SHIFT
    del r_docs
    new_pair = np.ones(r_sb.size, dtype=bool)
    if r_sb.size:
        new_pair[1:] = r_sb[1:] != r_sb[:-1]
        new_pair[r_ptr[:-1]] = True
    pair_pos = np.flatnonzero(new_pair)
    del new_pair
    r_psb = r_sb[pair_pos].astype(np.uint16)
    del r_sb
    pair_term = np.searchsorted(r_ptr, pair_pos, side="right") - 1
    r_poff = (pair_pos - r_ptr[pair_term]).astype(np.uint32)
    r_pptr = np.zeros(r_terms.size + 1, np.int64)
    np.cumsum(np.bincount(pair_term, minlength=r_terms.size), out=r_pptr[1:])
    if n <= 1 << _SB_SHIFT:  # one superblock: the pairs say nothing
        r_pptr, r_psb, r_poff = np.zeros(0, np.int64), np.zeros(0, np.uint16), np.zeros(0, np.uint32)
    del pair_pos, pair_term

    # dense terms
    f_terms = np.flatnonzero(is_dense).astype(np.int32)
    nf = f_terms.size
    f_df = df[f_terms]
    f_ptr = np.zeros(nf + 1, np.int64)
    np.cumsum(f_df, out=f_ptr[1:])
    f_docs = docs[dense_post]
    f_w = np.ascontiguousarray(weights[dense_post])
    del docs, weights, dense_post
    f_loc = (f_docs & 255).astype(np.uint8)
    n_chunks = (n + 255) >> _CHUNK_SHIFT
    n_blocks = (n + (1 << block_shift) - 1) >> block_shift
    f_chunk = np.zeros((nf, n_chunks + 1), np.uint32)
    f_bmax = np.zeros((nf, n_blocks), np.uint8)
    f_scale = np.zeros(nf, np.float32)
    if nf:
        fterm = np.repeat(np.arange(nf, dtype=np.int64), f_df)
        counts = np.bincount(fterm * n_chunks + (f_docs >> _CHUNK_SHIFT).astype(np.int64), minlength=nf * n_chunks)
        np.cumsum(counts.reshape(nf, n_chunks), axis=1, out=f_chunk[:, 1:])
        del counts
        bkey = fterm * n_blocks + (f_docs >> block_shift).astype(np.int64)
        del fterm, f_docs
        starts = np.flatnonzero(np.r_[True, bkey[1:] != bkey[:-1]])
        bmax = np.maximum.reduceat(f_w, starts).astype(np.float64)
        tmax = np.maximum.reduceat(f_w, f_ptr[:-1]).astype(np.float64)
        # bound = q * code * scale must never fall below q * weight after float32 rounding: keep 2e-6 of slack
        scale = (tmax * (1 + 1e-5) / 255.0).astype(np.float32)
        f_scale[:] = scale
        keys = bkey[starts]
        code = np.ceil(bmax * (1 + 2e-6) / scale[keys // n_blocks].astype(np.float64))
        f_bmax.reshape(-1)[keys] = np.clip(code, 1, 255).astype(np.uint8)
        del bkey, starts, bmax, keys, code

    rows = np.asarray(rows, dtype=np.int64)
    contiguous = n == 0 or int(rows[-1]) - int(rows[0]) == n - 1
    return _Segment(
        n_docs=n,
        row_base=int(rows[0]) if n else 0,
        block_shift=block_shift,
        r_terms=r_terms,
        r_ptr=r_ptr,
        r_lo=r_lo,
        r_w=r_w,
        r_pptr=r_pptr,
        r_psb=r_psb,
        r_poff=r_poff,
        f_terms=f_terms,
        f_ptr=f_ptr,
        f_loc=f_loc,
        f_w=f_w,
        f_chunk=f_chunk,
        f_bmax=f_bmax,
        f_scale=f_scale,
        row_ids=np.zeros(0, np.int64) if contiguous else rows.copy(),
    )


# ============================================================================ input checks
def _as_csr(x: Any, vocab_size: int, what: str) -> sp.csr_matrix:
    """A canonical CSR view of ``x``: float32 finite non-negative weights, sorted unique indices, no zeros."""
    if not sp.issparse(x):
        raise InputError(f"{what} must be a scipy.sparse matrix (n, {vocab_size}), got {type(x).__name__}")
    if x.ndim != 2:
        raise InputError(f"{what} must be 2-D (n, vocab_size)")
    if x.shape[1] != vocab_size:
        raise DimensionMismatchError(
            f"{what} have {x.shape[1]} columns but this index has a vocabulary of {vocab_size}; "
            "encode them with the encoder the index was built with"
        )
    m = x if x.format == "csr" else sp.csr_matrix(x)
    data = m.data
    if data.size and not np.isfinite(data).all():
        raise InputError(f"{what} weights contain NaN or infinite values")
    if data.size and (data < 0).any():
        row = int(np.searchsorted(m.indptr, int(np.flatnonzero(data < 0)[0]), side="right") - 1)
        raise InputError(f"{what} weights must be non-negative; row {row} has a negative weight")
    canonical = m.has_canonical_format
    if not canonical:
        check_unique_tokens(m, what)  # one rule on every path: a token id twice in a row is an InputError
    if not canonical or data.dtype != np.float32 or (data.size and not data.all()):
        m = sp.csr_matrix(m, dtype=np.float32, copy=True)
        if not canonical:
            m.sum_duplicates()
        m.eliminate_zeros()
    return m


# ============================================================================ scratch buffers
class _Scratch(threading.local):
    """Per-thread work arrays of the numba search (one 65,536-document partition; ``acc`` stays all zeros)."""

    def __init__(self) -> None:
        part = 1 << _SB_SHIFT
        self.acc = np.zeros(part, np.float64)
        self.touched = np.zeros(part, np.int32)
        self.fub = np.zeros(part, np.uint16)
        self.buf_ub = np.zeros(2 * part, np.float32)
        self.buf_d = np.zeros(2 * part, np.int64)
        self.buf_s = np.zeros(2 * part, np.float64)

    @property
    def nbytes(self) -> int:
        return sum(a.nbytes for a in (self.acc, self.touched, self.fub, self.buf_ub, self.buf_d, self.buf_s))


# ============================================================================ the index
class SparseIndex:
    """Inverted index over non-negative sparse vectors with exact (or approximate) top-k dot-product search.

    Tuning keywords (all optional):

    - ``block_size`` (2): documents per block of the dense-term upper bounds, a power of two up to 256.
      Smaller blocks give tighter bounds (fewer candidates to evaluate) but cost ``1 / block_size`` byte per
      document and dense term, and as much bound arithmetic per query.
    - ``dense_fraction`` (1/32): a term whose list covers at least this share of a segment's documents is
      stored as a dense term (bounded by blocks, never traversed at search time), most frequent first, ...
    - ``max_bytes_per_nnz`` (7.5): ... while the segment's estimated size stays within this many bytes per
      non-zero (dense terms cost ``n / block_size`` bytes of bounds each).
    - ``dense_min_docs`` (4096): segments smaller than this keep all terms sparse.
    - ``merge_factor`` (8): this many segments of one size class are merged into one.
    - ``backend`` (``"auto"``): ``"numba"``, ``"numpy"`` (exact term-at-a-time, no numba needed) or ``"auto"``
      (numba when installed).

    >>> import numpy as np, scipy.sparse as sp
    >>> docs = sp.csr_matrix(np.array([[0, 1.0, 0.5], [2.0, 0, 0], [0, 0.5, 0]], dtype=np.float32))
    >>> index = SparseIndex(3)
    >>> index.add(docs, np.arange(3))
    >>> rows, scores = index.search(sp.csr_matrix(np.array([[0, 1.0, 1.0]], dtype=np.float32)), k=2)
    >>> rows.tolist(), scores.tolist()
    ([[0, 2]], [[1.5, 0.5]])
    """

    def __init__(
        self,
        vocab_size: int,
        *,
        block_size: int = 2,
        dense_fraction: float = 1 / 32,
        dense_min_docs: int = 4096,
        max_bytes_per_nnz: float = 7.5,
        merge_factor: int = 8,
        backend: Backend = "auto",
    ) -> None:
        if not isinstance(vocab_size, (int, np.integer)) or isinstance(vocab_size, bool) or vocab_size < 1:
            raise ConfigError(f"vocab_size must be a positive int, got {vocab_size!r}")
        if (
            not isinstance(block_size, (int, np.integer))
            or block_size < 1
            or block_size > 256
            or block_size & (block_size - 1)
        ):
            raise ConfigError(f"block_size must be a power of two between 1 and 256, got {block_size!r}")
        if not 0 < dense_fraction <= 1:
            raise ConfigError(f"dense_fraction must be in (0, 1], got {dense_fraction!r}")
        if not max_bytes_per_nnz > 0:
            raise ConfigError(f"max_bytes_per_nnz must be > 0, got {max_bytes_per_nnz!r}")
        if dense_min_docs < 0:
            raise ConfigError(f"dense_min_docs must be >= 0, got {dense_min_docs!r}")
        if merge_factor < 2:
            raise ConfigError(f"merge_factor must be >= 2, got {merge_factor!r}")
        if backend not in ("auto", "numba", "numpy"):
            raise ConfigError(f"backend must be 'auto', 'numba' or 'numpy', got {backend!r}")
        if backend == "numba" and _kernels is None:
            from .._optional import require

            require("numba", extra="fast")
        self.vocab_size = int(vocab_size)
        self.block_size = int(block_size)
        self.dense_fraction = float(dense_fraction)
        self.dense_min_docs = int(dense_min_docs)
        self.max_bytes_per_nnz = float(max_bytes_per_nnz)
        self.merge_factor = int(merge_factor)
        self.backend: Backend = backend
        self._segments: list[_Segment] = []
        self._scratch = _Scratch()

    # ------------------------------------------------------------------ properties
    @property
    def tuning(self) -> dict[str, Any]:
        return {
            "block_size": self.block_size,
            "dense_fraction": self.dense_fraction,
            "dense_min_docs": self.dense_min_docs,
            "max_bytes_per_nnz": self.max_bytes_per_nnz,
            "merge_factor": self.merge_factor,
        }

    def __len__(self) -> int:
        return sum(s.n_docs for s in self._segments)

    @property
    def nnz(self) -> int:
        return sum(s.nnz for s in self._segments)

    @property
    def nbytes(self) -> int:
        """Bytes of all index arrays (memory-mapped ones included); per-thread search scratch not counted."""
        return sum(s.nbytes for s in self._segments)

    @property
    def scratch_nbytes(self) -> int:
        """Bytes of the calling thread's search work arrays (fixed: about 3.4 MiB)."""
        return self._scratch.nbytes

    @property
    def n_segments(self) -> int:
        return len(self._segments)

    @property
    def last_row(self) -> int:
        """The largest row id stored, or -1 when empty."""
        return self._segments[-1].last_row if self._segments else -1

    def __repr__(self) -> str:
        return (
            f"SparseIndex(rows={len(self)}, nnz={self.nnz}, segments={self.n_segments}, vocab_size={self.vocab_size})"
        )

    def _use_numba(self) -> bool:
        return self.backend != "numpy" and _kernels is not None

    def snapshot(self) -> SparseIndex:
        """A read-only view of the documents held now: it shares the immutable segments (nothing is copied) and is
        unaffected by later :meth:`add` and :meth:`compact` calls. The view must not be changed."""
        view = copy.copy(self)
        view._segments = list(self._segments)
        return view

    def doc_freq(self, terms: np.ndarray, dead: np.ndarray | None = None) -> np.ndarray:
        """Document frequency of each term id in ``terms``: int64, over every segment, minus the documents whose
        row ids are in ``dead`` (sorted int64 row ids, e.g. the index's tombstones)."""
        t = np.asarray(terms, dtype=np.int64)
        out = np.zeros(t.shape, np.int64)
        for seg in self._segments:
            for arr, ptr in ((seg.r_terms, seg.r_ptr), (seg.f_terms, seg.f_ptr)):
                if not arr.size:
                    continue
                i = np.minimum(np.searchsorted(arr, t), arr.size - 1)
                hit = arr[i] == t
                out[hit] += (np.asarray(ptr)[i + 1] - np.asarray(ptr)[i])[hit]
            if dead is not None and dead.size:
                lo, hi = np.searchsorted(dead, [seg.first_row, seg.last_row + 1])
                if hi > lo:
                    seg_dead = dead[lo:hi]
                    rows = seg.rows()
                    local = np.searchsorted(rows, seg_dead)
                    local = local[(local < rows.size) & (rows[np.minimum(local, rows.size - 1)] == seg_dead)]
                    for j, term in enumerate(t.tolist()):
                        p = seg.postings(int(term))
                        if p is not None and local.size:
                            out[j] -= int(np.isin(p[0], local, assume_unique=True).sum())
        return out

    def holds(self, rows: np.ndarray) -> np.ndarray:
        """Bool array shaped like ``rows``: whether each row id is stored (``-1`` padding counts as not stored)."""
        r = np.asarray(rows, dtype=np.int64)
        out = np.zeros(r.shape, bool)
        for seg in self._segments:
            inside = (r >= seg.first_row) & (r <= seg.last_row)
            if inside.any():
                if seg.row_ids.size:
                    ids = np.asarray(seg.row_ids)
                    pos = np.minimum(np.searchsorted(ids, r[inside]), ids.size - 1)
                    out[inside] |= ids[pos] == r[inside]
                else:
                    out[inside] = True
        return out

    # ------------------------------------------------------------------ building
    def add(self, matrix: sp.csr_matrix, rows: np.ndarray) -> None:
        """Append documents ``matrix`` (n, vocab_size) under row ids ``rows`` (strictly increasing, new)."""
        m = _as_csr(matrix, self.vocab_size, "documents")
        rows = self._check_rows(rows, m.shape[0])
        if m.shape[0] == 0:
            return
        for a in range(0, m.shape[0], _MAX_SEGMENT_DOCS):
            b = min(a + _MAX_SEGMENT_DOCS, m.shape[0])
            self._segments.append(self._build(m[a:b] if (a, b) != (0, m.shape[0]) else m, rows[a:b]))
            self._merge_tail()

    def _check_rows(self, rows: Any, n: int) -> np.ndarray:
        r = np.asarray(rows)
        if r.ndim != 1 or r.shape[0] != n:
            raise InputError(f"rows must be a 1-D array of {n} row ids (one per document), got shape {r.shape}")
        if n and not np.issubdtype(r.dtype, np.integer):
            raise InputError(f"rows must be integers, got dtype {r.dtype}")
        r = r.astype(np.int64, copy=False)
        if n and (r[0] < 0 or (n > 1 and (np.diff(r) <= 0).any())):
            raise InputError("rows must be non-negative and strictly increasing")
        if n and r[0] <= self.last_row:
            raise InputError(
                f"rows must be greater than every stored row (the last is {self.last_row}); got {int(r[0])}"
            )
        return r

    def _build(self, m: sp.csr_matrix, rows: np.ndarray) -> _Segment:
        return _build_segment(
            m,
            rows,
            block_shift=int(self.block_size).bit_length() - 1,
            dense_fraction=self.dense_fraction,
            dense_min_docs=self.dense_min_docs,
            max_bytes_per_nnz=self.max_bytes_per_nnz,
        )

    def _size_class(self, seg: _Segment) -> int:
        return int(math.log(max(seg.n_docs, 1024) / 1024, self.merge_factor) + 1e-9)

    def _merge_tail(self) -> None:
        """Merge the newest segments while ``merge_factor`` of them share a size class."""
        f = self.merge_factor
        while len(self._segments) >= f:
            tail = self._segments[-f:]
            if len({self._size_class(s) for s in tail}) != 1:
                break
            del self._segments[-f:]
            self._segments.append(self._merge(tail, None))

    def _merge(self, segs: Sequence[_Segment], alive: np.ndarray | None) -> _Segment:
        mats, rows = [], []
        for s in segs:
            m, r = s.to_csr(self.vocab_size), s.rows()
            if alive is not None:
                keep = alive[r]
                m, r = m[keep], r[keep]
            mats.append(m)
            rows.append(r)
        m = sp.vstack(mats, format="csr") if len(mats) > 1 else mats[0]
        return self._build(sp.csr_matrix(m, dtype=np.float32), np.concatenate(rows))

    def compact(self, alive: np.ndarray | None = None) -> None:
        """Merge all segments into one, physically dropping rows where ``alive[row]`` is False.

        ``alive`` is a bool array indexed by row id; rows at or beyond its end count as dead (the same contract
        as :meth:`DenseIndex.compact` and :meth:`MultiVectorStore.compact`). ``None`` keeps every row.
        """
        if alive is not None:
            alive = np.asarray(alive)
            if alive.dtype != np.bool_ or alive.ndim != 1:
                raise InputError("alive must be a 1-D bool array indexed by row id")
            if alive.shape[0] <= self.last_row:
                alive = np.concatenate([alive, np.zeros(self.last_row + 1 - alive.shape[0], np.bool_)])
        if not self._segments or (len(self._segments) == 1 and alive is None):
            return
        merged = self._merge(self._segments, alive)
        self._segments = [merged] if merged.n_docs else []

    # ------------------------------------------------------------------ search
    def search(
        self,
        queries: sp.csr_matrix,
        k: int,
        *,
        allowed: np.ndarray | None = None,
        approximate: float | None = None,
        max_evaluations: int | None = None,
        threads: int = 1,
    ) -> tuple[np.ndarray, np.ndarray]:
        """Top-``k`` rows by dot product for each query row: ``(rows, scores)``, both ``(n_queries, k)``.

        Rows are sorted by score (descending), ties by row id (ascending); missing hits are ``-1`` / ``-inf``.
        Only documents sharing at least one term with the query are returned. ``allowed`` is a bool mask
        indexed by row id (rows past its end are not allowed), applied before the top-k cut.

        Approximate search (numba backend; both ``None`` = exact; returned scores are always exact):

        - ``approximate`` in ``(0, 1]``: evaluate a candidate only when this fraction of its score bound
          reaches the top-k threshold;
        - ``max_evaluations`` (int >= 1): evaluate at most this many candidates per query and segment, best
          bound first (candidates are evaluated in that order anyway, so this caps the slowest queries); the
          about ``k + 32`` evaluated to fill the top-k are evaluated whatever the budget.

        ``threads`` (>= 1): split a batch of queries over this many threads (the kernels release the GIL);
        results do not depend on it.
        """
        q = _as_csr(queries, self.vocab_size, "queries")
        if isinstance(k, bool) or not isinstance(k, (int, np.integer)) or k <= 0:
            raise InputError(f"k must be a positive int, got {k!r}")
        k = int(k)
        alpha = 1.0
        if approximate is not None:
            if (
                isinstance(approximate, bool)
                or not isinstance(approximate, (int, float, np.integer, np.floating))
                or not 0 < float(approximate) <= 1
            ):
                raise InputError(f"approximate must be in (0, 1] (1 = exact), got {approximate!r}")
            alpha = float(approximate)
        max_eval = _NO_BUDGET
        if max_evaluations is not None:
            if isinstance(max_evaluations, bool) or not isinstance(max_evaluations, (int, np.integer)):
                raise InputError(f"max_evaluations must be a positive int or None, got {max_evaluations!r}")
            if max_evaluations < 1:
                raise InputError(f"max_evaluations must be >= 1, got {max_evaluations!r}")
            max_eval = int(max_evaluations)
        if isinstance(threads, bool) or not isinstance(threads, (int, np.integer)) or threads < 1:
            raise InputError(f"threads must be a positive int, got {threads!r}")
        if allowed is not None:
            allowed = np.asarray(allowed)
            if allowed.dtype != np.bool_ or allowed.ndim != 1:
                raise InputError("allowed must be a 1-D bool array indexed by row id")
        if not self._use_numba():
            return self._search_numpy(q, k, allowed)
        nq = q.shape[0]
        threads = min(int(threads), nq)
        if threads <= 1:
            rows, scores, self._last_stats = self._search_numba(q, k, allowed, alpha, max_eval)
            return rows, scores
        # contiguous slices of queries, one per thread; each thread has its own scratch (threading.local)
        cuts = np.linspace(0, nq, threads + 1).astype(int).tolist()
        with ThreadPoolExecutor(max_workers=threads - 1) as pool:
            futures = [
                pool.submit(self._search_numba, q[a:b], k, allowed, alpha, max_eval)
                for a, b in zip(cuts[1:-1], cuts[2:], strict=True)
            ]
            first = self._search_numba(q[cuts[0] : cuts[1]], k, allowed, alpha, max_eval)
            parts = [first] + [f.result() for f in futures]
        self._last_stats = np.concatenate([p[2] for p in parts])
        return np.concatenate([p[0] for p in parts]), np.concatenate([p[1] for p in parts])

    def _search_numba(
        self, q: sp.csr_matrix, k: int, allowed: np.ndarray | None, alpha: float, max_eval: int
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        nq = q.shape[0]
        heap_s = np.full((nq, k), -np.inf, np.float32)
        heap_r = np.full((nq, k), -1, np.int64)
        heap_n = np.zeros(nq, np.int64)
        q_indptr = q.indptr.astype(np.int64, copy=False)
        q_indices = q.indices.astype(np.int64, copy=False)
        q_data = q.data
        use_allowed = allowed is not None
        allowed_arr = allowed if allowed is not None else np.zeros(0, np.bool_)
        scratch = self._scratch
        n_select = k + _N_SELECT_MIN
        stats = np.zeros((nq, 3), np.int64)
        for seg in sorted(self._segments, key=lambda s: -s.n_docs):
            _kernels.search_segment(
                q_indptr, q_indices, q_data, k, alpha, seg.kernel_args(), seg.n_docs, seg.row_base,
                seg.block_shift, allowed_arr, use_allowed, heap_s, heap_r, heap_n,
                scratch.acc, scratch.touched, scratch.fub, scratch.buf_ub, scratch.buf_d, scratch.buf_s, n_select, k,
                max_eval, stats,
            )  # fmt: skip
        # final scores in term order, as queries @ docs.T sums them
        rows = heap_r
        scores = np.full((nq, k), -np.inf, np.float32)
        for seg in self._segments:
            _kernels.score_segment(
                q_indptr, q_indices, q_data, rows, scores, seg.kernel_args(), seg.n_docs, seg.row_base, seg.block_shift
            )
        _kernels.sort_hits(rows, scores)
        return rows, scores, stats

    def _search_numpy(self, q: sp.csr_matrix, k: int, allowed: np.ndarray | None) -> tuple[np.ndarray, np.ndarray]:
        nq = q.shape[0]
        out_rows = np.full((nq, k), -1, np.int64)
        out_scores = np.full((nq, k), -np.inf, np.float32)
        for qi in range(nq):
            terms = q.indices[q.indptr[qi] : q.indptr[qi + 1]]
            weights = q.data[q.indptr[qi] : q.indptr[qi + 1]]
            pool_s, pool_r = [], []
            for seg in self._segments:
                acc = np.zeros(seg.n_docs, np.float64)
                for t, w in zip(terms.tolist(), weights.astype(np.float64), strict=True):
                    p = seg.postings(t)
                    if p is not None:
                        acc[p[0]] += w * p[1]
                cand = np.flatnonzero(acc > 0)
                scores = acc.astype(np.float32)
                rows = seg.rows()[cand]
                if allowed is not None:
                    ok = rows < allowed.shape[0]
                    ok[ok] = allowed[rows[ok]]
                    cand, rows = cand[ok], rows[ok]
                s = scores[cand]
                if s.size > k:
                    top = np.argpartition(-s, k - 1)[:k]
                    kth = s[top].min()
                    keep = s >= kth  # keep ties at the cut so that lower row ids win
                    s, rows = s[keep], rows[keep]
                pool_s.append(s)
                pool_r.append(rows)
            if not pool_s:
                continue
            s, r = np.concatenate(pool_s), np.concatenate(pool_r)
            order = np.lexsort((r, -s))[:k]
            out_rows[qi, : order.size] = r[order]
            out_scores[qi, : order.size] = s[order]
        return out_rows, out_scores

    # ------------------------------------------------------------------ exact scores
    def score(self, queries: sp.csr_matrix, rows: np.ndarray) -> np.ndarray:
        """Exact dot products ``(n_queries, m)`` of each query with candidate ``rows``.

        ``rows`` is ``(m,)`` (the same rows for every query) or ``(n_queries, m)``. A ``-1`` row scores
        ``-inf``; a row id this index does not hold (never added, or dropped by :meth:`compact`) raises
        :class:`UnknownIdError`, as in the dense and multi-vector parts. A stored row sharing no term scores ``0``.
        """
        q = _as_csr(queries, self.vocab_size, "queries")
        nq = q.shape[0]
        r = np.asarray(rows)
        if r.size and not np.issubdtype(r.dtype, np.integer):
            raise InputError(f"rows must be integers, got dtype {r.dtype}")
        r = r.astype(np.int64, copy=False)
        if r.ndim == 1:
            r = np.broadcast_to(r, (nq, r.shape[0]))
        if r.ndim != 2 or r.shape[0] != nq:
            raise InputError(f"rows must be (m,) or (n_queries={nq}, m), got shape {np.shape(rows)}")
        r = np.ascontiguousarray(r)
        if (r < -1).any():
            raise InputError("rows may only hold row ids and -1 for padding")
        unknown = (r >= 0) & ~self.holds(r)
        if unknown.any():
            raise UnknownIdError(f"row {int(r[unknown][0])} is not in the sparse index")
        out = np.zeros(r.shape, np.float32)
        if self._use_numba():
            q_indptr = q.indptr.astype(np.int64, copy=False)
            q_indices = q.indices.astype(np.int64, copy=False)
            for seg in self._segments:
                _kernels.score_segment(
                    q_indptr, q_indices, q.data, r, out, seg.kernel_args(), seg.n_docs, seg.row_base, seg.block_shift
                )
        else:
            self._score_numpy(q, r, out)
        out[r == -1] = -np.inf
        return out

    def _score_numpy(self, q: sp.csr_matrix, r: np.ndarray, out: np.ndarray) -> None:
        for seg in self._segments:
            seg_rows = seg.rows()
            for qi in range(q.shape[0]):
                rr = r[qi]
                pos = np.searchsorted(seg_rows, rr)
                pos_c = np.minimum(pos, max(seg.n_docs - 1, 0))
                inside = (pos < seg.n_docs) & (seg_rows[pos_c] == rr) if seg.n_docs else np.zeros(rr.shape, bool)
                if not inside.any():
                    continue
                local = pos[inside]
                s = np.zeros(local.size, np.float64)
                for j in range(q.indptr[qi], q.indptr[qi + 1]):
                    p = seg.postings(int(q.indices[j]))
                    if p is None:
                        continue
                    docs, w = p
                    at = np.minimum(np.searchsorted(docs, local), max(docs.size - 1, 0))
                    hit = docs[at] == local
                    s[hit] += np.float64(q.data[j]) * w[at[hit]]
                out[qi, inside] = s.astype(np.float32)

    def iter_rows(self) -> Iterator[tuple[np.ndarray, sp.csr_matrix]]:
        """The stored documents segment by segment, in ascending row order: ``(rows int64 (m,), CSR (m, vocab_size))``.

        Rows dropped by :meth:`compact` are absent; tombstones of the caller are not known here.
        """
        for seg in self._segments:
            yield seg.rows(), seg.to_csr(self.vocab_size)

    # ------------------------------------------------------------------ persistence
    def save(self, directory: Path) -> list[str]:
        """Write ``sparse.json`` and one ``.npy`` per array into the existing ``directory``; returns the names."""
        directory = Path(directory)
        if not directory.is_dir():
            raise InputError(f"{directory} is not an existing directory")
        names: list[str] = []
        segs_meta = []
        for i, seg in enumerate(self._segments):
            for name in _SEGMENT_ARRAYS:
                fname = f"sparse.seg{i}.{name}.npy"
                np.save(directory / fname, np.asarray(getattr(seg, name)), allow_pickle=False)
                names.append(fname)
            segs_meta.append(
                {"n_docs": seg.n_docs, "row_base": seg.row_base, "block_shift": seg.block_shift, "nnz": seg.nnz}
            )
        meta = {
            "format": _FORMAT,
            "version": _FORMAT_VERSION,
            "vocab_size": self.vocab_size,
            "tuning": self.tuning,
            "segments": segs_meta,
        }
        (directory / _META_FILE).write_text(json.dumps(meta, indent=1), encoding="utf-8")
        names.append(_META_FILE)
        return names

    @classmethod
    def load(cls, directory: Path, *, mmap: bool = True, backend: Backend = "auto") -> SparseIndex:
        """Read an index written by :meth:`save`; ``mmap`` maps the arrays read-only instead of reading them."""
        directory = Path(directory)
        meta = read_part_header(directory / _META_FILE, fmt=_FORMAT, version=_FORMAT_VERSION, what="sparse index")
        try:
            index = cls(int(meta["vocab_size"]), backend=backend, **meta["tuning"])
            for i, sm in enumerate(meta["segments"]):
                arrays = {}
                for name in _SEGMENT_ARRAYS:
                    path = directory / f"sparse.seg{i}.{name}.npy"
                    if not path.exists():
                        raise IndexCorruptedError(f"{path} is missing")
                    arrays[name] = np.load(path, mmap_mode="r" if mmap else None, allow_pickle=False)
                seg = _Segment(
                    n_docs=int(sm["n_docs"]), row_base=int(sm["row_base"]), block_shift=int(sm["block_shift"]), **arrays
                )
                _validate_segment(seg, path.parent)
                index._segments.append(seg)
        except (KeyError, TypeError) as exc:
            raise IndexCorruptedError(f"{directory / _META_FILE} is incomplete: {exc}") from exc
        except ValueError as exc:
            if isinstance(exc, (InputError, ConfigError)):
                raise IndexCorruptedError(f"{directory / _META_FILE} has invalid settings: {exc}") from exc
            raise IndexCorruptedError(f"{directory} holds an unreadable array: {exc}") from exc
        return index


def _validate_segment(seg: _Segment, where: Path) -> None:
    """Cheap consistency checks of a loaded segment (sizes and dtypes), so that kernels never read out of bounds."""
    expect = {
        "r_terms": np.int32, "r_ptr": np.int64, "r_lo": np.uint16, "r_w": np.float32, "r_pptr": np.int64,
        "r_psb": np.uint16, "r_poff": np.uint32, "f_terms": np.int32, "f_ptr": np.int64, "f_loc": np.uint8,
        "f_w": np.float32, "f_chunk": np.uint32, "f_bmax": np.uint8, "f_scale": np.float32,
        "row_ids": np.int64,
    }  # fmt: skip
    for name, dt in expect.items():
        if getattr(seg, name).dtype != dt:
            raise IndexCorruptedError(
                f"{where}: array {name} has dtype {getattr(seg, name).dtype}, expected {np.dtype(dt)}"
            )
    nr, nf = seg.r_terms.size, seg.f_terms.size
    n_chunks = (seg.n_docs + 255) >> _CHUNK_SHIFT
    n_blocks = (seg.n_docs + (1 << seg.block_shift) - 1) >> seg.block_shift
    ok = (
        seg.r_ptr.shape == (nr + 1,)
        and (seg.r_pptr.shape == (nr + 1,) or (seg.r_pptr.size == 0 and seg.n_docs <= 1 << _SB_SHIFT))
        and int(seg.r_ptr[-1]) == seg.r_lo.size == seg.r_w.size
        and (int(seg.r_pptr[-1]) if seg.r_pptr.size else 0) == seg.r_psb.size == seg.r_poff.size
        and seg.f_ptr.shape == (nf + 1,)
        and int(seg.f_ptr[-1]) == seg.f_loc.size == seg.f_w.size
        and seg.f_chunk.shape == (nf, n_chunks + 1)
        and seg.f_bmax.shape == (nf, n_blocks)
        and seg.f_scale.shape == (nf,)
        and seg.row_ids.size in (0, seg.n_docs)
    )
    if not ok:
        raise IndexCorruptedError(
            f"{where}: the arrays of a sparse segment have inconsistent sizes (truncated or mixed files)"
        )
