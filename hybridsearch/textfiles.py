"""Read texts to encode or index from jsonl or tsv files, as the command line takes them.

- ``.jsonl``: one object per line with ``text`` (and optionally ``title`` and a ``metadata`` object) and an
  id under ``_id``, ``docid`` or ``id``; titles are joined to the text with a space, as :class:`Document` does.
- ``.tsv``: ``id<TAB>text`` per line, or just ``text`` (ids are then line numbers, from 0).

Files are UTF-8; a leading UTF-8 byte-order mark is skipped. Anything else (UTF-16, Latin-1, binary data, strict
JSON violations such as ``NaN`` or unpaired ``\\ud800`` escapes, fields of the wrong type) raises
:class:`~hybridsearch.errors.InputError` with one line naming the file, the line and, for undecodable bytes, the
byte offset. Empty ``text`` fields are documents like any other; what to do with them is the caller's choice.
"""

from __future__ import annotations

import codecs
import json
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from .datasets import Document
from .errors import InputError

__all__ = ["json_type", "read_documents", "read_lines", "read_text"]

JSONL_SUFFIXES = (".jsonl", ".json", ".ndjson")
TSV_SUFFIXES = (".tsv", ".txt")

_UTF8_BOM = codecs.BOM_UTF8
# Longest first: the UTF-32-LE mark begins with the UTF-16-LE one.
_OTHER_BOMS = (
    (codecs.BOM_UTF32_LE, "UTF-32-LE"),
    (codecs.BOM_UTF32_BE, "UTF-32-BE"),
    (codecs.BOM_UTF16_LE, "UTF-16-LE"),
    (codecs.BOM_UTF16_BE, "UTF-16-BE"),
)


def _check_readable(path: Path) -> None:
    if path.is_dir():
        raise InputError(f"{path} is a directory; pass a .jsonl or .tsv file")
    if not path.is_file():
        raise InputError(f"no such input file: {path}")


def _open(path: Path) -> Any:
    try:
        return open(path, "rb")
    except OSError as exc:
        raise InputError(f"cannot read {path}: {exc.strerror or exc}") from None


def _not_utf8(path: Path, offset: int, line: int | None, bad: bytes) -> InputError:
    where = f"byte offset {offset}" + (f" (line {line})" if line is not None else "")
    return InputError(
        f"{path} is not UTF-8: byte 0x{bad[:1].hex()} at {where} cannot be decoded; "
        "save the file as UTF-8 (with or without a byte-order mark)"
    )


def _check_bom(path: Path, head: bytes) -> int:
    """Length of a UTF-8 BOM at the start of the file (0 or 3); other BOMs raise."""
    if head.startswith(_UTF8_BOM):
        return len(_UTF8_BOM)
    for bom, name in _OTHER_BOMS:
        if head.startswith(bom):
            raise InputError(
                f"{path} is {name} (byte-order mark {bom.hex(' ')} at byte offset 0), not UTF-8; "
                f"convert it, e.g. iconv -f {name} -t UTF-8 {path.name} > utf8-{path.name}"
            )
    return 0


def read_lines(path: str | os.PathLike[str]) -> Iterator[tuple[int, str]]:
    """``(line_number, line)`` for each line of a UTF-8 text file, numbered from 1, without the line break.

    Lines end at ``\\n``; a trailing ``\\r`` is removed too. Raises :class:`InputError` for a missing file and for
    bytes that are not UTF-8, naming the byte offset from the start of the file.
    """
    path = Path(path)
    _check_readable(path)
    with _open(path) as f:
        offset = 0
        for n, raw in enumerate(f, 1):
            start = _check_bom(path, raw) if n == 1 else 0
            try:
                line = raw[start:].decode("utf-8")
            except UnicodeDecodeError as exc:
                raise _not_utf8(path, offset + start + exc.start, n, raw[start + exc.start :]) from None
            offset += len(raw)
            yield n, line.rstrip("\n").removesuffix("\r")


def read_text(path: str | os.PathLike[str]) -> str:
    """The whole of a UTF-8 text file (a leading BOM skipped); errors as in :func:`read_lines`."""
    path = Path(path)
    _check_readable(path)
    with _open(path) as f:
        data = f.read()
    start = _check_bom(path, data)
    try:
        return data[start:].decode("utf-8")
    except UnicodeDecodeError as exc:
        line = data.count(b"\n", 0, start + exc.start) + 1
        raise _not_utf8(path, start + exc.start, line, data[start + exc.start :]) from None


