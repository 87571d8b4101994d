"""Evaluation datasets on disk: BEIR (SciFact) and MIRACL-format (corpus jsonl, topics tsv, TREC qrels).

Datasets are found under ``$HYBRIDSEARCH_DATA``. Names:

- ``scifact``: BEIR SciFact, test split;
- ``miracl-subset/<lang>`` (``sw``, ``yo``, ``id``): the MIRACL-dev *pool subset*; scores on it are not
  comparable to published MIRACL numbers.
"""

from __future__ import annotations

import csv
import json
import os
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any
from pathlib import Path

from .errors import ConfigError, InputError

__all__ = [
    "DATASETS",
    "Dataset",
    "Document",
    "data_dir",
    "load_dataset",
    "read_corpus",
    "read_qrels",
    "read_queries",
]

DATASETS = ("scifact", "miracl-subset/sw", "miracl-subset/yo", "miracl-subset/id")


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


@dataclass(frozen=True)
class Dataset:
    name: str
    corpus: list[Document]
    queries: dict[str, str]  # query_id -> text
    qrels: dict[str, dict[str, int]]  # query_id -> doc_id -> relevance

    def __repr__(self) -> str:
        return f"Dataset({self.name!r}, docs={len(self.corpus)}, queries={len(self.queries)}, qrels={sum(map(len, self.qrels.values()))})"


def data_dir() -> Path:
    """The data root from ``$HYBRIDSEARCH_DATA``."""
    root = os.environ.get("HYBRIDSEARCH_DATA")
    if not root:
        raise ConfigError(
            "HYBRIDSEARCH_DATA is not set; point it at the evaluation data folder, e.g. "
            "export HYBRIDSEARCH_DATA=../shared/data"
        )
    path = Path(root).expanduser()
    if not path.is_dir():
        raise ConfigError(f"HYBRIDSEARCH_DATA={root} is not a directory")
    return path


def _iter_jsonl(path: Path) -> Iterator[dict]:
    with open(path, encoding="utf-8") as f:
        for n, line in enumerate(f, 1):
            if line.strip():
                try:
                    yield json.loads(line)
                except json.JSONDecodeError as exc:
                    raise InputError(f"{path}:{n} is not valid JSON: {exc.msg}") from None


def read_corpus(path: str | os.PathLike[str]) -> list[Document]:
    """Corpus jsonl with ``_id`` (BEIR) or ``docid`` (MIRACL), optional ``title``, and ``text``."""
    docs = []
    for row in _iter_jsonl(Path(path)):
        doc_id = row.get("_id", row.get("docid", row.get("id")))
        if doc_id is None or "text" not in row:
            raise InputError(f"{path}: every line needs an id (_id or docid) and text")
        meta = row.get("metadata") if isinstance(row.get("metadata"), dict) else {}
        docs.append(Document(str(doc_id), row["text"] or "", row.get("title") or "", meta))
    return docs


def read_queries(path: str | os.PathLike[str]) -> dict[str, str]:
    """Queries from BEIR jsonl (``_id``, ``text``) or a ``qid<TAB>text`` topics file."""
    path = Path(path)
    if path.suffix == ".jsonl":
        return {str(r["_id"]): r["text"] for r in _iter_jsonl(path)}
    out = {}
    with open(path, encoding="utf-8") as f:
        for line in f:
            qid, sep, text = line.rstrip("\n").partition("\t")
            if sep:
                out[qid] = text
    return out


def read_qrels(path: str | os.PathLike[str]) -> dict[str, dict[str, int]]:
    """TREC qrels (``qid Q0 docid rel``) or BEIR tsv with a header (``query-id corpus-id score``)."""
    qrels: dict[str, dict[str, int]] = {}
    with open(path, encoding="utf-8", newline="") as f:
        for row in csv.reader(f, delimiter="\t"):
            if len(row) == 1:
                row = row[0].split()
            if len(row) == 4:
                qid, _, did, rel = row
            elif len(row) == 3:
                qid, did, rel = row
            else:
                continue
            if not rel.lstrip("-").isdigit():
                continue  # header line
            qrels.setdefault(qid, {})[did] = int(rel)
    return qrels


def load_dataset(name: str, *, root: str | os.PathLike[str] | None = None) -> Dataset:
    """Load a dataset by name (see :data:`DATASETS`); queries are limited to those with judgements."""
    base = Path(root) if root is not None else data_dir()
    if name == "scifact":
        d = base / "scifact"
        corpus, queries, qrels = read_corpus(d / "corpus.jsonl"), read_queries(d / "queries.jsonl"), read_qrels(d / "qrels" / "test.tsv")
    elif name.startswith("miracl-subset/") and name.split("/", 1)[1] in ("sw", "yo", "id"):
        lang = name.split("/", 1)[1]
        d = base / "miracl-subset" / lang
        corpus = read_corpus(d / "corpus.jsonl")
        queries = read_queries(d / f"topics.miracl-v1.0-{lang}-dev.subset.tsv")
        qrels = read_qrels(d / f"qrels.miracl-v1.0-{lang}-dev.subset.tsv")
    else:
        raise ConfigError(f"unknown dataset {name!r}; expected one of: {', '.join(DATASETS)}")
    queries = {q: t for q, t in queries.items() if q in qrels}
    return Dataset(name, corpus, queries, qrels)
