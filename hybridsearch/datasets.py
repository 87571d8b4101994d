"""Evaluation datasets: BEIR and MIRACL layouts and generic jsonl/tsv files, with the corpus streamed from disk.

Datasets are found by name under ``$HYBRIDSEARCH_DATA``:

- ``scifact`` (or any ``<name>`` folder in BEIR layout: ``corpus.jsonl``, ``queries.jsonl``, ``qrels/test.tsv``);
- ``miracl-subset/<lang>``: the MIRACL-dev *pool subset* (``sw``, ``yo``, ``id``); scores on it are not comparable
  to published MIRACL numbers;
- ``miracl/<lang>``: the full MIRACL v1.0 dev topics and qrels from ``miracl/topics`` and ``miracl/qrels``; the
  corpus is read from ``miracl/corpus/<lang>/*.jsonl[.gz]`` when present, else through the ``datasets`` library
  (``miracl/miracl-corpus``) when the Hugging Face hub can be reached.

File formats:

- corpus: jsonl (optionally ``.gz``) with an id under ``_id`` (BEIR), ``docid`` (MIRACL) or ``id``, ``text`` and
  optional ``title``/``metadata``; or tsv ``id<TAB>text`` / ``id<TAB>title<TAB>text``;
- queries: BEIR jsonl (``_id``, ``text``) or a ``qid<TAB>text`` topics file;
- qrels: TREC (``qid iter docid rel``, whitespace-separated) or tsv ``qid<TAB>docid<TAB>rel`` with an optional
  header on the first line (BEIR's ``query-id corpus-id score``). Labels are whole numbers; ``2.0`` reads as 2,
  ``0.5`` or ``abc`` raise :class:`~hybridsearch.errors.InputError` naming the file and line.
"""

from __future__ import annotations

import gzip
import json
import os
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

from .errors import ConfigError, InputError, MissingDependencyError

__all__ = [
    "DATASETS",
    "Corpus",
    "Dataset",
    "Document",
    "data_dir",
    "iter_corpus",
    "load_dataset",
    "load_files",
    "read_corpus",
    "read_qrels",
    "read_queries",
]

#: The offline datasets of ``$HYBRIDSEARCH_DATA`` the evaluation uses by default.
DATASETS = ("scifact", "miracl-subset/sw", "miracl-subset/yo", "miracl-subset/id")

POOL_SUBSET_NOTE = (
    "MIRACL-dev pool subset: a few thousand passages per language, not the MIRACL corpus; "
    "its scores are not comparable to published MIRACL numbers"
)


@dataclass(frozen=True)
class Document:
    doc_id: str
    text: str
    title: str = ""
    metadata: dict[str, Any] = field(default_factory=dict, compare=False)

    @property
    def contents(self) -> str:
        """Title and text joined by a space, the form dense and lexical encoders index."""
        return f"{self.title} {self.text}".strip() if self.title else self.text


def _open(path: Path) -> IO[str]:
    if path.suffix == ".gz":
        return gzip.open(path, "rt", encoding="utf-8")
    return open(path, encoding="utf-8", newline="")


def _need_file(path: Path, what: str) -> Path:
    if not path.is_file():
        raise InputError(f"no {what} file {path}")
    return path


def _iter_jsonl(path: Path) -> Iterator[tuple[int, dict]]:
    with _open(path) as f:
        for n, line in enumerate(f, 1):
            if line.strip():
                try:
                    row = json.loads(line)
                except json.JSONDecodeError as exc:
                    raise InputError(f"{path}:{n} is not valid JSON: {exc.msg}") from None
                if not isinstance(row, dict):
                    raise InputError(f"{path}:{n} must be a JSON object")
                yield n, row


def _is_jsonl(path: Path) -> bool:
    suffixes = [s for s in path.suffixes if s != ".gz"]
    return bool(suffixes) and suffixes[-1] in (".jsonl", ".json", ".ndjson")


