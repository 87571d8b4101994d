"""The one data type that carries encoder output through the library: :class:`Encoded`.

An ``Encoded`` holds up to three views of ``n`` texts, row-aligned:

- ``dense``: float32 ``(n, d)``, L2-normalised rows;
- ``sparse``: ``scipy.sparse.csr_matrix`` ``(n, vocab_size)`` with int32 token ids (sorted, unique per row)
  and positive float32 weights. For bge-m3 and ``bm25`` the vocabulary is XLM-R's 250,002 tokens;
- ``multivector``: :class:`MultiVectors`, ragged token vectors stored as one flat ``(T, d)`` float16 array
  plus ``offsets`` of length ``n + 1``; text ``i`` owns ``vectors[offsets[i]:offsets[i+1]]``.

It converts losslessly to and from FlagEmbedding's ``encode`` dict (``dense_vecs``, ``lexical_weights``,
``colbert_vecs``), to the sparse formats Milvus and Qdrant take, and saves to one ``.npz`` bundle.
"""

from __future__ import annotations

import io
import json
import os
import zipfile
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import numpy as np
import scipy.sparse as sp

from ._atomic import write_bytes_atomic
from .errors import DimensionMismatchError, InputError, MissingDependencyError

__all__ = ["BGE_M3_VOCAB_SIZE", "MODES", "Encoded", "EncoderInfo", "Mode", "MultiVectors"]

Mode = Literal["dense", "sparse", "multivector"]
MODES: tuple[Mode, ...] = ("dense", "sparse", "multivector")
BGE_M3_VOCAB_SIZE = 250_002
QUERY_TIME_IDF = frozenset({"bm25", "bm25-word"})
"""Encoders whose sparse documents carry only BM25's term-frequency part: an index built from them weights each
query term by the idf of its own live documents at search time (see :mod:`hybridsearch.encoders.bm25`)."""


def sparse_needs_query_idf(info: EncoderInfo | None) -> bool:
    """Whether the sparse view of documents encoded by ``info`` carries only BM25's term-frequency part.

    True for the encoders in :data:`QUERY_TIME_IDF`, and for a composite encoder whose sparse view comes from one
    (``CompositeEncoder(dense=..., sparse=bm25)``: its ``parts``).
    """
    if info is None:
        return False
    part = info.parts.get("sparse") if info.parts else None
    return (part.name if part is not None else info.name) in QUERY_TIME_IDF

_BUNDLE_VERSION = 1


def _check_finite(name: str, a: np.ndarray) -> None:
    if a.size and not np.isfinite(a).all():
        bad = int(np.flatnonzero(~np.isfinite(a).reshape(a.shape[0], -1).all(axis=1))[0]) if a.ndim > 1 else 0
        raise InputError(f"{name} contains NaN or infinite values (first at row {bad}); clean the input vectors")


@dataclass(frozen=True)
class EncoderInfo:
    """Which encoder produced an :class:`Encoded`; an index records it and checks queries against it.

    ``fingerprint`` identifies the exact weights or fitted statistics (a hash), so two encoders with the
    same name but different weights never get mixed in one index.
    """

    name: str
    model_id: str = ""
    fingerprint: str = ""
    parts: Mapping[str, EncoderInfo] | None = field(default=None, compare=False, repr=False)
    """For an encoder that takes each view from another encoder: the encoder of each view (see
    :mod:`hybridsearch.identity`). Not part of equality: the fingerprint already covers the parts."""

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"name": self.name, "model_id": self.model_id, "fingerprint": self.fingerprint}
        if self.parts:
            out["parts"] = {view: info.to_dict() for view, info in self.parts.items()}
        return out

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> EncoderInfo:
        raw = d.get("parts")
        parts = {str(v): cls.from_dict(p) for v, p in raw.items()} if isinstance(raw, Mapping) and raw else None
        return cls(
            name=str(d["name"]), model_id=str(d.get("model_id", "")), fingerprint=str(d.get("fingerprint", "")), parts=parts
        )


