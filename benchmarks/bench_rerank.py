"""Reranking SciFact through the Workers AI scoring form, against a loopback scoring server backed by MiniLM.

    python benchmarks/bench_rerank.py [--queries 300] [--live-queries 5] [--slow-queries 100]

Offline. SciFact (BEIR test split, 5,183 documents, 300 judged queries). First stage: BM25 over XLM-R tokens
(``bm25``), top 100. Reranker: :class:`~hybridsearch.rerankers.ScoringAPIReranker` sending
``{"query", "contexts"}`` requests over HTTP to a small scoring server on 127.0.0.1 (:class:`MiniLMScoringServer`,
below) whose score is the cosine of all-MiniLM-L6-v2 embeddings of the query and the context (the real Workers AI
would score with bge-m3, whose weights are not available offline). It reads requests and writes answers with the
wire contract's own code (:mod:`hybridsearch.contract.workers_ai`: the input check, the envelope, the best-first
fp16 ``{id, score}`` list); it is not ``hybridsearch serve`` because the benchmark needs what that server does not
offer: the corpus' vectors precomputed (SciFact's 5,183 abstracts take about half an hour on 2 CPUs) and a chosen
delay per call.

1. **Quality**: nDCG@10 and R@100 of BM25 alone, MiniLM dense alone, the MiniLM + BM25 hybrid (dense+sparse, RRF),
   and BM25 top-100 reranked with the scorer's score replacing the BM25 score or fused with it (RRF of the two
   orders; min-max weighted sum).
2. **Latency** per query at 100 candidates (one query per ``rerank`` call, p50 / p99), measured the same run as the
   BM25 first stage (ratio). The server keeps MiniLM vectors of the corpus texts (computed once), so this is the
   client, HTTP, JSON and query-encoding cost; ``--live-queries`` more queries run against the server encoding all
   100 contexts on every call (the scorer's real model cost on this CPU).
3. **Time budget**: the server made slow (each call delayed uniformly in [0, 2 × budget]); the share of queries
   that fall back to the BM25 order, the latency with and without the budget, and the nDCG@10 cost.

Results: ``benchmarks/results/rerank.json`` and the rerank section of ``benchmarks/README.md``.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import random
import sys
import threading
import time
import uuid
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "benchmarks"))

from _readme import replace_section  # noqa: E402

from hybridsearch.contract.workers_ai import (  # noqa: E402
    MODEL,
    Code,
    ContractError,
    bad_input,
    classify_input,
    failure,
    input_texts,
    query_output,
    success,
)
from hybridsearch.datasets import load_dataset  # noqa: E402
from hybridsearch.encoders.bm25 import BM25Encoder  # noqa: E402
from hybridsearch.encoders.minilm import MiniLMEncoder  # noqa: E402
from hybridsearch.index import HybridIndex  # noqa: E402
from hybridsearch.metrics import evaluate  # noqa: E402
from hybridsearch.rerankers import ScoringAPIReranker  # noqa: E402
from hybridsearch.types import Encoded, EncoderInfo  # noqa: E402

README_START, README_END = "<!-- rerank:start -->", "<!-- rerank:end -->"
CACHE = ROOT / ".cache" / "bench-rerank"
METRICS = ("nDCG@10", "R@100")


class MiniLMScoringServer:
    """A Workers AI scoring endpoint on ``127.0.0.1`` (``POST {base_url}/@cf/baai/bge-m3``, form A with ``query``):
    the cosine of the MiniLM embeddings of the query and each context, answered as the contract's output form 1.

    ``known`` maps texts to precomputed vectors (the corpus); with ``use_cache`` off, or for other texts, contexts
    are encoded on arrival (one lock around the model). ``delay``: a function returning seconds to wait before
    answering each call. Other forms are refused with 400 / 5006.
    """

    def __init__(self, model: MiniLMEncoder, known: dict[str, np.ndarray]) -> None:
        self.encoder, self.known = model, known
        self.delay = lambda: 0.0
        self.use_cache = True
        self._model_lock = threading.Lock()
        self._httpd: ThreadingHTTPServer | None = None

    def __enter__(self) -> MiniLMScoringServer:
        handler = type("Handler", (_Handler,), {"scorer": self})
        self._httpd = ThreadingHTTPServer(("127.0.0.1", 0), handler)
        self._httpd.daemon_threads = True
        # A client that abandons a call at its time budget closes the socket; that is expected here, not an error.
        self._httpd.handle_error = lambda request, address: None  # type: ignore[method-assign]
        threading.Thread(target=self._httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True).start()
        return self

    def __exit__(self, *exc: object) -> None:
        assert self._httpd is not None
        self._httpd.shutdown()
        self._httpd.server_close()

    @property
    def base_url(self) -> str:
        assert self._httpd is not None
        return f"http://127.0.0.1:{self._httpd.server_address[1]}/ai/run"

    def _vectors(self, texts: list[str]) -> np.ndarray:
        out = np.zeros((len(texts), self.encoder.dim), np.float32)
        todo = [i for i, t in enumerate(texts) if not (self.use_cache and t in self.known)]
        for i, t in enumerate(texts):
            if i not in todo:
                out[i] = self.known[t]
        if todo:
            with self._model_lock:
                out[todo] = self.encoder.encode_corpus([texts[i] for i in todo]).dense
        return out

    def answer(self, body: Any) -> dict[str, Any]:
        """The ``result`` for one request body; ContractError for anything but query + contexts."""
        if classify_input(body) != "A" or "query" not in body:
            raise bad_input("this scorer answers only {'query', 'contexts'} requests")
        time.sleep(self.delay())
        query, contexts = input_texts(body)
        with self._model_lock:
            q = self.encoder.encode_queries([query]).dense[0]
        return query_output(self._vectors(contexts) @ q)


class _Handler(BaseHTTPRequestHandler):
    scorer: MiniLMScoringServer
    protocol_version = "HTTP/1.1"

    def log_message(self, *args: Any) -> None:  # quiet
        pass

    def do_POST(self) -> None:
        raw = self.rfile.read(int(self.headers.get("Content-Length") or 0))
        try:
            if not self.path.endswith("/ai/run/" + MODEL):
                raise ContractError(Code.NO_ROUTE, "No route for that URI")
            try:
                body = json.loads(raw)
            except ValueError:
                raise ContractError(Code.INVALID_DATA, "Invalid data: the body is not JSON") from None
            status, out = 200, success(self.scorer.answer(body))
        except ContractError as exc:
            status, out = exc.status, failure(exc.code, exc.message)
        data = json.dumps(out).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.send_header("cf-ai-req-id", str(uuid.uuid4()))
        self.end_headers()
        self.wfile.write(data)


def pct(values: list[float], q: float) -> float:
    return float(np.percentile(np.asarray(values), q)) if values else float("nan")


def minilm_corpus(model: MiniLMEncoder, texts: list[str]) -> tuple[np.ndarray, float | None]:
    CACHE.mkdir(parents=True, exist_ok=True)
    path, meta = CACHE / "minilm-corpus.npy", CACHE / "minilm-corpus.txt"
    if path.is_file() and meta.is_file():
        fp, n, seconds = meta.read_text().split()
        if fp == model.info.fingerprint and int(n) == len(texts):
            return np.load(path), float(seconds)
    t = time.perf_counter()
    vecs = model.encode_corpus(texts, show_progress=True).dense
    dt = time.perf_counter() - t
    np.save(path, vecs)
    meta.write_text(f"{model.info.fingerprint}\n{len(texts)}\n{dt:.1f}\n")
    return vecs, dt


def rerank_each(rr: ScoringAPIReranker, queries: list[str], hits: Any) -> tuple[Any, list[float]]:
    """Rerank one query per call (a chatbot's pattern); the hits of all queries and each call's seconds."""
    from hybridsearch.hits import Hits

    parts, times = [], []
    for i, q in enumerate(queries):
        t = time.perf_counter()
        parts.append(rr.rerank([q], hits[i : i + 1]))
        times.append(time.perf_counter() - t)
    merged = Hits(
        np.concatenate([p.rows for p in parts]), np.concatenate([p.scores for p in parts]),
        np.concatenate([p.doc_ids for p in parts]), reranked=np.concatenate([p.reranked for p in parts]),
        notes=[n for p in parts for n in p.notes],
    )  # fmt: skip
    return merged, times


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--queries", type=int, default=300, help="judged test queries to use (SciFact has 300)")
    ap.add_argument("--candidates", type=int, default=100, help="BM25 candidates reranked per query")
    ap.add_argument("--live-queries", type=int, default=5, help="queries scored with contexts encoded live (0: skip)")
    ap.add_argument("--slow-queries", type=int, default=100, help="queries for the slow-scorer time-budget run (0: skip)")
    ap.add_argument("--budget", type=float, default=0.25, help="time budget (s) in the slow-scorer run")
    ap.add_argument("--no-readme", action="store_true", help="do not rewrite benchmarks/README.md")
    args = ap.parse_args()

    load_before = os.getloadavg()[0]
    ds = load_dataset("scifact")
    qids = list(ds.queries)[: args.queries]
    queries = [ds.queries[q] for q in qids]
    corpus = list(ds.corpus)
    texts = [d.contents for d in corpus]
    ids = [d.doc_id for d in corpus]
    c = args.candidates

    print(f"SciFact: {len(texts):,} documents, {len(qids)} queries; fitting BM25, MiniLM vectors ...", flush=True)
    bm25 = BM25Encoder().fit(texts)
    minilm = MiniLMEncoder(device="cpu")
    dense, encode_seconds = minilm_corpus(minilm, texts)
    sparse = bm25.encode_corpus(texts)
    info = EncoderInfo("dense=minilm,sparse=bm25", "bench", "bench", parts={"dense": minilm.info, "sparse": bm25.info})
    index = HybridIndex()
    index.add(ids, Encoded(dense=dense, sparse=sparse.sparse, encoder=info), texts=texts)
    q_sparse = bm25.encode_queries(queries).sparse
    q_dense = minilm.encode_queries(queries).dense
    q_all = Encoded(dense=q_dense, sparse=q_sparse, encoder=info)

    qrels = {q: ds.qrels[q] for q in qids if q in ds.qrels}

    def score(hits: Any) -> dict[str, float]:
        return {m: round(v, 4) for m, v in evaluate(qrels, hits.to_run(qids), METRICS).items()}

    rows: list[dict[str, Any]] = []
    t = time.perf_counter()
    first = index.search(Encoded(sparse=q_sparse, encoder=info), k=c, mode="sparse")
    bm25_ms = (time.perf_counter() - t) / len(qids) * 1e3
    first_lat = []
    for i in range(len(qids)):
        t = time.perf_counter()
        index.search(Encoded(sparse=q_sparse[i : i + 1], encoder=info), k=c, mode="sparse")
        first_lat.append(time.perf_counter() - t)
    rows.append({"run": "BM25 (XLM-R tokens) top-100", **score(first)})
    rows.append({"run": "MiniLM dense", **score(index.search(Encoded(dense=q_dense, encoder=info), k=c, mode="dense"))})
    rows.append({"run": "MiniLM + BM25 hybrid (dense+sparse, RRF)",
                 **score(index.search(q_all, k=c, mode="dense+sparse", candidates=c))})
    print(f"first stages done ({bm25_ms:.2f} ms/query BM25)", flush=True)

    known = dict(zip(texts, dense, strict=True))
    results: dict[str, Any] = {}
    with MiniLMScoringServer(minilm, known) as server:
        lat: dict[str, list[float]] = {}
        for label, combine in (("replace", "replace"), ("fused: RRF of both orders", "rrf"),
                               ("fused: min-max 0.5 / 0.5", "minmax(retrieval=0.5,rerank=0.5)")):
            rr = ScoringAPIReranker(base_url=server.base_url, combine=combine, time_budget=None)
            hits, times = rerank_each(rr, queries, first)
            lat[label] = times
            if not hits.reranked.all():
                raise SystemExit(f"the scorer failed: {next(n for n in hits.notes if n)}")
            rows.append({"run": f"BM25 top-{c} reranked, {label}", **score(hits)})
            print(f"rerank {label}: p50 {pct(times, 50) * 1e3:.1f} ms", flush=True)
            rr.close()
        rep = lat["replace"]
        results["latency"] = {
            "candidates": c, "queries": len(qids),
            "rerank_p50_ms": round(pct(rep, 50) * 1e3, 2), "rerank_p99_ms": round(pct(rep, 99) * 1e3, 2),
            "bm25_first_stage_p50_ms": round(pct(first_lat, 50) * 1e3, 3),
            "bm25_first_stage_p99_ms": round(pct(first_lat, 99) * 1e3, 3),
            "ratio_p50_rerank_over_first_stage": round(pct(rep, 50) / pct(first_lat, 50), 1),
        }  # fmt: skip

        if args.live_queries:
            server.use_cache = False
            n = min(args.live_queries, len(qids))
            rr = ScoringAPIReranker(base_url=server.base_url, time_budget=None)
            _, live = rerank_each(rr, queries[:n], first[:n])
            results["latency_live"] = {"queries": n, "p50_ms": round(pct(live, 50) * 1e3, 1), "p99_ms": round(pct(live, 99) * 1e3, 1)}
            print(f"live scoring: p50 {pct(live, 50) * 1e3:.0f} ms", flush=True)
            server.use_cache = True
            rr.close()

        if args.slow_queries:
            n = min(args.slow_queries, len(qids))
            budget = args.budget
            sub_ids = qids[:n]
            sub_qrels = {q: ds.qrels[q] for q in sub_ids if q in ds.qrels}  # averages over these queries only
            runs = {}
            for name, tb in (("no budget", None), (f"budget {budget:g} s", budget)):
                rng = random.Random(7)  # the same delays for both runs
                lock = threading.Lock()

                def delay(rng: random.Random = rng, lock: threading.Lock = lock) -> float:
                    with lock:
                        return rng.uniform(0.0, 2 * budget)

                server.delay = delay
                rr = ScoringAPIReranker(base_url=server.base_url, time_budget=tb)
                hits, times = rerank_each(rr, queries[:n], first[:n])
                nd = evaluate(sub_qrels, hits.to_run(sub_ids), ("nDCG@10",))["nDCG@10"]
                runs[name] = {
                    "degraded_share": round(float((~hits.reranked).mean()), 3), "p50_ms": round(pct(times, 50) * 1e3, 1),
                    "p99_ms": round(pct(times, 99) * 1e3, 1), "max_ms": round(max(times) * 1e3, 1), "nDCG@10": round(nd, 4),
                }  # fmt: skip
                print(f"slow scorer, {name}: {runs[name]}", flush=True)
                rr.close()
            server.delay = lambda: 0.0
            fast = evaluate(sub_qrels, first[:n].to_run(sub_ids), ("nDCG@10",))["nDCG@10"]
            results["time_budget"] = {"queries": n, "delay": f"uniform [0, {2 * budget:g}] s per call", "budget_s": budget,
                                      "bm25_nDCG@10_same_queries": round(fast, 4), "runs": runs}

    results["quality"] = rows
    results["conditions"] = {
        "date": time.strftime("%Y-%m-%d"), "machine": f"{os.cpu_count()} vCPU {platform.machine()}",
        "python": platform.python_version(), "load_average_before": round(load_before, 2),
        "load_average_after": round(os.getloadavg()[0], 2), "minilm_corpus_encode_s": encode_seconds,
    }  # fmt: skip
    out = ROOT / "benchmarks" / "results" / "rerank.json"
    out.write_text(json.dumps(results, indent=2) + "\n", encoding="utf-8")
    section = render(results)
    print(section)
    if not args.no_readme:
        replace_section(ROOT / "benchmarks" / "README.md", README_START, README_END, section)
    return 0


def render(r: dict[str, Any]) -> str:
    cond, lat = r["conditions"], r["latency"]
    lines = [
        README_START,
        "## Reranking through the Workers AI scoring form",
        "",
        f"`python benchmarks/bench_rerank.py` ({cond['date']}, {cond['machine']}, Python {cond['python']}; load average "
        f"{cond['load_average_before']} before / {cond['load_average_after']} after on a shared machine, so latencies are "
        "noisy). Raw numbers: `benchmarks/results/rerank.json`.",
        "",
        f"SciFact test ({lat['queries']} queries). First stage: BM25 over XLM-R tokens, top {lat['candidates']}. "
        "Reranker: `ScoringAPIReranker` over HTTP to a Workers AI scoring endpoint on 127.0.0.1 whose score is the "
        "cosine of all-MiniLM-L6-v2 embeddings, rounded to fp16 as Cloudflare's (a stand-in: Workers AI scores with "
        "bge-m3, unavailable offline).",
        "",
        "| run | nDCG@10 | R@100 |",
        "|---|---:|---:|",
    ]
    lines += [f"| {row['run']} | {row['nDCG@10']:.4f} | {row['R@100']:.4f} |" for row in r["quality"]]
    lines += [
        "",
        f"Reranker latency per query at {lat['candidates']} candidates (one query per call): p50 {lat['rerank_p50_ms']} ms, "
        f"p99 {lat['rerank_p99_ms']} ms; the BM25 first stage in the same run: p50 {lat['bm25_first_stage_p50_ms']} ms, "
        f"p99 {lat['bm25_first_stage_p99_ms']} ms (rerank / first stage at p50: {lat['ratio_p50_rerank_over_first_stage']}x). "
        "The server holds the corpus' MiniLM vectors, so this is the client + HTTP + JSON + query-encoding cost.",
    ]
    if "latency_live" in r:
        lv = r["latency_live"]
        lines += ["", f"With the server encoding all {lat['candidates']} contexts on every call ({lv['queries']} queries, "
                      f"MiniLM on this CPU): p50 {lv['p50_ms']} ms, p99 {lv['p99_ms']} ms."]
    if "time_budget" in r:
        tb = r["time_budget"]
        lines += [
            "",
            f"**Time budget with a slow scorer** ({tb['queries']} queries; each scoring call delayed {tb['delay']}; "
            f"BM25 alone on these queries: nDCG@10 {tb['bm25_nDCG@10_same_queries']:.4f}):",
            "",
            "| run | queries degraded | p50 ms | p99 ms | max ms | nDCG@10 |",
            "|---|---:|---:|---:|---:|---:|",
        ]
        lines += [f"| {name} | {v['degraded_share']:.1%} | {v['p50_ms']} | {v['p99_ms']} | {v['max_ms']} | {v['nDCG@10']:.4f} |"
                  for name, v in tb["runs"].items()]
        lines += ["", "A degraded query keeps the BM25 order and is marked `reranked=False` with the reason; no call raised."]
    lines.append(README_END)
    return "\n".join(lines)


if __name__ == "__main__":
    sys.exit(main())
