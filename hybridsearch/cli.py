"""The ``hybridsearch`` command line.

    hybridsearch encode --encoder bm25 corpus.jsonl --out corpus.npz
    hybridsearch index --dataset scifact --encoder dense=minilm,sparse=bm25 --out indexes/built/scifact
    hybridsearch search indexes/built/scifact "what causes cancer?" --mode hybrid
    hybridsearch demo
    hybridsearch doctor
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from .errors import HybridSearchError

__all__ = ["main"]


def _parse_options(pairs: Sequence[str]) -> dict[str, Any]:
    """``key=value`` pairs; values parse as JSON when they can (numbers, booleans), else stay strings."""
    out: dict[str, Any] = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key:
            raise HybridSearchError(f"bad --option {pair!r}; write it as key=value, e.g. batch_size=64")
        try:
            out[key.replace("-", "_")] = json.loads(value)
        except json.JSONDecodeError:
            out[key.replace("-", "_")] = value
    return out


def _cmd_encode(args: argparse.Namespace) -> int:
    from .encoders import get_encoder
    from .encoders.stateful import fit_or_load
    from .textfiles import read_documents

    docs = read_documents(args.input)
    texts = [d.contents for d in docs]
    encoder = get_encoder(args.encoder, **_parse_options(args.option))
    fit_or_load(encoder, texts, state=args.state, save_state=args.save_state, fit=not args.queries)
    outputs = args.outputs.split(",") if args.outputs else None
    t0 = time.perf_counter()
    fn = encoder.encode_queries if args.queries else encoder.encode_corpus
    encoded = fn(texts, outputs=outputs, show_progress=not args.quiet)
    dt = time.perf_counter() - t0
    out = encoded.save(args.out)
    ids_path = out.with_name(out.name[: -len(".npz")] + ".ids.txt")
    ids_path.write_text("".join(d.doc_id + "\n" for d in docs), encoding="utf-8")
    print(f"encoded {len(texts)} texts with {encoder.info.name} in {dt:.1f}s ({len(texts) / max(dt, 1e-9):,.0f} texts/s)")
    print(f"{encoded!r}")
    print(f"wrote {out} and {ids_path}")
    return 0


def _metadata(doc: Any) -> dict[str, Any]:
    """What the index stores as a document's metadata: its title (when it has one) and its metadata object."""
    return {**({"title": doc.title} if doc.title else {}), **doc.metadata}


def _cmd_index(args: argparse.Namespace) -> int:
    from .datasets import load_dataset
    from .encoders import get_encoder
    from .encoders.stateful import fit_or_load
    from .encoders.stored import save_encoder
    from .index import HybridIndex
    from .textfiles import read_documents
    from .types import Encoded

    sources = [x for x in (args.dataset, args.input, args.bundle) if x]
    if len(sources) != 1:
        raise HybridSearchError("give exactly one of --dataset, --input or --bundle")
    options = _parse_options(args.option)
    encoder = None
    if args.bundle:
        encoded = Encoded.load(args.bundle)
        bundle = Path(args.bundle)
        ids_path = Path(args.ids) if args.ids else bundle.with_name(bundle.name.removesuffix(".npz") + ".ids.txt")
        if not ids_path.is_file():
            raise HybridSearchError(f"no ids file {ids_path}; pass --ids (one document id per line)")
        ids = ids_path.read_text(encoding="utf-8").splitlines()
        texts = metadata = None
        if args.texts:
            by_id = {d.doc_id: d for d in read_documents(args.texts)}
            texts = [by_id[i].contents if i in by_id else "" for i in ids]
            metadata = [_metadata(by_id[i]) if i in by_id else {} for i in ids]
        if args.encoder:
            encoder = get_encoder(args.encoder, **options)
            fit_or_load(encoder, [], state=args.state, fit=False)
    else:
        if not args.encoder:
            raise HybridSearchError("--encoder is required with --dataset or --input")
        docs = load_dataset(args.dataset).corpus if args.dataset else read_documents(args.input)
        ids, texts = [d.doc_id for d in docs], [d.contents for d in docs]
        metadata = [_metadata(d) for d in docs]
        encoder = get_encoder(args.encoder, **options)
        fit_or_load(encoder, texts, state=args.state)
        outputs = args.outputs.split(",") if args.outputs else None
        t0 = time.perf_counter()
        encoded = encoder.encode_corpus(texts, outputs=outputs, show_progress=not args.quiet)
        print(f"encoded {len(texts):,} documents in {time.perf_counter() - t0:.1f}s")
    index = HybridIndex(dense_factory=args.dense_factory, multivector_compression=args.multivector_compression,
                        multivector_pool_factor=args.multivector_pool_factor)
    t0 = time.perf_counter()
    index.add(ids, encoded, texts=texts, metadata=metadata)
    out = index.save(args.out)
    if encoder is not None:
        save_encoder(out, args.encoder, options, encoder)
    print(f"indexed {len(index):,} documents ({', '.join(index.modes)}) in {time.perf_counter() - t0:.2f}s -> {out}")
    return 0


