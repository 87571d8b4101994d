"""Benchmark of SparseIndex on several workload shapes against same-run baselines (scipy CSC, SEISMIC).

::

    python benchmarks/bench_sparse.py [--n 1000000] [--shapes reference,short,heavier,real] [--queries 300]
                                      [--repeats 3] [--csc-queries 200] [--no-seismic] [--cache DIR]

Workloads (``benchmarks/sparse_workloads.py``): ``reference`` (``shared/bench/synth.py``: ~76 unique tokens a
document, ~11 a query), ``short`` (the same documents, 3-5 tokens a query), ``heavier`` (~160 a document,
26-30 a query) and ``real`` (BM25 over XLM-R tokens of SciFact + MIRACL subsets, replicated with small
perturbations to ``--n`` documents; the real SciFact and MIRACL queries). Shapes sharing a corpus share its
indexes.

For each corpus:

- **build**: ``SparseIndex.add`` from CSR, one thread: wall and CPU seconds, documents per second, peak RSS;
- **size**: ``SparseIndex.nbytes`` per non-zero (every index array) and the per-thread search scratch;
- **baselines**: ``csc_topk`` (scipy column slicing, exact) on ``--csc-queries`` queries, and SEISMIC
  (``pyseismic-lsr``, ``SeismicIndexLV``, built with 2 threads) at a few ``query_cut`` / ``heap_factor`` settings;
- **latency**: one query per call, k = 10, numba and BLAS on one thread. Every configuration (exact,
  each approximate setting, each SEISMIC setting) is timed in its own pass over the queries, after a
  warm-up pass of its own, so that no configuration inherits another's cached postings; the passes are
  repeated ``--repeats`` times in turn and the report gives the median of the per-pass p50/p99 and their
  range. Wall-clock and this thread's CPU time (which leaves out waits for a core on a shared machine);
- **agreement**: exact top-10 ids against ``csc_topk`` (a query whose ids differ counts as a near-tie flip when
  its sorted scores equal the baseline's within 1e-6, as an error otherwise); recall@10 of approximate
  configurations and SEISMIC against exact search;
- **batch**: all queries in one ``search`` call on 1 and 2 threads (``threads=``): queries per second and
  speed-up.

Results go to ``benchmarks/results/sparse.json`` and the sparse section of ``benchmarks/README.md``.
"""

from __future__ import annotations

import os

# One thread everywhere; must be set before numpy and numba load (the batch runs use threads= explicitly).
for _var in ("NUMBA_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS", "RAYON_NUM_THREADS"):
    os.environ.setdefault(_var, "1")
os.environ.setdefault("HF_HUB_OFFLINE", "1")
_DATA = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "shared", "data")
if not os.environ.get("HYBRIDSEARCH_DATA") and os.path.isdir(_DATA):
    os.environ["HYBRIDSEARCH_DATA"] = os.path.normpath(_DATA)

import argparse  # noqa: E402
import gc  # noqa: E402
import json  # noqa: E402
import platform  # noqa: E402
import resource  # noqa: E402
import sys  # noqa: E402
import threading  # noqa: E402
import time  # noqa: E402
from collections.abc import Callable, Iterator  # noqa: E402
from contextlib import contextmanager  # noqa: E402
from pathlib import Path  # noqa: E402
from typing import Any  # noqa: E402

import numpy as np  # noqa: E402
import psutil  # noqa: E402
import scipy  # noqa: E402
import scipy.sparse as sp  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parent))
import sparse_workloads as wl  # noqa: E402
from _readme import replace_section  # noqa: E402

