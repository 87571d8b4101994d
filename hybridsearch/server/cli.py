"""``hybridsearch serve``: flags for every :class:`~.config.ServerConfig` field; ``HYBRIDSEARCH_*`` variables too."""

from __future__ import annotations

import argparse
import json
import os
import shlex
from typing import Any

from ..errors import ConfigError
from .config import ServerConfig
from .reranking import RERANKERS

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
    r = s.add_argument_group("reranking /v1/search")
    r.add_argument("--reranker", choices=list(RERANKERS), help="rerank the first stage's top hits: scoring-api (a Workers "
                   "AI-compatible query+contexts API), bge-m3 (local dense+sparse+ColBERT scores), cross-encoder (local "
                   "bge-reranker-v2-m3 or similar); requests can turn it off with \"rerank\": false")  # fmt: skip
    r.add_argument("--reranker-url", help="scoring-api: base URL the model id is appended to, e.g. http://127.0.0.1:8001/ai/run")
    r.add_argument("--reranker-account", help="scoring-api: Cloudflare account id (Cloudflare Workers AI when no --reranker-url)")
    r.add_argument("--reranker-token", help="scoring-api: bearer token (better: HYBRIDSEARCH_RERANKER_TOKEN)")
    r.add_argument("--reranker-model", help="bge-m3 / cross-encoder: model directory (bge-m3 default: the index's own "
                   "bge-m3 encoder); scoring-api: model id (default @cf/baai/bge-m3)")  # fmt: skip
    r.add_argument("--reranker-option", action="append", default=[], metavar="KEY=VALUE",
                   help="more reranker arguments, repeatable: time_budget=2, concurrency=8, combine=rrf, device=cpu, batch_size=16, ...")  # fmt: skip
    r.add_argument("--rerank-depth", type=int, help="first-stage hits reranked per query (default: the index's recorded value, else 100)")
    for name, kind, what in (
        ("max-body-bytes", int, "request body limit in bytes (10,000,000)"),
        ("max-texts", int, "texts per 'text' array and per /v1/embeddings call (100)"),
        ("max-contexts", int, "contexts per request (1000)"),
        ("max-input-tokens", int, "tokens per input (8192, capped at the encoder's maximum)"),
        ("max-request-tokens", int, "tokens per request (60000)"),
        ("max-documents", int, "documents per ingest call (1000)"),
        ("max-k", int, "largest k for /v1/search (1000)"),
        ("batch-max-texts", int, "micro-batch size in texts (64)"),
        ("batch-max-wait-ms", float, "longest wait for company when the encoder is idle (0 ms: requests arriving while it is busy are batched anyway)"),
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
                "shutdown_timeout_s", "micro_batching", "reranker", "reranker_url", "reranker_account", "reranker_token",
                "reranker_model", "rerank_depth"):  # fmt: skip
        overrides[key] = getattr(args, key, None)
    if args.score_weights:
        try:
            overrides["score_weights"] = tuple(float(x) for x in args.score_weights.split(","))
        except ValueError:
            raise ConfigError(f"--score-weights must be three numbers like 0.4,0.2,0.4, got {args.score_weights!r}") from None
    for flag, key in (("option", "encoder_options"), ("reranker_option", "reranker_options")):
        options = _key_values(getattr(args, flag, None) or [], "--" + flag.replace("_", "-"))
        env_name = "HYBRIDSEARCH_" + flag.upper()
        if not options and os.environ.get(env_name, "").strip():  # the flags win over the environment
            try:
                pairs = shlex.split(os.environ[env_name])
            except ValueError as exc:
                raise ConfigError(f"{env_name}: {exc}; write it as 'key=value key2=value2'") from None
            options = _key_values(pairs, env_name)
        if options:
            overrides[key] = options
    cfg = ServerConfig.from_env(**overrides)
    if cfg.index is None and cfg.encoder is None:
        raise ConfigError("give --index DIR (search, ingest and, for a dense index, embeddings) and/or --encoder")
    if cfg.rerank_depth is not None and cfg.reranker is None:
        raise ConfigError("--rerank-depth given without --reranker; choose one of " + ", ".join(RERANKERS))
    return cfg


def _key_values(pairs: list[str], flag: str) -> dict[str, Any]:
    """``KEY=VALUE`` strings as keyword arguments; a VALUE that parses as JSON (2, true, [0.4,0.2,0.4]) is that."""
    options: dict[str, Any] = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key.strip():
            raise ConfigError(f"bad {flag} {pair!r}; write it as key=value")
        try:
            options[key.strip().replace("-", "_")] = json.loads(value)
        except json.JSONDecodeError:
            options[key.strip().replace("-", "_")] = value
    return options


def _cmd_serve(args: argparse.Namespace) -> int:
    from .runner import serve

    cfg = config_from_args(args)
    rerank = f", reranker={cfg.reranker}" if cfg.reranker else ""
    print(f"hybridsearch serve: http://{cfg.host}:{cfg.port} (docs at /docs; index={cfg.index}, encoder={cfg.encoder}{rerank})")
    serve(cfg)
    return 0
