"""Evaluation runs: datasets × retrieval modes → cached encodings → index → TREC runs → metrics.

A *system* is an encoder spec and a mode:

- encoder specs: ``bm25`` (XLM-R tokens), ``bm25-word`` (words, with the dataset language's analysis, see
  :data:`LEXICAL_PRESETS`), ``minilm`` (dense), ``bge-m3`` (dense + sparse + multi-vector), and pairs
  ``<dense>+<sparse>`` such as ``minilm+bm25-word``;
- modes: ``dense``, ``sparse``, ``multivector``, ``dense+sparse`` and ``all`` (dense + sparse fused, then MaxSim
  rescoring), each fused mode optionally with a fusion spec: ``dense+sparse:minmax``,
  ``dense+sparse:weighted_sum(dense=1,sparse=0.3)`` (default fusion ``rrf``, k=60).

Everything expensive is cached under ``workdir`` (default ``runs/``, git-ignored): encodings per dataset and
encoder fingerprint (``cache/<dataset>/<encoder>-<fingerprint>.{corpus,queries}.npz``) and one TREC run file per
system (``<dataset>/<encoder>-<fingerprint>/<mode>.trec``). A run whose file exists is read, not recomputed, so
an interrupted evaluation resumes where it stopped.
"""

from __future__ import annotations

import re
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ._progress import progress
from .datasets import Dataset, load_dataset
from .encoders import get_encoder
from .encoders.base import Encoder
from .encoders.composite import CompositeEncoder
from .errors import ConfigError
from .metrics import MEASURES, Evaluation, MissingPolicy, evaluate_run
from .modes import PAPER_MODES
from .runs import read_run, write_run
from .types import Encoded

__all__ = [
    "LEXICAL_PRESETS", "Encodings", "SystemResult", "dataset_language", "encode_dataset", "evaluate_dataset", "parse_modes",
    "run_systems",
]

#: Word analysis and BM25 parameters of ``bm25-word`` per language (Lucene-style language analysis). English uses
#: bm25s's defaults (Lucene-method BM25, k1 1.5, b 0.75, the 33 Lucene stopwords, Snowball stemming) so that the
#: two are compared at the same parameters; the other languages keep Anserini's k1 0.9, b 0.4 (its MIRACL BM25
#: baseline). On SciFact the English analysis scores nDCG@10 0.680 at k1 0.9, b 0.4 and 0.686 at Lucene's 1.2, 0.75.
LEXICAL_PRESETS: dict[str, dict[str, Any]] = {
    "en": {"stemmer": "english", "stopwords": "english", "k1": 1.5, "b": 0.75},
    "sw": {"stopwords": "swahili"},
    "yo": {"strip_accents": True, "stopwords": "yoruba"},
    "id": {"stemmer": "indonesian", "stopwords": "indonesian"},
}

_DENSE = ("minilm", "bge-m3", "workers-ai")
_LEXICAL = ("bm25", "bm25-word")
_MODES = PAPER_MODES
_SAFE = re.compile(r"[^A-Za-z0-9_.,=()+-]")


def dataset_language(name: str) -> str:
    """``miracl-subset/sw`` -> ``sw``; BEIR datasets such as ``scifact`` -> ``en``."""
    family, _, lang = name.partition("/")
    return lang if family in ("miracl", "miracl-subset") and lang else "en"


def _slug(text: str) -> str:
    return _SAFE.sub("_", text.replace("/", "-"))


def _part(name: str, lang: str, options: dict[str, Any]) -> Encoder:
    if name == "bm25-word":
        return get_encoder(name, **{**LEXICAL_PRESETS.get(lang, {}), **options})
    return get_encoder(name, **options)


def parse_encoder(spec: str) -> dict[str, str]:
    """``"minilm+bm25-word"`` -> ``{"dense": "minilm", "sparse": "bm25-word"}``; ``"bge-m3"`` -> all three views.

    ``bm25s`` is the bm25s library as an external sparse baseline (sparse mode only, not through our index).
    """
    names = [s.strip() for s in spec.split("+")]
    if spec.strip() == "bge-m3":
        return {"dense": "bge-m3", "sparse": "bge-m3", "multivector": "bge-m3"}
    if spec.strip() == "bm25s":
        return {"sparse": "bm25s"}
    out: dict[str, str] = {}
    for n in names:
        view = "dense" if n in _DENSE else "sparse" if n in _LEXICAL else None
        if view is None or view in out:
            raise ConfigError(
                f"bad encoder spec {spec!r}; use one of {', '.join(_DENSE + _LEXICAL)} or '<dense>+<sparse>' such as minilm+bm25-word"
            )
        out[view] = n
    return out


