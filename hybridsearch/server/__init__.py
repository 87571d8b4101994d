"""``hybridsearch serve``: a Workers AI-compatible bge-m3 server, OpenAI ``/v1/embeddings``, search and ingest.

>>> from hybridsearch.server import ServerConfig, ServerThread            # doctest: +SKIP
>>> with ServerThread(ServerConfig(index="indexes/built/scifact", port=0)) as server:
...     print(server.url)

Routes: ``POST /ai/run/@cf/baai/bge-m3`` and ``POST /client/v4/accounts/{account_id}/ai/run/@cf/baai/bge-m3``
(Workers AI), ``POST /v1/embeddings`` (OpenAI), ``POST /v1/search``, ``POST /v1/documents``,
``DELETE /v1/documents/{id}``, ``POST /v1/documents/delete``, ``POST /v1/commit``, ``GET /health``,
``GET /ready``, ``GET /metrics``, ``GET /docs`` and ``GET /openapi.json``.
"""

from __future__ import annotations

from typing import Any

from .config import ServerConfig

__all__ = ["ServerConfig", "ServerThread", "create_app", "serve"]


def __getattr__(name: str) -> Any:  # fastapi and uvicorn are imported only when a server is made
    if name == "create_app":
        from .app import create_app

        return create_app
    if name in ("ServerThread", "serve"):
        from . import runner

        return getattr(runner, name)
    raise AttributeError(name)
