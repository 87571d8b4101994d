"""Reports of evaluation runs: the paper-style table (markdown), JSON, CSV, a PNG plot, hybrid-vs-single
statements, and the expected-results check.

The table has one row per mode and one column per dataset (language) plus the average, for one measure, like
Table 1 of the bge-m3 paper. Expected-results files (``evaluation/expected/*.json``) list, per dataset and encoder,
the expected score of each mode and measure with a tolerance; :func:`check_expected` reports every drift.
"""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from ._atomic import write_text_atomic
from .errors import ConfigError, InputError
from .experiments import DatasetResult

__all__ = ["check_expected", "hybrid_statements", "significance_lines", "load_expected", "markdown_table", "plot", "to_csv", "to_json"]


def _label(r: DatasetResult, mode: str) -> str:
    return f"{r.encoder} {mode}" if r.encoder else mode


def _rows(results: Sequence[DatasetResult]) -> dict[str, dict[str, dict[str, float]]]:
    """``{row label: {dataset: {measure: value}}}`` in first-seen order."""
    rows: dict[str, dict[str, dict[str, float]]] = {}
    for r in results:
        for s in r.results:
            rows.setdefault(_label(r, s.system.label), {})[r.dataset] = s.evaluation.means
    return rows


def markdown_table(results: Sequence[DatasetResult], measure: str) -> str:
    """Rows are ``encoder mode``, columns the datasets plus their average (only over rows that have every one)."""
    datasets = list(dict.fromkeys(r.dataset for r in results))
    rows = _rows(results)
    head = f"| {measure} | " + " | ".join(datasets) + (" | avg |" if len(datasets) > 1 else " |")
    lines = [head, "|---" * (len(datasets) + 1 + (len(datasets) > 1)) + "|"]
    for label, by_ds in rows.items():
        vals = [by_ds.get(d, {}).get(measure) for d in datasets]
        cells = ["–" if v is None else f"{v:.3f}" for v in vals]
        if len(datasets) > 1:
            full = [v for v in vals if v is not None]
            cells.append(f"{sum(full) / len(full):.3f}" if len(full) == len(vals) else "–")
        lines.append(f"| {label} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def detail_table(results: Sequence[DatasetResult]) -> str:
    """Every measure of every mode on one dataset (the first result's), with search throughput (queries/s, top-k
    through the index, query encoding excluded; ``cached`` when the run was read from its file)."""
    results = [r for r in results if r.dataset == results[0].dataset]
    measures = list(next((s.evaluation.means for r in results for s in r.results), {}))
    lines = [f"| {results[0].dataset} | " + " | ".join(measures) + " | queries/s |", "|---" * (len(measures) + 2) + "|"]
    for r in results:
        for s in r.results:
            qps = "cached" if s.queries_per_s is None else f"{s.queries_per_s:,.0f}"
            lines.append(f"| {_label(r, s.system.label)} | " + " | ".join(f"{s.evaluation.means[m]:.4f}" for m in measures) + f" | {qps} |")
    return "\n".join(lines)


def detail_tables(results: Sequence[DatasetResult]) -> list[str]:
    """:func:`detail_table` for each dataset, in first-seen order."""
    return [detail_table([r for r in results if r.dataset == d]) for d in dict.fromkeys(r.dataset for r in results)]


_FUSED = ("dense+sparse", "all")


def hybrid_statements(results: Sequence[DatasetResult], measure: str) -> list[str]:
    """Per dataset: does the best fused mode beat the best single mode, and by how much."""
    out = []
    for r in results:
        single = [(s.evaluation.means[measure], _label(r, s.system.label)) for s in r.results if s.system.mode not in _FUSED]
        fused = [(s.evaluation.means[measure], _label(r, s.system.label)) for s in r.results if s.system.mode in _FUSED]
        if not single or not fused:
            continue
        (bs, bsl), (bf, bfl) = max(single), max(fused)
        verdict = "beats" if bf > bs else "does not beat"
        out.append(f"{r.dataset}: hybrid {bfl} ({bf:.3f}) {verdict} the best single mode {bsl} ({bs:.3f}) by {bf - bs:+.3f} {measure}")
    return out


def significance_lines(results: Sequence[DatasetResult], measure: str, *, n_resamples: int = 10_000) -> list[str]:
    """Per dataset, every row against the dataset's first row: the difference in ``measure`` and the paired
    t-test and randomisation-test p-values (see :mod:`hybridsearch.significance`), over the queries both score."""
    import numpy as np

    from .significance import paired_test

    out = []
    for d in dict.fromkeys(r.dataset for r in results):
        rows = [(_label(r, s.system.label), s.evaluation.per_query[measure]) for r in results if r.dataset == d for s in r.results]
        if len(rows) < 2:
            continue
        base_label, base = rows[0]
        for label, pq in rows[1:]:
            common = [q for q in base if q in pq]
            if len(common) < 2:
                continue
            a = np.array([base[q] for q in common])
            b = np.array([pq[q] for q in common])
            t = paired_test(a, b, "t-test")
            rnd = paired_test(a, b, "randomization", n_resamples=n_resamples)
            out.append(f"{d}: {label} vs {base_label}: {b.mean() - a.mean():+.4f} {measure} over {len(common)} queries, "
                       f"paired t-test p={t:.4g}, randomization p={rnd:.4g}")
    return out


def to_json(results: Sequence[DatasetResult]) -> dict[str, Any]:
    """``{"dataset", "encoder", "results": {mode: {measure: value}}, "per_query": {mode: {measure: {qid: v}}}, ...}``
    for one dataset; ``{"datasets": [...]}`` of those for several."""
    docs = []
    for r in results:
        first = r.results[0].evaluation if r.results else None
        docs.append({
            "dataset": r.dataset,
            "encoder": r.encoder,
            "encoder_info": r.encoder_info,
            "encoder_options": r.options,
            "note": r.note,
            "missing_query_policy": None if first is None else first.missing,
            "evaluated": None if first is None else first.describe(),
            "results": {s.system.label: s.evaluation.means for s in r.results},
            "queries_per_s": {s.system.label: s.queries_per_s for s in r.results},
            "runs": {s.system.label: str(s.run_path) for s in r.results},
            "encode_s": r.encode_s,
            "per_query": {s.system.label: s.evaluation.per_query for s in r.results},
        })
    return docs[0] if len(docs) == 1 else {"datasets": docs}


def to_csv(results: Sequence[DatasetResult]) -> str:
    """Long format: ``dataset,encoder,mode,measure,value``."""
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(["dataset", "encoder", "mode", "measure", "value"])
    for r in results:
        for s in r.results:
            for m, v in s.evaluation.means.items():
                w.writerow([r.dataset, r.encoder, s.system.label, m, f"{v:.6f}"])
    return buf.getvalue()


def plot(results: Sequence[DatasetResult], measure: str, path: str | Path) -> Path:
    """Grouped bars: one group per dataset, one bar per mode. Needs matplotlib (``hybridsearch[eval]``)."""
    from ._optional import require

    matplotlib = require("matplotlib", extra="eval")
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    datasets = list(dict.fromkeys(r.dataset for r in results))
    rows = _rows(results)
    fig, ax = plt.subplots(figsize=(max(6, 1.6 * len(datasets) * max(1, len(rows)) ** 0.5 + 3), 4.2))
    width = 0.8 / max(len(rows), 1)
    for i, (label, by_ds) in enumerate(rows.items()):
        xs = [j + i * width for j, d in enumerate(datasets) if d in by_ds]
        ys = [by_ds[d][measure] for d in datasets if d in by_ds]
        ax.bar(xs, ys, width, label=label)
    ax.set_xticks([j + 0.4 - width / 2 for j in range(len(datasets))])
    ax.set_xticklabels(datasets)
    ax.set_ylabel(measure)
    ax.set_ylim(0, 1)
    ax.legend(fontsize=7, ncol=2)
    ax.set_title(f"{measure} by mode and dataset")
    fig.tight_layout()
    out = Path(path)
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, dpi=110)
    plt.close(fig)
    return out


