"""The encoder interface every encoder implements, and the input checks they share."""

from __future__ import annotations

import abc
from collections.abc import Iterable, Sequence
from typing import Any

from ..errors import ConfigError, InputError
from ..types import MODES, Encoded, EncoderInfo, Mode

__all__ = ["Encoder", "check_texts", "resolve_outputs"]


def check_texts(texts: Any, *, allow_empty: bool = False, max_items: int | None = None) -> list[str]:
    """Validate a batch of texts and return it as a list.

    A single ``str`` counts as a batch of one. ``None``, non-string items and an empty batch raise
    :class:`InputError`. Empty or whitespace-only strings raise too unless ``allow_empty`` is set: they
    carry no content, so their vectors would be meaningless and usually point to a bug upstream.
    """
    if texts is None:
        raise InputError("texts is None; pass a list of strings")
    if isinstance(texts, str):
        texts = [texts]
    elif isinstance(texts, (bytes, bytearray)):
        raise InputError("texts must be str, not bytes; decode them first (e.g. b.decode('utf-8'))")
    elif not isinstance(texts, Sequence):
        if isinstance(texts, Iterable):
            texts = list(texts)
        else:
            raise InputError(f"texts must be a list of strings, got {type(texts).__name__}")
    texts = list(texts)
    if not texts:
        raise InputError("texts is empty; pass at least one string")
    if max_items is not None and len(texts) > max_items:
        raise InputError(f"{len(texts)} texts given, at most {max_items} are allowed per call; split the batch")
    for i, t in enumerate(texts):
        if not isinstance(t, str):
            raise InputError(f"texts[{i}] is {type(t).__name__}, not str; every item must be a string")
    if not allow_empty:
        empty = [i for i, t in enumerate(texts) if not t.strip()]
        if empty:
            shown = ", ".join(map(str, empty[:5])) + (", ..." if len(empty) > 5 else "")
            raise InputError(
                f"{len(empty)} text(s) are empty or whitespace-only (indices {shown}); remove or replace them"
            )
    return texts


def resolve_outputs(outputs: Iterable[str] | str | None, supported: Sequence[Mode], default: Sequence[Mode]) -> tuple[Mode, ...]:
    """Normalise the ``outputs`` argument to a tuple of supported modes, in canonical order."""
    if outputs is None:
        return tuple(m for m in MODES if m in default)
    if isinstance(outputs, str):
        outputs = [outputs]
    wanted = set(outputs)
    unknown = wanted - set(MODES)
    if unknown:
        raise ConfigError(f"unknown output(s) {sorted(unknown)}; choose from {list(MODES)}")
    unsupported = wanted - set(supported)
    if unsupported:
        raise ConfigError(f"this encoder cannot produce {sorted(unsupported)}; it supports {list(supported)}")
    if not wanted:
        raise ConfigError(f"outputs is empty; choose at least one of {list(supported)}")
    return tuple(m for m in MODES if m in wanted)


class Encoder(abc.ABC):
    """Turns texts into :class:`~hybridsearch.types.Encoded`.

    Subclasses set ``name``, ``supported_outputs`` and ``default_outputs`` and implement :meth:`_encode`.
    Queries and documents may be encoded differently (max length, instructions, BM25 query weighting), so
    callers use :meth:`encode_queries` for queries and :meth:`encode_corpus` for documents.
    """

    name: str = ""
    supported_outputs: tuple[Mode, ...] = ()
    default_outputs: tuple[Mode, ...] = ()

    @property
    @abc.abstractmethod
    def info(self) -> EncoderInfo:
        """Identity of this encoder: name, model id and a fingerprint of its weights or fitted state."""

    @abc.abstractmethod
    def _encode(self, texts: list[str], *, is_query: bool, outputs: tuple[Mode, ...], show_progress: bool) -> Encoded:
        """Encode a validated, non-empty batch."""

    def encode_queries(
        self, texts: Sequence[str] | str, *, outputs: Iterable[str] | str | None = None, show_progress: bool = False
    ) -> Encoded:
        """Encode queries. ``outputs`` picks views (``"dense"``, ``"sparse"``, ``"multivector"``)."""
        outs = resolve_outputs(outputs, self.supported_outputs, self.default_outputs)
        return self._encode(check_texts(texts), is_query=True, outputs=outs, show_progress=show_progress)

    def encode_corpus(
        self, texts: Sequence[str] | str, *, outputs: Iterable[str] | str | None = None, show_progress: bool = False
    ) -> Encoded:
        """Encode documents. Long corpora show a progress bar when ``show_progress`` is set."""
        outs = resolve_outputs(outputs, self.supported_outputs, self.default_outputs)
        return self._encode(check_texts(texts), is_query=False, outputs=outs, show_progress=show_progress)

    def __repr__(self) -> str:
        info = self.info
        return f"{type(self).__name__}(name={info.name!r}, model_id={info.model_id!r})"
