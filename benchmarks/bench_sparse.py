"""Benchmark of SparseIndex: single-thread exact and approximate top-10 latency against the scipy CSC baseline.

::

    python benchmarks/bench_sparse.py [--n 1000000] [--queries 1000] [--csc-queries 300] [--no-scifact]

Workload: the reference synthetic corpus of ``shared/bench/synth.py`` (bge-m3-like: Zipf-distributed tokens
over the 250,002-token XLM-R vocabulary, about 76 non-zeros a document and 11 a query, frequent tokens with
long lists and low weights), built with ``make_corpus(n)`` and ``make_queries(q)``.

- **build**: ``SparseIndex.add`` of the whole corpus from CSR (one thread), its time and the peak resident
  memory of the process while it runs (sampled every 5 ms);
- **size**: ``SparseIndex.nbytes`` (every array of the index) and the bytes of the files that
  ``SparseIndex.save`` writes, per non-zero; the per-thread search scratch is reported apart;
- **latency**: one query per ``search`` call, k = 10, numba and every BLAS/OpenMP pool on one thread, after
  a warm-up; exact search, approximate search at a few values of the ``approximate`` knob and the exact
  ``csc_topk`` baseline are timed query by query, interleaved, in the same process, so that load on a
  shared machine hits them alike;
- **agreement**: exact top-10 ids against ``csc_topk``; a query whose ids differ counts as a near-tie flip
  when its sorted scores equal the baseline's within 1e-6 (float32 summation order), as an error otherwise;
  recall@10 of approximate search against exact search;
- **real data** (unless ``--no-scifact``): BEIR SciFact with BM25 weights over XLM-R token ids
  (``BM25Encoder``), top-10 against brute-force ``queries @ docs.T`` and latency.

Results go to ``benchmarks/results/sparse.json`` and the sparse section of ``benchmarks/README.md``.
"""

from __future__ import annotations

import os

# One thread everywhere; must be set before numpy and numba load.
for _var in ("NUMBA_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS"):
    os.environ[_var] = "1"
os.environ.setdefault("HF_HUB_OFFLINE", "1")
_DATA = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "shared", "data")
if not os.environ.get("HYBRIDSEARCH_DATA") and os.path.isdir(_DATA):
    os.environ["HYBRIDSEARCH_DATA"] = os.path.normpath(_DATA)

import argparse  # noqa: E402
import importlib.util  # noqa: E402
import json  # noqa: E402
import platform  # noqa: E402
import resource  # noqa: E402
import tempfile  # noqa: E402
import threading  # noqa: E402
import time  # noqa: E402
from collections.abc import Callable, Iterator  # noqa: E402
from contextlib import contextmanager  # noqa: E402
from pathlib import Path  # noqa: E402
from types import ModuleType  # noqa: E402
from typing import Any  # noqa: E402

import numpy as np  # noqa: E402
import psutil  # noqa: E402
import scipy  # noqa: E402

from hybridsearch.index.sparse import SparseIndex  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
README_START, README_END = "<!-- sparse:start -->", "<!-- sparse:end -->"
K = 10
APPROX = (0.99, 0.985, 0.98, 0.97, 0.95, 0.9)
WARMUP = 30


# ----------------------------------------------------------------------------- helpers
def load_synth(path: Path) -> ModuleType:
    spec = importlib.util.spec_from_file_location("synth", path)
    if spec is None or spec.loader is None or not path.exists():
        raise SystemExit(f"reference workload not found at {path}; pass --synth")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


@contextmanager
def peak_rss() -> Iterator[dict[str, float]]:
    """Sample this process's resident memory every 5 ms while the block runs."""
    proc = psutil.Process()
    out = {"before_gb": proc.memory_info().rss / 1e9, "peak_gb": 0.0}
    stop = threading.Event()

    def sample() -> None:
        while not stop.is_set():
            out["peak_gb"] = max(out["peak_gb"], proc.memory_info().rss / 1e9)
            stop.wait(0.005)

    t = threading.Thread(target=sample, daemon=True)
    t.start()
    try:
        yield out
    finally:
        stop.set()
        t.join()
        out["peak_gb"] = max(out["peak_gb"], proc.memory_info().rss / 1e9)


def pct(lat_ms: list[float]) -> dict[str, float]:
    a = np.asarray(lat_ms)
    return {
        "p50_ms": float(np.percentile(a, 50)),
        "p90_ms": float(np.percentile(a, 90)),
        "p99_ms": float(np.percentile(a, 99)),
        "mean_ms": float(a.mean()),
        "queries": int(a.size),
    }


