"""Benchmark of HybridIndex's own costs: checksums, the document store at 1M documents, saves, loads, filters, fusion.

    python benchmarks/bench_hybrid_index.py [--docs 1000000] [--hybrid-docs 100000]

1. **Checksums:** zlib CRC-32 and SHA-256 throughput over a 256 MB file in the page cache (what ``save`` and
   ``load(verify=True)`` pay per byte).
2. **1M documents** with 64-d dense vectors (Flat), ~200-byte texts and three metadata fields: ``add``, the first
   save, a save after 1,000 deletions (hard links), a save after 1,000 additions, ``load`` with and without CRC
   checks, the doc id dictionary built on first use, ``get``, filter masks and a filtered dense search.
3. **Hybrid search overhead** on ``--hybrid-docs`` documents (64-d dense + bge-m3-like sparse from
   ``shared/bench/synth.py``): per-query latency of dense, sparse and hybrid (RRF, weighted sum), with and without a
   filter, against the sum of the two first stages.

Results go to ``benchmarks/results/hybrid_index.json`` and the hybrid-index section of ``benchmarks/README.md``.
"""

from __future__ import annotations

import argparse
import hashlib
import importlib.util
import json
import os
import platform
import shutil
import tempfile
import time
import zlib
from pathlib import Path
from typing import Any

import numpy as np

from hybridsearch.index import HybridIndex
from hybridsearch.index.filters import parse_filter
from hybridsearch.types import Encoded

ROOT = Path(__file__).resolve().parents[1]
README_START, README_END = "<!-- hybrid-index:start -->", "<!-- hybrid-index:end -->"
LANGS = ("sw", "yo", "id", "en", "fr", "de", "es", "pt", "ar", "zh")


def timed(fn: Any, *args: Any, **kw: Any) -> tuple[Any, float]:
    t = time.perf_counter()
    out = fn(*args, **kw)
    return out, time.perf_counter() - t


def checksum_throughput(tmp: Path, mb: int = 256) -> dict[str, float]:
    path = tmp / "blob"
    path.write_bytes(np.random.default_rng(0).integers(0, 255, mb << 20, dtype=np.uint8).tobytes())
    out = {}
    for name in ("crc32", "sha256"):
        best = float("inf")
        for _ in range(3):
            t = time.perf_counter()
            with open(path, "rb", buffering=0) as f:
                state: Any = 0 if name == "crc32" else hashlib.sha256()
                while chunk := f.read(16 << 20):
                    if name == "crc32":
                        state = zlib.crc32(chunk, state)
                    else:
                        state.update(chunk)
            best = min(best, time.perf_counter() - t)
        out[f"{name}_gb_per_s"] = round(mb / 1024 / best, 2)
    path.unlink()
    return out


def unit(a: np.ndarray) -> np.ndarray:
    return (a / np.linalg.norm(a, axis=1, keepdims=True)).astype(np.float32)


def du(path: Path) -> int:
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file())


