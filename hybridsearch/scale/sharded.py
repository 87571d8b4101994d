"""An index split into N shards served by Ray actors (or in this process), searched with global fusion.

:meth:`ShardedIndex.split` cuts a :class:`~hybridsearch.index.HybridIndex` into ``n`` shard indexes (a document
goes to shard ``hash(doc_id) mod n``) using the streaming export, without re-encoding. Each shard remembers the
original row id of each of its documents as its *key*, so ties break as in the single index.

A query fans out to every shard. Each shard returns **each view's own candidate list** (its top-``candidates``
dense rows, its top sparse rows), never a per-shard fused list; the coordinator merges them into each view's
global list, asks the shards for exact scores of the union, fuses globally, then reranks with MaxSim
(see :mod:`.coordinator`). The result equals the single index's for every mode and fusion.

Metadata filters are checked against the fields of the whole index; a shard that holds no document with a field
evaluates conditions on it as on an absent field (``$ne``/``$nin``/``$exists: false`` hold, the rest do not).
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np

from .._atomic import write_text_atomic
from ..errors import ConfigError, FilterError, IndexCorruptedError, InputError
from ..fusion import DEFAULT_FUSION, Fusion
from ..hits import Hits
from ..index.export import _parts, export_index
from ..index.filters import Condition, Filter, parse_filter
from ..index.hybrid import HybridIndex
from ..index.searcher import idf_weighted
from ..types import Encoded, EncoderInfo
from .coordinator import coordinate, merge_topk, to_hits

__all__ = ["ShardedIndex"]

SHARDING_FILE = "sharding.json"
KEYS_FILE = "keys.npy"


def shard_of(doc_id: str, n: int) -> int:
    """The shard of ``doc_id`` among ``n`` (stable across runs and machines)."""
    return int.from_bytes(hashlib.blake2b(doc_id.encode("utf-8"), digest_size=8).digest(), "little") % n


def _specialise(f: Filter | Condition, fields: set[str]) -> Filter | Condition | bool:
    """``f`` with conditions on fields outside ``fields`` replaced by their value on an absent field."""
    if isinstance(f, Condition):
        if f.field in fields:
            return f
        if f.op == "$exists":
            return not f.value
        return f.op in ("$ne", "$nin")
    parts = []
    for p in f.parts:
        s = _specialise(p, fields)
        if isinstance(s, bool):
            if f.mode == "and" and not s:
                return False
            if f.mode == "or" and s:
                return True
            continue
        parts.append(s)
    if not parts:
        return f.mode == "and"
    return Filter(f.mode, tuple(parts))


class _Shard:
    """One shard: a HybridIndex and the key (original row id) of each of its rows."""

    def __init__(self, path: str) -> None:
        self.index = HybridIndex.load(path)
        self.keys = np.load(Path(path) / KEYS_FILE)
        self.dense, self.sparse, self.mv, self.docs = _parts(self.index)
        if self.docs.n_deleted or len(self.index) != self.keys.size:
            raise IndexCorruptedError(f"shard {path} does not match its keys; split the index again")

    def describe(self) -> dict[str, Any]:
        return {"documents": len(self.index), "modes": list(self.index.modes), "fields": sorted(self.docs.fields),
                "sparse_idf": bool(self.index.info()["config"]["sparse"].get("idf")),
                "encoder": None if self.index.encoder is None else self.index.encoder.to_dict()}

    def doc_freq(self, terms: np.ndarray) -> np.ndarray:
        """This shard's document frequency of each sparse term (int64)."""
        return self.index.searcher().doc_freq(terms)

    def _to_keys(self, rows: np.ndarray) -> np.ndarray:
        return np.where(rows >= 0, self.keys[np.maximum(rows, 0)], -1)

    def first_stage(self, view: str, query: Encoded, c: int, flt: Filter | bool | None) -> tuple[np.ndarray, np.ndarray]:
        if flt is False or len(self.index) == 0:
            return np.full((len(query), c), -1, np.int64), np.full((len(query), c), -np.inf, np.float32)
        # A shard is built fresh and never changed, so its rows are 0..n-1 with no tombstones: the allowed mask is
        # the filter's alone, and each view's own top-c is its component's search.
        allowed = None if flt is None or flt is True else self.docs.filter_mask(flt, self.keys.size)
        if view == "dense":
            rows, scores = self.dense.search(query.dense, c, allowed=allowed)
        else:
            rows, scores = self.sparse.search(query.sparse, c, allowed=allowed)
        return self._to_keys(rows), scores

    def score(self, view: str, query: Encoded, keys: np.ndarray) -> np.ndarray:
        pos = np.searchsorted(self.keys, keys)
        pos_c = np.minimum(pos, max(self.keys.size - 1, 0))
        mine = (keys >= 0) & (self.keys.size > 0) & (self.keys[pos_c] == keys) if self.keys.size else np.zeros(keys.shape, bool)
        rows = np.where(mine, pos_c, -1).astype(np.int64)
        if not mine.any():
            return np.full(keys.shape, -np.inf, np.float32)
        if view == "dense":
            out = self.dense.score(query.dense, rows)
        elif view == "sparse":
            out = self.sparse.score(query.sparse, rows)
        else:
            out = self.mv.maxsim(query.multivector, rows)
        return np.where(mine, out, -np.inf).astype(np.float32)

    def lookup(self, keys: np.ndarray) -> list[tuple[int, str, str, dict[str, Any]]]:
        pos = np.searchsorted(self.keys, keys)
        pos_c = np.minimum(pos, max(self.keys.size - 1, 0))
        mine = keys[(self.keys.size > 0) & (self.keys[pos_c] == keys)] if self.keys.size else keys[:0]
        rows = np.searchsorted(self.keys, mine)
        return list(zip(mine.tolist(), self.docs.doc_ids(rows), self.docs.texts(rows), self.docs.metadata(rows), strict=True))