@dataclass(frozen=True, eq=False)
class MultiVectors:
    """Ragged per-token vectors: ``vectors`` ``(T, d)`` plus ``offsets`` ``(n + 1,)`` int64."""

    vectors: np.ndarray
    offsets: np.ndarray

    def __post_init__(self) -> None:
        v, o = self.vectors, np.asarray(self.offsets, dtype=np.int64)
        if v.ndim != 2:
            raise InputError(f"multivector vectors must be 2-D (T, d), got shape {v.shape}")
        if v.dtype not in (np.float16, np.float32):
            v = v.astype(np.float16)
        if o.ndim != 1 or o.size < 1 or o[0] != 0 or o[-1] != v.shape[0] or (np.diff(o) < 0).any():
            raise InputError(
                "multivector offsets must start at 0, never decrease and end at the number of vectors "
                f"({v.shape[0]}); got {o[:3].tolist()}...{o[-2:].tolist()}"
            )
        _check_finite("multivector", v)
        object.__setattr__(self, "vectors", np.ascontiguousarray(v))
        object.__setattr__(self, "offsets", o)

    @classmethod
    def from_list(cls, arrays: Sequence[np.ndarray], *, dim: int | None = None, dtype: Any = np.float16) -> MultiVectors:
        """Pack a list of ``(n_i, d)`` arrays. ``dim`` is needed only when the list is empty."""
        if len(arrays) == 0:
            return cls(np.zeros((0, dim or 0), dtype), np.zeros(1, np.int64))
        mats = [np.asarray(a).reshape(-1, np.shape(a)[-1]) if np.ndim(a) else np.zeros((0, dim or 0)) for a in arrays]
        widths = {m.shape[1] for m in mats if m.shape[0]}
        if len(widths) > 1:
            raise DimensionMismatchError(f"multivector arrays have different widths: {sorted(widths)}")
        d = widths.pop() if widths else (dim or 0)
        offsets = np.zeros(len(mats) + 1, np.int64)
        np.cumsum([m.shape[0] for m in mats], out=offsets[1:])
        flat = np.concatenate([m.reshape(-1, d) for m in mats]).astype(dtype, copy=False) if offsets[-1] else np.zeros((0, d), dtype)
        return cls(flat, offsets)

    def __len__(self) -> int:
        return int(self.offsets.size - 1)

    def __getitem__(self, i: int) -> np.ndarray:
        n = len(self)
        if not -n <= i < n:
            raise IndexError(f"multivector index {i} out of range for {n} texts")
        i %= n
        return self.vectors[self.offsets[i] : self.offsets[i + 1]]

    @property
    def dim(self) -> int:
        return int(self.vectors.shape[1])

    @property
    def lengths(self) -> np.ndarray:
        return np.diff(self.offsets)

    def to_list(self) -> list[np.ndarray]:
        return [self[i] for i in range(len(self))]

    def take(self, rows: Sequence[int] | np.ndarray) -> MultiVectors:
        rows = np.asarray(rows, dtype=np.int64)
        return MultiVectors.from_list([self[int(r)] for r in rows], dim=self.dim, dtype=self.vectors.dtype)

    @staticmethod
    def concat(parts: Sequence[MultiVectors]) -> MultiVectors:
        if not parts:
            raise InputError("nothing to concatenate")
        dims = {p.dim for p in parts if p.vectors.shape[0]}
        if len(dims) > 1:
            raise DimensionMismatchError(f"multivector parts have different widths: {sorted(dims)}")
        dtype = np.result_type(*[p.vectors.dtype for p in parts])
        vectors = np.concatenate([p.vectors.astype(dtype, copy=False) for p in parts])
        offsets = [np.zeros(1, np.int64)]
        base = 0
        for p in parts:
            offsets.append(p.offsets[1:] + base)
            base += int(p.offsets[-1])
        return MultiVectors(vectors, np.concatenate(offsets))


def check_unique_tokens(m: sp.csr_matrix, what: str = "sparse") -> None:
    """InputError naming the first row that holds a token id twice (the one rule for duplicates on every path:
    summing or keeping either value would each be a silent guess; Qdrant rejects them too)."""
    if m.has_canonical_format or m.nnz < 2:
        return
    s = m.copy()
    s.sort_indices()
    rows = np.repeat(np.arange(s.shape[0]), np.diff(s.indptr))
    dup = np.flatnonzero((np.diff(s.indices) == 0) & (np.diff(rows) == 0))
    if dup.size:
        i = int(dup[0])
        raise InputError(
            f"{what} row {int(rows[i])} holds token id {int(s.indices[i])} more than once; give each token one "
            "weight (merge duplicates before building the vector)"
        )


