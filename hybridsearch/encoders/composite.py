"""Take each view from a different encoder: e.g. MiniLM dense + BM25 sparse as an offline hybrid."""

from __future__ import annotations

import hashlib
from typing import Any

from ..errors import ConfigError
from ..types import MODES, Encoded, EncoderInfo, Mode
from .base import Encoder

__all__ = ["CompositeEncoder"]


class CompositeEncoder(Encoder):
    """Combine encoders view by view.

    >>> enc = CompositeEncoder(dense=minilm, sparse=bm25)   # doctest: +SKIP
    >>> enc.encode_queries(["what is a hybrid index?"]).modes  # doctest: +SKIP
    ('dense', 'sparse')
    """

    name = "composite"

    def __init__(self, *, dense: Encoder | None = None, sparse: Encoder | None = None, multivector: Encoder | None = None) -> None:
        self.parts: dict[Mode, Encoder] = {}
        for mode, enc in (("dense", dense), ("sparse", sparse), ("multivector", multivector)):
            if enc is None:
                continue
            if not isinstance(enc, Encoder):
                raise ConfigError(f"{mode}= must be an Encoder, got {type(enc).__name__}")
            if mode not in enc.supported_outputs:
                raise ConfigError(f"{enc.info.name} cannot produce {mode} (it supports {list(enc.supported_outputs)})")
            self.parts[mode] = enc  # type: ignore[index]
        if not self.parts:
            raise ConfigError("CompositeEncoder needs at least one of dense=, sparse=, multivector=")
        self.supported_outputs = tuple(m for m in MODES if m in self.parts)
        self.default_outputs = self.supported_outputs
        self.encodes_empty = all(p.encodes_empty for p in self.parts.values())

    @classmethod
    def from_spec(cls, spec: str) -> CompositeEncoder:
        """Parse ``"dense=minilm,sparse=bm25"``."""
        from . import get_encoder

        parts: dict[str, Any] = {}
        for item in spec.split(","):
            mode, sep, name = item.strip().partition("=")
            if not sep or mode not in MODES or not name:
                raise ConfigError(f"bad composite spec {spec!r}; write it like 'dense=minilm,sparse=bm25'")
            if mode in parts:
                raise ConfigError(f"{mode} given twice in composite spec {spec!r}")
            parts[mode] = get_encoder(name.strip())
        return cls(**parts)

    @property
    def info(self) -> EncoderInfo:
        infos = {m: e.info for m, e in self.parts.items()}
        name = ",".join(f"{m}={i.name}" for m, i in infos.items())
        model_id = ",".join(f"{m}={i.model_id}" for m, i in infos.items())
        fp = hashlib.sha256("|".join(f"{m}:{i.fingerprint}" for m, i in infos.items()).encode()).hexdigest()[:16]
        return EncoderInfo(name=name, model_id=model_id, fingerprint=fp, parts=infos)

    def _encode(self, texts: list[str], *, is_query: bool, outputs: tuple[Mode, ...], show_progress: bool) -> Encoded:
        views: dict[str, Any] = {}
        # One call per distinct part encoder, asking it for every view it is responsible for.
        by_encoder: dict[int, list[Mode]] = {}
        for mode in outputs:
            by_encoder.setdefault(id(self.parts[mode]), []).append(mode)
        for modes in by_encoder.values():
            enc = self.parts[modes[0]]
            fn = enc.encode_queries if is_query else enc.encode_corpus
            out = fn(texts, outputs=modes, show_progress=show_progress)
            for m in modes:
                views[m] = getattr(out, m)
        return Encoded(**views, encoder=self.info)