def _cmd_search(args: argparse.Namespace) -> int:
    from .encoders import get_encoder
    from .encoders.stateful import fit_or_load
    from .encoders.stored import load_encoder
    from .index import HybridIndex

    index = HybridIndex.load(args.index)
    if args.encoder:
        encoder = get_encoder(args.encoder, **_parse_options(args.option))
        fit_or_load(encoder, [], state=args.state, fit=False)
    else:
        encoder = load_encoder(args.index)
    query = encoder.encode_queries([args.query])
    flt = json.loads(args.filter) if args.filter else None
    t0 = time.perf_counter()
    hits = index.search(query, k=args.k, mode=args.mode, filter=flt, candidates=args.candidates, fusion=args.fusion)
    dt = (time.perf_counter() - t0) * 1e3
    results = hits[0]
    if args.json:
        print(json.dumps([{"doc_id": h.doc_id, "score": h.score, "ranks": h.ranks, "text": h.text, "metadata": h.metadata}
                          for h in results], ensure_ascii=False, indent=2))
        return 0
    print(f"{len(results)} hits in {dt:.2f} ms ({args.mode or 'auto'} mode, {len(index):,} documents)")
    for i, h in enumerate(results, 1):
        ranks = " ".join(f"{m}#{r}" if r else f"{m}#-" for m, r in h.ranks.items())
        text = (h.text or "").replace("\n", " ")
        print(f"{i:3d}. {h.score:9.4f}  {h.doc_id:<14} {ranks:<24} {text[:100]}")
    return 0


