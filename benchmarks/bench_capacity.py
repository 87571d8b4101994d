"""Capacity table: bytes per document per view, encode throughput, search latency per shard size, and projections.

Measured here (this machine): the bytes each index part stores per document at bge-m3's shapes (1024-d dense in
FAISS ``Flat``/``HNSW32``/``SQ8``; sparse postings at SciFact's real XLM-R term counts; 1024-d token vectors per
compression, at SciFact's real token counts; texts and metadata), and hybrid search latency (p50 and p99, one
query per call) of one shard at several sizes, with the dense+sparse single-view latencies as same-run baselines.

Read from result files (measured elsewhere, named in the table): encode throughput of bge-m3 from
``benchmarks/bench_encode.py`` runs (``encode_<device>*.json``: GPU figures from a GPU machine, CPU figures per
core). Nothing is invented: a figure with no result file is reported as missing.

Projections for 1M / 10M / 100M passages: encode hours (one GPU; CPU core-hours), bytes per view, shard counts for
a RAM budget per shard, and hybrid latency at that shard size (a line fitted to the measured sizes: the exact
dense scan is linear in the shard size; marked as extrapolated).

    python benchmarks/bench_capacity.py                              # sizes 5000 20000 50000
    python benchmarks/bench_capacity.py --sizes 5000 20000 --encode-results benchmarks/results other/results

Writes ``benchmarks/results/capacity.json`` and the capacity section of ``benchmarks/README.md``.
"""

from __future__ import annotations

import argparse
import glob
import json
import math
import os
import platform
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))

DIM = 1024  # bge-m3 dense and token-vector width
MAX_TOKENS = 512  # bge-m3 passage_max_length default
START, END = "<!-- capacity:start -->", "<!-- capacity:end -->"


def _pct(xs: list[float]) -> dict[str, float]:
    a = np.asarray(xs) * 1e3
    return {"p50_ms": round(float(np.percentile(a, 50)), 3), "p99_ms": round(float(np.percentile(a, 99)), 3)}


def scifact_terms() -> dict[str, Any]:
    """Real XLM-R token statistics of SciFact passages (title + abstract), and BM25 sparse vectors over them."""
    from hybridsearch.datasets import load_dataset
    from hybridsearch.encoders.bm25 import BM25Encoder

    ds = load_dataset("scifact")
    texts = [d.contents for d in ds.corpus]
    enc = BM25Encoder()
    ids, offsets = enc.analyzer.token_ids(texts)
    lengths = np.minimum(np.diff(offsets), MAX_TOKENS - 2)
    docs = enc.fit_encode_corpus(texts)
    queries = enc.encode_queries(list(ds.queries.values()))
    return {"texts": texts, "ids": [d.doc_id for d in ds.corpus], "sparse": docs.sparse, "queries": queries.sparse,
            "mean_tokens": float(lengths.mean()), "mean_unique_tokens": float(np.diff(docs.sparse.indptr).mean())}


