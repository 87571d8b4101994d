"""hybridsearch: hybrid dense + sparse + multi-vector retrieval on BAAI bge-m3.

Data flows through one type per stage: texts -> :class:`Encoded` (encoder output) -> indexes -> hits ->
fused results -> runs -> metrics. ``import hybridsearch`` never imports torch or FlagEmbedding.
"""

from __future__ import annotations

from ._version import __version__
from .datasets import Dataset, Document, load_dataset
from .encoders import CompositeEncoder, Encoder, get_encoder
from .errors import HybridSearchError, InputError
from .hits import Hit, Hits
from .metrics import evaluate
from .retriever import Retriever
from .types import Encoded, EncoderInfo, MultiVectors


def __getattr__(name: str):  # HybridIndex pulls in FAISS; import it on first use
    if name == "HybridIndex":
        from .index import HybridIndex

        return HybridIndex
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


__all__ = [
    "CompositeEncoder",
    "Dataset",
    "Document",
    "Encoded",
    "Encoder",
    "EncoderInfo",
    "Hit",
    "Hits",
    "HybridIndex",
    "HybridSearchError",
    "InputError",
    "MultiVectors",
    "Retriever",
    "__version__",
    "evaluate",
    "get_encoder",
    "load_dataset",
]
