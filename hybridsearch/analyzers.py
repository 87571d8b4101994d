"""Text analyzers for the lexical (BM25) encoders: XLM-R token ids and Unicode words.

- :class:`XLMRTokenAnalyzer` splits text into bge-m3's XLM-RoBERTa token ids (250,002 pieces), the
  vocabulary of bge-m3's own sparse weights, so BM25 vectors and bge-m3 sparse vectors share one id space.
- :class:`WordAnalyzer` splits text into lowercased Unicode words (runs of ``\\w``), with optional accent
  stripping, stopword removal and Snowball stemming (PyStemmer).

Both work on batches and return flat arrays plus ``offsets`` (text ``i`` owns ``tokens[offsets[i]:offsets[i+1]]``),
so callers count terms with numpy instead of per-token Python loops.
"""

from __future__ import annotations

import functools
import hashlib
import os
import re
import unicodedata
from collections.abc import Iterable, Sequence
from itertools import chain
from pathlib import Path
from typing import Any, Literal

import numpy as np

from ._optional import require
from .errors import ConfigError, ModelLoadError

__all__ = ["STOPWORDS", "WordAnalyzer", "XLMRTokenAnalyzer", "default_tokenizer_path"]

# The bare word-start piece "▁" of sentencepiece vocabularies (id 6 in XLM-R).
_METASPACE = "\u2581"

# Small hand-picked lists of the most frequent function words. English is Lucene's classic
# StandardAnalyzer/EnglishAnalyzer set; the others were chosen from the highest document-frequency
# words of MIRACL passages (articles, pronouns, prepositions, conjunctions, copulas only).
# Yoruba words appear with and without tone marks, as both spellings are common in web text.
_STOPWORDS: dict[str, tuple[str, ...]] = {
    "english": tuple(
        (
            "a an and are as at be but by for if in into is it no not of on or such that the their then there "
            "these they this to was will with"
        ).split()
    ),
    "swahili": tuple(
        (
            "ambao ambapo ambayo au cha hadi hata hayo hii hili hiyo hizi huo huu ili juu kama katika kati "
            "kuwa kutoka kwa kwamba kwenye la lakini lake na ni pia tu vile vya wa wake wao ya yake yao za "
            "zake"
        ).split()
    ),
    "yoruba": tuple(
        (
            "a ati àti awon awọn àwọn bi bí eyi èyí fi fun fún ki kí lati láti lori lórí naa náà ni ní ninu "
            "nínú o ó pe pé pelu pẹlu si sí sì tabi tàbí ti tí to tó won wọn yii yìí"
        ).split()
    ),
    "indonesian": tuple(
        (
            "ada adalah akan antara atas atau bagi bahwa dalam dan dapat dari dengan di hanya hingga ia ini "
            "itu juga karena ke kepada ketika masih merupakan namun oleh pada para sampai sebagai sebuah "
            "sehingga seorang seperti serta sudah telah tersebut tetapi tidak untuk yaitu yang"
        ).split()
    ),
}
_LANGUAGE_CODES = {"en": "english", "sw": "swahili", "yo": "yoruba", "id": "indonesian"}

#: Built-in stopword lists by language name (``"en"``, ``"sw"``, ``"yo"``, ``"id"`` are accepted as aliases).
STOPWORDS: dict[str, frozenset[str]] = {lang: frozenset(words) for lang, words in _STOPWORDS.items()}

# ---------------------------------------------------------------------------------------------- XLM-R


def default_tokenizer_path() -> Path:
    """``$HYBRIDSEARCH_DATA/tokenizers/xlm-roberta/tokenizer.json``, the offline XLM-R tokenizer."""
    root = os.environ.get("HYBRIDSEARCH_DATA")
    if not root:
        raise ConfigError(
            "no XLM-R tokenizer given and HYBRIDSEARCH_DATA is not set; pass tokenizer='path/to/tokenizer.json' "
            "(or a model folder holding one), or set HYBRIDSEARCH_DATA to the data folder that has "
            "tokenizers/xlm-roberta/tokenizer.json"
        )
    return Path(root).expanduser() / "tokenizers" / "xlm-roberta" / "tokenizer.json"


