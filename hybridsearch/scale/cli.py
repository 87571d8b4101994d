"""``hybridsearch encode-corpus``: distributed encoding on Ray from the command line.

    hybridsearch encode-corpus corpus/*.jsonl --encoder bge-m3 --out encoded/ --actors 4 --gpus-per-actor 1
    hybridsearch encode-corpus corpus/ --encoder bm25 --out encoded/ --index indexes/corpus   # and build the index
"""

from __future__ import annotations

import argparse
import json
from typing import Any

__all__ = ["add_parser"]


def _run(args: argparse.Namespace) -> int:
    from ..cli import _parse_options
    from .encode import build_index, encode_corpus

    summary = encode_corpus(
        args.inputs, args.out, encoder=args.encoder, options=_parse_options(args.option),
        outputs=args.outputs.split(",") if args.outputs else None, actors=args.actors,
        cpus_per_actor=args.cpus_per_actor, gpus_per_actor=args.gpus_per_actor, rows_per_unit=args.rows_per_unit,
        batch_size=args.batch_size, max_retries=args.max_retries, address=args.address, num_cpus=args.num_cpus,
        object_store_memory=None if args.object_store_mb is None else int(args.object_store_mb * 2**20),
        show_progress=not args.quiet,
    )
    if args.json:
        print(json.dumps(summary.to_dict(), indent=1))
    else:
        print(summary)
    if not summary.complete:
        print("some units failed; run the same command again to retry them")
        return 1
    if args.index:
        index = build_index(args.out, args.index, dense_factory=args.dense_factory)
        print(f"indexed {len(index):,} documents ({', '.join(index.modes)}) -> {args.index}")
    return 0


def add_parser(subparsers: Any) -> argparse.ArgumentParser:
    """Register ``encode-corpus`` on the main parser's subparsers."""
    p = subparsers.add_parser(
        "encode-corpus", help="encode jsonl/parquet shards on Ray (local or a cluster) into a resumable folder of encoded shards",
    )
    p.add_argument("inputs", nargs="+", help=".jsonl/.parquet files, folders of them, or glob patterns")
    p.add_argument("--out", required=True, help="output folder; rerun with the same arguments to resume")
    p.add_argument("--encoder", required=True, help="bge-m3, bm25, bm25-word, minilm, or e.g. 'dense=minilm,sparse=bm25'")
    p.add_argument("--option", "-o", action="append", default=[], metavar="KEY=VALUE", help="encoder option, repeatable (e.g. -o model=/models/bge-m3 -o batch_size=64)")
    p.add_argument("--outputs", help="views: dense,sparse,multivector (default: the encoder's)")
    p.add_argument("--actors", type=int, default=2, help="encoder actors (one per GPU, or CPU actors)")
    p.add_argument("--cpus-per-actor", type=float, default=1, help="CPUs each actor reserves")
    p.add_argument("--gpus-per-actor", type=float, default=0, help="GPUs each actor reserves (1: one actor per GPU)")
    p.add_argument("--rows-per-unit", type=int, default=10_000, help="rows per resumable unit of work")
    p.add_argument("--batch-size", type=int, default=256, help="documents encoded (and retried) at a time")
    p.add_argument("--max-retries", type=int, default=2, help="retries of a failed batch")
    p.add_argument("--address", help="a running Ray cluster: 'auto', 'HEAD:6379' or 'ray://HEAD:10001' (default: start a local Ray)")
    p.add_argument("--num-cpus", type=int, help="CPUs of a local Ray (default: all)")
    p.add_argument("--object-store-mb", type=float, help="object store of a local Ray, in MiB")
    p.add_argument("--index", help="after a complete run, build a HybridIndex in this directory")
    p.add_argument("--dense-factory", default="Flat", help="FAISS factory string for --index")
    p.add_argument("--json", action="store_true", help="print the summary as JSON")
    p.add_argument("--quiet", "-q", action="store_true", help="no progress bar")
    p.set_defaults(func=_run, long_running=True)  # starts or joins a Ray cluster
    return p
