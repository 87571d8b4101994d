"""The documents of an index: string ids, texts and JSON metadata by row id, tombstones, and filter columns.

Documents live in *parts*, each holding a run of consecutive rows (row ids ascend across parts). One ``add`` makes
one in-memory part; a save writes the parts it has not written before and hard-links the others, so saving after a
small change does not rewrite the whole store. :meth:`DocStore.compact` merges everything into one part and drops
deleted documents. On disk a part is a directory::

    rows.npy                     int64 (n,)   row id of each document
    doc_ids.bin / .offsets.npy   UTF-8 bytes of all ids back to back; int64 (n + 1,) byte offsets
    texts.bin / .offsets.npy     the same for texts
    metadata.jsonl / .offsets.npy  one JSON object per line; byte offsets of the lines
    columns.json + col-*.npy     per metadata field: numeric values, codes of other scalars, nested flags

All arrays are memory-mapped on load, so opening a store of a million documents reads almost nothing; reading
document ``i`` slices its bytes. Tombstones (deleted rows) are one small ``deleted.npy`` next to ``docs.json``,
which lists the parts. A doc id -> row dictionary is built on first use (about a second per million ids).
"""

from __future__ import annotations

import copy
import dataclasses
import json
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import FilterError, IndexCorruptedError, IndexVersionError, InputError
from .filters import Column, Filter

__all__ = ["DocStore", "StoredDocument"]

_FORMAT = "hybridsearch.docstore"
_FORMAT_VERSION = 1
_META = "docs.json"
_DELETED = "deleted.npy"
MAX_PARTS = 16
"""A save that would leave more parts than this merges them all into one."""


@dataclass(frozen=True)
class StoredDocument:
    """A document as the index holds it."""

    doc_id: str
    text: str
    metadata: dict[str, Any]
    row: int


# ----------------------------------------------------------------------------------------------- blobs
@dataclass(eq=False)
class _Blob:
    """``n`` byte strings stored back to back: ``data`` uint8 plus ``offsets`` int64 ``(n + 1,)``."""

    data: np.ndarray
    offsets: np.ndarray

    @classmethod
    def from_bytes(cls, items: Sequence[bytes]) -> _Blob:
        offsets = np.zeros(len(items) + 1, np.int64)
        if items:
            np.cumsum([len(b) for b in items], out=offsets[1:])
        return cls(np.frombuffer(b"".join(items), np.uint8), offsets)

    def __len__(self) -> int:
        return int(self.offsets.size - 1)

    def get(self, i: int) -> bytes:
        return self.data[int(self.offsets[i]) : int(self.offsets[i + 1])].tobytes()

    def all(self) -> list[bytes]:
        raw = self.data[int(self.offsets[0]) : int(self.offsets[-1])].tobytes()
        off = (self.offsets - self.offsets[0]).tolist()
        return [raw[a:b] for a, b in zip(off[:-1], off[1:], strict=True)]

    def strings(self) -> list[str]:
        """Every item decoded from UTF-8 (one decode of the whole blob when it is ASCII, the usual case for ids)."""
        raw = self.data[int(self.offsets[0]) : int(self.offsets[-1])].tobytes()
        text = raw.decode("utf-8")
        if len(text) != len(raw):  # not ASCII: byte offsets are not character offsets
            return [b.decode("utf-8") for b in self.all()]
        off = (self.offsets - self.offsets[0]).tolist()
        return [text[a:b] for a, b in zip(off[:-1], off[1:], strict=True)]

    def take(self, positions: np.ndarray) -> _Blob:
        return _Blob.from_bytes([self.get(int(p)) for p in positions])

    @property
    def nbytes(self) -> int:
        return int(self.data.nbytes + self.offsets.nbytes)

    @staticmethod
    def concat(blobs: Sequence[_Blob]) -> _Blob:
        data = np.concatenate([b.data[int(b.offsets[0]) : int(b.offsets[-1])] for b in blobs]) if blobs else np.zeros(0, np.uint8)
        offs = [np.zeros(1, np.int64)]
        base = 0
        for b in blobs:
            offs.append(b.offsets[1:] - b.offsets[0] + base)
            base += int(b.offsets[-1] - b.offsets[0])
        return _Blob(np.ascontiguousarray(data, np.uint8), np.concatenate(offs))

    def save(self, data_path: Path, offsets_path: Path) -> None:
        with open(data_path, "wb") as f:
            f.write(memoryview(np.ascontiguousarray(self.data[int(self.offsets[0]) : int(self.offsets[-1])])))
        np.save(offsets_path, np.ascontiguousarray(self.offsets - self.offsets[0]), allow_pickle=False)

    @classmethod
    def load(cls, data_path: Path, offsets_path: Path, mmap: bool) -> _Blob:
        offsets = _load_npy(offsets_path, mmap)
        size = data_path.stat().st_size if data_path.exists() else -1
        if size < 0:
            raise IndexCorruptedError(f"{data_path} is missing")
        if offsets.ndim != 1 or offsets.dtype != np.int64 or offsets.size < 1 or offsets[0] != 0 or offsets[-1] != size:
            raise IndexCorruptedError(f"{data_path} does not match its offsets (truncated or mixed files)")
        if size == 0:
            data = np.zeros(0, np.uint8)
        elif mmap:
            data = np.memmap(data_path, dtype=np.uint8, mode="r")
        else:
            data = np.fromfile(data_path, dtype=np.uint8)
        return cls(data, offsets)


