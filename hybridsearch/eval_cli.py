"""``hybridsearch eval``: the languages × modes evaluation table, with runs, reports and expected-results checks.

    hybridsearch eval --dataset scifact --encoder bm25 --modes sparse --json out.json
    hybridsearch eval --dataset miracl-subset/sw,miracl-subset/yo,miracl-subset/id --encoder bm25,bm25-word --modes sparse
    hybridsearch eval --dataset scifact --encoder minilm+bm25-word --modes dense,sparse,dense+sparse --fusion rrf,minmax
    hybridsearch eval --check evaluation/expected/offline.json [--quick]
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from .errors import ConfigError, InputError

__all__ = ["add_parser", "run_eval"]


def _split(value: str | None) -> list[str]:
    """Comma-separated items, keeping commas inside parentheses (``weighted_sum(dense=1,sparse=0.3)``)."""
    if not value:
        return []
    items, depth, cur = [], 0, ""
    for ch in value:
        depth += ch == "("
        depth -= ch == ")"
        if ch == "," and depth == 0:
            items.append(cur.strip())
            cur = ""
        else:
            cur += ch
    items.append(cur.strip())
    return [i for i in items if i]


def _options(pairs: list[str]) -> dict[str, dict[str, Any]]:
    """``-o bm25-word.k1=1.2`` -> ``{"bm25-word": {"k1": 1.2}}``."""
    out: dict[str, dict[str, Any]] = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        enc, dot, opt = key.partition(".")
        if not sep or not dot or not enc or not opt:
            raise ConfigError(f"bad --option {pair!r}; write it as encoder.key=value, e.g. bm25-word.k1=1.2")
        try:
            parsed = json.loads(value)
        except json.JSONDecodeError:
            parsed = value
        out.setdefault(enc, {})[opt.replace("-", "_")] = parsed
    return out


def _say(msg: str, quiet: bool = False) -> None:
    if not quiet:
        print(msg, file=sys.stderr, flush=True)


def run_eval(args: argparse.Namespace) -> int:
    from .eval_report import (
        check_expected,
        detail_tables,
        groups,
        hybrid_statements,
        load_expected,
        markdown_table,
        to_json,
        update_expected,
        write_reports,
    )
    from .experiments import evaluate_dataset, parse_modes

    from .metrics import parse_measure

    measures = _split(args.measures)
    if not measures:
        raise ConfigError("--measures is empty; e.g. --measures nDCG@10,R@100")
    for m in measures:
        parse_measure(m)
    if args.depth < 1:
        raise ConfigError(f"--depth must be a positive number of documents, got {args.depth}")
    if (args.quick or args.update) and not args.check:
        raise ConfigError("--quick and --update go with --check FILE")
    main = measures[0]
    options = _options(args.option)
    log = (lambda s: None) if args.quiet else (lambda s: _say(s))
    results = []
    doc = None
    if args.check:
        doc = load_expected(args.check)
        only = set(_split(args.dataset))
        for (dataset, encoder), checks in groups(doc, args.quick).items():
            if only and dataset not in only:
                continue
            systems = parse_modes([c["mode"] for c in checks])
            results.append(evaluate_dataset(dataset, encoder, systems, workdir=args.workdir, measures=measures,
                                            depth=args.depth, missing=args.missing, options=options,
                                            show_progress=not args.quiet, log=log))
    else:
        if not args.dataset or not args.encoder:
            raise ConfigError("give --dataset and --encoder (or --check FILE)")
        systems = parse_modes(_split(args.modes) or ["dense", "sparse", "dense+sparse"], _split(args.fusion))
        for dataset in _split(args.dataset):
            for encoder in _split(args.encoder):
                from .experiments import parse_encoder

                views = parse_encoder(encoder)
                mine = [s for s in systems if all(v in views for v in
                        {"dense+sparse": ["dense", "sparse"], "all": ["dense", "sparse", "multivector"]}.get(s.mode, [s.mode]))]
                if not mine:
                    raise ConfigError(f"encoder {encoder!r} gives none of the modes {[s.label for s in systems]}")
                results.append(evaluate_dataset(dataset, encoder, mine, workdir=args.workdir, measures=measures,
                                                depth=args.depth, missing=args.missing, options=options,
                                                show_progress=not args.quiet, log=log))
    print(markdown_table(results, main))
    print()
    for table in detail_tables(results):
        print(table)
        print()
    notes = {r.note for r in results if r.note}
    for line in hybrid_statements(results, main):
        print(line)
    if args.significance:
        from .eval_report import significance_lines

        for line in significance_lines(results, main):
            print(line)
    for n in sorted(notes):
        print(f"Note: {n}.")
    described: dict[str, str] = {}
    for r in results:
        if r.results and r.dataset not in described:
            described[r.dataset] = r.results[0].evaluation.describe()
    for dataset, text in described.items():
        print(f"{dataset}: trec_eval through pytrec_eval, {text}.")
    try:
        written = write_reports(results, main, args.out_dir) if args.out_dir else []
        if args.json:
            p = Path(args.json)
            p.parent.mkdir(parents=True, exist_ok=True)
            p.write_text(json.dumps(to_json(results), indent=1) + "\n", encoding="utf-8")
            written.append(p)
    except OSError as exc:
        raise InputError(f"cannot write the reports: {exc}") from None
    for p in written:
        _say(f"wrote {p}", args.quiet)
    if doc is not None:
        if args.update:
            Path(args.check).write_text(json.dumps(update_expected(doc, results), indent=1) + "\n", encoding="utf-8")
            _say(f"updated {args.check}")
            return 0
        lines, failures = check_expected(doc, results)
        print("\n".join(lines))
        if failures:
            print(f"{len(failures)} score(s) drifted beyond tolerance", file=sys.stderr)
            return 1
        print(f"all {len(lines)} expected scores reproduced")
    return 0


def add_parser(subparsers: Any) -> argparse.ArgumentParser:
    """Register ``eval`` on the ``hybridsearch`` command's subparsers."""
    p = subparsers.add_parser(
        "eval", help="evaluate retrieval modes on datasets: runs, trec_eval metrics, the modes x languages table",
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("--dataset", help="(with --check: only these) comma-separated: scifact, miracl-subset/<lang>, miracl/<lang>, or a BEIR folder name")
    p.add_argument("--encoder", help="comma-separated: bm25, bm25-word, minilm, bge-m3, minilm+bm25-word, ...")
    p.add_argument("--modes", help="comma-separated: dense, sparse, multivector, dense+sparse, all; fused ones may add "
                   ":<fusion>, e.g. dense+sparse:minmax (default: dense,sparse,dense+sparse)")
    p.add_argument("--fusion", help="fusions for bare fused modes, comma-separated (default rrf): rrf, minmax, "
                   "weighted_sum(dense=1,sparse=0.3), ...")
    p.add_argument("--measures", default="nDCG@10,R@100,MRR@10,MAP@1000,R@1000", help="the first is the table's")
    p.add_argument("--depth", type=int, default=1000, help="documents retrieved per query (default 1000)")
    p.add_argument("--missing", choices=["zero", "drop"], default="zero",
                   help="judged queries missing from a run: count as 0 (trec_eval -c, default) or leave out (pytrec_eval/BEIR)")
    p.add_argument("--option", "-o", action="append", default=[], metavar="ENCODER.KEY=VALUE",
                   help="encoder option, repeatable, e.g. -o bm25-word.k1=1.2")
    p.add_argument("--workdir", default="runs", help="cached encodings and run files (default runs/, git-ignored)")
    p.add_argument("--out-dir", help="write table.md, results.json, results.csv and plot.png here")
    p.add_argument("--json", help='write {"dataset", "encoder", "results", "per_query", ...} to this file')
    p.add_argument("--check", help="an expected-results file: run its configurations, fail on drift beyond tolerance")
    p.add_argument("--quick", action="store_true", help="with --check: only the entries marked quick (what CI runs)")
    p.add_argument("--update", action="store_true", help="with --check: rewrite the file's expected values from this run")
    p.add_argument("--significance", action="store_true",
                   help="paired t-test and randomisation test of every row against each dataset's first row")
    p.add_argument("--quiet", "-q", action="store_true", help="no progress output")
    p.set_defaults(func=run_eval)
    return p
