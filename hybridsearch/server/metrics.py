"""Prometheus metrics of one server, in its own registry (several servers can live in one process)."""

from __future__ import annotations

from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Counter, Gauge, Histogram, generate_latest

__all__ = ["CONTENT_TYPE_LATEST", "Metrics"]

_LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)
_BATCH_BUCKETS = (1, 2, 4, 8, 16, 32, 64, 128, 256, 512)


class Metrics:
    """``hybridsearch_*`` series: requests and latency per route, queue depth, encode batch sizes, index size."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        r = self.registry
        self.requests = Counter("hybridsearch_requests", "HTTP requests answered", ["method", "route", "status"], registry=r)
        self.latency = Histogram("hybridsearch_request_seconds", "HTTP request latency", ["method", "route"],
                                 buckets=_LATENCY_BUCKETS, registry=r)  # fmt: skip
        self.in_flight = Gauge("hybridsearch_requests_in_flight", "HTTP requests being answered", registry=r)
        self.queue_depth = Gauge("hybridsearch_queue_depth", "async batches queued or running", registry=r)
        self.batch_texts = Histogram("hybridsearch_encode_batch_texts", "texts per encoder call",
                                     buckets=_BATCH_BUCKETS, registry=r)  # fmt: skip
        self.batch_calls = Histogram("hybridsearch_encode_batch_calls", "requests merged into one encoder call",
                                     buckets=_BATCH_BUCKETS, registry=r)  # fmt: skip
        self.index_documents = Gauge("hybridsearch_index_documents", "documents in the served index", registry=r)
        self.uncommitted = Gauge("hybridsearch_index_uncommitted", "document changes not yet committed", registry=r)
        self.commits = Counter("hybridsearch_index_commits", "index commits written", registry=r)
        self.tokens = Counter("hybridsearch_input_tokens", "input tokens embedded", registry=r)

    def on_batch(self, n_texts: int, n_calls: int) -> None:
        self.batch_texts.observe(n_texts)
        self.batch_calls.observe(n_calls)

    def render(self) -> bytes:
        return generate_latest(self.registry)
