"""One persistent, updatable index over dense, sparse and multi-vector views, with string ids and metadata.

:class:`HybridIndex` keeps one integer row-id space for all its parts: a :class:`~.dense.DenseIndex`, a
:class:`~.sparse.SparseIndex`, a :class:`~.multivector.MultiVectorStore` (each present when the index holds that
view) and a :class:`~.docstore.DocStore` with the documents' string ids, texts and JSON metadata. Row ids are
assigned in order and never reused.

Updates
    :meth:`~HybridIndex.add` appends; :meth:`~HybridIndex.upsert` adds the new version under a new row and
    tombstones the old one; :meth:`~HybridIndex.delete` tombstones. Tombstoned rows are masked out of every search
    (before top-k) and never returned; :meth:`~HybridIndex.compact` drops them physically from every part. A call
    that raises leaves the index unchanged.

Search
    Modes are named as in the bge-m3 paper (see :mod:`hybridsearch.modes`). ``mode="dense"`` / ``"sparse"``: that
    component's exact (or ANN) top-k. ``"multivector"``: dense (or sparse, without dense) proposes ``candidates``
    rows and MaxSim reranks them. ``"dense+sparse"``: every first-stage view (dense, sparse) proposes
    ``candidates`` rows, the union is scored exactly by each view, and :mod:`hybridsearch.fusion` combines them.
    ``"all"``: then the fused top ``candidates`` are rescored with MaxSim and fused again over all three views.
    ``"hybrid"`` is ``"all"`` when the index and the query both hold multi-vectors, else ``"dense+sparse"``.
    Every hit carries each view's score (:attr:`~hybridsearch.hits.Hits.view_scores`). Metadata filters and tombstones become an
    ``allowed`` mask that every component applies before its top-k.

Persistence
    :meth:`~HybridIndex.save` commits a new generation (see :mod:`.manifest`): crash-safe, and parts unchanged since
    the last save or load are hard-linked instead of rewritten (a save after deletions only writes the tombstones).
    :meth:`~HybridIndex.load` memory-maps the arrays. A loaded index can be changed: each part copies what it changes
    into memory (dense: the whole FAISS index on the first change; sparse and documents: new segments and parts
    beside the mapped ones; multi-vectors: new segments, and everything on compaction), and ``save()`` with no path
    commits to the directory it came from.
"""

from __future__ import annotations

import contextlib
import datetime as _dt
import logging
import os
import shutil
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from .._atomic import fsync_dir
from .._version import __version__
from ..errors import (
    ConfigError,
    DimensionMismatchError,
    DuplicateIdError,
    IndexCorruptedError,
    IndexFormatError,
    InputError,
    UnknownIdError,
)
from ..fusion import DEFAULT_FUSION, Fusion, parse_fusion
from ..hits import Hits
from ..identity import check_views
from ..modes import SEARCH_MODES, index_search_args
from ..types import MODES, Encoded, EncoderInfo
from .dense import DenseIndex
from .docstore import DocStore, StoredDocument, encode_metadata
from .filters import build_columns, parse_filter
from .manifest import (
    Manifest,
    clean_leftovers,
    gen_name,
    link_or_copy,
    read_manifest,
    sync_and_checksum,
    verify_files,
    write_manifest,
    writer_lock,
)
from .multivector import DEFAULT_COMPRESSION, MultiVectorStore
from .sparse import SparseIndex

__all__ = ["SEARCH_MODES", "HybridIndex"]

logger = logging.getLogger(__name__)

_FIRST_STAGE = ("dense", "sparse")
_ID_PREVIEW = 5


def _preview(items: Sequence[Any]) -> str:
    shown = ", ".join(repr(x) for x in items[:_ID_PREVIEW])
    return shown + (f", ... ({len(items)} in all)" if len(items) > _ID_PREVIEW else "")


def _positive_int(value: Any, name: str) -> int:
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, (int, np.integer)) or value <= 0:
        raise InputError(f"{name} must be a positive integer, got {value!r}")
    return int(value)


def _ranks_of(cand: np.ndarray, lists: np.ndarray) -> np.ndarray:
    """For each candidate row, its 1-based position in the same query's ``lists`` row (0 when absent)."""
    nq, m = cand.shape
    out = np.zeros((nq, m), np.int32)
    if nq == 0 or m == 0 or lists.shape[1] == 0:
        return out
    stride = int(max(cand.max(initial=-1), lists.max(initial=-1))) + 2
    q_off = np.arange(nq, dtype=np.int64)[:, None] * stride
    ok = lists >= 0
    keys = (q_off + lists)[ok]
    pos = np.broadcast_to(np.arange(1, lists.shape[1] + 1, dtype=np.int32), lists.shape)[ok]
    if keys.size == 0:
        return out
    order = np.argsort(keys, kind="stable")
    keys, pos = keys[order], pos[order]
    c_ok = cand >= 0
    ck = (q_off + cand)[c_ok]
    at = np.minimum(np.searchsorted(keys, ck), keys.size - 1)
    out[c_ok] = np.where(keys[at] == ck, pos[at], 0)
    return out


