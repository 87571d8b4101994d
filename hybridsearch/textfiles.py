"""Read texts to encode or index from jsonl or tsv files, as the command line takes them.

- ``.jsonl``: one object per line with ``text`` (and optionally ``title`` and a ``metadata`` object) and an
  id under ``_id``, ``docid`` or ``id``; titles are joined to the text with a space, as :class:`Document` does.
- ``.tsv``: ``id<TAB>text`` per line, or just ``text`` (ids are then line numbers, from 0).
"""

from __future__ import annotations

import json
import os
from pathlib import Path

from .datasets import Document
from .errors import InputError

__all__ = ["read_documents"]


def read_documents(path: str | os.PathLike[str]) -> list[Document]:
    """Documents from a jsonl or tsv file (see the module docstring)."""
    path = Path(path)
    if not path.is_file():
        raise InputError(f"no such input file: {path}")
    docs: list[Document] = []
    with open(path, encoding="utf-8") as f:
        if path.suffix in (".jsonl", ".json", ".ndjson"):
            for n, line in enumerate(f, 1):
                if not line.strip():
                    continue
                try:
                    row = json.loads(line)
                except json.JSONDecodeError as exc:
                    raise InputError(f"{path}:{n} is not valid JSON ({exc.msg})") from None
                if not isinstance(row, dict) or not isinstance(row.get("text"), str):
                    raise InputError(f"{path}:{n} needs a string field 'text'")
                doc_id = row.get("_id", row.get("docid", row.get("id", len(docs))))
                meta = row.get("metadata") if isinstance(row.get("metadata"), dict) else {}
                docs.append(Document(str(doc_id), row["text"], row.get("title") or "", meta))
        elif path.suffix in (".tsv", ".txt"):
            for n, line in enumerate(f):
                line = line.rstrip("\n")
                if not line:
                    continue
                doc_id, sep, text = line.partition("\t")
                docs.append(Document(doc_id, text) if sep else Document(str(n), line))
        else:
            raise InputError(f"{path}: unsupported input format {path.suffix!r}; use .jsonl or .tsv")
    if not docs:
        raise InputError(f"{path} holds no texts")
    return docs