def write_reports(results: Sequence[DatasetResult], measure: str, out_dir: str | Path) -> list[Path]:
    """``table.md``, ``results.json``, ``results.csv`` and ``plot.png`` under ``out_dir``."""
    d = Path(out_dir)
    d.mkdir(parents=True, exist_ok=True)
    md = markdown_table(results, measure) + "\n\n" + "\n\n".join(detail_tables(results)) + "\n"
    write_text_atomic(d / "table.md", md)
    write_text_atomic(d / "results.json", json.dumps(to_json(results), indent=1) + "\n")
    write_text_atomic(d / "results.csv", to_csv(results))
    return [d / "table.md", d / "results.json", d / "results.csv", plot(results, measure, d / "plot.png")]


# ------------------------------------------------------------------------------------ expected results


def load_expected(path: str | Path) -> dict[str, Any]:
    """Read an expected-results file: ``{"tolerance": t, "checks": [{"dataset", "encoder", "mode", "expected":
    {measure: value}, optional "tolerance", "quick"}]}``. Raises :class:`InputError` when it is malformed."""
    p = Path(path)
    try:
        doc = json.loads(p.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError) as exc:
        raise InputError(f"cannot read expected results {p}: {exc}") from None
    checks = doc.get("checks") if isinstance(doc, dict) else None
    if not isinstance(checks, list) or not checks:
        raise InputError(f"{p}: expected {{'checks': [...]}} with at least one entry")
    for i, c in enumerate(checks):
        if not isinstance(c, dict) or not {"dataset", "encoder", "mode", "expected"} <= set(c):
            raise InputError(f"{p}: checks[{i}] needs dataset, encoder, mode and expected")
    if not isinstance(doc.get("tolerance", 0.0), (int, float)):
        raise InputError(f"{p}: tolerance must be a number")
    return doc