from hybridsearch.index.sparse import SparseIndex  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
README_START, README_END = "<!-- sparse:start -->", "<!-- sparse:end -->"
K = 10
WARMUP = 20
# our approximate settings, each timed in its own pass
APPROX: tuple[tuple[str, dict[str, Any]], ...] = (
    ("max_evaluations=2000", {"max_evaluations": 2000}),
    ("max_evaluations=800", {"max_evaluations": 800}),
    ("max_evaluations=300", {"max_evaluations": 300}),
    ("approximate=0.95", {"approximate": 0.95}),
)
# SEISMIC (query_cut, heap_factor) settings; query_cut 0 means "all query terms"
SEISMIC_SETTINGS = ((10, 0.8), (20, 0.9), (0, 1.0))
CORPUS_OF = {"reference": "reference", "short": "reference", "heavier": "heavier", "real": "real"}


def default_synth() -> Path:
    here = ROOT.parent / "shared" / "bench" / "synth.py"
    if here.exists():
        return here
    data = os.environ.get("HYBRIDSEARCH_DATA")
    return Path(data).parent / "bench" / "synth.py" if data else here


# ----------------------------------------------------------------------------- helpers
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


def pct(a: list[float]) -> dict[str, float]:
    x = np.asarray(a)
    return {"p50_ms": float(np.percentile(x, 50)), "p99_ms": float(np.percentile(x, 99)), "mean_ms": float(x.mean())}


def timed_pass(fn: Callable[[int], Any], n: int) -> tuple[list[Any], dict[str, Any]]:
    """Run ``fn(i)`` for the warm-up queries, then time it query by query: results and latency percentiles."""
    for i in range(WARMUP):
        fn(i)
    out, wall, cpu = [], [], []
    for i in range(WARMUP, n):
        c, t = time.thread_time(), time.perf_counter()
        out.append(fn(i))
        wall.append((time.perf_counter() - t) * 1e3)
        cpu.append((time.thread_time() - c) * 1e3)
    return out, {"wall": pct(wall), "cpu": pct(cpu)}


def summarize(passes: list[dict[str, Any]]) -> dict[str, Any]:
    """Median and range over repeated passes of each percentile."""
    out: dict[str, Any] = {"passes": passes}
    for clock in ("wall", "cpu"):
        for key in ("p50_ms", "p99_ms"):
            v = [p[clock][key] for p in passes]
            out[f"{clock}_{key}"] = float(np.median(v))
            out[f"{clock}_{key}_range"] = [float(min(v)), float(max(v))]
    return out


def recall_at_k(got: list[np.ndarray], ref: list[np.ndarray]) -> float:
    hits = []
    for g, r in zip(got, ref, strict=True):
        r = r[r >= 0]
        g = g[g >= 0]
        hits.append(len(set(g.tolist()) & set(r.tolist())) / max(1, r.size))
    return float(np.mean(hits))


def compare(
    rows: list[np.ndarray], scores: list[np.ndarray], ref: list[tuple[np.ndarray, np.ndarray]]
) -> dict[str, int]:
    """Top-k agreement with a reference: identical id sets, near-tie flips (scores within 1e-6), errors."""
    same = flips = errors = 0
    for r, s, (rr, rs) in zip(rows, scores, ref, strict=False):
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


def score_gaps(index: SparseIndex, q: sp.csr_matrix) -> dict[str, float]:
    """How close the scores around the top-10 cut are (medians over the queries, exact top-20): the relative gaps
    ``(s10 - s11) / s10`` and ``(s10 - s20) / s10``, and ``s1 / s10``. An approximate search whose score
    estimates err by more than these gaps reorders documents across the cut, whatever its method."""
    _, sc = index.search(q, 2 * K)
    sc = sc.astype(np.float64)
    ok = np.isfinite(sc[:, 2 * K - 1]) & (sc[:, K - 1] > 0)
    sc = sc[ok]
    return {
        "queries": int(ok.sum()),
        "gap_10_11": float(np.median((sc[:, K - 1] - sc[:, K]) / sc[:, K - 1])),
        "gap_10_20": float(np.median((sc[:, K - 1] - sc[:, 2 * K - 1]) / sc[:, K - 1])),
        "ratio_1_10": float(np.median(sc[:, 0] / sc[:, K - 1])),
    }


