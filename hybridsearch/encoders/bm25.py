"""BM25 as sparse vectors: ``bm25`` over bge-m3's XLM-R token ids, ``bm25-word`` over Unicode words.

A document's score for a query is Lucene's BM25::

    score(q, d) = sum over terms t of  qtf(t) * idf(t) * w(t, d)
    w(t, d)     = tf * (k1 + 1) / (tf + k1 * (1 - b + b * dl / avgdl))        the document vector
    idf(t)      = ln(1 + (N - df(t) + 0.5) / (df(t) + 0.5))                 applied at query time

Document vectors carry only the term-frequency part ``w(t, d)``; query vectors carry the query term counts
``qtf`` (a repeated query term counts twice, as in Anserini's bag-of-words queries). ``idf`` is applied when
searching, from the *searched collection's* statistics, as Lucene and Qdrant (``Modifier.IDF``) do:
:class:`~hybridsearch.index.HybridIndex` takes ``N`` and ``df`` from its live documents (all segments, deleted
documents excluded), so adding, deleting or upserting documents moves every score with the collection and never
leaves stale weights behind. Outside an index, :meth:`~_BM25Base.apply_idf` weights queries with the fitted
statistics, after which ``queries.sparse @ documents.sparse.T`` is exactly the BM25 score.

:meth:`~_BM25Base.fit` sets ``avgdl`` (kept fixed afterwards, like Qdrant's ``avg_len``), the fitted ``N`` and
``df`` (used by :meth:`~_BM25Base.apply_idf`) and, for ``bm25-word``, the vocabulary. The encoder's fingerprint
covers what decides the vectors: analyzer, ``k1``, ``b``, ``avgdl`` and the vocabulary; not ``df``. Defaults
``k1=0.9, b=0.4`` are Anserini's.
"""

from __future__ import annotations

import abc
import hashlib
import io
import json
import numbers
import os
import zipfile
from collections.abc import Iterable, Sequence
from itertools import repeat
from pathlib import Path
from typing import Any, TypeVar

import numpy as np
import scipy.sparse as sp

from .._atomic import write_bytes_atomic
from .._progress import progress
from ..analyzers import Normalization, WordAnalyzer, XLMRTokenAnalyzer
from ..errors import ConfigError, InputError
from ..types import Encoded, EncoderInfo, Mode
from .base import Encoder, check_texts

__all__ = ["BM25Encoder", "BM25WordEncoder", "bm25_idf"]

_FORMAT = "hybridsearch.bm25"
_VERSION = 1
_CHUNK = 2048  # texts analyzed per step: bounds memory and drives the progress bar

_Self = TypeVar("_Self", bound="_BM25Base")


def _term_counts(ids: np.ndarray, offsets: np.ndarray, n_cols: int) -> tuple[sp.csr_matrix, np.ndarray]:
    """Term counts ``(n, n_cols)`` (int32, sorted unique ids per row) and each text's length ``dl``.

    ``ids < 0`` mark tokens outside the vocabulary: they count in ``dl`` but get no column.
    """
    n = offsets.size - 1
    dl = np.diff(offsets)
    rows = np.repeat(np.arange(n, dtype=np.int64), dl)
    keep = ids >= 0
    if not keep.all():
        rows, ids = rows[keep], ids[keep]
    stride = max(n_cols, 1)
    keys, tf = np.unique(rows * stride + ids, return_counts=True)  # sorted by (row, id)
    rows = keys // stride
    indptr = np.zeros(n + 1, np.int64)
    np.cumsum(np.bincount(rows, minlength=n), out=indptr[1:])
    cols = (keys - rows * stride).astype(np.int32)
    return sp.csr_matrix((tf.astype(np.int32), cols, indptr), shape=(n, n_cols)), dl


def bm25_idf(df: np.ndarray, n_docs: int) -> np.ndarray:
    """Lucene's BM25 idf, float64: ``ln(1 + (N - df + 0.5) / (df + 0.5))``; ``0`` where ``df`` is 0."""
    df = np.asarray(df, dtype=np.float64)
    idf = np.log1p((n_docs - df + 0.5) / (df + 0.5))
    idf[df == 0] = 0.0
    return idf


def _df_digest(df: np.ndarray) -> str:
    return hashlib.sha256(np.asarray(df, dtype="<i8").tobytes()).hexdigest()[:16]


def _nonzero(m: sp.csr_matrix) -> sp.csr_matrix:
    m = sp.csr_matrix(m, dtype=np.float32)
    m.eliminate_zeros()
    return m


