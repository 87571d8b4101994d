"""Rerankers: score a first stage's hits again and reorder them (see :mod:`.base` for the protocol).

====================================  =========================================================================
class                                 scores with
====================================  =========================================================================
:class:`ScoringAPIReranker`           the Workers AI bge-m3 ``{query, contexts}`` form, on Cloudflare or any
                                      compatible server, with a time budget and graceful degradation
:class:`BGEM3Reranker`                local bge-m3: dense, sparse and ColBERT scores, weighted as
                                      FlagEmbedding's ``compute_score`` (0.4 / 0.2 / 0.4)
:class:`CrossEncoderReranker`         ``BAAI/bge-reranker-v2-m3`` (FlagEmbedding's ``FlagReranker``)
====================================  =========================================================================

Heavy dependencies are imported when a reranker is created.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from .base import Reranker, ScoredBatch

if TYPE_CHECKING:
    from .bge_m3 import BGEM3Reranker
    from .cross_encoder import CrossEncoderReranker
    from .scoring_api import ScoringAPIReranker

__all__ = ["BGEM3Reranker", "CrossEncoderReranker", "Reranker", "ScoredBatch", "ScoringAPIReranker"]

_WHERE = {"BGEM3Reranker": ".bge_m3", "CrossEncoderReranker": ".cross_encoder", "ScoringAPIReranker": ".scoring_api"}


def __getattr__(name: str) -> Any:
    if name in _WHERE:
        value = getattr(importlib.import_module(_WHERE[name], __name__), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