# ----------------------------------------------------------------------------- workloads
def load_corpus(name: str, args: argparse.Namespace) -> sp.csr_matrix:
    cache = args.cache / f"{name}_{args.n}.npz" if args.cache else None
    if name == "reference":
        synth = wl.load_synth(args.synth)
        return wl.cached(cache, lambda: synth.make_corpus(args.n))
    if name == "real":
        return wl.cached(cache, lambda: wl.make_real(args.n)[0])
    return wl.cached(cache, lambda: wl.make_corpus(wl.SHAPES[name], args.n))


def load_queries(shape: str, args: argparse.Namespace) -> sp.csr_matrix:
    nq = args.queries + WARMUP
    if shape == "reference":
        return wl.load_synth(args.synth).make_queries(nq)
    if shape == "real":
        q = wl.make_real(1)[1]  # the real queries do not depend on the corpus size
        return q[: min(nq, q.shape[0])]
    return wl.make_queries(wl.SHAPES[shape], nq)


# ----------------------------------------------------------------------------- baselines
class Seismic:
    """SEISMIC (``pyseismic-lsr``), large-vocabulary index over integer token ids."""

    def __init__(self, docs: sp.csr_matrix, n_postings: int, cache: Path | None = None) -> None:
        """Build the index, or load it from ``cache`` (``<cache>.index.seismic`` + ``<cache>.json``, written after
        a build), so that a 1M-document SEISMIC build (tens of minutes on 2 cores) is paid once; the build time
        reported is the one measured when the index was built."""
        from importlib.metadata import version

        import seismic

        self.mod = seismic
        self.version = version("pyseismic-lsr")
        meta = cache.with_suffix(".json") if cache else None
        if cache and meta.is_file():
            info = json.loads(meta.read_text())
            if info.get("n_postings") == n_postings and info.get("version") == self.version:
                self.index = seismic.SeismicIndexLV.load(str(cache) + ".index.seismic")
                self.build_seconds = float(info["build_seconds"])
                self.cached = True
                return
        self.cached = False
        ds = seismic.SeismicDatasetLV(dim=docs.shape[1])
        ds.add_documents_by_id(
            [str(i) for i in range(docs.shape[0])],
            docs.indices.astype(np.int64),
            docs.data.astype(np.float32),
            docs.indptr.astype(np.int64),
        )
        t = time.perf_counter()
        self.index = seismic.SeismicIndexLV.build_from_dataset(
            ds, n_postings=n_postings, centroid_fraction=0.1, summary_energy=0.4, num_threads=2
        )
        self.build_seconds = time.perf_counter() - t
        if cache:
            self.index.save(str(cache))
            meta.write_text(json.dumps({"n_postings": n_postings, "version": self.version, "build_seconds": self.build_seconds}))

    def prepare(self, q: sp.csr_matrix) -> list[tuple[np.ndarray, np.ndarray]]:
        st = self.mod.get_seismic_string()
        out = []
        for i in range(q.shape[0]):
            a, b = q.indptr[i], q.indptr[i + 1]
            out.append((np.array([str(t) for t in q.indices[a:b]], dtype=st), q.data[a:b].astype(np.float32)))
        return out

    def search(self, comp: np.ndarray, vals: np.ndarray, query_cut: int, heap_factor: float) -> np.ndarray:
        res = self.index.search("q", comp, vals, k=K, query_cut=query_cut or len(comp), heap_factor=heap_factor)
        return np.array([int(r[2]) for r in res], np.int64)