def bytes_per_view(t: dict[str, Any]) -> dict[str, Any]:
    from hybridsearch.index.dense import DenseIndex
    from hybridsearch.index.docstore import DocStore, encode_metadata
    from hybridsearch.index.filters import build_columns
    from hybridsearch.index.multivector import MultiVectorStore
    from hybridsearch.index.sparse import SparseIndex

    rng = np.random.default_rng(0)
    n = 5000
    x = rng.normal(size=(n, DIM)).astype(np.float32)
    x /= np.linalg.norm(x, axis=1, keepdims=True)
    dense = {}
    for factory in ("Flat", "HNSW32", "SQ8"):
        ix = DenseIndex(DIM, factory=factory)
        ix.add(x, np.arange(n, dtype=np.int64))
        dense[factory] = round(ix.nbytes / n, 1)
    sp_ix = SparseIndex(t["sparse"].shape[1])
    m = t["sparse"]
    sp_ix.add(m, np.arange(m.shape[0], dtype=np.int64))
    tokens = t["mean_tokens"] + 1  # bge-m3 keeps one vector per token after <s>, </s> included
    mv = {}
    for comp, pool in (("fp16", 1), ("int8", 1), ("binary", 1), ("binary", 2)):
        store = MultiVectorStore(DIM, compression=comp, pool_factor=pool)
        mv[comp + (f"+pool{pool}" if pool > 1 else "")] = round(store.bytes_per_passage(int(round(tokens))) + 16, 1)
    docs = DocStore()
    metas = [{"title": tx[:60]} for tx in t["texts"]]
    docs.append(np.arange(len(t["texts"]), dtype=np.int64), t["ids"], t["texts"], encode_metadata(metas), build_columns(metas))
    return {
        "dense_bytes_per_doc": dense,
        "sparse_bytes_per_doc": round(sp_ix.nbytes / m.shape[0], 1),
        "sparse_bytes_per_nnz": round(sp_ix.nbytes / m.nnz, 2),
        "sparse_nnz_per_doc": round(t["mean_unique_tokens"], 1),
        "multivector_bytes_per_doc": mv,
        "multivector_tokens_per_doc": round(tokens, 1),
        "docs_bytes_per_doc": round(docs.nbytes / len(t["texts"]), 1),
        "note": "SciFact passages (title + abstract); bge-m3 sparse nnz = unique XLM-R tokens per passage",
    }


def latency(t: dict[str, Any], sizes: list[int], n_queries: int) -> list[dict[str, Any]]:
    from hybridsearch.index import HybridIndex
    from hybridsearch.types import Encoded

    rng = np.random.default_rng(1)
    base = t["sparse"]
    q_sparse = t["queries"][:n_queries]
    qd = rng.normal(size=(q_sparse.shape[0], DIM)).astype(np.float32)
    qd /= np.linalg.norm(qd, axis=1, keepdims=True)
    out = []
    for size in sizes:
        index = HybridIndex()
        for start in range(0, size, 5000):
            stop = min(start + 5000, size)
            d = rng.normal(size=(stop - start, DIM)).astype(np.float32)
            d /= np.linalg.norm(d, axis=1, keepdims=True)
            rows = np.arange(start, stop) % base.shape[0]
            index.add([f"d{i}" for i in range(start, stop)], Encoded(dense=d, sparse=base[rows]))
        res: dict[str, Any] = {"documents": size}
        for mode in ("dense", "sparse", "hybrid"):
            times = []
            for i in range(q_sparse.shape[0]):
                q = Encoded(dense=qd[i : i + 1], sparse=q_sparse[i : i + 1])
                t0 = time.perf_counter()
                index.search(q, k=10, mode=mode, candidates=100)
                times.append(time.perf_counter() - t0)
            res[mode] = _pct(times)
        res["hybrid_over_dense_p50"] = round(res["hybrid"]["p50_ms"] / res["dense"]["p50_ms"], 2)
        out.append(res)
        del index
    return out


def encode_figures(dirs: list[str]) -> list[dict[str, Any]]:
    found = []
    for d in dirs:
        for path in sorted(glob.glob(os.path.join(d, "encode_*.json"))):
            r = json.loads(Path(path).read_text(encoding="utf-8"))
            threads = r.get("threads") or r.get("torch_threads") or r.get("cpu_threads")
            row = {"file": os.path.relpath(path, ROOT) if path.startswith(str(ROOT)) else path,
                   "device": r.get("device"), "where": r.get("device_name") or r.get("machine") or r.get("cpu") or "?",
                   "date": r.get("date"), "dtype": r.get("dtype"), "batch_size": r.get("batch_size"),
                   "passages_per_s": r.get("passages_per_s"), "tokens_per_s": r.get("tokens_per_s"),
                   "mean_tokens_per_passage": r.get("mean_tokens_per_passage")}
            if r.get("device") == "cpu" and threads:
                row["threads"] = threads
                row["passages_per_s_per_core"] = r["passages_per_s"] / threads
            found.append(row)
    return found


