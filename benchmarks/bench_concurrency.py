"""Benchmark of searching while a writer works: snapshot overhead, latency under a concurrent writer, refresh() cost.

    python benchmarks/bench_concurrency.py [--docs 20000] [--queries 400]

Two workloads, each an index of ``--docs`` documents: ``dense`` (128-d, FAISS Flat) and ``hybrid`` (128-d dense +
sparse with 40 terms per document over a 30,000-term vocabulary, RRF fusion). Per workload, single-query search
latency (p50 and p99, ``--queries`` searches) in three conditions measured in the same run:

1. **no snapshot locking**: the published searcher with the dense part's readers-writer lock replaced by a no-op,
   the same code without the snapshot machinery's only per-search cost (the baseline);
2. **quiet**: ``index.search`` as shipped, nobody writing;
3. **concurrent writer**: the same searches while another thread adds 10 documents, upserts 5 and deletes 5
   per step (compacting every 50 steps) as fast as it can.

The conditions alternate in 8 rounds so that changes in the machine's load hit them alike; FAISS runs one
OpenMP thread (``--threads``), as single-query serving does.

``refresh()`` cost: a reader process's ``refresh()`` when nothing was committed (a ``stat``) and when a writer
committed one batch (loading the new generation, memory-mapped). Results go to ``benchmarks/results/concurrency.json``
and the concurrency section of ``benchmarks/README.md``.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import platform
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import numpy as np
import scipy.sparse as sp

from hybridsearch.index import HybridIndex
from hybridsearch.types import Encoded

try:
    from benchmarks._readme import replace_section
except ImportError:  # run as a script from benchmarks/
    from _readme import replace_section  # type: ignore[no-redef]

ROOT = Path(__file__).resolve().parents[1]
README_START, README_END = "<!-- concurrency:start -->", "<!-- concurrency:end -->"
DIM, VOCAB, TERMS = 128, 30_000, 40


def make(n: int, seed: int, sparse: bool) -> Encoded:
    rng = np.random.default_rng(seed)
    dense = rng.normal(size=(n, DIM)).astype(np.float32)
    dense /= np.linalg.norm(dense, axis=1, keepdims=True)
    s = None
    if sparse:
        cols = rng.zipf(1.3, size=(n, TERMS)) % VOCAB
        rows = np.repeat(np.arange(n), TERMS)
        m = sp.csr_matrix((rng.uniform(0.05, 1, n * TERMS).astype(np.float32), (rows, cols.ravel())), shape=(n, VOCAB))
        m.sum_duplicates()
        s = m
    return Encoded(dense=dense, sparse=s)


class _NoLock:
    @contextlib.contextmanager
    def read(self) -> Any:
        yield

    write = read


def _times(fn: Any, queries: list[Encoded]) -> list[float]:
    out = []
    for q in queries:
        t0 = time.perf_counter()
        fn(q)
        out.append(time.perf_counter() - t0)
    return out


def workload(name: str, n: int, n_queries: int, rounds: int = 8) -> dict[str, Any]:
    hybrid = name == "hybrid"
    index = HybridIndex()
    docs = make(n, 1, hybrid)
    index.add([f"d{i}" for i in range(n)], docs)
    qs = make(n_queries, 2, hybrid)
    queries = [qs[i : i + 1] for i in range(n_queries)]
    mode = "hybrid" if hybrid else "dense"

    def search(q: Encoded) -> Any:
        return index.search(q, k=10, mode=mode)

    for q in queries[:20]:  # warm up (numba compilation, caches)
        search(q)
    view = index.searcher()
    unlocked = view._dense.snapshot() if view._dense is not None else None  # type: ignore[union-attr]
    if unlocked is not None:
        unlocked._lock = _NoLock()  # type: ignore[assignment]
    import copy

    bare = copy.copy(view)
    bare._dense = unlocked  # type: ignore[assignment]
    out: dict[str, Any] = {"docs": n, "mode": mode}
    stop = threading.Event()
    steps = [0]

    def writer() -> None:
        nxt = n + 10_000_000 * steps[0]
        rng = np.random.default_rng(3)
        while not stop.is_set():
            new = [f"w{nxt + j}" for j in range(10)]
            nxt += 10
            index.add(new, make(10, nxt, hybrid))
            live = index.searcher().doc_ids()
            pick = list(rng.choice(live, 10, replace=False))
            index.upsert(pick[:5], make(5, nxt + 1, hybrid))
            index.delete(pick[5:])
            steps[0] += 1
            if steps[0] % 50 == 0:
                index.compact()

    # The three conditions alternate in rounds, so that drift in the machine's load hits them alike.
    times: dict[str, list[float]] = {"no_snapshot_lock": [], "quiet": [], "concurrent_writer": []}
    per_round = max(1, len(queries) // rounds)
    for r in range(rounds):
        chunk = queries[r * per_round : (r + 1) * per_round]
        times["no_snapshot_lock"] += _times(lambda q: bare.search(q, k=10, mode=mode), chunk)
        times["quiet"] += _times(search, chunk)
        stop.clear()
        t = threading.Thread(target=writer)
        t.start()
        try:
            time.sleep(0.05)  # the writer is under way
            times["concurrent_writer"] += _times(search, chunk)
        finally:
            stop.set()
            t.join()
    for key, ts in times.items():
        ms = np.array(ts) * 1e3
        out[key] = {"p50_ms": float(np.percentile(ms, 50)), "p99_ms": float(np.percentile(ms, 99)), "n": len(ts)}
    out["writer_steps"] = steps[0]
    out["ratio_quiet_vs_no_lock_p50"] = out["quiet"]["p50_ms"] / out["no_snapshot_lock"]["p50_ms"]
    out["ratio_writer_vs_quiet_p50"] = out["concurrent_writer"]["p50_ms"] / out["quiet"]["p50_ms"]
    out["ratio_writer_vs_quiet_p99"] = out["concurrent_writer"]["p99_ms"] / out["quiet"]["p99_ms"]
    return out


def refresh_cost(n: int, rounds: int) -> dict[str, Any]:
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "ix"
        writer = HybridIndex()
        writer.add([f"d{i}" for i in range(n)], make(n, 1, True))
        writer.save(path)
        reader = HybridIndex.load(path)
        unchanged, changed = [], []
        for r in range(rounds):
            t0 = time.perf_counter()
            assert reader.refresh() is False
            unchanged.append(time.perf_counter() - t0)
            writer.add([f"n{r}-{j}" for j in range(10)], make(10, 100 + r, True))
            writer.save()
            t0 = time.perf_counter()
            assert reader.refresh() is True
            changed.append(time.perf_counter() - t0)
        u, c = np.array(unchanged) * 1e3, np.array(changed) * 1e3
        return {
            "docs": n,
            "rounds": rounds,
            "unchanged": {"p50_ms": float(np.percentile(u, 50)), "p99_ms": float(np.percentile(u, 99))},
            "after_commit": {"p50_ms": float(np.percentile(c, 50)), "p99_ms": float(np.percentile(c, 99))},
        }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--docs", type=int, default=20_000)
    parser.add_argument("--queries", type=int, default=400)
    parser.add_argument("--refresh-rounds", type=int, default=20)
    parser.add_argument("--threads", type=int, default=1, help="FAISS OpenMP threads (1: single-query latency)")
    parser.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results" / "concurrency.json")
    args = parser.parse_args()
    import faiss

    faiss.omp_set_num_threads(args.threads)
    results: dict[str, Any] = {
        "machine": {"platform": platform.platform(), "cpus": os.cpu_count(), "python": platform.python_version(),
                    "faiss_threads": args.threads},
        "workloads": {name: workload(name, args.docs, args.queries) for name in ("dense", "hybrid")},
        "refresh": refresh_cost(args.docs, args.refresh_rounds),
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(results, indent=2) + "\n", encoding="utf-8")
    lines = [README_START, "## Concurrency: snapshots, a concurrent writer, refresh()", "",
             f"`python benchmarks/bench_concurrency.py --docs {args.docs} --queries {args.queries}` "
             f"({results['machine']['cpus']} CPUs, shared with other jobs while measured).", "",
             "| workload | no snapshot lock p50 / p99 ms | quiet p50 / p99 ms | with writer p50 / p99 ms | "
             "quiet / no lock (p50) | writer / quiet (p50) | writer steps |", "|---|---|---|---|---|---|---|"]
    for name, w in results["workloads"].items():
        a, b, c = w["no_snapshot_lock"], w["quiet"], w["concurrent_writer"]
        lines.append(f"| {name} | {a['p50_ms']:.2f} / {a['p99_ms']:.2f} | {b['p50_ms']:.2f} / {b['p99_ms']:.2f} | "
                     f"{c['p50_ms']:.2f} / {c['p99_ms']:.2f} | {w['ratio_quiet_vs_no_lock_p50']:.2f} | "
                     f"{w['ratio_writer_vs_quiet_p50']:.2f} | {w['writer_steps']} |")
    r = results["refresh"]
    lines += ["", f"`refresh()` on {r['docs']:,} documents: {r['unchanged']['p50_ms']:.3f} / "
              f"{r['unchanged']['p99_ms']:.3f} ms (p50 / p99) when nothing was committed, "
              f"{r['after_commit']['p50_ms']:.1f} / {r['after_commit']['p99_ms']:.1f} ms after a commit "
              "(loads the new generation, memory-mapped, CRC-checked).", README_END]
    replace_section(ROOT / "benchmarks" / "README.md", README_START, README_END, "\n".join(lines))
    print("\n".join(lines))


if __name__ == "__main__":
    main()
