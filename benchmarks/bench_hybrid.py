"""Hybrid (dense + sparse, RRF) top-10 against the embedded engines: milvus-lite and qdrant-client local mode.

::

    python benchmarks/bench_hybrid.py [--n 100000] [--queries 1000] [--milvus-queries 100] [--qdrant-queries 30]
    python benchmarks/bench_hybrid.py --quick        # 20,000 documents, fewer queries: a fast check

The same documents and queries go to three systems in one process, and each computes the same thing: the top
``--candidates`` (100) rows by dense inner product and by sparse inner product, fused by reciprocal rank fusion
with k = 60 (1 / (60 + 1-based rank)), top 10 returned.

- **ours**: :class:`hybridsearch.index.HybridIndex` (``dense_factory="Flat"``, exact), ``search(mode="hybrid",
  candidates=100, fusion="rrf")``, one query per call, FAISS, BLAS and numba on one thread;
- **milvus-lite** (through ``pymilvus.MilvusClient`` on a local ``.db`` path): ``FLOAT_VECTOR`` with a ``FLAT``
  index, metric IP; ``SPARSE_FLOAT_VECTOR`` with ``SPARSE_INVERTED_INDEX``, metric IP; ``hybrid_search`` with two
  ``AnnSearchRequest`` of limit 100 and ``RRFRanker(60)``;
- **qdrant-client local mode** (``QdrantClient(":memory:")``): a named dense vector with distance DOT
  (inner product; the vectors are normalised), a named sparse vector, and ``query_points`` with two ``Prefetch``
  of limit 100 fused by ``RrfQuery(rrf=Rrf(k=61))``: Qdrant counts ranks from 0 and scores
  ``1 / (k + rank0)``, so its k = 61 is everyone else's k = 60 (its ``FusionQuery(fusion=Fusion.RRF)`` default,
  k = 2, would fuse differently).

The engines run with their default thread settings (2 cores here); ours is held to one thread while it answers
queries, so the ratios are conservative. Secondary rows: ours with ``HNSW32`` and milvus-lite with ``HNSW``
(M = 32, efConstruction = 40, ef = 128 on both), with recall@10 against the exact hybrid top 10.

Agreement: every system's top 10 is compared with an exact numpy/scipy reference of the same fusion
(``overlap@10``). RRF gives exact ties (a row ranked r by one list only ties with another ranked r by the other
list only) that each system breaks its own way, so ``overlap@10 (ties)`` also counts a returned row as agreeing
when its reference fused score equals the reference's 10th score.

Data (deterministic seeds): ``--n`` documents with 1024-d L2-normalised float32 dense vectors (1,000 broad Gaussian
clusters in a 256-d latent, lifted to 1024-d, plus isotropic noise) and sparse vectors from the reference workload
``shared/bench/synth.py`` (``make_corpus``). Query ``i`` is a perturbed document (dense, cosine about 0.8 to it)
plus ``make_queries`` row ``i`` with that document's 4 heaviest sparse terms added, so the two lists overlap as
they do for real text. Encoding is excluded everywhere: every system gets precomputed vectors, and queries are
converted to each client's input types before the clock starts.

Ingest: documents per second for precomputed vectors. Ours (Flat): ``add`` in batches of ``--batch`` and in one
call, each alone and with ``save``; milvus-lite: ``insert`` in batches + ``flush`` + its background index builds
(persisted and indexed); qdrant: ``upsert`` into ``:memory:``, and separately into ``QdrantClient(path=...)`` on
the first documents only (``--qdrant-path-docs``, at most ``--qdrant-path-seconds``): with a path, local mode
commits every point to SQLite on its own, so it ingests at the disk's sync rate (tens to hundreds of points per
second on a cloud disk), far beyond this benchmark's time budget for the whole corpus. Queries run the same in
both qdrant modes (the points live in the same in-memory arrays). For ours Flat the dense and sparse first stages
are also timed alone. Results go to ``benchmarks/results/hybrid.json`` and the hybrid section of
``benchmarks/README.md``.
"""

from __future__ import annotations

import os

# Numba reads its thread count at import; our sparse kernels are single-threaded anyway.
os.environ.setdefault("NUMBA_NUM_THREADS", "1")
# milvus-lite serves pymilvus over gRPC on 127.0.0.1; keep gRPC's keepalive chatter off the console.
os.environ.setdefault("GRPC_VERBOSITY", "NONE")

import argparse  # noqa: E402
import gc  # noqa: E402
import importlib.util  # noqa: E402
import json  # noqa: E402
import logging  # noqa: E402
import platform  # noqa: E402
import shutil  # noqa: E402
import tempfile  # noqa: E402
import time  # noqa: E402
import warnings  # noqa: E402
from collections.abc import Callable, Iterator  # noqa: E402
from contextlib import contextmanager  # noqa: E402
from importlib import metadata  # noqa: E402
from pathlib import Path  # noqa: E402

from _readme import replace_section  # noqa: E402  # benchmarks/_readme.py
from typing import Any  # noqa: E402

import faiss  # noqa: E402
import numpy as np  # noqa: E402
import scipy.sparse as sp  # noqa: E402
from threadpoolctl import threadpool_limits  # noqa: E402

