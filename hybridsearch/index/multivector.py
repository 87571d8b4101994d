"""A compressed, memory-mapped store of multi-vector (ColBERT) token vectors, scored by MaxSim over candidates.

The store is a reranker, not a first-stage index: dense or sparse retrieval proposes candidate rows, and
:meth:`MultiVectorStore.maxsim` scores them with ``s(q, d) = (1/N_q) Σ_i max_j q_i · d_j``.

Queries stay float32; documents are stored compressed (asymmetric scoring):

- ``"fp32"`` / ``"fp16"``: the vectors as given, 4 or 2 bytes per dimension;
- ``"int8"``: symmetric per-vector scale ``s = max|x| / 127``, ``x ≈ s · round(x / s)``: ``dim + 4`` bytes per token;
- ``"binary"``: one sign bit per dimension, packed (``np.packbits``, big bit order): ``dim / 8`` bytes per token,
  32 KB for a 256-token bge-m3 passage. A token decodes to ``c · sign(x)`` with the fixed scale
  ``c = sqrt(π / (2 · dim))``. For a unit vector with Gaussian-like coordinates ``x · sign(x) = ||x||_1 ≈
  sqrt(2 · dim / π)``, so ``q · c·sign(x)`` is an approximately unbiased estimate of ``q · x``: binary scores stay on the scale
  of float MaxSim (which weighted fusion needs) without a per-token scale. (The least-squares reconstruction scale,
  ``||x||_1 / dim``, would shrink every score by ``2 / π``.) A zero component counts as negative.

``pool_factor > 1`` pools each document's tokens before compression: Ward hierarchical clustering of the token
vectors, cut at exactly ``ceil(n / pool_factor)`` clusters, each replaced by its re-normalised mean (token pooling,
arXiv 2409.14683).

Rows are global int64 ids chosen by the caller, strictly increasing across :meth:`~MultiVectorStore.add` calls.
A store saves to plain ``.npy`` files plus ``multivector.json`` and loads with ``np.load(mmap_mode="r")``, so the
token codes stay on disk and only the candidates' pages are read. A document with no token vectors scores ``0.0``
(FlagEmbedding's ``colbert_score`` gives 0 there too: padded positions are zero vectors); padding (``-1``) and rows
that are not stored score ``-inf``.
"""

from __future__ import annotations

import copy
import json
import math
import os
from pathlib import Path
from typing import Any, Literal

import numpy as np

from ..errors import (
    ConfigError,
    DimensionMismatchError,
    DuplicateIdError,
    IndexCorruptedError,
    InputError,
    UnknownIdError,
)
from ..types import MultiVectors
from .manifest import read_part_header

__all__ = [
    "COMPRESSIONS",
    "DEFAULT_COMPRESSION",
    "Compression",
    "MultiVectorStore",
    "binary_scale",
    "maxsim",
    "pool_tokens",
]

Compression = Literal["fp32", "fp16", "int8", "binary"]
COMPRESSIONS: tuple[str, ...] = ("fp32", "fp16", "int8", "binary")
DEFAULT_COMPRESSION: Compression = "binary"
FORMAT = "hybridsearch.multivector"
FORMAT_VERSION = 1
PARAMS_FILE = "multivector.json"
_FILES = {
    "rows": "multivector.rows.npy",
    "offsets": "multivector.offsets.npy",
    "codes": "multivector.codes.npy",
    "scales": "multivector.scales.npy",
}
_CHUNK_TOKENS = 8192  # bound on the decoded float32 block scored at once (32 MB at 1024-d)
_CODE_DTYPES = {
    "fp32": np.dtype(np.float32),
    "fp16": np.dtype(np.float16),
    "int8": np.dtype(np.int8),
    "binary": np.dtype(np.uint8),
}
# _SIGNS[v] = the 8 signs (+1 / -1) that byte v encodes, most significant bit first (np.packbits' order).
_SIGNS = (((np.arange(256)[:, None] >> np.arange(7, -1, -1)) & 1) * 2 - 1).astype(np.float32)


