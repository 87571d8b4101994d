"""The ``hybridsearch`` command line.

    hybridsearch encode --encoder bm25 corpus.jsonl --out corpus.npz
    hybridsearch index --dataset scifact --encoder dense=minilm,sparse=bm25 --out indexes/built/scifact
    hybridsearch search indexes/built/scifact "what causes cancer?" --mode dense+sparse
    hybridsearch demo
    hybridsearch doctor

Every failure ends in one line on stderr, ``hybridsearch <command>: error: <what to fix>``, never a traceback.
Exit status: 0 success, 2 bad input (arguments, files, filters, an unusable index directory or model), 1 a
failure of ours or of a remote service (an unexpected exception, a full disk, a Workers AI outage), 130 when
interrupted. ``HYBRIDSEARCH_DEBUG=1`` re-raises unexpected exceptions with their traceback.

Subcommands are registered in :func:`build_parser` with ``set_defaults(func=...)``; :func:`main` gives each the
same error handling. A subcommand that serves or runs for long sets ``set_defaults(long_running=True)`` so the
property tests exercise it at the argument level only.
"""

from __future__ import annotations

import argparse
import errno
import json
import os
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any, NoReturn

from ._atomic import write_text_atomic
from ._version import __version__
from .errors import (
    APIConnectionError,
    APIResponseError,
    HybridSearchError,
    InputError,
    QueueTimeoutError,
    RateLimitError,
    RequestTimeoutError,
    ServerError,
)
from .modes import SEARCH_MODES

__all__ = ["ArgumentParser", "build_parser", "exit_status", "main", "parse_filter_arg"]

#: Exit status for bad input (the user can fix it) and for a failure on our side.
EXIT_BAD_INPUT = 2
EXIT_FAILURE = 1
EXIT_INTERRUPTED = 130

FILTER_EXAMPLE = '\'{"year": {"$gte": 2000}, "lang": "en"}\''

# OSErrors about a path the user named (not about the machine): bad input.
_INPUT_ERRNOS = {errno.ENOENT, errno.EACCES, errno.EPERM, errno.EISDIR, errno.ENOTDIR, errno.EEXIST, errno.ENAMETOOLONG,
                 errno.EROFS, errno.ELOOP, errno.ENOTEMPTY}


class ArgumentParser(argparse.ArgumentParser):
    """argparse with one-line usage errors (exit status 2) that point at ``--help``."""

    def error(self, message: str) -> NoReturn:
        self.exit(EXIT_BAD_INPUT, f"{self.prog}: error: {_one_line(message)} (see '{self.prog} --help')\n")


def _one_line(text: str) -> str:
    return " ".join(str(text).split()) or "(no message)"


def exit_status(exc: BaseException) -> int:
    """2 for errors the user can fix (bad arguments or files), 1 for failures of ours or of a remote service."""
    remote = (APIConnectionError, APIResponseError, QueueTimeoutError, RateLimitError, RequestTimeoutError, ServerError)
    if isinstance(exc, remote):
        return EXIT_FAILURE
    if isinstance(exc, HybridSearchError):
        return EXIT_BAD_INPUT
    if isinstance(exc, OSError) and exc.errno in _INPUT_ERRNOS:
        return EXIT_BAD_INPUT
    if isinstance(exc, UnicodeDecodeError):  # a reader that does not name its file (textfiles' readers do)
        return EXIT_BAD_INPUT
    return EXIT_FAILURE


def _describe(exc: BaseException) -> str:
    if isinstance(exc, HybridSearchError):
        return _one_line(str(exc))
    if isinstance(exc, OSError) and exc.strerror:
        where = f": {exc.filename}" if exc.filename is not None else ""
        return _one_line(f"{exc.strerror}{where}")
    if isinstance(exc, UnicodeDecodeError):
        return f"an input file is not UTF-8 (byte 0x{exc.object[exc.start:exc.start + 1].hex()}: {exc.reason}); save it as UTF-8"
    if isinstance(exc, MemoryError):
        return "out of memory; process the input in smaller parts"
    return _one_line(
        f"internal error {type(exc).__name__}: {exc} (a bug in hybridsearch; HYBRIDSEARCH_DEBUG=1 shows the traceback)"
    )


