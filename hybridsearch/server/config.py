"""Server settings: one dataclass, filled from command-line flags or ``HYBRIDSEARCH_*`` environment variables."""

from __future__ import annotations

import os
from dataclasses import dataclass, field, fields
from typing import Any

from ..contract.workers_ai import MAX_INPUT_TOKENS, MAX_REQUEST_TOKENS, MAX_TEXTS_PER_CALL
from ..errors import ConfigError
from .reranking import check_reranker_settings

__all__ = ["ENV_PREFIX", "ServerConfig"]

ENV_PREFIX = "HYBRIDSEARCH_"


@dataclass
class ServerConfig:
    """Everything ``hybridsearch serve`` can be told. Each field ``name`` also reads ``HYBRIDSEARCH_NAME``.

    Model and index
        ``index``: an index directory written by ``hybridsearch index`` (its recorded encoder answers queries and
        encodes ingested documents). ``encoder`` / ``encoder_options``: the model behind the Workers AI and
        ``/v1/embeddings`` routes (default: the index's encoder when it yields dense vectors). ``model_name``: the
        model id the routes answer to. ``score``: how query + contexts are scored, ``"dense"`` (cosine of the
        dense vectors, as Cloudflare) or ``"all"`` (``score_weights`` over dense, sparse and multi-vector scores;
        bge-m3's ``compute_score`` default 0.4 / 0.2 / 0.4).
    Reranking ``/v1/search`` (see :mod:`.reranking`)
        ``reranker``: ``"scoring-api"``, ``"bge-m3"`` or ``"cross-encoder"`` (``None``: no reranker).
        ``reranker_url`` / ``reranker_account`` / ``reranker_token``: where the scoring API is (its base URL, e.g.
        ``http://127.0.0.1:8001/ai/run``, or a Cloudflare account) and its bearer token. ``reranker_model``: the
        model directory (or cached hub id) of a local reranker, or the model id on the scoring API (default
        ``@cf/baai/bge-m3``). ``reranker_options``: more keyword arguments of the reranker class.
        ``rerank_depth``: first-stage hits reranked per query (default: the index's recorded value, else 100).
    Limits
        ``max_body_bytes`` (413 / 3006 above it), ``max_texts`` per ``text`` array and ``/v1/embeddings`` call,
        ``max_contexts`` per request, ``max_input_tokens`` per input (capped at the encoder's own maximum),
        ``max_request_tokens`` per request, ``max_documents`` per ingest call, ``max_k`` per search.
    Micro-batching
        Encode calls that arrive while the encoder is busy are merged, up to ``batch_max_texts`` texts, and go as
        soon as it is free; a call that finds it idle goes at once, or waits at most ``batch_max_wait_ms`` for
        company when that is above 0 (see :mod:`hybridsearch.server.batcher`). ``micro_batching=False`` encodes
        each call alone.
    Queue
        ``queue_capacity`` unfinished batches (then 429 / 3040), finished results kept ``queue_retention_s``.
    Ingest
        Commit the index every ``commit_every`` documents or ``commit_interval_s`` seconds, whichever first, and on
        shutdown.
    Operations
        ``api_token`` (bearer auth when set), ``host``, ``port``, ``shutdown_timeout_s`` (grace for in-flight
        requests).
    """

    index: str | None = None
    encoder: str | None = None
    encoder_options: dict[str, Any] = field(default_factory=dict)
    model_name: str = "@cf/baai/bge-m3"
    score: str = "dense"
    score_weights: tuple[float, float, float] = (0.4, 0.2, 0.4)
    host: str = "127.0.0.1"
    port: int = 8000
    api_token: str | None = field(default=None, repr=False)
    reranker: str | None = None
    reranker_url: str | None = None
    reranker_account: str | None = None
    reranker_token: str | None = field(default=None, repr=False)
    reranker_model: str | None = None
    reranker_options: dict[str, Any] = field(default_factory=dict)
    rerank_depth: int | None = None
    max_body_bytes: int = 10_000_000
    max_texts: int = MAX_TEXTS_PER_CALL
    max_contexts: int = 1000
    max_input_tokens: int = MAX_INPUT_TOKENS
    max_request_tokens: int = MAX_REQUEST_TOKENS
    max_documents: int = 1000
    max_k: int = 1000
    micro_batching: bool = True
    batch_max_texts: int = 64
    batch_max_wait_ms: float = 0.0
    queue_capacity: int = 64
    queue_retention_s: float = 3600.0
    commit_every: int = 1000
    commit_interval_s: float = 5.0
    shutdown_timeout_s: float = 30.0

    def __post_init__(self) -> None:
        if self.score not in ("dense", "all"):
            raise ConfigError(f"score must be 'dense' or 'all', got {self.score!r}")
        if len(self.score_weights) != 3 or any(not w >= 0 for w in self.score_weights) or not sum(self.score_weights) > 0:
            raise ConfigError(f"score_weights must be three non-negative numbers (dense, sparse, multivector), got {self.score_weights!r}")
        for name in ("max_body_bytes", "max_texts", "max_contexts", "max_input_tokens", "max_request_tokens",
                     "max_documents", "max_k", "batch_max_texts", "queue_capacity", "commit_every"):  # fmt: skip
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, int) or v < 1:
                raise ConfigError(f"{name} must be a positive integer, got {v!r}")
        for name in ("batch_max_wait_ms", "queue_retention_s", "commit_interval_s", "shutdown_timeout_s"):
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, (int, float)) or not v >= 0:
                raise ConfigError(f"{name} must be a non-negative number, got {v!r}")
        if self.max_input_tokens < 3:
            raise ConfigError("max_input_tokens must leave room for the two special tokens and one more")
        if not isinstance(self.port, int) or not 0 <= self.port < 65536:
            raise ConfigError(f"port must be in [0, 65535], got {self.port!r}")
        if self.api_token is not None and not self.api_token.strip():
            raise ConfigError("api_token is empty; leave it unset to disable auth")
        check_reranker_settings(self)

    @classmethod
    def from_env(cls, environ: dict[str, str] | None = None, **overrides: Any) -> ServerConfig:
        """Defaults, then ``HYBRIDSEARCH_*`` variables, then ``overrides`` (flags that were given)."""
        env = os.environ if environ is None else environ
        values: dict[str, Any] = {}
        for f in fields(cls):
            raw = env.get(ENV_PREFIX + f.name.upper())
            if raw is None or f.name in ("encoder_options", "reranker_options"):
                continue
            values[f.name] = _parse(f.name, raw, _ENV_TYPES.get(f.name, getattr(cls, f.name, None)))
        values.update({k: v for k, v in overrides.items() if v is not None})
        return cls(**values)


_ENV_TYPES: dict[str, Any] = {"score_weights": (0.0,), "rerank_depth": 0}
"""A value of the type to parse the variable as, for fields whose default does not say (``None``, a tuple)."""


def _parse(name: str, raw: str, default: Any) -> Any:
    try:
        if isinstance(default, bool):
            if raw.lower() not in ("1", "0", "true", "false", "yes", "no"):
                raise ValueError(raw)
            return raw.lower() in ("1", "true", "yes")
        if isinstance(default, tuple):
            return tuple(float(x) for x in raw.split(","))
        if isinstance(default, int):
            return int(raw)
        if isinstance(default, float):
            return float(raw)
    except ValueError:
        raise ConfigError(f"{ENV_PREFIX}{name.upper()}={raw!r} is not a valid {type(default).__name__}") from None
    return raw