# ----------------------------------------------------------------------------- one corpus
def bench_corpus(corpus: str, shapes: list[str], args: argparse.Namespace) -> dict[str, Any]:
    t0 = time.perf_counter()
    docs = load_corpus(corpus, args)
    n = docs.shape[0]
    print(f"[{corpus}] {n:,} docs, {docs.nnz / n:.1f} nnz/doc, loaded in {time.perf_counter() - t0:.0f} s", flush=True)
    index = SparseIndex(docs.shape[1])
    gc.collect()
    with peak_rss() as mem:
        c, t = time.process_time(), time.perf_counter()
        index.add(docs, np.arange(n, dtype=np.int64))
        wall, cpu = time.perf_counter() - t, time.process_time() - c
    build = {
        "wall_seconds": wall,
        "cpu_seconds": cpu,
        "docs_per_second_wall": n / wall,
        "docs_per_second_cpu": n / cpu,
        "peak_rss_gb": mem["peak_gb"],
        "rss_before_gb": mem["before_gb"],
    }
    size = {
        "nnz": int(index.nnz),
        "nnz_per_doc": index.nnz / n,
        "bytes_per_nnz": index.nbytes / index.nnz,
        "scratch_bytes_per_thread": int(index.scratch_nbytes),
        "dense_terms": int(sum(s.f_terms.size for s in index._segments)),
    }
    print(
        f"[{corpus}] build {wall:.1f} s wall / {cpu:.1f} s CPU ({n / cpu:,.0f} docs/s CPU), "
        f"{size['bytes_per_nnz']:.2f} B/nnz",
        flush=True,
    )
    queries = {s: load_queries(s, args) for s in shapes}

    # CSC baseline: the exact reference top-10 and its latency (one pass)
    synth = wl.load_synth(args.synth)
    csc = docs.tocsc()
    csc_res: dict[str, Any] = {}
    for s in shapes:
        q = queries[s]
        m = min(q.shape[0], WARMUP + args.csc_queries)
        res, lat = timed_pass(lambda i, q=q, csc=csc: synth.csc_topk(csc, q[i], K), m)
        csc_res[s] = {"top": [(np.asarray(a), np.asarray(b)) for a, b in res], "latency": lat}
    del csc
    gc.collect()

    seis = None
    seis_info: dict[str, Any] = {}
    if args.seismic:
        try:
            cache = args.cache / f"{corpus}_{n}.n{args.seismic_postings}" if args.cache else None
            seis = Seismic(docs, args.seismic_postings, cache)
            seis_info = {
                "build_seconds_2_threads": seis.build_seconds,
                "n_postings": args.seismic_postings,
                "version": seis.version,
                "loaded_from_cache": seis.cached,
            }
            print(f"[{corpus}] SEISMIC {'loaded (built' if seis.cached else 'built'} in {seis.build_seconds:.0f} s"
                  + (")" if seis.cached else ""), flush=True)  # fmt: skip
        except Exception as exc:  # noqa: BLE001 - a missing optional baseline must not lose our results
            seis_info = {"skipped": f"{type(exc).__name__}: {exc}"}
            print(f"[{corpus}] SEISMIC skipped: {seis_info['skipped']}", flush=True)
    del docs
    gc.collect()

    out: dict[str, Any] = {"n_docs": n, "build": build, "size": size, "seismic_index": seis_info, "shapes": {}}
    for s in shapes:
        q = queries[s]
        nq = q.shape[0]
        qrows = [q[i] for i in range(nq)]
        configs: list[tuple[str, Callable[[int], Any]]] = [
            ("exact", lambda i, qrows=qrows, index=index: index.search(qrows[i], K)),
        ]
        for name, kw in APPROX:
            configs.append((name, lambda i, qrows=qrows, kw=kw, index=index: index.search(qrows[i], K, **kw)))
        if seis is not None:
            prepared = seis.prepare(q)
            for qc, hf in SEISMIC_SETTINGS:
                configs.append(
                    (
                        f"SEISMIC query_cut={qc or 'all'} heap_factor={hf}",
                        lambda i, p=prepared, qc=qc, hf=hf, se=seis: se.search(p[i][0], p[i][1], qc, hf),
                    )
                )
        passes: dict[str, list[dict[str, Any]]] = {name: [] for name, _ in configs}
        results: dict[str, list[Any]] = {}
        for rep in range(args.repeats):
            for name, fn in configs:
                res, lat = timed_pass(fn, nq)
                passes[name].append(lat)
                if rep == 0:
                    results[name] = res
        exact_rows = [r[0][0] for r in results["exact"]]
        exact_scores = [r[1][0] for r in results["exact"]]
        shape_out: dict[str, Any] = {
            "queries": nq - WARMUP,
            "query_nnz_mean": float(np.diff(q.indptr).mean()),
            "csc": {"latency": csc_res[s]["latency"], "queries": len(csc_res[s]["top"])},
            "configs": {},
        }
        shape_out["exact_agreement_with_csc"] = compare(exact_rows, exact_scores, csc_res[s]["top"])
        shape_out["score_gaps"] = score_gaps(index, q[WARMUP:])
        for name, _ in configs:
            st = summarize(passes[name])
            if name == "exact":
                st["recall_at_10"] = 1.0
            elif name.startswith("SEISMIC"):
                st["recall_at_10"] = recall_at_k(results[name], exact_rows)
            else:
                st["recall_at_10"] = recall_at_k([r[0][0] for r in results[name]], exact_rows)
            shape_out["configs"][name] = st
            print(
                f"[{s}] {name:42s} p50 {st['wall_p50_ms']:7.3f} ms p99 {st['wall_p99_ms']:7.3f} ms "
                f"(CPU {st['cpu_p50_ms']:.3f} / {st['cpu_p99_ms']:.3f}) recall@10 {st['recall_at_10']:.4f}",
                flush=True,
            )
        c = shape_out["csc"]["latency"]
        print(
            f"[{s}] csc p50 {c['wall']['p50_ms']:.2f} ms p99 {c['wall']['p99_ms']:.2f} ms; "
            f"exact vs csc {shape_out['exact_agreement_with_csc']}",
            flush=True,
        )
        # batch: all timed queries in one call, 1 and 2 threads
        batch_q = q[WARMUP:]
        index.search(batch_q, K, threads=2)
        batch: dict[str, Any] = {}
        for threads in (1, 2):
            secs, cpus = [], []
            for _ in range(args.repeats):
                c, t = time.process_time(), time.perf_counter()
                rows, _ = index.search(batch_q, K, threads=threads)
                secs.append(time.perf_counter() - t)
                cpus.append(time.process_time() - c)
            same = all(np.array_equal(rows[i], exact_rows[i]) for i in range(len(exact_rows)))
            batch[f"threads_{threads}"] = {
                "qps": batch_q.shape[0] / float(np.median(secs)),
                "seconds": secs,
                "cpu_ms_per_query": float(np.median(cpus)) * 1e3 / batch_q.shape[0],
                "same_results": bool(same),
            }
        batch["speedup_2_threads"] = batch["threads_2"]["qps"] / batch["threads_1"]["qps"]
        shape_out["batch"] = batch
        print(
            f"[{s}] batch QPS 1 thread {batch['threads_1']['qps']:.0f}, 2 threads {batch['threads_2']['qps']:.0f} "
            f"({batch['speedup_2_threads']:.2f}x)",
            flush=True,
        )
        out["shapes"][s] = shape_out
    del seis, index
    gc.collect()
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


