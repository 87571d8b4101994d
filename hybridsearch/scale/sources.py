"""Input shards for distributed encoding: jsonl or parquet files of documents, split into work units.

A document row holds ``text`` and an id under ``_id``, ``docid`` or ``id``; an optional ``title`` is joined to
the text with a space (as :class:`~hybridsearch.datasets.Document` does) and an optional ``metadata`` object is
kept (the title too, as the command line's ``index`` stores it). Parquet files take the same column names
(``metadata`` as a struct or a JSON string).

A :class:`Unit` is a contiguous row range of one input file: the unit of work, of retry and of resumption.
Its name is derived from the file's path, size and row range, so a restarted run over the same inputs plans
the same units and finds the finished ones.
"""

from __future__ import annotations

import glob
import hashlib
import json
import os
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from ..errors import InputError

__all__ = ["DocumentRows", "Unit", "expand_inputs", "plan_units", "read_unit"]

JSONL_SUFFIXES = (".jsonl", ".ndjson", ".json")
PARQUET_SUFFIXES = (".parquet", ".pq")


@dataclass(frozen=True)
class Unit:
    """Rows ``[start, stop)`` of ``path`` (data rows: blank jsonl lines are not counted)."""

    path: str
    start: int
    stop: int
    name: str
    offset: int = 0  # jsonl: byte offset of row ``start``, so a unit is read without scanning the rows before it

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Unit:
        return cls(str(d["path"]), int(d["start"]), int(d["stop"]), str(d["name"]), int(d.get("offset", 0)))

    def __len__(self) -> int:
        return self.stop - self.start


@dataclass
class DocumentRows:
    """The documents of one unit, column-wise."""

    ids: list[str]
    texts: list[str]
    metadata: list[dict[str, Any]]

    def __len__(self) -> int:
        return len(self.ids)


def _kind(path: Path) -> str:
    if path.suffix in JSONL_SUFFIXES:
        return "jsonl"
    if path.suffix in PARQUET_SUFFIXES:
        return "parquet"
    raise InputError(f"{path}: unsupported input format {path.suffix!r}; use .jsonl or .parquet shards")


def expand_inputs(inputs: str | os.PathLike[str] | Iterable[str | os.PathLike[str]]) -> list[Path]:
    """Files named by ``inputs``: files, folders (their ``*.jsonl``/``*.parquet`` files) and glob patterns.

    Returns absolute paths, sorted within each argument, each file once. InputError when nothing matches.
    """
    items = [inputs] if isinstance(inputs, (str, os.PathLike)) else list(inputs)
    if not items:
        raise InputError("no input shards given; pass .jsonl/.parquet files, folders or glob patterns")
    out: list[Path] = []
    for item in items:
        p = Path(item)
        if p.is_dir():
            found = sorted(f for f in p.iterdir() if f.is_file() and f.suffix in JSONL_SUFFIXES + PARQUET_SUFFIXES)
            if not found:
                raise InputError(f"{p} holds no .jsonl or .parquet files")
        elif p.is_file():
            found = [p]
        else:
            found = sorted(Path(f) for f in glob.glob(str(p)) if Path(f).is_file())
            if not found:
                raise InputError(f"no input file matches {str(p)!r}")
        for f in found:
            _kind(f)
            f = f.resolve()
            if f not in out:
                out.append(f)
    return out


def _row_offsets(path: Path, every: int) -> tuple[int, list[int]]:
    """Number of data rows, and the byte offset of rows ``0, every, 2 * every, ...`` (jsonl; parquet: zeros)."""
    if _kind(path) == "parquet":
        import pyarrow.parquet as pq

        n = int(pq.ParquetFile(path).metadata.num_rows)
        return n, [0] * ((n + every - 1) // every)
    n, pos, offsets = 0, 0, []
    with open(path, "rb") as f:
        for line in f:
            if line.strip():
                if n % every == 0:
                    offsets.append(pos)
                n += 1
            pos += len(line)
    return n, offsets


def plan_units(files: Sequence[Path], rows_per_unit: int) -> list[Unit]:
    """Split every file into units of at most ``rows_per_unit`` rows (reads jsonl files once to count rows)."""
    if isinstance(rows_per_unit, bool) or not isinstance(rows_per_unit, int) or rows_per_unit < 1:
        raise InputError(f"rows_per_unit must be a positive integer, got {rows_per_unit!r}")
    units: list[Unit] = []
    for path in files:
        n, offsets = _row_offsets(path, rows_per_unit)
        size = path.stat().st_size
        stem = "".join(c if c.isalnum() or c in "-_." else "_" for c in path.stem)[:40]
        for start in range(0, n, rows_per_unit):
            stop = min(start + rows_per_unit, n)
            h = hashlib.sha256(f"{path}|{size}|{start}|{stop}".encode()).hexdigest()[:10]
            units.append(Unit(str(path), start, stop, f"{stem}-{start:09d}-{h}", offsets[start // rows_per_unit]))
    return units


def _row_doc(row: Any, where: str) -> tuple[str, str, dict[str, Any]]:
    if not isinstance(row, dict):
        raise InputError(f"{where} is not an object with a 'text' field")
    text = row.get("text")
    if not isinstance(text, str):
        raise InputError(f"{where} needs a string field 'text'")
    doc_id = row.get("_id", row.get("docid", row.get("id")))
    if doc_id is None or (isinstance(doc_id, str) and not doc_id):
        raise InputError(f"{where} has no document id; give each row an '_id', 'docid' or 'id'")
    meta = row.get("metadata")
    if isinstance(meta, str) and meta:
        try:
            meta = json.loads(meta)
        except json.JSONDecodeError:
            raise InputError(f"{where}: 'metadata' is a string but not JSON") from None
    meta = dict(meta) if isinstance(meta, dict) else {}
    title = row.get("title") or ""
    if title:
        meta = {"title": title, **meta}
    return str(doc_id), (f"{title} {text}".strip() if title else text), meta


def read_unit(unit: Unit) -> DocumentRows:
    """The documents of ``unit``; InputError naming the file and row for a malformed row."""
    path = Path(unit.path)
    ids: list[str] = []
    texts: list[str] = []
    metas: list[dict[str, Any]] = []
    if _kind(path) == "parquet":
        import pyarrow.parquet as pq

        table = pq.read_table(path).slice(unit.start, len(unit))
        for i, row in enumerate(table.to_pylist()):
            d, t, m = _row_doc(row, f"{path} row {unit.start + i}")
            ids.append(d)
            texts.append(t)
            metas.append(m)
    else:
        n = unit.start
        with open(path, "rb") as f:
            f.seek(unit.offset)
            for raw in f:
                if not raw.strip():
                    continue
                if n >= unit.stop:
                    break
                where = f"{path} row {n}"
                n += 1
                try:
                    row = json.loads(raw.decode("utf-8"))
                except (json.JSONDecodeError, UnicodeDecodeError) as exc:
                    raise InputError(f"{where} is not valid UTF-8 JSON ({exc})") from None
                d, t, m = _row_doc(row, where)
                ids.append(d)
                texts.append(t)
                metas.append(m)
    if len(ids) != len(unit):
        raise InputError(f"{path} changed while encoding: expected {len(unit)} rows from row {unit.start}, found {len(ids)}")
    return DocumentRows(ids, texts, metas)
