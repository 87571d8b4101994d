"""Benchmark of the BM25 encoders: encode throughput on SciFact and nDCG@10 on every dataset.

::

    HYBRIDSEARCH_DATA=/work/shared/data python benchmarks/bench_bm25.py [--repeats 3] [--skip-quality]

1. **Throughput.** For ``bm25`` (XLM-R tokens) and ``bm25-word`` (plain, and with English stemming +
   stopwords): ``fit`` + ``encode_corpus`` of the 5,183 SciFact documents (title + text), the same through
   ``fit_encode_corpus`` (one analysis pass), and ``encode_queries`` of the 300 test queries. Best of
   ``--repeats`` runs, in texts per second. The tokenizer file is loaded before timing.
2. **Quality.** nDCG@10 with exact brute-force retrieval (``queries @ docs.T``, top 100), as in the tests,
   for ``bm25``, plain ``bm25-word`` and ``bm25-word`` with per-language analysis (:data:`TUNED`).

Results go to ``benchmarks/results/bm25.json``.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from hybridsearch.datasets import DATASETS, Dataset, load_dataset
from hybridsearch.encoders.bm25 import BM25Encoder, BM25WordEncoder
from hybridsearch.metrics import evaluate

ROOT = Path(__file__).resolve().parents[1]

ENCODERS: dict[str, Callable[[], BM25Encoder | BM25WordEncoder]] = {
    "bm25": BM25Encoder,
    "bm25-word": BM25WordEncoder,
    "bm25-word+stem+stop": lambda: BM25WordEncoder(stemmer="english", stopwords="english"),
}


def best_of(repeats: int, fn: Callable[[], Any]) -> float:
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return min(times)


def throughput(ds: Dataset, repeats: int) -> dict[str, dict[str, float]]:
    docs = [d.contents for d in ds.corpus]
    queries = list(ds.queries.values())
    out = {}
    for label, make in ENCODERS.items():
        enc = make()  # loads the tokenizer outside the timed region
        fit_s = best_of(repeats, lambda enc=enc: enc.fit(docs))
        encode_s = best_of(repeats, lambda enc=enc: enc.encode_corpus(docs))
        fit_encode_s = best_of(repeats, lambda enc=enc: enc.fit_encode_corpus(docs))
        query_s = best_of(repeats, lambda enc=enc: enc.encode_queries(queries))
        out[label] = {
            "fit_s": round(fit_s, 3),
            "encode_corpus_s": round(encode_s, 3),
            "fit_plus_encode_docs_per_s": round(len(docs) / (fit_s + encode_s)),
            "fit_encode_corpus_docs_per_s": round(len(docs) / fit_encode_s),
            "encode_queries_per_s": round(len(queries) / query_s),
        }
        print(label, out[label], flush=True)
    return out


# Per-language analysis for the "tuned" quality column of bm25-word.
TUNED: dict[str, dict[str, Any]] = {
    "scifact": {"stemmer": "english", "stopwords": "english"},
    "miracl-subset/sw": {"stopwords": "swahili"},
    "miracl-subset/yo": {"strip_accents": True, "stopwords": "yoruba"},
    "miracl-subset/id": {"stemmer": "indonesian", "stopwords": "indonesian"},
}


def ndcg10(enc: BM25Encoder | BM25WordEncoder, ds: Dataset, k: int = 100) -> float:
    docs = enc.fit_encode_corpus([d.contents for d in ds.corpus]).sparse
    qids = list(ds.queries)
    scores = (enc.apply_idf(enc.encode_queries([ds.queries[q] for q in qids])).sparse @ docs.T).toarray()
    doc_ids = [d.doc_id for d in ds.corpus]
    run = {}
    for i, q in enumerate(qids):
        top = np.argpartition(-scores[i], k)[:k]
        run[q] = {doc_ids[j]: float(scores[i, j]) for j in top if scores[i, j] > 0}
    return round(evaluate(ds.qrels, run, ["nDCG@10"])["nDCG@10"], 4)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--skip-quality", action="store_true")
    parser.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results" / "bm25.json")
    args = parser.parse_args()

    scifact = load_dataset("scifact")
    result: dict[str, Any] = {
        "machine": {
            "platform": platform.platform(),
            "python": platform.python_version(),
            "cpus": os.cpu_count(),
            "load_avg_before": [round(x, 2) for x in os.getloadavg()],
        },
        "throughput_scifact": {"docs": len(scifact.corpus), "queries": len(scifact.queries)},
    }
    result["throughput_scifact"] |= throughput(scifact, args.repeats)
    if not args.skip_quality:
        quality: dict[str, dict[str, Any]] = {}
        for name in DATASETS:
            ds = scifact if name == "scifact" else load_dataset(name)
            quality[name] = {label: ndcg10(ENCODERS[label](), ds) for label in ("bm25", "bm25-word")}
            quality[name]["bm25-word tuned"] = ndcg10(BM25WordEncoder(**TUNED[name]), ds)
            quality[name]["tuned options"] = TUNED[name]  # type: ignore[assignment]
            print(name, quality[name], flush=True)
        result["ndcg@10"] = quality
    result["machine"]["load_avg_after"] = [round(x, 2) for x in os.getloadavg()]
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2) + "\n")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
