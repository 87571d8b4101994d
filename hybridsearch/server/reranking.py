"""The reranker ``hybridsearch serve`` applies to ``/v1/search``, chosen by name: settings, loading, start-up check.

- ``scoring-api``: :class:`~hybridsearch.rerankers.ScoringAPIReranker`. Needs ``--reranker-url`` (a Workers
  AI-compatible base URL such as ``http://127.0.0.1:8001/ai/run``; the model id is appended) or
  ``--reranker-account`` (Cloudflare Workers AI); optional ``--reranker-token`` and ``--reranker-model`` (the model
  id, default ``@cf/baai/bge-m3``).
- ``bge-m3``: :class:`~hybridsearch.rerankers.BGEM3Reranker`. ``--reranker-model DIR``, or nothing to reuse the
  index's own bge-m3 encoder (no second copy of the model).
- ``cross-encoder``: :class:`~hybridsearch.rerankers.CrossEncoderReranker`. Needs ``--reranker-model DIR`` (e.g. a
  ``BAAI/bge-reranker-v2-m3`` directory).

``--reranker-option KEY=VALUE`` passes any other keyword argument of the class (``time_budget``, ``concurrency``,
``combine``, ``device``, ``batch_size``, ...). ``--rerank-depth N`` sets how many first-stage hits are reranked
(the Retriever's ``rerank_depth``; default the index's recorded value, else 100).

Nothing falls back: a setting that does not fit the chosen reranker is a :class:`~hybridsearch.errors.ConfigError`
when the configuration is made; a model that does not load raises the class's own error (``ModelLoadError``, ...)
while the server loads, and a scoring API that cannot score a test pair, or an index whose hits carry no text to
rerank, fails the start-up check. Either way ``/ready`` never turns ready, and ``hybridsearch serve`` exits with the
error.
"""

from __future__ import annotations

import asyncio
import inspect
from collections.abc import Iterable
from typing import TYPE_CHECKING, Any

from ..errors import ConfigError, WorkersAIError

if TYPE_CHECKING:
    from ..encoders.base import Encoder
    from ..rerankers.base import Reranker
    from ..types import Encoded
    from .config import ServerConfig
    from .store import IndexStore

__all__ = ["RERANKERS", "build_reranker", "check_reranker_settings", "warm_up_reranker"]

RERANKERS = ("scoring-api", "bge-m3", "cross-encoder")
"""The names ``--reranker`` accepts."""

_API_SETTINGS = ("reranker_url", "reranker_account", "reranker_token")
# Keyword arguments the settings above fill, or that cannot come from a command line.
_SET_BY_SERVER = {
    "scoring-api": {"base_url", "account_id", "api_token", "model", "client", "async_client", "token_counter"},
    "bge-m3": {"encoder"},
    "cross-encoder": {"model"},
}


def _flag(name: str) -> str:
    return "--" + name.replace("_", "-")


def check_reranker_settings(cfg: ServerConfig) -> None:
    """ConfigError for reranker settings that do not fit together (no I/O; called by ``ServerConfig``)."""
    kind = cfg.reranker
    given = [n for n in (*_API_SETTINGS, "reranker_model") if getattr(cfg, n) is not None]
    if cfg.rerank_depth is not None and (isinstance(cfg.rerank_depth, bool) or not isinstance(cfg.rerank_depth, int)
                                         or cfg.rerank_depth < 1):  # fmt: skip
        raise ConfigError(f"rerank_depth must be a positive integer, got {cfg.rerank_depth!r}")
    if not isinstance(cfg.reranker_options, dict):
        raise ConfigError(f"reranker_options must be a dict of keyword arguments, got {type(cfg.reranker_options).__name__}")
    for name in given:
        value = getattr(cfg, name)
        if not isinstance(value, str) or not value.strip():
            raise ConfigError(f"{name} ({_flag(name)}) is empty; give a value or leave it unset")
    if kind is None:
        if given or cfg.reranker_options:
            names = ", ".join(_flag(n) for n in given) or "--reranker-option"
            raise ConfigError(f"{names} given without --reranker; choose one of {', '.join(RERANKERS)}")
        return
    if kind not in RERANKERS:
        raise ConfigError(f"unknown reranker {kind!r}; choose one of {', '.join(RERANKERS)}")
    if cfg.index is None:
        raise ConfigError("--reranker reranks /v1/search results and needs --index DIR")
    if kind == "scoring-api":
        if cfg.reranker_url is None and cfg.reranker_account is None:
            raise ConfigError("--reranker scoring-api needs --reranker-url (a Workers AI-compatible base URL such as "
                              "http://127.0.0.1:8001/ai/run) or --reranker-account (Cloudflare Workers AI)")  # fmt: skip
        if cfg.reranker_url is not None and not cfg.reranker_url.startswith(("http://", "https://")):
            raise ConfigError(f"--reranker-url must be an http(s) URL, got {cfg.reranker_url!r}")
        return
    wrong = [_flag(n) for n in _API_SETTINGS if getattr(cfg, n) is not None]
    if wrong:
        raise ConfigError(f"{', '.join(wrong)} only apply to --reranker scoring-api, not {kind}")
    if kind == "cross-encoder" and cfg.reranker_model is None:
        raise ConfigError("--reranker cross-encoder needs --reranker-model DIR (e.g. a BAAI/bge-reranker-v2-m3 directory)")


