"""Encode a large corpus on a Ray cluster: jsonl/parquet shards in, encoded shards of :class:`Encoded` out.

The corpus is cut into work units (row ranges of the input files, see :mod:`.sources`). Ray Data maps the
pending units over an actor pool (``map_batches`` with one encoder per actor: one actor per GPU, or CPU actors),
and each actor writes its unit's encoded shard to the output folder (see :mod:`.units`); the folder must
therefore be reachable from every node (a local disk for a one-machine cluster, else a shared file system).

- Resumable: a unit is finished once its ``done`` marker is written (last, after the data); a restarted run
  with the same arguments encodes only units without one. No document is encoded into two finished units and
  none is skipped: the units partition the input rows, and the summary checks the finished ids for duplicates.
- Retries: a failed batch of documents is retried (``max_retries`` times, with a short back-off); an actor
  process that dies is restarted by Ray and its unit re-run. A unit that still fails is reported in the
  summary and left unfinished for the next run.
- BM25 encoders: a first pass gathers each unit's corpus statistics and merges them
  (:class:`.corpus_stats.CorpusStatistics`), so every actor weights documents with whole-corpus statistics.

>>> summary = encode_corpus("corpus/", "encoded/", encoder="bge-m3", actors=4, gpus_per_actor=1)  # doctest: +SKIP
>>> index = build_index("encoded/", "index/")                                                 # doctest: +SKIP
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import os
import socket
import time
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from .._atomic import write_text_atomic
from .._optional import require
from .._progress import progress
from ..encoders import encoder_class, get_encoder
from ..encoders.base import Encoder
from ..encoders.stateful import stateful_parts
from ..encoders.stored import SPEC_FILE, STATE_FILE
from ..errors import ConfigError, InputError
from ..types import MODES, Encoded
from .corpus_stats import CorpusStatistics
from .sources import Unit, expand_inputs, plan_units, read_unit
from .units import RunFolder

__all__ = ["EncodeSummary", "build_index", "encode_corpus", "ray_session"]

logger = logging.getLogger(__name__)


# ---------------------------------------------------------------------------------------------- ray session
@contextlib.contextmanager
def ray_session(
    address: str | None = None, *, num_cpus: int | None = None, num_gpus: int | None = None,
    object_store_memory: int | None = None, runtime_env: dict[str, Any] | None = None,
) -> Iterator[Any]:
    """Use the running Ray, connect to ``address`` (``"auto"``, ``"ray://head:10001"``, ``"head:6379"``) or start a
    local one (``num_cpus``, ``num_gpus``, ``object_store_memory`` bytes apply to a local start only).

    A Ray started or connected here is shut down on exit; one already initialised is left running.
    """
    ray = require("ray", extra="scale")
    require("ray.data", extra="scale")
    if ray.is_initialized():
        yield ray
        return
    kwargs: dict[str, Any] = {"include_dashboard": False, "log_to_driver": False, "logging_level": logging.WARNING}
    if runtime_env:
        kwargs["runtime_env"] = runtime_env
    if address is None:
        kwargs.update(num_cpus=num_cpus, num_gpus=num_gpus, object_store_memory=object_store_memory)
    else:
        kwargs["address"] = address
    ray.init(**kwargs)
    try:
        yield ray
    finally:
        ray.shutdown()


@contextlib.contextmanager
def _quiet_ray_data(ray: Any, show_progress: bool) -> Iterator[None]:
    """Our own progress bar replaces Ray Data's; its INFO lines are kept out of the way. Units are handed out only
    once the whole actor pool is up (``wait_for_min_actors_s``), so the first actor to load its model does not take
    every unit of a small run while the others are still starting."""
    ctx = ray.data.DataContext.get_current()
    saved = ctx.enable_progress_bars
    saved_wait = ctx.wait_for_min_actors_s
    ctx.enable_progress_bars = False
    ctx.wait_for_min_actors_s = max(saved_wait, 600)
    log = logging.getLogger("ray.data")
    level = log.level
    log.setLevel(logging.WARNING)
    try:
        yield
    finally:
        ctx.enable_progress_bars = saved
        ctx.wait_for_min_actors_s = saved_wait
        log.setLevel(level)


# ---------------------------------------------------------------------------------------------- encoders
def stateful_specs(spec: str, options: dict[str, Any]) -> list[tuple[str, dict[str, Any]]]:
    """The registry names (with options) of the fitted parts of the encoder ``spec`` (BM25 encoders)."""
    if "=" in spec:
        names = [item.partition("=")[2].strip() for item in spec.split(",")]
        return [(n, {}) for n in dict.fromkeys(names) if hasattr(encoder_class(n), "fit")]
    return [(spec, options)] if hasattr(encoder_class(spec), "fit") else []


def _build_encoder(spec: str, options: dict[str, Any], state: str | None) -> Encoder:
    encoder = get_encoder(spec, **options)
    parts = stateful_parts(encoder)
    if parts and state is None:
        raise ConfigError(f"{spec} needs fitted statistics, and none were given")
    for part in parts:
        part.load_state(state)  # type: ignore[attr-defined]
    return encoder


def count_tokens(encoder: Encoder, texts: list[str], encoded: Encoded) -> int:
    """Tokens the encoder read: the model's tokens (bge-m3: from its tokenizer, truncation included), the
    analyzer's terms (BM25), else whitespace-separated words."""
    parts = list(dict.fromkeys(getattr(encoder, "parts", {}).values())) or [encoder]
    for part in parts:
        flag = getattr(part, "_flag", None)
        if flag is not None and getattr(flag, "tokenizer", None) is not None:
            enc = flag.tokenizer(texts, truncation=True, max_length=part.passage_max_length)  # type: ignore[attr-defined]
            return int(sum(len(x) for x in enc["input_ids"]))
    for part in parts:
        analyzer = getattr(part, "analyzer", None)
        if analyzer is not None and hasattr(analyzer, "token_ids"):
            return int(analyzer.token_ids(texts)[1][-1])
        if analyzer is not None and hasattr(analyzer, "terms"):
            return int(analyzer.terms(texts)[1][-1])
    return int(sum(len(t.split()) for t in texts))


