"""The bge-m3 paper's MIRACL table (rows: modes, columns: languages + average), offline or with real bge-m3.

    python evaluation/miracl.py                      # offline: bm25 and bm25-word on the MIRACL-dev pool subsets
    python evaluation/miracl.py --encoder bge-m3 --full --check evaluation/expected/bge-m3-miracl-paper.json

Offline, it evaluates the MIRACL-dev *pool subsets* (sw, yo, id) under ``$HYBRIDSEARCH_DATA``; their scores are
not comparable to published MIRACL numbers. ``--full`` evaluates the full MIRACL dev sets (``miracl/<lang>``):
topics and qrels come from ``$HYBRIDSEARCH_DATA/miracl``, the corpus from ``miracl/corpus/<lang>`` or the Hugging
Face hub. Every other option is ``hybridsearch eval``'s (see ``hybridsearch eval --help``); this script only sets
the datasets and modes.
"""

from __future__ import annotations

import argparse
import sys

from hybridsearch.cli import main as cli_main
from hybridsearch.errors import HybridSearchError

LANGS = ("sw", "yo", "id")


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0], add_help=True)
    p.add_argument("--langs", default=",".join(LANGS), help="comma-separated MIRACL languages (default sw,yo,id)")
    p.add_argument("--full", action="store_true", help="full MIRACL dev sets (miracl/<lang>) instead of the pool subsets")
    p.add_argument("--encoder", default="bm25,bm25-word", help="default bm25,bm25-word; bge-m3 for the paper's modes")
    p.add_argument("--modes", help="default: sparse for lexical encoders, the paper's five modes for bge-m3")
    args, rest = p.parse_known_args(argv)
    family = "miracl" if args.full else "miracl-subset"
    datasets = ",".join(f"{family}/{lang.strip()}" for lang in args.langs.split(",") if lang.strip())
    modes = args.modes or ("dense,sparse,multivector,dense+sparse:weighted_sum(dense=1,sparse=0.3),"
                           "all:weighted_sum(dense=1,sparse=0.3,multivector=1)" if "bge-m3" in args.encoder else "sparse")
    forwarded = ["eval", "--encoder", args.encoder, "--modes", modes, *rest]
    if "--check" in rest:
        forwarded = ["eval", "--dataset", datasets, *rest]
    else:
        forwarded[1:1] = ["--dataset", datasets]
    try:
        return cli_main(forwarded)
    except HybridSearchError as exc:  # pragma: no cover - cli_main reports its own errors
        print(f"error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
