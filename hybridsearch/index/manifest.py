"""The index directory's ``manifest.json`` and the commit protocol that makes saves crash-safe.

An index directory looks like this::

    my-index/
      manifest.json          the commit record: names the live generation, lists its files with sizes and CRC-32s
      gen-000007/            the live generation: every array file of the index
        dense/ sparse/ multivector/ docs/
      gen-000007/commit.json a copy of the manifest that committed it (read by recovery)
      .lock                  held (flock) while a save runs, so two writers never interleave

A save (:func:`commit`) never touches the live generation: it writes ``.tmp-gen-000008-<pid>/`` (unchanged
files are hard-linked from the live generation instead of rewritten), fsyncs every file and directory, renames
it to ``gen-000008``, fsyncs the index directory, and then atomically replaces ``manifest.json`` (temporary
file, fsync, ``os.replace``, fsync of the directory). The manifest switch is the commit point: a crash before it
leaves the old manifest naming the old, intact generation; a crash after it leaves the new one. Older generations
are deleted only after the new manifest is durable; leftovers of interrupted saves are deleted after the commit and
again before the next save. Writer conflicts, overwriting and recovery: :mod:`.commit`.

Checksums are zlib CRC-32 (detects truncation, torn writes and flipped bits; not a defence against tampering):
see ``benchmarks/bench_index_io.py`` for the measured throughput. ``manifest.json`` carries a CRC of its own
content too.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import shutil
import zlib
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from .._atomic import fsync_dir, write_text_atomic
from ..errors import IndexCorruptedError, IndexFormatError, IndexVersionError

__all__ = [
    "FORMAT",
    "FORMAT_VERSION",
    "MANIFEST",
    "Manifest",
    "checksum_file",
    "clean_leftovers",
    "link_or_copy",
    "manifest_from_text",
    "read_manifest",
    "read_part_header",
    "sync_and_checksum",
    "verify_files",
    "write_manifest",
    "writer_lock",
]

FORMAT = "hybridsearch.index"
FORMAT_VERSION = 1
MANIFEST = "manifest.json"
CHECKSUM = "crc32"
_GEN = re.compile(r"^gen-(\d{6,})$")
_TMP = re.compile(r"^\.tmp-gen-\d+-\d+$")
_CHUNK = 16 << 20
_SYNC_THREADS = 8


def gen_name(generation: int) -> str:
    return f"gen-{generation:06d}"


@dataclass
class Manifest:
    """What ``manifest.json`` records. ``files`` maps paths relative to the generation directory to
    ``{"size": bytes, "crc32": "8 hex digits"}``."""

    generation: int
    encoder: dict[str, str] | None
    modes: list[str]
    dims: dict[str, int]
    counts: dict[str, int]
    config: dict[str, Any]
    files: dict[str, dict[str, Any]]
    library_version: str = ""
    created: str = ""
    format: str = FORMAT
    format_version: int = FORMAT_VERSION
    checksum: str = CHECKSUM
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def directory(self) -> str:
        """The generation directory's name, e.g. ``gen-000007``."""
        return gen_name(self.generation)

    def to_json(self) -> str:
        body = asdict(self)
        body["directory"] = self.directory
        body["manifest_crc32"] = _crc_of(body)
        return json.dumps(body, indent=1, sort_keys=True) + "\n"


def _crc_of(body: dict[str, Any]) -> str:
    content = {k: v for k, v in body.items() if k != "manifest_crc32"}
    return f"{zlib.crc32(json.dumps(content, sort_keys=True).encode('utf-8')) & 0xFFFFFFFF:08x}"