def iter_corpus(path: str | os.PathLike[str]) -> Iterator[Document]:
    """Stream the documents of one corpus file (see the module docstring), one :class:`Document` at a time."""
    path = _need_file(Path(path), "corpus")
    if _is_jsonl(path):
        for n, row in _iter_jsonl(path):
            doc_id = row.get("_id", row.get("docid", row.get("id")))
            text = row.get("text")
            if doc_id is None or not isinstance(text, (str, type(None))):
                raise InputError(f"{path}:{n} needs an id (_id, docid or id) and a string 'text'")
            meta = row.get("metadata") if isinstance(row.get("metadata"), dict) else {}
            yield Document(str(doc_id), text or "", row.get("title") or "", meta)
        return
    with _open(path) as f:
        for n, line in enumerate(f, 1):
            line = line.rstrip("\r\n")
            if not line:
                continue
            cols = line.split("\t")
            if len(cols) == 2:
                yield Document(cols[0], cols[1])
            elif len(cols) == 3:
                yield Document(cols[0], cols[2], cols[1])
            else:
                raise InputError(f"{path}:{n} has {len(cols)} tab-separated columns; expected id<TAB>text or id<TAB>title<TAB>text")


class Corpus:
    """A corpus read from disk on every pass: iterable (many times), sized, never held in memory whole.

    ``Corpus.from_files(paths)`` streams jsonl/tsv files in order; ``Corpus(opener, name)`` streams whatever
    ``opener()`` yields (e.g. a Hugging Face dataset). ``len()`` counts the documents with one pass (cached).
    """

    def __init__(self, opener: Callable[[], Iterable[Document]], name: str = "corpus", size: int | None = None) -> None:
        self._opener = opener
        self.name = name
        self._size = size

    @classmethod
    def from_files(cls, paths: Iterable[str | os.PathLike[str]], name: str | None = None) -> Corpus:
        files = [Path(p) for p in paths]
        for p in files:
            _need_file(p, "corpus")

        def opener() -> Iterator[Document]:
            for p in files:
                yield from iter_corpus(p)

        return cls(opener, name or ", ".join(map(str, files)))

    def __iter__(self) -> Iterator[Document]:
        return iter(self._opener())

    def __len__(self) -> int:
        if self._size is None:
            self._size = sum(1 for _ in self)
        return self._size

    def batches(self, size: int) -> Iterator[list[Document]]:
        """Lists of up to ``size`` documents, in order."""
        if size <= 0:
            raise ConfigError(f"batch size must be positive, got {size}")
        batch: list[Document] = []
        for doc in self:
            batch.append(doc)
            if len(batch) == size:
                yield batch
                batch = []
        if batch:
            yield batch

    def __repr__(self) -> str:
        return f"Corpus({self.name!r})"


def read_corpus(path: str | os.PathLike[str]) -> list[Document]:
    """Every document of a corpus file as a list (small corpora; prefer :class:`Corpus` for large ones)."""
    return list(iter_corpus(path))


def read_queries(path: str | os.PathLike[str]) -> dict[str, str]:
    """Queries from BEIR jsonl (``_id``, ``text``) or a ``qid<TAB>text`` topics file."""
    path = _need_file(Path(path), "queries")
    out: dict[str, str] = {}
    if _is_jsonl(path):
        for n, row in _iter_jsonl(path):
            qid = row.get("_id", row.get("query_id", row.get("id")))
            if qid is None or not isinstance(row.get("text"), str):
                raise InputError(f"{path}:{n} needs a query id (_id) and a string 'text'")
            out[str(qid)] = row["text"]
        return out
    with _open(path) as f:
        for n, line in enumerate(f, 1):
            line = line.rstrip("\r\n")
            if not line.strip():
                continue
            qid, sep, text = line.partition("\t")
            if not sep or not qid:
                raise InputError(f"{path}:{n} is not 'query_id<TAB>text'")
            out[qid] = text
    return out


def _rel_label(value: str, path: Path, n: int) -> int:
    try:
        return int(value)
    except ValueError:
        pass
    try:
        f = float(value)
    except ValueError:
        f = float("nan")
    if f == f and f not in (float("inf"), float("-inf")) and f.is_integer():
        return int(f)
    raise InputError(f"{path}:{n}: relevance label {value!r} is not a whole number (e.g. 0, 1, 2)")