from hybridsearch.index import HybridIndex  # noqa: E402
from hybridsearch.types import Encoded  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
README_START, README_END = "<!-- hybrid:start -->", "<!-- hybrid:end -->"
DIM, K, RRF_K = 1024, 10, 60
HNSW_M, HNSW_EF_CONSTRUCTION, HNSW_EF = 32, 40, 128
TIE_EPS = 1e-9

Rows = list[int]


# ------------------------------------------------------------------ data
def load_synth(path: Path) -> Any:
    """The reference sparse workload, imported by path (it is not a package)."""
    if not path.is_file():
        raise SystemExit(f"{path} not found; pass --synth /path/to/shared/bench/synth.py")
    spec = importlib.util.spec_from_file_location("hybrid_bench_synth", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def dense_corpus(n: int, seed: int, *, latent: int = 256, clusters: int = 1000) -> np.ndarray:
    """Clustered low-rank vectors plus noise, L2-normalised, float32 ``(n, 1024)``."""
    shared = np.random.default_rng(0)
    centers = shared.standard_normal((clusters, latent)).astype(np.float32)
    lift = (shared.standard_normal((latent, DIM)) / np.sqrt(latent)).astype(np.float32)
    rng = np.random.default_rng(seed)
    out = np.empty((n, DIM), np.float32)
    for start in range(0, n, 10_000):
        m = min(10_000, n - start)
        z = centers[rng.integers(0, clusters, m)] + 1.5 * rng.standard_normal((m, latent), dtype=np.float32)
        x = z @ lift
        x /= np.linalg.norm(x, axis=1, keepdims=True)
        x += rng.standard_normal((m, DIM), dtype=np.float32) / np.sqrt(DIM)
        out[start : start + m] = x / np.linalg.norm(x, axis=1, keepdims=True)
    return out


def make_queries(
    synth: Any, dense: np.ndarray, sparse: sp.csr_matrix, q: int, seed: int = 7
) -> tuple[np.ndarray, sp.csr_matrix, np.ndarray]:
    """Dense: perturbed documents; sparse: ``make_queries`` plus the source document's 4 heaviest terms."""
    rng = np.random.default_rng(seed)
    src = rng.choice(dense.shape[0], size=q, replace=False)
    qd = dense[src] + 0.75 * rng.standard_normal((q, DIM), dtype=np.float32) / np.sqrt(DIM)
    qd /= np.linalg.norm(qd, axis=1, keepdims=True)
    base = synth.make_queries(q).tocsr()
    extra = sp.lil_matrix(base.shape, dtype=np.float32)
    for i, d in enumerate(src.tolist()):
        a, b = sparse.indptr[d], sparse.indptr[d + 1]
        top = np.argsort(-sparse.data[a:b], kind="stable")[:4]
        for t, w in zip(sparse.indices[a:b][top].tolist(), sparse.data[a:b][top].tolist(), strict=True):
            extra[i, t] = w
    qs = (base + extra.tocsr()).tocsr()
    qs.sum_duplicates()
    return qd.astype(np.float32), qs.astype(np.float32), src


# ------------------------------------------------------------------ exact reference
def _top_lists(scores: np.ndarray, c: int) -> list[np.ndarray]:
    """Per row: indices of the ``c`` best positive-or-any scores, best first (zero sparse scores dropped)."""
    out = []
    for s in scores:
        top = np.argpartition(-s, c - 1)[:c] if s.size > c else np.arange(s.size)
        top = top[np.lexsort((top, -s[top]))]
        out.append(top)
    return out


def reference(
    dense: np.ndarray, sparse_t: sp.csc_matrix, qd: np.ndarray, qs: sp.csr_matrix, c: int
) -> tuple[list[Rows], list[dict[int, float]]]:
    """Exact hybrid RRF top 10 per query and the fused score of every candidate (for tie-aware agreement)."""
    tops: list[Rows] = []
    fused_all: list[dict[int, float]] = []
    for start in range(0, qd.shape[0], 64):
        ds = qd[start : start + 64] @ dense.T
        ss = (qs[start : start + 64] @ sparse_t).toarray()
        for drow, srow in zip(_top_lists(ds, c), _top_lists(ss, c), strict=True):
            i = len(tops)
            srow = srow[ss[i - start, srow] > 0]  # a sparse list holds only rows that share a term
            fused: dict[int, float] = {}
            for lst in (drow, srow):
                for r, row in enumerate(lst.tolist(), start=1):
                    fused[row] = fused.get(row, 0.0) + 1.0 / (RRF_K + r)
            order = sorted(fused, key=lambda x: (-fused[x], x))[:K]
            tops.append(order)
            fused_all.append(fused)
    return tops, fused_all


def agreement(results: list[Rows], ref: list[Rows], fused: list[dict[int, float]]) -> dict[str, float]:
    plain, ties = [], []
    for got, want, f in zip(results, ref, fused, strict=False):  # a system may have stopped early
        plain.append(len(set(got) & set(want)) / K)
        tenth = f[want[-1]] if want else 0.0
        ties.append(sum(1 for r in got if r in set(want) or f.get(r, -1.0) >= tenth - TIE_EPS) / K)
    return {"overlap@10": round(float(np.mean(plain)), 4), "overlap@10_ties": round(float(np.mean(ties)), 4)}


def recall(results: list[Rows], truth: list[Rows]) -> float:
    return round(float(np.mean([len(set(a) & set(b)) / K for a, b in zip(results, truth, strict=False)])), 4)


# ------------------------------------------------------------------ timing
def percentiles(times: list[float]) -> dict[str, float]:
    ms = np.asarray(times) * 1e3
    return {
        "p50_ms": round(float(np.percentile(ms, 50)), 3),
        "p99_ms": round(float(np.percentile(ms, 99)), 3),
        "mean_ms": round(float(ms.mean()), 3),
    }


def timed_queries(
    search: Callable[[int], Rows], n: int, warmup: int, max_seconds: float
) -> tuple[list[float], list[Rows]]:
    """Warm up on the last queries, then time one call per query (stopping early after ``max_seconds``)."""
    for i in range(warmup):
        search(n - 1 - i)
    times: list[float] = []
    rows: list[Rows] = []
    started = time.perf_counter()
    for i in range(n):
        t0 = time.perf_counter()
        r = search(i)
        times.append(time.perf_counter() - t0)
        rows.append(r)
        if time.perf_counter() - started > max_seconds and len(times) >= 10:
            print(f"    stopped after {len(times)} queries (--max-seconds {max_seconds:g})", flush=True)
            break
    return times, rows


@contextmanager
def one_thread() -> Iterator[None]:
    """FAISS and BLAS on one thread inside the block."""
    before = faiss.omp_get_max_threads()
    faiss.omp_set_num_threads(1)
    try:
        with threadpool_limits(limits=1):
            yield
    finally:
        faiss.omp_set_num_threads(before)


# ------------------------------------------------------------------ systems
def _ours_index(factory: str) -> HybridIndex:
    hnsw = factory.startswith("HNSW")
    return HybridIndex(
        dense_factory=factory,
        ef_search=HNSW_EF if hnsw else None,
        ef_construction=HNSW_EF_CONSTRUCTION if hnsw else None,
    )


def ingest_ours(factory: str, docs: Encoded, batch: int, path: Path) -> tuple[HybridIndex, dict[str, Any]]:
    """``add`` in batches of ``batch`` documents, then ``save``; the index and the timings."""
    n = len(docs)
    index = _ours_index(factory)
    ids = [f"d{i}" for i in range(n)]
    per_batch = []
    t0 = time.perf_counter()
    for a in range(0, n, batch):
        b = min(n, a + batch)
        t = time.perf_counter()
        index.add(ids[a:b], docs[a:b])
        per_batch.append(round(time.perf_counter() - t, 3))
    add_s = time.perf_counter() - t0
    t1 = time.perf_counter()
    index.save(path)
    save_s = time.perf_counter() - t1
    stats = {
        "docs": n,
        "batch": batch,
        "add_s": round(add_s, 3),
        "add_s_per_batch": per_batch,
        "save_s": round(save_s, 3),
        "docs_per_s_add": round(n / add_s, 1),
        "docs_per_s_add_save": round(n / (add_s + save_s), 1),
    }
    return index, stats


def run_ours(
    name: str, factory: str, docs: Encoded, queries: list[Encoded], args: argparse.Namespace, workdir: Path
) -> tuple[dict[str, Any], list[Rows]]:
    n = len(docs)
    path = workdir / f"ours-{factory}"
    extra: dict[str, Any] = {}
    if factory == "Flat" and args.batch < n:
        # The same documents in one add call, for comparison with the batched ingest below.
        one, stats = ingest_ours(factory, docs, n, workdir / "ours-one-call")
        del one
        shutil.rmtree(workdir / "ours-one-call", ignore_errors=True)
        gc.collect()
        extra["ingest_one_call"] = stats
        print(
            f"  {name}: one add call {stats['add_s']:.2f} s ({stats['docs_per_s_add']:,.0f} docs/s), "
            f"save {stats['save_s']:.2f} s",
            flush=True,
        )
    index, ingest = ingest_ours(factory, docs, args.batch, path)
    print(
        f"  {name}: add in batches of {args.batch:,} {ingest['add_s']:.2f} s ({ingest['docs_per_s_add']:,.0f} docs/s; "
        f"per batch {ingest['add_s_per_batch']}), save {ingest['save_s']:.2f} s",
        flush=True,
    )

    def search(i: int) -> Rows:
        hits = index.search(queries[i], K, mode="hybrid", candidates=args.candidates, fusion="rrf")
        return [int(r) for r in hits.rows[0] if r >= 0]

    first = index.search(queries[0], K, mode="hybrid", candidates=args.candidates, fusion="rrf")
    assert [f"d{r}" for r in first.rows[0] if r >= 0] == [d for d in first.doc_ids[0] if d], (
        "row ids are not insertion order"
    )
    with one_thread():
        times, rows = timed_queries(search, min(args.queries, len(queries)), args.warmup, args.max_seconds)
        if factory == "Flat":
            # Where the time goes: each first stage alone (top ``candidates``), on the same queries.
            parts = {}
            for mode in ("dense", "sparse"):
                t_mode, _ = timed_queries(
                    lambda i, m=mode: index.search(queries[i], args.candidates, mode=m).rows[0].tolist(),
                    min(200, args.queries, len(queries)),
                    5,
                    args.max_seconds / 4,
                )
                parts[mode] = percentiles(t_mode)
            extra["first_stage_alone"] = parts
            print(
                "  " + ", ".join(f"{m} alone p50 {v['p50_ms']:.2f} ms" for m, v in parts.items()),
                flush=True,
            )
        # The saved index, memory-mapped, answers the same (checked on a few queries).
        t2 = time.perf_counter()
        loaded = HybridIndex.load(path)
        load_s = time.perf_counter() - t2
        same = all(
            [int(r) for r in loaded.search(queries[i], K, mode="hybrid", candidates=args.candidates).rows[0] if r >= 0]
            == rows[i]
            for i in range(min(10, len(rows)))
        )
    ingest["load_s"] = round(load_s, 3)
    ingest["disk_bytes"] = sum(f.stat().st_size for f in path.rglob("*") if f.is_file())
    shutil.rmtree(path, ignore_errors=True)
    out = {
        "system": "ours",
        "name": name,
        "dense": factory,
        "ingest": ingest,
        **extra,
        "queries": len(times),
        "threads": 1,
        "loaded_index_agrees": same,
        **percentiles(times),
    }
    return out, rows


def milvus_wait_for_indexes(uri: str, col: str) -> bool:
    """Block until milvus-lite's background index builds are done; False when that cannot be observed.

    milvus-lite returns from ``flush`` before it has built the segments' vector indexes (a background worker
    does that, and its gRPC ``describe_index`` always reports them finished), and until then it searches the
    segments by brute force. Only the embedded engine object can say when the builds are done.
    """
    try:
        from milvus_lite import server_manager_instance

        _server, db, _port = server_manager_instance._servers[os.path.abspath(uri)]
        db.get_collection(col)._wait_for_bg(timeout=3600)
    except (AttributeError, KeyError, ImportError, TypeError) as exc:
        print(f"    cannot wait for milvus-lite's index builds ({exc!r}); timing what is there", flush=True)
        return False
    return True


def run_milvus(
    name: str,
    index_type: str,
    dense: np.ndarray,
    sparse: sp.csr_matrix,
    qd: list[list[float]],
    qs: list[dict[int, float]],
    args: argparse.Namespace,
    workdir: Path,
) -> tuple[dict[str, Any], list[Rows]]:
    from pymilvus import AnnSearchRequest, DataType, MilvusClient, RRFRanker

    n = dense.shape[0]
    uri = str(workdir / f"milvus-{index_type}.db")
    client = MilvusClient(uri)
    col = "bench"
    schema = client.create_schema(auto_id=False, enable_dynamic_field=False)
    schema.add_field("id", DataType.INT64, is_primary=True)
    schema.add_field("dense", DataType.FLOAT_VECTOR, dim=DIM)
    schema.add_field("sparse", DataType.SPARSE_FLOAT_VECTOR)
    params = client.prepare_index_params()
    dense_params = {"M": HNSW_M, "efConstruction": HNSW_EF_CONSTRUCTION} if index_type == "HNSW" else {}
    params.add_index(field_name="dense", index_type=index_type, metric_type="IP", params=dense_params)
    params.add_index(field_name="sparse", index_type="SPARSE_INVERTED_INDEX", metric_type="IP")
    client.create_collection(col, schema=schema, index_params=params)
    rows_sparse = Encoded(sparse=sparse).sparse_dicts()
    t0 = time.perf_counter()
    for a in range(0, n, args.milvus_batch):
        b = min(n, a + args.milvus_batch)
        client.insert(
            col,
            [{"id": i, "dense": dense[i], "sparse": rows_sparse[i]} for i in range(a, b)],
        )
    insert_s = time.perf_counter() - t0
    client.flush(col)
    flush_s = time.perf_counter() - t0
    waited = milvus_wait_for_indexes(uri, col)
    ingest_s = time.perf_counter() - t0
    del rows_sparse
    print(
        f"  {name}: insert {insert_s:.2f} s, + flush {flush_s:.2f} s, + index builds {ingest_s:.2f} s "
        f"({n / ingest_s:,.0f} docs/s)",
        flush=True,
    )
    search_dense = {"metric_type": "IP", "params": {"ef": HNSW_EF} if index_type == "HNSW" else {}}
    search_sparse = {"metric_type": "IP", "params": {}}
    ranker = RRFRanker(RRF_K)

    def search(i: int) -> Rows:
        res = client.hybrid_search(
            col,
            [
                AnnSearchRequest(data=[qd[i]], anns_field="dense", param=search_dense, limit=args.candidates),
                AnnSearchRequest(data=[qs[i]], anns_field="sparse", param=search_sparse, limit=args.candidates),
            ],
            ranker,
            limit=K,
        )
        return [int(h["id"]) for h in res[0]]

    times, rows = timed_queries(search, min(args.milvus_queries, len(qd)), args.engine_warmup, args.max_seconds)
    client.drop_collection(col)
    client.close()
    shutil.rmtree(uri, ignore_errors=True)
    out = {
        "system": "milvus-lite",
        "name": name,
        "dense": index_type,
        "ingest": {
            "docs": n,
            "insert_s": round(insert_s, 3),
            "insert_flush_s": round(flush_s, 3),
            "insert_flush_index_s": round(ingest_s, 3),
            "waited_for_index_builds": waited,
            "docs_per_s": round(n / ingest_s, 1),
        },
        "queries": len(times),
        "threads": "default",
        **percentiles(times),
    }
    return out, rows


def _qdrant_collection(client: Any, models: Any, col: str) -> None:
    client.create_collection(
        col,
        vectors_config={"dense": models.VectorParams(size=DIM, distance=models.Distance.DOT)},
        sparse_vectors_config={"sparse": models.SparseVectorParams()},
    )


def qdrant_persisted_ingest(
    dense: np.ndarray, sparse: sp.csr_matrix, args: argparse.Namespace, workdir: Path
) -> dict[str, Any]:
    """Upsert rate of ``QdrantClient(path=...)`` on the first documents, bounded by ``--qdrant-path-seconds``.

    Local mode with a path writes every point to SQLite and commits it on its own, so its rate is set by the
    disk's sync latency; at tens of points per second the whole corpus would take far too long here.
    """
    from qdrant_client import QdrantClient, models

    path = workdir / "qdrant-path"
    client = QdrantClient(path=str(path))
    _qdrant_collection(client, models, "bench")
    done, step = 0, 100
    t0 = time.perf_counter()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        while done < min(args.qdrant_path_docs, dense.shape[0]) and time.perf_counter() - t0 < args.qdrant_path_seconds:
            b = min(dense.shape[0], done + step)
            client.upsert(
                "bench",
                points=models.Batch(
                    ids=list(range(done, b)),
                    vectors={
                        "dense": dense[done:b].tolist(),
                        "sparse": Encoded(sparse=sparse[done:b]).to_qdrant_sparse(),
                    },
                ),
            )
            done = b
    elapsed = time.perf_counter() - t0
    client.close()
    shutil.rmtree(path, ignore_errors=True)
    print(
        f"  qdrant local (path): {done:,} docs upserted in {elapsed:.1f} s ({done / elapsed:,.0f} docs/s)", flush=True
    )
    return {"location": "path", "docs": done, "upsert_s": round(elapsed, 3), "docs_per_s": round(done / elapsed, 1)}


def run_qdrant(
    name: str,
    dense: np.ndarray,
    sparse: sp.csr_matrix,
    qd: list[list[float]],
    qs: list[Any],
    args: argparse.Namespace,
    workdir: Path,
) -> tuple[dict[str, Any], list[Rows]]:
    from qdrant_client import QdrantClient, models

    n = dense.shape[0]
    persisted = qdrant_persisted_ingest(dense, sparse, args, workdir)
    client = QdrantClient(location=":memory:")
    col = "bench"
    _qdrant_collection(client, models, col)
    t0 = time.perf_counter()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # local mode warns above 20,000 points
        for a in range(0, n, args.qdrant_batch):
            b = min(n, a + args.qdrant_batch)
            svecs = Encoded(sparse=sparse[a:b]).to_qdrant_sparse()
            client.upsert(
                col,
                points=models.Batch(
                    ids=list(range(a, b)),
                    vectors={"dense": dense[a:b].tolist(), "sparse": svecs},
                ),
                wait=True,
            )
            if a == 0 or (a // args.qdrant_batch) % 20 == 0:
                el = time.perf_counter() - t0
                print(f"    qdrant upsert {b:,}/{n:,} ({b / el:,.0f} docs/s)", flush=True)
    ingest_s = time.perf_counter() - t0
    print(f"  {name}: upsert {ingest_s:.2f} s ({n / ingest_s:,.0f} docs/s)", flush=True)
    fusion = models.RrfQuery(rrf=models.Rrf(k=RRF_K + 1))  # Qdrant: 1 / (k + 0-based rank)

    def search(i: int) -> Rows:
        res = client.query_points(
            col,
            prefetch=[
                models.Prefetch(query=qd[i], using="dense", limit=args.candidates),
                models.Prefetch(query=qs[i], using="sparse", limit=args.candidates),
            ],
            query=fusion,
            limit=K,
        )
        return [int(p.id) for p in res.points]

    times, rows = timed_queries(search, min(args.qdrant_queries, len(qd)), args.engine_warmup, args.max_seconds)
    client.close()
    out = {
        "system": "qdrant-client local",
        "name": name,
        "dense": "brute force (DOT)",
        "ingest": {
            "docs": n,
            "upsert_s": round(ingest_s, 3),
            "docs_per_s": round(n / ingest_s, 1),
            "location": ":memory:",
            "persisted": persisted,
        },
        "queries": len(times),
        "threads": "default",
        **percentiles(times),
    }
    return out, rows


# ------------------------------------------------------------------ report
def _version(dist: str) -> str | None:
    try:
        return metadata.version(dist)
    except metadata.PackageNotFoundError:
        return None


def cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def _fmt_rate(x: float | None) -> str:
    return "" if x is None else f"{x:,.0f}"


def _met(ok: bool) -> str:
    return "met" if ok else "not met"


def readme_section(res: dict[str, Any]) -> str:
    env, p = res["environment"], res["params"]
    rows = {r["name"]: r for r in res["results"]}
    persisted = rows.get("qdrant local", {}).get("ingest", {}).get("persisted", {})
    qpath = f"{persisted.get('docs', p['qdrant_path_docs']):,}"
    lines = [
        README_START,
        "## Hybrid search against milvus-lite and qdrant-client local mode",
        "",
        f"`python benchmarks/bench_hybrid.py{' --quick' if p['quick'] else ''}` ({env['when']}, {env['cpu']}, "
        f"{env['cores']} cores, Python {env['python']}; numpy {env['versions']['numpy']}, faiss "
        f"{env['versions']['faiss-cpu']}, pymilvus {env['versions']['pymilvus']}, milvus-lite "
        f"{env['versions']['milvus-lite']}, qdrant-client {env['versions']['qdrant-client']}; load average "
        f"{env['load_before']} before / {env['load_after']} after: the machine was shared, so timings are noisy). "
        "Raw numbers: `benchmarks/results/hybrid.json`.",
        "",
        f"{p['n']:,} documents: 1024-d normalised dense vectors (clustered, synthetic) + sparse vectors from "
        f"`shared/bench/synth.py` ({p['sparse_nnz_per_doc']:.0f} non-zeros per document, {p['query_nnz']:.1f} per "
        "query). Every system returns the top 10 of RRF (k = 60) over the top "
        f"{p['candidates']} by dense inner product and the top {p['candidates']} by sparse inner product, for one "
        'query per call, encoding excluded. Ours: `HybridIndex.search(mode="hybrid", fusion="rrf")` on one '
        "thread; milvus-lite: `hybrid_search` + `RRFRanker(60)`, FLAT / HNSW dense + SPARSE_INVERTED_INDEX (IP); "
        "qdrant local (`:memory:`): `query_points` with two prefetches + `RrfQuery(Rrf(k=61))` (Qdrant's k = 61 "
        "over 0-based ranks is k = 60); its path-mode ingest rate is measured on the first "
        f"{qpath} documents only (it commits every point to SQLite on its own). The engines use their default "
        "threads. overlap@10: mean share of the exact reference "
        "top 10 (numpy/scipy) that a system returns; (ties): a row tied with the reference's 10th fused score "
        "counts too. HNSW rows: M = 32, efConstruction = 40, ef = 128.",
        "",
        "| system | dense | queries | p50 ms | p99 ms | ours faster at p50 | ingest docs/s | overlap@10 (ties) |",
        "|---|---|---:|---:|---:|---:|---:|---:|",
    ]
    for r in res["results"]:
        ing = r["ingest"]
        rate = ing.get("docs_per_s") or ing.get("docs_per_s_add")
        if r["system"] == "ours":
            rate_s = f"{_fmt_rate(ing['docs_per_s_add'])} (add) / {_fmt_rate(ing['docs_per_s_add_save'])} (+ save)"
        elif "persisted" in ing:
            rate_s = f"{_fmt_rate(rate)} (:memory:) / {_fmt_rate(ing['persisted']['docs_per_s'])} (path)"
        else:
            rate_s = _fmt_rate(rate)
        speed = r.get("ours_speedup_p50")
        speed_s = "" if speed is None else f"{speed:.1f}x"
        ag = r["agreement"]
        lines.append(
            f"| {r['name']} | {r['dense']} | {r['queries']} | {r['p50_ms']:.2f} | {r['p99_ms']:.2f} | {speed_s} | "
            f"{rate_s} | {ag['overlap@10']:.3f} ({ag['overlap@10_ties']:.3f}) |"
        )
    hs = res.get("secondary_recall")
    if hs:
        lines += [
            "",
            "Recall@10 of the HNSW rows against the exact hybrid top 10: "
            + ", ".join(f"{k} {v:.3f}" for k, v in hs.items())
            + ".",
        ]
    ours = rows.get("ours Flat")
    targets = res.get("targets", {})
    if ours and targets:
        lines.append("")
        if targets["latency"]:
            lines.append(
                "Target: hybrid p50 at least 10x faster than milvus-lite and qdrant local (exact dense): "
                + ", ".join(f"{k} {v['ratio']:.1f}x ({_met(v['met'])})" for k, v in targets["latency"].items())
                + "."
            )
        for key, how in (
            ("ingest", f"adds of {targets['ingest']['batch']:,} documents"),
            ("ingest_one_call", "one add call"),
        ):
            t = targets.get(key)
            if t:
                lines.append(
                    f"Target: ingest >= 20,000 docs/s (dense + sparse, Flat), {how}: {t['add_docs_per_s']:,.0f} docs/s for add "
                    f"({_met(t['met_add'])}), {t['add_save_docs_per_s']:,.0f} for add + save ({_met(t['met_add_save'])})."
                )
        parts = ours.get("first_stage_alone")
        if parts:
            lines.append(
                f"Ours Flat, each first stage alone (top {p['candidates']}, one thread): "
                + ", ".join(f"{m} p50 {v['p50_ms']:.2f} ms" for m, v in parts.items())
                + "."
            )
    lines += ["", README_END]
    return "\n".join(lines)


def write_readme(path: Path, section: str) -> None:
    replace_section(path, README_START, README_END, section)


# ------------------------------------------------------------------ main
SYSTEMS = ("ours", "milvus", "qdrant", "hnsw")


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    p.add_argument("--n", type=int, default=None, help="documents (default 100,000; 20,000 with --quick)")
    p.add_argument("--queries", type=int, default=None, help="timed queries for ours (default 1,000; 200 quick)")
    p.add_argument(
        "--milvus-queries", type=int, default=None, help="timed queries for milvus-lite (default 100; 30 quick)"
    )
    p.add_argument("--qdrant-queries", type=int, default=None, help="timed queries for qdrant (default 30; 10 quick)")
    p.add_argument("--quick", action="store_true", help="20,000 documents and fewer queries: a fast check")
    p.add_argument("--candidates", type=int, default=100, help="rows each first stage proposes (default 100)")
    p.add_argument("--batch", type=int, default=10_000, help="documents per add call for ours (default 10,000)")
    p.add_argument("--milvus-batch", type=int, default=5_000, help="rows per milvus insert (default 5,000)")
    p.add_argument("--qdrant-batch", type=int, default=1_000, help="points per qdrant upsert (default 1,000)")
    p.add_argument("--qdrant-path-docs", type=int, default=5_000, help="documents for qdrant's persisted ingest rate")
    p.add_argument("--qdrant-path-seconds", type=float, default=45.0, help="time bound of qdrant's persisted ingest")
    p.add_argument("--warmup", type=int, default=20, help="untimed queries before timing ours")
    p.add_argument("--engine-warmup", type=int, default=3, help="untimed queries before timing an engine")
    p.add_argument("--max-seconds", type=float, default=150.0, help="stop a system's timed loop after this long")
    p.add_argument("--skip", nargs="*", choices=SYSTEMS, default=[], help="leave these out (hnsw: the secondary rows)")
    p.add_argument("--synth", type=Path, default=ROOT.parent / "shared" / "bench" / "synth.py")
    p.add_argument("--workdir", type=Path, default=None, help="where the indexes are written (default: a temp dir)")
    p.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results" / "hybrid.json")
    p.add_argument("--readme", type=Path, default=ROOT / "benchmarks" / "README.md")
    args = p.parse_args(argv)
    quick = {"n": 20_000, "queries": 200, "milvus_queries": 30, "qdrant_queries": 10}
    full = {"n": 100_000, "queries": 1_000, "milvus_queries": 100, "qdrant_queries": 30}
    for key, value in (quick if args.quick else full).items():
        if getattr(args, key) is None:
            setattr(args, key, value)
    if not os.path.isfile(args.synth):
        fallback = Path("/work/shared/bench/synth.py")
        if fallback.is_file():
            args.synth = fallback
    return args


def main(argv: list[str] | None = None) -> dict[str, Any]:
    args = parse_args(argv)
    logging.getLogger("milvus_lite").setLevel(logging.WARNING)
    synth = load_synth(args.synth)
    load0 = round(os.getloadavg()[0], 2)
    t_start = time.perf_counter()
    nq = max(args.queries, args.milvus_queries, args.qdrant_queries) + max(args.warmup, args.engine_warmup)

    dense = dense_corpus(args.n, seed=1)
    sparse = synth.make_corpus(args.n).tocsr().astype(np.float32)
    docs = Encoded(dense=dense, sparse=sparse)
    sparse = docs.sparse  # canonical CSR (sorted ids, int32 indices)
    qd, qs, _src = make_queries(synth, dense, sparse, nq)
    queries_enc = [Encoded(dense=qd[i : i + 1], sparse=qs[i : i + 1]) for i in range(nq)]
    print(f"data: {args.n:,} docs, {nq} queries in {time.perf_counter() - t_start:.1f} s", flush=True)

    n_ref = max(args.queries, args.milvus_queries, args.qdrant_queries)
    t0 = time.perf_counter()
    with threadpool_limits(limits=2):
        ref, fused = reference(dense, sparse.T.tocsc(), qd[:n_ref], qs[:n_ref], args.candidates)
    print(f"exact reference for {n_ref} queries in {time.perf_counter() - t0:.1f} s", flush=True)

    own_tmp = args.workdir is None
    workdir = Path(tempfile.mkdtemp(prefix="bench-hybrid-")) if own_tmp else args.workdir
    workdir.mkdir(parents=True, exist_ok=True)
    faiss.omp_set_num_threads(os.cpu_count() or 1)
    results: list[dict[str, Any]] = []
    rows_of: dict[str, list[Rows]] = {}

    def record(res: dict[str, Any], rows: list[Rows]) -> None:
        res["agreement"] = agreement(rows, ref, fused)
        rows_of[res["name"]] = rows
        results.append(res)
        gc.collect()  # the system's index went out of scope: give its memory back before the next one
        print(
            f"  {res['name']:>22}: p50 {res['p50_ms']:9.2f} ms  p99 {res['p99_ms']:9.2f} ms  ({res['queries']} queries)  "
            f"overlap@10 {res['agreement']['overlap@10']:.3f} ({res['agreement']['overlap@10_ties']:.3f} with ties)",
            flush=True,
        )

    try:
        if "ours" not in args.skip:
            record(*run_ours("ours Flat", "Flat", docs, queries_enc, args, workdir))
        qd_list = qd.tolist()
        if "milvus" not in args.skip:
            qs_milvus = Encoded(sparse=qs).sparse_dicts()
            record(*run_milvus("milvus-lite FLAT", "FLAT", dense, sparse, qd_list, qs_milvus, args, workdir))
        if "qdrant" not in args.skip:
            qs_qdrant = Encoded(sparse=qs).to_qdrant_sparse()
            record(*run_qdrant("qdrant local", dense, sparse, qd_list, qs_qdrant, args, workdir))
        if "hnsw" not in args.skip:
            if "ours" not in args.skip:
                record(*run_ours("ours HNSW32", "HNSW32", docs, queries_enc, args, workdir))
            if "milvus" not in args.skip:
                qs_milvus = Encoded(sparse=qs).sparse_dicts()
                record(*run_milvus("milvus-lite HNSW", "HNSW", dense, sparse, qd_list, qs_milvus, args, workdir))
    finally:
        if own_tmp:
            shutil.rmtree(workdir, ignore_errors=True)

    by_name = {r["name"]: r for r in results}
    ours_pairs = {"milvus-lite FLAT": "ours Flat", "qdrant local": "ours Flat", "milvus-lite HNSW": "ours HNSW32"}
    for r in results:
        mine = by_name.get(ours_pairs.get(r["name"], ""))
        if mine is not None:
            r["ours_speedup_p50"] = round(r["p50_ms"] / mine["p50_ms"], 2)
            r["ours_speedup_p99"] = round(r["p99_ms"] / mine["p99_ms"], 2)
    # Agreement between the systems themselves (on the queries both answered).
    pairwise = {}
    names = list(rows_of)
    for i, a in enumerate(names):
        for b in names[i + 1 :]:
            m = min(len(rows_of[a]), len(rows_of[b]))
            if m:
                pairwise[f"{a} vs {b}"] = recall(rows_of[a][:m], rows_of[b][:m])
    secondary = {
        name: recall(rows_of[name], ref[: len(rows_of[name])])
        for name in ("ours HNSW32", "milvus-lite HNSW")
        if name in rows_of
    }
    targets: dict[str, Any] = {}
    if "ours Flat" in by_name:
        ing = by_name["ours Flat"]["ingest"]
        one = by_name["ours Flat"].get("ingest_one_call")
        targets["ingest"] = {
            "batch": ing["batch"],
            "add_docs_per_s": ing["docs_per_s_add"],
            "add_save_docs_per_s": ing["docs_per_s_add_save"],
            "met_add": ing["docs_per_s_add"] >= 20_000,
            "met_add_save": ing["docs_per_s_add_save"] >= 20_000,
        }
        if one:
            targets["ingest_one_call"] = {
                "add_docs_per_s": one["docs_per_s_add"],
                "add_save_docs_per_s": one["docs_per_s_add_save"],
                "met_add": one["docs_per_s_add"] >= 20_000,
                "met_add_save": one["docs_per_s_add_save"] >= 20_000,
            }
        targets["latency"] = {
            name: {"ratio": by_name[name]["ours_speedup_p50"], "met": by_name[name]["ours_speedup_p50"] >= 10}
            for name in ("milvus-lite FLAT", "qdrant local")
            if name in by_name
        }

    versions = {
        d: _version(d) for d in ("numpy", "scipy", "faiss-cpu", "numba", "pymilvus", "milvus-lite", "qdrant-client")
    }
    versions["faiss-cpu"] = versions["faiss-cpu"] or faiss.__version__
    res = {
        "benchmark": "hybrid",
        "environment": {
            "when": time.strftime("%Y-%m-%d"),
            "cpu": cpu_model(),
            "cores": os.cpu_count(),
            "machine": platform.machine(),
            "python": platform.python_version(),
            "versions": versions,
            "load_before": load0,
            "load_after": round(os.getloadavg()[0], 2),
            "total_s": round(time.perf_counter() - t_start, 1),
        },
        "params": {
            "n": args.n,
            "quick": args.quick,
            "dim": DIM,
            "k": K,
            "candidates": args.candidates,
            "rrf_k": RRF_K,
            "sparse_nnz_per_doc": round(sparse.nnz / args.n, 1),
            "query_nnz": round(qs.nnz / qs.shape[0], 1),
            "hnsw": {"M": HNSW_M, "efConstruction": HNSW_EF_CONSTRUCTION, "ef": HNSW_EF},
            "batch": {"ours": args.batch, "milvus": args.milvus_batch, "qdrant": args.qdrant_batch},
            "warmup": {"ours": args.warmup, "engines": args.engine_warmup},
            "max_seconds": args.max_seconds,
            "qdrant_path_docs": args.qdrant_path_docs,
            "ours_query_threads": 1,
        },
        "results": results,
        "pairwise_overlap@10": pairwise,
        "secondary_recall": secondary,
        "targets": targets,
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(res, indent=2) + "\n", encoding="utf-8")
    write_readme(args.readme, readme_section(res))
    print(f"wrote {args.out} and {args.readme} in {res['environment']['total_s']} s", flush=True)
    return res


if __name__ == "__main__":
    main()