def read_manifest(index_dir: str | os.PathLike[str]) -> Manifest:
    """Read and check ``manifest.json``.

    Raises IndexFormatError when the directory or manifest is missing or is not a hybridsearch index,
    IndexVersionError for a newer format, IndexCorruptedError when the manifest is damaged.
    """
    d = Path(index_dir)
    path = d / MANIFEST
    if not d.is_dir():
        raise IndexFormatError(f"no index at {d}: the directory does not exist")
    try:
        text = path.read_text("utf-8")
    except FileNotFoundError:
        hint = " (it holds generation directories, so a save was interrupted before its first commit)" if any(
            _GEN.match(p.name) or _TMP.match(p.name) for p in d.iterdir()) else ""
        raise IndexFormatError(f"{d} is not a hybridsearch index: {MANIFEST} is missing{hint}") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise IndexCorruptedError(f"{path} cannot be read: {exc}") from None
    return manifest_from_text(text, path)


def manifest_from_text(text: str, path: Path) -> Manifest:
    """Parse and check a manifest's JSON (``path`` names it in errors); the errors of :func:`read_manifest`."""
    d = path.parent
    try:
        body = json.loads(text)
    except ValueError as exc:
        raise IndexCorruptedError(f"{path} is not valid JSON ({exc}); the manifest is damaged") from None
    if not isinstance(body, dict) or body.get("format") != FORMAT:
        raise IndexFormatError(f"{path} is not a hybridsearch index manifest (format {body.get('format') if isinstance(body, dict) else None!r})")
    version = body.get("format_version")
    if not isinstance(version, int):
        raise IndexCorruptedError(f"{path} has no valid format_version")
    if version > FORMAT_VERSION:
        raise IndexVersionError(
            f"{d} was written in index format {version}, newer than this library reads ({FORMAT_VERSION}); "
            "upgrade hybridsearch to open it"
        )
    if body.get("manifest_crc32") != _crc_of(body):
        raise IndexCorruptedError(f"{path} fails its checksum; the manifest is damaged")
    try:
        return Manifest(
            generation=int(body["generation"]), encoder=body["encoder"], modes=list(body["modes"]),
            dims=dict(body["dims"]), counts=dict(body["counts"]), config=dict(body["config"]),
            files={str(k): dict(v) for k, v in body["files"].items()},
            library_version=str(body.get("library_version", "")), created=str(body.get("created", "")),
            format_version=version, checksum=str(body.get("checksum", CHECKSUM)), extra=dict(body.get("extra", {})),
        )
    except (KeyError, TypeError, ValueError) as exc:
        raise IndexCorruptedError(f"{path} is incomplete: {exc}") from None


def write_manifest(index_dir: str | os.PathLike[str], manifest: Manifest) -> None:
    """Atomically replace ``manifest.json`` (the commit point of a save)."""
    write_text_atomic(Path(index_dir) / MANIFEST, manifest.to_json())


# ----------------------------------------------------------------------------------------------- files
def checksum_file(path: str | os.PathLike[str]) -> dict[str, Any]:
    """``{"size": bytes, "crc32": hex}`` of a file, read in 16 MB chunks."""
    crc = 0
    size = 0
    with open(path, "rb", buffering=0) as f:
        buf = bytearray(_CHUNK)
        view = memoryview(buf)
        while True:
            n = f.readinto(buf)
            if not n:
                break
            crc = zlib.crc32(view[:n], crc)
            size += n
    return {"size": size, CHECKSUM: f"{crc & 0xFFFFFFFF:08x}"}


def verify_files(gen_dir: Path, files: dict[str, dict[str, Any]], *, checksums: bool = True) -> None:
    """Check that every listed file exists with its recorded size (and CRC-32); IndexCorruptedError otherwise."""
    for rel, rec in files.items():
        path = gen_dir / rel
        try:
            size = path.stat().st_size
        except FileNotFoundError:
            raise IndexCorruptedError(f"{path} is missing (listed in the manifest)") from None
        if size != rec.get("size"):
            raise IndexCorruptedError(
                f"{path} has {size:,} bytes but the manifest records {rec.get('size'):,}; the file is truncated or was replaced"
            )
        try:
            crc = checksum_file(path)[CHECKSUM] if checksums else None
        except OSError as exc:  # e.g. deleted since the stat above by a save that replaced this generation
            raise IndexCorruptedError(f"{path} cannot be read: {exc}") from None
        if checksums and crc != rec.get(CHECKSUM):
            raise IndexCorruptedError(f"{path} fails its CRC-32 check; the file is corrupted")


