"""Committing a :class:`~.hybrid.HybridIndex` to a directory, opening a committed generation, and recovery.

The directory layout and the crash-safe commit protocol are described in :mod:`.manifest`. This module adds the
rules for more than one writer and for damage:

- **One writer per directory at a time.** A save holds an exclusive ``flock`` on ``.lock`` while it runs. A save
  to the directory an index was loaded from (or last saved to) checks that the directory is still at that
  generation; if another writer committed meanwhile it raises :class:`~hybridsearch.errors.CommitConflictError`
  naming both generations, and nothing is written (optimistic concurrency, as a compare-and-set on the
  generation). Saving any other index onto a directory that holds one raises
  :class:`~hybridsearch.errors.IndexExistsError` unless ``overwrite=True``.
- **Nothing is deleted before the new commit is durable.** Older generations are removed only after the new
  ``manifest.json`` has been fsynced. A ``manifest.json`` that cannot be read makes a save raise
  :class:`~hybridsearch.errors.IndexCorruptedError` (as a load does) and deletes nothing.
- **Recovery.** Every generation directory carries a copy of its manifest (``commit.json``). :func:`recover`
  walks the generation directories from the newest down, and re-commits the first one whose files all match
  their recorded sizes and CRC-32 checksums.
"""

from __future__ import annotations

import contextlib
import datetime as _dt
import json
import logging
import os
import re
import shutil
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from .._atomic import fsync_dir
from .._version import __version__
from ..errors import CommitConflictError, IndexCorruptedError, IndexExistsError, IndexFormatError
from ..types import MODES, EncoderInfo
from .dense import DenseIndex
from .docstore import DocStore
from .manifest import (
    MANIFEST,
    Manifest,
    clean_leftovers,
    gen_name,
    manifest_from_text,
    read_manifest,
    verify_files,
    write_manifest,
    writer_lock,
)
from .multivector import MultiVectorStore
from .sparse import SparseIndex

if TYPE_CHECKING:
    from .hybrid import HybridIndex

__all__ = ["COMMIT_COPY", "commit", "manifest_stat", "open_generation", "recover"]

logger = logging.getLogger(__name__)

COMMIT_COPY = "commit.json"
"""The copy of the manifest inside each generation directory, read by :func:`recover`."""
_GEN = re.compile(r"^gen-(\d{6,})$")


def manifest_stat(index_dir: Path) -> tuple[int, int, int] | None:
    """``(inode, mtime ns, size)`` of ``manifest.json``: a commit replaces the file, so a change of any of them is
    how :meth:`HybridIndex.refresh` notices a new commit without reading anything. ``None`` when absent."""
    try:
        st = os.stat(index_dir / MANIFEST)
    except FileNotFoundError:
        return None
    return (st.st_ino, st.st_mtime_ns, st.st_size)


def _generations(index_dir: Path) -> list[int]:
    """Generation numbers of the ``gen-NNNNNN`` directories present, newest first."""
    if not index_dir.is_dir():
        return []
    return sorted((int(m.group(1)) for p in index_dir.iterdir() if (m := _GEN.match(p.name))), reverse=True)


def _same_dir(a: Path | None, b: Path) -> bool:
    if a is None:
        return False
    try:
        return a.resolve() == b.resolve() or (a.exists() and b.exists() and os.path.samefile(a, b))
    except OSError:
        return False


def _damaged(target: Path, exc: Exception) -> IndexCorruptedError:
    return IndexCorruptedError(
        f"{target / MANIFEST} cannot be read ({exc}); nothing was written or deleted. "
        f"Restore the newest intact generation with HybridIndex.recover({str(target)!r}), "
        "or save with overwrite=True to replace the directory's index"
    )


