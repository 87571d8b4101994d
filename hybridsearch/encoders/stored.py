"""Remember which encoder built an index, so that queries can be encoded the same way later.

Next to an index's ``manifest.json`` the command line keeps ``encoder.json`` (the registry spec and its
options) and, for fitted encoders such as BM25, ``encoder-state.npz``.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from .._atomic import write_text_atomic
from ..errors import ConfigError, IndexCorruptedError
from . import get_encoder
from .base import Encoder
from .stateful import stateful_parts

__all__ = ["check_savable", "load_encoder", "save_encoder"]

SPEC_FILE = "encoder.json"
STATE_FILE = "encoder-state.npz"


def check_savable(encoder: Encoder) -> None:
    """Raise ConfigError now if :func:`save_encoder` could not record ``encoder`` (before anything is written)."""
    if len(stateful_parts(encoder)) > 1:
        raise ConfigError("an index directory can remember at most one fitted encoder part")


def save_encoder(directory: str | Path, spec: str, options: dict[str, Any], encoder: Encoder) -> None:
    directory = Path(directory)
    check_savable(encoder)
    parts = stateful_parts(encoder)
    if parts:
        parts[0].save(directory / STATE_FILE)  # type: ignore[attr-defined]
    write_text_atomic(directory / SPEC_FILE, json.dumps({"spec": spec, "options": options}, indent=2) + "\n")


def load_encoder(directory: str | Path) -> Encoder:
    """The encoder recorded in ``directory``, with its fitted state loaded."""
    directory = Path(directory)
    path = directory / SPEC_FILE
    if not path.is_file():
        raise ConfigError(
            f"{directory} records no query encoder ({SPEC_FILE} is missing); pass --encoder (and --state for BM25)"
        )
    try:
        cfg = json.loads(path.read_bytes().decode("utf-8"))
        spec, options = cfg["spec"], cfg.get("options", {})
        if not isinstance(spec, str) or not isinstance(options, dict):
            raise TypeError("spec must be a string and options an object")
    except (OSError, UnicodeDecodeError, ValueError, KeyError, TypeError) as exc:
        raise IndexCorruptedError(f"{path} is unreadable ({type(exc).__name__}: {exc}); rebuild the index or pass --encoder") from None
    encoder = get_encoder(spec, **options)
    for part in stateful_parts(encoder):
        part.load_state(directory / STATE_FILE)  # type: ignore[attr-defined]
    return encoder
