"""MicroBatcher: a lone call goes at once; calls arriving while the encoder is busy go together when it is free."""

from __future__ import annotations

import asyncio
import threading

import numpy as np
import pytest

from hybridsearch.server.batcher import MicroBatcher

pytestmark = pytest.mark.timeout(60)


class Gated:
    """The tiny bge-m3 encoder, held inside each encode call until the test opens the gate."""

    def __init__(self, encoder) -> None:
        self.encoder = encoder
        self.gate = threading.Event()
        self.entered = threading.Semaphore(0)

    def encode_queries(self, texts, outputs):
        self.entered.release()
        assert self.gate.wait(30), "the test never opened the gate"
        return self.encoder.encode_queries(texts, outputs=outputs)

    encode_corpus = encode_queries


async def _entered(gated: Gated) -> None:
    assert await asyncio.to_thread(gated.entered.acquire, True, 30), "the encoder was never called"


def test_calls_arriving_while_busy_are_merged_and_a_lone_call_goes_at_once(tiny_bge_m3_encoder):
    gated = Gated(tiny_bge_m3_encoder)
    batches: list[tuple[int, int]] = []
    batcher = MicroBatcher(gated, max_texts=64, on_batch=lambda n, c: batches.append((n, c)))  # max_wait 0

    async def scenario():
        first = asyncio.ensure_future(batcher.encode(["alone"], is_query=True, outputs=("dense",)))
        await _entered(gated)  # the first call went alone, with no wait: the encoder is now busy
        texts = [f"query {i}" for i in range(5)]
        rest = [asyncio.ensure_future(batcher.encode([t], is_query=True, outputs=("dense",))) for t in texts]
        await asyncio.sleep(0.05)
        assert batches == [(1, 1)]  # the five wait for the encoder, not for a timer
        gated.gate.set()
        out = await asyncio.gather(first, *rest)
        return texts, out

    try:
        texts, out = asyncio.run(scenario())
    finally:
        gated.gate.set()
        batcher.close()
    assert batches == [(1, 1), (5, 5)]
    want = tiny_bge_m3_encoder.encode_queries(["alone", *texts], outputs=("dense",)).dense
    got = np.vstack([o.dense for o in out])
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-6)


def test_max_wait_gathers_company_for_a_call_that_finds_the_encoder_idle(tiny_bge_m3_encoder):
    gated = Gated(tiny_bge_m3_encoder)
    gated.gate.set()
    batches: list[tuple[int, int]] = []
    batcher = MicroBatcher(gated, max_texts=64, max_wait=0.5, on_batch=lambda n, c: batches.append((n, c)))

    async def scenario():
        calls = [asyncio.ensure_future(batcher.encode([f"q{i}"], is_query=True, outputs=("dense",))) for i in range(3)]
        return await asyncio.gather(*calls)

    try:
        asyncio.run(scenario())
    finally:
        batcher.close()
    assert batches == [(3, 3)]


def test_an_encoder_failure_reaches_every_call_of_its_batch_and_the_next_batch_still_runs(tiny_bge_m3_encoder):
    gated = Gated(tiny_bge_m3_encoder)
    batcher = MicroBatcher(gated, max_texts=64)

    async def scenario():
        first = asyncio.ensure_future(batcher.encode(["ok"], is_query=True, outputs=("dense",)))
        await _entered(gated)
        bad = [asyncio.ensure_future(batcher.encode(["x"], is_query=True, outputs=("no-such-view",))) for _ in range(2)]
        good = asyncio.ensure_future(batcher.encode(["fine"], is_query=True, outputs=("dense",)))
        await asyncio.sleep(0.05)
        gated.gate.set()
        await first
        errors = await asyncio.gather(*bad, return_exceptions=True)
        return errors, await good

    try:
        errors, good = asyncio.run(scenario())
    finally:
        gated.gate.set()
        batcher.close()
    assert all(isinstance(e, Exception) for e in errors)
    assert good.dense.shape[0] == 1


def test_queries_go_between_chunks_of_a_long_ingest(tiny_bge_m3_encoder):
    """A query that arrives while documents are encoded waits for one chunk, not for the whole ingest call."""
    gated = Gated(tiny_bge_m3_encoder)
    order: list[tuple[int, int]] = []
    batcher = MicroBatcher(gated, max_texts=64, doc_chunk=4, on_batch=lambda n, c: order.append((n, c)))
    docs = [f"document number {i} about cats" for i in range(12)]

    async def scenario():
        ingest = asyncio.ensure_future(batcher.encode(docs, is_query=False, outputs=("dense",)))
        await _entered(gated)  # the first chunk of 4 documents is in the encoder
        query = asyncio.ensure_future(batcher.encode(["a query"], is_query=True, outputs=("dense",)))
        await asyncio.sleep(0.05)
        gated.gate.set()
        q = await query
        assert not ingest.done()  # the query was answered before the last chunks of the ingest
        return await ingest, q

    try:
        enc_docs, enc_query = asyncio.run(scenario())
    finally:
        gated.gate.set()
        batcher.close()
    assert order == [(4, 1), (1, 1), (4, 1), (4, 1)]
    np.testing.assert_allclose(
        enc_docs.dense, tiny_bge_m3_encoder.encode_corpus(docs, outputs=("dense",)).dense, rtol=1e-5, atol=1e-6
    )
    np.testing.assert_allclose(
        enc_query.dense, tiny_bge_m3_encoder.encode_queries(["a query"], outputs=("dense",)).dense, rtol=1e-5, atol=1e-6
    )


def test_waiting_queries_go_before_waiting_documents(tiny_bge_m3_encoder):
    gated = Gated(tiny_bge_m3_encoder)
    order: list[tuple[int, int]] = []
    batcher = MicroBatcher(gated, max_texts=64, doc_chunk=8, on_batch=lambda n, c: order.append((n, c)))

    async def scenario():
        first = asyncio.ensure_future(batcher.encode(["busy"], is_query=True, outputs=("dense",)))
        await _entered(gated)
        docs = asyncio.ensure_future(batcher.encode(["d1", "d2"], is_query=False, outputs=("dense",)))
        await asyncio.sleep(0.01)
        queries = [
            asyncio.ensure_future(batcher.encode([f"q{i}"], is_query=True, outputs=("dense",))) for i in range(3)
        ]
        await asyncio.sleep(0.05)
        gated.gate.set()
        await asyncio.gather(first, docs, *queries)

    try:
        asyncio.run(scenario())
    finally:
        gated.gate.set()
        batcher.close()
    assert order == [(1, 1), (3, 3), (2, 1)]  # the documents arrived first but waited for the queries
