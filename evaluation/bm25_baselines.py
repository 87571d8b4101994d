"""Lexical baselines through the index: BM25 over XLM-R tokens (`bm25`, the bge-m3 paper's baseline) and over
Unicode words (`bm25-word`), k1=0.9, b=0.4, on SciFact and the MIRACL-dev pool subsets.

    python evaluation/bm25_baselines.py            # prints a markdown table, writes evaluation/results/bm25.json

Scores on the MIRACL-dev *pool subset* are not comparable to published MIRACL numbers.
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path

from hybridsearch import HybridIndex, evaluate, get_encoder, load_dataset
from hybridsearch.datasets import DATASETS

ENCODERS = ("bm25", "bm25-word")


def run(dataset: str, encoder_name: str) -> dict[str, float]:
    ds = load_dataset(dataset)
    encoder = get_encoder(encoder_name)
    texts = [d.contents for d in ds.corpus]
    encoder.fit(texts)
    index = HybridIndex()
    index.add([d.doc_id for d in ds.corpus], encoder.encode_corpus(texts))
    qids = list(ds.queries)
    t0 = time.perf_counter()
    hits = index.search(encoder.encode_queries([ds.queries[q] for q in qids]), k=100, mode="sparse")
    ms = (time.perf_counter() - t0) / len(qids) * 1e3
    return {**evaluate(ds.qrels, hits.to_run(qids), ("nDCG@10", "R@100")), "ms_per_query": ms}


def main() -> int:
    results: dict[str, dict[str, dict[str, float]]] = {}
    print("| dataset | encoder | nDCG@10 | R@100 | ms/query |\n|---|---|---|---|---|")
    for dataset in DATASETS:
        for name in ENCODERS:
            r = results.setdefault(dataset, {})[name] = run(dataset, name)
            print(f"| {dataset} | {name} | {r['nDCG@10']:.3f} | {r['R@100']:.3f} | {r['ms_per_query']:.2f} |", flush=True)
    out = Path(__file__).parent / "results" / "bm25.json"
    out.parent.mkdir(exist_ok=True)
    out.write_text(json.dumps(results, indent=2) + "\n", encoding="utf-8")
    print(f"\nwrote {out}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