def project(bpv: dict[str, Any], lat: list[dict[str, Any]], enc: list[dict[str, Any]], shard_gib: float) -> list[dict[str, Any]]:
    gpu = max((e for e in enc if e["device"] == "cuda" and e.get("passages_per_s")), key=lambda e: e["passages_per_s"], default=None)
    cpu = max((e for e in enc if e["device"] == "cpu" and e.get("passages_per_s_per_core")),
              key=lambda e: e["passages_per_s_per_core"], default=None)
    per_doc = {
        "dense (Flat fp32)": bpv["dense_bytes_per_doc"]["Flat"], "sparse": bpv["sparse_bytes_per_doc"],
        "multivector (binary)": bpv["multivector_bytes_per_doc"]["binary"], "texts+metadata": bpv["docs_bytes_per_doc"],
    }
    total = sum(per_doc.values())
    # latency = a + b * documents, fitted on the measured sizes (the exact dense scan grows linearly; the fixed part
    # is per-query overhead)
    sizes = np.array([r["documents"] for r in lat], float)
    p50 = np.array([r["hybrid"]["p50_ms"] for r in lat], float)
    slope, intercept = np.polyfit(sizes, p50, 1) if sizes.size > 1 else (p50[0] / sizes[0], 0.0)
    slope, intercept = max(float(slope), 0.0), max(float(intercept), 0.0)
    rows = []
    for n in (1_000_000, 10_000_000, 100_000_000):
        shards = max(1, math.ceil(n * total / (shard_gib * 2**30)))
        per_shard = n / shards
        rows.append({
            "passages": n,
            "encode_hours_1_gpu": None if gpu is None else round(n / gpu["passages_per_s"] / 3600, 2),
            "encode_core_hours_cpu": None if cpu is None else round(n / cpu["passages_per_s_per_core"] / 3600, 1),
            "gib_per_view": {k: round(n * v / 2**30, 1) for k, v in per_doc.items()},
            "gib_total": round(n * total / 2**30, 1),
            "shards": shards,
            "docs_per_shard": int(per_shard),
            "hybrid_p50_ms_per_shard_extrapolated": round(intercept + slope * per_shard, 1),
        })
    return rows