def _load_npy(path: Path, mmap: bool) -> np.ndarray:
    try:
        return np.load(path, mmap_mode="r" if mmap else None, allow_pickle=False)
    except FileNotFoundError:
        raise IndexCorruptedError(f"{path} is missing") from None
    except ValueError:
        if mmap:  # zero-size arrays cannot be mapped
            try:
                return np.load(path, allow_pickle=False)
            except (OSError, ValueError, EOFError) as exc:
                raise IndexCorruptedError(f"{path} is unreadable or truncated: {exc}") from None
        raise IndexCorruptedError(f"{path} is unreadable or truncated") from None
    except (OSError, EOFError) as exc:
        raise IndexCorruptedError(f"{path} is unreadable or truncated: {exc}") from None


# ----------------------------------------------------------------------------------------------- parts
@dataclass(eq=False)
class _Part:
    rows: np.ndarray
    ids: _Blob
    texts: _Blob
    meta: _Blob
    columns: dict[str, Column]
    deleted: np.ndarray  # bool (n,), always in memory; replaced (never changed in place) by a deletion
    name: str | None = None  # set while the part equals the files of that name in the store's base directory
    _positions: dict[str, int] | None = field(default=None, repr=False)  # doc id -> last position, built on first use

    def __len__(self) -> int:
        return int(self.rows.size)

    def position_of(self, doc_id: str) -> int | None:
        """The last position holding ``doc_id`` (a live version is always the newest), or ``None``."""
        positions = self._positions
        if positions is None:
            positions = {d: i for i, d in enumerate(self.ids.strings())}
            self._positions = positions  # the ids never change, so every snapshot sharing this part can use it
        return positions.get(doc_id)

    @property
    def nbytes(self) -> int:
        total = self.rows.nbytes + self.ids.nbytes + self.texts.nbytes + self.meta.nbytes
        for c in self.columns.values():
            total += sum(a.nbytes for a in (c.num, c.cat, c.nested, c.big) if a is not None)
        return int(total)

    def save(self, d: Path) -> list[str]:
        d.mkdir(parents=True, exist_ok=True)
        np.save(d / "rows.npy", np.ascontiguousarray(self.rows, np.int64), allow_pickle=False)
        self.ids.save(d / "doc_ids.bin", d / "doc_ids.offsets.npy")
        self.texts.save(d / "texts.bin", d / "texts.offsets.npy")
        self.meta.save(d / "metadata.jsonl", d / "metadata.offsets.npy")
        names = ["rows.npy", "doc_ids.bin", "doc_ids.offsets.npy", "texts.bin", "texts.offsets.npy", "metadata.jsonl",
                 "metadata.offsets.npy"]
        fields = []
        for i, (key, col) in enumerate(self.columns.items()):
            entry: dict[str, Any] = {"name": key}
            for kind in ("num", "cat", "nested", "big"):
                arr = getattr(col, kind)
                entry[kind] = arr is not None
                if arr is not None:
                    fname = f"col-{i:04d}.{kind}.npy"
                    np.save(d / fname, np.ascontiguousarray(arr), allow_pickle=False)
                    names.append(fname)
            if col.cat is not None:  # the distinct strings / booleans / null, read on first use
                (d / f"col-{i:04d}.vocab.json").write_text(json.dumps(list(col.vocab), ensure_ascii=False), "utf-8")
                names.append(f"col-{i:04d}.vocab.json")
            fields.append(entry)
        (d / "columns.json").write_text(json.dumps({"n": len(self), "fields": fields}, ensure_ascii=False), "utf-8")
        names.append("columns.json")
        return names

    @classmethod
    def load(cls, d: Path, name: str, mmap: bool) -> _Part:
        rows = _load_npy(d / "rows.npy", mmap)
        n = int(rows.size)
        ids = _Blob.load(d / "doc_ids.bin", d / "doc_ids.offsets.npy", mmap)
        texts = _Blob.load(d / "texts.bin", d / "texts.offsets.npy", mmap)
        meta = _Blob.load(d / "metadata.jsonl", d / "metadata.offsets.npy", mmap)
        try:
            spec = json.loads((d / "columns.json").read_text("utf-8"))
        except FileNotFoundError:
            raise IndexCorruptedError(f"{d / 'columns.json'} is missing") from None
        except ValueError as exc:
            raise IndexCorruptedError(f"{d / 'columns.json'} is unreadable: {exc}") from None
        if rows.ndim != 1 or rows.dtype != np.int64 or len(ids) != n or len(texts) != n or len(meta) != n:
            raise IndexCorruptedError(f"document part {d} has arrays of different lengths (truncated or mixed files)")
        if n > 1 and (np.diff(rows) <= 0).any():
            raise IndexCorruptedError(f"row ids in {d / 'rows.npy'} are not strictly increasing")
        columns: dict[str, Column] = {}
        try:
            for i, f in enumerate(spec["fields"]):
                arrays: dict[str, np.ndarray | None] = {}
                for kind, dtype in (("num", np.float64), ("cat", np.int32), ("nested", np.bool_), ("big", np.int64)):
                    arr = _load_npy(d / f"col-{i:04d}.{kind}.npy", mmap) if f.get(kind) else None
                    if arr is not None and (arr.shape != (n,) or arr.dtype != dtype):
                        raise IndexCorruptedError(f"column {f['name']!r} in {d} has the wrong shape or type")
                    arrays[kind] = arr
                vocab: Any = ()
                if arrays["cat"] is not None:
                    vocab = _lazy_json(d / f"col-{i:04d}.vocab.json", mmap)
                columns[str(f["name"])] = Column(n, arrays["num"], arrays["cat"], vocab, arrays["nested"], arrays["big"])
        except (KeyError, TypeError) as exc:
            raise IndexCorruptedError(f"{d / 'columns.json'} is incomplete: {exc}") from None
        return cls(rows, ids, texts, meta, columns, np.zeros(n, bool), name)


