"""Rerank with a cross-encoder: ``BAAI/bge-reranker-v2-m3`` through FlagEmbedding's ``FlagReranker``.

bge-reranker-v2-m3 is the reranker bge-m3 users pair it with (an XLM-R sequence classifier with one output;
FlagEmbedding's MIRACL evaluation reranks the bge-m3 dense top-100 with it). ``FlagReranker`` loads the model and
tokenizer; the scoring loop here follows ``FlagReranker.compute_score`` (FlagEmbedding 1.4,
``inference/reranker/encoder_only/base.py``): the query is tokenised without special tokens and cut at
``query_max_length`` (default ``max_length * 3 // 4``), the passage at ``max_length``, the pair is joined with
the model's special tokens and truncated ``only_second`` to ``max_length`` (default 512), batches are formed by
descending length, and the score is the raw logit (``normalize=True``: its sigmoid). It leaves out
``compute_score``'s trial batch that shrinks the batch size on *any* ``RuntimeError`` (which hides real errors).

Loading checks the directory first (config, weights, tokenizer) and, after loading, that every parameter of the
classifier came from the checkpoint: ``transformers`` silently initialises a missing classification head at random,
and a reranker with a random head must never score. Either failure raises
:class:`~hybridsearch.errors.ModelLoadError`.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from .._optional import require
from ..encoders.bge_m3 import TOKENIZER_FILES, WEIGHT_FILES, _quiet_loading, resolve_model_dir
from ..errors import ConfigError, ModelLoadError
from ..hits import Hits
from .base import Reranker, ScoredBatch, candidate_texts

__all__ = ["DEFAULT_RERANKER", "CrossEncoderReranker"]

DEFAULT_RERANKER = "BAAI/bge-reranker-v2-m3"


def _check_dir(path: Path) -> None:
    missing = []
    if not (path / "config.json").is_file():
        missing.append("config.json")
    if not any((path / f).is_file() for f in WEIGHT_FILES):
        missing.append("model weights (model.safetensors or pytorch_model.bin)")
    if not any((path / f).is_file() for f in TOKENIZER_FILES):
        missing.append("tokenizer (tokenizer.json or sentencepiece.bpe.model)")
    if missing:
        raise ModelLoadError(f"{path} is not a complete reranker model directory: missing {', '.join(missing)}")


def _checkpoint_keys(path: Path) -> set[str]:
    """Parameter names stored in the directory's weight files."""
    keys: set[str] = set()
    index = next((path / f for f in ("model.safetensors.index.json", "pytorch_model.bin.index.json") if (path / f).is_file()), None)
    if index is not None:
        import json

        return set(json.loads(index.read_text(encoding="utf-8")).get("weight_map", {}))
    if (path / "model.safetensors").is_file():
        from safetensors import safe_open

        with safe_open(str(path / "model.safetensors"), framework="pt") as f:
            keys.update(f.keys())
    elif (path / "pytorch_model.bin").is_file():
        import torch

        keys.update(torch.load(path / "pytorch_model.bin", map_location="cpu", weights_only=True))
    return keys


def _check_loaded(model: Any, path: Path) -> None:
    """ModelLoadError unless every parameter of ``model`` has a stored value (no random initialisation)."""
    stored = _checkpoint_keys(path)
    prefix = getattr(model, "base_model_prefix", "")
    missing = []
    for name, _ in model.named_parameters():
        alt = name[len(prefix) + 1 :] if prefix and name.startswith(prefix + ".") else f"{prefix}.{name}"
        if name not in stored and alt not in stored:
            missing.append(name)
    if missing:
        shown = ", ".join(missing[:4]) + (", ..." if len(missing) > 4 else "")
        raise ModelLoadError(
            f"{path} lacks {len(missing)} parameter(s) of the reranker ({shown}); transformers would initialise them at "
            "random (is this a sequence-classification checkpoint such as BAAI/bge-reranker-v2-m3?), refusing to score"
        )