def maxsim(query: np.ndarray, doc: np.ndarray) -> float:
    """MaxSim of one ``(n_q, d)`` query against one ``(n_d, d)`` document in float32; ``0.0`` for an empty document."""
    q = np.asarray(query, dtype=np.float32)
    d = np.asarray(doc, dtype=np.float32)
    if d.shape[0] == 0:
        return 0.0
    return float((q @ d.T).max(axis=1).mean())


def binary_scale(dim: int) -> float:
    """The decode scale of a sign bit, ``sqrt(π / (2 · dim))``: ``q · scale·sign(x)`` estimates ``q · x`` unbiasedly."""
    return math.sqrt(math.pi / (2.0 * dim))


def pool_tokens(vectors: np.ndarray, pool_factor: int) -> np.ndarray:
    """Pool ``(n, d)`` token vectors into ``ceil(n / pool_factor)`` re-normalised cluster means (float32).

    Clusters come from Ward linkage, cut after the first ``n - k`` merges, so the count is exact even with ties.
    """
    x = np.asarray(vectors, dtype=np.float32)
    n = x.shape[0]
    k = -(-n // pool_factor)
    if pool_factor <= 1 or k >= n:
        return np.array(x, dtype=np.float32)
    from scipy.cluster.hierarchy import linkage

    # Euclidean distances from one float32 Gram matmul: several times faster than scipy's pdist at 1024-d.
    sq = np.einsum("ij,ij->i", x, x)
    d2 = np.maximum(sq[:, None] + sq[None, :] - 2.0 * (x @ x.T), 0.0)
    condensed = np.sqrt(d2[np.triu_indices(n, 1)].astype(np.float64))
    merges = linkage(condensed, method="ward")[: n - k, :2].astype(np.intp)
    parent = np.arange(2 * n - 1)
    parent[merges[:, 0]] = n + np.arange(n - k)
    parent[merges[:, 1]] = n + np.arange(n - k)
    while True:  # pointer jumping: every leaf ends at the root of its cluster
        nxt = parent[parent]
        if np.array_equal(nxt, parent):
            break
        parent = nxt
    _, labels = np.unique(parent[:n], return_inverse=True)
    order = np.argsort(labels, kind="stable")
    starts = np.searchsorted(labels[order], np.arange(k))
    sums = np.add.reduceat(x[order], starts, axis=0)
    norms = np.linalg.norm(sums, axis=1, keepdims=True)
    return (sums / np.maximum(norms, 1e-12)).astype(np.float32)


# ----------------------------------------------------------------------------------------------- kernels
def _segment_max_mean(scores: np.ndarray, lens: np.ndarray) -> np.ndarray:
    """Per document (consecutive ``lens`` rows of ``scores``): max over its tokens, mean over query tokens."""
    out = np.zeros(lens.shape[0], np.float32)
    nonempty = lens > 0
    if nonempty.any():
        starts = np.concatenate([[0], np.cumsum(lens)[:-1]])[nonempty]
        out[nonempty] = np.maximum.reduceat(scores, starts, axis=0).mean(axis=1)
    return out


def _binary_lut(q: np.ndarray, scale: float) -> np.ndarray:
    """``lut[b, v, i]`` = scale · (query token ``i``'s dims ``8b..8b+7``) · (the 8 signs byte ``v`` encodes).

    Built once per query with one small matmul: ``(n_q · d/8, 8) @ (8, 256)``; 4 MB for 32 tokens at 1024-d.
    """
    nq, d = q.shape
    nb = -(-d // 8)
    qp = np.zeros((nq, nb * 8), np.float32)
    qp[:, :d] = q * np.float32(scale)
    lut = (qp.reshape(nq * nb, 8) @ _SIGNS.T).reshape(nq, nb, 256)
    return np.ascontiguousarray(lut.transpose(1, 2, 0))


def _binary_scores_numpy(codes: np.ndarray, lens: np.ndarray, lut: np.ndarray) -> np.ndarray:
    """Binary MaxSim with numpy lookup tables: one gather-and-add of ``(T, n_q)`` partial sums per byte position.

    The fallback when numba is missing: a few times slower than the compiled kernel, faster than unpacking bits.
    """
    acc = np.zeros((codes.shape[0], lut.shape[2]), np.float32)
    for b in range(codes.shape[1]):
        acc += lut[b][codes[:, b]]
    return _segment_max_mean(acc, lens)


_NUMBA_KERNEL: Any = None


def _numba_kernel() -> Any:
    """The compiled lookup-table kernel, or ``False`` when numba is not installed (extra ``fast``)."""
    global _NUMBA_KERNEL
    if _NUMBA_KERNEL is None:
        try:
            import numba
        except ImportError:
            _NUMBA_KERNEL = False
            return _NUMBA_KERNEL

        @numba.njit(cache=True, nogil=True)
        def kernel(codes, lens, lut, out):  # pragma: no cover - compiled
            # Byte position outermost within a document: lut[b] (256 x n_q floats) stays in L1 while every
            # token of the document adds its entry; the per-document accumulator is n_tokens x n_q floats.
            nb, _, nq = lut.shape
            start = 0
            for j in range(lens.shape[0]):
                n = lens[j]
                if n == 0:
                    out[j] = 0.0
                    continue
                acc = np.zeros((n, nq), np.float32)
                for b in range(nb):
                    lut_b = lut[b]
                    for t in range(n):
                        row = lut_b[codes[start + t, b]]
                        acc_t = acc[t]
                        for i in range(nq):
                            acc_t[i] += row[i]
                total = 0.0
                for i in range(nq):
                    best = acc[0, i]
                    for t in range(1, n):
                        if acc[t, i] > best:
                            best = acc[t, i]
                    total += best
                out[j] = total / nq
                start += n

        _NUMBA_KERNEL = kernel
    return _NUMBA_KERNEL


def _binary_scores_lut(codes: np.ndarray, lens: np.ndarray, lut: np.ndarray) -> np.ndarray:
    """Binary MaxSim with per-byte lookup tables (numba): 256 partial dot products per query token and byte."""
    kernel = _numba_kernel()
    out = np.empty(lens.shape[0], np.float32)
    kernel(np.ascontiguousarray(codes), lens.astype(np.int64), lut, out)
    return out


# ------------------------------------------------------------------------------------------------- store
class MultiVectorStore:
    """Compressed token vectors of many documents, keyed by caller-assigned int64 rows, scored by MaxSim.

    >>> import numpy as np
    >>> from hybridsearch.types import MultiVectors
    >>> rng = np.random.default_rng(0)
    >>> unit = lambda a: a / np.linalg.norm(a, axis=1, keepdims=True)
    >>> store = MultiVectorStore(64, compression="int8")
    >>> store.add(MultiVectors.from_list([unit(rng.normal(size=(5, 64))) for _ in range(3)]), np.array([10, 11, 12]))
    >>> q = MultiVectors.from_list([unit(rng.normal(size=(4, 64)))])
    >>> store.maxsim(q, np.array([[12, 10, -1]])).shape
    (1, 3)
    """

    def __init__(self, dim: int, *, compression: Compression = DEFAULT_COMPRESSION, pool_factor: int = 1) -> None:
        if isinstance(dim, bool) or not isinstance(dim, (int, np.integer)) or dim <= 0:
            raise ConfigError(f"dim must be a positive integer, got {dim!r}")
        if compression not in COMPRESSIONS:
            raise ConfigError(f"unknown compression {compression!r}; expected one of: {', '.join(COMPRESSIONS)}")
        if isinstance(pool_factor, bool) or not isinstance(pool_factor, (int, np.integer)) or pool_factor < 1:
            raise ConfigError(f"pool_factor must be an integer >= 1 (1 = no pooling), got {pool_factor!r}")
        self.dim = int(dim)
        self.compression: Compression = compression
        self.pool_factor = int(pool_factor)
        self._width = -(-self.dim // 8) if compression == "binary" else self.dim
        self._scale = binary_scale(self.dim)
        self._rows = np.zeros(0, np.int64)
        self._offsets = np.zeros(1, np.int64)  # token offsets over the concatenation of all segments
        # Segments: (first global token, codes, scales or None). Loaded segments are np.memmap.
        self._segments: list[tuple[int, np.ndarray, np.ndarray | None]] = []

    # ------------------------------------------------------------------ basics
    def __len__(self) -> int:
        return int(self._rows.size)

    def __repr__(self) -> str:
        return (
            f"MultiVectorStore(dim={self.dim}, compression={self.compression!r}, pool_factor={self.pool_factor}, "
            f"rows={len(self)}, tokens={self.n_tokens})"
        )

    @property
    def rows(self) -> np.ndarray:
        """The stored row ids, increasing (a copy)."""
        return self._rows.copy()

    @property
    def n_tokens(self) -> int:
        """Stored token vectors (after pooling)."""
        return int(self._offsets[-1])

    @property
    def nbytes(self) -> int:
        """Bytes of all arrays the store holds: codes, scales, row ids and offsets (on disk when memory-mapped)."""
        total = self._rows.nbytes + self._offsets.nbytes
        for _, codes, scales in self._segments:
            total += codes.nbytes + (0 if scales is None else scales.nbytes)
        return int(total)

    def bytes_per_token(self) -> int:
        """Stored bytes per token vector: codes plus the int8 per-vector scale."""
        return self._width * _CODE_DTYPES[self.compression].itemsize + (4 if self.compression == "int8" else 0)

    def bytes_per_passage(self, n_tokens: int = 256) -> float:
        """Token-vector bytes of one ``n_tokens`` passage after pooling (the 16 B row id + offset not included)."""
        if n_tokens < 0:
            raise InputError(f"n_tokens must be >= 0, got {n_tokens}")
        return float(-(-int(n_tokens) // self.pool_factor) * self.bytes_per_token())

    # ------------------------------------------------------------------ encoding
    def _encode(self, x: np.ndarray) -> tuple[np.ndarray, np.ndarray | None]:
        """Compress ``(T, dim)`` float vectors into this store's codes (and int8 scales)."""
        if self.compression in ("fp32", "fp16"):  # a copy: the caller may reuse its buffer
            return np.array(x, dtype=_CODE_DTYPES[self.compression], order="C", copy=True), None
        if self.compression == "int8":
            xf = np.asarray(x, dtype=np.float32)
            scales = np.abs(xf).max(axis=1) / np.float32(127.0) if xf.shape[0] else np.zeros(0, np.float32)
            scales = np.where(scales > 0, scales, np.float32(1.0)).astype(np.float32)
            codes = np.clip(np.rint(xf / scales[:, None]), -127, 127).astype(np.int8)
            return codes, scales
        return np.packbits(np.asarray(x) > 0, axis=1).reshape(-1, self._width), None

    def _decode(self, codes: np.ndarray, scales: np.ndarray | None) -> np.ndarray:
        """Float32 ``(T, dim)`` vectors that the scores are computed against."""
        if self.compression == "binary":
            return _SIGNS[codes].reshape(codes.shape[0], self._width * 8)[:, : self.dim] * np.float32(self._scale)
        x = np.asarray(codes, dtype=np.float32)
        return x * scales[:, None] if scales is not None else x

    # ------------------------------------------------------------------ writes
    def _check_rows(self, rows: Any, n: int) -> np.ndarray:
        r = np.asarray(rows)
        if r.ndim != 1 or r.shape[0] != n:
            raise InputError(f"rows must be a 1-D array with one id per document ({n}), got shape {r.shape}")
        if n and (r.dtype == bool or not np.issubdtype(r.dtype, np.integer)):
            raise InputError(f"rows must be integers (int64 row ids), got dtype {r.dtype}")
        r = r.astype(np.int64)
        if n and r.min() < 0:
            raise InputError(f"row ids must be >= 0, got {int(r.min())}")
        if n > 1 and (np.diff(r) <= 0).any():
            i = int(np.flatnonzero(np.diff(r) <= 0)[0])
            if r[i] == r[i + 1]:
                raise DuplicateIdError(f"row id {int(r[i])} appears twice in one add() call")
            raise InputError(f"rows must be strictly increasing; got {int(r[i])} then {int(r[i + 1])}")
        if n and len(self) and r[0] <= self._rows[-1]:
            if np.isin(r[0], self._rows):
                raise DuplicateIdError(f"row id {int(r[0])} is already stored")
            raise InputError(f"rows must increase across add() calls: got {int(r[0])} after {int(self._rows[-1])}")
        return r

    def _check_multivectors(self, mv: Any, what: str) -> MultiVectors:
        if not isinstance(mv, MultiVectors):
            raise InputError(
                f"{what} must be a MultiVectors (use MultiVectors.from_list(arrays)), got {type(mv).__name__}"
            )
        if mv.vectors.shape[0] and mv.dim != self.dim:
            raise DimensionMismatchError(f"{what} have {mv.dim} dimensions but this store holds {self.dim}-d vectors")
        if mv.vectors.size and not np.isfinite(mv.vectors).all():
            raise InputError(f"{what} contain NaN or infinite values; clean the vectors first")
        return mv

    def add(self, multivectors: MultiVectors, rows: np.ndarray) -> None:
        """Store the token vectors of ``len(multivectors)`` documents under ``rows`` (int64, strictly increasing).

        Nothing changes when this raises.
        """
        mv = self._check_multivectors(multivectors, "multivectors")
        r = self._check_rows(rows, len(mv))
        if r.size == 0:
            return
        if self.pool_factor > 1:
            mats = [pool_tokens(mv[i], self.pool_factor) for i in range(len(mv))]
            lens = np.array([m.shape[0] for m in mats], np.int64)
            flat = np.concatenate(mats) if lens.sum() else np.zeros((0, self.dim), np.float32)
        else:
            lens, flat = mv.lengths, mv.vectors
        codes, scales = self._encode(flat.reshape(-1, self.dim))
        base = self.n_tokens
        offsets = np.concatenate([self._offsets, base + np.cumsum(lens)])
        # commit: nothing above touched the store
        if codes.shape[0]:
            self._segments.append((base, codes, scales))
        self._offsets = offsets
        self._rows = np.concatenate([self._rows, r])

    def _positions(self, rows: np.ndarray) -> np.ndarray:
        """Index into the stored rows for each id, ``-1`` where the id is not stored."""
        if not len(self):
            return np.full(rows.shape, -1, np.int64)
        pos = np.minimum(np.searchsorted(self._rows, rows), len(self) - 1)
        return np.where(self._rows[pos] == rows, pos, -1)

    def _gather(self, docs: np.ndarray) -> tuple[np.ndarray, np.ndarray | None, np.ndarray]:
        """Codes, scales and token counts of stored documents ``docs`` (positions), in that order."""
        starts, lens = self._offsets[docs], self._offsets[docs + 1] - self._offsets[docs]
        total = int(lens.sum())
        dtype = _CODE_DTYPES[self.compression]
        if total == 0:
            return np.zeros((0, self._width), dtype), np.zeros(0, np.float32), lens
        idx = np.repeat(starts - np.cumsum(lens) + lens, lens) + np.arange(total)
        if len(self._segments) == 1:
            base, codes, scales = self._segments[0]
            return codes[idx - base], None if scales is None else scales[idx - base], lens
        bases = np.array([s[0] for s in self._segments], np.int64)
        seg = np.searchsorted(bases, idx, side="right") - 1
        out = np.empty((total, self._width), dtype)
        out_scales = np.empty(total, np.float32) if self.compression == "int8" else None
        for s in np.unique(seg):
            at = np.flatnonzero(seg == s)
            base, codes, scales = self._segments[int(s)]
            out[at] = codes[idx[at] - base]
            if out_scales is not None and scales is not None:
                out_scales[at] = scales[idx[at] - base]
        return out, out_scales, lens

    def snapshot(self) -> MultiVectorStore:
        """A read-only view of the documents held now, sharing the immutable code blocks (nothing is copied) and
        unaffected by later :meth:`add` and :meth:`compact` calls. The view must not be changed."""
        view = copy.copy(self)
        view._segments = list(self._segments)
        return view

    # ------------------------------------------------------------------ reads
    def get(self, row: int) -> np.ndarray:
        """The stored vectors of ``row``, decoded to float32 ``(n_tokens, dim)`` (after pooling and compression)."""
        ok = isinstance(row, (int, np.integer)) and not isinstance(row, bool) and 0 <= row < 2**63
        pos = int(self._positions(np.array([row], np.int64))[0]) if ok else -1
        if pos < 0:
            raise UnknownIdError(f"row {row!r} is not in this multi-vector store")
        codes, scales, _ = self._gather(np.array([pos]))
        return self._decode(codes, scales)

    def get_many(self, rows: np.ndarray) -> MultiVectors:
        """The stored vectors of ``rows`` decoded to float32, as :class:`MultiVectors` in that order."""
        r = np.asarray(rows, dtype=np.int64).reshape(-1)
        pos = self._positions(r)
        if (pos < 0).any():
            raise UnknownIdError(f"row {int(r[pos < 0][0])} is not in this multi-vector store")
        codes, scales, lens = self._gather(pos)
        offsets = np.zeros(r.size + 1, np.int64)
        np.cumsum(lens, out=offsets[1:])
        return MultiVectors(np.asarray(self._decode(codes, scales), dtype=np.float32).reshape(-1, self.dim), offsets)

    def maxsim(self, queries: MultiVectors, rows: np.ndarray) -> np.ndarray:
        """MaxSim scores of candidate rows: float32 ``(n_queries, m)`` for ``rows`` ``(n_queries, m)``.

        ``rows[i]`` are query ``i``'s candidates; ``-1`` pads and scores ``-inf``; a row id the store does not hold
        raises :class:`UnknownIdError` (as in the dense and sparse parts); a stored document with no token vectors
        scores ``0.0``.
        """
        q_mv = self._check_multivectors(queries, "query multivectors")
        r = np.asarray(rows)
        if r.ndim != 2 or r.shape[0] != len(q_mv):
            raise InputError(f"rows must have shape (n_queries={len(q_mv)}, m) with -1 padding, got {r.shape}")
        if r.size and (r.dtype == bool or not np.issubdtype(r.dtype, np.integer)):
            raise InputError(f"rows must be integer row ids, got dtype {r.dtype}")
        r = r.astype(np.int64)
        if r.size and r.min() < -1:
            raise InputError(f"row ids must be >= 0, or -1 for padding; got {int(r.min())}")
        empty = np.flatnonzero(q_mv.lengths == 0)
        if empty.size:
            raise InputError(f"query {int(empty[0])} has no token vectors; MaxSim needs at least one")
        out = np.full(r.shape, -np.inf, np.float32)
        pos = self._positions(r)
        unknown = (r >= 0) & (pos < 0)
        if unknown.any():
            raise UnknownIdError(f"row {int(r[unknown][0])} is not in this multi-vector store")
        for i in range(r.shape[0]):
            sel = np.flatnonzero(pos[i] >= 0)
            if sel.size:
                out[i, sel] = self._score(np.asarray(q_mv[i], dtype=np.float32), pos[i, sel])
        return out

    def _score(self, q: np.ndarray, docs: np.ndarray) -> np.ndarray:
        uniq, inverse = np.unique(docs, return_inverse=True)
        scores = np.empty(uniq.size, np.float32)
        # chunks of documents holding about _CHUNK_TOKENS tokens bound the decoded float32 temporaries
        ends = np.cumsum(self._offsets[uniq + 1] - self._offsets[uniq])
        marks = np.arange(_CHUNK_TOKENS, int(ends[-1]), _CHUNK_TOKENS)
        cuts = np.unique(np.concatenate([[0], np.searchsorted(ends, marks, side="right"), [uniq.size]]))
        if self.compression == "binary":
            lut = _binary_lut(q, self._scale)
            binary_scores = _binary_scores_lut if _numba_kernel() else _binary_scores_numpy
        for a, b in zip(cuts[:-1], cuts[1:], strict=True):
            codes, scales, lens = self._gather(uniq[a:b])
            if self.compression == "binary":
                scores[a:b] = binary_scores(codes, lens, lut)
            else:
                s = np.asarray(codes, dtype=np.float32) @ q.T
                if scales is not None:
                    s *= scales[:, None]
                scores[a:b] = _segment_max_mean(s, lens)
        return scores[inverse]

    # ------------------------------------------------------------------ maintenance
    def compact(self, alive: np.ndarray | None = None) -> None:
        """Rewrite the store as one contiguous in-memory block, keeping only the rows where ``alive[row]`` is True.

        ``alive`` is a bool array indexed by row id; rows at or beyond its end count as dead (the same contract
        as :meth:`DenseIndex.compact` and :meth:`SparseIndex.compact`). ``None`` keeps every row. Row ids do not
        change. A memory-mapped store is read into RAM: save and load it again to map it.
        """
        if alive is None:
            keep = np.arange(len(self))
        else:
            a = np.asarray(alive)
            if a.dtype != np.bool_ or a.ndim != 1:
                raise InputError(f"alive must be a 1-D bool array indexed by row id, got {a.dtype} {a.shape}")
            inside = self._rows < a.size
            keep = np.flatnonzero(inside)
            keep = keep[a[self._rows[keep]]]
        codes, scales, lens = self._gather(keep)
        codes = np.array(codes, copy=True)  # own the data, detached from any memory map
        self._rows = self._rows[keep].copy()
        self._offsets = np.concatenate([[0], np.cumsum(lens)]).astype(np.int64)
        self._segments = (
            [(0, codes, None if scales is None else np.array(scales, np.float32))] if codes.shape[0] else []
        )

    # ------------------------------------------------------------------ persistence
    def _params(self) -> dict[str, Any]:
        return {
            "format": FORMAT,
            "version": FORMAT_VERSION,
            "dim": self.dim,
            "compression": self.compression,
            "pool_factor": self.pool_factor,
            "rows": len(self),
            "tokens": self.n_tokens,
            "binary_scale": self._scale if self.compression == "binary" else None,
        }

    def save(self, directory: str | os.PathLike[str]) -> list[str]:
        """Write the arrays as ``.npy`` files and ``multivector.json`` into ``directory``; returns the file names.

        Files are written under temporary names and renamed, so a store memory-mapped from the same files keeps
        reading the old ones. The caller commits the directory as a whole.
        """
        d = Path(directory)
        d.mkdir(parents=True, exist_ok=True)
        names = [_FILES["rows"], _FILES["offsets"], _FILES["codes"]]
        _save_npy(d / _FILES["rows"], [self._rows], self._rows.shape, np.int64)
        _save_npy(d / _FILES["offsets"], [self._offsets], self._offsets.shape, np.int64)
        _save_npy(
            d / _FILES["codes"],
            [s[1] for s in self._segments],
            (self.n_tokens, self._width),
            _CODE_DTYPES[self.compression],
        )
        if self.compression == "int8":
            _save_npy(
                d / _FILES["scales"], [s[2] for s in self._segments if s[2] is not None], (self.n_tokens,), np.float32
            )
            names.append(_FILES["scales"])
        tmp = d / f".{PARAMS_FILE}.tmp"
        tmp.write_text(json.dumps(self._params(), indent=2) + "\n", encoding="utf-8")
        os.replace(tmp, d / PARAMS_FILE)
        return [*names, PARAMS_FILE]

    @classmethod
    def load(cls, directory: str | os.PathLike[str], *, mmap: bool = True) -> MultiVectorStore:
        """Open a store written by :meth:`save`; with ``mmap=True`` the token codes stay on disk."""
        d = Path(directory)
        params = read_part_header(d / PARAMS_FILE, fmt=FORMAT, version=FORMAT_VERSION, what="multi-vector store")
        try:
            store = cls(int(params["dim"]), compression=params["compression"], pool_factor=int(params["pool_factor"]))
            n, n_tokens = int(params["rows"]), int(params["tokens"])
        except (KeyError, TypeError, ValueError) as exc:
            raise IndexCorruptedError(f"{d / PARAMS_FILE} has bad parameters: {exc}") from None
        rows = _load_npy(d / _FILES["rows"], False)
        offsets = _load_npy(d / _FILES["offsets"], False)
        codes = _load_npy(d / _FILES["codes"], mmap)
        scales = _load_npy(d / _FILES["scales"], mmap) if store.compression == "int8" else None
        bad = []
        if rows.shape != (n,) or rows.dtype != np.int64 or (n > 1 and (np.diff(rows) <= 0).any()):
            bad.append("row ids")
        if (
            offsets.shape != (n + 1,)
            or offsets.dtype != np.int64
            or offsets[0] != 0
            or offsets[-1] != n_tokens
            or (np.diff(offsets) < 0).any()
        ):
            bad.append("offsets")
        if codes.shape != (n_tokens, store._width) or codes.dtype != _CODE_DTYPES[store.compression]:
            bad.append("codes")
        if scales is not None and (scales.shape != (n_tokens,) or scales.dtype != np.float32):
            bad.append("scales")
        if bad:
            raise IndexCorruptedError(
                f"multi-vector store in {d} is inconsistent ({', '.join(bad)} do not match "
                f"{PARAMS_FILE}); the files are truncated or from different saves"
            )
        store._rows, store._offsets = rows, offsets
        store._segments = [(0, codes, scales)] if n_tokens else []
        return store


def _save_npy(path: Path, parts: list[Any], shape: tuple[int, ...], dtype: Any) -> None:
    """Stream ``parts`` (stacked along axis 0) into one ``.npy`` without concatenating them in memory."""
    tmp = path.with_name(f".{path.stem}.tmp.npy")
    try:
        if int(np.prod(shape)) == 0:
            np.save(tmp, np.zeros(shape, dtype))
        else:
            out = np.lib.format.open_memmap(tmp, mode="w+", dtype=dtype, shape=shape)
            at = 0
            for p in parts:
                out[at : at + p.shape[0]] = p
                at += p.shape[0]
            out.flush()
            del out
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def _load_npy(path: Path, mmap: bool) -> np.ndarray:
    try:
        if mmap:
            try:
                return np.load(path, mmap_mode="r", allow_pickle=False)
            except ValueError:  # an empty array cannot be mapped
                return np.load(path, allow_pickle=False)
        return np.load(path, allow_pickle=False)
    except FileNotFoundError:
        raise IndexCorruptedError(f"{path} is missing from the multi-vector store") from None
    except (OSError, ValueError, EOFError) as exc:
        raise IndexCorruptedError(f"{path} is unreadable or truncated: {exc}") from None
