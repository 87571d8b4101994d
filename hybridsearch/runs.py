"""TREC run files: read and write ``{query_id: {doc_id: score}}`` runs with a run tag.

One line per retrieved document, as trec_eval reads them::

    query_id Q0 doc_id rank score tag

Lines are written per query in trec_eval's ranking order (score descending, ties by doc id descending), ranks
from 1, scores with ``repr`` precision so that a run read back scores exactly as the run written (the file alone
reproduces every metric). The tag names the system (e.g. ``scifact.bm25.sparse``); it may not contain whitespace.
"""

from __future__ import annotations

import math
import os
import re
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from ._atomic import write_bytes_atomic
from .errors import InputError

__all__ = ["TrecRun", "read_run", "write_run"]

_TAG = re.compile(r"^\S+$")


@dataclass(frozen=True)
class TrecRun:
    """A run read from a TREC run file: ``run`` (``{query_id: {doc_id: score}}``) and its ``tag``."""

    run: dict[str, dict[str, float]]
    tag: str


def _ranked(docs: Mapping[str, float]) -> list[tuple[str, float]]:
    return sorted(docs.items(), key=lambda x: (x[1], x[0]), reverse=True)


def write_run(path: str | os.PathLike[str], run: Mapping[str, Mapping[str, float]], tag: str, *, depth: int | None = None) -> Path:
    """Write ``run`` to ``path`` atomically (a reader never sees half a file); returns the path.

    ``depth`` keeps the top ``depth`` documents per query (``None``: all). Raises
    :class:`~hybridsearch.errors.InputError` for a tag with whitespace, ids with whitespace, or non-finite scores.
    """
    if not isinstance(tag, str) or not _TAG.match(tag):
        raise InputError(f"a run tag is one word without whitespace, got {tag!r}")
    lines: list[str] = []
    for qid, docs in run.items():
        q = str(qid)
        if not _TAG.match(q):
            raise InputError(f"query id {q!r} is empty or holds whitespace; TREC run files cannot store it")
        ranked = _ranked({str(d): float(s) for d, s in docs.items()})
        for rank, (did, score) in enumerate(ranked[:depth] if depth is not None else ranked, 1):
            if not _TAG.match(did):
                raise InputError(f"document id {did!r} is empty or holds whitespace; TREC run files cannot store it")
            if not math.isfinite(score):
                raise InputError(f"run[{q!r}][{did!r}] = {score!r}: TREC run files need finite scores")
            lines.append(f"{q} Q0 {did} {rank} {score!r} {tag}\n")
    out = Path(path)
    out.parent.mkdir(parents=True, exist_ok=True)
    write_bytes_atomic(out, "".join(lines).encode("utf-8"))
    return out


def read_run(path: str | os.PathLike[str]) -> TrecRun:
    """Read a TREC run file (6 whitespace-separated columns).

    Raises :class:`~hybridsearch.errors.InputError` naming the file and line for a malformed line, a score that
    is not a number, a document listed twice for one query, or more than one tag in the file.
    """
    path = Path(path)
    if not path.is_file():
        raise InputError(f"no run file {path}")
    run: dict[str, dict[str, float]] = {}
    tag: str | None = None
    with open(path, encoding="utf-8") as f:
        for n, line in enumerate(f, 1):
            cols = line.split()
            if not cols:
                continue
            if len(cols) != 6:
                raise InputError(f"{path}:{n} has {len(cols)} columns; a TREC run line is 'qid Q0 docid rank score tag'")
            qid, _, did, _, score, t = cols
            try:
                value = float(score)
            except ValueError:
                raise InputError(f"{path}:{n}: score {score!r} is not a number") from None
            if math.isnan(value):
                raise InputError(f"{path}:{n}: score is NaN")
            if tag is None:
                tag = t
            elif t != tag:
                raise InputError(f"{path}:{n}: run tag {t!r} differs from {tag!r} on earlier lines; one file holds one run")
            docs = run.setdefault(qid, {})
            if did in docs:
                raise InputError(f"{path}:{n}: document {did!r} listed twice for query {qid!r}")
            docs[did] = value
    if tag is None:
        raise InputError(f"{path} holds no run lines")
    return TrecRun(run, tag)
