"""Cheap, robust fingerprints of model files."""

from __future__ import annotations

from pathlib import Path
from typing import Any

__all__ = ["digest_file"]

_CHUNK = 1 << 20


def digest_file(h: Any, path: Path, name: str | None = None) -> None:
    """Feed a file into the hash ``h``: whole when small, else its size plus its first and last MiB.

    Hashing a 2 GB checkpoint whole would take seconds on every load; a changed checkpoint changes its
    size or its ends.
    """
    size = path.stat().st_size
    h.update(f"{name or path.name}:{size}:".encode())
    with open(path, "rb") as f:
        if size <= 4 * _CHUNK:
            h.update(f.read())
        else:
            h.update(f.read(_CHUNK))
            f.seek(size - _CHUNK)
            h.update(f.read(_CHUNK))