def timed(fn: Callable[[], Any]) -> tuple[Any, float]:
    t = time.perf_counter()
    out = fn()
    return out, (time.perf_counter() - t) * 1e3


def timed2(fn: Callable[[], Any]) -> tuple[Any, float, float]:
    """Result, wall-clock ms and this thread's CPU ms (CPU time leaves out waits for a core on a busy machine)."""
    c, t = time.thread_time(), time.perf_counter()
    out = fn()
    return out, (time.perf_counter() - t) * 1e3, (time.thread_time() - c) * 1e3


def recall_at_k(got: np.ndarray, ref: np.ndarray) -> float:
    hits = []
    for g, r in zip(got, ref, strict=True):
        r = r[r >= 0]
        hits.append(len(set(g[g >= 0].tolist()) & set(r.tolist())) / max(1, r.size))
    return float(np.mean(hits))


def compare(
    rows: np.ndarray, scores: np.ndarray, ref_rows: list[np.ndarray], ref_scores: list[np.ndarray]
) -> dict[str, int]:
    """Top-k agreement with a reference: identical id sets, near-tie flips (scores within 1e-6), errors."""
    same = flips = errors = 0
    for r, s, rr, rs in zip(rows, scores, ref_rows, ref_scores, strict=False):
        keep = rs > 0
        rr, rs = rr[keep], rs[keep]
        got = r[r >= 0]
        if set(got.tolist()) == set(rr.tolist()):
            same += 1
        elif got.size == rr.size and np.allclose(np.sort(s[: got.size]), np.sort(rs), rtol=1e-6, atol=1e-7):
            flips += 1
        else:
            errors += 1
    return {"identical": same, "near_tie_flips": flips, "errors": errors}