def fsync_file(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def sync_and_checksum(root: Path, rels: list[str]) -> dict[str, dict[str, Any]]:
    """fsync the files ``rels`` under ``root`` and every directory under it; return each file's size and CRC.

    The fsyncs run on a small thread pool: the filesystem journal then commits them together, about ten times
    faster than one after another for many small files. The CRC is read back from the page cache.
    """

    def one(rel: str) -> tuple[str, dict[str, Any]]:
        fsync_file(root / rel)
        return rel, checksum_file(root / rel)

    with ThreadPoolExecutor(max_workers=_SYNC_THREADS) as pool:
        out = dict(pool.map(one, rels))
        dirs = [dirpath for dirpath, _d, _f in os.walk(root, topdown=False)]
        list(pool.map(fsync_dir, dirs[:-1]))  # subdirectories first, then the root itself
    fsync_dir(root)
    return out


def link_or_copy(src: Path, dst: Path) -> None:
    """Hard-link ``src`` to ``dst`` (no data copied); copy when the filesystem cannot link."""
    dst.parent.mkdir(parents=True, exist_ok=True)
    try:
        os.link(src, dst)
    except OSError:
        shutil.copyfile(src, dst)


def read_part_header(path: Path, *, fmt: str, version: int, what: str) -> dict[str, Any]:
    """Read an index part's JSON header, checking its format name and that its version is not from the future.

    Missing or unreadable -> IndexCorruptedError; another format -> IndexFormatError; newer -> IndexVersionError.
    """
    try:
        header = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise IndexCorruptedError(f"{path} is missing; is {path.parent} a saved {what}?") from None
    except (OSError, ValueError) as exc:
        raise IndexCorruptedError(f"{path} is unreadable: {exc}") from None
    if not isinstance(header, dict) or header.get("format") != fmt:
        raise IndexFormatError(f"{path} does not describe a hybridsearch {what}")
    if int(header.get("version", 0)) > version:
        raise IndexVersionError(
            f"{path.parent} holds {what} format {header['version']}, newer than this library reads ({version}); "
            "upgrade hybridsearch"
        )
    return header


def clean_leftovers(index_dir: Path, keep: str | None, *, generations: bool = True) -> list[str]:
    """Delete generation directories other than ``keep`` and temporary directories of interrupted saves.

    Only names this module creates are touched (``gen-NNNNNN``, ``.tmp-gen-*``, ``.manifest.json.*.tmp``);
    ``generations=False`` leaves every generation directory alone.
    """
    removed = []
    if not index_dir.is_dir():
        return removed
    for p in index_dir.iterdir():
        stale = (generations and _GEN.match(p.name) and p.name != keep) or _TMP.match(p.name) or (
            p.name.startswith(f".{MANIFEST}.") and p.name.endswith(".tmp"))
        if stale:
            if p.is_dir() and not p.is_symlink():
                shutil.rmtree(p, ignore_errors=True)
            else:
                with contextlib.suppress(FileNotFoundError):
                    p.unlink()
            removed.append(p.name)
    return removed


@contextlib.contextmanager
def writer_lock(index_dir: Path) -> Iterator[None]:
    """Hold an exclusive ``flock`` on ``index_dir/.lock`` (released by the kernel if the process dies)."""
    try:
        import fcntl
    except ImportError:  # pragma: no cover - not POSIX: no cross-process lock
        yield
        return
    index_dir.mkdir(parents=True, exist_ok=True)
    fd = os.open(index_dir / ".lock", os.O_RDWR | os.O_CREAT, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        with contextlib.suppress(OSError):
            fcntl.flock(fd, fcntl.LOCK_UN)
        os.close(fd)