def _canonical_csr(m: Any, n_rows: int | None) -> sp.csr_matrix:
    if not sp.issparse(m):
        raise InputError(f"sparse must be a scipy.sparse matrix, got {type(m).__name__}; see Encoded.from_dicts")
    m = sp.csr_matrix(m)
    if m.ndim != 2:
        raise InputError("sparse must be 2-D (n, vocab_size)")
    if m.data.size and not np.isfinite(m.data).all():
        raise InputError("sparse weights contain NaN or infinite values")
    if m.data.size and (m.data < 0).any():
        row = int(np.searchsorted(m.indptr, int(np.flatnonzero(m.data < 0)[0]), side="right") - 1)
        raise InputError(f"sparse weights must be non-negative; row {row} has a negative weight")
    check_unique_tokens(m)
    m.sum_duplicates()  # no duplicates remain to sum: this sorts the indices
    m.eliminate_zeros()
    m.data = m.data.astype(np.float32, copy=False)
    m.indices = m.indices.astype(np.int32, copy=False)
    m.indptr = m.indptr.astype(np.int64 if m.nnz >= 2**31 else np.int32, copy=False)
    return m


@dataclass(frozen=True, eq=False)
class Encoded:
    """Encoder output for ``n`` texts: any of ``dense``, ``sparse`` and ``multivector``, row-aligned.

    >>> import numpy as np, scipy.sparse as sp
    >>> e = Encoded(dense=np.eye(2, 4, dtype=np.float32), sparse=sp.csr_matrix(np.array([[0, 0.5], [0.2, 0]])))
    >>> len(e), e.modes
    (2, ('dense', 'sparse'))
    """

    dense: np.ndarray | None = None
    sparse: sp.csr_matrix | None = None
    multivector: MultiVectors | None = None
    encoder: EncoderInfo | None = field(default=None, compare=False)

    def __post_init__(self) -> None:
        lengths: dict[str, int] = {}
        if self.dense is not None:
            d = np.asarray(self.dense)
            if d.ndim != 2:
                raise InputError(f"dense must be 2-D (n, d), got shape {d.shape}")
            d = np.ascontiguousarray(d, dtype=np.float32)
            _check_finite("dense", d)
            object.__setattr__(self, "dense", d)
            lengths["dense"] = d.shape[0]
        if self.sparse is not None:
            s = _canonical_csr(self.sparse, None)
            object.__setattr__(self, "sparse", s)
            lengths["sparse"] = s.shape[0]
        if self.multivector is not None:
            if not isinstance(self.multivector, MultiVectors):
                raise InputError("multivector must be a MultiVectors; use MultiVectors.from_list(arrays)")
            lengths["multivector"] = len(self.multivector)
        if not lengths:
            raise InputError("Encoded needs at least one of dense, sparse, multivector")
        if len(set(lengths.values())) > 1:
            raise InputError(f"dense, sparse and multivector must have the same number of rows, got {lengths}")

    # ------------------------------------------------------------------ basics
    def __len__(self) -> int:
        if self.dense is not None:
            return int(self.dense.shape[0])
        if self.sparse is not None:
            return int(self.sparse.shape[0])
        assert self.multivector is not None
        return len(self.multivector)

    @property
    def modes(self) -> tuple[Mode, ...]:
        """The views this object holds, in the order dense, sparse, multivector."""
        return tuple(m for m in MODES if getattr(self, m) is not None)

    @property
    def dense_dim(self) -> int | None:
        return None if self.dense is None else int(self.dense.shape[1])

    @property
    def vocab_size(self) -> int | None:
        return None if self.sparse is None else int(self.sparse.shape[1])

    @property
    def multivector_dim(self) -> int | None:
        return None if self.multivector is None else self.multivector.dim

    def __repr__(self) -> str:
        parts = [f"n={len(self)}"]
        if self.dense is not None:
            parts.append(f"dense={self.dense.shape}")
        if self.sparse is not None:
            parts.append(f"sparse=({self.sparse.shape[0]}, {self.sparse.shape[1]}) nnz={self.sparse.nnz}")
        if self.multivector is not None:
            parts.append(f"multivector=({self.multivector.vectors.shape[0]} tokens, {self.multivector.dim}) {self.multivector.vectors.dtype}")
        if self.encoder is not None:
            parts.append(f"encoder={self.encoder.name!r}")
        return f"Encoded({', '.join(parts)})"

    def select(self, modes: Iterable[str]) -> Encoded:
        """The same rows with only the given views."""
        modes = set(modes)
        unknown = modes - set(MODES)
        if unknown:
            raise InputError(f"unknown modes {sorted(unknown)}; expected a subset of {list(MODES)}")
        missing = modes - set(self.modes)
        if missing:
            raise InputError(f"this Encoded has no {sorted(missing)} view (it has {list(self.modes)})")
        return Encoded(
            dense=self.dense if "dense" in modes else None,
            sparse=self.sparse if "sparse" in modes else None,
            multivector=self.multivector if "multivector" in modes else None,
            encoder=self.encoder,
        )

    def take(self, rows: Sequence[int] | np.ndarray | slice) -> Encoded:
        """A subset of rows (indices or a slice), in the given order."""
        idx = np.arange(len(self))[rows] if isinstance(rows, slice) else np.asarray(rows, dtype=np.int64)
        return Encoded(
            dense=None if self.dense is None else self.dense[idx],
            sparse=None if self.sparse is None else self.sparse[idx],
            multivector=None if self.multivector is None else self.multivector.take(idx),
            encoder=self.encoder,
        )

    def __getitem__(self, rows: Sequence[int] | np.ndarray | slice) -> Encoded:
        return self.take(rows)

    @staticmethod
    def concat(parts: Sequence[Encoded]) -> Encoded:
        """Stack several ``Encoded`` with the same views row-wise."""
        if not parts:
            raise InputError("nothing to concatenate")
        modes = {p.modes for p in parts}
        if len(modes) > 1:
            raise InputError(f"cannot concatenate Encoded with different views: {sorted(modes)}")
        first = parts[0]
        if first.sparse is not None and len({p.vocab_size for p in parts}) > 1:
            raise DimensionMismatchError("cannot concatenate sparse matrices over different vocabularies")
        if first.dense is not None and len({p.dense_dim for p in parts}) > 1:
            raise DimensionMismatchError("cannot concatenate dense vectors of different widths")
        return Encoded(
            dense=None if first.dense is None else np.concatenate([p.dense for p in parts]),  # type: ignore[misc]
            sparse=None if first.sparse is None else sp.vstack([p.sparse for p in parts], format="csr"),
            multivector=None if first.multivector is None else MultiVectors.concat([p.multivector for p in parts]),  # type: ignore[misc]
            encoder=first.encoder,
        )

    # ------------------------------------------------------------ sparse forms
    def sparse_dicts(self) -> list[dict[int, float]]:
        """Sparse rows as ``{token_id: weight}`` dicts with int keys and Python floats."""
        s = self._need_sparse()
        return [
            dict(zip(s.indices[a:b].tolist(), s.data[a:b].tolist()))
            for a, b in zip(s.indptr[:-1].tolist(), s.indptr[1:].tolist())
        ]

    @staticmethod
    def sparse_from_dicts(rows: Sequence[Mapping[Any, float]], *, vocab_size: int = BGE_M3_VOCAB_SIZE) -> sp.csr_matrix:
        """Build the canonical CSR from ``{token_id: weight}`` dicts (keys may be ints or id strings).

        A token id given twice in one row (``1`` and ``"1"``) raises InputError naming the row, as every other
        way of building sparse vectors does (``Encoded(sparse=...)``, :meth:`sparse_from_qdrant`,
        :meth:`sparse_from_milvus`, the sparse index).
        """
        indptr = np.zeros(len(rows) + 1, np.int64)
        idx: list[int] = []
        val: list[float] = []
        for i, row in enumerate(rows):
            if not isinstance(row, Mapping):
                raise InputError(f"sparse row {i} must be a mapping of token id to weight, got {type(row).__name__}")
            seen: set[int] = set()
            for k, v in row.items():
                try:
                    t = int(k)
                except (TypeError, ValueError):
                    raise InputError(f"sparse row {i} has a non-integer token id {k!r}") from None
                if not 0 <= t < vocab_size:
                    raise InputError(f"sparse row {i} has token id {t} outside the vocabulary [0, {vocab_size})")
                if t in seen:
                    raise InputError(
                        f"sparse row {i} holds token id {t} more than once (keys {k!r} and an earlier one); give each "
                        "token one weight"
                    )
                seen.add(t)
                idx.append(t)
                val.append(float(v))
            indptr[i + 1] = len(idx)
        m = sp.csr_matrix(
            (np.asarray(val, np.float32), np.asarray(idx, np.int32), indptr), shape=(len(rows), vocab_size)
        )
        return _canonical_csr(m, len(rows))

    def to_milvus_sparse(self) -> list[dict[int, float]]:
        """Rows in the form pymilvus inserts into a ``SPARSE_FLOAT_VECTOR`` field (int keys, float values).

        pymilvus also accepts ``self.sparse`` (a CSR matrix) directly for a whole batch.
        """
        return self.sparse_dicts()

    @staticmethod
    def sparse_from_milvus(rows: Any, *, vocab_size: int = BGE_M3_VOCAB_SIZE) -> sp.csr_matrix:
        """Accepts what Milvus returns or takes: a list of dicts, or a scipy sparse matrix."""
        if sp.issparse(rows):
            m = sp.csr_matrix(rows)
            if m.shape[1] != vocab_size:
                m = sp.csr_matrix((m.data, m.indices, m.indptr), shape=(m.shape[0], vocab_size))
            return _canonical_csr(m, None)
        return Encoded.sparse_from_dicts(list(rows), vocab_size=vocab_size)

    def to_qdrant_sparse(self) -> list[Any]:
        """Rows as ``qdrant_client.models.SparseVector(indices=..., values=...)`` (needs ``qdrant-client``)."""
        try:
            from qdrant_client import models
        except ImportError:  # pragma: no cover - depends on the environment
            raise MissingDependencyError(
                "to_qdrant_sparse needs qdrant-client: pip install 'hybridsearch[scale]'"
            ) from None
        s = self._need_sparse()
        return [
            models.SparseVector(indices=s.indices[a:b].tolist(), values=s.data[a:b].tolist())
            for a, b in zip(s.indptr[:-1].tolist(), s.indptr[1:].tolist())
        ]

    @staticmethod
    def sparse_from_qdrant(rows: Sequence[Any], *, vocab_size: int = BGE_M3_VOCAB_SIZE) -> sp.csr_matrix:
        """Accepts ``SparseVector`` objects or ``{"indices": [...], "values": [...]}`` dicts."""
        dicts = []
        for i, r in enumerate(rows):
            ind = r["indices"] if isinstance(r, Mapping) else getattr(r, "indices", None)
            val = r["values"] if isinstance(r, Mapping) else getattr(r, "values", None)
            if ind is None or val is None or len(ind) != len(val):
                raise InputError(f"qdrant sparse row {i} needs indices and values of equal length")
            d = dict(zip(ind, val, strict=True))
            if len(d) != len(ind):
                seen: set[Any] = set()
                t = next(x for x in ind if x in seen or seen.add(x))  # type: ignore[func-returns-value]
                raise InputError(f"qdrant sparse row {i} holds token id {t} more than once; give each token one weight")
            dicts.append(d)
        return Encoded.sparse_from_dicts(dicts, vocab_size=vocab_size)

    def _need_sparse(self) -> sp.csr_matrix:
        if self.sparse is None:
            raise InputError("this Encoded has no sparse view")
        return self.sparse

    # ------------------------------------------------------- FlagEmbedding form
    def to_flag_embedding(self) -> dict[str, Any]:
        """FlagEmbedding's ``BGEM3FlagModel.encode`` dict: ``dense_vecs``, ``lexical_weights``, ``colbert_vecs``.

        ``lexical_weights`` uses FlagEmbedding's own types (id-string keys, ``np.float32`` values), so the
        round trip ``Encoded.from_flag_embedding(e.to_flag_embedding())`` is exact.
        """
        lexical = None
        if self.sparse is not None:
            s = self.sparse
            lexical = [
                {str(t): np.float32(w) for t, w in zip(s.indices[a:b].tolist(), s.data[a:b])}
                for a, b in zip(s.indptr[:-1].tolist(), s.indptr[1:].tolist())
            ]
        return {
            "dense_vecs": None if self.dense is None else self.dense.copy(),
            "lexical_weights": lexical,
            "colbert_vecs": None if self.multivector is None else [v.copy() for v in self.multivector.to_list()],
        }

    @classmethod
    def from_flag_embedding(
        cls,
        output: Mapping[str, Any],
        *,
        vocab_size: int = BGE_M3_VOCAB_SIZE,
        multivector_dtype: Any = np.float16,
        encoder: EncoderInfo | None = None,
    ) -> Encoded:
        """Build from ``BGEM3FlagModel.encode`` output (batched, or the unbatched form of a single string).

        Dense and sparse are kept exactly (fp16 dense from a GPU is widened to float32 losslessly).
        Multi-vectors are stored as ``multivector_dtype``: float16 by default, the library's storage type;
        pass ``np.float32`` to keep fp32 ColBERT vectors bit-exact.
        """
        if not isinstance(output, Mapping):
            raise InputError(f"expected FlagEmbedding's encode() dict, got {type(output).__name__}")
        dense = output.get("dense_vecs")
        lexical = output.get("lexical_weights")
        colbert = output.get("colbert_vecs")
        single = (isinstance(lexical, Mapping)) or (dense is not None and np.ndim(dense) == 1)
        if single:
            dense = None if dense is None else np.asarray(dense)[None, :]
            lexical = None if lexical is None else [lexical]
            colbert = None if colbert is None else [colbert]
        if dense is None and lexical is None and colbert is None:
            raise InputError("the FlagEmbedding output holds none of dense_vecs, lexical_weights, colbert_vecs")
        return cls(
            dense=None if dense is None else np.asarray(dense, dtype=np.float32),
            sparse=None if lexical is None else cls.sparse_from_dicts(list(lexical), vocab_size=vocab_size),
            multivector=None if colbert is None else MultiVectors.from_list(list(colbert), dtype=multivector_dtype),
            encoder=encoder,
        )

    # ------------------------------------------------------------ persistence
    def save(self, path: str | os.PathLike[str]) -> Path:
        """Write one ``.npz`` bundle (no pickles) atomically; returns the path written."""
        path = Path(path)
        if path.suffix != ".npz":
            path = path.with_name(path.name + ".npz")
        header: dict[str, Any] = {
            "format": "hybridsearch.encoded",
            "version": _BUNDLE_VERSION,
            "n": len(self),
            "modes": list(self.modes),
            "encoder": None if self.encoder is None else self.encoder.to_dict(),
        }
        arrays: dict[str, np.ndarray] = {}
        if self.dense is not None:
            arrays["dense"] = self.dense
        if self.sparse is not None:
            header["vocab_size"] = self.vocab_size
            arrays["sparse_indptr"] = self.sparse.indptr
            arrays["sparse_indices"] = self.sparse.indices
            arrays["sparse_data"] = self.sparse.data
        if self.multivector is not None:
            arrays["multivector_vectors"] = self.multivector.vectors
            arrays["multivector_offsets"] = self.multivector.offsets
        arrays["header"] = np.frombuffer(json.dumps(header).encode("utf-8"), dtype=np.uint8)
        buf = io.BytesIO()
        np.savez(buf, **arrays)
        write_bytes_atomic(path, buf.getvalue())
        return path

    @classmethod
    def load(cls, path: str | os.PathLike[str]) -> Encoded:
        """Read a bundle written by :meth:`save`."""
        path = Path(path)
        if not path.exists() and path.with_name(path.name + ".npz").exists():
            path = path.with_name(path.name + ".npz")
        try:
            with np.load(path, allow_pickle=False) as z:
                header = json.loads(bytes(z["header"]).decode("utf-8"))
                if header.get("format") != "hybridsearch.encoded":
                    raise InputError(f"{path} is not a hybridsearch Encoded bundle")
                if int(header.get("version", 0)) > _BUNDLE_VERSION:
                    raise InputError(
                        f"{path} was written by a newer hybridsearch (bundle version {header['version']}); upgrade to read it"
                    )
                sparse = None
                if "sparse" in header["modes"]:
                    sparse = sp.csr_matrix(
                        (z["sparse_data"], z["sparse_indices"], z["sparse_indptr"]),
                        shape=(header["n"], header["vocab_size"]),
                    )
                mv = None
                if "multivector" in header["modes"]:
                    mv = MultiVectors(z["multivector_vectors"], z["multivector_offsets"])
                return cls(
                    dense=z["dense"] if "dense" in header["modes"] else None,
                    sparse=sparse,
                    multivector=mv,
                    encoder=None if header.get("encoder") is None else EncoderInfo.from_dict(header["encoder"]),
                )
        except FileNotFoundError:
            raise InputError(f"no encoded bundle at {path}") from None
        except (KeyError, ValueError, OSError, zipfile.BadZipFile, EOFError) as exc:
            if isinstance(exc, InputError):
                raise
            raise InputError(f"{path} is not a readable hybridsearch bundle: {exc}") from exc
