"""``hybridsearch serve``: flags for every :class:`~.config.ServerConfig` field; ``HYBRIDSEARCH_*`` variables too."""

from __future__ import annotations

import argparse
import json
from typing import Any

from ..errors import ConfigError
from .config import ServerConfig

__all__ = ["add_parser"]


def add_parser(subparsers: Any) -> argparse.ArgumentParser:
    """Register ``serve`` on an ``argparse`` subparsers object."""
    s = subparsers.add_parser(
        "serve",
        help="serve Workers AI-compatible bge-m3, OpenAI /v1/embeddings, /v1/search and ingest over HTTP",
        description="Every flag can also be set as HYBRIDSEARCH_<NAME> (e.g. HYBRIDSEARCH_API_TOKEN); flags win.",
    )
    s.add_argument("--index", help="index directory written by 'hybridsearch index' (search and ingest)")
    s.add_argument("--encoder", help="embedding model for the Workers AI and /v1/embeddings routes "
                   "(default: the index's encoder when it is dense), e.g. bge-m3 or minilm")  # fmt: skip
    s.add_argument("--option", "-o", action="append", default=[], metavar="KEY=VALUE", help="option for --encoder, repeatable")
    s.add_argument("--model-name", help="model id the routes answer to (default @cf/baai/bge-m3)")
    s.add_argument("--score", choices=["dense", "all"], help="query+contexts score: dense cosine (default) or weighted all views")
    s.add_argument("--score-weights", help="dense,sparse,multivector weights for --score all (default 0.4,0.2,0.4)")
    s.add_argument("--host", help="bind address (default 127.0.0.1)")
    s.add_argument("--port", type=int, help="port (default 8000)")
    s.add_argument("--api-token", help="require 'Authorization: Bearer TOKEN' (better: HYBRIDSEARCH_API_TOKEN)")
    for name, kind, what in (
        ("max-body-bytes", int, "request body limit in bytes (10,000,000)"),
        ("max-texts", int, "texts per 'text' array and per /v1/embeddings call (100)"),
        ("max-contexts", int, "contexts per request (1000)"),
        ("max-input-tokens", int, "tokens per input (8192, capped at the encoder's maximum)"),
        ("max-request-tokens", int, "tokens per request (60000)"),
        ("max-documents", int, "documents per ingest call (1000)"),
        ("max-k", int, "largest k for /v1/search (1000)"),
        ("batch-max-texts", int, "micro-batch size in texts (64)"),
        ("batch-max-wait-ms", float, "longest wait for a micro-batch to fill (5 ms)"),
        ("queue-capacity", int, "unfinished async batches before 429 / 3040 (64)"),
        ("queue-retention-s", float, "seconds finished batch results are kept (3600)"),
        ("commit-every", int, "commit after this many changed documents (1000)"),
        ("commit-interval-s", float, "commit pending changes after this many seconds (5)"),
        ("shutdown-timeout-s", float, "grace for in-flight requests at shutdown (30)"),
    ):
        s.add_argument(f"--{name}", type=kind, help=what)
    s.add_argument("--no-micro-batching", dest="micro_batching", action="store_false", default=None,
                   help="encode each request alone")  # fmt: skip
    s.set_defaults(func=_cmd_serve, long_running=True)
    return s


def config_from_args(args: argparse.Namespace) -> ServerConfig:
    """Environment first, then the flags that were given."""
    overrides: dict[str, Any] = {}
    for key in ("index", "encoder", "model_name", "score", "host", "port", "api_token", "max_body_bytes", "max_texts",
                "max_contexts", "max_input_tokens", "max_request_tokens", "max_documents", "max_k", "batch_max_texts",
                "batch_max_wait_ms", "queue_capacity", "queue_retention_s", "commit_every", "commit_interval_s",
                "shutdown_timeout_s", "micro_batching"):  # fmt: skip
        overrides[key] = getattr(args, key, None)
    if args.score_weights:
        try:
            overrides["score_weights"] = tuple(float(x) for x in args.score_weights.split(","))
        except ValueError:
            raise ConfigError(f"--score-weights must be three numbers like 0.4,0.2,0.4, got {args.score_weights!r}") from None
    options: dict[str, Any] = {}
    for pair in args.option:
        key, sep, value = pair.partition("=")
        if not sep or not key:
            raise ConfigError(f"bad --option {pair!r}; write it as key=value")
        try:
            options[key.replace("-", "_")] = json.loads(value)
        except json.JSONDecodeError:
            options[key.replace("-", "_")] = value
    if options:
        overrides["encoder_options"] = options
    cfg = ServerConfig.from_env(**overrides)
    if cfg.index is None and cfg.encoder is None:
        raise ConfigError("give --index DIR (search, ingest and, for a dense index, embeddings) and/or --encoder")
    return cfg


def _cmd_serve(args: argparse.Namespace) -> int:
    from .runner import serve

    cfg = config_from_args(args)
    print(f"hybridsearch serve: http://{cfg.host}:{cfg.port} (docs at /docs; index={cfg.index}, encoder={cfg.encoder})")
    serve(cfg)
    return 0
