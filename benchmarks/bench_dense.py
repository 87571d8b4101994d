"""Benchmark of DenseIndex: single-thread query latency, recall@10, build time and bytes per vector.

::

    python benchmarks/bench_dense.py [--n 100000] [--queries 300] [--build-threads 2]

Data: ``--n`` synthetic 1024-d L2-normalised vectors shaped like sentence embeddings: a 256-d latent drawn
from 1,000 broad Gaussian clusters (spread 1.5 times the spread of the centres) and lifted to 1024-d by a fixed
random map, plus a direction shared by all vectors (the anisotropy of real embedding models) and a little
isotropic noise. A random pair has cosine about 0.31 and a query's nearest neighbour about 0.57, in the range that
sentence-embedding models show; HNSW32 reaches about 0.98 recall@10 at efSearch 64 on 20k of them, not the 1.0 that trivially
separated clusters give. Queries come from the same generator and are not in the index.

For each index type (Flat, HNSW32 at efSearch 64 and 128, SQfp16, SQ8, IVF-PQ at two nprobe values):

- **build**: ``train`` (on at most ``--train`` vectors) plus ``add`` of all vectors, with FAISS using
  ``--build-threads`` OpenMP threads;
- **latency**: one query per ``search`` call with FAISS limited to one thread, p50 / p99 over ``--queries``
  queries, k = 10; the baseline is numpy brute force (``x @ q`` + ``argpartition``) on one BLAS thread in
  the same run;
- **recall@10** against exact top-10 from numpy;
- **bytes/vector**: ``DenseIndex.nbytes / n`` (codes, links, ids; what a saved index takes on disk too).

Results go to ``benchmarks/results/dense.json`` and the dense section of ``benchmarks/README.md``.
"""

from __future__ import annotations

import os

# One BLAS thread for the numpy baseline; must be set before numpy loads its BLAS.
os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")
os.environ.setdefault("MKL_NUM_THREADS", "1")

import argparse  # noqa: E402
import json  # noqa: E402
import platform  # noqa: E402
import time  # noqa: E402
from pathlib import Path  # noqa: E402

from _readme import replace_section  # noqa: E402  # benchmarks/_readme.py
from typing import Any  # noqa: E402

import faiss  # noqa: E402
import numpy as np  # noqa: E402

from hybridsearch.index.dense import DenseIndex  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
README_START, README_END = "<!-- dense:start -->", "<!-- dense:end -->"
DIM, K = 1024, 10

# name -> (factory, constructor options, list of per-search options)
CONFIGS: dict[str, tuple[str, dict[str, Any], list[dict[str, int]]]] = {
    "Flat": ("Flat", {}, [{}]),
    "HNSW32": ("HNSW32", {}, [{"ef_search": 64}, {"ef_search": 128}]),
    "SQfp16": ("SQfp16", {}, [{}]),
    "SQ8": ("SQ8", {}, [{}]),
    "IVF-PQ": ("IVF256,PQ64", {}, [{"nprobe": 16}, {"nprobe": 64}]),
}


def synthetic(n: int, seed: int, *, latent: int = 256, clusters: int = 1000, spread: float = 1.5) -> np.ndarray:
    """Embedding-like vectors, L2-normalised, float32 ``(n, 1024)`` (see the module docstring)."""
    shared = np.random.default_rng(0)
    centers = shared.standard_normal((clusters, latent)).astype(np.float32)
    lift = (shared.standard_normal((latent, DIM)) / np.sqrt(latent)).astype(np.float32)
    common = shared.standard_normal(DIM).astype(np.float32)
    common *= 0.7 / np.linalg.norm(common)
    rng = np.random.default_rng(seed)
    out = np.empty((n, DIM), np.float32)
    for start in range(0, n, 10_000):
        m = min(10_000, n - start)
        z = centers[rng.integers(0, clusters, m)] + spread * rng.standard_normal((m, latent), dtype=np.float32)
        x = z @ lift
        x /= np.linalg.norm(x, axis=1, keepdims=True)
        x += common + (0.3 / np.sqrt(DIM)) * rng.standard_normal((m, DIM), dtype=np.float32)
        out[start : start + m] = x / np.linalg.norm(x, axis=1, keepdims=True)
    return out


def exact_top(x: np.ndarray, q: np.ndarray, k: int) -> np.ndarray:
    rows = np.empty((len(q), k), np.int64)
    for start in range(0, len(q), 64):
        s = q[start : start + 64] @ x.T
        top = np.argpartition(-s, k - 1, axis=1)[:, :k]
        order = np.argsort(-np.take_along_axis(s, top, axis=1), axis=1)
        rows[start : start + 64] = np.take_along_axis(top, order, axis=1)
    return rows


def percentiles(times: list[float]) -> dict[str, float]:
    ms = np.asarray(times) * 1e3
    return {"p50_ms": round(float(np.percentile(ms, 50)), 3), "p99_ms": round(float(np.percentile(ms, 99)), 3)}


def numpy_baseline(x: np.ndarray, q: np.ndarray) -> dict[str, Any]:
    times = []
    for i in range(len(q)):
        t0 = time.perf_counter()
        s = x @ q[i]
        top = np.argpartition(-s, K - 1)[:K]
        top[np.argsort(-s[top])]
        times.append(time.perf_counter() - t0)
    return {"name": "numpy brute force", "recall@10": 1.0, **percentiles(times)}