def _check_options(kind: str, options: dict[str, Any], targets: Iterable[Any]) -> None:
    allowed: set[str] = set()
    for target in targets:
        params = inspect.signature(target).parameters.values()
        allowed |= {p.name for p in params if p.kind in (p.KEYWORD_ONLY, p.POSITIONAL_OR_KEYWORD) and p.name != "self"}
    allowed -= _SET_BY_SERVER[kind]
    unknown = sorted(set(options) - allowed)
    if unknown:
        raise ConfigError(f"--reranker-option {', '.join(unknown)} is not an option of the {kind} reranker; "
                          f"it takes {', '.join(sorted(allowed))}")  # fmt: skip


def build_reranker(cfg: ServerConfig, index_encoder: Encoder | None = None) -> Reranker | None:
    """The reranker ``cfg`` names (``None`` without one), loaded now.

    ``index_encoder``: the served index's encoder, which ``bge-m3`` without ``reranker_model`` reuses.
    Raises ConfigError for settings the class refuses and the class's own errors (``ModelLoadError`` for a missing or
    incomplete model directory, ``MissingDependencyError``).
    """
    kind = cfg.reranker
    if kind is None:
        return None
    options = dict(cfg.reranker_options)
    if kind == "scoring-api":
        from ..rerankers.scoring_api import ScoringAPIReranker

        _check_options(kind, options, [ScoringAPIReranker.__init__])
        if cfg.reranker_model is not None:
            options["model"] = cfg.reranker_model
        return ScoringAPIReranker(base_url=cfg.reranker_url, account_id=cfg.reranker_account,
                                  api_token=cfg.reranker_token, **options)  # fmt: skip
    if kind == "bge-m3":
        from ..encoders.bge_m3 import BGEM3Encoder
        from ..rerankers.bge_m3 import BGEM3Reranker

        _check_options(kind, options, [BGEM3Reranker.__init__, BGEM3Encoder.__init__])
        if cfg.reranker_model is not None:
            return BGEM3Reranker(cfg.reranker_model, **options)
        if not isinstance(index_encoder, BGEM3Encoder):
            raise ConfigError(f"--reranker bge-m3 without --reranker-model reuses the index's encoder, but the index was "
                              f"built with {index_encoder!r}; give --reranker-model DIR (a bge-m3 directory)")  # fmt: skip
        return BGEM3Reranker(index_encoder, **options)
    from ..rerankers.cross_encoder import CrossEncoderReranker

    _check_options(kind, options, [CrossEncoderReranker.__init__])
    return CrossEncoderReranker(cfg.reranker_model, **options)


async def warm_up_reranker(reranker: Reranker, store: IndexStore, query: Encoded, mode: str) -> None:
    """Check the reranker can rerank this index before the server turns ready.

    A scoring API must score a test pair (ConfigError naming the URL and the client's error otherwise: the reranker
    itself would only degrade to the first-stage order on every query). Then, when the index holds documents, the
    top hits of the warm-up ``query`` are reranked once; ConfigError when none of them carries a text to score.
    """
    check = getattr(reranker, "acheck", None)
    if check is not None:
        try:
            await check()
        except WorkersAIError as exc:
            where = getattr(reranker, "run_url", "the scoring API")
            raise ConfigError(f"the scoring API at {where} did not score a test pair ({type(exc).__name__}: {exc}); "
                              "check --reranker-url (the base URL before the model id, e.g. http://HOST:PORT/ai/run), "
                              "--reranker-token and that the scoring server is up") from exc  # fmt: skip
    if not len(store):
        return
    depth = min(store.retriever.rerank_depth, 10)
    hits = await asyncio.to_thread(store.search, query, k=depth, mode=mode, candidates=max(depth, store.retriever.candidates))
    texts = hits.texts(0)
    if texts and not any(isinstance(t, str) and t.strip() for t in texts):
        raise ConfigError(f"the index's top {len(texts)} hits for a test query carry no document text, so a reranker has "
                          "nothing to score; build the index with texts or serve it without --reranker")  # fmt: skip
    await reranker.arerank(["warm up"], hits, k=1)