def _union(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Row-wise union of two ``-1``-padded row arrays, ``-1``-padded (order: ascending row, padding last)."""
    u = np.sort(np.concatenate([a, b], axis=1), axis=1)
    if u.shape[1] > 1:
        dup = np.zeros(u.shape, bool)
        dup[:, 1:] = u[:, 1:] == u[:, :-1]
        u[dup] = -1
    u[u < 0] = np.iinfo(np.int64).max
    u.sort(axis=1)
    u[u == np.iinfo(np.int64).max] = -1
    width = int((u >= 0).sum(axis=1).max(initial=0))
    return np.ascontiguousarray(u[:, : max(width, 1)])


def _top(rows: np.ndarray, scores: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Sort each query's candidates by score (descending, ties by row id), padding last; keep ``k``.

    Returns the rows, scores and the column order used (to carry other per-candidate arrays along).
    """
    s = np.where(rows >= 0, scores, -np.inf).astype(np.float32)
    big = np.where(rows >= 0, rows, np.iinfo(np.int64).max)
    order = np.lexsort((big, -s.astype(np.float64)), axis=-1)[:, :k]
    r = np.take_along_axis(rows, order, axis=1)
    sc = np.take_along_axis(s, order, axis=1)
    if r.shape[1] < k:
        pad = k - r.shape[1]
        r = np.pad(r, ((0, 0), (0, pad)), constant_values=-1)
        sc = np.pad(sc, ((0, 0), (0, pad)), constant_values=-np.inf)
        order = np.pad(order, ((0, 0), (0, pad)), constant_values=0)
    sc[r < 0] = -np.inf
    return r, sc, order


def _take(a: np.ndarray, order: np.ndarray, valid: np.ndarray, fill: Any) -> np.ndarray:
    """``a``'s columns in ``order`` (from :func:`_top`), ``fill`` where the slot is padding."""
    if a.shape[1] == 0:
        return np.full(order.shape, fill, a.dtype)
    out = np.take_along_axis(a, np.minimum(order, a.shape[1] - 1), axis=1)
    return np.where(valid, out, fill).astype(a.dtype)


class HybridIndex:
    """Dense + sparse + multi-vector index with string document ids, texts, metadata filters and crash-safe saves.

    Parameters
    ----------
    modes:
        Views to index, e.g. ``("dense", "sparse")``. ``None``: every view of the first :class:`Encoded` added.
        Later adds must carry these views (extra views are ignored).
    dense_factory, ef_search, nprobe, ef_construction:
        The dense part's FAISS factory string (``"Flat"`` is exact; ``"HNSW32"``, ``"IVF1024,Flat"``, ...) and
        its search/construction knobs, see :class:`~.dense.DenseIndex`.
    multivector_compression, multivector_pool_factor:
        How multi-vectors are stored (``"fp32"``, ``"fp16"``, ``"int8"``, ``"binary"``) and token pooling, see
        :class:`~.multivector.MultiVectorStore`.

    Dimensions, vocabulary size and the encoder identity (:class:`EncoderInfo`) come from the first ``add``.

    >>> import numpy as np
    >>> from hybridsearch.types import Encoded
    >>> index = HybridIndex()
    >>> index.add(["a", "b"], Encoded(dense=np.eye(2, 4, dtype=np.float32)), texts=["first", "second"])
    >>> hits = index.search(Encoded(dense=np.array([[0, 1, 0, 0]], np.float32)), k=1)
    >>> hits[0][0].doc_id, hits[0][0].text
    ('b', 'second')
    """

    def __init__(
        self,
        *,
        modes: Sequence[str] | None = None,
        dense_factory: str = "Flat",
        ef_search: int | None = None,
        nprobe: int | None = None,
        ef_construction: int | None = None,
        multivector_compression: str = DEFAULT_COMPRESSION,
        multivector_pool_factor: int = 1,
    ) -> None:
        if modes is not None:
            if isinstance(modes, str):
                modes = [modes]
            unknown = set(modes) - set(MODES)
            if unknown or not modes:
                raise ConfigError(f"modes must be a non-empty subset of {list(MODES)}, got {list(modes)!r}")
            if not set(modes) & set(_FIRST_STAGE):
                raise ConfigError("an index needs a dense or sparse view: multi-vectors only rerank their candidates")
        self._want_modes = None if modes is None else tuple(m for m in MODES if m in modes)
        # Check the settings that do not depend on the data now. The factory string is checked at the first add:
        # whether it is valid can depend on the width (``PQ48`` needs a width divisible by 48).
        if not isinstance(dense_factory, str) or not dense_factory.strip():
            raise ConfigError(f"dense_factory must be a FAISS factory string such as 'Flat' or 'HNSW32', got {dense_factory!r}")
        DenseIndex(8, factory="Flat", ef_search=ef_search, nprobe=nprobe, ef_construction=ef_construction)
        MultiVectorStore(8, compression=multivector_compression, pool_factor=multivector_pool_factor)  # type: ignore[arg-type]
        self._config: dict[str, Any] = {
            "dense": {"factory": dense_factory, "ef_search": ef_search, "nprobe": nprobe, "ef_construction": ef_construction},
            "multivector": {"compression": multivector_compression, "pool_factor": multivector_pool_factor},
            "sparse": {},
            "modes": None if self._want_modes is None else list(self._want_modes),
        }
        self._modes: tuple[str, ...] = ()
        self._encoder: EncoderInfo | None = None
        self._dims: dict[str, int] = {}
        self._dense: DenseIndex | None = None
        self._sparse: SparseIndex | None = None
        self._mv: MultiVectorStore | None = None
        self._docs = DocStore()
        self._next_row = 0
        self._alive: np.ndarray | None = None
        # Persistence state: where the index was last loaded from / committed to, and what is unchanged since.
        self._path: Path | None = None
        self._generation: int | None = None
        self._base_files: dict[str, dict[str, Any]] = {}
        self._clean: set[str] = set()

    # ------------------------------------------------------------------ properties
    def __len__(self) -> int:
        """Live documents (deleted ones not counted)."""
        return self._docs.n_live

    def __contains__(self, doc_id: object) -> bool:
        return isinstance(doc_id, str) and self._docs.row_of(doc_id) is not None

    @property
    def modes(self) -> tuple[str, ...]:
        """The views this index holds (empty until the first add)."""
        return self._modes

    @property
    def encoder(self) -> EncoderInfo | None:
        """The encoder the documents were encoded with (``None`` when the first add carried no encoder info)."""
        return self._encoder

    @property
    def dims(self) -> dict[str, int]:
        """``{"dense": width, "sparse": vocab_size, "multivector": width}`` for the views held."""
        return dict(self._dims)

    @property
    def path(self) -> Path | None:
        """The directory this index was loaded from or last saved to."""
        return self._path

    @property
    def generation(self) -> int | None:
        """The committed generation number in :attr:`path`, or ``None`` when never saved."""
        return self._generation

    def doc_ids(self) -> list[str]:
        """The ids of all live documents, in row order."""
        return self._docs.live_doc_ids()

    def __repr__(self) -> str:
        enc = f", encoder={self._encoder.name!r}" if self._encoder else ""
        where = f", path={str(self._path)!r}" if self._path else ""
        return f"HybridIndex(documents={len(self)}, modes={self._modes!r}{enc}{where})"

    def info(self) -> dict[str, Any]:
        """Counts, dimensions, configuration and bytes per part (``bytes`` are array sizes, mapped or not)."""
        parts = {
            "dense": None if self._dense is None else self._dense.nbytes,
            "sparse": None if self._sparse is None else self._sparse.nbytes,
            "multivector": None if self._mv is None else self._mv.nbytes,
            "docs": self._docs.nbytes,
        }
        sizes = {k: int(v) for k, v in parts.items() if v is not None}
        sizes["total"] = sum(sizes.values())
        out: dict[str, Any] = {
            "documents": len(self),
            "stored": len(self._docs),
            "deleted": self._docs.n_deleted,
            "next_row": self._next_row,
            "modes": list(self._modes),
            "dims": dict(self._dims),
            "encoder": None if self._encoder is None else self._encoder.to_dict(),
            "config": self._component_config(),
            "bytes": sizes,
            "path": None if self._path is None else str(self._path),
            "generation": self._generation,
        }
        if self._sparse is not None:
            out["sparse_nnz"] = int(self._sparse.nnz)
        if self._mv is not None:
            out["multivector_tokens"] = int(self._mv.n_tokens)
        return out

    def _component_config(self) -> dict[str, Any]:
        cfg = {k: dict(v) if isinstance(v, dict) else v for k, v in self._config.items()}
        if self._dense is not None:
            cfg["dense"]["factory"] = self._dense.factory
        return cfg

    # ------------------------------------------------------------------ documents
    def get(self, doc_id: str) -> StoredDocument:
        """The stored text and metadata of a live document; UnknownIdError when the index does not hold it."""
        row = self._docs.row_of(doc_id) if isinstance(doc_id, str) else None
        if row is None:
            raise UnknownIdError(f"no document with id {doc_id!r} in this index")
        return self._docs.get(row)

    # ------------------------------------------------------------------ checks
    def _check_encoder(self, info: EncoderInfo | None, what: str, views: Sequence[str] | None = None) -> None:
        """IndexMismatchError unless ``info``'s ``views`` (default: all held) match, per :mod:`hybridsearch.identity`."""
        check_views(self._encoder, info, self._modes if views is None else views, what)

    def _check_views(self, enc: Encoded, modes: Sequence[str], what: str) -> None:
        missing = [m for m in modes if getattr(enc, m) is None]
        if missing:
            raise InputError(
                f"the {what} lack the {', '.join(missing)} view(s) this index needs (the {what} have {list(enc.modes)}, "
                f"the index holds {list(self._modes)}); encode with outputs={tuple(modes)!r}"
            )
        checks = {"dense": enc.dense_dim, "sparse": enc.vocab_size, "multivector": enc.multivector_dim}
        for m in modes:
            have, want = checks[m], self._dims.get(m)
            if want is not None and have != want:
                if m == "multivector" and enc.multivector is not None and enc.multivector.vectors.shape[0] == 0:
                    continue
                noun = "vocabulary size" if m == "sparse" else "width"
                raise DimensionMismatchError(f"the {what}' {m} {noun} is {have} but this index holds {want}")

    @staticmethod
    def _check_values(enc: Encoded, modes: Sequence[str], what: str) -> None:
        """NaN/inf and negative sparse weights (arrays can be changed in place after an Encoded was built)."""
        if "dense" in modes and enc.dense is not None and enc.dense.size and not np.isfinite(enc.dense).all():
            raise InputError(f"the {what}' dense vectors contain NaN or infinite values")
        if "sparse" in modes and enc.sparse is not None and enc.sparse.nnz:
            data = enc.sparse.data
            if not np.isfinite(data).all():
                raise InputError(f"the {what}' sparse weights contain NaN or infinite values")
            if (data < 0).any():
                raise InputError(f"the {what}' sparse weights must be non-negative; found {float(data.min())}")
        if "multivector" in modes and enc.multivector is not None and enc.multivector.vectors.size:
            if not np.isfinite(enc.multivector.vectors).all():
                raise InputError(f"the {what}' multi-vectors contain NaN or infinite values")

    @staticmethod
    def _check_ids(ids: Any, *, unique: bool = True) -> list[str]:
        if isinstance(ids, str):
            ids = [ids]
        if isinstance(ids, np.ndarray):
            ids = ids.tolist()
        if not isinstance(ids, Sequence):
            raise InputError(f"ids must be a list of strings, got {type(ids).__name__}")
        out = list(ids)
        for i, d in enumerate(out):
            if type(d) is not str and not isinstance(d, str):
                raise InputError(f"ids[{i}] is {type(d).__name__} {d!r}; document ids must be strings (use str(id))")
            if not d:
                raise InputError(f"ids[{i}] is an empty string; document ids must be non-empty")
        if unique and len(set(out)) != len(out):
            seen: set[str] = set()
            dups = [d for d in out if d in seen or seen.add(d)]  # type: ignore[func-returns-value]
            raise DuplicateIdError(f"the batch holds the same id more than once: {_preview(list(dict.fromkeys(dups)))}")
        return out

    # ------------------------------------------------------------------ updates
    def add(
        self,
        ids: Sequence[str],
        encoded: Encoded,
        *,
        texts: Sequence[str] | None = None,
        metadata: Sequence[Mapping[str, Any] | None] | None = None,
    ) -> None:
        """Add new documents. ``ids[i]`` names row ``i`` of ``encoded``; ``texts`` and ``metadata`` are optional.

        Raises DuplicateIdError for an id repeated in the batch or already in the index (use :meth:`upsert` to
        replace), InputError for mismatched lengths, missing views, NaN/inf values or negative sparse weights,
        DimensionMismatchError for widths that differ from the index, IndexMismatchError for another encoder.
        Nothing changes when it raises.
        """
        doc_ids, texts_l, meta_json, columns = self._prepare(ids, encoded, texts, metadata)
        present = [d for d, r in zip(doc_ids, self._docs.rows_of(doc_ids), strict=True) if r is not None]
        if present:
            raise DuplicateIdError(
                f"{len(present)} id(s) are already in the index: {_preview(present)}; use upsert() to replace documents"
            )
        self._append(doc_ids, encoded, texts_l, meta_json, columns)

    def upsert(
        self,
        ids: Sequence[str],
        encoded: Encoded,
        *,
        texts: Sequence[str] | None = None,
        metadata: Sequence[Mapping[str, Any] | None] | None = None,
    ) -> None:
        """Add documents, replacing those whose ids are already present (old rows are tombstoned, new rows added)."""
        doc_ids, texts_l, meta_json, columns = self._prepare(ids, encoded, texts, metadata)
        old = np.array([r for r in self._docs.rows_of(doc_ids) if r is not None], np.int64)
        self._append(doc_ids, encoded, texts_l, meta_json, columns)
        if old.size:
            self._docs.delete(old)
            self._alive = None

    def delete(self, ids: Sequence[str]) -> None:
        """Tombstone documents: they are never returned again and :meth:`compact` removes them.

        Raises UnknownIdError (and deletes nothing) when any id is not in the index; an id repeated in the batch
        counts once.
        """
        doc_ids = list(dict.fromkeys(self._check_ids(ids, unique=False)))
        rows = self._docs.rows_of(doc_ids)
        unknown = [d for d, r in zip(doc_ids, rows, strict=True) if r is None]
        if unknown:
            raise UnknownIdError(f"{len(unknown)} id(s) are not in the index: {_preview(unknown)}; nothing was deleted")
        if rows:
            self._docs.delete(np.array(sorted(rows), np.int64))  # type: ignore[type-var]
            self._alive = None

    def _prepare(
        self, ids: Any, encoded: Any, texts: Any, metadata: Any
    ) -> tuple[list[str], list[str], list[bytes], dict[str, Any]]:
        if not isinstance(encoded, Encoded):
            raise InputError(f"encoded must be an Encoded (an encoder's output), got {type(encoded).__name__}")
        doc_ids = self._check_ids(ids)
        n = len(doc_ids)
        if n != len(encoded):
            raise InputError(f"{n} ids given for {len(encoded)} encoded rows; pass one id per row")
        if isinstance(texts, np.ndarray):
            texts = texts.tolist()
        if texts is None:
            texts_l = [""] * n
        else:
            if isinstance(texts, str) or not isinstance(texts, Sequence):
                raise InputError("texts must be a list of strings, one per id")
            texts_l = list(texts)
            if len(texts_l) != n:
                raise InputError(f"{len(texts_l)} texts given for {n} ids")
            for i, t in enumerate(texts_l):
                if not isinstance(t, str):
                    raise InputError(f"texts[{i}] is {type(t).__name__}, not str")
        if metadata is None:
            metas: list[Mapping[str, Any]] = [{}] * n
        else:
            if isinstance(metadata, Mapping) or not isinstance(metadata, Sequence):
                raise InputError("metadata must be a list of dicts, one per id (or None)")
            if len(metadata) != n:
                raise InputError(f"{len(metadata)} metadata entries given for {n} ids")
            metas = [m if m is not None else {} for m in metadata]
        meta_json = encode_metadata(metas)
        columns = build_columns(metas)
        self._check_encoder(encoded.encoder, "documents")
        modes = self._modes or self._initial_modes(encoded)
        self._check_views(encoded, modes, "documents")
        self._check_values(encoded, modes, "documents")
        return doc_ids, texts_l, meta_json, columns

    def _initial_modes(self, enc: Encoded) -> tuple[str, ...]:
        if self._want_modes is not None:
            return self._want_modes
        modes = enc.modes
        if not set(modes) & set(_FIRST_STAGE):
            raise InputError(
                "the documents hold only multi-vectors; an index needs a dense or sparse view for first-stage "
                "retrieval (multi-vectors rerank its candidates)"
            )
        return modes

    def _append(
        self, doc_ids: list[str], enc: Encoded, texts: list[str], meta_json: list[bytes], columns: dict[str, Any]
    ) -> None:
        n = len(doc_ids)
        if n == 0:
            return
        first = not self._modes
        modes = self._modes or self._initial_modes(enc)
        rows = np.arange(self._next_row, self._next_row + n, dtype=np.int64)
        dense, sparse, mv = self._dense, self._sparse, self._mv
        if first:
            cfg = self._config
            if "dense" in modes:
                d = cfg["dense"]
                dense = DenseIndex(enc.dense_dim, factory=d["factory"], ef_search=d["ef_search"], nprobe=d["nprobe"],  # type: ignore[arg-type]
                                   ef_construction=d["ef_construction"])
            if "sparse" in modes:
                sparse = SparseIndex(enc.vocab_size)  # type: ignore[arg-type]
            if "multivector" in modes:
                m = cfg["multivector"]
                mv = MultiVectorStore(enc.multivector_dim, compression=m["compression"], pool_factor=m["pool_factor"])  # type: ignore[arg-type]
        done: list[Any] = []
        try:
            if dense is not None:
                dense.add(enc.dense, rows)  # first: FAISS training is the step most likely to refuse
                done.append(dense)
            if sparse is not None:
                sparse.add(enc.sparse, rows)
                done.append(sparse)
            if mv is not None:
                mv.add(enc.multivector, rows)
                done.append(mv)
            self._docs.append(rows, doc_ids, texts, meta_json, columns)
        except BaseException:
            if not first:
                self._rollback(done, int(rows[0]), int(rows[-1]) + 1)
            raise
        if first:
            self._modes = tuple(modes)
            self._dense, self._sparse, self._mv = dense, sparse, mv
            self._encoder = enc.encoder
            self._dims = {
                m: int(v) for m, v in (("dense", enc.dense_dim), ("sparse", enc.vocab_size), ("multivector", enc.multivector_dim))
                if m in modes and v is not None
            }
        self._next_row += n
        self._alive = None
        self._clean -= {"dense", "sparse", "multivector"}

    def _rollback(self, done: list[Any], first_new: int, end: int) -> None:
        """Drop rows ``first_new..end-1`` from components that already took them (a failed add)."""
        for comp in done:
            with contextlib.suppress(Exception):
                if isinstance(comp, MultiVectorStore):
                    keep = comp.rows
                    comp.compact(keep[keep < first_new])
                else:
                    alive = np.ones(end, bool)
                    alive[first_new:] = False
                    comp.compact(alive)
            logger.warning("rolled back a failed add in %s", type(comp).__name__)

    def compact(self) -> None:
        """Physically drop tombstoned documents from every part (row ids of the others do not change)."""
        if self._docs.n_deleted == 0:
            if self._docs.n_parts > 1:
                self._docs.compact()
            return
        alive = self._docs.alive_mask(self._next_row)
        live = np.flatnonzero(alive).astype(np.int64)
        if self._dense is not None:
            self._dense.compact(alive)
        if self._sparse is not None:
            self._sparse.compact(alive)
        if self._mv is not None:
            self._mv.compact(live)
        self._docs.compact()
        self._alive = None
        self._clean -= {"dense", "sparse", "multivector"}

    # ------------------------------------------------------------------ search
    def _allowed(self, flt: Any) -> np.ndarray | None:
        if flt is not None:
            return self._docs.filter_mask(parse_filter(flt), self._next_row)
        if self._docs.n_deleted == 0:
            return None
        if self._alive is None:
            self._alive = self._docs.alive_mask(self._next_row)
        return self._alive

    def search(
        self,
        query: Encoded,
        k: int = 10,
        *,
        mode: str | None = None,
        filter: Mapping[str, Any] | None = None,  # noqa: A002 - the natural name in a search API
        candidates: int = 100,
        fusion: str | Fusion = DEFAULT_FUSION,
        rerank: bool | None = None,
        ef_search: int | None = None,
        nprobe: int | None = None,
        approximate: float | None = None,
    ) -> Hits:
        """Search for each query row; returns :class:`~hybridsearch.hits.Hits` with ``k`` slots per query.

        ``mode``: ``"dense"``, ``"sparse"``, ``"multivector"`` (first stage from dense, or sparse without dense,
        reranked by MaxSim), ``"dense+sparse"`` (fusion of every first-stage view), ``"all"`` (then MaxSim
        rescoring and fusion over three views) or ``"hybrid"`` (``"all"`` when both sides hold multi-vectors, else
        ``"dense+sparse"``). ``None`` picks ``"hybrid"`` when the query and the index share more than one view,
        else the one they share. The queries' views must come from the index's encoder or one declared
        interchangeable for those views (:mod:`hybridsearch.identity`), else IndexMismatchError.

        ``filter``: a metadata filter (see :mod:`.filters`), applied before top-k in every mode.
        ``candidates``: rows each first stage proposes (at least ``k``). ``fusion``: a spec string such as
        ``"rrf"`` (default, k=60), ``"weighted_sum"`` (bge-m3's 1 / 0.3 / 1), ``"minmax"``, ``"dbsf"`` or
        ``"weighted_sum(dense=0.4,sparse=0.2,multivector=0.4)"``. ``rerank``: MaxSim-rescore the fused candidates
        in hybrid mode (``None``: when possible). ``ef_search`` / ``nprobe`` tune HNSW / IVF dense search,
        ``approximate`` in ``(0, 1]`` the sparse search.
        """
        if not isinstance(query, Encoded):
            raise InputError(f"query must be an Encoded (from an encoder's encode_queries), got {type(query).__name__}")
        k = _positive_int(k, "k")
        c = max(_positive_int(candidates, "candidates"), k)
        fz = parse_fusion(fusion)
        if mode is not None:
            mode, rerank = index_search_args(mode, rerank)
        mode = self._pick_mode(query, mode)
        flt = None if filter is None else parse_filter(filter)
        nq = len(query)
        if not self._modes or nq == 0:
            self._check_encoder(query.encoder, "queries", query.modes)
            if flt is not None:
                self._docs.filter_mask(flt, self._next_row)  # unknown fields still raise FilterError
            return Hits.empty(nq, k, self._rank_modes(mode, query, rerank))
        first = [m for m in _FIRST_STAGE if m in self._modes]
        use_mv = False
        if mode == "hybrid":
            use_mv = "multivector" in self._modes and query.multivector is not None and rerank is not False
            if rerank and not use_mv:
                raise InputError("rerank=True needs multi-vectors in both the index and the query")
            needed = first + (["multivector"] if use_mv else [])
        elif mode == "multivector":
            if "multivector" not in self._modes:
                raise InputError(f"this index holds no multi-vectors (it holds {list(self._modes)})")
            has = [m for m in _FIRST_STAGE if m in self._modes]
            first = [next((m for m in has if getattr(query, m) is not None), has[0])]
            needed = [*first, "multivector"]
        else:
            if mode not in self._modes:
                raise InputError(f"this index holds no {mode} view (it holds {list(self._modes)})")
            needed = [mode]
        self._check_encoder(query.encoder, "queries", needed)
        self._check_views(query, needed, "queries")
        self._check_values(query, needed, "queries")
        allowed = self._allowed(flt)
        knobs = {"ef_search": ef_search, "nprobe": nprobe, "approximate": approximate}
        if mode in ("dense", "sparse"):
            rows, scores = self._first_stage(mode, query, k, allowed, knobs)
            ranks = {mode: np.where(rows >= 0, np.arange(1, k + 1, dtype=np.int32), 0)}
            views = {mode: np.where(rows >= 0, scores, -np.inf)}
            record = {"stage": "retrieval", "mode": mode}
        elif mode == "multivector":
            rows, scores, ranks, views = self._multivector(query, first[0], k, c, allowed, knobs)
            record = {"stage": "retrieval", "mode": mode, "candidates": c}
        else:
            rows, scores, ranks, views = self._hybrid(query, first, use_mv, k, c, fz, allowed, knobs)
            record = {"stage": "retrieval", "mode": "all" if use_mv else "dense+sparse", "fusion": str(fz), "candidates": c}
        return self._hits(rows, scores, ranks, views, record)

    def _pick_mode(self, query: Encoded, mode: str | None) -> str:
        if mode is not None:
            return mode
        shared = [m for m in self._modes if getattr(query, m) is not None] if self._modes else list(query.modes)
        if len(shared) > 1:
            return "hybrid"
        if not shared:
            raise InputError(f"the queries hold {list(query.modes)} but the index holds {list(self._modes)}: no view in common")
        if shared[0] == "multivector":
            return "multivector"
        return shared[0]

    @staticmethod
    def _rank_modes(mode: str, query: Encoded, rerank: bool | None) -> list[str]:
        """The representations an empty result names (the index holds nothing to search)."""
        if mode in ("dense", "sparse"):
            return [mode]
        modes = [m for m in query.modes if m != "multivector"]
        wants_mv = mode == "multivector" or (query.multivector is not None and rerank is not False)
        return modes + (["multivector"] if wants_mv else [])

    def _first_stage(
        self, mode: str, q: Encoded, k: int, allowed: np.ndarray | None, knobs: dict[str, Any]
    ) -> tuple[np.ndarray, np.ndarray]:
        if mode == "dense":
            assert self._dense is not None
            return self._dense.search(q.dense, k, allowed=allowed, ef_search=knobs["ef_search"], nprobe=knobs["nprobe"])  # type: ignore[arg-type]
        assert self._sparse is not None
        return self._sparse.search(q.sparse, k, allowed=allowed, approximate=knobs["approximate"])  # type: ignore[arg-type]

    def _exact(self, mode: str, q: Encoded, rows: np.ndarray) -> np.ndarray:
        if mode == "dense":
            assert self._dense is not None
            return self._dense.score(q.dense, rows)  # type: ignore[arg-type]
        if mode == "sparse":
            assert self._sparse is not None
            return self._sparse.score(q.sparse, rows)  # type: ignore[arg-type]
        assert self._mv is not None and q.multivector is not None
        return self._mv.maxsim(q.multivector, rows)

    def _multivector(
        self, q: Encoded, first: str, k: int, c: int, allowed: np.ndarray | None, knobs: dict[str, Any]
    ) -> tuple[np.ndarray, np.ndarray, dict[str, np.ndarray], dict[str, np.ndarray]]:
        cand, cand_scores = self._first_stage(first, q, c, allowed, knobs)
        mv = self._exact("multivector", q, cand)
        rows, scores, order = _top(cand, mv, k)
        valid = rows >= 0
        first_rank = _take(np.broadcast_to(np.arange(1, c + 1, dtype=np.int32), cand.shape), order, valid, 0)
        ranks = {first: first_rank, "multivector": np.where(valid, np.arange(1, k + 1, dtype=np.int32), 0)}
        views = {first: _take(np.asarray(cand_scores, np.float32), order, valid, -np.inf), "multivector": scores}
        return rows, scores, ranks, views

    def _hybrid(
        self, q: Encoded, first: list[str], use_mv: bool, k: int, c: int, fz: Fusion, allowed: np.ndarray | None,
        knobs: dict[str, Any],
    ) -> tuple[np.ndarray, np.ndarray, dict[str, np.ndarray], dict[str, np.ndarray]]:
        lists = {m: self._first_stage(m, q, c, allowed, knobs)[0] for m in first}
        cand = lists[first[0]]
        for m in first[1:]:
            cand = _union(cand, lists[m])
        ranks = {m: _ranks_of(cand, lists[m]) for m in first}
        # Every view's exact score of every candidate: what rank fusion does not need, the hits still report.
        exact = {m: self._exact(m, q, cand) for m in first}
        fused = fz(scores=exact, ranks=ranks)
        keep = c if use_mv else k
        rows, scores, order = _top(cand, fused, keep)
        valid = rows >= 0
        ranks = {m: _take(r, order, valid, 0) for m, r in ranks.items()}
        exact = {m: _take(s, order, valid, -np.inf) for m, s in exact.items()}
        if not use_mv:
            return rows, scores, ranks, exact
        mv = self._exact("multivector", q, rows)
        _, _, mv_order = _top(rows, mv, rows.shape[1])
        mv_rank = np.zeros(rows.shape, np.int32)
        np.put_along_axis(mv_rank, mv_order, np.arange(1, rows.shape[1] + 1, dtype=np.int32)[None, :].repeat(rows.shape[0], 0), axis=1)
        mv_rank[~valid] = 0
        exact["multivector"] = mv
        ranks["multivector"] = mv_rank
        fused = fz(scores=exact, ranks=ranks)
        rows2, scores2, order2 = _top(rows, fused, k)
        valid2 = rows2 >= 0
        ranks2 = {m: _take(r, order2, valid2, 0) for m, r in ranks.items()}
        return rows2, scores2, ranks2, {m: _take(s, order2, valid2, -np.inf) for m, s in exact.items()}

    def _hits(
        self, rows: np.ndarray, scores: np.ndarray, ranks: dict[str, np.ndarray],
        views: dict[str, np.ndarray] | None = None, record: dict[str, Any] | None = None,
    ) -> Hits:
        valid = rows >= 0
        doc_ids = np.full(rows.shape, "", dtype=object)
        if valid.any():
            doc_ids[valid] = self._docs.doc_ids(rows[valid])
        ordered = {m: ranks[m] for m in MODES if m in ranks}
        view_scores = {m: np.where(valid, views[m], -np.inf) for m in MODES if views and m in views}
        docs = self._docs
        return Hits(rows, scores, doc_ids, ordered, view_scores, lookup=docs.lookup, stages=[record] if record else ())

    # ------------------------------------------------------------------ persistence
    def save(self, path: str | os.PathLike[str] | None = None) -> Path:
        """Commit the index to ``path`` (default: the directory it was loaded from or last saved to).

        Crash-safe: the directory holds either the previous commit or this one, never a mix (see
        :mod:`.manifest`). Files unchanged since the last save or load are hard-linked, not rewritten. One writer
        at a time per directory (enforced with a lock file). Returns the directory.
        """
        if path is None:
            if self._path is None:
                raise InputError("this index has never been saved; pass a directory: index.save(path)")
            target = self._path
        else:
            target = Path(path)
        if target.exists() and not target.is_dir():
            raise InputError(f"{target} exists and is not a directory")
        target.mkdir(parents=True, exist_ok=True)
        with writer_lock(target):
            try:
                current: Manifest | None = read_manifest(target)
            except IndexFormatError as exc:
                if (target / "manifest.json").exists() and not isinstance(exc, IndexCorruptedError):
                    raise  # a newer format or something that is not ours: do not overwrite it
                current = None
            keep = None if current is None else current.directory
            clean_leftovers(target, keep)
            generation = (current.generation if current else 0) + 1
            tmp = target / f".tmp-gen-{generation}-{os.getpid()}"
            tmp.mkdir()
            try:
                files = self._write_generation(tmp)
                os.rename(tmp, target / gen_name(generation))
            except BaseException:
                shutil.rmtree(tmp, ignore_errors=True)
                raise
            fsync_dir(target)
            manifest = Manifest(
                generation=generation,
                encoder=None if self._encoder is None else self._encoder.to_dict(),
                modes=list(self._modes),
                dims=dict(self._dims),
                counts={"documents": len(self), "stored": len(self._docs), "deleted": self._docs.n_deleted,
                        "next_row": self._next_row},
                config=self._component_config(),
                files=files,
                library_version=__version__,
                created=_dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
            )
            write_manifest(target, manifest)  # the commit point
            self._path, self._generation, self._base_files = target, generation, files
            self._clean = {"dense", "sparse", "multivector"}
            clean_leftovers(target, manifest.directory)
        return target

    def _base_dir(self) -> Path | None:
        if self._path is None or self._generation is None:
            return None
        return self._path / gen_name(self._generation)

    def _link(self, base: Path | None, rels: list[str], tmp: Path, files: dict[str, dict[str, Any]]) -> bool:
        """Hard-link ``rels`` (relative to a generation) from the base generation into ``tmp``; False if impossible."""
        if base is None or not all(r in self._base_files and (base / r).is_file() for r in rels):
            return False
        try:
            for r in rels:
                if (base / r).stat().st_size != self._base_files[r]["size"]:
                    return False
            for r in rels:
                link_or_copy(base / r, tmp / r)
                files[r] = dict(self._base_files[r])
        except OSError:
            return False
        return True

    def _write_generation(self, tmp: Path) -> dict[str, dict[str, Any]]:
        base = self._base_dir()
        files: dict[str, dict[str, Any]] = {}
        written: list[str] = []
        for name, comp in (("dense", self._dense), ("sparse", self._sparse), ("multivector", self._mv)):
            if comp is None:
                continue
            rels = sorted(r for r in self._base_files if r.startswith(name + "/"))
            if name in self._clean and rels and self._link(base, rels, tmp, files):
                continue
            (tmp / name).mkdir()
            written += [f"{name}/{f}" for f in comp.save(tmp / name)]

        def link_part(part: str, _target: Path, names: list[str]) -> bool:
            return self._link(base, [f"docs/{part}/{f}" for f in names], tmp, files)

        docs_written, _ = self._docs.save(tmp / "docs", link=link_part)
        written += [f"docs/{f}" for f in docs_written]
        files.update(sync_and_checksum(tmp, written))
        return dict(sorted(files.items()))

    @classmethod
    def load(cls, path: str | os.PathLike[str], *, mmap: bool = True, verify: bool = True) -> HybridIndex:
        """Open an index directory written by :meth:`save`.

        ``mmap`` maps the large arrays instead of reading them. ``verify`` checks every file's CRC-32 against the
        manifest (reads every byte once; sizes are always checked). Raises IndexFormatError when there is no
        index, IndexVersionError for a newer format, IndexCorruptedError for missing, truncated or damaged files.
        """
        target = Path(path)
        for attempt in range(3):
            manifest = read_manifest(target)
            try:
                return cls._open(target, manifest, mmap=mmap, verify=verify)
            except IndexCorruptedError:
                # A concurrent save may have replaced the generation between reading the manifest and the files.
                with contextlib.suppress(IndexFormatError):
                    if attempt < 2 and read_manifest(target).generation != manifest.generation:
                        logger.debug("%s: a save replaced generation %d while loading it; retrying", target, manifest.generation)
                        continue
                raise
        raise AssertionError("unreachable")  # pragma: no cover

    @classmethod
    def _open(cls, target: Path, m: Manifest, *, mmap: bool, verify: bool) -> HybridIndex:
        gen = target / m.directory
        if not gen.is_dir():
            raise IndexCorruptedError(f"{gen} is missing; the manifest names a generation that is not there")
        verify_files(gen, m.files, checksums=verify)
        cfg = m.config
        try:
            index = cls(
                modes=cfg.get("modes"),
                dense_factory=cfg["dense"]["factory"], ef_search=cfg["dense"]["ef_search"], nprobe=cfg["dense"]["nprobe"],
                ef_construction=cfg["dense"]["ef_construction"],
                multivector_compression=cfg["multivector"]["compression"],
                multivector_pool_factor=cfg["multivector"]["pool_factor"],
            )
            modes = tuple(x for x in MODES if x in m.modes)
            counts = {key: int(m.counts[key]) for key in ("documents", "stored", "deleted", "next_row")}
            dims = {str(key): int(v) for key, v in m.dims.items()}
        except (KeyError, TypeError, ValueError) as exc:
            raise IndexCorruptedError(f"{target / 'manifest.json'} has an invalid configuration: {exc}") from None
        try:
            index._dense = DenseIndex.load(gen / "dense", mmap=mmap) if "dense" in modes else None
            index._sparse = SparseIndex.load(gen / "sparse", mmap=mmap) if "sparse" in modes else None
            index._mv = MultiVectorStore.load(gen / "multivector", mmap=mmap) if "multivector" in modes else None
            index._docs = DocStore.load(gen / "docs", mmap=mmap)
        except IndexFormatError:
            raise
        except (OSError, ValueError, RuntimeError, EOFError, KeyError, TypeError) as exc:  # ValueError: also ours
            raise IndexCorruptedError(f"cannot read the index in {gen}: {exc}") from None
        index._modes, index._dims = modes, dims
        index._encoder = None if m.encoder is None else EncoderInfo.from_dict(m.encoder)
        index._next_row = counts["next_row"]
        stored = counts["stored"]
        sizes = {"documents": len(index._docs)}
        for name, comp in (("dense", index._dense), ("sparse", index._sparse), ("multivector", index._mv)):
            if comp is not None:
                sizes[name] = len(comp)
        if any(v != stored for v in sizes.values()) or index._docs.n_live != counts["documents"]:
            raise IndexCorruptedError(f"the parts of {gen} disagree on the number of rows: {sizes}, manifest {stored}")
        rows = index._docs.rows
        if rows.size and int(rows[-1]) >= index._next_row:
            raise IndexCorruptedError(f"{gen} holds row {int(rows[-1])} beyond next_row {index._next_row}")
        if index._dense is not None and not np.array_equal(index._dense.rows, rows):
            raise IndexCorruptedError(f"the dense part of {gen} holds other rows than the document store")
        if index._mv is not None and not np.array_equal(index._mv.rows, rows):
            raise IndexCorruptedError(f"the multi-vector part of {gen} holds other rows than the document store")
        index._path, index._generation, index._base_files = target, m.generation, dict(m.files)
        index._clean = {"dense", "sparse", "multivector"}
        return index