def run_config(name: str, x: np.ndarray, q: np.ndarray, truth: np.ndarray, args: argparse.Namespace) -> list[dict]:
    factory, options, searches = CONFIGS[name]
    index = DenseIndex(DIM, factory=factory, **options)
    faiss.omp_set_num_threads(args.build_threads)
    t0 = time.perf_counter()
    index.train(x[: args.train])
    train_s = time.perf_counter() - t0
    index.add(x, np.arange(len(x), dtype=np.int64))
    build_s = time.perf_counter() - t0
    faiss.omp_set_num_threads(1)
    index.search(q[:5], K, **searches[0])  # warm up
    out = []
    for search in searches:
        times, hits = [], []
        for i in range(len(q)):
            t = time.perf_counter()
            rows, _ = index.search(q[i : i + 1], K, **search)
            times.append(time.perf_counter() - t)
            hits.append(len(set(rows[0].tolist()) & set(truth[i].tolist())) / K)
        label = factory + "".join(f" {k.replace('_search', '')}={v}" for k, v in search.items())
        row = {
            "name": label,
            "factory": factory,
            "search": search,
            "recall@10": round(float(np.mean(hits)), 4),
            **percentiles(times),
            "build_s": round(build_s, 2),
            "train_s": round(train_s, 2),
            "bytes_per_vector": round(index.nbytes / len(index), 1),
        }
        print(
            f"{label:>18}  recall@10 {row['recall@10']:.3f}  p50 {row['p50_ms']:8.3f} ms  p99 {row['p99_ms']:8.3f} ms  "
            f"build {row['build_s']:7.1f} s  {row['bytes_per_vector']:7.1f} B/vector",
            flush=True,
        )
        out.append(row)
    return out


def readme_section(res: dict[str, Any]) -> str:
    env, params = res["environment"], res["params"]
    lines = [
        README_START,
        "## Dense index (FAISS)",
        "",
        f"`python benchmarks/bench_dense.py` ({env['when']}, {env['machine']}, faiss {env['faiss']}; load average "
        f"{env['load_before']} before / {env['load_after']} after: the machine was shared, so timings are noisy).",
        f"{params['n']:,} synthetic {DIM}-d normalised vectors (broad clusters in a 256-d latent, a shared direction, noise), "
        f"{params['queries']} queries, k = {K}. Latency: one query per call, FAISS on 1 thread, numpy on 1 BLAS thread. Build: train "
        f"(≤ {params['train']:,} vectors) + add, {params['build_threads']} FAISS threads. Recall@10 against exact "
        "search; bytes/vector from `DenseIndex.nbytes` (codes, graph links, 8-byte row ids).",
        "",
        "| index | recall@10 | p50 ms | p99 ms | build s | bytes/vector |",
        "|---|---:|---:|---:|---:|---:|",
    ]
    for r in res["results"]:
        build = "" if "build_s" not in r else f"{r['build_s']:.1f}"
        size = "" if "bytes_per_vector" not in r else f"{r['bytes_per_vector']:.0f}"
        lines.append(
            f"| {r['name']} | {r['recall@10']:.3f} | {r['p50_ms']:.2f} | {r['p99_ms']:.2f} | {build} | {size} |"
        )
    lines += ["", README_END]
    return "\n".join(lines)


def write_readme(path: Path, section: str) -> None:
    replace_section(path, README_START, README_END, section)


def main(argv: list[str] | None = None) -> dict[str, Any]:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    p.add_argument("--n", type=int, default=100_000, help="vectors in the index (default 100,000)")
    p.add_argument("--queries", type=int, default=300, help="timed queries (default 300)")
    p.add_argument("--train", type=int, default=12_800, help="training sample for SQ8 / IVF-PQ (default 12,800)")
    p.add_argument("--build-threads", type=int, default=os.cpu_count() or 1, help="FAISS threads while building")
    p.add_argument("--only", nargs="*", choices=list(CONFIGS), help="run only these index types")
    p.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results" / "dense.json")
    p.add_argument("--readme", type=Path, default=ROOT / "benchmarks" / "README.md")
    args = p.parse_args(argv)
    threads_before = faiss.omp_get_max_threads()

    load0 = round(os.getloadavg()[0], 2)
    t0 = time.perf_counter()
    x = synthetic(args.n, seed=1)
    q = synthetic(args.queries, seed=2)
    truth = exact_top(x, q, K)
    print(f"data + exact top-{K}: {time.perf_counter() - t0:.1f} s", flush=True)
    results = [numpy_baseline(x, q)]
    print(
        f"{'numpy brute force':>18}  p50 {results[0]['p50_ms']:8.3f} ms  p99 {results[0]['p99_ms']:8.3f} ms", flush=True
    )
    for name in args.only or CONFIGS:
        results += run_config(name, x, q, truth, args)
    faiss.omp_set_num_threads(threads_before)

    res = {
        "benchmark": "dense",
        "environment": {
            "when": time.strftime("%Y-%m-%d"),
            "machine": f"{os.cpu_count()} vCPU {platform.machine()}, Python {platform.python_version()}, "
            f"numpy {np.__version__}",
            "faiss": faiss.__version__,
            "load_before": load0,
            "load_after": round(os.getloadavg()[0], 2),
            "total_s": round(time.perf_counter() - t0, 1),
        },
        "params": {
            "n": args.n,
            "dim": DIM,
            "queries": args.queries,
            "k": K,
            "train": args.train,
            "build_threads": args.build_threads,
            "query_threads": 1,
        },
        "results": results,
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(res, indent=2) + "\n", encoding="utf-8")
    write_readme(args.readme, readme_section(res))
    print(f"wrote {args.out} and {args.readme} in {res['environment']['total_s']} s", flush=True)
    return res


if __name__ == "__main__":
    main()