def parse_filter_arg(text: str, option: str = "--filter") -> dict[str, Any]:
    """Parse and validate a metadata filter given as JSON on the command line; raises InputError / FilterError.

    A JSON syntax error names the character position and shows a valid example.
    """
    from .index.filters import parse_filter
    from .textfiles import json_type

    def no_constants(name: str) -> Any:
        raise InputError(f"{option}: {name} is not valid JSON; write e.g. {option} {FILTER_EXAMPLE}")

    try:
        spec = json.loads(text, parse_constant=no_constants)
    except json.JSONDecodeError as exc:
        near = text[max(0, exc.pos - 15) : exc.pos + 15]
        raise InputError(
            f"{option} is not valid JSON: {exc.msg} at character {exc.pos + 1} (near {near!r}); "
            f"write e.g. {option} {FILTER_EXAMPLE}"
        ) from None
    except RecursionError:
        raise InputError(f"{option} is nested too deeply; write e.g. {option} {FILTER_EXAMPLE}") from None
    if not isinstance(spec, dict):
        raise InputError(f"{option} must be a JSON object, got {json_type(spec)}; write e.g. {option} {FILTER_EXAMPLE}")
    parse_filter(spec)
    return spec


def _parse_options(pairs: Sequence[str]) -> dict[str, Any]:
    """``key=value`` pairs; values parse as JSON when they can (numbers, booleans), else stay strings."""
    out: dict[str, Any] = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key:
            raise InputError(f"bad --option {pair!r}; write it as key=value, e.g. batch_size=64")
        try:
            out[key.replace("-", "_")] = json.loads(value)
        except (ValueError, RecursionError):
            out[key.replace("-", "_")] = value
    return out


def _empty_policy(docs: list[Any], policy: str | None) -> tuple[list[Any], list[str]]:
    """Apply ``--empty-documents``: the documents to encode, and the ids of the empty ones (kept or skipped)."""
    from .encoders import is_empty_text

    empty = [d.doc_id for d in docs if is_empty_text(d.contents)]
    if not empty:
        return docs, empty
    if policy == "error":
        raise InputError(
            f"{_count(len(empty), 'document')} empty or whitespace-only (ids {_preview(empty)}); remove "
            f"{'them' if len(empty) > 1 else 'it'}, or pass --empty-documents keep (index with no terms) or skip"
        )
    if policy == "skip":
        docs = [d for d in docs if not is_empty_text(d.contents)]
        if not docs:
            raise InputError(f"all {len(empty):,} documents are empty or whitespace-only; there is nothing to index")
    return docs, empty


def _count(n: int, noun: str) -> str:
    plural = noun[:-1] + "ies" if noun.endswith("y") else noun + "s"
    return f"1 {noun} is" if n == 1 else f"{n:,} {plural} are"


def _preview(items: Sequence[str], limit: int = 5) -> str:
    return ", ".join(items[:limit]) + (f", ... ({len(items):,} in all)" if len(items) > limit else "")


def _empty_note(empty: Sequence[str], policy: str | None) -> str:
    if not empty:
        return ""
    verb = "skipped" if policy == "skip" else "indexed with no terms"
    return f"; {len(empty):,} empty, {verb}: {_preview(empty)}"