def json_type(value: Any) -> str:
    """The JSON name of a parsed value's type, with an article: ``"an array"``, ``"a string"``, ``"null"``."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "a boolean"
    names = {dict: "an object", list: "an array", str: "a string", int: "a number", float: "a number"}
    return next((n for t, n in names.items() if isinstance(value, t)), f"a {type(value).__name__}")


def _no_constants(name: str) -> Any:
    raise ValueError(f"{name} is not valid JSON; use null or a string")


def _check_string(path: Path, n: int, field: str, value: str) -> None:
    """Reject unpaired surrogates (from escapes such as ``\\ud800``): they cannot be written back as UTF-8."""
    try:
        value.encode("utf-8")
    except UnicodeEncodeError as exc:
        raise InputError(
            f"{path}:{n}: {field} holds an unpaired surrogate {value[exc.start]!r} at character {exc.start}; "
            "escape only whole characters (pairs such as \\ud83d\\ude00)"
        ) from None


def _doc_from_json(path: Path, n: int, line: str, position: int) -> Document:
    try:
        row = json.loads(line, parse_constant=_no_constants)
    except json.JSONDecodeError as exc:
        raise InputError(f"{path}:{n} is not valid JSON ({exc.msg} at column {exc.colno})") from None
    except ValueError as exc:  # NaN / Infinity, or a number too long to convert
        raise InputError(f"{path}:{n} is not valid JSON ({exc})") from None
    except RecursionError:
        raise InputError(f"{path}:{n} nests JSON too deeply; a document is one flat object") from None
    example = '{"_id": "d1", "title": "optional", "text": "..."}'
    if not isinstance(row, dict):
        raise InputError(f"{path}:{n} holds {json_type(row)}, not a JSON object; write e.g. {example}")
    text = row.get("text")
    if not isinstance(text, str):
        got = "no 'text' field" if "text" not in row else f"'text' is {json_type(text)}"
        raise InputError(f"{path}:{n} needs a string field 'text' ({got}); write e.g. {example}")
    title = row.get("title")
    if title is not None and not isinstance(title, str):
        raise InputError(f"{path}:{n}: 'title' must be a string or null, got {json_type(title)}")
    key = next((k for k in ("_id", "docid", "id") if k in row), None)
    doc_id: Any = position if key is None else row[key]
    if isinstance(doc_id, bool) or not isinstance(doc_id, (str, int)):
        raise InputError(f"{path}:{n}: '{key}' must be a string or an integer, got {json_type(doc_id)}")
    doc_id = str(doc_id)
    _check_id(path, n, doc_id)
    meta = row.get("metadata")
    if meta is None:
        meta = {}
    elif not isinstance(meta, dict):
        raise InputError(f"{path}:{n}: 'metadata' must be a JSON object, got {json_type(meta)}")
    if "\\u" in line:  # only escapes can produce unpaired surrogates in valid UTF-8 input
        for field, value in (("text", text), ("title", title or ""), ("the id", doc_id)):
            _check_string(path, n, field, value)
        _check_string(path, n, "metadata", json.dumps(meta, ensure_ascii=False))
    return Document(doc_id, text, title or "", meta)


def _check_id(path: Path, n: int, doc_id: str) -> None:
    if not doc_id.strip():
        raise InputError(f"{path}:{n}: the document id is empty; give every document a non-empty id")
    if "\n" in doc_id or "\r" in doc_id:
        raise InputError(f"{path}:{n}: the document id {doc_id!r} contains a line break; ids are one line each")


def read_documents(path: str | os.PathLike[str]) -> list[Document]:
    """Documents from a jsonl or tsv file (see the module docstring); raises :class:`InputError` on bad input.

    Blank lines are skipped. A document whose ``text`` is empty is returned like any other.
    """
    path = Path(path)
    _check_readable(path)
    if path.suffix not in JSONL_SUFFIXES + TSV_SUFFIXES:
        raise InputError(f"{path}: unsupported input format {path.suffix!r}; use .jsonl or .tsv")
    docs: list[Document] = []
    if path.suffix in JSONL_SUFFIXES:
        for n, line in read_lines(path):
            if line.strip():
                docs.append(_doc_from_json(path, n, line, len(docs)))
    else:
        for n, line in read_lines(path):
            if not line:
                continue
            doc_id, sep, text = line.partition("\t")
            if sep:
                _check_id(path, n, doc_id)
                docs.append(Document(doc_id, text))
            else:
                docs.append(Document(str(n - 1), line))
    if not docs:
        raise InputError(f"{path} holds no documents")
    return docs