def _filter_csr(m: sp.csr_matrix, keep: np.ndarray, data: np.ndarray) -> sp.csr_matrix:
    """``m``'s structure with entries where ``keep`` is true, holding ``data`` (float32, int32 ids)."""
    n = m.shape[0]
    if keep.all():
        return sp.csr_matrix((data.astype(np.float32), m.indices.astype(np.int32), m.indptr.copy()), shape=m.shape)
    rows = np.repeat(np.arange(n), np.diff(m.indptr))[keep]
    indptr = np.zeros(n + 1, np.int64)
    np.cumsum(np.bincount(rows, minlength=n), out=indptr[1:])
    return sp.csr_matrix((data[keep].astype(np.float32), m.indices[keep].astype(np.int32), indptr), shape=m.shape)


class _BM25Base(Encoder):
    """The BM25 math and fitted statistics; subclasses supply the analyzer and the vocabulary."""

    supported_outputs: tuple[Mode, ...] = ("sparse",)
    default_outputs: tuple[Mode, ...] = ("sparse",)

    def __init__(self, *, k1: float = 0.9, b: float = 0.4) -> None:
        for label, value in (("k1", k1), ("b", b)):
            if isinstance(value, bool) or not isinstance(value, numbers.Real) or not np.isfinite(value):
                raise ConfigError(f"{label} must be a finite number, got {value!r}")
        if k1 < 0:
            raise ConfigError(f"k1 must be >= 0, got {k1}")
        if not 0 <= b <= 1:
            raise ConfigError(f"b must be between 0 and 1, got {b}")
        self._k1 = float(k1)
        self._b = float(b)
        self._n_docs = 0
        self._sum_dl = 0
        self._df: np.ndarray | None = None
        self._idf: np.ndarray | None = None
        self._fingerprint: str | None = None

    # ------------------------------------------------------------------ analyzer hooks
    @property
    @abc.abstractmethod
    def vocab_size(self) -> int:
        """Width of the sparse vectors."""

    @abc.abstractmethod
    def _analyzer_state(self) -> dict[str, Any]:
        """JSON settings that decide the term ids; saved and hashed into the fingerprint."""

    @abc.abstractmethod
    def _describe_analyzer(self) -> str:
        """A short readable name of the analyzer for ``info.model_id``."""

    @abc.abstractmethod
    def _ids(self, texts: list[str], *, fitting: bool) -> tuple[np.ndarray, np.ndarray]:
        """Flat term ids (``-1`` for terms outside the vocabulary) and offsets of a batch."""

    def _width(self, *, fitting: bool) -> int:
        return self.vocab_size

    def _begin_fit(self) -> None:
        """Prepare a fresh vocabulary for fitting (the committed one stays until :meth:`_commit_fit`)."""

    def _commit_fit(self, counts: sp.csr_matrix) -> sp.csr_matrix:
        """Make the vocabulary built while fitting current; return ``counts`` in its final id space."""
        return counts

    def _vocab_bytes(self) -> bytes:
        return b""

    # ------------------------------------------------------------------ parameters and fitted state
    @property
    def k1(self) -> float:
        """Term-frequency saturation (read-only: the fingerprint and saved statistics depend on it)."""
        return self._k1

    @property
    def b(self) -> float:
        """Document-length normalization, 0 (none) to 1 (full); read-only."""
        return self._b

    @property
    def is_fitted(self) -> bool:
        return self._df is not None

    @property
    def n_docs(self) -> int:
        """Number of documents the statistics were fitted on (``N``)."""
        return self._n_docs

    @property
    def avgdl(self) -> float:
        """Average document length in terms (``0.0`` before fitting)."""
        return self._sum_dl / self._n_docs if self._n_docs else 0.0

    @property
    def df(self) -> np.ndarray:
        """Document frequency per term id, int64 ``(vocab_size,)`` (a copy)."""
        return self._need_fitted()[0].copy()

    @property
    def idf(self) -> np.ndarray:
        """Lucene idf per term id, float64 ``(vocab_size,)``; ``0`` for terms no fitted document holds."""
        return self._need_fitted()[1].copy()

    def _need_fitted(self) -> tuple[np.ndarray, np.ndarray]:
        if self._df is None or self._idf is None:
            raise ConfigError(
                f"the {self.name} encoder is not fitted: call .fit(corpus_texts) first, or load saved "
                f"statistics with {type(self).__name__}.load(path)"
            )
        return self._df, self._idf

    def _set_stats(self, df: np.ndarray, n_docs: int, sum_dl: int) -> None:
        df = np.asarray(df, dtype=np.int64)
        self._df, self._n_docs, self._sum_dl = df, int(n_docs), int(sum_dl)
        self._idf = bm25_idf(df, n_docs)
        self._fingerprint = None

    def apply_idf(self, queries: Encoded) -> Encoded:
        """``queries`` (from :meth:`encode_queries`) weighted by the *fitted* idf, for searching outside a
        :class:`~hybridsearch.index.HybridIndex` (which applies its own live idf instead): afterwards
        ``queries.sparse @ documents.sparse.T`` is the BM25 score over the fitted corpus."""
        _, idf = self._need_fitted()
        q = queries.sparse
        if q is None or q.shape[1] != self.vocab_size:
            raise InputError(f"apply_idf takes this encoder's query vectors (sparse, width {self.vocab_size})")
        weighted = sp.csr_matrix((q.data * idf[q.indices], q.indices.copy(), q.indptr.copy()), shape=q.shape)
        return Encoded(sparse=_nonzero(weighted), encoder=queries.encoder)

    # ------------------------------------------------------------------ fitting and encoding
    def _count(
        self, texts: list[str], *, fitting: bool, show_progress: bool, desc: str
    ) -> tuple[sp.csr_matrix, np.ndarray]:
        parts: list[sp.csr_matrix] = []
        lengths: list[np.ndarray] = []
        with progress(len(texts), desc, enabled=show_progress) as bar:
            for start in range(0, len(texts), _CHUNK):
                chunk = texts[start : start + _CHUNK]
                ids, offsets = self._ids(chunk, fitting=fitting)
                counts, dl = _term_counts(ids, offsets, self._width(fitting=fitting))
                parts.append(counts)
                lengths.append(dl)
                bar.update(len(chunk))
        width = self._width(fitting=fitting)
        for p in parts:  # while fitting words the vocabulary grows chunk by chunk
            if p.shape[1] != width:
                p.resize((p.shape[0], width))
        counts = parts[0] if len(parts) == 1 else sp.vstack(parts, format="csr")
        return counts, np.concatenate(lengths)

    def _fit_counts(self, texts: Any, show_progress: bool) -> tuple[sp.csr_matrix, np.ndarray]:
        texts = check_texts(texts, allow_empty=True, what="document")  # empty documents count in N, with length 0
        self._begin_fit()
        counts, dl = self._count(texts, fitting=True, show_progress=show_progress, desc=f"{self.name} fit")
        if int(dl.sum()) == 0:
            raise InputError(
                f"the corpus has no terms after analysis ({len(texts)} texts of only punctuation, stopwords "
                "or special tokens); fit on real documents"
            )
        counts = self._commit_fit(counts)
        df = np.bincount(counts.indices, minlength=counts.shape[1])
        self._set_stats(df, len(texts), int(dl.sum()))
        return counts, dl

    def fit(self: _Self, texts: Sequence[str], *, show_progress: bool = False) -> _Self:
        """Compute ``N``, ``df`` and ``avgdl`` on a corpus (replacing earlier statistics); returns ``self``.

        >>> enc = BM25WordEncoder().fit(["the cat sat", "a dog barked"])
        >>> enc.n_docs, enc.avgdl
        (2, 3.0)
        """
        self._fit_counts(texts, show_progress)
        return self

    def fit_encode_corpus(self, texts: Sequence[str], *, show_progress: bool = False) -> Encoded:
        """:meth:`fit` then :meth:`encode_corpus` on the same texts, analyzing them once."""
        counts, dl = self._fit_counts(texts, show_progress)
        return Encoded(sparse=self._doc_weights(counts, dl), encoder=self.info)

    def _doc_weights(self, counts: sp.csr_matrix, dl: np.ndarray) -> sp.csr_matrix:
        self._need_fitted()
        tf = counts.data.astype(np.float64)
        norm = self.k1 * (1.0 - self.b + self.b * dl.astype(np.float64) / self.avgdl)
        rows = np.repeat(np.arange(counts.shape[0]), np.diff(counts.indptr))
        w = tf * (self.k1 + 1.0) / (tf + norm[rows])  # the term-frequency part; idf comes at query time
        return _filter_csr(counts, w > 0, w)

    def _query_weights(self, counts: sp.csr_matrix) -> sp.csr_matrix:
        self._need_fitted()
        return _filter_csr(counts, np.ones(counts.nnz, bool), counts.data)

    def _encode(self, texts: list[str], *, is_query: bool, outputs: tuple[Mode, ...], show_progress: bool) -> Encoded:
        self._need_fitted()
        desc = f"{self.name} {'queries' if is_query else 'documents'}"
        counts, dl = self._count(texts, fitting=False, show_progress=show_progress, desc=desc)
        sparse = self._query_weights(counts) if is_query else self._doc_weights(counts, dl)
        return Encoded(sparse=sparse, encoder=self.info)

    # ------------------------------------------------------------------ identity
    def _core(self) -> dict[str, Any]:
        return {
            "format": _FORMAT,
            "name": self.name,
            "k1": self.k1,
            "b": self.b,
            "analyzer": self._analyzer_state(),
            "n_docs": self._n_docs,
            "sum_dl": self._sum_dl,
            "vocab_size": self.vocab_size,
        }

    def _compute_fingerprint(self) -> str:
        # what decides the vectors: the term space, k1, b and avgdl; df and N only enter idf, applied at query time
        ident = {k: v for k, v in self._core().items() if k not in ("n_docs", "sum_dl")}
        ident["avgdl"] = float.hex(float(self.avgdl))
        h = hashlib.sha256(json.dumps(ident, sort_keys=True).encode("utf-8"))
        h.update(b"tf-part-v2")
        if self._df is None:
            h.update(b"unfitted")
        else:
            h.update(self._vocab_bytes())
        return h.hexdigest()[:16]

    @property
    def info(self) -> EncoderInfo:
        """Name, ``k1``/``b``/analyzer as ``model_id``, and a fingerprint of the settings and fitted statistics."""
        if self._fingerprint is None:
            self._fingerprint = self._compute_fingerprint()
        model_id = f"k1={self.k1:g},b={self.b:g},{self._describe_analyzer()}"
        return EncoderInfo(name=self.name, model_id=model_id, fingerprint=self._fingerprint)

    def __repr__(self) -> str:
        fitted = f"fitted on {self._n_docs} docs" if self.is_fitted else "not fitted"
        return f"{type(self).__name__}(k1={self.k1:g}, b={self.b:g}, {self._describe_analyzer()}, {fitted})"

    # ------------------------------------------------------------------ persistence
    def save(self, path: str | os.PathLike[str]) -> Path:
        """Write the fitted statistics as one ``.npz`` (JSON header + arrays, no pickles), atomically."""
        df, _ = self._need_fitted()
        path = Path(path)
        if path.suffix != ".npz":
            path = path.with_name(path.name + ".npz")
        header = {**self._core(), "version": _VERSION, "fingerprint": self.info.fingerprint, "df_sha256": _df_digest(df)}
        arrays = {
            "header": np.frombuffer(json.dumps(header).encode("utf-8"), dtype=np.uint8),
            "df": df.astype("<i8"),
            "vocab": np.frombuffer(self._vocab_bytes(), dtype=np.uint8),
        }
        buf = io.BytesIO()
        np.savez(buf, **arrays)
        write_bytes_atomic(path, buf.getvalue())
        return path

    @classmethod
    def _read(cls, path: str | os.PathLike[str]) -> tuple[dict[str, Any], np.ndarray, bytes]:
        path = Path(path)
        if not path.exists() and path.with_name(path.name + ".npz").exists():
            path = path.with_name(path.name + ".npz")
        try:
            with np.load(path, allow_pickle=False) as z:
                header = json.loads(bytes(z["header"]).decode("utf-8"))
                df = np.asarray(z["df"], dtype=np.int64)
                vocab = bytes(z["vocab"])
        except FileNotFoundError:
            raise InputError(f"no saved BM25 statistics at {path}") from None
        except (KeyError, ValueError, OSError, EOFError, zipfile.BadZipFile) as exc:
            raise InputError(f"{path} is not readable BM25 statistics saved by hybridsearch: {exc}") from exc
        if not isinstance(header, dict) or header.get("format") != _FORMAT:
            raise InputError(f"{path} is not a hybridsearch BM25 statistics file")
        if int(header.get("version", 0)) > _VERSION:
            raise InputError(
                f"{path} was written by a newer hybridsearch (version {header['version']}); upgrade to read it"
            )
        if header.get("name") != cls.name:
            other = {"bm25": "BM25Encoder", "bm25-word": "BM25WordEncoder"}.get(
                str(header.get("name")), "another class"
            )
            raise InputError(f"{path} holds {header.get('name')!r} statistics; load it with {other}.load")
        return header, df, vocab

    @abc.abstractmethod
    def _load_like(self: _Self, path: str | os.PathLike[str]) -> _Self:
        """A new encoder holding the state saved at ``path``, built to replace this one."""

    def load_state(self: _Self, path: str | os.PathLike[str]) -> _Self:
        """Replace this encoder's parameters and fitted statistics with those saved by :meth:`save`.

        Nothing changes when the file cannot be loaded. ``bm25`` keeps its tokenizer, which must be the one
        the statistics were fitted with; ``bm25-word`` takes the saved analyzer settings. Returns ``self``.
        """
        self.__dict__.update(self._load_like(path).__dict__)
        return self

    def _restore(self, header: dict[str, Any], df: np.ndarray, path: str | os.PathLike[str]) -> None:
        if df.shape != (self.vocab_size,) or (df < 0).any() or int(header["n_docs"]) <= 0:
            raise InputError(f"{path} is damaged: document frequencies do not fit the vocabulary")
        self._set_stats(df, int(header["n_docs"]), int(header["sum_dl"]))
        if self.info.fingerprint != header.get("fingerprint") or header.get("df_sha256", _df_digest(df)) != _df_digest(df):
            raise InputError(f"{path} is damaged: its content does not match its recorded fingerprint")