def _cmd_encode(args: argparse.Namespace) -> int:
    from .encoders import get_encoder, is_empty_text
    from .encoders.stateful import fit_or_load
    from .textfiles import read_documents

    if args.queries and args.empty_documents:
        raise InputError("--empty-documents applies to documents, not --queries (an empty query is always an error)")
    docs = read_documents(args.input)
    empty: list[str] = []
    if args.queries:
        blank = [d.doc_id for d in docs if is_empty_text(d.contents)]
        if blank:
            raise InputError(
                f"{_count(len(blank), 'query')} empty or whitespace-only (ids {_preview(blank)}); an empty query "
                "matches nothing: remove it"
            )
    else:
        docs, empty = _empty_policy(docs, args.empty_documents)
    texts = [d.contents for d in docs]
    encoder = get_encoder(args.encoder, **_parse_options(args.option))
    fit_or_load(encoder, texts, state=args.state, save_state=args.save_state, fit=not args.queries)
    outputs = args.outputs.split(",") if args.outputs else None
    t0 = time.perf_counter()
    if args.queries:
        encoded = encoder.encode_queries(texts, outputs=outputs, show_progress=not args.quiet)
    else:
        encoded = encoder.encode_corpus(texts, outputs=outputs, show_progress=not args.quiet)
    dt = time.perf_counter() - t0
    out = encoded.save(args.out)
    ids_path = out.with_name(out.name[: -len(".npz")] + ".ids.txt")
    write_text_atomic(ids_path, "".join(d.doc_id + "\n" for d in docs))
    print(
        f"encoded {len(texts):,} texts with {encoder.info.name} in {dt:.1f}s ({len(texts) / max(dt, 1e-9):,.0f} texts/s"
        f"{_empty_note(empty, args.empty_documents)})"
    )
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
    from .encoders.stored import check_savable, save_encoder
    from .fusion import parse_fusion
    from .index import HybridIndex
    from .retriever import write_retriever_config
    from .textfiles import read_documents, read_lines
    from .types import Encoded

    sources = [x for x in (args.dataset, args.input, args.bundle) if x]
    if len(sources) != 1:
        raise InputError("give exactly one of --dataset, --input or --bundle")
    out_dir = Path(args.out)
    if out_dir.exists() and not out_dir.is_dir():
        raise InputError(f"--out {out_dir} exists and is not a directory")
    if args.fusion:
        parse_fusion(args.fusion)  # refuse a bad --fusion before any work
    options = _parse_options(args.option)
    encoder = None
    empty: list[str] = []
    if args.bundle:
        if args.empty_documents:
            raise InputError("--empty-documents applies to --input and --dataset; a bundle is already encoded")
        encoded = Encoded.load(args.bundle)
        bundle = Path(args.bundle)
        ids_path = Path(args.ids) if args.ids else bundle.with_name(bundle.name.removesuffix(".npz") + ".ids.txt")
        if not ids_path.is_file():
            raise InputError(f"no ids file {ids_path}; pass --ids (one document id per line)")
        ids = [line for _, line in read_lines(ids_path)]
        texts = metadata = None
        if args.texts:
            by_id = {d.doc_id: d for d in read_documents(args.texts)}
            texts = [by_id[i].contents if i in by_id else "" for i in ids]
            metadata = [_metadata(by_id[i]) if i in by_id else {} for i in ids]
        if args.encoder:
            encoder = get_encoder(args.encoder, **options)
            check_savable(encoder)
            fit_or_load(encoder, [], state=args.state, fit=False)
    else:
        if not args.encoder:
            raise InputError("--encoder is required with --dataset or --input")
        docs = load_dataset(args.dataset).corpus if args.dataset else read_documents(args.input)
        docs, empty = _empty_policy(docs, args.empty_documents)
        ids, texts = [d.doc_id for d in docs], [d.contents for d in docs]
        metadata = [_metadata(d) for d in docs]
        encoder = get_encoder(args.encoder, **options)
        check_savable(encoder)
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
    write_retriever_config(out, mode=args.mode, fusion=args.fusion, candidates=args.candidates)
    print(
        f"indexed {len(index):,} documents ({', '.join(index.modes)}{_empty_note(empty, args.empty_documents)}) "
        f"in {time.perf_counter() - t0:.2f}s -> {out}"
    )
    return 0


def _cmd_search(args: argparse.Namespace) -> int:
    from .encoders import get_encoder, is_empty_text
    from .encoders.stateful import fit_or_load
    from .retriever import Retriever

    if is_empty_text(args.query):
        raise InputError("the query is empty or whitespace-only; an empty query matches nothing: pass some words")
    flt = parse_filter_arg(args.filter) if args.filter is not None else None
    encoder = None
    if args.encoder:
        encoder = get_encoder(args.encoder, **_parse_options(args.option))
        fit_or_load(encoder, [], state=args.state, fit=False)
    retriever = Retriever.load(args.index, encoder=encoder, mode=args.mode, fusion=args.fusion, candidates=args.candidates)
    n = len(retriever.index)
    t0 = time.perf_counter()
    k = min(args.k, max(n, 1)) if args.k > 0 else args.k  # no more hits than documents (k=10**12 is fine)
    hits = retriever.retrieve([args.query], k=k, filter=flt)
    dt = (time.perf_counter() - t0) * 1e3
    results = hits[0]
    if args.json:
        print(json.dumps([{"doc_id": h.doc_id, "score": h.score, "ranks": h.ranks, "scores": h.scores, "text": h.text,
                           "metadata": h.metadata} for h in results], ensure_ascii=False, indent=2))
        return 0
    mode = retriever.resolve_mode()
    print(f"{len(results)} hits in {dt:.2f} ms ({mode} mode, {len(retriever.index):,} documents)")
    for i, h in enumerate(results, 1):
        ranks = " ".join(f"{m}#{r}" if r else f"{m}#-" for m, r in h.ranks.items())
        text = (h.text or "").replace("\n", " ")
        print(f"{i:3d}. {h.score:9.4f}  {h.doc_id:<14} {ranks:<24} {text[:100]}")
    return 0


def _cmd_demo(args: argparse.Namespace) -> int:
    from .demo import run_demo

    return run_demo(dataset=args.dataset, queries=args.queries, workdir=Path(args.workdir), rebuild=args.rebuild)


