"""The encoder interface every encoder implements, and the input checks they share."""

from __future__ import annotations

import abc
import threading
from collections.abc import Iterable, Sequence
from typing import Any, ClassVar, Literal

from ..errors import ConfigError, InputError
from ..types import MODES, Encoded, EncoderInfo, Mode

__all__ = ["EMPTY_POLICIES", "EmptyPolicy", "Encoder", "check_texts", "empty_indices", "is_empty_text", "resolve_outputs"]

EmptyPolicy = Literal["keep", "skip", "error"]
_LOCK_GUARD = threading.Lock()  # guards the lazy creation of per-encoder locks
EMPTY_POLICIES: tuple[str, ...] = ("keep", "skip", "error")


def is_empty_text(text: str) -> bool:
    """True for ``""`` and whitespace-only strings: texts with nothing to match."""
    return not text.strip()


def empty_indices(texts: Sequence[str]) -> list[int]:
    """Positions of the empty or whitespace-only texts in ``texts``."""
    return [i for i, t in enumerate(texts) if is_empty_text(t)]


def _preview(items: Sequence[object], limit: int = 5) -> str:
    return ", ".join(map(str, items[:limit])) + (", ..." if len(items) > limit else "")


def _count(n: int, noun: str) -> str:
    """``"1 query is"``, ``"3 queries are"``."""
    plural = noun[:-1] + "ies" if noun.endswith("y") else noun + "s"
    return f"1 {noun} is" if n == 1 else f"{n} {plural} are"


def check_texts(
    texts: Any, *, allow_empty: bool = False, max_items: int | None = None, what: str = "text"
) -> list[str]:
    """Validate a batch of texts and return it as a list.

    A single ``str`` counts as a batch of one. ``None``, non-string items and an empty batch raise
    :class:`InputError`. Empty or whitespace-only strings raise too unless ``allow_empty`` is set (documents
    may be empty; queries may not, see :meth:`Encoder.encode_queries`). ``what`` names the items in messages.
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
        empty = empty_indices(texts)
        if empty:
            raise InputError(
                f"{_count(len(empty), what)} empty or whitespace-only (indices {_preview(empty)}); remove or replace "
                + ("them" if len(empty) > 1 else "it")
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
    #: Whether the model gives empty texts an encoding (bge-m3 and MiniLM do; the Workers AI API rejects them).
    encodes_empty: bool = True
    #: Whether :meth:`_encode` may run on several threads at once. Model encoders set it False: FlagEmbedding and
    #: the Hugging Face tokenizer keep per-call state (query vs passage max length, padding, truncation), and
    #: concurrent query and document calls on one instance were seen to return the other's truncation,
    #: silently. Their calls are serialised by a lock per instance (the model itself uses all cores per call).
    thread_safe: ClassVar[bool] = True

    def _run(self, texts: list[str], *, is_query: bool, outputs: tuple[Mode, ...], show_progress: bool) -> Encoded:
        if self.thread_safe:
            return self._encode(texts, is_query=is_query, outputs=outputs, show_progress=show_progress)
        lock = self.__dict__.get("_encode_lock")
        if lock is None:
            with _LOCK_GUARD:
                lock = self.__dict__.setdefault("_encode_lock", threading.RLock())
        with lock:
            return self._encode(texts, is_query=is_query, outputs=outputs, show_progress=show_progress)

    def __getstate__(self) -> dict[str, Any]:
        state = self.__dict__.copy()
        state.pop("_encode_lock", None)  # a lock does not pickle (Ray ships encoders); a new one is made on use
        return state

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
        """Encode queries. ``outputs`` picks views (``"dense"``, ``"sparse"``, ``"multivector"``).

        An empty or whitespace-only query raises :class:`InputError`: it has nothing to match, and the vectors a
        model gives it (bge-m3 encodes only its special tokens) would rank documents arbitrarily. Drop empty
        queries before searching; the command line does the same (exit status 2).
        """
        outs = resolve_outputs(outputs, self.supported_outputs, self.default_outputs)
        return self._run(check_texts(texts, what="query"), is_query=True, outputs=outs, show_progress=show_progress)

    def encode_corpus(
        self,
        texts: Sequence[str] | str,
        *,
        outputs: Iterable[str] | str | None = None,
        show_progress: bool = False,
        empty: EmptyPolicy = "keep",
    ) -> Encoded:
        """Encode documents. Long corpora show a progress bar when ``show_progress`` is set.

        ``empty`` says what happens to empty or whitespace-only documents (a title-only page, a stripped table):

        - ``"keep"`` (default): encode them like any other text, as bge-m3, sentence-transformers and BM25
          libraries do: no lexical terms, and the dense and multi-vector views the model gives an empty input.
          Encoders whose model cannot encode an empty text (``encodes_empty`` false) raise :class:`InputError`.
        - ``"skip"``: leave them out; the result has one row per non-empty text, in order
          (``[i for i, t in enumerate(texts) if not is_empty_text(t)]`` gives their positions).
        - ``"error"``: raise :class:`InputError` naming their positions.

        A batch of only empty texts with ``"skip"`` raises :class:`InputError` (nothing would be left).
        """
        if empty not in EMPTY_POLICIES:
            raise ConfigError(f"empty must be one of {', '.join(map(repr, EMPTY_POLICIES))}, got {empty!r}")
        outs = resolve_outputs(outputs, self.supported_outputs, self.default_outputs)
        texts = check_texts(texts, allow_empty=empty != "error", what="document")
        blank = empty_indices(texts)
        if blank and empty == "skip":
            if len(blank) == len(texts):
                raise InputError(f"all {len(texts)} documents are empty or whitespace-only; nothing is left to encode")
            skipped = set(blank)
            texts = [t for i, t in enumerate(texts) if i not in skipped]
        elif blank and not self.encodes_empty:
            raise InputError(
                f"{_count(len(blank), 'document')} empty or whitespace-only (indices {_preview(blank)}) and "
                f"{self.info.name} cannot encode empty texts; skip them (empty='skip') or replace them"
            )
        return self._run(texts, is_query=False, outputs=outs, show_progress=show_progress)

    def __repr__(self) -> str:
        info = self.info
        return f"{type(self).__name__}(name={info.name!r}, model_id={info.model_id!r})"
