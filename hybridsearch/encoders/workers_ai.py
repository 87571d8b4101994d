"""Dense vectors from Workers AI ``@cf/baai/bge-m3`` (or a compatible server), as an :class:`Encoder`.

>>> enc = WorkersAIEncoder()  # reads CLOUDFLARE_ACCOUNT_ID and CLOUDFLARE_API_TOKEN  # doctest: +SKIP
>>> enc = WorkersAIEncoder(base_url="http://127.0.0.1:8000/ai/run")  # a self-hosted server  # doctest: +SKIP
>>> enc.encode_corpus(["hello world"]).dense.shape  # doctest: +SKIP
(1, 1024)

Compatibility (``info.fingerprint``): Workers AI serves only the dense view of bge-m3, so its vectors should match
a local bge-m3 dense up to fp16 rounding, but this encoder does not claim that: an index built with it accepts
queries only from an encoder with the same name, model id and fingerprint. The fingerprint hashes the model id
and where it runs: every Cloudflare endpoint (``*.cloudflare.com``, direct or through AI Gateway, any account)
shares one, while a self-hosted server gets one per ``host:port`` because its weights are unknown. Pass
``fingerprint=`` to declare two deployments interchangeable.

Vectors are L2-normalised on arrival. bge-m3 already returns unit vectors, so this changes nothing for the real
service; it guarantees the unit-norm contract of :class:`~hybridsearch.types.Encoded` for any compatible server.
The ``pooling`` the server reports (``"cls"`` for bge-m3) is kept in :attr:`WorkersAIEncoder.pooling`; a server
that switches pooling or width between calls raises :class:`~hybridsearch.errors.APIResponseError`.
"""

from __future__ import annotations

import hashlib

import httpx
import numpy as np

from .._progress import progress
from ..errors import APIResponseError, ConfigError
from ..types import Encoded, EncoderInfo, Mode
from ..workers_ai import DEFAULT_MODEL, MAX_TEXTS_PER_CALL, WorkersAIClient
from .base import Encoder

__all__ = ["WorkersAIEncoder", "endpoint_fingerprint"]


def endpoint_fingerprint(model: str, run_url: str) -> str:
    """16 hex digits identifying ``model`` served at ``run_url`` (see the module docstring)."""
    url = httpx.URL(run_url)
    host = url.host.lower()
    where = "cloudflare" if host == "cloudflare.com" or host.endswith(".cloudflare.com") else f"{host}:{url.port or ''}"
    return hashlib.sha256(f"workers-ai\n{model}\n{where}".encode()).hexdigest()[:16]


class WorkersAIEncoder(Encoder):
    """bge-m3 dense vectors from Workers AI. Queries and documents are encoded alike (bge-m3 uses no prefix).

    Either pass connection options (forwarded to :class:`~hybridsearch.workers_ai.WorkersAIClient`) or a ready
    ``client`` (then the caller owns it). ``truncate_inputs`` defaults to ``True`` so over-long documents are
    cut at the model's limit, as a local bge-m3 does, instead of failing the whole call.
    """

    name = "workers-ai"
    supported_outputs: tuple[Mode, ...] = ("dense",)
    default_outputs: tuple[Mode, ...] = ("dense",)
    encodes_empty = False  # the API's schema requires at least one character per text

    def __init__(
        self,
        *,
        model: str = DEFAULT_MODEL,
        account_id: str | None = None,
        api_token: str | None = None,
        base_url: str | None = None,
        timeout: float = 60.0,
        max_retries: int = 3,
        truncate_inputs: bool = True,
        fingerprint: str | None = None,
        client: WorkersAIClient | None = None,
    ) -> None:
        if not isinstance(truncate_inputs, bool):
            raise ConfigError(f"truncate_inputs must be True or False, got {truncate_inputs!r}")
        if client is not None:
            if not isinstance(client, WorkersAIClient):
                raise ConfigError(f"client must be a WorkersAIClient, got {type(client).__name__}")
            if account_id is not None or api_token is not None or base_url is not None or model != DEFAULT_MODEL:
                raise ConfigError("pass either client= or connection options (model, account_id, api_token, base_url)")
            self.client, self._owns_client = client, False
        else:
            self.client = WorkersAIClient(
                account_id=account_id, api_token=api_token, base_url=base_url, model=model, timeout=timeout,
                max_retries=max_retries,
            )  # fmt: skip
            self._owns_client = True
        if fingerprint is not None and (not isinstance(fingerprint, str) or not fingerprint):
            raise ConfigError(f"fingerprint must be a non-empty str, got {fingerprint!r}")
        self.truncate_inputs = truncate_inputs
        self.dim: int | None = None  # learned from the first response's shape
        self.pooling: str | None = None  # as reported by the server
        self._info = EncoderInfo(
            name=self.name,
            model_id=self.client.model,
            fingerprint=fingerprint or endpoint_fingerprint(self.client.model, self.client.run_url),
        )

    @property
    def info(self) -> EncoderInfo:
        return self._info

    def _encode(self, texts: list[str], *, is_query: bool, outputs: tuple[Mode, ...], show_progress: bool) -> Encoded:
        parts = []
        with progress(len(texts), "Workers AI", enabled=show_progress) as bar:
            for start in range(0, len(texts), MAX_TEXTS_PER_CALL):
                chunk = texts[start : start + MAX_TEXTS_PER_CALL]
                res = self.client.embed_result(chunk, truncate_inputs=self.truncate_inputs)
                self._remember(res.vectors.shape[1], res.pooling)
                parts.append(res.vectors)
                bar.update(len(chunk))
        return Encoded(dense=_l2_normalise(np.concatenate(parts)), encoder=self._info)

    def _remember(self, dim: int, pooling: str | None) -> None:
        if self.dim is not None and dim != self.dim:
            raise APIResponseError(f"the server returned {dim}-d vectors after {self.dim}-d ones; it changed model")
        if self.pooling is not None and pooling is not None and pooling != self.pooling:
            raise APIResponseError(f"the server switched pooling from {self.pooling!r} to {pooling!r}")
        self.dim = dim
        self.pooling = pooling or self.pooling

    def close(self) -> None:
        """Close the client if this encoder created it."""
        if self._owns_client:
            self.client.close()

    def __enter__(self) -> WorkersAIEncoder:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _l2_normalise(vectors: np.ndarray) -> np.ndarray:
    norms = np.linalg.norm(vectors, axis=1, keepdims=True)
    zero = np.flatnonzero(norms[:, 0] == 0)
    if zero.size:
        raise APIResponseError(f"the server returned an all-zero vector (row {int(zero[0])}); it cannot be normalised")
    return (vectors / norms).astype(np.float32, copy=False)