@dataclass(frozen=True)
class System:
    """One row of the table: ``mode`` (``dense+sparse`` ...) with its ``fusion`` spec (fused modes only)."""

    mode: str
    fusion: str | None = None

    @property
    def label(self) -> str:
        return self.mode if self.fusion is None else f"{self.mode}:{self.fusion}"


def parse_modes(modes: Sequence[str], fusions: Sequence[str] = ()) -> list[System]:
    """``["dense", "dense+sparse:minmax"]`` -> systems; bare fused modes take each of ``fusions`` (default rrf)."""
    out: list[System] = []
    for m in modes:
        mode, _, fusion = m.partition(":")
        if mode not in _MODES:
            raise ConfigError(f"unknown mode {mode!r}; expected one of {', '.join(_MODES)} (fused ones may add ':<fusion>')")
        if mode in ("dense", "sparse", "multivector"):
            if fusion:
                raise ConfigError(f"mode {mode!r} fuses nothing; a fusion spec goes with dense+sparse or all")
            out.append(System(mode))
        elif fusion:
            out.append(System(mode, fusion))
        else:
            out.extend(System(mode, f) for f in (fusions or ["rrf"]))
    from .fusion import parse_fusion

    for s in out:
        if s.fusion is not None:
            parse_fusion(s.fusion)  # a bad spec fails before any encoding
    if len({s.label for s in out}) != len(out):
        raise ConfigError(f"a mode is listed twice: {[s.label for s in out]}")
    return out


@dataclass
class SystemResult:
    """Scores of one system on one dataset: the :class:`Evaluation`, search queries/s and where the run is."""

    system: System
    evaluation: Evaluation
    queries_per_s: float | None
    run_path: Path
    resumed: bool


@dataclass
class DatasetResult:
    dataset: str
    encoder: str
    encoder_info: dict[str, str]
    options: dict[str, dict[str, Any]]
    note: str
    results: list[SystemResult] = field(default_factory=list)
    encode_s: dict[str, float] = field(default_factory=dict)


def _encodings(
    enc: Encoder, view_name: str, ds: Dataset, texts: list[str], cache: Path, views: list[str], show: bool,
    timings: dict[str, float],
) -> tuple[Encoded, Encoded]:
    """Corpus and query encodings of ``enc`` (fitted first when it is a BM25 encoder), cached by fingerprint."""
    if hasattr(enc, "fit") and not getattr(enc, "is_fitted", True):
        enc.fit(texts)  # type: ignore[attr-defined]
    fp = enc.info.fingerprint[:16] or "nofp"
    base = cache / f"{_slug(enc.info.name)}-{fp}"
    corpus_p, queries_p = Path(f"{base}.corpus.npz"), Path(f"{base}.queries.npz")
    if corpus_p.exists() and queries_p.exists():
        return Encoded.load(corpus_p), Encoded.load(queries_p)
    cache.mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()
    q = enc.encode_queries(list(ds.queries.values()), outputs=views, show_progress=show)
    c = enc.encode_corpus(texts, outputs=views, show_progress=show)
    timings[view_name] = round(time.perf_counter() - t0, 1)
    q.save(queries_p)
    c.save(corpus_p)
    return c, q


def _search(index: Any, q: Encoded, system: System, k: int, batch: int = 256) -> Any:
    # The paper's mode names, as HybridIndex.search and the Retriever take them (hybridsearch.modes).
    kw: dict[str, Any] = {"mode": system.mode, "candidates": k}
    if system.fusion is not None:
        kw["fusion"] = system.fusion
    parts = [index.search(q[i : i + batch], k=k, **kw) for i in range(0, len(q), batch)]
    if len(parts) == 1:
        return parts[0]
    import numpy as np

    from .hits import Hits

    return Hits(np.concatenate([p.rows for p in parts]), np.concatenate([p.scores for p in parts]),
                np.concatenate([p.doc_ids for p in parts]),
                {m: np.concatenate([p.ranks[m] for p in parts]) for m in parts[0].ranks})