def million(tmp: Path, n: int) -> dict[str, Any]:
    rng = np.random.default_rng(1)
    dense = unit(rng.normal(size=(n, 64)).astype(np.float32))
    ids = [f"doc-{i:08d}" for i in range(n)]
    words = np.array(["lorem", "ipsum", "dolor", "sit", "amet", "consectetur", "adipiscing", "elit", "sed", "do"])
    pieces = words[rng.integers(0, len(words), size=(1000, 30))]
    templates = [" ".join(p) for p in pieces]
    texts = [templates[i % 1000] + f" {i}" for i in range(n)]
    langs = rng.integers(0, len(LANGS), n)
    years = rng.integers(1950, 2025, n)
    metadata = [{"lang": LANGS[a], "year": int(b), "title": f"title {i}"} for i, (a, b) in enumerate(zip(langs, years, strict=True))]
    enc = Encoded(dense=dense)
    r: dict[str, Any] = {"docs": n, "dense_dim": 64}
    index = HybridIndex()
    _, r["add_s"] = timed(index.add, ids, enc, texts=texts, metadata=metadata)
    del texts, metadata
    path = tmp / "million"
    _, r["save_first_s"] = timed(index.save, path)
    r["bytes_on_disk"] = du(path)
    r["bytes_docstore"] = index.info()["bytes"]["docs"]
    index.delete(ids[:1000])
    _, r["save_after_1000_deletes_s"] = timed(index.save)
    new = [f"new-{i}" for i in range(1000)]
    index.add(new, Encoded(dense=unit(rng.normal(size=(1000, 64)).astype(np.float32))), texts=new)
    _, r["save_after_1000_adds_s"] = timed(index.save)
    del index
    loaded, r["load_mmap_verify_s"] = timed(HybridIndex.load, path, verify=True)
    loaded, r["load_mmap_noverify_s"] = timed(HybridIndex.load, path, verify=False)
    _, r["first_id_lookup_s"] = timed(loaded.__contains__, "doc-00500000")
    t = time.perf_counter()
    for i in range(1000):
        loaded.get(ids[1000 + (i * 997) % (n - 1000)])
    r["get_us"] = round((time.perf_counter() - t) / 1000 * 1e6, 1)
    for label, flt in (("eq", {"lang": "sw"}), ("range", {"year": {"$gte": 2000, "$lt": 2010}}),
                       ("in_and_range", {"lang": {"$in": ["sw", "yo"]}, "year": {"$gte": 2015}})):
        loaded.search(Encoded(dense=dense[:1]), k=10, mode="dense", filter=flt)  # warm up
        t = time.perf_counter()
        for _ in range(5):
            loaded._docs.filter_mask(parse_filter(flt), loaded._next_row)  # the mask search() builds
        r[f"filter_mask_{label}_ms"] = round((time.perf_counter() - t) / 5 * 1e3, 1)
    q = Encoded(dense=unit(rng.normal(size=(20, 64)).astype(np.float32)))
    for label, flt in (("none", None), ("eq", {"lang": "sw"}), ("rare", {"year": 1977, "lang": "zh"})):
        if flt is not None:
            r[f"filter_{label}_share"] = float(loaded._docs.filter_mask(parse_filter(flt), loaded._next_row).mean())
        loaded.search(q[:1], k=10, mode="dense", filter=flt)
        _, s = timed(loaded.search, q, k=10, mode="dense", filter=flt)
        r[f"dense_search_filter_{label}_ms_per_query"] = round(s / 20 * 1e3, 2)
    shutil.rmtree(path)
    return {k: round(v, 3) if isinstance(v, float) else v for k, v in r.items()}


def hybrid_overhead(n: int) -> dict[str, Any]:
    spec = importlib.util.spec_from_file_location("synth", ROOT.parent / "shared" / "bench" / "synth.py")
    synth = importlib.util.module_from_spec(spec)  # type: ignore[arg-type]
    spec.loader.exec_module(synth)  # type: ignore[union-attr]
    rng = np.random.default_rng(2)
    sparse = synth.make_corpus(n)
    qs = synth.make_queries(50)
    dense = unit(rng.normal(size=(n, 64)).astype(np.float32))
    index = HybridIndex()
    enc = Encoded(dense=dense, sparse=sparse)
    _, add_s = timed(index.add, [str(i) for i in range(n)], enc, metadata=[{"lang": LANGS[i % 10]} for i in range(n)])
    q = Encoded(dense=unit(rng.normal(size=(qs.shape[0], 64)).astype(np.float32)), sparse=qs)
    out: dict[str, Any] = {"docs": n, "queries": qs.shape[0], "add_s": round(add_s, 2)}
    runs = [("dense", {"mode": "dense"}), ("sparse", {"mode": "sparse"}),
            ("dense top-100", {"mode": "dense", "k": 100}), ("sparse top-100", {"mode": "sparse", "k": 100}),
            ("hybrid rrf", {"mode": "hybrid", "fusion": "rrf"}),
            ("hybrid weighted_sum", {"mode": "hybrid", "fusion": "weighted_sum"}),
            ("hybrid rrf + filter lang=sw", {"mode": "hybrid", "fusion": "rrf", "filter": {"lang": "sw"}})]
    for label, kw in runs:
        kw = {"k": 10, **kw}
        index.search(q[:2], **kw)  # warm up (numba compiles on first use)
        best = float("inf")
        for _ in range(3):
            _, s = timed(index.search, q, **kw)
            best = min(best, s)
        out[label] = round(best / qs.shape[0] * 1e3, 2)
    return out