EMPTY_POLICIES = ("keep", "skip", "error")
EMPTY_HELP = (
    "what to do with documents whose text (with title) is empty or whitespace-only: keep (default: index them "
    "with no terms and the dense vectors the model gives an empty text), skip, or error"
)


def build_parser() -> argparse.ArgumentParser:
    p = ArgumentParser(prog="hybridsearch", description="Hybrid dense + sparse + multi-vector search on bge-m3")
    p.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    sub = p.add_subparsers(dest="command", required=True, metavar="COMMAND")

    e = sub.add_parser("encode", help="encode a jsonl/tsv file of texts into a saved Encoded bundle (.npz)")
    e.add_argument("input", help=".jsonl (text, optional title and _id/docid/id) or .tsv (id<TAB>text)")
    e.add_argument("--encoder", required=True, help="bge-m3, workers-ai, bm25, bm25-word, minilm, or 'dense=minilm,sparse=bm25'")
    e.add_argument("--out", required=True, help="output bundle path (.npz); ids go to <out>.ids.txt")
    e.add_argument("--outputs", help="comma-separated views to compute: dense,sparse,multivector (default: the encoder's)")
    e.add_argument("--queries", action="store_true", help="encode as queries instead of documents")
    e.add_argument("--option", "-o", action="append", default=[], metavar="KEY=VALUE", help="encoder option, repeatable (e.g. -o batch_size=64 -o model=/path/to/bge-m3)")
    e.add_argument("--state", help="load fitted encoder state (BM25 statistics) from this file instead of fitting on the input")
    e.add_argument("--save-state", help="save the fitted encoder state (BM25 statistics) to this file")
    e.add_argument("--empty-documents", choices=EMPTY_POLICIES, help=EMPTY_HELP)
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
    i.add_argument("--empty-documents", choices=EMPTY_POLICIES, help=EMPTY_HELP)
    i.add_argument("--mode", choices=SEARCH_MODES, help="default search mode recorded for 'search' (default: hybrid when possible)")
    i.add_argument("--fusion", help="default fusion recorded for 'search' (default: rrf)")
    i.add_argument("--candidates", type=int, help="default candidates per first stage recorded for 'search' (default 100)")
    i.add_argument("--out", required=True, help="index directory to write")
    i.add_argument("--quiet", "-q", action="store_true", help="no progress bar")
    i.set_defaults(func=_cmd_index)

    s = sub.add_parser("search", help="search an index directory and print the hits")
    s.add_argument("index", help="index directory written by 'hybridsearch index'")
    s.add_argument("query", help="query text (an empty or whitespace-only query is an error, exit status 2)")
    s.add_argument("--mode", choices=SEARCH_MODES, help="bge-m3 paper modes; default: the index's recorded mode, else hybrid when possible")
    s.add_argument("-k", type=int, default=10, help="number of hits")
    s.add_argument("--candidates", type=int, help="candidates per first stage in fused/multivector modes (default: recorded, else 100)")
    s.add_argument("--fusion", help="rrf, weighted_sum, minmax, dbsf, zscore, or e.g. 'weighted_sum(dense=1,sparse=0.3)' (default: recorded, else rrf)")
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
    d.set_defaults(func=_cmd_demo, long_running=True)

    from . import doctor
    from .scale.cli import add_parser as add_encode_corpus

    doctor.add_parser(sub)
    add_encode_corpus(sub)
    return p


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line; returns the exit status (see the module docstring)."""
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as exc:  # --help, --version and usage errors (already printed)
        return exc.code if isinstance(exc.code, int) else (0 if exc.code is None else EXIT_BAD_INPUT)
    prog = f"{parser.prog} {args.command}" if getattr(args, "command", None) else parser.prog
    try:
        return int(args.func(args) or 0)
    except KeyboardInterrupt:
        print(f"{prog}: interrupted", file=sys.stderr)
        return EXIT_INTERRUPTED
    except BrokenPipeError:  # the reader of our output went away (e.g. `| head`): not an error worth a message
        _silence_stdout()
        return EXIT_FAILURE
    except SystemExit as exc:  # a subcommand that exits by itself (its message is already printed)
        return exc.code if isinstance(exc.code, int) else (0 if exc.code is None else EXIT_BAD_INPUT)
    except BaseException as exc:
        if os.environ.get("HYBRIDSEARCH_DEBUG") and not isinstance(exc, HybridSearchError):
            raise
        print(f"{prog}: error: {_describe(exc)}", file=sys.stderr)
        return exit_status(exc)


def _silence_stdout() -> None:
    """After a broken pipe, point stdout at /dev/null so the interpreter's final flush does not fail again."""
    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
    except (OSError, ValueError):
        pass


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