def commit(
    index: HybridIndex,
    target: Path,
    *,
    overwrite: bool,
    write_generation: Callable[[Path], dict[str, dict[str, Any]]],
    manifest_fields: dict[str, Any],
) -> Manifest:
    """Write a new generation with ``write_generation(tmp_dir)`` and commit it to ``target`` (see the module notes).

    Returns the committed manifest. Raises CommitConflictError, IndexExistsError, IndexCorruptedError (a damaged
    manifest) and IndexFormatError (a directory that is not a hybridsearch index, or a newer format) before
    anything is written.
    """
    with writer_lock(target):
        current: Manifest | None
        try:
            current = read_manifest(target)
        except IndexCorruptedError as exc:
            if not overwrite:
                raise _damaged(target, exc) from None
            current = None
        except IndexFormatError:
            if (target / MANIFEST).exists():
                raise  # a newer format or something that is not ours: never overwrite it
            current = None
        if current is not None and not overwrite:
            if not _same_dir(index.path, target) or index.generation is None:
                raise IndexExistsError(
                    f"{target} already holds an index (generation {current.generation}, "
                    f"{current.counts.get('documents', '?')} documents) that this object was not loaded from; "
                    "load it with HybridIndex.load() to change it, or pass overwrite=True to replace it"
                )
            if current.generation != index.generation:
                raise CommitConflictError(
                    f"{target} is at generation {current.generation}, but this index was loaded from (or last "
                    f"saved as) generation {index.generation}: another writer committed in between, and saving "
                    f"would drop its changes. Reload with HybridIndex.load(), re-apply the changes and save; or "
                    "pass overwrite=True to replace its commit with this index"
                )
        clean_leftovers(target, keep=None, generations=False)
        existing = _generations(target)
        if current is not None:
            # directories above the committed generation were renamed into place by saves that died before their
            # manifest switch: never committed, so nothing is lost by replacing them
            for g in existing:
                if g > current.generation:
                    shutil.rmtree(target / gen_name(g), ignore_errors=True)
            generation = current.generation + 1
        else:
            generation = max([0, *existing[:1]]) + 1  # a damaged manifest: keep every generation for recovery
        tmp = target / f".tmp-gen-{generation}-{os.getpid()}"
        tmp.mkdir()
        try:
            files = write_generation(tmp)
            manifest = Manifest(
                generation=generation,
                files=files,
                library_version=__version__,
                created=_dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
                **manifest_fields,
            )
            copy = tmp / COMMIT_COPY
            copy.write_text(manifest.to_json(), "utf-8")
            with open(copy, "rb") as f:
                os.fsync(f.fileno())
            fsync_dir(tmp)
            os.rename(tmp, target / gen_name(generation))
        except BaseException:
            shutil.rmtree(tmp, ignore_errors=True)
            raise
        fsync_dir(target)
        write_manifest(target, manifest)  # the commit point (fsynced before it returns)
        clean_leftovers(target, manifest.directory)  # only now: the new commit is durable
    return manifest


def recover(path: str | os.PathLike[str], *, dry_run: bool = False) -> int:
    """Re-commit the newest generation of ``path`` whose files all match their sizes and CRC-32 checksums.

    For a directory whose ``manifest.json`` is damaged or names a generation that is missing or corrupted.
    Returns the generation now committed; with ``dry_run`` only finds it. Raises IndexCorruptedError when no
    generation verifies. Holds the writer lock while it runs.
    """
    target = Path(path)
    with writer_lock(target):
        problems = []
        for g in _generations(target):
            gen = target / gen_name(g)
            try:
                m = manifest_from_text((gen / COMMIT_COPY).read_text("utf-8"), gen / COMMIT_COPY)
                if m.generation != g:
                    raise IndexCorruptedError(f"{gen / COMMIT_COPY} names generation {m.generation}")
                verify_files(gen, m.files, checksums=True)
            except (OSError, IndexFormatError) as exc:
                problems.append(f"{gen.name}: {exc}")
                continue
            if not dry_run:
                with contextlib.suppress(IndexFormatError):
                    if read_manifest(target).generation == g:
                        return g
                write_manifest(target, m)
                logger.warning("%s: re-committed generation %d (%s)", target, g, "; ".join(problems) or "manifest damaged")
            return g
        raise IndexCorruptedError(
            f"no generation in {target} verifies: " + ("; ".join(problems) or "there are no generation directories")
        )


def read_commit_copy(gen_dir: Path) -> dict[str, Any]:
    """The raw JSON of a generation's manifest copy (for tools and tests)."""
    return json.loads((gen_dir / COMMIT_COPY).read_text("utf-8"))


def open_generation(cls: type[HybridIndex], target: Path, m: Manifest, *, mmap: bool, verify: bool) -> HybridIndex:
    """Build a ``cls`` index from the generation ``m`` names in ``target``: checks every file's size (and CRC-32 with
    ``verify``), loads each part (memory-mapped with ``mmap``) and checks that the parts agree on their rows.

    Raises IndexCorruptedError for a missing, damaged or inconsistent generation.
    """
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
            sparse_idf=bool((cfg.get("sparse") or {}).get("idf", False)),
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
    index._dirty = False
    return index