def groups(doc: dict[str, Any], quick_only: bool) -> dict[tuple[str, str], list[dict[str, Any]]]:
    """Checks grouped by (dataset, encoder), in file order; ``quick_only`` keeps entries marked ``"quick": true``."""
    out: dict[tuple[str, str], list[dict[str, Any]]] = {}
    for c in doc["checks"]:
        if quick_only and not c.get("quick", False):
            continue
        out.setdefault((c["dataset"], c["encoder"]), []).append(c)
    if not out:
        raise ConfigError("no expected results to check (none is marked quick)" if quick_only else "no expected results")
    return out


def check_expected(doc: dict[str, Any], results: Sequence[DatasetResult]) -> tuple[list[str], list[str]]:
    """Compare ``results`` with the expected values in ``doc``: ``(report lines, failures)``."""
    got = {(r.dataset, r.encoder, s.system.label): s.evaluation.means for r in results for s in r.results}
    default_tol = float(doc.get("tolerance", 0.0005))
    lines, failures = [], []
    for c in doc["checks"]:
        key = (c["dataset"], c["encoder"], c["mode"])
        if key not in got:
            continue
        tol = float(c.get("tolerance", default_tol))
        for m, want in c["expected"].items():
            have = got[key].get(m)
            ok = have is not None and abs(have - want) <= tol
            line = f"{'ok  ' if ok else 'FAIL'} {c['dataset']} {c['encoder']} {c['mode']} {m}: expected {want:.4f} ± {tol:g}, got " + (
                "nothing" if have is None else f"{have:.4f} ({have - want:+.4f})")
            lines.append(line)
            if not ok:
                failures.append(line)
    return lines, failures


def update_expected(doc: dict[str, Any], results: Sequence[DatasetResult]) -> dict[str, Any]:
    """``doc`` with the expected values replaced by those of ``results`` (rounded to 4 decimals)."""
    got = {(r.dataset, r.encoder, s.system.label): s.evaluation.means for r in results for s in r.results}
    for c in doc["checks"]:
        key = (c["dataset"], c["encoder"], c["mode"])
        if key in got:
            c["expected"] = {m: round(got[key][m], 4) for m in c["expected"]}
    return doc
