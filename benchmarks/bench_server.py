"""Load on ``hybridsearch serve`` over loopback: SciFact indexed with MiniLM dense + BM25 sparse.

::

    python benchmarks/bench_server.py [--clients 8] [--seconds 8] [--queries 300] [--rerank-depth 20]

The server runs in its own process (``hybridsearch serve --index DIR``, as users start it); the load comes from
this process: ``--clients`` concurrent ``httpx.AsyncClient`` loops, each sending its next request when the last
one is answered, for ``--seconds`` seconds per workload (and at most ``--max-requests``). Every workload reports
p50 and p99 latency (ms), requests per second and the error count (non-2xx answers and transport errors).

Workloads, in one run:

- ``/v1/search`` in ``dense``, ``sparse`` and ``hybrid`` (dense + sparse, RRF) mode, k = 10, SciFact test
  queries in a fixed order, with 1 client and with ``--clients`` clients;
- ``/v1/search`` hybrid with ``--clients`` clients while one more client upserts batches of 16 documents (new
  ids, SciFact texts) as fast as it can; the ingest rate (documents/s) is reported too;
- ``/v1/embeddings`` with one query text per request, the server started with micro-batching (default: up to 64
  texts; requests that arrive while the encoder is busy go together) and again with ``--no-micro-batching``;
- ``/v1/search`` hybrid with the reranker on, with 1 client and with ``--clients`` clients: a second process,
  ``hybridsearch serve --encoder minilm``, is the scoring API (Workers AI ``{query, contexts}`` form, MiniLM
  cosine), and the index server runs with ``--reranker scoring-api --reranker-url http://127.0.0.1:PORT/ai/run
  --rerank-depth 20`` (``--rerank-depth``), so each search sends its top 20 hybrid hits' texts to the scorer.
  Answers that came back 200 but not reranked (a scorer error, or the scorer missed the reranker's 5 s time
  budget) are counted as ``not_reranked``;
- in-process baseline: the same queries through the same encoder and index in this process, one at a time
  (encode only the views the mode needs + ``HybridIndex.search``; for the reranked row, a ``Retriever`` with the
  same ``ScoringAPIReranker`` calling the same scoring process), measured right after that mode's server rows,
  so the server's overhead per request is ``p50(server, 1 client) - p50(in process)`` under the same load.

The index is built once (``hybridsearch index --dataset scifact --encoder dense=minilm,sparse=bm25``) under
``--workdir`` and copied for each server, so ingest never changes the cached copy. Results go to
``benchmarks/results/server.json`` and the server section of ``benchmarks/README.md``.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx
import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from _readme import replace_section  # noqa: E402

from hybridsearch.datasets import load_dataset  # noqa: E402


def build_index(workdir: Path, docs: int | None) -> Path:
    """The SciFact index (all documents, or the first ``docs``), built once with ``hybridsearch index``."""
    from hybridsearch.cli import main

    out = workdir / ("scifact-minilm-bm25" if docs is None else f"scifact-{docs}-minilm-bm25")
    if not (out / "manifest.json").exists():
        source = ["--dataset", "scifact"]
        if docs is not None:
            subset = workdir / f"scifact-{docs}.jsonl"
            with subset.open("w", encoding="utf-8") as f:
                for d in list(load_dataset("scifact").corpus)[:docs]:
                    f.write(json.dumps({"_id": d.doc_id, "title": d.title, "text": d.text}) + "\n")
            source = ["--input", str(subset)]
        rc = main(["index", *source, "--encoder", "dense=minilm,sparse=bm25", "--out", str(out), "-q"])
        if rc:
            raise SystemExit(f"building the index failed ({rc})")
    return out


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Server:
    """``hybridsearch serve`` in a subprocess on a copy of the index (``index=None``: no index, e.g. a scorer)."""

    def __init__(self, index: Path | None, *flags: str) -> None:
        self.tmp = Path(tempfile.mkdtemp(prefix="bench-server-"))
        where: list[str] = []
        if index is not None:
            path = self.tmp / "index"
            shutil.copytree(index, path)
            where = ["--index", str(path)]
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        env = {**os.environ, "HYBRIDSEARCH_COMMIT_INTERVAL_S": "5"}
        cmd = [sys.executable, "-m", "hybridsearch.cli", "serve", *where, "--port", str(self.port), *flags]
        self.proc = subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        deadline = time.monotonic() + 300
        while True:
            if self.proc.poll() is not None:
                raise SystemExit(f"the server exited: {self.proc.stderr.read().decode()[-2000:]}")
            try:
                if httpx.get(self.url + "/ready", timeout=5).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            if time.monotonic() > deadline:
                raise SystemExit("the server was not ready after 300 s")
            time.sleep(0.2)

    def close(self) -> None:
        self.proc.send_signal(signal.SIGTERM)
        try:
            self.proc.wait(60)
        except subprocess.TimeoutExpired:
            self.proc.kill()
        shutil.rmtree(self.tmp, ignore_errors=True)


def summarize(latencies: list[float], errors: int, elapsed: float, not_reranked: int | None = None) -> dict[str, Any]:
    lat = np.array(latencies) * 1e3
    out = {
        "requests": len(latencies),
        "errors": errors,
        "qps": round(len(latencies) / elapsed, 1),
        "p50_ms": round(float(np.percentile(lat, 50)), 2) if len(lat) else None,
        "p99_ms": round(float(np.percentile(lat, 99)), 2) if len(lat) else None,
    }
    if not_reranked is not None:
        out["not_reranked"] = not_reranked
    return out


async def load(url: str, path: str, bodies: list[dict], clients: int, seconds: float, max_requests: int,
               side: Any = None, reranked: bool = False) -> dict[str, Any]:  # fmt: skip
    """``clients`` closed loops over ``bodies`` for ``seconds`` (or ``max_requests``); ``side`` runs beside them.

    ``reranked``: also count 200 answers of ``/v1/search`` that say ``"reranked": false``."""
    latencies: list[float] = []
    errors = 0
    not_reranked = 0
    counter = 0
    stop_at = time.monotonic() + seconds
    limits = httpx.Limits(max_connections=clients + 2)

    async with httpx.AsyncClient(base_url=url, timeout=60, limits=limits) as http:

        async def loop() -> None:
            nonlocal errors, counter, not_reranked
            while time.monotonic() < stop_at and counter < max_requests:
                body = bodies[counter % len(bodies)]
                counter += 1
                t0 = time.perf_counter()
                try:
                    r = await http.post(path, json=body)
                    ok = r.status_code == 200
                except httpx.TransportError:
                    ok = False
                if ok:
                    latencies.append(time.perf_counter() - t0)
                    if reranked and r.json()["reranked"] is not True:
                        not_reranked += 1
                else:
                    errors += 1

        t0 = time.monotonic()
        tasks = [asyncio.create_task(loop()) for _ in range(clients)]
        extra = asyncio.create_task(side(http, stop_at)) if side else None
        await asyncio.gather(*tasks)
        elapsed = time.monotonic() - t0
        side_result = await extra if extra else None
    out = summarize(latencies, errors, elapsed, not_reranked if reranked else None)
    if side_result is not None:
        out["side"] = side_result
    return out


def in_process(index_dir: Path, queries: list[str], mode: str, repeat: int) -> dict[str, Any]:
    from hybridsearch.encoders.stored import load_encoder
    from hybridsearch.index import HybridIndex

    encoder, index = load_encoder(index_dir), HybridIndex.load(index_dir)
    views = ("dense", "sparse") if mode == "hybrid" else (mode,)  # only what the mode needs, as the server does
    for q in queries[:5]:
        index.search(encoder.encode_queries([q], outputs=views), k=10, mode=mode)
    lat = []
    t_start = time.perf_counter()
    for q in (queries * repeat)[: max(len(queries), 1) * repeat]:
        t0 = time.perf_counter()
        index.search(encoder.encode_queries([q], outputs=views), k=10, mode=mode)
        lat.append(time.perf_counter() - t0)
    return summarize(lat, 0, time.perf_counter() - t_start)


def in_process_reranked(index_dir: Path, queries: list[str], scorer_url: str, depth: int) -> dict[str, Any]:
    """Hybrid search + the same scoring-API rerank as the server's, through a ``Retriever`` in this process."""
    from hybridsearch.encoders.stored import load_encoder
    from hybridsearch.index import HybridIndex
    from hybridsearch.rerankers import ScoringAPIReranker
    from hybridsearch.retriever import Retriever

    reranker = ScoringAPIReranker(base_url=scorer_url)
    retriever = Retriever(load_encoder(index_dir), HybridIndex.load(index_dir), reranker=reranker, rerank_depth=depth)
    try:
        for q in queries[:5]:
            retriever.retrieve(q, k=10, mode="hybrid")
        lat, not_reranked = [], 0
        t_start = time.perf_counter()
        for q in queries:
            t0 = time.perf_counter()
            hits = retriever.retrieve(q, k=10, mode="hybrid")
            lat.append(time.perf_counter() - t0)
            not_reranked += int(not bool(hits.reranked[0]))
        return summarize(lat, 0, time.perf_counter() - t_start, not_reranked)
    finally:
        reranker.close()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--clients", type=int, default=8)
    ap.add_argument("--seconds", type=float, default=8.0)
    ap.add_argument("--max-requests", type=int, default=20_000)
    ap.add_argument("--queries", type=int, default=300)
    ap.add_argument("--docs", type=int, default=None, help="index only the first DOCS SciFact documents (default: all)")
    ap.add_argument("--rerank-depth", type=int, default=20, help="hybrid hits reranked per query in the reranked rows (20)")
    ap.add_argument("--workdir", default=str(ROOT / "indexes" / "built"))
    ap.add_argument("--out", default=str(ROOT / "benchmarks" / "results" / "server.json"))
    ap.add_argument("--no-readme", action="store_true")
    args = ap.parse_args()
    load_start = os.getloadavg()[0]

    Path(args.workdir).mkdir(parents=True, exist_ok=True)
    index_dir = build_index(Path(args.workdir), args.docs)
    ds = load_dataset("scifact")
    queries = list(ds.queries.values())[: args.queries]
    corpus = list(ds.corpus)
    n_docs = len(corpus) if args.docs is None else min(args.docs, len(corpus))
    results: dict[str, Any] = {"workloads": {}, "in_process": {}}
    w = results["workloads"]

    server = Server(index_dir)
    try:
        for mode in ("dense", "sparse", "hybrid"):
            bodies = [{"query": q, "k": 10, "mode": mode} for q in queries]
            for c in (1, args.clients):
                w[f"search {mode} c={c}"] = asyncio.run(load(server.url, "/v1/search", bodies, c, args.seconds, args.max_requests))
                print(f"search {mode:7s} clients={c}: {w[f'search {mode} c={c}']}", flush=True)
            # The in-process baseline right after, under the same machine load (the idle server waits meanwhile).
            ip = results["in_process"][mode] = in_process(index_dir, queries, mode, repeat=1)
            ip["server_overhead_p50_ms"] = round(w[f"search {mode} c=1"]["p50_ms"] - ip["p50_ms"], 2)
            print(f"in process {mode}: {ip}", flush=True)

        async def ingest(http: httpx.AsyncClient, stop_at: float) -> dict[str, Any]:
            done, errors, i = 0, 0, 0
            t0 = time.monotonic()
            while time.monotonic() < stop_at:
                docs = [{"id": f"bench-{i + j}", "text": corpus[(i + j) % len(corpus)].contents} for j in range(16)]
                i += 16
                r = await http.post("/v1/documents", json={"documents": docs})
                if r.status_code == 200:
                    done += 16
                else:
                    errors += 1
            return {"documents": done, "errors": errors, "docs_per_s": round(done / (time.monotonic() - t0), 1)}

        bodies = [{"query": q, "k": 10, "mode": "hybrid"} for q in queries]
        w[f"search hybrid c={args.clients} + ingest"] = asyncio.run(
            load(server.url, "/v1/search", bodies, args.clients, args.seconds, args.max_requests, side=ingest))
        print(f"search hybrid + ingest: {w[f'search hybrid c={args.clients} + ingest']}", flush=True)

        emb = [{"input": q, "model": "@cf/baai/bge-m3"} for q in queries]
        w[f"embeddings micro-batching c={args.clients}"] = asyncio.run(load(server.url, "/v1/embeddings", emb, args.clients, args.seconds, args.max_requests))
        print(f"embeddings batched: {w[f'embeddings micro-batching c={args.clients}']}", flush=True)
    finally:
        server.close()
    server = Server(index_dir, "--no-micro-batching")
    try:
        w[f"embeddings no batching c={args.clients}"] = asyncio.run(load(server.url, "/v1/embeddings", emb, args.clients, args.seconds, args.max_requests))
        print(f"embeddings unbatched: {w[f'embeddings no batching c={args.clients}']}", flush=True)
    finally:
        server.close()

    # The reranker on: a MiniLM scoring API in its own process, called by the index server for every search.
    scorer = Server(None, "--encoder", "minilm")
    try:
        scorer_url = scorer.url + "/ai/run"
        server = Server(index_dir, "--reranker", "scoring-api", "--reranker-url", scorer_url, "--rerank-depth", str(args.rerank_depth))
        try:
            bodies = [{"query": q, "k": 10, "mode": "hybrid"} for q in queries]
            for c in (1, args.clients):
                name = f"search hybrid + rerank c={c}"
                w[name] = asyncio.run(load(server.url, "/v1/search", bodies, c, args.seconds, args.max_requests, reranked=True))
                print(f"{name}: {w[name]}", flush=True)
        finally:
            server.close()
        ip = results["in_process"]["hybrid + rerank"] = in_process_reranked(index_dir, queries, scorer_url, args.rerank_depth)
        ip["server_overhead_p50_ms"] = round(w["search hybrid + rerank c=1"]["p50_ms"] - ip["p50_ms"], 2)
        print(f"in process hybrid + rerank: {ip}", flush=True)
    finally:
        scorer.close()

    results["config"] = {
        "clients": args.clients, "seconds": args.seconds, "queries": len(queries), "documents": n_docs,
        "rerank_depth": args.rerank_depth, "reranker": "scoring-api: a second 'hybridsearch serve --encoder minilm' process",
        "encoder": "dense=minilm,sparse=bm25", "cpus": os.cpu_count(), "python": platform.python_version(),
        "machine": platform.machine(),
        "note": f"server, scorer and load generator share the machine; load average {load_start:.1f} at the start, "
                f"{os.getloadavg()[0]:.1f} at the end; ratios in one run",
    }  # fmt: skip
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(results, indent=2) + "\n", encoding="utf-8")
    if not args.no_readme:
        write_readme(results)
    print(f"wrote {out}")