@dataclass
class Encodings:
    """A dataset encoded by one encoder spec: document ``ids`` and ``texts``, ``corpus`` and ``queries``
    (:class:`Encoded` sharing one :class:`EncoderInfo`), the ``parts`` used and their ``options``."""

    dataset: Dataset
    ids: list[str]
    texts: list[str]
    corpus: Encoded
    queries: Encoded
    parts: dict[str, Encoder]
    options: dict[str, dict[str, Any]]
    encode_s: dict[str, float]


def encode_dataset(
    ds: Dataset, encoder: str, *, workdir: str | Path = "runs", options: dict[str, dict[str, Any]] | None = None,
    show_progress: bool = True, log: Callable[[str], None] = lambda s: None,
) -> Encodings:
    """Encode ``ds``'s corpus and judged queries with ``encoder`` (a spec, see the module docstring), reusing
    encodings cached under ``workdir/cache`` for the same dataset and encoder fingerprint."""
    views = parse_encoder(encoder)
    lang = dataset_language(ds.name)
    options = options or {}
    log(f"{ds.name}: reading the corpus ...")
    docs = list(ds.corpus)
    texts = [d.contents for d in docs]
    ids = [d.doc_id for d in docs]
    del docs
    cache = Path(workdir) / "cache" / _slug(ds.name)
    parts: dict[str, Encoder] = {}
    for name in views.values():
        if name not in parts:
            parts[name] = _part(name, lang, options.get(name, {}))
    timings: dict[str, float] = {}
    corpus_views: dict[str, Any] = {}
    query_views: dict[str, Any] = {}
    for name, enc in parts.items():
        mine = [v for v, n in views.items() if n == name]
        log(f"{ds.name}: encodings of {name} ({', '.join(mine)}) ...")
        c, q = _encodings(enc, name, ds, texts, cache, mine, show_progress, timings)
        for v in mine:
            corpus_views[v], query_views[v] = getattr(c, v), getattr(q, v)
    if len(parts) == 1:
        info = next(iter(parts.values())).info
    else:
        info = CompositeEncoder(**{v: parts[n] for v, n in views.items()}).info
    used = {n: {**(LEXICAL_PRESETS.get(lang, {}) if n == "bm25-word" else {}), **options.get(n, {})} for n in parts}
    return Encodings(ds, ids, texts, Encoded(**corpus_views, encoder=info), Encoded(**query_views, encoder=info),
                     parts, used, timings)


def run_systems(
    ds: Dataset, index: Any, queries: Encoded, systems: Sequence[System], run_dir: Path, tag_prefix: str, *,
    measures: Sequence[str] = MEASURES, depth: int = 1000, missing: MissingPolicy = "zero", show_progress: bool = True,
) -> list[SystemResult]:
    """Search ``index`` with ``queries`` (rows in ``ds.queries`` order) for each system, write or reuse its run
    file under ``run_dir``, and score it."""
    qids = list(ds.queries)
    out = []
    with progress(len(systems), f"{ds.name} modes", unit="modes", enabled=show_progress) as bar:
        for s in systems:
            path = run_dir / f"{_slug(s.label)}.trec"
            qps = None
            resumed = path.exists()
            if resumed:
                run = read_run(path).run
            else:
                t0 = time.perf_counter()
                hits = _search(index, queries, s, depth)
                qps = len(qids) / max(time.perf_counter() - t0, 1e-9)
                run = hits.to_run(qids)
                write_run(path, run, _slug(f"{tag_prefix}.{s.label}"))
            out.append(SystemResult(s, evaluate_run(ds.qrels, run, measures, missing=missing), qps, path, resumed))
            bar.update(1)
    return out


def check_systems(encoder: str, systems: Sequence[System]) -> None:
    """Raise :class:`~hybridsearch.errors.ConfigError` when a mode needs a view ``encoder`` does not give."""
    views = parse_encoder(encoder)
    for s in systems:
        need = {"dense+sparse": ["dense", "sparse"], "all": ["dense", "sparse", "multivector"]}.get(s.mode, [s.mode])
        missing_views = [v for v in need if v not in views]
        if missing_views:
            raise ConfigError(f"mode {s.label!r} needs {', '.join(missing_views)} views, which encoder {encoder!r} does not give")


