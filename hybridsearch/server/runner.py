"""Run the server: in the foreground (``hybridsearch serve``) or on a background thread (tests, benchmarks).

Both use uvicorn. On SIGINT/SIGTERM (or :meth:`ServerThread.stop`) uvicorn stops accepting connections, lets
in-flight requests finish for up to ``shutdown_timeout_s`` seconds, and then the app's shutdown finishes queued
batches and commits the index.
"""

from __future__ import annotations

import threading
import time
from typing import Any

import httpx
import uvicorn

from ..encoders.base import Encoder
from .app import create_app
from .config import ServerConfig

__all__ = ["ServerThread", "serve"]


def _uvicorn_config(app: Any, config: ServerConfig, port: int) -> uvicorn.Config:
    return uvicorn.Config(app, host=config.host, port=port, log_level="warning", lifespan="on",
                          timeout_graceful_shutdown=config.shutdown_timeout_s, access_log=False)  # fmt: skip


def serve(config: ServerConfig) -> None:
    """Serve until interrupted (blocking).

    When the model, index or reranker fails to load, the server stops and this raises that error (the command exits
    with it, instead of staying up unready).
    """
    app = create_app(config)
    server = uvicorn.Server(_uvicorn_config(app, config, config.port))
    state = app.state.server

    def stop() -> None:
        server.should_exit = True

    state.on_load_error = stop
    server.run()
    if state.load_exception is not None:
        raise state.load_exception


class ServerThread:
    """The server on ``config.host`` and a free port (``port=0``), in a daemon thread.

    >>> with ServerThread(ServerConfig(index="indexes/built/scifact")) as server:   # doctest: +SKIP
    ...     httpx.post(server.url + "/v1/search", json={"query": "cancer"}).json()
    """

    def __init__(
        self, config: ServerConfig, *, encoder: Encoder | None = None, index_encoder: Encoder | None = None, reranker: Any = None
    ) -> None:
        self.config = config
        self.app = create_app(config, encoder=encoder, index_encoder=index_encoder, reranker=reranker)
        self.server = uvicorn.Server(_uvicorn_config(self.app, config, config.port))
        self.server.install_signal_handlers = lambda: None  # type: ignore[method-assign]  # not the main thread
        self._thread = threading.Thread(target=self.server.run, name="hybridsearch-server", daemon=True)

    @property
    def state(self) -> Any:
        return self.app.state.server

    @property
    def url(self) -> str:
        sock = self.server.servers[0].sockets[0]
        return f"http://{self.config.host}:{sock.getsockname()[1]}"

    def start(self, *, ready_timeout: float = 120.0, wait_ready: bool = True) -> ServerThread:
        """Start serving; unless ``wait_ready`` is False, wait until ``/ready`` answers 200.

        Raises RuntimeError (after stopping the server) when it cannot bind or its model or index fails to load.
        """
        self._thread.start()
        deadline = time.monotonic() + ready_timeout
        while not self.server.started:
            if not self._thread.is_alive() or time.monotonic() > deadline:
                raise RuntimeError("the server did not start")
            time.sleep(0.01)
        if not wait_ready:
            return self
        headers = {"Authorization": f"Bearer {self.config.api_token}"} if self.config.api_token else {}
        while time.monotonic() < deadline:
            if self.state.load_error:
                self.stop()
                raise RuntimeError(f"the server failed to load: {self.state.load_error}")
            if httpx.get(self.url + "/ready", headers=headers, timeout=5).status_code == 200:
                return self
            time.sleep(0.02)
        self.stop()
        raise RuntimeError(f"the server was not ready after {ready_timeout:g} s")

    def stop(self, timeout: float | None = None) -> None:
        """Graceful shutdown (finish in-flight requests, drain the queue, commit), then join the thread."""
        self.server.should_exit = True
        self._thread.join(timeout if timeout is not None else self.config.shutdown_timeout_s + 30)

    def __enter__(self) -> ServerThread:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