class ShardedIndex:
    """N shard indexes behind one ``search`` (``HybridIndex.search``'s signature, returning the same :class:`Hits`).

    Open with ``ShardedIndex(directory)``: ``use_ray=True`` serves each shard from a Ray actor reserving
    ``num_cpus`` CPUs (Ray must be initialised, e.g. with :func:`hybridsearch.scale.ray_session`), ``False``
    keeps the shards in this process (the same algorithm, for tests and small deployments). Read-only: to
    change documents, change the source index and split again.
    """

    def __init__(self, directory: str | os.PathLike[str], *, use_ray: bool = True, num_cpus: float = 1) -> None:
        self.directory = Path(directory)
        spec_path = self.directory / SHARDING_FILE
        if not spec_path.is_file():
            raise InputError(f"{self.directory} holds no sharded index ({SHARDING_FILE} is missing); use ShardedIndex.split")
        spec = json.loads(spec_path.read_text(encoding="utf-8"))
        paths = [str(self.directory / s) for s in spec["shards"]]
        self._ray = None
        if use_ray:
            import ray

            if not ray.is_initialized():
                raise ConfigError("Ray is not initialised; call ray.init() (or use hybridsearch.scale.ray_session) first")
            actor = ray.remote(num_cpus=num_cpus)(_Shard)
            self._ray = ray
            self._shards: list[Any] = [actor.remote(p) for p in paths]
        else:
            self._shards = [_Shard(p) for p in paths]
        info = self._all("describe")
        self._modes = tuple(spec["modes"])
        self._fields_by_shard = [set(i["fields"]) for i in info]
        self._fields = set().union(*self._fields_by_shard)
        self._n = sum(i["documents"] for i in info)
        # BM25 documents that carry only term frequencies: the coordinator weights queries by the global idf
        # (document frequencies summed over shards, N the total), exactly what the unsplit index computes.
        self._sparse_idf = any(i.get("sparse_idf") for i in info)
        self.encoder = None if spec.get("encoder") is None else EncoderInfo.from_dict(spec["encoder"])

    # ------------------------------------------------------------------ building
    @classmethod
    def split(cls, index: HybridIndex, directory: str | os.PathLike[str], n_shards: int, *, batch_size: int = 4096) -> Path:
        """Write ``index`` as ``n_shards`` shard indexes under ``directory`` (streamed; no re-encoding)."""
        if isinstance(n_shards, bool) or not isinstance(n_shards, int) or n_shards < 1:
            raise ConfigError(f"n_shards must be a positive integer, got {n_shards!r}")
        if not index.modes:
            raise InputError("the index is empty; add documents before splitting it")
        target = Path(directory)
        if target.exists() and any(target.iterdir()):
            raise ConfigError(f"{target} is not empty; split into a new directory")
        cfg = index.info()["config"]
        shards = [HybridIndex(modes=list(index.modes), dense_factory=cfg["dense"]["factory"], ef_search=cfg["dense"]["ef_search"],
                              nprobe=cfg["dense"]["nprobe"], ef_construction=cfg["dense"]["ef_construction"],
                              multivector_compression=cfg["multivector"]["compression"], multivector_pool_factor=1)
                  for _ in range(n_shards)]
        keys: list[list[int]] = [[] for _ in range(n_shards)]
        for batch in export_index(index, batch_size=batch_size):
            which = np.array([shard_of(d, n_shards) for d in batch.ids])
            for s in range(n_shards):
                sel = np.flatnonzero(which == s)
                if sel.size:
                    shards[s].add([batch.ids[i] for i in sel], batch.encoded.take(sel),
                                  texts=[batch.texts[i] for i in sel], metadata=[batch.metadata[i] for i in sel])
                    keys[s] += batch.rows[sel].tolist()
        names = []
        target.mkdir(parents=True, exist_ok=True)
        for s, shard in enumerate(shards):
            name = f"shard-{s:04d}"
            if not shard.modes:  # a shard that received no document still answers (with nothing)
                shutil.rmtree(target / name, ignore_errors=True)
            path = shard.save(target / name) if shard.modes else _empty_shard(target / name, index)
            np.save(path / KEYS_FILE, np.asarray(keys[s], np.int64))
            names.append(name)
        write_text_atomic(target / SHARDING_FILE, json.dumps({
            "shards": names, "modes": list(index.modes), "documents": len(index),
            "encoder": None if index.encoder is None else index.encoder.to_dict(), "assignment": "blake2b(doc_id) mod n",
        }, indent=1) + "\n")
        return target

    # ------------------------------------------------------------------ fan-out
    def _all(self, method: str, *args: Any) -> list[Any]:
        if self._ray is not None:
            return self._ray.get([getattr(s, method).remote(*args) for s in self._shards])
        return [getattr(s, method)(*args) for s in self._shards]

    @property
    def modes(self) -> tuple[str, ...]:
        return self._modes

    @property
    def n_shards(self) -> int:
        return len(self._shards)

    def __len__(self) -> int:
        return self._n

    def search(
        self, query: Encoded, k: int = 10, *, mode: str | None = None, filter: Mapping[str, Any] | None = None,  # noqa: A002
        candidates: int = 100, fusion: str | Fusion = DEFAULT_FUSION, rerank: bool | None = None,
    ) -> Hits:
        """Search every shard and fuse globally; arguments and result as :meth:`HybridIndex.search`."""
        shard_filters: list[Any] = [None] * self.n_shards
        if filter is not None:
            flt = parse_filter(filter)
            missing = sorted(flt.fields - self._fields)
            if missing:
                raise FilterError(f"no document has the field(s) {', '.join(map(repr, missing))}")
            shard_filters = [_specialise(flt, fields) for fields in self._fields_by_shard]
        if self._sparse_idf and query.sparse is not None:
            query = idf_weighted(query, lambda terms: np.sum(self._all("doc_freq", terms), axis=0), self._n)
        keys, scores, ranks, views, record = coordinate(_Fanout(self, shard_filters), query, k, mode=mode, filter=filter,
                                                        candidates=candidates, fusion=fusion, rerank=rerank,
                                                        encoder=self.encoder)
        valid = keys >= 0
        found: dict[int, tuple[str, str, dict[str, Any]]] = {}
        if valid.any():
            for part in self._all("lookup", np.unique(keys[valid])):
                for key, doc_id, text, meta in part:
                    found[key] = (doc_id, text, meta)
        doc_ids = np.full(keys.shape, "", dtype=object)
        doc_ids[valid] = [found[int(x)][0] for x in keys[valid]]

        def lookup(rows: np.ndarray) -> tuple[list[str], list[dict[str, Any]]]:
            return [found[int(r)][1] for r in rows], [found[int(r)][2] for r in rows]

        return to_hits(keys, scores, ranks, views, record, doc_ids, lookup)

    def close(self) -> None:
        """End the shard actors."""
        if self._ray is not None:
            for s in self._shards:
                self._ray.kill(s)
            self._shards = []

    def __enter__(self) -> ShardedIndex:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()


class _Fanout:
    """One query's view of the shards for :func:`coordinate`: each shard with its specialised filter."""

    def __init__(self, owner: ShardedIndex, filters: list[Any]) -> None:
        self.owner, self.filters = owner, filters

    @property
    def modes(self) -> tuple[str, ...]:
        return self.owner.modes

    def first_stage(self, view: str, query: Encoded, c: int, flt: Any) -> tuple[np.ndarray, np.ndarray]:
        o = self.owner
        if o._ray is not None:
            q = o._ray.put(query)
            parts = o._ray.get([s.first_stage.remote(view, q, c, f) for s, f in zip(o._shards, self.filters, strict=True)])
        else:
            parts = [s.first_stage(view, query, c, f) for s, f in zip(o._shards, self.filters, strict=True)]
        return merge_topk(parts, c)

    def score(self, view: str, query: Encoded, keys: np.ndarray) -> np.ndarray:
        return np.maximum.reduce(self.owner._all("score", view, query, keys))


def _empty_shard(path: Path, like: HybridIndex) -> Path:
    raise InputError(f"shard {path.name} would hold no document; split into fewer shards ({len(like)} documents)")