class CrossEncoderReranker(Reranker):
    """Rerank with a cross-encoder (default ``BAAI/bge-reranker-v2-m3``) scoring each (query, text) pair.

    Parameters
    ----------
    model:
        Hub id (through the local Hugging Face cache; offline nothing is downloaded) or a model directory.
    device:
        One torch device (``None``: CUDA when available, else CPU).
    batch_size, max_length, query_max_length, normalize, use_fp16:
        As ``FlagReranker``: pairs per forward pass (32), pair length limit (512), query limit
        (``max_length * 3 // 4``), sigmoid of the logit (off), half precision (GPU only; default on GPU).
    combine:
        ``"replace"`` or a fusion spec with the first stage (see :mod:`.base`).
    """

    def __init__(
        self,
        model: str = DEFAULT_RERANKER,
        *,
        device: str | None = None,
        batch_size: int = 32,
        max_length: int = 512,
        query_max_length: int | None = None,
        normalize: bool = False,
        use_fp16: bool | None = None,
        combine: str = "replace",
    ) -> None:
        super().__init__(combine=combine)
        for name, value in (("batch_size", batch_size), ("max_length", max_length)):
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ConfigError(f"{name} must be a positive integer, got {value!r}")
        if query_max_length is not None and (isinstance(query_max_length, bool) or not isinstance(query_max_length, int) or query_max_length < 1):
            raise ConfigError(f"query_max_length must be a positive integer or None, got {query_max_length!r}")
        torch = require("torch", extra="model")
        flag_embedding = require("FlagEmbedding", extra="model")
        if device is None:
            device = "cuda" if torch.cuda.is_available() else "cpu"
        if device.startswith("cuda") and not torch.cuda.is_available():
            raise ConfigError(f"device={device!r} but torch sees no CUDA GPU; use device='cpu'")
        on_cpu = device.split(":")[0] == "cpu"
        self.use_fp16 = bool(use_fp16 if use_fp16 is not None else not on_cpu) and not on_cpu
        self.model_id = str(model)
        self.model_dir = resolve_model_dir(self.model_id)
        _check_dir(self.model_dir)
        self.device, self.batch_size, self.max_length, self.normalize = device, batch_size, max_length, bool(normalize)
        self.query_max_length = query_max_length if query_max_length is not None else max_length * 3 // 4
        try:
            with _quiet_loading():
                self._flag = flag_embedding.FlagReranker(
                    str(self.model_dir), use_fp16=self.use_fp16, devices=device, batch_size=batch_size,
                    max_length=max_length, query_max_length=self.query_max_length, normalize=self.normalize,
                )  # fmt: skip
            model_ = self._flag.model
            if not self.use_fp16:
                model_.float()
            else:
                model_.half()
            model_.to(device)
            model_.eval()
        except Exception as exc:  # torch / transformers / safetensors raise many unrelated types
            raise ModelLoadError(f"could not load a reranker from {self.model_dir}: {type(exc).__name__}: {exc}") from exc
        _check_loaded(self._flag.model, self.model_dir)
        self._torch = torch

    def describe(self) -> dict[str, Any]:
        return {"type": "CrossEncoderReranker", "model": self.model_id, "max_length": self.max_length, "normalize": self.normalize}

    def compute_score(self, pairs: Sequence[tuple[str, str]]) -> np.ndarray:
        """float64 ``(n_pairs,)``: the cross-encoder's score of each ``(query, passage)`` pair."""
        from FlagEmbedding.inference.reranker.encoder_only.base import pad_with_compat, prepare_for_model_compat

        if not pairs:
            return np.zeros(0)
        torch, tok = self._torch, self._flag.tokenizer
        q_ids = tok([q for q, _ in pairs], add_special_tokens=False, max_length=self.query_max_length, truncation=True)["input_ids"]
        p_ids = tok([p for _, p in pairs], add_special_tokens=False, max_length=self.max_length, truncation=True)["input_ids"]
        items = [
            prepare_for_model_compat(tok, q, p, truncation="only_second", max_length=self.max_length, padding=False)
            for q, p in zip(q_ids, p_ids, strict=True)
        ]
        order = np.argsort([-len(x["input_ids"]) for x in items])
        out = np.zeros(len(items))
        for start in range(0, len(items), self.batch_size):
            idx = order[start : start + self.batch_size]
            batch = pad_with_compat(tok, [items[i] for i in idx], padding=True, return_tensors="pt").to(self.device)
            with torch.inference_mode():
                logits = self._flag.model(**batch, return_dict=True).logits.view(-1).float()
            if self.normalize:
                logits = torch.sigmoid(logits)
            out[idx] = logits.cpu().numpy()
        return out

    def score(self, queries: list[str], hits: Hits) -> ScoredBatch:
        scores = np.full(hits.rows.shape, np.nan)
        items = candidate_texts(hits)
        pairs = [(queries[i], t) for i, cand in enumerate(items) for _, t in cand]
        values = self.compute_score(pairs)
        k = 0
        for i, cand in enumerate(items):
            for slot, _ in cand:
                scores[i, slot] = values[k]
                k += 1
        return ScoredBatch(scores, [None] * hits.n_queries)