def _lazy_json(path: Path, mmap: bool) -> Callable[[], list[Any]]:
    """A loader of a JSON list whose bytes are mapped (or read) now and parsed on first call.

    Mapping now keeps the bytes readable after a later save deletes this generation's directory.
    """
    if not path.is_file():
        raise IndexCorruptedError(f"{path} is missing")
    data: Any = np.memmap(path, dtype=np.uint8, mode="r") if mmap and path.stat().st_size else path.read_bytes()

    def load() -> list[Any]:
        try:
            out = json.loads(bytes(data))
        except ValueError as exc:
            raise IndexCorruptedError(f"{path} is unreadable: {exc}") from None
        if not isinstance(out, list):
            raise IndexCorruptedError(f"{path} does not hold a list")
        return out

    return load


def _merge_columns(parts: Sequence[_Part]) -> dict[str, Column]:
    keys = list(dict.fromkeys(k for p in parts for k in p.columns))
    n = sum(len(p) for p in parts)
    out: dict[str, Column] = {}
    for key in keys:
        cols = [p.columns.get(key) for p in parts]
        num = cat = nested = None
        if any(c is not None and c.num is not None for c in cols):
            num = np.concatenate([c.num if c is not None and c.num is not None else np.full(len(p), np.nan)
                                  for c, p in zip(cols, parts, strict=True)])
        vocab: tuple[Any, ...] = tuple(dict.fromkeys(v for c in cols if c is not None for v in c.vocab))
        if any(c is not None and c.cat is not None for c in cols):
            codes = {v: i for i, v in enumerate(vocab)}
            chunks = []
            for c, p in zip(cols, parts, strict=True):
                if c is None or c.cat is None:
                    chunks.append(np.full(len(p), -1, np.int32))
                else:
                    remap = np.array([codes[v] for v in c.vocab] + [-1], np.int32)
                    chunks.append(remap[np.asarray(c.cat)])  # -1 picks the trailing -1
            cat = np.concatenate(chunks)
        if any(c is not None and c.nested is not None for c in cols):
            nested = np.concatenate([c.nested if c is not None and c.nested is not None else np.zeros(len(p), bool)
                                     for c, p in zip(cols, parts, strict=True)])
        big = None
        if any(c is not None and c.big is not None for c in cols):
            big = np.concatenate([c.big if c is not None and c.big is not None else np.zeros(len(p), np.int64)
                                  for c, p in zip(cols, parts, strict=True)])
        out[key] = Column(n, num, cat, vocab, nested, big)
    return out


