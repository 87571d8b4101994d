"""BM25 corpus statistics gathered shard by shard and merged, so a sharded corpus scores as one corpus.

BM25 weights a document's terms with statistics of the whole corpus: the number of documents ``N``, the
total length ``Σ dl`` (for ``avgdl``) and each term's document frequency ``df``. All three are sums over
documents, so each shard counts its own and the counts add up exactly (integers, no rounding): merging the
per-shard :class:`CorpusStatistics` and fitting the encoder with the result gives the same fitted state, the
same fingerprint and the same vectors as ``encoder.fit(all_texts)`` in one process.

For ``bm25`` (XLM-R token ids) ``df`` is a fixed-width array over the tokenizer's vocabulary. For
``bm25-word`` each shard's vocabulary is different, so ``df`` is kept per word and merged by word; the merged
vocabulary is sorted, as :meth:`BM25WordEncoder.fit` orders it.

When the inverse document frequency is applied at query time (the index holding ``df``), document vectors
need only ``N`` and ``Σ dl`` for length normalisation (and the vocabulary for words); the same merge provides
them, and ``df`` stays available for the index.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from ..encoders.base import Encoder, check_texts
from ..encoders.bm25 import BM25Encoder, BM25WordEncoder, _term_counts
from ..errors import ConfigError, InputError

__all__ = ["CorpusStatistics"]


@dataclass
class CorpusStatistics:
    """``N``, ``Σ dl`` and document frequencies of part of a corpus, for one BM25 encoder.

    ``df`` is int64 ``(vocab_size,)`` for ``bm25``; ``word_df`` maps word to document frequency for
    ``bm25-word``. Add two with ``a + b`` or :meth:`merge`.
    """

    kind: str  # "bm25" or "bm25-word"
    n_docs: int = 0
    sum_dl: int = 0
    df: np.ndarray | None = None
    word_df: dict[str, int] = field(default_factory=dict)

    @classmethod
    def gather(cls, encoder: Encoder, texts: Sequence[str]) -> CorpusStatistics:
        """Count the statistics of ``texts`` with ``encoder``'s analyzer (the encoder is not changed)."""
        texts = check_texts(texts)
        if isinstance(encoder, BM25WordEncoder):
            terms, offsets = encoder.analyzer.terms(texts)
            local: dict[str, int] = {}
            ids = np.fromiter((local.setdefault(t, len(local)) for t in terms), np.int64, count=len(terms))
            counts, dl = _term_counts(ids, offsets, len(local))
            df = np.bincount(counts.indices, minlength=len(local))
            words = list(local)
            return cls("bm25-word", len(texts), int(dl.sum()), None, {words[i]: int(df[i]) for i in np.flatnonzero(df)})
        if isinstance(encoder, BM25Encoder):
            ids, offsets = encoder.analyzer.token_ids(texts)
            counts, dl = _term_counts(ids, offsets, encoder.vocab_size)
            df = np.bincount(counts.indices, minlength=encoder.vocab_size).astype(np.int64)
            return cls("bm25", len(texts), int(dl.sum()), df)
        raise ConfigError(f"corpus statistics are defined for the bm25 and bm25-word encoders, not {encoder.info.name!r}")

    def __add__(self, other: CorpusStatistics) -> CorpusStatistics:
        if not isinstance(other, CorpusStatistics):
            return NotImplemented
        if other.kind != self.kind:
            raise InputError(f"cannot merge {self.kind} statistics with {other.kind} statistics")
        if self.kind == "bm25":
            if self.df is None or other.df is None:
                df = self.df if other.df is None else other.df
            elif self.df.shape != other.df.shape:
                raise InputError(f"cannot merge statistics over vocabularies of {self.df.size} and {other.df.size} tokens")
            else:
                df = self.df + other.df
            return CorpusStatistics("bm25", self.n_docs + other.n_docs, self.sum_dl + other.sum_dl, df)
        merged = Counter(self.word_df)
        merged.update(other.word_df)
        return CorpusStatistics("bm25-word", self.n_docs + other.n_docs, self.sum_dl + other.sum_dl, None, dict(merged))

    @staticmethod
    def merge(parts: Iterable[CorpusStatistics]) -> CorpusStatistics:
        """The statistics of the union of the parts' documents (each document counted in exactly one part)."""
        parts = list(parts)
        if not parts:
            raise InputError("no statistics to merge")
        total = parts[0]
        for p in parts[1:]:
            total = total + p
        return total

    @property
    def avgdl(self) -> float:
        return self.sum_dl / self.n_docs if self.n_docs else 0.0

    def apply(self, encoder: Encoder) -> Encoder:
        """Fit ``encoder`` with these statistics, as ``encoder.fit(texts)`` over all the counted texts would."""
        if self.n_docs <= 0 or self.sum_dl <= 0:
            raise InputError("the corpus has no terms after analysis; fit on real documents")
        if self.kind == "bm25-word":
            if not isinstance(encoder, BM25WordEncoder):
                raise ConfigError(f"bm25-word statistics cannot fit a {encoder.info.name!r} encoder")
            words = sorted(self.word_df)
            encoder._words = words
            encoder._vocab = dict(zip(words, range(len(words)), strict=True))
            encoder._set_stats(np.array([self.word_df[w] for w in words], np.int64), self.n_docs, self.sum_dl)
            return encoder
        if not isinstance(encoder, BM25Encoder) or isinstance(encoder, BM25WordEncoder):
            raise ConfigError(f"bm25 statistics cannot fit a {encoder.info.name!r} encoder")
        assert self.df is not None
        if self.df.shape != (encoder.vocab_size,):
            raise InputError(f"statistics over {self.df.size} tokens do not fit a vocabulary of {encoder.vocab_size}")
        encoder._set_stats(self.df, self.n_docs, self.sum_dl)
        return encoder

    # ------------------------------------------------------------------ transport (plain values, e.g. Ray rows)
    def to_payload(self) -> dict[str, Any]:
        """Plain picklable values (numpy array and lists) for moving between processes."""
        return {
            "kind": self.kind, "n_docs": self.n_docs, "sum_dl": self.sum_dl,
            "df": self.df, "words": list(self.word_df), "word_counts": list(self.word_df.values()),
        }

    @classmethod
    def from_payload(cls, p: dict[str, Any]) -> CorpusStatistics:
        words = dict(zip(p.get("words") or [], (int(c) for c in p.get("word_counts") or []), strict=True))
        df = None if p.get("df") is None else np.asarray(p["df"], np.int64)
        return cls(str(p["kind"]), int(p["n_docs"]), int(p["sum_dl"]), df, words)