def write_readme(res: dict[str, Any]) -> None:
    from _readme import replace_section

    b = res["bytes"]
    lines = [START, "## Capacity (`bench_capacity.py`)", "",
             f"Measured on {res['environment']['machine']} ({res['environment']['when']}, load average "
             f"{res['environment']['load_average_start']:.1f} at start: the machine was shared, so latencies are upper bounds).",
             "", "Bytes per document per view (bge-m3 shapes, SciFact passages: "
             f"{b['multivector_tokens_per_doc']} token vectors, {b['sparse_nnz_per_doc']} sparse terms per passage):", "",
             "| view | storage | bytes / doc |", "|---|---|---:|"]
    lines += [f"| dense | FAISS {k} | {v:,.0f} |" for k, v in b["dense_bytes_per_doc"].items()]
    lines += [f"| sparse | postings ({b['sparse_bytes_per_nnz']} B / term) | {b['sparse_bytes_per_doc']:,.0f} |"]
    lines += [f"| multivector | {k} | {v:,.0f} |" for k, v in b["multivector_bytes_per_doc"].items()]
    lines += [f"| texts + metadata | doc store | {b['docs_bytes_per_doc']:,.0f} |", ""]
    lines += ["Encode throughput of bge-m3 (read from result files; where each was measured):", "",
              "| where | device | dtype | batch | passages/s | per core | file |", "|---|---|---|---:|---:|---:|---|"]
    for e in res["encode"]:
        per_core = f"{e['passages_per_s_per_core']:.2f}" if e.get("passages_per_s_per_core") else ""
        lines.append(f"| {e['where']} ({e['date']}) | {e['device']} | {e['dtype']} | {e['batch_size']} | "
                     f"{e['passages_per_s']:.2f} | {per_core} | {e['file']} |")
    if not res["encode"]:
        lines.append("| (no encode result file found) | | | | | | |")
    lines += ["", "Search latency of one shard (1024-d Flat dense + sparse, k=10, 100 candidates, one query per call):", "",
              "| documents | dense p50 / p99 ms | sparse p50 / p99 ms | hybrid p50 / p99 ms | hybrid / dense |",
              "|---:|---:|---:|---:|---:|"]
    for r in res["latency"]:
        lines.append(f"| {r['documents']:,} | {r['dense']['p50_ms']} / {r['dense']['p99_ms']} | {r['sparse']['p50_ms']} / "
                     f"{r['sparse']['p99_ms']} | {r['hybrid']['p50_ms']} / {r['hybrid']['p99_ms']} | {r['hybrid_over_dense_p50']} |")
    lines += ["", f"Projection (dense Flat fp32 + sparse + binary multi-vectors + texts; shards of {res['shard_gib']} GiB RAM; "
              "latency from a line fitted to the measured shard sizes; exact Flat search, HNSW is far faster at these sizes):", "",
              "| passages | encode h (1 GPU) | encode core-h (CPU) | GiB total | shards | docs / shard | hybrid p50 ms / shard (extrap.) |",
              "|---:|---:|---:|---:|---:|---:|---:|"]
    for p in res["projection"]:
        gpu_h = "no GPU result" if p["encode_hours_1_gpu"] is None else p["encode_hours_1_gpu"]
        cpu_h = "no CPU result" if p["encode_core_hours_cpu"] is None else p["encode_core_hours_cpu"]
        lines.append(f"| {p['passages']:,} | {gpu_h} | {cpu_h} | {p['gib_total']:,} | "
                     f"{p['shards']} | {p['docs_per_shard']:,} | {p['hybrid_p50_ms_per_shard_extrapolated']} |")
    lines += ["", END]
    replace_section(ROOT / "benchmarks" / "README.md", START, END, "\n".join(lines))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--sizes", type=int, nargs="+", default=[5000, 20000, 50000], help="shard sizes to time")
    ap.add_argument("--queries", type=int, default=200, help="queries per size (SciFact test queries)")
    ap.add_argument("--encode-results", nargs="+", default=[str(ROOT / "benchmarks" / "results")],
                    help="folders holding encode_*.json from bench_encode.py")
    ap.add_argument("--shard-gib", type=float, default=64.0, help="RAM budget per shard for the projection")
    ap.add_argument("--out", default=str(ROOT / "benchmarks" / "results" / "capacity.json"))
    ap.add_argument("--no-readme", action="store_true")
    args = ap.parse_args()
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    t0 = time.perf_counter()
    load0 = os.getloadavg()[0]
    terms = scifact_terms()
    res: dict[str, Any] = {"benchmark": "capacity"}
    res["bytes"] = bytes_per_view(terms)
    res["latency"] = latency(terms, sorted(args.sizes), args.queries)
    res["encode"] = encode_figures(args.encode_results)
    res["shard_gib"] = args.shard_gib
    res["projection"] = project(res["bytes"], res["latency"], res["encode"], args.shard_gib)
    res["environment"] = {"when": time.strftime("%Y-%m-%d"), "machine": f"{os.cpu_count()} vCPU {platform.machine()}, "
                          f"Python {platform.python_version()}, numpy {np.__version__}", "load_average_start": load0,
                          "load_average_end": os.getloadavg()[0], "total_s": round(time.perf_counter() - t0, 1)}
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(res, indent=1) + "\n", encoding="utf-8")
    if not args.no_readme:
        write_readme(res)
    print(json.dumps({k: res[k] for k in ("bytes", "latency", "projection")}, indent=1))


if __name__ == "__main__":
    main()
