"""One persistent, updatable index over dense, sparse and multi-vector views, with string ids and metadata.

:class:`HybridIndex` is the *writer*: it keeps one integer row-id space for all its parts, a
:class:`~.dense.DenseIndex`, a :class:`~.sparse.SparseIndex`, a :class:`~.multivector.MultiVectorStore` (each
present when the index holds that view) and a :class:`~.docstore.DocStore` with the documents' string ids, texts
and JSON metadata. Row ids are assigned in order and never reused. Searching is done by a
:class:`~.searcher.Searcher`, a point-in-time snapshot; committing and opening directories by :mod:`.commit`.

Updates
    :meth:`~HybridIndex.add` appends; :meth:`~HybridIndex.upsert` adds the new version under a new row and
    tombstones the old one; :meth:`~HybridIndex.delete` tombstones. Tombstoned rows are masked out of every search
    (before top-k) and never returned; :meth:`~HybridIndex.compact` drops them physically from every part. A call
    that raises leaves the index unchanged; if undoing a half-applied change itself fails, the writer is poisoned
    (:class:`~hybridsearch.errors.WriterPoisonedError` on every later change or save) and the last commit on disk
    stays as it was.

Readers and writers
    Changes are serialised by a lock; each finished change publishes a new :class:`~.searcher.Searcher`.
    :meth:`~HybridIndex.search`, :meth:`~HybridIndex.get`, :meth:`~HybridIndex.doc_ids` and ``len`` read the
    newest published searcher without taking that lock, so any number of threads may search while one thread
    changes the index, and each call sees all of a change or none of it. Hold ``index.searcher()`` to run several
    calls against one snapshot. Other processes see commits: :meth:`~HybridIndex.refresh` switches a loaded index
    to the newest commit (a ``stat`` when nothing changed).

Persistence
    :meth:`~HybridIndex.save` commits a new generation (see :mod:`.manifest` and :mod:`.commit`): crash-safe, one
    writer per directory (a save after another writer's commit raises CommitConflictError; saving a new index over
    an existing one needs ``overwrite=True``), and parts unchanged since the last save or load are hard-linked
    instead of rewritten. :meth:`~HybridIndex.load` memory-maps the arrays. A loaded index can be changed: each
    part copies what it changes into memory, and ``save()`` with no path commits to the directory it came from.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import (
    ConfigError,
    DuplicateIdError,
    IndexCorruptedError,
    IndexFormatError,
    InputError,
    UnknownIdError,
    WriterPoisonedError,
)
from ..fusion import DEFAULT_FUSION, Fusion
from ..hits import Hits
from ..types import MODES, Encoded, EncoderInfo, sparse_needs_query_idf
from .commit import commit, manifest_stat, open_generation
from .commit import recover as _recover
from .dense import DenseIndex
from .docstore import DocStore, StoredDocument, encode_metadata
from .filters import build_columns
from .manifest import Manifest, gen_name, link_or_copy, read_manifest, sync_and_checksum
from .multivector import DEFAULT_COMPRESSION, MultiVectorStore
from .searcher import FIRST_STAGE as _FIRST_STAGE
from .searcher import SEARCH_MODES, Searcher, check_encoder, check_values, check_views, preview
from .sparse import SparseIndex

__all__ = ["SEARCH_MODES", "HybridIndex"]

logger = logging.getLogger(__name__)

_preview = preview
_LOAD_RETRIES, _LOAD_RETRY_SECONDS = 100, 10.0  # a load racing a fast writer re-reads the manifest this often


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
    sparse_idf:
        Weight each sparse query term by BM25's idf computed from this index's live documents at search time
        (``N`` = live documents, ``df`` over every segment minus deleted documents), as Qdrant's
        ``Modifier.IDF``. ``None``: on when the first add's sparse view comes from an encoder in
        :data:`~hybridsearch.types.QUERY_TIME_IDF` (``bm25``, ``bm25-word``, alone or inside a composite encoder),
        whose documents carry only the term-frequency part.

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
        sparse_idf: bool | None = None,
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
            "sparse": {"idf": sparse_idf},
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
        # Persistence state: where the index was last loaded from / committed to, and what is unchanged since.
        self._path: Path | None = None
        self._generation: int | None = None
        self._base_files: dict[str, dict[str, Any]] = {}
        self._clean: set[str] = set()
        self._manifest_stat: tuple[int, int, int] | None = None
        self._dirty = False  # changes since the last commit or load
        self._poisoned: str | None = None
        self._lock = threading.RLock()  # serialises changes, saves and refreshes; searches never take it
        self._searcher: Searcher = self._snapshot()


    # ------------------------------------------------------------------ snapshots
    def _snapshot(self) -> Searcher:
        return Searcher(
            modes=self._modes, encoder=self._encoder, dims=dict(self._dims),
            dense=None if self._dense is None else self._dense.snapshot(),
            sparse=None if self._sparse is None else self._sparse.snapshot(),
            mv=None if self._mv is None else self._mv.snapshot(),
            docs=self._docs.snapshot(), next_row=self._next_row, generation=self._generation, path=self._path,
            sparse_idf=bool(self._config["sparse"].get("idf")),
        )

    def _publish(self) -> None:
        self._searcher = self._snapshot()  # one reference assignment: readers see the old or the new view

    def searcher(self) -> Searcher:
        """The newest point-in-time view: every call on it sees the same documents, whatever writers do later."""
        return self._searcher

    # ------------------------------------------------------------------ properties
    def __len__(self) -> int:
        """Live documents (deleted ones not counted)."""
        return len(self._searcher)

    def __contains__(self, doc_id: object) -> bool:
        return doc_id in self._searcher

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
        return self._searcher.doc_ids()

    def __repr__(self) -> str:
        enc = f", encoder={self._encoder.name!r}" if self._encoder else ""
        where = f", path={str(self._path)!r}" if self._path else ""
        return f"HybridIndex(documents={len(self)}, modes={self._modes!r}{enc}{where})"

    def info(self) -> dict[str, Any]:
        """Counts, dimensions, configuration and bytes per part (``bytes`` are array sizes, mapped or not)."""
        with self._lock:
            parts = {
                "dense": None if self._dense is None else self._dense.nbytes,
                "sparse": None if self._sparse is None else self._sparse.nbytes,
                "multivector": None if self._mv is None else self._mv.nbytes,
                "docs": self._docs.nbytes,
            }
            sizes = {k: int(v) for k, v in parts.items() if v is not None}
            sizes["total"] = sum(sizes.values())
            out: dict[str, Any] = {
                "documents": self._docs.n_live,
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

    # ------------------------------------------------------------------ documents and search
    def get(self, doc_id: str) -> StoredDocument:
        """The stored text and metadata of a live document; UnknownIdError when the index does not hold it."""
        return self._searcher.get(doc_id)

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
        """Search the newest snapshot; see :meth:`.searcher.Searcher.search` for every argument and error."""
        return self._searcher.search(
            query, k, mode=mode, filter=filter, candidates=candidates, fusion=fusion, rerank=rerank,
            ef_search=ef_search, nprobe=nprobe, approximate=approximate,
        )

    # ------------------------------------------------------------------ checks
    def _check_encoder(self, info: EncoderInfo | None, what: str, views: Sequence[str] | None = None) -> None:
        """IndexMismatchError unless ``info``'s ``views`` (default: all held) match, per :mod:`hybridsearch.identity`."""
        check_encoder(self._encoder, info, what, self._modes if views is None else views)

    def _check_views(self, enc: Encoded, modes: Sequence[str], what: str) -> None:
        check_views(enc, modes, what, self._modes, self._dims)

    _check_values = staticmethod(check_values)

    def _writable(self) -> None:
        if self._poisoned is not None:
            raise WriterPoisonedError(
                f"this index refuses changes and saves: {self._poisoned}. The last commit on disk is intact; "
                "load it again with HybridIndex.load()"
            )

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
        Nothing changes when it raises. Searches see all of the batch or none of it.
        """
        with self._lock:
            self._writable()
            doc_ids, texts_l, meta_json, columns = self._prepare(ids, encoded, texts, metadata)
            present = [d for d, r in zip(doc_ids, self._docs.rows_of(doc_ids), strict=True) if r is not None]
            if present:
                raise DuplicateIdError(
                    f"{len(present)} id(s) are already in the index: {_preview(present)}; use upsert() to replace documents"
                )
            self._append(doc_ids, encoded, texts_l, meta_json, columns)
            self._publish()

    def upsert(
        self,
        ids: Sequence[str],
        encoded: Encoded,
        *,
        texts: Sequence[str] | None = None,
        metadata: Sequence[Mapping[str, Any] | None] | None = None,
    ) -> None:
        """Add documents, replacing those whose ids are already present (old rows are tombstoned, new rows added).

        Searches see the old versions or the new ones, never both and never neither.
        """
        with self._lock:
            self._writable()
            doc_ids, texts_l, meta_json, columns = self._prepare(ids, encoded, texts, metadata)
            old = np.array([r for r in self._docs.rows_of(doc_ids) if r is not None], np.int64)
            self._append(doc_ids, encoded, texts_l, meta_json, columns)
            if old.size:
                self._docs.delete(np.sort(old))
            self._publish()

    def delete(self, ids: Sequence[str]) -> None:
        """Tombstone documents: they are never returned again and :meth:`compact` removes them.

        Raises UnknownIdError (and deletes nothing) when any id is not in the index; an id repeated in the batch
        counts once.
        """
        with self._lock:
            self._writable()
            doc_ids = list(dict.fromkeys(self._check_ids(ids, unique=False)))
            rows = self._docs.rows_of(doc_ids)
            unknown = [d for d, r in zip(doc_ids, rows, strict=True) if r is None]
            if unknown:
                raise UnknownIdError(f"{len(unknown)} id(s) are not in the index: {_preview(unknown)}; nothing was deleted")
            if rows:
                self._docs.delete(np.array(sorted(rows), np.int64))  # type: ignore[type-var]
                self._dirty = True
                self._publish()

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
            if self._config["sparse"].get("idf") is None:
                self._config["sparse"]["idf"] = bool(
                    "sparse" in modes and sparse_needs_query_idf(enc.encoder)
                )
            self._modes = tuple(modes)
            self._dense, self._sparse, self._mv = dense, sparse, mv
            self._encoder = enc.encoder
            self._dims = {
                m: int(v) for m, v in (("dense", enc.dense_dim), ("sparse", enc.vocab_size), ("multivector", enc.multivector_dim))
                if m in modes and v is not None
            }
        self._next_row += n
        self._dirty = True
        self._clean -= {"dense", "sparse", "multivector"}


    def _rollback(self, done: list[Any], first_new: int, end: int) -> None:
        """Drop rows ``first_new..end-1`` from components that already took them (a failed add).

        If that fails too, the writer is poisoned: the parts may disagree, so every later change and save raises
        WriterPoisonedError, and the last commit on disk is left untouched.
        """
        alive = np.ones(end, bool)
        alive[first_new:] = False
        for comp in done:
            try:
                comp.compact(alive)
            except Exception as exc:
                self._poisoned = (
                    f"undoing a failed add in the {type(comp).__name__} failed ({type(exc).__name__}: {exc}), so the "
                    "parts of the index may disagree"
                )
                logger.error("rolling back a failed add in %s failed: %s", type(comp).__name__, exc)
                return
            logger.warning("rolled back a failed add in %s", type(comp).__name__)

    def compact(self) -> None:
        """Physically drop tombstoned documents from every part (row ids of the others do not change).

        Searchers taken before keep their view (the old arrays stay alive until the last of them is dropped).
        """
        with self._lock:
            self._writable()
            if self._docs.n_deleted == 0:
                if self._docs.n_parts > 1:
                    self._docs.compact()
                    self._publish()
                return
            alive = self._docs.alive_mask(self._next_row)
            # each part builds its compacted copy; the parts are switched only when all succeeded
            parts = [c.snapshot() for c in (self._dense, self._sparse, self._mv) if c is not None]
            for p in parts:
                p.compact(alive)
            docs = self._docs.snapshot()
            docs.compact()
            it = iter(parts)
            self._dense = None if self._dense is None else next(it)
            self._sparse = None if self._sparse is None else next(it)
            self._mv = None if self._mv is None else next(it)
            self._docs = docs
            self._dirty = True
            self._clean -= {"dense", "sparse", "multivector"}
            self._publish()

    # ------------------------------------------------------------------ persistence
    def save(self, path: str | os.PathLike[str] | None = None, *, overwrite: bool = False) -> Path:
        """Commit the index to ``path`` (default: the directory it was loaded from or last saved to).

        Crash-safe: the directory holds either the previous commit or this one, never a mix (see :mod:`.manifest`).
        Files unchanged since the last save or load are hard-linked, not rewritten. Returns the directory.

        Raises CommitConflictError when another writer committed to ``path`` after this index was loaded from it
        (or last saved to it), IndexExistsError when ``path`` holds an index this object was not loaded from, and
        IndexCorruptedError when ``path``'s manifest is damaged (see :meth:`recover`); ``overwrite=True``
        replaces the directory's index in each case. Nothing is written or deleted when it raises.
        """
        with self._lock:
            self._writable()
            if path is None:
                if self._path is None:
                    raise InputError("this index has never been saved; pass a directory: index.save(path)")
                target = self._path
            else:
                target = Path(path)
            if target.exists() and not target.is_dir():
                raise InputError(f"{target} exists and is not a directory")
            target.mkdir(parents=True, exist_ok=True)
            fields = {
                "encoder": None if self._encoder is None else self._encoder.to_dict(),
                "modes": list(self._modes),
                "dims": dict(self._dims),
                "counts": {"documents": self._docs.n_live, "stored": len(self._docs), "deleted": self._docs.n_deleted,
                           "next_row": self._next_row},
                "config": self._component_config(),
            }
            same = self._path is not None and target.resolve() == self._path.resolve()
            if not same:
                self._base_files = {}  # nothing to hard-link from another directory
            manifest = commit(self, target, overwrite=overwrite, write_generation=self._write_generation,
                              manifest_fields=fields)
            self._path, self._generation, self._base_files = target, manifest.generation, manifest.files
            self._clean = {"dense", "sparse", "multivector"}
            self._dirty = False
            self._manifest_stat = manifest_stat(target)
            self._publish()
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
        index, IndexVersionError for a newer format, IndexCorruptedError for missing, truncated or damaged files
        (a damaged manifest: see :meth:`recover`).
        """
        target = Path(path)
        deadline = time.monotonic() + _LOAD_RETRY_SECONDS
        for attempt in range(_LOAD_RETRIES):
            stat = manifest_stat(target)
            manifest = read_manifest(target)
            try:
                index = cls._open(target, manifest, mmap=mmap, verify=verify)
            except IndexCorruptedError:
                # A concurrent save may have replaced the generation between reading the manifest and the files.
                try:
                    moved = read_manifest(target).generation != manifest.generation
                except IndexFormatError:
                    moved = False
                if moved and attempt < _LOAD_RETRIES - 1 and time.monotonic() < deadline:
                    logger.debug("%s: a save replaced generation %d while loading it; retrying", target, manifest.generation)
                    continue
                raise
            index._manifest_stat = stat if stat is not None and read_manifest(target).generation == manifest.generation else None
            index._load_options = {"mmap": mmap, "verify": verify}
            index._publish()
            return index
        raise AssertionError("unreachable")  # pragma: no cover

    def refresh(self) -> bool:
        """Switch to the newest commit of :attr:`path` if another writer (thread or process) committed one.

        Returns whether the index changed. Costs one ``stat`` of ``manifest.json`` when nothing was committed,
        else a :meth:`load` of the new generation (memory-mapped by default). Searchers taken before keep their
        view. Raises InputError for an index that was never saved or loaded, or that holds uncommitted changes
        (they would be lost: save them first), and the errors of :meth:`load`.
        """
        with self._lock:
            if self._path is None:
                raise InputError("this index was never saved or loaded; there is nothing to refresh from")
            if self._dirty:
                raise InputError(
                    "this index holds changes that are not committed; refresh() would drop them. save() them first "
                    "(a conflicting commit then raises CommitConflictError)"
                )
            stat = manifest_stat(self._path)
            if stat is not None and stat == self._manifest_stat:
                return False
            if read_manifest(self._path).generation == self._generation:
                self._manifest_stat = stat
                return False
            fresh = type(self).load(self._path, **getattr(self, "_load_options", {}))
            lock = self._lock
            self.__dict__.update(fresh.__dict__)
            self._lock = lock
            self._publish()
            return True

    @staticmethod
    def recover(path: str | os.PathLike[str]) -> int:
        """Re-commit the newest generation of ``path`` whose files all verify (size and CRC-32); returns its number.

        For a directory whose ``manifest.json`` is damaged (``load`` and ``save`` raise IndexCorruptedError) or names
        a damaged generation. Every generation directory keeps a copy of the manifest that committed it
        (``commit.json``); see :func:`.commit.recover`.
        """
        return _recover(path)

    @classmethod
    def _open(cls, target: Path, m: Manifest, *, mmap: bool, verify: bool) -> HybridIndex:
        return open_generation(cls, target, m, mmap=mmap, verify=verify)