def read_qrels(path: str | os.PathLike[str]) -> dict[str, dict[str, int]]:
    """TREC qrels (``qid iter docid rel``) or tsv ``qid<TAB>docid<TAB>rel`` with an optional first-line header.

    Returns ``{query_id: {doc_id: relevance}}``. Raises :class:`~hybridsearch.errors.InputError` naming the
    file and line for a label that is not a whole number or a line with the wrong number of columns.
    """
    path = _need_file(Path(path), "qrels")
    qrels: dict[str, dict[str, int]] = {}
    with _open(path) as f:
        for n, line in enumerate(f, 1):
            line = line.rstrip("\r\n")
            if not line.strip():
                continue
            row = line.split("\t") if "\t" in line else line.split()
            if len(row) == 4:
                qid, _, did, rel = row
            elif len(row) == 3:
                qid, did, rel = row
            else:
                raise InputError(f"{path}:{n} has {len(row)} columns; expected 'qid iter docid rel' or 'qid<TAB>docid<TAB>rel'")
            if n == 1 and not _numeric(rel):
                continue  # a header such as BEIR's query-id<TAB>corpus-id<TAB>score
            qrels.setdefault(qid.strip(), {})[did.strip()] = _rel_label(rel.strip(), path, n)
    return qrels


def _numeric(value: str) -> bool:
    try:
        float(value)
    except ValueError:
        return False
    return True


@dataclass(frozen=True)
class Dataset:
    """A corpus (streamed), queries and qrels. ``queries`` keeps only queries with judgements.

    ``note`` says what the scores on this dataset can be compared with (empty when nothing needs saying).
    """

    name: str
    corpus: Corpus | list[Document]
    queries: dict[str, str]  # query_id -> text
    qrels: dict[str, dict[str, int]]  # query_id -> doc_id -> relevance
    note: str = ""

    def __repr__(self) -> str:
        return f"Dataset({self.name!r}, queries={len(self.queries)}, qrels={sum(map(len, self.qrels.values()))})"


def data_dir() -> Path:
    """The data root from ``$HYBRIDSEARCH_DATA``."""
    root = os.environ.get("HYBRIDSEARCH_DATA")
    if not root:
        raise ConfigError(
            "HYBRIDSEARCH_DATA is not set; point it at the evaluation data folder, e.g. "
            "export HYBRIDSEARCH_DATA=../shared/data (source scripts/setup.sh sets it when ../shared/data exists)"
        )
    path = Path(root).expanduser()
    if not path.is_dir():
        raise ConfigError(f"HYBRIDSEARCH_DATA={root} is not a directory")
    return path


def load_files(
    name: str, *, corpus: str | os.PathLike[str] | Iterable[str | os.PathLike[str]], queries: str | os.PathLike[str],
    qrels: str | os.PathLike[str], note: str = "",
) -> Dataset:
    """A dataset from any corpus file(s), queries file and qrels file (formats in the module docstring)."""
    files = [corpus] if isinstance(corpus, (str, os.PathLike)) else list(corpus)
    q, r = read_queries(queries), read_qrels(qrels)
    return Dataset(name, Corpus.from_files(files, name), {k: v for k, v in q.items() if k in r}, r, note)


def _missing(name: str, where: Path, what: str) -> ConfigError:
    return ConfigError(f"dataset {name!r} not found: {where} is missing ({what}). Put the files there, or point "
                       f"HYBRIDSEARCH_DATA at the folder that holds them")


def _beir(name: str, base: Path, split: str) -> Dataset:
    d = base / name
    files = [d / "corpus.jsonl", d / "queries.jsonl", d / "qrels" / f"{split}.tsv"]
    for f in files:
        if not f.is_file():
            raise _missing(name, f, f"BEIR layout: {name}/corpus.jsonl, {name}/queries.jsonl, {name}/qrels/{split}.tsv; "
                           f"BEIR's zip from https://public.ukp.informatik.tu-darmstadt.de/thakur/BEIR/datasets/{name}.zip has it")
    return load_files(name, corpus=files[0], queries=files[1], qrels=files[2])


