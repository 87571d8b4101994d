"""Encoders: texts in, :class:`~hybridsearch.types.Encoded` out.

=============  ==========================================================  =========================
name           what                                                         outputs
=============  ==========================================================  =========================
``bge-m3``     BAAI bge-m3 run locally through FlagEmbedding                dense, sparse, multivector
``workers-ai`` Cloudflare Workers AI ``@cf/baai/bge-m3`` (or a compatible)  dense
``bm25``       BM25 weights over bge-m3's XLM-R token ids (paper baseline)   sparse
``bm25-word``  BM25 weights over Unicode words (stronger lexical baseline)  sparse
``minilm``     sentence-transformers all-MiniLM-L6-v2, offline (384-d)      dense
=============  ==========================================================  =========================

``CompositeEncoder`` takes each view from a different encoder (e.g. MiniLM dense + BM25 sparse). Heavy
dependencies (torch, FlagEmbedding) are imported only when an encoder that needs them is created.
"""

from __future__ import annotations

import importlib
import inspect
from typing import Any

from ..errors import ConfigError
from .base import EMPTY_POLICIES, Encoder, check_texts, empty_indices, is_empty_text, resolve_outputs
from .composite import CompositeEncoder

__all__ = [
    "EMPTY_POLICIES",
    "ENCODERS",
    "CompositeEncoder",
    "Encoder",
    "check_texts",
    "empty_indices",
    "get_encoder",
    "is_empty_text",
    "resolve_outputs",
]

# name -> "module:Class"; modules are imported on first use so `import hybridsearch` stays light.
ENCODERS: dict[str, str] = {
    "bge-m3": "hybridsearch.encoders.bge_m3:BGEM3Encoder",
    "workers-ai": "hybridsearch.encoders.workers_ai:WorkersAIEncoder",
    "bm25": "hybridsearch.encoders.bm25:BM25Encoder",
    "bm25-word": "hybridsearch.encoders.bm25:BM25WordEncoder",
    "minilm": "hybridsearch.encoders.minilm:MiniLMEncoder",
}


def encoder_class(name: str) -> type[Encoder]:
    """The class registered under ``name``."""
    try:
        target = ENCODERS[name]
    except KeyError:
        raise ConfigError(f"unknown encoder {name!r}; expected one of: {', '.join(sorted(ENCODERS))}") from None
    module, _, cls = target.partition(":")
    return getattr(importlib.import_module(module), cls)


def get_encoder(name: str, **options: Any) -> Encoder:
    """Create the encoder registered under ``name`` with its keyword options.

    A composite is spelled ``"dense=minilm,sparse=bm25"``; options then apply to no part (build
    :class:`CompositeEncoder` directly to configure the parts).
    """
    if "=" in name:
        if options:
            raise ConfigError("options cannot be passed with a composite spec; build CompositeEncoder(...) directly")
        return CompositeEncoder.from_spec(name)
    cls = encoder_class(name)
    try:
        inspect.signature(cls).bind(**options)
    except TypeError as exc:
        accepted = [p.name for p in inspect.signature(cls).parameters.values() if p.kind is p.KEYWORD_ONLY]
        raise ConfigError(f"{name}: {exc}; its options are: {', '.join(accepted) or 'none'}") from None
    return cls(**options)