def encode_with_retries(
    encoder: Encoder, texts: list[str], *, outputs: Sequence[str] | None, batch_size: int, max_retries: int,
    backoff_s: float = 0.5,
) -> tuple[Encoded, int]:
    """Encode ``texts`` in batches of ``batch_size``; a batch that raises is retried up to ``max_retries`` times
    (back-off doubling from ``backoff_s``). Returns the concatenated result and the number of retries made.

    Input errors (:class:`~hybridsearch.errors.InputError`, e.g. an empty text) are not retried: they fail the
    same way every time.
    """
    parts: list[Encoded] = []
    retries = 0
    for start in range(0, len(texts), batch_size):
        batch = texts[start : start + batch_size]
        for attempt in range(max_retries + 1):
            try:
                parts.append(encoder.encode_corpus(batch, outputs=outputs))
                break
            except InputError:
                raise
            except Exception as exc:
                if attempt == max_retries:
                    raise
                retries += 1
                logger.warning("batch at row %d failed (%s: %s); retry %d of %d", start, type(exc).__name__, exc,
                               attempt + 1, max_retries)
                time.sleep(backoff_s * 2**attempt)
    return (parts[0] if len(parts) == 1 else Encoded.concat(parts)), retries


class _UnitEncoder:
    """A Ray Data actor: builds the encoder once, then encodes and writes one unit per row of its batches."""

    def __init__(self, spec: str, options: dict[str, Any], outputs: list[str] | None, state: str | None, out: str,
                 batch_size: int, max_retries: int) -> None:
        self.encoder = _build_encoder(spec, options, state)
        self.outputs, self.batch_size, self.max_retries = outputs, batch_size, max_retries
        self.folder = RunFolder(out)
        self.worker = f"{socket.gethostname()}:{os.getpid()}"

    def __call__(self, batch: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        rows: dict[str, list[Any]] = {k: [] for k in ("name", "documents", "tokens", "seconds", "retries", "error")}
        for i in range(len(batch["name"])):
            unit = Unit.from_dict({k: batch[k][i] for k in ("path", "start", "stop", "name", "offset")})
            t0 = time.perf_counter()
            n = tokens = retries = 0
            error = ""
            try:
                docs = read_unit(unit)
                encoded, retries = encode_with_retries(self.encoder, docs.texts, outputs=self.outputs,
                                                       batch_size=self.batch_size, max_retries=self.max_retries)
                tokens = count_tokens(self.encoder, docs.texts, encoded)
                n = len(docs)
                seconds = time.perf_counter() - t0
                self.folder.write_unit(unit.name, docs, encoded, {"tokens": tokens, "seconds": seconds, "retries": retries,
                                                                  "worker": self.worker})
            except Exception as exc:  # reported in the summary; the unit stays unfinished for the next run
                error = f"{type(exc).__name__}: {exc}"
            rows["name"].append(unit.name)
            rows["documents"].append(n)
            rows["tokens"].append(tokens)
            rows["seconds"].append(time.perf_counter() - t0)
            rows["retries"].append(retries)
            rows["error"].append(error)
        return {k: np.asarray(v) for k, v in rows.items()}


class _UnitStats:
    """A Ray Data actor: BM25 corpus statistics of one unit per row."""

    def __init__(self, specs: list[tuple[str, dict[str, Any]]]) -> None:
        self.encoders = [get_encoder(s, **o) for s, o in specs]

    def __call__(self, batch: dict[str, np.ndarray]) -> dict[str, Any]:
        out: list[bytes] = []
        for i in range(len(batch["name"])):
            unit = Unit.from_dict({k: batch[k][i] for k in ("path", "start", "stop", "name", "offset")})
            texts = read_unit(unit).texts
            out.append(_pickle([CorpusStatistics.gather(e, texts).to_payload() for e in self.encoders]))
        return {"stats": np.array(out, dtype=object)}


def _pickle(obj: Any) -> bytes:
    import pickle

    return pickle.dumps(obj, protocol=5)


def _unpickle(b: bytes) -> Any:
    import pickle

    return pickle.loads(b)  # noqa: S301 - produced by our own actors in this run


# ---------------------------------------------------------------------------------------------- summary
@dataclass
class EncodeSummary:
    """What a run did. ``documents``/``tokens``/``seconds`` count this run's work; ``*_total`` the whole folder."""

    out: str
    units_total: int
    units_skipped: int
    units_encoded: int
    units_failed: int
    documents: int
    tokens: int
    seconds: float
    documents_total: int
    retries: int = 0
    failures: list[dict[str, str]] = field(default_factory=list)
    actors: int = 0

    @property
    def documents_per_s(self) -> float:
        return self.documents / self.seconds if self.seconds > 0 else 0.0

    @property
    def complete(self) -> bool:
        return self.units_failed == 0 and self.units_skipped + self.units_encoded == self.units_total

    def to_dict(self) -> dict[str, Any]:
        return {**asdict(self), "documents_per_s": round(self.documents_per_s, 3), "complete": self.complete}

    def __str__(self) -> str:
        lines = [
            f"{self.documents:,} documents ({self.tokens:,} tokens) encoded in {self.seconds:.1f}s "
            f"= {self.documents_per_s:,.1f} documents/s with {self.actors} actor(s)",
            f"units: {self.units_encoded} encoded, {self.units_skipped} already finished, {self.units_failed} failed "
            f"of {self.units_total}; {self.documents_total:,} documents finished in {self.out}; {self.retries} retried batch(es)",
        ]
        lines += [f"  failed {f['unit']}: {f['error']}" for f in self.failures[:10]]
        return "\n".join(lines)


def _id_hashes(folder: RunFolder, units: list[Unit]) -> tuple[int, list[str]]:
    """Finished documents and the ids that occur more than once across finished units (8-byte hashes, then exact)."""
    hashes: list[np.ndarray] = []
    for u in units:
        if not folder.is_done(u.name):
            continue
        ids = folder.read_ids(u.name)
        hashes.append(np.array([int.from_bytes(hashlib.blake2b(i.encode(), digest_size=8).digest(), "little") for i in ids],
                               np.uint64))
    if not hashes:
        return 0, []
    allh = np.concatenate(hashes)
    s = np.sort(allh)
    dup_h = set(s[1:][s[1:] == s[:-1]].tolist())
    dups: list[str] = []
    if dup_h:
        seen: set[str] = set()
        for u in units:
            if folder.is_done(u.name):
                for i in folder.read_ids(u.name):
                    if int.from_bytes(hashlib.blake2b(i.encode(), digest_size=8).digest(), "little") in dup_h:
                        if i in seen:
                            dups.append(i)
                        seen.add(i)
    return int(allh.size), sorted(set(dups))


# ---------------------------------------------------------------------------------------------- entry points
def encode_corpus(
    inputs: str | Path | Iterable[str | Path],
    out: str | Path,
    *,
    encoder: str,
    options: dict[str, Any] | None = None,
    outputs: Sequence[str] | None = None,
    actors: int = 2,
    cpus_per_actor: float = 1,
    gpus_per_actor: float = 0,
    rows_per_unit: int = 10_000,
    batch_size: int = 256,
    max_retries: int = 2,
    address: str | None = None,
    num_cpus: int | None = None,
    object_store_memory: int | None = None,
    runtime_env: dict[str, Any] | None = None,
    show_progress: bool = True,
) -> EncodeSummary:
    """Encode the documents of ``inputs`` (jsonl/parquet files, folders or globs) into the folder ``out``.

    ``encoder`` is a registry spec (``"bge-m3"``, ``"bm25"``, ``"dense=minilm,sparse=bm25"``) with ``options``
    (e.g. ``{"model": "/models/bge-m3", "batch_size": 64}``) built once per actor; ``outputs`` picks views.
    ``actors`` encoder actors run at once, each reserving ``cpus_per_actor`` CPUs and ``gpus_per_actor`` GPUs
    (1 for one actor per GPU). ``rows_per_unit`` rows make one resumable unit; ``batch_size`` documents are
    encoded (and retried) at a time. ``address`` connects to a running cluster; without it a local Ray is
    started (``num_cpus``, ``object_store_memory`` in bytes) unless one is already initialised.

    Returns an :class:`EncodeSummary` (also written to ``out/summary.json``). Raises ConfigError when ``out``
    holds a run over other inputs or another encoder, InputError for unreadable inputs; encoding failures do
    not raise: they are counted in the summary and the units stay unfinished for the next run.
    """
    options = dict(options or {})
    if isinstance(actors, bool) or not isinstance(actors, int) or actors < 1:
        raise ConfigError(f"actors must be a positive integer, got {actors!r}")
    for name, v in (("batch_size", batch_size), ("max_retries", max_retries)):
        if isinstance(v, bool) or not isinstance(v, int) or v < (1 if name == "batch_size" else 0):
            raise ConfigError(f"{name} must be a {'positive' if name == 'batch_size' else 'non-negative'} integer, got {v!r}")
    if outputs is not None:
        outputs = [outputs] if isinstance(outputs, str) else list(outputs)
        bad = set(outputs) - set(MODES)
        if bad or not outputs:
            raise ConfigError(f"outputs must be a non-empty subset of {list(MODES)}, got {outputs!r}")
    stateful_specs(encoder, options)  # unknown encoder names fail here, before any work
    files = expand_inputs(inputs)
    folder = RunFolder(out)
    units = plan_units(files, rows_per_unit)
    plan = {
        "encoder": {"spec": encoder, "options": options},
        "outputs": outputs,
        "rows_per_unit": rows_per_unit,
        "inputs": [{"path": str(f), "size": f.stat().st_size} for f in files],
        "units": [u.to_dict() for u in units],
    }
    old = folder.read_plan()
    if old is not None:
        same = {k: old.get(k) for k in plan} == {k: plan[k] for k in plan}
        if not same:
            raise ConfigError(
                f"{folder.root} holds a run over other inputs or with another encoder, views or unit size; "
                "use a new output folder (or delete this one) to start a different run"
            )
    else:
        folder.root.mkdir(parents=True, exist_ok=True)
        if any(folder.root.iterdir()):
            raise ConfigError(f"{folder.root} is not empty and holds no encoded-corpus run; choose an empty or new folder")
        folder.write_plan(plan)
    write_text_atomic(folder.root / SPEC_FILE, json.dumps({"spec": encoder, "options": options}, indent=2) + "\n")
    if folder.remove_partial_files():
        logger.info("removed partial files of an interrupted run in %s", folder.units_dir)
    pending = [u for u in units if not folder.is_done(u.name)]
    t0 = time.perf_counter()
    documents = tokens = retries = 0
    failures: list[dict[str, str]] = []
    with ray_session(address, num_cpus=num_cpus, object_store_memory=object_store_memory, runtime_env=runtime_env) as ray, \
            _quiet_ray_data(ray, show_progress):
        state = _ensure_statistics(ray, folder, units, encoder, options, actors, cpus_per_actor)
        if pending:
            ds = ray.data.from_items([u.to_dict() for u in pending], override_num_blocks=len(pending))
            results = ds.map_batches(
                _UnitEncoder,
                fn_constructor_kwargs={"spec": encoder, "options": options, "outputs": outputs, "state": state,
                                       "out": str(folder.root.resolve()), "batch_size": batch_size,
                                       "max_retries": max_retries},
                # one unit in flight per actor: a unit goes to the next free actor, never queues behind a busy one
                batch_size=1, compute=ray.data.ActorPoolStrategy(size=actors, max_tasks_in_flight_per_actor=1),
                num_cpus=cpus_per_actor, num_gpus=gpus_per_actor or None,
            )
            total_docs = sum(len(u) for u in pending)
            with progress(total_docs, "encode-corpus", unit="docs", enabled=show_progress) as bar:
                for row in results.iter_rows():
                    if row["error"]:
                        failures.append({"unit": str(row["name"]), "error": str(row["error"])})
                    else:
                        documents += int(row["documents"])
                        tokens += int(row["tokens"])
                        retries += int(row["retries"])
                    bar.update(int(row["documents"]))
    seconds = time.perf_counter() - t0
    finished, dups = _id_hashes(folder, units)
    if dups:
        failures.append({"unit": "*", "error": f"{len(dups)} document id(s) occur in more than one row: {dups[:5]}"})
    encoded_now = len(pending) - sum(1 for f in failures if f["unit"] != "*")
    summary = EncodeSummary(
        out=str(folder.root), units_total=len(units), units_skipped=len(units) - len(pending), units_encoded=encoded_now,
        units_failed=len(failures), documents=documents, tokens=tokens, seconds=seconds, documents_total=finished,
        retries=retries, failures=failures, actors=actors,
    )
    folder.write_summary(summary.to_dict())
    return summary


def _ensure_statistics(ray: Any, folder: RunFolder, units: list[Unit], spec: str, options: dict[str, Any],
                       actors: int, cpus_per_actor: float) -> str | None:
    """Gather and merge BM25 statistics over every unit once (kept in ``encoder-state.npz``); its path or None."""
    specs = stateful_specs(spec, options)
    if not specs:
        return None
    if len(specs) > 1:
        raise ConfigError("encode-corpus supports one fitted (BM25) part per encoder")
    path = folder.root / STATE_FILE
    if path.is_file():
        return str(path.resolve())
    ds = ray.data.from_items([u.to_dict() for u in units], override_num_blocks=min(len(units), 4 * actors))
    stats = ds.map_batches(_UnitStats, fn_constructor_kwargs={"specs": specs}, batch_size=1,
                           compute=ray.data.ActorPoolStrategy(size=actors), num_cpus=cpus_per_actor,
                           batch_format="numpy")
    parts = [CorpusStatistics.from_payload(_unpickle(r["stats"])[0]) for r in stats.iter_rows()]
    name, opts = specs[0]
    part = CorpusStatistics.merge(parts).apply(get_encoder(name, **opts))
    part.save(path)  # type: ignore[attr-defined]
    return str(path.resolve())


def build_index(encoded: str | Path, index_dir: str | Path | None = None, **index_options: Any) -> Any:
    """A :class:`~hybridsearch.index.HybridIndex` of every unit of an encoded-corpus folder, in plan order.

    ``index_options`` go to the ``HybridIndex`` constructor (``dense_factory=``, ``multivector_compression=``...).
    With ``index_dir`` the index is saved there with the encoder record (``encoder.json``, BM25 statistics), so
    ``hybridsearch search index_dir "..."`` encodes queries the same way. Raises InputError when a unit is
    unfinished and DuplicateIdError when two rows share an id.
    """
    import shutil

    from ..index import HybridIndex

    folder = RunFolder(encoded)
    index = HybridIndex(**index_options)
    for shard in folder.shards():
        index.add(shard.ids, shard.encoded, texts=shard.texts, metadata=shard.metadata)
    if index_dir is not None:
        target = index.save(index_dir)
        for name in (SPEC_FILE, STATE_FILE):
            if (folder.root / name).is_file():
                shutil.copyfile(folder.root / name, target / name)
    return index

