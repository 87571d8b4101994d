"""BAAI bge-m3 run locally through FlagEmbedding: dense, sparse and multi-vector views from one forward pass.

FlagEmbedding's ``BGEM3FlagModel`` loads the backbone, the tokenizer and the two heads, and its model's
forward computes the three outputs. The batching around that forward is ours, for three reasons:

- FlagEmbedding's ``encode`` runs the first batch twice (a trial run that shrinks the batch on *any*
  ``RuntimeError``, which also hides real errors and loops forever once the batch size reaches 0);
- a progress bar over a long corpus needs per-batch updates;
- sparse weights go straight into a CSR matrix instead of one Python dict of numpy scalars per text.

The batches are formed exactly as FlagEmbedding forms them (texts sorted by descending token count with
the same ``np.argsort``, original order restored afterwards), and the per-text post-processing is the same
(sparse: ReLU weights max-pooled per token id, special and unknown tokens and weights <= 0 dropped;
multi-vector: ``n_tokens - 1`` rows, ``</s>`` included), so the results equal ``BGEM3FlagModel.encode``
with the same batch size: bit for bit up to 64 batches per call; beyond that texts are length-sorted in
chunks of 64 batches (bounded memory for the token lists), so the padding differs and values agree to ~1e-7.

FlagEmbedding silently re-initialises *both* heads at random when ``colbert_linear.pt`` or
``sparse_linear.pt`` is missing; this module refuses to load such a directory and checks after loading
that the head weights in memory are the ones on disk.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import re
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np
import scipy.sparse as sp

from .._hashing import digest_file
from .._optional import require
from .._progress import progress
from ..errors import ConfigError, ModelLoadError
from ..types import Encoded, EncoderInfo, Mode, MultiVectors
from .base import Encoder

__all__ = ["BGEM3Encoder"]

logger = logging.getLogger(__name__)

DEFAULT_MODEL = "BAAI/bge-m3"
HEAD_FILES = ("colbert_linear.pt", "sparse_linear.pt")
WEIGHT_FILES = ("model.safetensors", "pytorch_model.bin", "model.safetensors.index.json", "pytorch_model.bin.index.json")
TOKENIZER_FILES = ("tokenizer.json", "sentencepiece.bpe.model")
# What a hub download fetches: the backbone, heads, config and tokenizer; not the 2 GB onnx/ export.
_HUB_PATTERNS = [
    "config.json",
    "tokenizer.json",
    "tokenizer_config.json",
    "special_tokens_map.json",
    "sentencepiece.bpe.model",
    "model.safetensors",
    "model-*.safetensors",
    "model.safetensors.index.json",
    "pytorch_model.bin",
    *HEAD_FILES,
]
_REPO_ID = re.compile(r"[A-Za-z0-9][\w.-]*/[\w.-]+|[A-Za-z0-9][\w.-]*")
_TEXTS_PER_CHUNK_BATCHES = 64  # texts are tokenised and length-sorted in chunks of this many batches


def _is_offline() -> bool:
    return any(os.environ.get(v, "").strip().upper() in {"1", "ON", "YES", "TRUE"} for v in ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE"))


def _download_hint(model: str) -> str:
    return (
        f"download it once with `huggingface-cli download {model}` (or `hf download {model}`) on a machine with "
        "internet access and copy the Hugging Face cache, or pass model= the path of a local directory holding "
        "config.json, the weights, the tokenizer, colbert_linear.pt and sparse_linear.pt"
    )


def resolve_model_dir(model: str) -> Path:
    """The local directory of ``model``: the path itself, or the Hugging Face cache snapshot of a hub id.

    The local cache is tried first; the hub is contacted only when the snapshot is not cached and
    ``HF_HUB_OFFLINE`` is not set. Raises :class:`ModelLoadError` when the weights cannot be found.
    """
    path = Path(model).expanduser()
    if path.is_dir():
        return path.resolve()
    if path.exists():
        raise ModelLoadError(f"{model} is a file; pass the model directory (the folder holding config.json)")
    if model.startswith((".", "/", "~")) or not _REPO_ID.fullmatch(model):
        raise ModelLoadError(f"no model directory at {model}; pass an existing directory or a hub id such as {DEFAULT_MODEL}")
    hub = require("huggingface_hub", extra="model")
    try:
        return Path(hub.snapshot_download(model, local_files_only=True, allow_patterns=_HUB_PATTERNS))
    except Exception as exc:  # not cached (the exception type differs between huggingface_hub versions)
        cache_error = exc
    if _is_offline() or getattr(getattr(hub, "constants", None), "HF_HUB_OFFLINE", False):
        raise ModelLoadError(
            f"the weights of {model} are not available offline: there is no local directory {model!r} and, with "
            f"HF_HUB_OFFLINE set, the Hugging Face cache does not hold it ({type(cache_error).__name__}); "
            f"{_download_hint(model)}"
        ) from None
    try:
        return Path(hub.snapshot_download(model, allow_patterns=_HUB_PATTERNS))
    except Exception as exc:
        raise ModelLoadError(f"could not download {model} from the Hugging Face hub ({type(exc).__name__}: {exc}); {_download_hint(model)}") from exc


def check_model_dir(path: Path) -> None:
    """Raise :class:`ModelLoadError` naming every file a bge-m3 directory lacks.

    FlagEmbedding would load a directory without ``colbert_linear.pt`` or ``sparse_linear.pt`` and
    randomise both heads, so their absence must stop the load here.
    """
    missing = []
    if not (path / "config.json").is_file():
        missing.append("config.json")
    if not any((path / f).is_file() for f in WEIGHT_FILES):
        missing.append("model weights (model.safetensors or pytorch_model.bin)")
    if not any((path / f).is_file() for f in TOKENIZER_FILES):
        missing.append("tokenizer (tokenizer.json or sentencepiece.bpe.model)")
    missing += [f for f in HEAD_FILES if not (path / f).is_file()]
    if missing:
        heads = " Without the head files the sparse and multi-vector outputs would be random." if set(HEAD_FILES) & set(missing) else ""
        raise ModelLoadError(f"{path} is not a complete bge-m3 model directory: missing {', '.join(missing)}.{heads}")


def model_fingerprint(path: Path) -> str:
    """A short hash of the config, weights, tokenizer and head files of a model directory."""
    h = hashlib.sha256()
    names = ["config.json", *HEAD_FILES, *TOKENIZER_FILES, "tokenizer_config.json", *WEIGHT_FILES]
    files = [path / n for n in names if (path / n).is_file()]
    files += sorted(path.glob("model-*.safetensors")) + sorted(path.glob("pytorch_model-*.bin"))
    for f in files:
        digest_file(h, f)
    return h.hexdigest()[:16]


@contextmanager
def _quiet_loading() -> Any:
    """Silence transformers' "Loading weights" bar while a model loads, restoring the user's setting."""
    from transformers.utils import logging as hf_logging

    was_enabled = hf_logging.is_progress_bar_enabled()
    if was_enabled:
        hf_logging.disable_progress_bar()
    try:
        yield
    finally:
        if was_enabled:
            hf_logging.enable_progress_bar()


def _check_length(name: str, value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 2:
        raise ConfigError(f"{name} must be an integer >= 2 (tokens, counting <s> and </s>), got {value!r}")
    return value


class BGEM3Encoder(Encoder):
    """BAAI bge-m3 on a local CPU or GPU: 1024-d dense, XLM-R lexical weights and ColBERT token vectors.

    Parameters
    ----------
    model
        Hub id (resolved through the local Hugging Face cache first) or a local model directory.
    device
        One torch device string (``"cpu"``, ``"cuda"``, ``"cuda:1"``); ``None`` picks ``"cuda"`` when
        available, else ``"cpu"``. One device only: FlagEmbedding's multi-process pool is never started.
    batch_size
        Texts per forward pass. Texts are sorted by length first, so a batch holds similar lengths.
    query_max_length, passage_max_length
        Token limits (counting ``<s>`` and ``</s>``) for :meth:`encode_queries` and :meth:`encode_corpus`.
        Longer texts are truncated. Both default to 512, FlagEmbedding's default and enough for MIRACL and
        BEIR passages; bge-m3 accepts up to 8192 for long documents, at a memory cost that grows with the
        square of the length per batch (lower ``batch_size`` then).
    use_fp16
        Half-precision weights; ``None`` means fp16 on GPU and fp32 on CPU. fp16 is never used on CPU:
        FlagEmbedding would load fp16-rounded weights and compute in fp32, which changes vectors by ~1e-3
        without any speed gain.
    multivector_dtype
        Storage type of the ColBERT token vectors, ``"float16"`` (the library's storage type, 2 KB per
        token) or ``"float32"``.

    Outputs: ``dense`` (float32 ``(n, 1024)``, unit rows), ``sparse`` (CSR ``(n, 250002)``, the maximum
    weight per token id; ``<s>``, ``</s>``, ``<pad>``, ``<unk>`` dropped; no vocabulary expansion) and
    ``multivector`` (``n_tokens - 1`` unit vectors per text, ``</s>`` included). The default outputs are
    dense and sparse; ask for ``"multivector"`` explicitly, since it stores ~2 KB per token.

    Examples
    --------
    >>> enc = BGEM3Encoder(device="cpu")                       # doctest: +SKIP
    >>> q = enc.encode_queries(["what is bge-m3?"], outputs=("dense", "sparse", "multivector"))  # doctest: +SKIP
    >>> q.dense.shape, q.sparse.shape, q.multivector.dim        # doctest: +SKIP
    ((1, 1024), (1, 250002), 1024)
    """

    name = "bge-m3"
    supported_outputs: tuple[Mode, ...] = ("dense", "sparse", "multivector")
    default_outputs: tuple[Mode, ...] = ("dense", "sparse")
    thread_safe = False  # see Encoder.thread_safe: one encode call at a time per instance

    def __init__(
        self,
        model: str = DEFAULT_MODEL,
        *,
        device: str | None = None,
        batch_size: int = 32,
        query_max_length: int = 512,
        passage_max_length: int = 512,
        use_fp16: bool | None = None,
        multivector_dtype: str = "float16",
    ) -> None:
        if not isinstance(model, (str, os.PathLike)) or not str(model).strip():
            raise ConfigError(f"model must be a hub id or a directory path, got {model!r}")
        if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
            raise ConfigError(f"batch_size must be a positive integer, got {batch_size!r}")
        if multivector_dtype not in ("float16", "float32"):
            raise ConfigError(f"multivector_dtype must be 'float16' or 'float32', got {multivector_dtype!r}")
        if device is not None and (not isinstance(device, str) or not device.strip()):
            raise ConfigError(f"device must be one torch device string such as 'cpu' or 'cuda:0', got {device!r}")
        self.model_id = str(model)
        self.batch_size = batch_size
        self.query_max_length = _check_length("query_max_length", query_max_length)
        self.passage_max_length = _check_length("passage_max_length", passage_max_length)
        self.multivector_dtype = np.dtype(multivector_dtype)

        torch = require("torch", extra="model")
        self._torch = torch
        if device is None:
            device = "cuda" if torch.cuda.is_available() else "cpu"
        if device.startswith("cuda") and not torch.cuda.is_available():
            raise ConfigError(f"device={device!r} but torch sees no CUDA GPU; use device='cpu'")
        self.device = device
        on_cpu = device.split(":")[0] == "cpu"
        if use_fp16 and on_cpu:
            logger.warning("use_fp16=True is ignored on CPU: bge-m3 runs with fp32 weights there")
        self.use_fp16 = bool(use_fp16 if use_fp16 is not None else not on_cpu) and not on_cpu

        self.model_dir = resolve_model_dir(self.model_id)
        check_model_dir(self.model_dir)
        self._check_lengths_fit()
        self._flag = self._load()
        self._fingerprint: str | None = None

    # ----------------------------------------------------------------- loading
    def _check_lengths_fit(self) -> None:
        try:
            config = json.loads((self.model_dir / "config.json").read_text(encoding="utf-8"))
        except (OSError, ValueError) as exc:
            raise ModelLoadError(f"cannot read {self.model_dir / 'config.json'}: {exc}") from exc
        positions = config.get("max_position_embeddings")
        if isinstance(positions, int):
            limit = positions - int(config.get("pad_token_id", 1)) - 1  # XLM-R positions start after pad
            for name in ("query_max_length", "passage_max_length"):
                if getattr(self, name) > limit:
                    raise ConfigError(f"{name}={getattr(self, name)} exceeds what this model accepts ({limit} tokens)")

    def _load(self) -> Any:
        flag_embedding = require("FlagEmbedding", extra="model")
        torch = self._torch
        try:
            with _quiet_loading():
                flag = flag_embedding.BGEM3FlagModel(
                    str(self.model_dir),
                    normalize_embeddings=True,
                    use_fp16=self.use_fp16,
                    devices=self.device,
                    pooling_method="cls",
                    batch_size=self.batch_size,
                    query_max_length=self.query_max_length,
                    passage_max_length=self.passage_max_length,
                )
            model = flag.model
            if not self.use_fp16:
                model.float()
            model.to(self.device)
            model.eval()
        except Exception as exc:  # torch, transformers and safetensors raise many unrelated types
            raise ModelLoadError(f"could not load bge-m3 from {self.model_dir}: {type(exc).__name__}: {exc}") from exc
        self._verify_heads(model, torch)
        return flag

    def _verify_heads(self, model: Any, torch: Any) -> None:
        """Check that the heads in memory equal the files, so random heads can never be used."""
        for fname in HEAD_FILES:
            layer = getattr(model, fname.removesuffix(".pt"), None)
            try:
                saved = torch.load(self.model_dir / fname, map_location="cpu", weights_only=True)
            except Exception as exc:
                raise ModelLoadError(f"cannot read {self.model_dir / fname}: {type(exc).__name__}: {exc}") from exc
            current = {} if layer is None else layer.state_dict()
            if not isinstance(saved, dict) or set(saved) != set(current):
                raise ModelLoadError(f"{fname} does not hold the expected Linear layer state (weight, bias)")
            for key, value in saved.items():
                have = current[key].detach().to("cpu")
                if have.shape != value.shape or not torch.equal(have, value.to(have.dtype)):
                    raise ModelLoadError(
                        f"the {fname.removesuffix('.pt')} head in memory differs from {fname}; the head was not "
                        "loaded (FlagEmbedding may have initialised it at random), refusing to encode with it"
                    )

    # ---------------------------------------------------------------- identity
    @property
    def info(self) -> EncoderInfo:
        if self._fingerprint is None:
            self._fingerprint = model_fingerprint(self.model_dir)
        return EncoderInfo(name=self.name, model_id=self.model_id, fingerprint=self._fingerprint)

    @property
    def dim(self) -> int:
        """Width of the dense and multi-vector outputs (1024 for bge-m3)."""
        return int(self._flag.model.config.hidden_size)

    @property
    def vocab_size(self) -> int:
        """Number of columns of the sparse output (250,002 for bge-m3)."""
        return int(self._flag.model.vocab_size)

    # ---------------------------------------------------------------- encoding
    def _encode(self, texts: list[str], *, is_query: bool, outputs: tuple[Mode, ...], show_progress: bool) -> Encoded:
        max_length = self.query_max_length if is_query else self.passage_max_length
        n = len(texts)
        dense = np.zeros((n, self.dim), np.float32) if "dense" in outputs else None
        sparse_rows: list[Any] = [None] * n if "sparse" in outputs else []
        colbert: list[Any] = [None] * n if "multivector" in outputs else []
        chunk = self.batch_size * _TEXTS_PER_CHUNK_BATCHES
        with progress(n, "bge-m3 " + ("queries" if is_query else "corpus"), enabled=show_progress) as bar:
            for start in range(0, n, chunk):
                self._encode_chunk(texts[start : start + chunk], start, max_length, outputs, dense, sparse_rows, colbert, bar)
        sparse = self._to_csr(sparse_rows) if "sparse" in outputs else None
        multivector = (
            MultiVectors.from_list(colbert, dim=self.dim, dtype=self.multivector_dtype) if "multivector" in outputs else None
        )
        return Encoded(dense=dense, sparse=sparse, multivector=multivector, encoder=self.info)

    def _encode_chunk(
        self,
        texts: list[str],
        offset: int,
        max_length: int,
        outputs: tuple[Mode, ...],
        dense: np.ndarray | None,
        sparse_rows: list[Any],
        colbert: list[Any],
        bar: Any,
    ) -> None:
        torch, tokenizer = self._torch, self._flag.tokenizer
        encoded = tokenizer(texts, truncation=True, max_length=max_length)
        ids_per_text = encoded["input_ids"]
        # The same sort as FlagEmbedding, so batches (and thus padding) and results match its encode().
        order = np.argsort([-len(x) for x in ids_per_text])
        skip = np.array(
            [t for t in (tokenizer.cls_token_id, tokenizer.eos_token_id, tokenizer.pad_token_id, tokenizer.unk_token_id) if t is not None]
        )
        mv_torch_dtype = torch.float16 if self.multivector_dtype == np.float16 else torch.float32
        for b in range(0, len(texts), self.batch_size):
            idx = order[b : b + self.batch_size]
            features = {key: [encoded[key][i] for i in idx] for key in encoded.keys()}
            batch = tokenizer.pad(features, padding=True, return_tensors="pt").to(self.device)
            with torch.inference_mode():
                out = self._flag.model(
                    batch,
                    return_dense="dense" in outputs,
                    return_sparse="sparse" in outputs,
                    return_colbert_vecs="multivector" in outputs,
                )
            n_tokens = batch["attention_mask"].sum(dim=1).cpu().numpy()
            pos = idx + offset
            if dense is not None:
                vecs = out["dense_vecs"]
                if vecs.dtype != torch.float32:  # fp16 on GPU: re-normalise after widening
                    vecs = torch.nn.functional.normalize(vecs.float(), dim=-1)
                dense[pos] = vecs.cpu().numpy()
            if "sparse" in outputs:
                weights = out["sparse_vecs"].squeeze(-1).float().cpu().numpy()
                input_ids = batch["input_ids"].cpu().numpy()
                for j, p in enumerate(pos):
                    sparse_rows[p] = _max_pool(input_ids[j], weights[j], skip)
            if "multivector" in outputs:
                vecs = out["colbert_vecs"].to(mv_torch_dtype).cpu().numpy()
                for j, p in enumerate(pos):
                    colbert[p] = vecs[j, : int(n_tokens[j]) - 1]
            bar.update(len(idx))

    def _to_csr(self, rows: list[tuple[np.ndarray, np.ndarray]]) -> sp.csr_matrix:
        indptr = np.zeros(len(rows) + 1, np.int64)
        np.cumsum([r[0].size for r in rows], out=indptr[1:])
        indices = np.concatenate([r[0] for r in rows]).astype(np.int32, copy=False)
        data = np.concatenate([r[1] for r in rows]).astype(np.float32, copy=False)
        return sp.csr_matrix((data, indices, indptr), shape=(len(rows), self.vocab_size))


def _max_pool(ids: np.ndarray, weights: np.ndarray, skip: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Sorted unique token ids and the maximum weight of each, without special tokens or weights <= 0."""
    keep = (weights > 0) & ~np.isin(ids, skip)
    ids, weights = ids[keep], weights[keep]
    if ids.size == 0:
        return ids.astype(np.int32), weights.astype(np.float32)
    order = np.lexsort((-weights, ids))  # by id, largest weight first within an id
    ids, weights = ids[order], weights[order]
    first = np.concatenate(([True], ids[1:] != ids[:-1]))
    return ids[first].astype(np.int32), weights[first].astype(np.float32)