def _take_columns(columns: Mapping[str, Column], keep: np.ndarray) -> dict[str, Column]:
    out = {}
    for key, c in columns.items():
        num = None if c.num is None else np.asarray(c.num)[keep]
        cat = None if c.cat is None else np.asarray(c.cat)[keep]
        nested = None if c.nested is None else np.asarray(c.nested)[keep]
        big = None if c.big is None else np.asarray(c.big)[keep]
        present = (num is not None and (~np.isnan(num)).any()) or (cat is not None and (cat >= 0).any()) or (
            nested is not None and nested.any())
        if present:
            out[key] = Column(int(keep.size), num, cat, c.vocab, nested, big)
    return out


def _merge_parts(parts: Sequence[_Part]) -> _Part:
    return _Part(
        rows=np.concatenate([np.asarray(p.rows) for p in parts]),
        ids=_Blob.concat([p.ids for p in parts]),
        texts=_Blob.concat([p.texts for p in parts]),
        meta=_Blob.concat([p.meta for p in parts]),
        columns=_merge_columns(parts),
        deleted=np.concatenate([p.deleted for p in parts]),
    )


def _json_default(o: Any) -> Any:
    if isinstance(o, np.generic):
        return o.item()
    if isinstance(o, np.ndarray):
        return o.tolist()
    raise TypeError(f"{type(o).__name__} is not JSON serializable")


_JSON = json.JSONEncoder(ensure_ascii=False, separators=(",", ":"), allow_nan=False, default=_json_default)


def encode_metadata(metas: Sequence[Any]) -> list[bytes]:
    """Each document's metadata as compact JSON bytes (``None`` as ``{}``); InputError for anything else than
    a JSON object with string keys."""
    out = []
    for i, meta in enumerate(metas):
        if meta is None:
            out.append(b"{}")
            continue
        if not isinstance(meta, Mapping):
            raise InputError(f"metadata[{i}] must be a dict, got {type(meta).__name__}")
        for key in meta:
            if type(key) is not str and not isinstance(key, str):
                raise InputError(f"metadata[{i}] has a non-string key {key!r}; metadata keys must be strings")
        try:
            out.append(_JSON.encode(meta).encode("utf-8"))
        except (TypeError, ValueError) as exc:
            raise InputError(
                f"metadata[{i}] is not JSON-serialisable ({exc}); use strings, numbers, booleans, lists, dicts"
            ) from None
    return out