def _ms(st: dict[str, Any], key: str) -> str:
    lo, hi = st[f"{key}_range"]
    return f"{st[key]:.2f} ({lo:.2f}–{hi:.2f})"


def readme_section(results: list[dict[str, Any]]) -> str:
    lines = [
        README_START,
        "## Sparse inverted index",
        "",
        "One query per call, k = 10, one thread; each configuration timed in its own pass over the queries after "
        "its own warm-up, passes repeated; p50 / p99 in ms are the median over the repeats (range in brackets). "
        "Recall@10 is against our exact search, whose top-10 is checked against scipy `csc_topk`. CPU times are "
        "this thread's CPU time per query: on a shared machine they leave out waits for a core, which dominate "
        "the wall-clock p99 and the batch throughput when the load average is far above the core count.",
        "",
    ]
    for res in results:
        lines += _run_section(res)
    lines += [
        "- Method: sparse-term lists scored term at a time per 65,536-document partition; frequent (dense) terms "
        "never traversed, bounded per 2-document block by quantised maxima summed in uint16, and looked up only for "
        "candidates whose bound reaches the running top-10 threshold, best bound first through a bucketed order "
        "(see `hybridsearch/index/_sparse_kernels.py`).",
        "- `max_evaluations=m` evaluates at most m candidates per query, best bound first; `approximate=a` "
        "evaluates a candidate only when a times its bound reaches the threshold. Returned scores stay exact.",
        "",
        README_END,
    ]
    return "\n".join(lines)