class BM25Encoder(_BM25Base):
    """BM25 over bge-m3's XLM-RoBERTa token ids (the BM25 baseline of the bge-m3 paper).

    Vectors have bge-m3's sparse shape ``(n, 250002)``. ``tokenizer`` is a ``tokenizer.json`` path, a model
    folder holding one, a ``tokenizers.Tokenizer``, or ``None`` for
    ``$HYBRIDSEARCH_DATA/tokenizers/xlm-roberta/tokenizer.json`` (read offline), or an
    :class:`~hybridsearch.analyzers.XLMRTokenAnalyzer` to share. Special tokens are dropped;
    see :class:`~hybridsearch.analyzers.XLMRTokenAnalyzer`. Texts whose tokens are all special, unknown or
    outside the fitted vocabulary (queries) encode to empty rows.

    >>> enc = BM25Encoder().fit(corpus)           # doctest: +SKIP
    >>> docs = enc.encode_corpus(corpus)          # doctest: +SKIP
    >>> scores = enc.apply_idf(enc.encode_queries(["what causes tides?"])).sparse @ docs.sparse.T  # doctest: +SKIP
    """

    name = "bm25"

    def __init__(
        self, *, tokenizer: str | os.PathLike[str] | Any | None = None, k1: float = 0.9, b: float = 0.4
    ) -> None:
        super().__init__(k1=k1, b=b)
        self.analyzer = tokenizer if isinstance(tokenizer, XLMRTokenAnalyzer) else XLMRTokenAnalyzer(tokenizer)

    @property
    def vocab_size(self) -> int:
        return self.analyzer.vocab_size

    def _analyzer_state(self) -> dict[str, Any]:
        return {"type": "xlmr-tokens", "tokenizer": self.analyzer.identity}

    def _describe_analyzer(self) -> str:
        return f"xlmr-tokens:{self.analyzer.identity}"

    def _ids(self, texts: list[str], *, fitting: bool) -> tuple[np.ndarray, np.ndarray]:
        return self.analyzer.token_ids(texts)

    @classmethod
    def load(
        cls, path: str | os.PathLike[str], *, tokenizer: str | os.PathLike[str] | Any | None = None
    ) -> BM25Encoder:
        """A fitted encoder from :meth:`save`'s file; ``tokenizer`` (as in the constructor) must give the
        same token ids as the one used for fitting."""
        header, df, _ = cls._read(path)
        enc = cls(tokenizer=tokenizer, k1=float(header["k1"]), b=float(header["b"]))
        saved = header.get("analyzer", {}).get("tokenizer")
        if saved != enc.analyzer.identity:
            raise ConfigError(
                f"{path} was fitted with tokenizer {saved}, but the tokenizer given here is {enc.analyzer.identity} "
                f"({enc.analyzer.source}); pass tokenizer= the tokenizer.json used for fitting"
            )
        enc._restore(header, df, path)
        return enc

    def _load_like(self, path: str | os.PathLike[str]) -> BM25Encoder:
        return type(self).load(path, tokenizer=self.analyzer)