# ----------------------------------------------------------------------------- synthetic workload
def bench_synthetic(args: argparse.Namespace) -> dict[str, Any]:
    synth = load_synth(args.synth)
    t0 = time.perf_counter()
    docs = synth.make_corpus(args.n)
    queries = synth.make_queries(args.queries + WARMUP)
    gen_s = time.perf_counter() - t0
    print(
        f"corpus: {args.n:,} docs, {docs.nnz:,} non-zeros ({docs.nnz / args.n:.1f}/doc), generated in {gen_s:.0f} s",
        flush=True,
    )

    index = SparseIndex(synth.VOCAB, block_size=args.block_size)
    with peak_rss() as mem:
        t0 = time.perf_counter()
        index.add(docs, np.arange(args.n, dtype=np.int64))
        build_ms = (time.perf_counter() - t0) * 1e3
    build = {
        "seconds": build_ms / 1e3,
        "peak_rss_gb": mem["peak_gb"],
        "rss_before_gb": mem["before_gb"],
        "segments": index.n_segments,
    }
    print(
        f"build: {build['seconds']:.1f} s, peak RSS {mem['peak_gb']:.2f} GB (before {mem['before_gb']:.2f} GB)",
        flush=True,
    )

    with tempfile.TemporaryDirectory() as tmp:
        names = index.save(Path(tmp))
        disk = sum((Path(tmp) / n).stat().st_size for n in names)
        loaded = SparseIndex.load(Path(tmp))
        check = synth.make_queries(50, seed=7)
        same_after_load = all(
            np.array_equal(a, b) for a, b in zip(loaded.search(check, K), index.search(check, K), strict=True)
        )
        del loaded
    size = {
        "nnz": int(index.nnz),
        "ram_bytes": int(index.nbytes),
        "ram_bytes_per_nnz": index.nbytes / index.nnz,
        "disk_bytes": int(disk),
        "disk_bytes_per_nnz": disk / index.nnz,
        "scratch_bytes_per_thread": int(index.scratch_nbytes),
        "ram_bytes_per_nnz_with_scratch": (index.nbytes + index.scratch_nbytes) / index.nnz,
        "mmap_load_gives_same_results": bool(same_after_load),
    }
    print(
        f"size: {size['ram_bytes_per_nnz']:.3f} B/nnz in RAM, {size['disk_bytes_per_nnz']:.3f} B/nnz on disk",
        flush=True,
    )

    csc = docs.tocsc()
    del docs
    qs = [queries[i] for i in range(queries.shape[0])]
    for q in qs[:WARMUP]:  # compile, fault in pages and caches
        index.search(q, K)
        index.search(q, K, approximate=APPROX[-1])
        synth.csc_topk(csc, q, K)
    qs = qs[WARMUP:]
    lat: dict[str, list[float]] = {"exact": [], "csc": [], **{f"approx_{a}": [] for a in APPROX}}
    cpu: dict[str, list[float]] = {name: [] for name in lat}
    exact_rows, exact_scores, evaluated = [], [], []
    approx_rows: dict[float, list[np.ndarray]] = {a: [] for a in APPROX}
    csc_rows, csc_scores = [], []
    load_before = os.getloadavg()[0]
    t_start = time.perf_counter()
    for i, q in enumerate(qs):
        (r, s), ms, cms = timed2(lambda q=q: index.search(q, K))
        lat["exact"].append(ms)
        cpu["exact"].append(cms)
        exact_rows.append(r[0])
        exact_scores.append(s[0])
        evaluated.append(int(index._last_stats[0, 1]))
        for a in APPROX:
            (r, _), ms, cms = timed2(lambda q=q, a=a: index.search(q, K, approximate=a))
            lat[f"approx_{a}"].append(ms)
            cpu[f"approx_{a}"].append(cms)
            approx_rows[a].append(r[0])
        if i < args.csc_queries:
            (top, sc), ms, cms = timed2(lambda q=q: synth.csc_topk(csc, q, K))
            lat["csc"].append(ms)
            cpu["csc"].append(cms)
            csc_rows.append(np.asarray(top))
            csc_scores.append(np.asarray(sc))
    run_s = time.perf_counter() - t_start
    load_after = os.getloadavg()[0]

    exact = pct(lat["exact"])
    exact["cpu"] = pct(cpu["exact"])
    csc_stats = pct(lat["csc"])
    csc_stats["cpu"] = pct(cpu["csc"])
    n_cmp = len(csc_rows)
    out: dict[str, Any] = {
        "n_docs": args.n,
        "queries": len(qs),
        "k": K,
        "block_size": args.block_size,
        "generation_seconds": gen_s,
        "build": build,
        "size": size,
        "exact": {
            **exact,
            "speedup_p50_vs_csc": csc_stats["p50_ms"] / exact["p50_ms"],
            "speedup_p99_vs_csc": csc_stats["p99_ms"] / exact["p99_ms"],
            "median_documents_evaluated": float(np.median(evaluated)),
            "agreement_with_csc": compare(
                np.array(exact_rows[:n_cmp]), np.array(exact_scores[:n_cmp]), csc_rows, csc_scores
            ),
        },
        "csc_topk": csc_stats,
        "approximate": {},
        "timed_loop_seconds": run_s,
        "load_average_before": load_before,
        "load_average_after": load_after,
    }
    for a in APPROX:
        st = pct(lat[f"approx_{a}"])
        st["cpu"] = pct(cpu[f"approx_{a}"])
        st["recall_at_10"] = recall_at_k(np.array(approx_rows[a]), np.array(exact_rows))
        st["speedup_p50_vs_csc"] = csc_stats["p50_ms"] / st["p50_ms"]
        out["approximate"][str(a)] = st
    print(
        f"exact p50 {exact['p50_ms']:.3f} ms p99 {exact['p99_ms']:.3f} ms | csc p50 {csc_stats['p50_ms']:.2f} ms "
        f"| speedup {out['exact']['speedup_p50_vs_csc']:.1f}x | agreement {out['exact']['agreement_with_csc']}",
        flush=True,
    )
    for a, st in out["approximate"].items():
        print(
            f"approximate={a}: p50 {st['p50_ms']:.3f} ms p99 {st['p99_ms']:.3f} ms recall@10 {st['recall_at_10']:.4f}"
        )
    return out