def _tokenizer_file(tokenizer: str | os.PathLike[str] | None) -> Path:
    path = default_tokenizer_path() if tokenizer is None else Path(tokenizer).expanduser()
    if path.is_dir():
        path = path / "tokenizer.json"
    if not path.is_file():
        raise ModelLoadError(
            f"tokenizer file not found: {path}; pass tokenizer= a tokenizer.json file or a model folder that holds one"
        )
    return path.resolve()


def _tokenizer_identity(tok: Any) -> str:
    """A hash of what decides the token ids: the vocabulary model, normalizer and pre-tokenizer.

    Two files that differ only in padding, truncation or special-token flags get the same identity.
    """
    h = hashlib.sha256()
    for part in (tok.model, tok.normalizer, tok.pre_tokenizer):
        h.update(b"null" if part is None else part.__getstate__())
        h.update(b"\x00")
    return h.hexdigest()[:16]


@functools.lru_cache(maxsize=4)
def _load_tokenizer(path: str) -> tuple[Any, str]:
    tokenizers = require("tokenizers", extra="lexical")
    try:
        tok = tokenizers.Tokenizer.from_file(path)
    except Exception as exc:  # the Rust side raises plain Exception subclasses
        raise ModelLoadError(f"cannot read tokenizer {path}: {exc}") from exc
    tok.no_truncation()
    tok.no_padding()
    return tok, _tokenizer_identity(tok)