class BM25WordEncoder(_BM25Base):
    """BM25 over Unicode words: the stronger lexical baseline (Lucene-style analysis, no subword pieces).

    The vocabulary is the set of words of the fitted corpus (ids in sorted word order), saved with the
    statistics; vectors have shape ``(n, len(vocabulary))`` and query words outside it are dropped.
    Analysis options are those of :class:`~hybridsearch.analyzers.WordAnalyzer`: by default NFKC, lowercase,
    Unicode words, no stopwords, no stemming.

    >>> enc = BM25WordEncoder(stemmer="english").fit(["Cats sat on mats.", "A dog barked."])
    >>> enc.vocabulary
    ['a', 'bark', 'cat', 'dog', 'mat', 'on', 'sat']
    """

    name = "bm25-word"

    def __init__(
        self,
        *,
        k1: float = 0.9,
        b: float = 0.4,
        normalize: Normalization | None = "NFKC",
        lowercase: bool = True,
        strip_accents: bool = False,
        stopwords: str | Iterable[str] | None = None,
        stemmer: str | None = None,
    ) -> None:
        super().__init__(k1=k1, b=b)
        self.analyzer = WordAnalyzer(
            normalize=normalize, lowercase=lowercase, strip_accents=strip_accents, stopwords=stopwords, stemmer=stemmer
        )
        self._words: list[str] = []
        self._vocab: dict[str, int] = {}
        self._building: dict[str, int] = {}

    @property
    def vocab_size(self) -> int:
        return len(self._words)

    @property
    def vocabulary(self) -> list[str]:
        """The fitted words; position ``i`` is term id ``i``."""
        return list(self._words)

    def _analyzer_state(self) -> dict[str, Any]:
        return {"type": "words", **self.analyzer.config}

    def _describe_analyzer(self) -> str:
        return self.analyzer.describe()

    def _width(self, *, fitting: bool) -> int:
        return len(self._building) if fitting else len(self._words)

    def _begin_fit(self) -> None:
        self._building = {}

    def _ids(self, texts: list[str], *, fitting: bool) -> tuple[np.ndarray, np.ndarray]:
        terms, offsets = self.analyzer.terms(texts)
        if fitting:
            vocab = self._building
            new = [w for w in dict.fromkeys(terms) if w not in vocab]  # one step per distinct word
            vocab.update(zip(new, range(len(vocab), len(vocab) + len(new)), strict=True))
            ids = np.fromiter(map(vocab.__getitem__, terms), dtype=np.int64, count=len(terms))
        else:
            ids = np.fromiter(map(self._vocab.get, terms, repeat(-1)), dtype=np.int64, count=len(terms))
        return ids, offsets

    def _commit_fit(self, counts: sp.csr_matrix) -> sp.csr_matrix:
        # Ids were handed out in order of first appearance; renumber them in sorted word order so the
        # same corpus in any order gives the same vocabulary, statistics and fingerprint.
        building, self._building = self._building, {}
        words = sorted(building)
        new_id = np.empty(len(words), np.int64)
        new_id[np.fromiter(map(building.__getitem__, words), np.int64, count=len(words))] = np.arange(len(words))
        counts = sp.csr_matrix(
            (counts.data, new_id[counts.indices].astype(np.int32), counts.indptr), shape=counts.shape
        )
        counts.sort_indices()
        self._words = words
        self._vocab = dict(zip(words, range(len(words)), strict=True))
        return counts

    def _vocab_bytes(self) -> bytes:
        return "\n".join(self._words).encode("utf-8")

    @classmethod
    def load(cls, path: str | os.PathLike[str]) -> BM25WordEncoder:
        """Statistics, vocabulary and analyzer settings saved by :meth:`save`."""
        header, df, vocab = cls._read(path)
        state = dict(header.get("analyzer", {}))
        if state.pop("type", None) != "words":
            raise InputError(f"{path} is damaged: it does not describe a word analyzer")
        enc = cls(k1=float(header["k1"]), b=float(header["b"]))
        enc.analyzer = WordAnalyzer.from_config(state)
        words = vocab.decode("utf-8").split("\n") if vocab else []
        if len(words) != df.size:
            raise InputError(f"{path} is damaged: {len(words)} words for {df.size} document frequencies")
        enc._words = words
        enc._vocab = dict(zip(words, range(len(words)), strict=True))
        enc._restore(header, df, path)
        return enc

    def _load_like(self, path: str | os.PathLike[str]) -> BM25WordEncoder:
        return type(self).load(path)