# ----------------------------------------------------------------------------- real data: SciFact + BM25
def bench_scifact(args: argparse.Namespace) -> dict[str, Any]:
    """BM25 weights over XLM-R token ids on BEIR SciFact: exactness against brute force, and latency."""
    from hybridsearch.datasets import load_dataset
    from hybridsearch.encoders.bm25 import BM25Encoder

    ds = load_dataset("scifact")
    texts = [f"{d.title} {d.text}".strip() for d in ds.corpus]
    qtexts = list(ds.queries.values())
    t0 = time.perf_counter()
    enc = BM25Encoder().fit(texts)
    docs = enc.encode_corpus(texts).sparse
    qs = enc.encode_queries(qtexts).sparse
    encode_s = time.perf_counter() - t0
    index = SparseIndex(docs.shape[1], block_size=args.block_size)
    _, build_ms = timed(lambda: index.add(docs, np.arange(docs.shape[0], dtype=np.int64)))
    rows, scores = index.search(qs, K)
    ref = (qs.astype(np.float64) @ docs.astype(np.float64).T).toarray()
    ref_rows, ref_scores = [], []
    for i in range(ref.shape[0]):
        top = np.lexsort((np.arange(ref.shape[1]), -ref[i]))[:K]
        ref_rows.append(top)
        ref_scores.append(ref[i, top].astype(np.float32))
    lat = []
    for i in range(qs.shape[0]):
        q = qs[i]
        index.search(q, K)
        lat.append(timed(lambda q=q: index.search(q, K))[1])
    csc = docs.tocsc()
    base = []
    for i in range(qs.shape[0]):
        base.append(timed(lambda i=i: np.argpartition(-(csc @ qs[i].T).toarray().ravel(), K)[:K])[1])
    out = {
        "docs": int(docs.shape[0]),
        "queries": int(qs.shape[0]),
        "nnz": int(docs.nnz),
        "nnz_per_doc": docs.nnz / docs.shape[0],
        "query_nnz_median": float(np.median(np.diff(qs.indptr))),
        "encode_seconds": encode_s,
        "build_seconds": build_ms / 1e3,
        "ram_bytes_per_nnz": index.nbytes / index.nnz,
        "agreement_with_brute_force": compare(rows, scores, ref_rows, ref_scores),
        "latency": pct(lat),
        "scipy_matvec_latency": pct(base),
    }
    print(
        f"scifact: {out['docs']} docs, {out['nnz_per_doc']:.0f} nnz/doc, p50 {out['latency']['p50_ms']:.3f} ms, "
        f"agreement {out['agreement_with_brute_force']}"
    )
    return out


# ----------------------------------------------------------------------------- report
def machine() -> dict[str, Any]:
    import numba

    return {
        "cpu": cpu_model(),
        "cores": os.cpu_count(),
        "python": platform.python_version(),
        "numpy": np.__version__,
        "scipy": scipy.__version__,
        "numba": numba.__version__,
        "date": time.strftime("%Y-%m-%d"),
    }