def _miracl_subset(name: str, base: Path, lang: str) -> Dataset:
    d = base / "miracl-subset" / lang
    files = [d / "corpus.jsonl", d / f"topics.miracl-v1.0-{lang}-dev.subset.tsv", d / f"qrels.miracl-v1.0-{lang}-dev.subset.tsv"]
    for f in files:
        if not f.is_file():
            raise _missing(name, f, f"MIRACL-dev pool subset: corpus.jsonl, topics and qrels for {lang!r}")
    return load_files(name, corpus=files[0], queries=files[1], qrels=files[2], note=POOL_SUBSET_NOTE)


def _hf_miracl_corpus(lang: str) -> Iterator[Document]:
    try:
        import datasets as hf  # type: ignore[import-not-found]
    except ImportError as exc:
        raise MissingDependencyError(
            f"the MIRACL corpus for {lang!r} is not under $HYBRIDSEARCH_DATA/miracl/corpus/{lang}/ and the 'datasets' "
            "library that downloads it is not installed: pip install datasets, or put the corpus's "
            f"docs-*.jsonl.gz files (from huggingface.co/datasets/miracl/miracl-corpus, folder miracl-corpus-v1.0-{lang}) there"
        ) from exc
    try:
        rows = hf.load_dataset("miracl/miracl-corpus", lang, split="train", streaming=True, trust_remote_code=True)
    except Exception as exc:  # network and hub errors come in many types
        raise ConfigError(
            f"cannot load the MIRACL corpus for {lang!r} from the Hugging Face hub ({type(exc).__name__}: {exc}). "
            f"Download the docs-*.jsonl.gz files of miracl/miracl-corpus (folder miracl-corpus-v1.0-{lang}) into "
            f"$HYBRIDSEARCH_DATA/miracl/corpus/{lang}/ to evaluate offline"
        ) from exc
    for row in rows:
        yield Document(str(row["docid"]), row.get("text") or "", row.get("title") or "")


def _miracl(name: str, base: Path, lang: str) -> Dataset:
    d = base / "miracl"
    topics, qrels = d / "topics" / f"topics.miracl-v1.0-{lang}-dev.tsv", d / "qrels" / f"qrels.miracl-v1.0-{lang}-dev.tsv"
    for f in (topics, qrels):
        if not f.is_file():
            raise _missing(name, f, "MIRACL v1.0 dev topics and qrels, as in castorini/anserini-tools topics/ and qrels/")
    local = sorted((d / "corpus" / lang).glob("*.jsonl*")) if (d / "corpus" / lang).is_dir() else []
    corpus = Corpus.from_files(local, name) if local else Corpus(lambda: _hf_miracl_corpus(lang), name)
    q, r = read_queries(topics), read_qrels(qrels)
    return Dataset(name, corpus, {k: v for k, v in q.items() if k in r}, r)


def load_dataset(name: str, *, root: str | os.PathLike[str] | None = None, split: str = "test") -> Dataset:
    """Load a dataset by name (see the module docstring); queries are limited to those with judgements.

    Raises :class:`~hybridsearch.errors.ConfigError` saying where the files should be when a dataset is missing.
    The corpus is streamed: nothing is read until it is iterated.
    """
    base = Path(root) if root is not None else data_dir()
    family, _, lang = name.partition("/")
    if family == "miracl-subset" and lang:
        return _miracl_subset(name, base, lang)
    if family == "miracl" and lang:
        return _miracl(name, base, lang)
    if not lang and name and (base / name).is_dir():
        return _beir(name, base, split)
    if name == "scifact":
        return _beir(name, base, split)
    raise ConfigError(
        f"unknown dataset {name!r}; expected scifact (or another BEIR folder under {base}), miracl-subset/<lang> "
        f"or miracl/<lang>; the offline ones are: {', '.join(DATASETS)}"
    )