def _cmd_demo(args: argparse.Namespace) -> int:
    from .demo import run_demo

    return run_demo(dataset=args.dataset, queries=args.queries, workdir=Path(args.workdir), rebuild=args.rebuild)


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="hybridsearch", description="Hybrid dense + sparse + multi-vector search on bge-m3")
    sub = p.add_subparsers(dest="command", required=True)

    e = sub.add_parser("encode", help="encode a jsonl/tsv file of texts into a saved Encoded bundle (.npz)")
    e.add_argument("input", help=".jsonl (text, optional title and _id/docid/id) or .tsv (id<TAB>text)")
    e.add_argument("--encoder", required=True, help="bge-m3, workers-ai, bm25, bm25-word, minilm, or 'dense=minilm,sparse=bm25'")
    e.add_argument("--out", required=True, help="output bundle path (.npz); ids go to <out>.ids.txt")
    e.add_argument("--outputs", help="comma-separated views to compute: dense,sparse,multivector (default: the encoder's)")
    e.add_argument("--queries", action="store_true", help="encode as queries instead of documents")
    e.add_argument("--option", "-o", action="append", default=[], metavar="KEY=VALUE", help="encoder option, repeatable (e.g. -o batch_size=64 -o model=/path/to/bge-m3)")
    e.add_argument("--state", help="load fitted encoder state (BM25 statistics) from this file instead of fitting on the input")
    e.add_argument("--save-state", help="save the fitted encoder state (BM25 statistics) to this file")
    e.add_argument("--quiet", "-q", action="store_true", help="no progress bar")
    e.set_defaults(func=_cmd_encode)

    i = sub.add_parser("index", help="build an index directory from a dataset, a jsonl/tsv file or an encoded bundle")
    i.add_argument("--dataset", help="a dataset under $HYBRIDSEARCH_DATA: scifact, miracl-subset/sw, ...")
    i.add_argument("--input", help="a .jsonl or .tsv file of documents")
    i.add_argument("--bundle", help="an Encoded bundle (.npz) written by 'hybridsearch encode'")
    i.add_argument("--ids", help="document ids for --bundle, one per line (default: <bundle>.ids.txt)")
    i.add_argument("--texts", help="document texts for --bundle (.jsonl/.tsv with the same ids)")
    i.add_argument("--encoder", help="encoder for documents and, later, queries (e.g. bm25, 'dense=minilm,sparse=bm25')")
    i.add_argument("--option", "-o", action="append", default=[], metavar="KEY=VALUE", help="encoder option, repeatable")
    i.add_argument("--state", help="fitted encoder state (BM25 statistics) to use instead of fitting on the documents")
    i.add_argument("--outputs", help="views to index: dense,sparse,multivector (default: the encoder's)")
    i.add_argument("--dense-factory", default="Flat", help="FAISS factory string: Flat (exact), HNSW32, IVF1024,PQ64, SQ8 ...")
    i.add_argument("--multivector-compression", default="binary", help="fp32, fp16, int8 or binary")
    i.add_argument("--multivector-pool-factor", type=int, default=1, help="token pooling factor for multi-vectors")
    i.add_argument("--out", required=True, help="index directory to write")
    i.add_argument("--quiet", "-q", action="store_true", help="no progress bar")
    i.set_defaults(func=_cmd_index)

    s = sub.add_parser("search", help="search an index directory and print the hits")
    s.add_argument("index", help="index directory written by 'hybridsearch index'")
    s.add_argument("query", help="query text")
    s.add_argument("--mode", choices=["dense", "sparse", "multivector", "hybrid"], help="default: hybrid when possible")
    s.add_argument("-k", type=int, default=10, help="number of hits")
    s.add_argument("--candidates", type=int, default=100, help="candidates per first stage in hybrid/multivector modes")
    s.add_argument("--fusion", default="rrf", help="rrf, weighted_sum, minmax, or e.g. 'weighted_sum(dense=1,sparse=0.3)'")
    s.add_argument("--filter", help='metadata filter as JSON, e.g. \'{"year": {"$gte": 2000}}\'')
    s.add_argument("--encoder", help="query encoder (default: the one recorded in the index directory)")
    s.add_argument("--option", "-o", action="append", default=[], metavar="KEY=VALUE", help="encoder option, repeatable")
    s.add_argument("--state", help="fitted encoder state for --encoder")
    s.add_argument("--json", action="store_true", help="print hits as JSON")
    s.set_defaults(func=_cmd_search)

    d = sub.add_parser("demo", help="index a real dataset offline, answer queries with hybrid search, print an evaluation table")
    d.add_argument("--dataset", default="scifact", help="scifact or miracl-subset/{sw,yo,id} (from $HYBRIDSEARCH_DATA)")
    d.add_argument("--queries", type=int, default=3, help="how many example queries to show")
    d.add_argument("--workdir", default="indexes/built", help="where encoded data and the index are cached")
    d.add_argument("--rebuild", action="store_true", help="ignore cached encodings and index")
    d.set_defaults(func=_cmd_demo)

    from . import doctor
    from .eval_cli import add_parser as add_eval_parser

    doctor.add_parser(sub)
    add_eval_parser(sub)
    return p


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return int(args.func(args) or 0)
    except HybridSearchError as exc:
        print(f"hybridsearch {args.command}: error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