class XLMRTokenAnalyzer:
    """XLM-RoBERTa token ids, as bge-m3 sees text (case-sensitive, no template tokens, no truncation).

    ``tokenizer`` is a ``tokenizer.json`` path, a model folder holding one, a ``tokenizers.Tokenizer``,
    or ``None`` for ``$HYBRIDSEARCH_DATA/tokenizers/xlm-roberta/tokenizer.json``. Loaded files are cached
    per process.

    Special tokens (``<s>``, ``</s>``, ``<pad>``, ``<unk>``, ``<mask>``) are dropped, including ones written
    literally in the text. The bare word-start piece ``▁`` is kept where it begins a word (sentencepiece
    emits it before words that start with a piece that has no ``▁`` form, e.g. ``▁ ọ`` in Yoruba) and
    dropped where it is orphaned: at the end of a text or before a dropped token. A text made only of
    special or unknown characters therefore has no tokens.

    >>> a = XLMRTokenAnalyzer()  # doctest: +SKIP
    >>> a.analyze("Hello world")  # doctest: +SKIP
    ['▁Hello', '▁world']
    """

    def __init__(self, tokenizer: str | os.PathLike[str] | Any | None = None) -> None:
        if tokenizer is None or isinstance(tokenizer, (str, os.PathLike)):
            path = _tokenizer_file(tokenizer)
            self._tok, self.identity = _load_tokenizer(str(path))
            self.source = str(path)
        elif hasattr(tokenizer, "encode_batch") and hasattr(tokenizer, "get_vocab_size"):
            if tokenizer.truncation is not None or tokenizer.padding is not None:
                # Work on a copy without truncation and padding; the caller's object stays as it is.
                tokenizer = type(tokenizer).from_str(tokenizer.to_str())
                tokenizer.no_truncation()
                tokenizer.no_padding()
            self._tok = tokenizer
            self.identity = _tokenizer_identity(tokenizer)
            self.source = "<Tokenizer object>"
        else:
            raise ConfigError(
                f"tokenizer must be a path to tokenizer.json, a model folder or a tokenizers.Tokenizer, "
                f"got {type(tokenizer).__name__}"
            )
        self.vocab_size = int(self._tok.get_vocab_size(with_added_tokens=True))
        special = [i for i, t in self._tok.get_added_tokens_decoder().items() if t.special]
        # The unknown-token id: Unigram models know it as unk_id, WordLevel/WordPiece/BPE as unk_token.
        unk = getattr(self._tok.model, "unk_id", None)
        if unk is None and getattr(self._tok.model, "unk_token", None):
            unk = self._tok.token_to_id(self._tok.model.unk_token)
        if unk is not None:
            special.append(int(unk))
        self.special_ids = np.unique(np.asarray(special, dtype=np.int64))
        meta = self._tok.token_to_id(_METASPACE)
        self.metaspace_id = -1 if meta is None else int(meta)

    def __repr__(self) -> str:
        return f"XLMRTokenAnalyzer(source={self.source!r}, vocab_size={self.vocab_size})"

    def token_ids(self, texts: Sequence[str]) -> tuple[np.ndarray, np.ndarray]:
        """Token ids of a batch: flat int64 ``ids`` and int64 ``offsets`` of length ``len(texts) + 1``."""
        per_text = [e.ids for e in self._tok.encode_batch(list(texts), add_special_tokens=False)]
        offsets = np.zeros(len(per_text) + 1, np.int64)
        np.cumsum(np.fromiter(map(len, per_text), np.int64, count=len(per_text)), out=offsets[1:])
        ids = np.fromiter(chain.from_iterable(per_text), dtype=np.int64, count=int(offsets[-1]))
        return self._drop_special(ids, offsets)

    def _drop_special(self, ids: np.ndarray, offsets: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        if ids.size == 0:
            return ids, offsets
        drop = np.isin(ids, self.special_ids)
        if self.metaspace_id >= 0:
            # A "▁" is orphaned when the next token is dropped or it is the last token of its text.
            last = np.zeros(ids.size, bool)
            ends = offsets[1:][np.diff(offsets) > 0] - 1
            last[ends] = True
            next_dropped = np.append(drop[1:], True)
            drop |= (ids == self.metaspace_id) & (last | next_dropped)
        if not drop.any():
            return ids, offsets
        kept_before = np.concatenate(([0], np.cumsum(~drop)))
        return ids[~drop], kept_before[offsets]

    def analyze(self, text: str) -> list[str]:
        """The kept token pieces of one text, for inspection."""
        ids, _ = self.token_ids([text])
        return [self._tok.id_to_token(int(i)) for i in ids]


# ---------------------------------------------------------------------------------------------- words

_WORD = re.compile(r"\w+")


# Combining diacritical marks (U+0300-036F and its extension, supplement, symbol and half-mark blocks):
# the accents of Latin, Greek and Cyrillic letters. Vowel signs and viramas of Indic and other scripts
# are combining marks too, but they live in their scripts' own blocks and are left alone.
_ACCENTS = re.compile("[\u0300-\u036f\u1ab0-\u1aff\u1dc0-\u1dff\u20d0-\u20ff\ufe20-\ufe2f]+")


@functools.cache
def _word_pattern() -> re.Pattern[str]:
    """``\\w`` plus the combining marks that are not accents, built once (~50 ms).

    Python's ``\\w`` matches no combining mark, so plain ``\\w+`` cuts Hindi, Bengali, Telugu or Thai words
    at every vowel sign (``हिंदी`` → ``ह``, ``द``). Marks of the accent blocks stay outside words, as in plain
    ``\\w+``: NFKC composes accented letters that have a precomposed form, and ``strip_accents`` removes
    the rest.
    """
    ranges: list[list[int]] = []
    for cp in chain(range(0x20000), range(0xE0000, 0xE1000)):  # no marks outside planes 0, 1 and 14
        c = chr(cp)
        if unicodedata.category(c)[0] == "M" and not c.isalnum() and not _ACCENTS.match(c):
            if ranges and ranges[-1][1] == cp - 1:
                ranges[-1][1] = cp
            else:
                ranges.append([cp, cp])
    marks = "".join(re.escape(chr(a)) + (f"-{re.escape(chr(b))}" if b > a else "") for a, b in ranges)
    return re.compile(f"[\\w{marks}]+")


Normalization = Literal["NFC", "NFKC", "NFD", "NFKD"]


class WordAnalyzer:
    """Lowercased Unicode words: normalize, lowercase, optionally strip accents, split into words,
    optionally drop stopwords, optionally stem.

    A word is a run of ``\\w`` characters (letters, digits, ``_``) and of the combining marks that are not
    accents, so vowel signs keep Hindi or Thai words whole (Python's ``\\w`` alone would split them). On
    text without such marks this is exactly ``re.findall(r"\\w+", text)``.

    Parameters
    ----------
    normalize:
        Unicode normalization applied first (``"NFKC"`` folds compatibility forms such as full-width
        letters and ligatures), or ``None``.
    lowercase:
        Lowercase the text.
    strip_accents:
        Remove accents, the combining diacritical marks of Latin, Greek and Cyrillic letters (``café`` →
        ``cafe``, ``ọ̀rọ̀`` → ``oro``); vowel signs of other scripts are kept. Off by default. Without it,
        an accent that NFKC cannot compose into its letter (Yoruba ``ọ̀``) splits the word there
        (``ọ̀rọ̀`` → ``ọ``, ``rọ``), as plain ``\\w+`` does. On the Yoruba MIRACL pool subset, where queries
        are often written without tone marks, stripping raises BM25 nDCG@10 from 0.70 to 0.83.
    stopwords:
        A built-in list name (``"english"``, ``"swahili"``, ``"yoruba"``, ``"indonesian"`` or ``en``/``sw``/
        ``yo``/``id``; see :data:`STOPWORDS`), an iterable of words, or ``None``. Words are compared after
        normalization, lowercasing and accent stripping, before stemming.
    stemmer:
        A Snowball algorithm name of PyStemmer (``"english"``, ``"indonesian"``, ...; ``en``/``id`` accepted),
        or ``None``. Needs ``pip install 'hybridsearch[lexical]'``.

    >>> WordAnalyzer().analyze("Ọmọ ÌLÚ wo, 2024!")
    ['ọmọ', 'ìlú', 'wo', '2024']
    """

    def __init__(
        self,
        *,
        normalize: Normalization | None = "NFKC",
        lowercase: bool = True,
        strip_accents: bool = False,
        stopwords: str | Iterable[str] | None = None,
        stemmer: str | None = None,
    ) -> None:
        if normalize not in (None, "NFC", "NFKC", "NFD", "NFKD"):
            raise ConfigError(f"normalize must be one of NFC, NFKC, NFD, NFKD or None, got {normalize!r}")
        for label, flag in (("lowercase", lowercase), ("strip_accents", strip_accents)):
            if not isinstance(flag, (bool, np.bool_)):
                raise ConfigError(f"{label} must be true or false, got {flag!r}")
        self.normalize = normalize
        self.lowercase = bool(lowercase)
        self.strip_accents = bool(strip_accents)
        self.stemmer = self._stemmer_name(stemmer)
        self._stem = None
        if self.stemmer is not None:
            Stemmer = require("Stemmer", extra="lexical", package="PyStemmer")
            self._stem = Stemmer.Stemmer(self.stemmer)
        self.stopwords_name, words = self._stopword_list(stopwords)
        # Stopwords go through the same character pipeline as the text, so "Àti" matches "àti".
        self.stopwords: frozenset[str] = frozenset(w for s in words for w in _WORD.findall(self._prepare(s)))

    @staticmethod
    def _stemmer_name(stemmer: str | None) -> str | None:
        if stemmer is None:
            return None
        if not isinstance(stemmer, str):
            raise ConfigError(f"stemmer must be a language name such as 'english', got {type(stemmer).__name__}")
        name = _LANGUAGE_CODES.get(stemmer.lower(), stemmer.lower())
        Stemmer = require("Stemmer", extra="lexical", package="PyStemmer")
        available = Stemmer.algorithms()
        if name not in available:
            raise ConfigError(f"unknown stemmer {stemmer!r}; PyStemmer has: {', '.join(sorted(available))}")
        return name

    @staticmethod
    def _stopword_list(stopwords: str | Iterable[str] | None) -> tuple[str | None, tuple[str, ...]]:
        if stopwords is None:
            return None, ()
        if isinstance(stopwords, str):
            name = _LANGUAGE_CODES.get(stopwords.lower(), stopwords.lower())
            if name not in _STOPWORDS:
                raise ConfigError(
                    f"no built-in stopword list {stopwords!r}; choose one of {', '.join(sorted(_STOPWORDS))} "
                    "or pass an iterable of words"
                )
            return name, _STOPWORDS[name]
        words = tuple(stopwords)
        bad = [w for w in words if not isinstance(w, str)]
        if bad:
            raise ConfigError(f"stopwords must be strings, got {type(bad[0]).__name__}")
        return None, words

    def _prepare(self, text: str) -> str:
        if self.normalize is not None:
            text = unicodedata.normalize(self.normalize, text)
        if self.lowercase:
            text = text.lower()
        if self.strip_accents:
            text = unicodedata.normalize("NFC", _ACCENTS.sub("", unicodedata.normalize("NFD", text)))
        return text

    @property
    def config(self) -> dict[str, Any]:
        """The settings as JSON-friendly values; :meth:`from_config` rebuilds an equal analyzer.

        ``stopwords`` is the exact word set in use, so a saved analyzer does not depend on the built-in
        lists of a later version.
        """
        return {
            "normalize": self.normalize,
            "lowercase": self.lowercase,
            "strip_accents": self.strip_accents,
            "stopwords": sorted(self.stopwords) if self.stopwords else None,
            "stopwords_name": self.stopwords_name if self.stopwords else None,
            "stemmer": self.stemmer,
        }

    @classmethod
    def from_config(cls, config: dict[str, Any]) -> WordAnalyzer:
        """The analyzer described by :attr:`config`."""
        known = {"normalize", "lowercase", "strip_accents", "stopwords", "stopwords_name", "stemmer"}
        unknown = set(config) - known
        if unknown:
            raise ConfigError(f"unknown word analyzer settings {sorted(unknown)}; expected {sorted(known)}")
        options = {k: v for k, v in config.items() if k != "stopwords_name"}
        analyzer = cls(**options)
        analyzer.stopwords_name = config.get("stopwords_name")
        return analyzer

    def describe(self) -> str:
        """A short readable summary, e.g. ``words(nfkc,lower,stop=english,stem=english)``."""
        parts = [
            p
            for p in (
                self.normalize and self.normalize.lower(),
                self.lowercase and "lower",
                self.strip_accents and "noaccents",
            )
            if p
        ]
        if self.stopwords:
            parts.append(f"stop={self.stopwords_name or f'{len(self.stopwords)}words'}")
        if self.stemmer:
            parts.append(f"stem={self.stemmer}")
        return f"words({','.join(parts)})"

    def __repr__(self) -> str:
        return f"WordAnalyzer({self.describe()})"

    def terms(self, texts: Sequence[str]) -> tuple[list[str], np.ndarray]:
        """Terms of a batch: a flat list of words and int64 ``offsets`` of length ``len(texts) + 1``."""
        plain, full = _WORD.findall, _word_pattern().findall  # plain \w+ is faster and enough for ASCII
        per_text = [plain(t) if t.isascii() else full(t) for t in map(self._prepare, texts)]
        if self.stopwords:
            stop = self.stopwords
            per_text = [[w for w in words if w not in stop] for words in per_text]
        offsets = np.zeros(len(per_text) + 1, np.int64)
        np.cumsum(np.fromiter(map(len, per_text), np.int64, count=len(per_text)), out=offsets[1:])
        flat = list(chain.from_iterable(per_text))
        if self._stem is not None and flat:
            flat = self._stem.stemWords(flat)
        return flat, offsets

    def analyze(self, text: str) -> list[str]:
        """The terms of one text."""
        return self.terms([text])[0]