def _has_seismic(res: dict[str, Any]) -> bool:
    return any(
        name.startswith("SEISMIC")
        for c in res["corpora"].values()
        for s in c["shapes"].values()
        for name in s["configs"]
    )


def _run_section(res: dict[str, Any]) -> list[str]:
    m, a = res["machine"], res["args"]
    lines = [
        f"### {a['n']:,} documents" + (", with SEISMIC" if _has_seismic(res) else ""),
        "",
        f"`python benchmarks/bench_sparse.py --n {a['n']} --queries {a['queries']} --repeats {a['repeats']} "
        f"--shapes {','.join(a['shapes'])}` "
        f"({m['date']}, {m['cpu']}, {m['cores']} cores, Python {m['python']}, numpy {m['numpy']}, numba "
        f"{m['numba']}; load average {res['load_average'][0]:.1f} at the start, {res['load_average'][1]:.1f} at "
        "the end).",
        "",
    ]
    for corpus, c in res["corpora"].items():
        b, z = c["build"], c["size"]
        lines.append(
            f"**Corpus `{corpus}`**: {c['n_docs']:,} documents, {z['nnz_per_doc']:.0f} non-zeros each; build "
            f"{b['wall_seconds']:.1f} s wall, {b['cpu_seconds']:.1f} s CPU ({b['docs_per_second_cpu']:,.0f} docs/s "
            f"CPU), peak RSS {b['peak_rss_gb']:.1f} GB; {z['bytes_per_nnz']:.2f} bytes per non-zero "
            f"(+{z['scratch_bytes_per_thread'] / 2**20:.1f} MiB scratch per searching thread)"
            + (
                f"; SEISMIC (`pyseismic-lsr` {c['seismic_index'].get('version') or '0.5.4'}, `SeismicIndexLV`) "
                f"built in {c['seismic_index']['build_seconds_2_threads']:.0f} s on 2 threads "
                f"(n_postings {c['seismic_index']['n_postings']}, centroid_fraction 0.1, summary_energy 0.4)."
                if "build_seconds_2_threads" in c["seismic_index"]
                else "."
            )
        )
        lines.append("")
        for shape, s in c["shapes"].items():
            ag = s["exact_agreement_with_csc"]
            csc = s["csc"]["latency"]
            lines += [
                f"*Shape `{shape}`* ({s['queries']} queries, {s['query_nnz_mean']:.1f} tokens each). Exact top-10 "
                f"against `csc_topk` on {sum(ag.values())} queries: {ag['identical']} identical, "
                f"{ag['near_tie_flips']} near-tie flips (scores equal within 1e-6), {ag['errors']} errors."
                + (
                    f" Around the cut (medians): the 11th score is {100 * s['score_gaps']['gap_10_11']:.2f}% below "
                    f"the 10th, the 20th {100 * s['score_gaps']['gap_10_20']:.1f}% below; the 1st is "
                    f"{s['score_gaps']['ratio_1_10']:.2f}x the 10th."
                    if "score_gaps" in s
                    else ""
                ),
                "",
                "| search | p50 ms | p99 ms | CPU p50 ms | CPU p99 ms | recall@10 |",
                "|---|---:|---:|---:|---:|---:|",
                f"| scipy `csc_topk` ({s['csc']['queries']} queries, one pass) | {csc['wall']['p50_ms']:.2f} | "
                f"{csc['wall']['p99_ms']:.2f} | {csc['cpu']['p50_ms']:.2f} | {csc['cpu']['p99_ms']:.2f} | 1.000 |",
            ]
            for name, st in s["configs"].items():
                label = f"ours, {name}" if not name.startswith("SEISMIC") else name
                lines.append(
                    f"| {label} | {_ms(st, 'wall_p50_ms')} | {_ms(st, 'wall_p99_ms')} | {st['cpu_p50_ms']:.2f} | "
                    f"{st['cpu_p99_ms']:.2f} | {st['recall_at_10']:.3f} |"
                )
            bt = s["batch"]
            cpu_qps = (
                f"; CPU time per query on 1 thread {bt['threads_1']['cpu_ms_per_query']:.2f} ms "
                f"({1e3 / bt['threads_1']['cpu_ms_per_query']:,.0f} QPS of CPU)"
                if "cpu_ms_per_query" in bt["threads_1"]
                else ""
            )
            lines += [
                "",
                f"Batch of {s['queries']} queries in one call, exact: {bt['threads_1']['qps']:,.0f} QPS on 1 thread, "
                f"{bt['threads_2']['qps']:,.0f} QPS on 2 threads ({bt['speedup_2_threads']:.2f}x wall-clock; same "
                f"results: {bt['threads_2']['same_results']}){cpu_qps}.",
                "",
            ]
    return lines


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--n", type=int, default=1_000_000, help="documents per corpus")
    p.add_argument("--shapes", default="reference,short,heavier,real", help="comma-separated workload shapes")
    p.add_argument("--queries", type=int, default=300, help="timed queries per shape (after a warm-up)")
    p.add_argument("--csc-queries", type=int, default=200, help="queries timed with csc_topk (exact reference)")
    p.add_argument("--repeats", type=int, default=3, help="passes per configuration")
    p.add_argument("--no-seismic", dest="seismic", action="store_false", help="skip the SEISMIC baseline")
    p.add_argument("--seismic-postings", type=int, default=2500, help="SEISMIC n_postings")
    p.add_argument("--synth", type=Path, default=default_synth())
    p.add_argument("--cache", type=Path, default=None, help="cache generated corpora (.npz) and built SEISMIC indexes here")
    p.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results" / "sparse.json")
    p.add_argument("--no-readme", action="store_true", help="do not update benchmarks/README.md")
    p.add_argument(
        "--readme-from", type=Path, nargs="+", default=None, help="only rewrite the README section from these JSONs"
    )
    args = p.parse_args()
    if args.readme_from:
        runs = [json.loads(f.read_text(encoding="utf-8")) for f in args.readme_from]
        replace_section(ROOT / "benchmarks" / "README.md", README_START, README_END, readme_section(runs))
        print("updated benchmarks/README.md")
        return
    shapes = [s.strip() for s in args.shapes.split(",") if s.strip()]
    unknown = [s for s in shapes if s not in CORPUS_OF]
    if unknown:
        raise SystemExit(f"unknown shapes {unknown}; choose from {sorted(CORPUS_OF)}")

    res: dict[str, Any] = {
        "machine": machine(),
        "args": {
            "n": args.n,
            "queries": args.queries,
            "repeats": args.repeats,
            "shapes": shapes,
            "seismic": args.seismic,
        },
        "corpora": {},
    }
    load0 = os.getloadavg()[0]
    args.out.parent.mkdir(parents=True, exist_ok=True)
    for corpus in dict.fromkeys(CORPUS_OF[s] for s in shapes):
        res["corpora"][corpus] = bench_corpus(corpus, [s for s in shapes if CORPUS_OF[s] == corpus], args)
        res["load_average"] = [load0, os.getloadavg()[0]]
        res["process_peak_rss_gb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1e6
        args.out.write_text(json.dumps(res, indent=1) + "\n", encoding="utf-8")  # after each corpus
    print(f"wrote {args.out}")
    if not args.no_readme:
        replace_section(ROOT / "benchmarks" / "README.md", README_START, README_END, readme_section([res]))
        print("updated benchmarks/README.md")


if __name__ == "__main__":
    main()
