"""Stream an index's stored documents out: ids, texts, metadata and vectors, for migration without re-encoding.

:func:`export_index` yields :class:`ExportBatch` objects of at most ``batch_size`` live documents in row order;
each holds the :class:`~hybridsearch.types.Encoded` the index stores for them, so another engine (Milvus,
Qdrant, another ``HybridIndex``) can load the same vectors. Memory stays bounded by one batch plus one sparse
segment; nothing is written.

What comes out is what the index stores:

- ``dense``: float32 rows, exactly the vectors added for ``Flat`` and HNSW indexes; decoded (approximate)
  vectors for quantised factories (``SQ8``, ``PQ``, ``IVF...,PQ``);
- ``sparse``: the exact weights added;
- ``multivector``: float32 token vectors after the index's pooling and compression (exact for ``fp32``, the
  ``fp16`` values for ``fp16``, decoded codes for ``int8`` and ``binary``).

:func:`export_info` says which views are exact.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np
import scipy.sparse as sp

from ..errors import ConfigError, InputError
from ..types import MODES, Encoded, MultiVectors

if TYPE_CHECKING:
    from .hybrid import HybridIndex

__all__ = ["ExportBatch", "export_index", "export_info"]

_LOSSY_DENSE = ("SQ", "PQ", "LSH", "RaBitQ")  # FAISS codecs whose reconstruction is approximate


@dataclass(frozen=True)
class ExportBatch:
    """``len(ids)`` live documents: ids, texts, metadata, their stored vectors and their row ids in the index."""

    ids: list[str]
    texts: list[str]
    metadata: list[dict[str, Any]]
    encoded: Encoded
    rows: np.ndarray

    def __len__(self) -> int:
        return len(self.ids)


def _parts(index: HybridIndex) -> tuple[Any, Any, Any, Any]:
    """The index's dense, sparse, multi-vector and document parts (the one place that reaches inside it)."""
    return index._dense, index._sparse, index._mv, index._docs  # noqa: SLF001


def export_info(index: HybridIndex) -> dict[str, Any]:
    """Views, widths, encoder, document count, and whether each exported view equals the vectors added."""
    dense, _sparse, mv, _docs = _parts(index)
    cfg = index.info()["config"]
    exact: dict[str, bool] = {}
    if dense is not None:
        exact["dense"] = not any(q in str(dense.factory) for q in _LOSSY_DENSE)
    if "sparse" in index.modes:
        exact["sparse"] = True
    if mv is not None:
        exact["multivector"] = mv.compression == "fp32" and mv.pool_factor == 1
    return {
        "documents": len(index), "modes": list(index.modes), "dims": index.dims,
        "encoder": None if index.encoder is None else index.encoder.to_dict(), "exact": exact, "config": cfg,
    }


class _SparseCursor:
    """Rows of the sparse part in ascending order, decoding one segment at a time."""

    def __init__(self, sparse: Any) -> None:
        self._it = sparse.iter_rows()
        self._rows = np.zeros(0, np.int64)
        self._csr: sp.csr_matrix | None = None
        self.vocab_size = int(sparse.vocab_size)

    def take(self, rows: np.ndarray) -> sp.csr_matrix:
        parts = []
        i = 0
        while i < rows.size:
            if self._rows.size == 0 or rows[i] > self._rows[-1]:
                try:
                    self._rows, self._csr = next(self._it)
                except StopIteration:
                    raise InputError(f"row {int(rows[i])} is missing from the sparse part") from None
                continue
            j = int(np.searchsorted(rows, self._rows[-1], side="right"))
            chunk = rows[i:j]
            pos = np.searchsorted(self._rows, chunk)
            if not np.array_equal(self._rows[np.minimum(pos, self._rows.size - 1)], chunk):
                raise InputError("the sparse part does not hold every live row")
            parts.append(self._csr[pos])  # type: ignore[index]
            i = j
        if not parts:
            return sp.csr_matrix((0, self.vocab_size), dtype=np.float32)
        return parts[0] if len(parts) == 1 else sp.vstack(parts, format="csr")


def export_index(
    index: HybridIndex, *, batch_size: int = 1024, modes: Sequence[str] | None = None
) -> Iterator[ExportBatch]:
    """Yield the live documents of ``index`` in row order, ``batch_size`` at a time (see the module docstring).

    ``modes`` picks views (default: all the index holds). Deleted documents are not exported. The index must
    not change while the iterator is consumed (a change raises ``InputError`` or yields a consistent prefix).
    """
    if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
        raise ConfigError(f"batch_size must be a positive integer, got {batch_size!r}")
    want = tuple(index.modes) if modes is None else tuple(m for m in MODES if m in set(modes))
    if modes is not None:
        unknown = set(modes) - set(index.modes)
        if unknown or not want:
            raise InputError(f"this index holds {list(index.modes)}; cannot export {sorted(set(modes))}")
    dense, sparse, mv, docs = _parts(index)
    live = np.asarray(docs.live_rows(), dtype=np.int64)
    cursor = _SparseCursor(sparse) if "sparse" in want and sparse is not None else None
    for start in range(0, live.size, batch_size):
        rows = live[start : start + batch_size]
        views: dict[str, Any] = {}
        if "dense" in want:
            views["dense"] = dense.vectors(rows)
        if cursor is not None:
            views["sparse"] = cursor.take(rows)
        if "multivector" in want:
            got: MultiVectors = mv.get_many(rows)
            views["multivector"] = got
        encoded = Encoded(**views, encoder=index.encoder)
        yield ExportBatch(docs.doc_ids(rows), docs.texts(rows), docs.metadata(rows), encoded, rows)
