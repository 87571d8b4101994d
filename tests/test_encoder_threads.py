"""Encoders may be called from several threads at once (a server's worker threads, a threaded web app).

Queries and documents are truncated at different lengths, and a Hugging Face fast tokenizer keeps its padding and
truncation settings as state that each call sets: concurrent calls must not see each other's settings.
"""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest

pytestmark = pytest.mark.timeout(180)

WORDS = "the cat sat on a mat while dogs ran far across green fields of tall grass".split()


def _texts(seed: int) -> list[str]:
    rng = np.random.default_rng(seed)
    # texts of different lengths, most longer than the query limit, so that every batch is padded and truncated
    return [" ".join(rng.choice(WORDS, size=int(rng.integers(1, 60)))) for _ in range(int(rng.integers(2, 9)))]


def _encode(encoder, job):
    kind, texts = job
    if kind == "query":
        return encoder.encode_queries(texts, outputs="dense").dense
    return encoder.encode_corpus(texts, outputs="dense").dense


def _check(encoder) -> None:
    jobs = [("query" if i % 2 else "doc", _texts(i)) for i in range(64)]
    want = [_encode(encoder, j) for j in jobs]
    with ThreadPoolExecutor(8) as pool:
        got = list(pool.map(lambda j: _encode(encoder, j), jobs))
    for g, w in zip(got, want, strict=True):
        np.testing.assert_allclose(g, w, rtol=1e-4, atol=1e-5)


def test_bge_m3_concurrent_queries_and_documents_give_the_sequential_results(tiny_bge_m3_dir):
    from hybridsearch.encoders.bge_m3 import BGEM3Encoder

    _check(BGEM3Encoder(str(tiny_bge_m3_dir), device="cpu", query_max_length=8, passage_max_length=48, batch_size=4))


def test_minilm_concurrent_queries_and_documents_give_the_sequential_results():
    from hybridsearch.encoders.minilm import MiniLMEncoder

    _check(MiniLMEncoder(device="cpu", batch_size=4))


def test_server_token_counting_does_not_disturb_the_encoder(tiny_bge_m3_dir):
    """The embedding routes count tokens on the event loop while the encoder's worker thread encodes padded
    batches; with one shared tokenizer the counting calls (no padding, no truncation) broke concurrent batches."""
    from hybridsearch.encoders.bge_m3 import BGEM3Encoder
    from hybridsearch.server.model import EmbeddingModel

    encoder = BGEM3Encoder(str(tiny_bge_m3_dir), device="cpu", query_max_length=8, passage_max_length=48, batch_size=4)
    model = EmbeddingModel(encoder, name="m", max_input_tokens=48, max_request_tokens=10_000)
    jobs = [("doc", _texts(i)) for i in range(48)]
    want = [_encode(encoder, j) for j in jobs]
    long_texts = [" ".join(WORDS * 8)] * 4

    with ThreadPoolExecutor(8) as pool:
        # counting and encoding interleaved on the same threads, as a loaded server does
        futures = [(pool.submit(model.count, long_texts), pool.submit(_encode, encoder, j)) for j in jobs]
        results = [(c.result(), e.result()) for c, e in futures]
    n_tokens = len(encoder.tokenizer(long_texts[0])["input_ids"]) if hasattr(encoder, "tokenizer") else None
    for (c, g), w in zip(results, want, strict=True):
        assert len(set(c)) == 1 and (n_tokens is None or c[0] == n_tokens)
        np.testing.assert_allclose(g, w, rtol=1e-4, atol=1e-5)