def write_readme(results: dict[str, Any]) -> None:
    cfg = results["config"]
    lines = [
        "<!-- server:start -->",
        "## `hybridsearch serve` under load (loopback)",
        "",
        f"`python benchmarks/bench_server.py`: SciFact ({cfg['documents']:,} documents) indexed with {cfg['encoder']}, "
        f"server in its own process, closed-loop async clients for {cfg['seconds']:g} s per row, {cfg['queries']} "
        f"test queries, {cfg['cpus']} CPUs ({cfg['note']}). Rerank rows: `--reranker scoring-api` reranks the top "
        f"{cfg.get('rerank_depth', 20)} hybrid hits with a second `hybridsearch serve --encoder minilm` process as the "
        "Workers AI-compatible scoring API (MiniLM cosine of query and each text); \"not reranked\" counts answers "
        "that kept the first-stage order (a scorer error, or the scorer missed the 5 s time budget).",
        "",
        "| workload | requests | errors | QPS | p50 ms | p99 ms |",
        "|---|---:|---:|---:|---:|---:|",
    ]
    for name, r in results["workloads"].items():
        extra = f" (ingest {r['side']['docs_per_s']} docs/s, {r['side']['errors']} errors)" if "side" in r else ""
        extra += f" ({r['not_reranked']} not reranked)" if "not_reranked" in r else ""
        lines.append(f"| {name}{extra} | {r['requests']} | {r['errors']} | {r['qps']} | {r['p50_ms']} | {r['p99_ms']} |")
    lines += ["", "| in process (encode + search, one at a time) | QPS | p50 ms | p99 ms | server overhead at p50 (1 client) |",
              "|---|---:|---:|---:|---:|"]  # fmt: skip
    for mode, r in results["in_process"].items():
        extra = f" ({r['not_reranked']} not reranked)" if "not_reranked" in r else ""
        lines.append(f"| {mode}{extra} | {r['qps']} | {r['p50_ms']} | {r['p99_ms']} | {r['server_overhead_p50_ms']} ms |")
    lines.append("<!-- server:end -->")
    replace_section(ROOT / "benchmarks" / "README.md", "<!-- server:start -->", "<!-- server:end -->", "\n".join(lines))


if __name__ == "__main__":
    main()
