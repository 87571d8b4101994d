"""Indexes: :class:`HybridIndex` (one persistent, updatable index over every view) and its components.

- :class:`~hybridsearch.index.dense.DenseIndex`: FAISS over dense vectors;
- :class:`~hybridsearch.index.sparse.SparseIndex`: an inverted index over sparse lexical weights;
- :class:`~hybridsearch.index.multivector.MultiVectorStore`: compressed token vectors, scored by MaxSim;
- :class:`~hybridsearch.index.hybrid.HybridIndex`: string document ids, texts and metadata over all three, with
  tombstones, metadata filters, fusion and crash-safe saves.

Names are imported on first use, so ``import hybridsearch.index`` stays cheap.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from .dense import DenseIndex
    from .hybrid import HybridIndex
    from .multivector import MultiVectorStore
    from .sparse import SparseIndex

__all__ = ["DenseIndex", "HybridIndex", "MultiVectorStore", "SparseIndex"]

_WHERE = {
    "DenseIndex": ".dense",
    "HybridIndex": ".hybrid",
    "MultiVectorStore": ".multivector",
    "SparseIndex": ".sparse",
}


def __getattr__(name: str) -> Any:
    if name in _WHERE:
        value = getattr(importlib.import_module(_WHERE[name], __name__), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted([*globals(), *__all__])