def write_readme(res: dict[str, Any]) -> None:
    m, h, c = res["million"], res["hybrid"], res["checksums"]
    lines = [
        README_START,
        "## HybridIndex: persistence, document store, filters, fusion overhead",
        "",
        f"`python benchmarks/bench_hybrid_index.py` ({res['date']}, {res['machine']}; shared machine, load average "
        f"{res['load_before']} before / {res['load_after']} after: timings are noisy). Raw numbers: "
        "`benchmarks/results/hybrid_index.json`.",
        "",
        f"**Checksums** (256 MB file in the page cache, one thread): zlib CRC-32 {c['crc32_gb_per_s']} GB/s, "
        f"SHA-256 {c['sha256_gb_per_s']} GB/s. The manifest records CRC-32s: every written byte is read back once "
        "per save, and `load(verify=True)` reads every byte once.",
        "",
        f"**{m['docs']:,} documents** (64-d Flat dense, ~200-byte texts, 3 metadata fields; "
        f"{m['bytes_on_disk'] / 2**20:,.0f} MB on disk, document store {m['bytes_docstore'] / 2**20:,.0f} MB):",
        "",
        "| operation | time |",
        "|---|---:|",
        f"| add (one call: ids, texts, metadata columns, FAISS) | {m['add_s']:.1f} s |",
        f"| first save (write, fsync, CRC, commit) | {m['save_first_s']:.1f} s |",
        f"| save after deleting 1,000 (unchanged files hard-linked) | {m['save_after_1000_deletes_s']:.2f} s |",
        f"| save after adding 1,000 (dense rewritten, documents: one new part) | {m['save_after_1000_adds_s']:.2f} s |",
        f"| load, memory-mapped, CRC-checked | {m['load_mmap_verify_s']:.2f} s |",
        f"| load, memory-mapped, sizes only (`verify=False`) | {m['load_mmap_noverify_s']:.3f} s |",
        f"| doc id dictionary, built on first use | {m['first_id_lookup_s']:.2f} s |",
        f"| `get(doc_id)` | {m['get_us']:.0f} µs |",
        f"| filter mask `lang = sw` / year range / `$in` + range | {m['filter_mask_eq_ms']} / {m['filter_mask_range_ms']} / "
        f"{m['filter_mask_in_and_range_ms']} ms |",
        f"| dense top-10 per query: no filter / `lang = sw` ({m['filter_eq_share']:.1%} of documents) / "
        f"`year = 1977, lang = zh` ({m['filter_rare_share']:.2%}) | "
        f"{m['dense_search_filter_none_ms_per_query']} / {m['dense_search_filter_eq_ms_per_query']} / "
        f"{m['dense_search_filter_rare_ms_per_query']} ms |",
        "",
        f"**Hybrid search** over {h['docs']:,} documents (64-d dense + synthetic bge-m3-like sparse, "
        f"`shared/bench/synth.py`), {h['queries']} queries in one batch, k = 10, 100 candidates per first stage; "
        "ms per query (best of 3):",
        "",
        "| search | ms / query |",
        "|---|---:|",
        *[f"| {k} | {v} |" for k, v in h.items() if k not in ("docs", "queries", "add_s")],
        "",
        "A hybrid search costs its two top-100 first stages plus the union, exact scores (weighted sum only) and fusion.",
        "",
        README_END,
    ]
    readme = ROOT / "benchmarks" / "README.md"
    text = readme.read_text() if readme.exists() else "# Benchmarks\n"
    block = "\n".join(lines)
    if README_START in text:
        a, b = text.index(README_START), text.index(README_END) + len(README_END)
        text = text[:a] + block + text[b:]
    else:
        text = text.rstrip() + "\n\n" + block + "\n"
    readme.write_text(text)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--docs", type=int, default=1_000_000)
    ap.add_argument("--hybrid-docs", type=int, default=100_000)
    ap.add_argument("--workdir", default=None, help="where the index is written (default: a temporary directory)")
    ap.add_argument("--no-readme", action="store_true")
    args = ap.parse_args()
    res: dict[str, Any] = {
        "date": time.strftime("%Y-%m-%d"),
        "machine": f"{os.cpu_count()} vCPU {platform.machine()}, Python {platform.python_version()}, numpy {np.__version__}",
        "load_before": round(os.getloadavg()[0], 2),
    }
    with tempfile.TemporaryDirectory(dir=args.workdir) as tmp:
        res["checksums"] = checksum_throughput(Path(tmp))
        print("checksums", res["checksums"], flush=True)
        res["million"] = million(Path(tmp), args.docs)
        print("million", res["million"], flush=True)
    res["hybrid"] = hybrid_overhead(args.hybrid_docs)
    print("hybrid", res["hybrid"], flush=True)
    res["load_after"] = round(os.getloadavg()[0], 2)
    out = ROOT / "benchmarks" / "results" / "hybrid_index.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(res, indent=2) + "\n")
    if not args.no_readme:
        write_readme(res)


if __name__ == "__main__":
    main()