# ----------------------------------------------------------------------------------------------- store
class DocStore:
    """Ids, texts and metadata of every stored document (live or deleted but not yet compacted), by row id.

    Parts are never changed in place once another store shares them: a deletion replaces the part with one
    holding a new ``deleted`` array, so :meth:`snapshot` is a shallow copy of the list of parts.
    """

    #: fresh (unsaved) parts are merged while the older of the last two is at most this many times the newer,
    #: so a long run of small adds keeps O(log n) parts
    TAIL_MERGE_RATIO = 2

    def __init__(self) -> None:
        self._parts: list[_Part] = []
        self._next_part = 0
        self._layout: tuple[np.ndarray, np.ndarray] | None = None  # (all rows, part starts), set as one value
        self._n_deleted = 0

    def snapshot(self) -> DocStore:
        """A read-only view of the documents stored now, unaffected by later changes (the parts are shared)."""
        view = copy.copy(self)
        view._parts = list(self._parts)
        return view

    # ------------------------------------------------------------------ sizes
    def __len__(self) -> int:
        """Stored documents, deleted ones included until :meth:`compact`."""
        return sum(len(p) for p in self._parts)

    @property
    def n_live(self) -> int:
        return len(self) - self._n_deleted

    @property
    def n_deleted(self) -> int:
        return self._n_deleted

    @property
    def n_parts(self) -> int:
        return len(self._parts)

    @property
    def nbytes(self) -> int:
        return sum(p.nbytes for p in self._parts)

    def _built_layout(self) -> tuple[np.ndarray, np.ndarray]:
        layout = self._layout
        if layout is None:
            rows = np.concatenate([np.asarray(p.rows) for p in self._parts]) if self._parts else np.zeros(0, np.int64)
            layout = (rows, np.cumsum([0] + [len(p) for p in self._parts]))
            self._layout = layout  # one assignment: threads reading a snapshot never see half of it
        return layout

    @property
    def rows(self) -> np.ndarray:
        """Row ids of all stored documents, ascending."""
        return self._built_layout()[0]

    def _invalidate(self) -> None:
        self._layout = None

    @property
    def fields(self) -> set[str]:
        return {k for p in self._parts for k in p.columns}

    # ------------------------------------------------------------------ lookups
    def row_of(self, doc_id: str) -> int | None:
        """The live row holding ``doc_id``, or ``None``."""
        for p in reversed(self._parts):
            i = p.position_of(doc_id)
            if i is not None:
                # the live version of an id is always its newest row: a deleted newest version means none is live
                return None if p.deleted[i] else int(p.rows[i])
        return None

    def rows_of(self, doc_ids: Sequence[str]) -> list[int | None]:
        return [self.row_of(d) for d in doc_ids]

    def _locate(self, rows: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(part index, position in the part) of stored rows; IndexCorruptedError for a row the store lacks."""
        all_rows, starts = self._built_layout()
        if rows.size:
            pos = np.searchsorted(all_rows, rows)
            found = pos < all_rows.size
            found[found] = all_rows[pos[found]] == rows[found]
            if not found.all():
                raise IndexCorruptedError(
                    f"row {int(rows[~found][0])} is in an index component but not in the document store"
                )
        else:
            pos = np.zeros(0, np.int64)
        part = np.searchsorted(starts, pos, side="right") - 1
        return part, pos - starts[part]
    def _gather(self, rows: np.ndarray, what: Callable[[_Part], _Blob]) -> list[bytes]:
        r = np.asarray(rows, np.int64).ravel()
        part, local = self._locate(r)
        return [what(self._parts[p]).get(i) for p, i in zip(part.tolist(), local.tolist(), strict=True)]

    def doc_ids(self, rows: np.ndarray) -> list[str]:
        return [b.decode("utf-8") for b in self._gather(rows, lambda p: p.ids)]

    def texts(self, rows: np.ndarray) -> list[str]:
        return [b.decode("utf-8") for b in self._gather(rows, lambda p: p.texts)]

    def metadata(self, rows: np.ndarray) -> list[dict[str, Any]]:
        return [json.loads(b) for b in self._gather(rows, lambda p: p.meta)]

    def lookup(self, rows: np.ndarray) -> tuple[list[str | None], list[dict[str, Any] | None]]:
        """Texts and metadata of ``rows``; ``None`` for rows no longer stored (dropped by a compaction since)."""
        r = np.asarray(rows, np.int64).ravel()
        all_rows = self.rows
        pos = np.minimum(np.searchsorted(all_rows, r), max(all_rows.size - 1, 0))
        stored = (all_rows[pos] == r) if all_rows.size else np.zeros(r.shape, bool)
        texts: list[str | None] = [None] * r.size
        metas: list[dict[str, Any] | None] = [None] * r.size
        at = np.flatnonzero(stored)
        if at.size:
            for i, t, m in zip(at.tolist(), self.texts(r[at]), self.metadata(r[at]), strict=True):
                texts[i], metas[i] = t, m
        return texts, metas

    def get(self, row: int) -> StoredDocument:
        part, local = self._locate(np.array([row], np.int64))
        p, i = self._parts[int(part[0])], int(local[0])
        return StoredDocument(p.ids.get(i).decode("utf-8"), p.texts.get(i).decode("utf-8"), json.loads(p.meta.get(i)), int(row))

    def live_doc_ids(self) -> list[str]:
        """The ids of all live documents, in row order."""
        out: list[str] = []
        for p in self._parts:
            ids = p.ids.strings()
            out += [ids[i] for i in np.flatnonzero(~p.deleted).tolist()] if p.deleted.any() else ids
        return out

    def deleted_rows(self) -> np.ndarray:
        if not self._n_deleted:
            return np.zeros(0, np.int64)
        return np.concatenate([np.asarray(p.rows)[p.deleted] for p in self._parts])

    def live_rows(self) -> np.ndarray:
        return np.concatenate([np.asarray(p.rows)[~p.deleted] for p in self._parts]) if self._parts else np.zeros(0, np.int64)

    def alive_mask(self, size: int) -> np.ndarray:
        """Bool array of ``size`` entries indexed by row id: True for live rows."""
        out = np.zeros(size, bool)
        out[self.live_rows()] = True
        return out

    # ------------------------------------------------------------------ filters
    def filter_mask(self, flt: Filter, size: int) -> np.ndarray:
        """Bool array of ``size`` entries indexed by row id: True for live rows that pass ``flt``."""
        known: dict[str, bool] = {}
        for p in self._parts:
            for k, c in p.columns.items():
                known[k] = known.get(k, False) or c.filterable
        missing = sorted(flt.fields - set(known))
        if missing:
            shown = ", ".join(repr(k) for k in sorted(known)[:20]) or "none"
            raise FilterError(f"no document has the field(s) {', '.join(map(repr, missing))}; fields present: {shown}")
        for c in flt.conditions:
            if c.op != "$exists" and not known[c.field]:
                raise FilterError(f"field {c.field!r} holds only lists or objects, which filters cannot compare (only $exists)")
        out = np.zeros(size, bool)
        for p in self._parts:
            ok = flt.evaluate(p.columns, len(p)) & ~p.deleted
            out[np.asarray(p.rows)[ok]] = True
        return out

    # ------------------------------------------------------------------ changes
    def append(
        self, rows: np.ndarray, doc_ids: Sequence[str], texts: Sequence[str], metadata_json: Sequence[bytes],
        columns: dict[str, Column],
    ) -> None:
        """Append one batch as a new part; the caller has validated everything."""
        n = len(doc_ids)
        if n == 0:
            return
        part = _Part(
            rows=np.ascontiguousarray(rows, np.int64),
            ids=_Blob.from_bytes([d.encode("utf-8") for d in doc_ids]),
            texts=_Blob.from_bytes([t.encode("utf-8") for t in texts]),
            meta=_Blob.from_bytes(list(metadata_json)),
            columns=columns,
            deleted=np.zeros(n, bool),
        )
        self._parts.append(part)
        while (
            len(self._parts) >= 2
            and self._parts[-1].name is None
            and self._parts[-2].name is None
            and len(self._parts[-2]) <= self.TAIL_MERGE_RATIO * len(self._parts[-1])
        ):
            self._parts[-2:] = [_merge_parts(self._parts[-2:])]
        self._invalidate()

    def delete(self, rows: np.ndarray) -> None:
        """Tombstone stored live rows (the caller checked they are live).

        Each touched part is replaced by a copy with a new ``deleted`` array: snapshots keep the old one.
        """
        r = np.asarray(rows, np.int64)
        if r.size == 0:
            return
        part, local = self._locate(r)
        for p in np.unique(part).tolist():
            old = self._parts[p]
            deleted = old.deleted.copy()
            deleted[local[part == p]] = True
            self._parts[p] = dataclasses.replace(old, deleted=deleted)
        self._n_deleted += int(r.size)

    def compact(self) -> None:
        """Drop deleted documents and merge all parts into one in-memory part."""
        if not self._parts:
            return
        if len(self._parts) == 1 and not self._n_deleted:
            return
        merged = _merge_parts(self._parts)
        if self._n_deleted:
            keep = np.flatnonzero(~merged.deleted)
            merged = _Part(
                rows=np.asarray(merged.rows)[keep], ids=merged.ids.take(keep), texts=merged.texts.take(keep),
                meta=merged.meta.take(keep), columns=_take_columns(merged.columns, keep), deleted=np.zeros(keep.size, bool),
            )
        self._parts = [merged] if len(merged) else []
        self._n_deleted = 0
        self._invalidate()

    # ------------------------------------------------------------------ files
    def save(self, directory: Path, *, link: Callable[[str, Path, list[str]], bool] | None = None) -> tuple[list[str], list[str]]:
        """Write the store into ``directory``; returns ``(written, linked)`` file names relative to it.

        Parts that are unchanged since the last save or load are passed to ``link(part_name, target_dir, names)``,
        which hard-links them from the previous save and returns False when it cannot (then they are written).
        Unsaved parts are merged into one new part first; past :data:`MAX_PARTS` parts everything is merged.
        """
        d = Path(directory)
        d.mkdir(parents=True, exist_ok=True)
        fresh = [i for i, p in enumerate(self._parts) if p.name is None]
        if len(fresh) > 1 and fresh == list(range(fresh[0], len(self._parts))):
            merged = _merge_parts(self._parts[fresh[0]:])
            self._parts[fresh[0]:] = [merged]
        if len(self._parts) > MAX_PARTS:
            self._parts = [_merge_parts(self._parts)]
        self._invalidate()
        written: list[str] = []
        linked: list[str] = []
        part_names = []
        for p in self._parts:
            if p.name is not None and link is not None and link(p.name, d / p.name, _part_files(p)):
                linked += [f"{p.name}/{f}" for f in _part_files(p)]
            else:
                name = p.name or f"part-{self._next_part:06d}"
                if p.name is None:
                    self._next_part += 1
                written += [f"{name}/{f}" for f in p.save(d / name)]
                p.name = name
            part_names.append({"name": p.name, "n": len(p)})
        np.save(d / _DELETED, self.deleted_rows(), allow_pickle=False)
        meta = {"format": _FORMAT, "version": _FORMAT_VERSION, "parts": part_names, "next_part": self._next_part,
                "n": len(self), "deleted": self._n_deleted}
        (d / _META).write_text(json.dumps(meta, indent=1), "utf-8")
        written += [_DELETED, _META]
        return written, linked

    @classmethod
    def load(cls, directory: Path, *, mmap: bool = True) -> DocStore:
        d = Path(directory)
        try:
            meta = json.loads((d / _META).read_text("utf-8"))
        except FileNotFoundError:
            raise IndexCorruptedError(f"{d / _META} is missing") from None
        except ValueError as exc:
            raise IndexCorruptedError(f"{d / _META} is unreadable: {exc}") from None
        if not isinstance(meta, dict) or meta.get("format") != _FORMAT:
            raise IndexCorruptedError(f"{d / _META} does not describe a document store")
        if int(meta.get("version", 0)) > _FORMAT_VERSION:
            raise IndexVersionError(f"document store format {meta['version']} in {d} is newer than this library reads")
        store = cls()
        try:
            for entry in meta["parts"]:
                part = _Part.load(d / entry["name"], entry["name"], mmap)
                if len(part) != int(entry["n"]):
                    raise IndexCorruptedError(f"document part {entry['name']} holds {len(part)} documents, expected {entry['n']}")
                store._parts.append(part)
            store._next_part = int(meta["next_part"])
        except (KeyError, TypeError) as exc:
            raise IndexCorruptedError(f"{d / _META} is incomplete: {exc}") from None
        rows = store.rows
        if rows.size > 1 and (np.diff(rows) <= 0).any():
            raise IndexCorruptedError(f"document parts in {d} overlap (row ids not increasing)")
        deleted = _load_npy(d / _DELETED, False)
        if deleted.ndim != 1 or deleted.dtype != np.int64:
            raise IndexCorruptedError(f"{d / _DELETED} is not an int64 list of rows")
        if deleted.size:
            if not np.isin(deleted, rows).all() or np.unique(deleted).size != deleted.size:
                raise IndexCorruptedError(f"{d / _DELETED} names rows that are not stored")
            part, local = store._locate(deleted)
            for p, i in zip(part.tolist(), local.tolist(), strict=True):
                store._parts[p].deleted[i] = True
        store._n_deleted = int(deleted.size)
        if store._n_deleted != int(meta.get("deleted", store._n_deleted)) or len(store) != int(meta.get("n", len(store))):
            raise IndexCorruptedError(f"{d} does not match its counts in {_META}")
        return store


def _part_files(p: _Part) -> list[str]:
    names = ["rows.npy", "doc_ids.bin", "doc_ids.offsets.npy", "texts.bin", "texts.offsets.npy", "metadata.jsonl",
             "metadata.offsets.npy", "columns.json"]
    for i, col in enumerate(p.columns.values()):
        names += [f"col-{i:04d}.{kind}.npy" for kind in ("num", "cat", "nested", "big") if getattr(col, kind) is not None]
        if col.cat is not None:
            names.append(f"col-{i:04d}.vocab.json")
    return names