def readme_section(res: dict[str, Any]) -> str:
    m, s = res["machine"], res["synthetic"]
    ex, csc, size, build = s["exact"], s["csc_topk"], s["size"], s["build"]
    agree = ex["agreement_with_csc"]
    lines = [
        README_START,
        "## Sparse inverted index",
        "",
        f"`python benchmarks/bench_sparse.py --n {s['n_docs']} --queries {s['queries']}` ({m['date']}, {m['cpu']}, "
        f"{m['cores']} cores, Python {m['python']}, numpy {m['numpy']}, numba {m['numba']}; load average "
        f"{s['load_average_before']:.1f} before / {s['load_average_after']:.1f} after the timed loop"
        + ("; the machine was shared, so latencies are noisy" if s["load_average_before"] > 1.0 else "")
        + ").",
        f"Reference workload `shared/bench/synth.py`: {s['n_docs']:,} documents, {size['nnz']:,} non-zeros, "
        f"{s['queries']} queries, k = {s['k']}, one query per call, one thread. `SparseIndex(block_size={s['block_size']})`.",
        "",
        "Wall-clock latency, and this thread's CPU time (which leaves out waits for a core when the machine "
        "is shared):",
        "",
        "| search | p50 ms | p90 ms | p99 ms | CPU p50 ms | CPU p99 ms | speedup p50 vs CSC | recall@10 |",
        "|---|---:|---:|---:|---:|---:|---:|---:|",
        f"| `csc_topk` baseline ({csc['queries']} queries) | {csc['p50_ms']:.2f} | {csc['p90_ms']:.2f} | "
        f"{csc['p99_ms']:.2f} | {csc['cpu']['p50_ms']:.2f} | {csc['cpu']['p99_ms']:.2f} | 1.0x | 1.000 |",
        f"| exact | {ex['p50_ms']:.3f} | {ex['p90_ms']:.3f} | {ex['p99_ms']:.3f} | {ex['cpu']['p50_ms']:.3f} | "
        f"{ex['cpu']['p99_ms']:.3f} | {ex['speedup_p50_vs_csc']:.1f}x | 1.000 |",
    ]
    for a, st in s["approximate"].items():
        lines.append(
            f"| approximate={a} | {st['p50_ms']:.3f} | {st['p90_ms']:.3f} | {st['p99_ms']:.3f} | "
            f"{st['cpu']['p50_ms']:.3f} | {st['cpu']['p99_ms']:.3f} | {st['speedup_p50_vs_csc']:.1f}x | "
            f"{st['recall_at_10']:.3f} |"
        )
    lines += [
        "",
        f"- Exact top-10 against `csc_topk` on {sum(agree.values())} queries: {agree['identical']} identical, "
        f"{agree['near_tie_flips']} near-tie flips (scores equal within 1e-6), {agree['errors']} errors. "
        f"Median documents evaluated exactly per query: {ex['median_documents_evaluated']:.0f}.",
        f"- Size: {size['ram_bytes_per_nnz']:.2f} bytes per non-zero in RAM (all index arrays), "
        f"{size['disk_bytes_per_nnz']:.2f} on disk; plus {size['scratch_bytes_per_thread'] / 2**20:.1f} MiB of search "
        f"scratch per thread ({size['ram_bytes_per_nnz_with_scratch']:.2f} B/nnz with it). A memory-mapped load "
        f"gives the same results: {size['mmap_load_gives_same_results']}.",
        f"- Build from CSR: {build['seconds']:.1f} s, peak RSS {build['peak_rss_gb']:.2f} GB "
        f"(the corpus itself took {build['rss_before_gb']:.2f} GB before the build).",
    ]
    sf = res.get("scifact")
    if sf:
        a = sf["agreement_with_brute_force"]
        lines.append(
            f"- SciFact with BM25 weights (`BM25Encoder`, XLM-R token ids): {sf['docs']:,} documents, "
            f"{sf['nnz_per_doc']:.0f} non-zeros/doc, {sf['queries']} queries; exact top-10 against brute force: "
            f"{a['identical']} identical, {a['near_tie_flips']} near-tie flips, {a['errors']} errors; p50 "
            f"{sf['latency']['p50_ms']:.3f} ms, p99 {sf['latency']['p99_ms']:.3f} ms (scipy `docs @ q` + argpartition: "
            f"p50 {sf['scipy_matvec_latency']['p50_ms']:.3f} ms); {sf['ram_bytes_per_nnz']:.2f} B/nnz."
        )
    elif res.get("scifact_skipped"):
        lines.append(f"- SciFact check skipped: {res['scifact_skipped']}.")
    lines += [
        "- Method: sparse-term lists scored term at a time per 65,536-document partition; frequent (dense) terms "
        "never traversed, bounded per 2-document block by quantised maxima summed in uint16, and looked up only for "
        "candidates whose bound reaches the running top-10 threshold (see `hybridsearch/index/_sparse_kernels.py`).",
        "- `approximate=a` evaluates a candidate only when `a` times its score bound reaches the running top-k "
        "threshold (1 = exact).",
        "",
        README_END,
    ]
    return "\n".join(lines)


def update_readme(section: str) -> None:
    path = ROOT / "benchmarks" / "README.md"
    text = path.read_text(encoding="utf-8") if path.exists() else "# Benchmarks\n"
    if README_START in text and README_END in text:
        a = text.index(README_START)
        b = text.index(README_END) + len(README_END)
        text = text[:a] + section + text[b:]
    else:
        text = text.rstrip("\n") + "\n\n" + section + "\n"
    path.write_text(text, encoding="utf-8")


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--n", type=int, default=1_000_000, help="documents in the synthetic corpus")
    p.add_argument("--queries", type=int, default=1000, help="timed queries (after a warm-up)")
    p.add_argument("--csc-queries", type=int, default=300, help="how many of them also run csc_topk")
    p.add_argument("--block-size", type=int, default=2, help="SparseIndex block_size")
    p.add_argument("--synth", type=Path, default=ROOT.parent / "shared" / "bench" / "synth.py")
    p.add_argument("--no-scifact", action="store_true", help="skip the SciFact + BM25 check")
    p.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results" / "sparse.json")
    p.add_argument("--no-readme", action="store_true", help="do not update benchmarks/README.md")
    args = p.parse_args()

    res: dict[str, Any] = {"machine": machine(), "synthetic": bench_synthetic(args)}
    if not args.no_scifact:
        try:
            res["scifact"] = bench_scifact(args)
        except Exception as exc:  # noqa: BLE001 - a missing dataset or tokenizer must not lose the main results
            res["scifact_skipped"] = f"{type(exc).__name__}: {exc}"
            print("scifact skipped:", res["scifact_skipped"])
    res["process_peak_rss_gb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1e6
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(res, indent=2) + "\n", encoding="utf-8")
    print(f"wrote {args.out}")
    if not args.no_readme:
        update_readme(readme_section(res))
        print("updated benchmarks/README.md")


if __name__ == "__main__":
    main()