def evaluate_dataset(
    dataset: str | Dataset,
    encoder: str,
    systems: Sequence[System],
    *,
    workdir: str | Path = "runs",
    measures: Sequence[str] = MEASURES,
    depth: int = 1000,
    missing: MissingPolicy = "zero",
    options: dict[str, dict[str, Any]] | None = None,
    show_progress: bool = True,
    log: Callable[[str], None] = lambda s: None,
) -> DatasetResult:
    """Run ``systems`` with ``encoder`` on ``dataset`` (a name or a :class:`Dataset`), write their runs, score them
    (see the module docstring).

    ``options`` gives encoder options per part name (``{"bm25-word": {"k1": 1.2}}``). Raises
    :class:`~hybridsearch.errors.ConfigError` for unknown encoders or modes and for a mode the encoder lacks.
    """
    from .index import HybridIndex

    check_systems(encoder, systems)
    ds = load_dataset(dataset) if isinstance(dataset, str) else dataset
    options = options or {}
    if parse_encoder(encoder) == {"sparse": "bm25s"}:
        return _bm25s_dataset(ds, dataset_language(ds.name), workdir, measures, depth, missing, options.get("bm25s", {}), log)
    enc = encode_dataset(ds, encoder, workdir=workdir, options=options, show_progress=show_progress, log=log)
    index = HybridIndex()
    index.add(enc.ids, enc.corpus)
    info = enc.corpus.encoder
    assert info is not None
    run_dir = Path(workdir) / _slug(ds.name) / f"{_slug(encoder)}-{info.fingerprint[:16]}"
    out = DatasetResult(ds.name, encoder, info.to_dict(), enc.options, ds.note, encode_s=enc.encode_s)
    out.results = run_systems(ds, index, enc.queries, systems, run_dir, f"{ds.name}.{encoder}", measures=measures,
                              depth=depth, missing=missing, show_progress=show_progress)
    return out


def _bm25s_options(lang: str, options: dict[str, Any]) -> dict[str, Any]:
    stem = {"en": "english", "id": "indonesian"}.get(lang)
    return {"k1": 1.5, "b": 0.75, "method": "lucene", "stopwords": "en" if lang == "en" else None, "stemmer": stem, **options}


def bm25s_run(ds: Dataset, lang: str, depth: int, options: dict[str, Any] | None = None) -> tuple[dict[str, dict[str, float]], float]:
    """The bm25s library's BM25 on ``ds`` (its defaults: Lucene method, k1 1.5, b 0.75; English stopwords and a
    PyStemmer stemmer where the language has them): ``(run, search queries/s)``. Needs ``pip install bm25s``."""
    from ._optional import require

    bm25s = require("bm25s", extra="eval")
    opts = _bm25s_options(lang, options or {})
    stemmer = None
    if opts["stemmer"]:
        stemmer = require("Stemmer", extra="lexical", package="PyStemmer").Stemmer(opts["stemmer"])
    docs = list(ds.corpus)
    tok = bm25s.tokenize([d.contents for d in docs], stopwords=opts["stopwords"], stemmer=stemmer, show_progress=False)
    retriever = bm25s.BM25(k1=opts["k1"], b=opts["b"], method=opts["method"])
    retriever.index(tok, show_progress=False)
    qids = list(ds.queries)
    t0 = time.perf_counter()
    qtok = bm25s.tokenize([ds.queries[q] for q in qids], stopwords=opts["stopwords"], stemmer=stemmer, show_progress=False)
    found, scores = retriever.retrieve(qtok, k=min(depth, len(docs)), show_progress=False)
    qps = len(qids) / max(time.perf_counter() - t0, 1e-9)
    run = {q: {docs[j].doc_id: float(s) for j, s in zip(found[i], scores[i], strict=True) if s > 0} for i, q in enumerate(qids)}
    return run, qps


def _bm25s_dataset(
    ds: Dataset, lang: str, workdir: str | Path, measures: Sequence[str], depth: int, missing: MissingPolicy,
    options: dict[str, Any], log: Callable[[str], None],
) -> DatasetResult:
    log(f"{ds.name}: bm25s ...")
    run, qps = bm25s_run(ds, lang, depth, options)
    path = Path(workdir) / _slug(ds.name) / "bm25s" / "sparse.trec"
    write_run(path, run, _slug(f"{ds.name}.bm25s.sparse"))
    out = DatasetResult(ds.name, "bm25s", {"name": "bm25s", "model_id": "", "fingerprint": ""},
                        {"bm25s": _bm25s_options(lang, options)}, ds.note)
    out.results.append(SystemResult(System("sparse"), evaluate_run(ds.qrels, run, measures, missing=missing), qps, path, False))
    return out
