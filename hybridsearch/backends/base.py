"""What the Milvus and Qdrant adapters share: keys, migration from a HybridIndex, and search through global fusion.

A document's engine key is a 63-bit hash of its string id (:func:`doc_key`), so an upsert of the same id
replaces the same record in any engine without a lookup table, and every adapter agrees on keys.

``search`` has :meth:`HybridIndex.search <hybridsearch.index.HybridIndex.search>`'s signature and returns the
same :class:`~hybridsearch.hits.Hits`. By default (``fusion_in="client"``) the engine answers each view's
top-``candidates`` query (with the metadata filter translated into its own language), the exact scores of the
union come from the stored vectors, and :mod:`hybridsearch.fusion` fuses them (see
:mod:`hybridsearch.scale.coordinator`): the same fused ranking as the embedded index for every fusion. With
``fusion_in="engine"`` the engine fuses (Milvus ``hybrid_search`` with ``RRFRanker``/``WeightedRanker``, Qdrant's
Query API prefetch plus fusion); what the engine cannot express raises ConfigError, and such hits carry no
per-view ranks.
"""

from __future__ import annotations

import abc
import hashlib
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import scipy.sparse as sp

from ..errors import ConfigError, DuplicateIdError, InputError, UnknownIdError
from ..fusion import DEFAULT_FUSION, Fusion, parse_fusion
from ..hits import Hits
from ..index.docstore import StoredDocument
from ..index.filters import parse_filter
from ..index.multivector import maxsim as _maxsim
from ..modes import index_search_args, pick_mode
from ..scale.coordinator import coordinate, to_hits
from ..types import MODES, Encoded, EncoderInfo, MultiVectors

__all__ = ["VectorDatabase", "doc_key"]


def doc_key(doc_id: str) -> int:
    """The engine key of ``doc_id``: the first 63 bits of its BLAKE2b hash (a non-negative int64)."""
    return int.from_bytes(hashlib.blake2b(doc_id.encode("utf-8"), digest_size=8).digest(), "little") >> 1


def maxsim_many(q: np.ndarray, docs: list[np.ndarray]) -> np.ndarray:
    """The library's MaxSim (:func:`hybridsearch.index.multivector.maxsim`: mean over query tokens of the best
    document token) of one query against each document; InputError for a query without token vectors."""
    if len(q) == 0:
        raise InputError("a query has no token vectors; MaxSim needs at least one")
    return np.array([_maxsim(q, d) for d in docs], np.float32)


class VectorDatabase(abc.ABC):
    """An external engine behind the index API: ``add``/``upsert``/``delete``/``get``/``search``/``from_index``."""

    engine = ""
    supported_views: tuple[str, ...] = MODES

    def __init__(self, collection: str, *, views: Sequence[str] | None = None) -> None:
        if not isinstance(collection, str) or not collection.replace("_", "").isalnum() or collection[0].isdigit():
            raise ConfigError(f"collection must be a name of letters, digits and '_' (not starting with a digit), got {collection!r}")
        if views is not None:
            bad = set(views) - set(self.supported_views)
            if bad:
                raise ConfigError(f"{self.engine} cannot store the {sorted(bad)} view(s); it supports {list(self.supported_views)}")
        self.collection = collection
        self._want = None if views is None else tuple(m for m in MODES if m in views)
        self._modes: tuple[str, ...] = ()
        self._dims: dict[str, int] = {}
        self.encoder: EncoderInfo | None = None
        # Query-time BM25 idf (documents from bm25 / bm25-word carry only term frequencies): live document
        # frequency per term and the live document count, kept current by this adapter's writes.
        self._df: np.ndarray | None = None
        self._n_docs = 0

    # ------------------------------------------------------------------ engine operations
    @abc.abstractmethod
    def _exists(self) -> bool: ...

    @abc.abstractmethod
    def _create(self, modes: tuple[str, ...], dims: dict[str, int]) -> None: ...

    @abc.abstractmethod
    def _describe(self) -> tuple[tuple[str, ...], dict[str, int]]: ...

    @abc.abstractmethod
    def _write(self, keys: list[int], ids: list[str], texts: list[str], metas: list[dict[str, Any]], enc: Encoded) -> None: ...

    @abc.abstractmethod
    def _remove(self, keys: list[int]) -> None: ...

    @abc.abstractmethod
    def _records(self, keys: list[int], views: Sequence[str] = ()) -> dict[int, dict[str, Any]]:
        """``{key: {"doc_id", "text", "metadata", view...}}`` for the keys present."""

    @abc.abstractmethod
    def _search_view(self, view: str, query: Encoded, c: int, flt: Mapping[str, Any] | None) -> tuple[np.ndarray, np.ndarray]: ...

    @abc.abstractmethod
    def _engine_hybrid(self, query: Encoded, k: int, c: int, fz: Fusion, flt: Mapping[str, Any] | None, use_mv: bool) -> tuple[np.ndarray, np.ndarray]: ...

    @abc.abstractmethod
    def count(self) -> int:
        """Documents stored."""

    # ------------------------------------------------------------------ properties
    def _ensure_open(self) -> None:
        if not self._modes and self._exists():
            self._modes, self._dims = self._describe()

    @property
    def modes(self) -> tuple[str, ...]:
        self._ensure_open()
        return self._modes

    def __len__(self) -> int:
        return self.count()

    def __repr__(self) -> str:
        return f"{type(self).__name__}(collection={self.collection!r}, modes={self.modes!r})"

    # ------------------------------------------------------------------ writes
    def _prepare(self, ids: Any, encoded: Any, texts: Any, metadata: Any) -> tuple[list[str], list[str], list[dict[str, Any]], Encoded]:
        if not isinstance(encoded, Encoded):
            raise InputError(f"encoded must be an Encoded, got {type(encoded).__name__}")
        ids = [ids] if isinstance(ids, str) else list(ids)
        for i, d in enumerate(ids):
            if not isinstance(d, str) or not d:
                raise InputError(f"ids[{i}] must be a non-empty string, got {d!r}")
        if len(set(ids)) != len(ids):
            raise DuplicateIdError("the batch holds the same id more than once")
        if len(ids) != len(encoded):
            raise InputError(f"{len(ids)} ids given for {len(encoded)} encoded rows")
        texts = [""] * len(ids) if texts is None else list(texts)
        metas = [{}] * len(ids) if metadata is None else [dict(m or {}) for m in metadata]
        if len(texts) != len(ids) or len(metas) != len(ids):
            raise InputError("texts and metadata need one entry per id")
        self._ensure_open()
        if self.encoder is not None and encoded.encoder is not None and encoded.encoder != self.encoder:
            raise InputError(f"documents were encoded by {encoded.encoder.name!r}, this collection holds {self.encoder.name!r}")
        if self.encoder is None:
            self.encoder = encoded.encoder
        if not self._modes:
            modes = self._want or tuple(m for m in encoded.modes if m in self.supported_views)
            if not set(modes) & {"dense", "sparse"}:
                raise InputError(f"{self.engine} needs a dense or sparse view; the documents hold {list(encoded.modes)}")
            dims = {"dense": encoded.dense_dim, "sparse": encoded.vocab_size, "multivector": encoded.multivector_dim}
            self._create(modes, {m: int(dims[m]) for m in modes})  # type: ignore[arg-type]
            self._modes, self._dims = modes, {m: int(dims[m]) for m in modes}  # type: ignore[arg-type]
        missing = [m for m in self._modes if getattr(encoded, m) is None]
        if missing:
            raise InputError(f"the documents lack the {missing} view(s) this collection holds")
        return ids, texts, metas, encoded.select(self._modes)

    def upsert(self, ids: Sequence[str], encoded: Encoded, *, texts: Sequence[str] | None = None,
               metadata: Sequence[Mapping[str, Any] | None] | None = None) -> None:
        """Insert documents, replacing those with the same ids."""
        ids, texts, metas, enc = self._prepare(ids, encoded, texts, metadata)
        keys = [doc_key(d) for d in ids]
        old = self._records(keys, ["sparse"]) if self._df is not None else {}
        self._write(keys, ids, texts, metas, enc)
        self._count_terms(old, enc)

    # ------------------------------------------------------------------ query-time idf
    def set_idf_statistics(self, index: Any) -> None:
        """Take BM25's document frequencies and live document count from ``index`` (a HybridIndex holding the
        same documents), for collections whose sparse documents carry only term frequencies (``bm25``,
        ``bm25-word``). :meth:`from_index` calls it; this adapter's later writes keep the counts current. A
        collection reopened in another process needs it again before searching (searching without it raises
        ConfigError rather than scoring without idf)."""
        s = index.searcher()
        vocab = int(self._dims.get("sparse") or index.info()["dims"]["sparse"])
        self._df = np.asarray(s.doc_freq(np.arange(vocab, dtype=np.int64)), np.int64).copy()
        self._n_docs = len(s)

    def _count_terms(self, removed: Mapping[int, Mapping[str, Any]], added: Encoded | None) -> None:
        if self._df is None:
            return
        for rec in removed.values():
            terms = np.fromiter((int(t) for t, w in (rec.get("sparse") or {}).items() if w), np.int64)
            np.subtract.at(self._df, np.unique(terms), 1)
            self._n_docs -= 1
        if added is not None and added.sparse is not None:
            m = added.sparse.tocsr()
            m.eliminate_zeros()
            np.add.at(self._df, m.indices, 1)  # one entry per (document, term): token ids are unique per row
            self._n_docs += m.shape[0]

    def _query_for_search(self, query: Encoded) -> Encoded:
        from ..index.searcher import idf_weighted
        from ..types import sparse_needs_query_idf

        if query.sparse is None or "sparse" not in self.modes or not sparse_needs_query_idf(self.encoder):
            return query
        if self._df is None:
            raise ConfigError(
                f"the sparse documents in {self.engine} collection {self.collection!r} carry only BM25 term "
                "frequencies; give this adapter the document frequencies first: db.set_idf_statistics(index) "
                "(db.from_index(index) does it)"
            )
        df = self._df
        return idf_weighted(query, lambda terms: df[terms], self._n_docs)

    def add(self, ids: Sequence[str], encoded: Encoded, *, texts: Sequence[str] | None = None,
            metadata: Sequence[Mapping[str, Any] | None] | None = None) -> None:
        """Insert new documents; DuplicateIdError (nothing written) when an id is already stored."""
        ids, texts, metas, enc = self._prepare(ids, encoded, texts, metadata)
        keys = [doc_key(d) for d in ids]
        present = self._records(keys)
        if present:
            shown = sorted(r["doc_id"] for r in present.values())[:5]
            raise DuplicateIdError(f"{len(present)} id(s) are already stored: {shown}; use upsert() to replace documents")
        self._write(keys, ids, texts, metas, enc)
        self._count_terms({}, enc)

    def delete(self, ids: Sequence[str]) -> None:
        """Remove documents; UnknownIdError (nothing removed) when an id is not stored."""
        ids = [ids] if isinstance(ids, str) else list(dict.fromkeys(ids))
        keys = [doc_key(d) for d in ids]
        present = self._records(keys)
        unknown = [d for d, k in zip(ids, keys, strict=True) if k not in present]
        if unknown:
            raise UnknownIdError(f"{len(unknown)} id(s) are not stored: {unknown[:5]}; nothing was deleted")
        if keys:
            old = self._records(keys, ["sparse"]) if self._df is not None else {}
            self._remove(keys)
            self._count_terms(old, None)

    def get(self, doc_id: str) -> StoredDocument:
        """The stored text and metadata of ``doc_id``."""
        rec = self._records([doc_key(doc_id)]).get(doc_key(doc_id))
        if rec is None:
            raise UnknownIdError(f"no document with id {doc_id!r} in {self.engine} collection {self.collection!r}")
        return StoredDocument(doc_id=rec["doc_id"], row=doc_key(doc_id), text=rec["text"], metadata=rec["metadata"])

    def vectors(self, ids: Sequence[str]) -> Encoded:
        """The stored views of ``ids`` as an :class:`Encoded` (in that order)."""
        keys = [doc_key(d) for d in ids]
        recs = self._records(keys, self.modes)
        missing = [d for d, k in zip(ids, keys, strict=True) if k not in recs]
        if missing:
            raise UnknownIdError(f"not stored: {missing[:5]}")
        rows = [recs[k] for k in keys]
        return Encoded(
            dense=np.array([r["dense"] for r in rows], np.float32) if "dense" in self.modes else None,
            sparse=Encoded.sparse_from_dicts([r["sparse"] for r in rows], vocab_size=self._dims["sparse"]) if "sparse" in self.modes else None,
            multivector=MultiVectors.from_list([np.asarray(r["multivector"], np.float32).reshape(-1, self._dims["multivector"]) for r in rows],
                                               dim=self._dims["multivector"], dtype=np.float32) if "multivector" in self.modes else None,
            encoder=self.encoder,
        )

    def from_index(self, index: Any, *, batch_size: int = 1000) -> int:
        """Copy every live document of a :class:`~hybridsearch.index.HybridIndex` here (streamed, no re-encoding);
        returns the number copied. Views this engine cannot store are left out."""
        from ..index.export import export_index

        modes = [m for m in index.modes if m in (self._want or self.supported_views)]
        n = 0
        for batch in export_index(index, batch_size=batch_size, modes=modes):
            self.upsert(batch.ids, batch.encoded, texts=batch.texts, metadata=batch.metadata)
            n += len(batch)
        if "sparse" in modes and index.info()["config"]["sparse"].get("idf"):
            self.set_idf_statistics(index)
        return n

    # ------------------------------------------------------------------ search
    def first_stage(self, view: str, query: Encoded, c: int, flt: Mapping[str, Any] | None) -> tuple[np.ndarray, np.ndarray]:
        keys, scores = self._search_view(view, query, c, flt)
        # the engine's order, made deterministic on exact ties (ascending key), as the coordinator expects
        from ..index.searcher import _top

        rows, sc, _ = _top(keys, scores, c)
        return rows, sc

    def score(self, view: str, query: Encoded, keys: np.ndarray) -> np.ndarray:
        """Exact scores of ``keys`` ``(nq, m)`` from the stored vectors (``-inf`` on padding)."""
        uniq = np.unique(keys[keys >= 0])
        out = np.full(keys.shape, -np.inf, np.float32)
        if uniq.size == 0:
            return out
        recs = self._records(uniq.tolist(), [view])
        pos = {int(k): i for i, k in enumerate(uniq.tolist())}
        if view == "dense":
            mat = np.array([recs[int(k)]["dense"] for k in uniq], np.float32)
            all_s = query.dense @ mat.T
        elif view == "sparse":
            mat = Encoded.sparse_from_dicts([recs[int(k)]["sparse"] for k in uniq], vocab_size=self._dims["sparse"])
            all_s = np.asarray((query.sparse @ mat.T).todense() if sp.issparse(query.sparse @ mat.T) else query.sparse @ mat.T)
        else:
            d = self._dims["multivector"]
            docs = [np.asarray(recs[int(k)]["multivector"], np.float32).reshape(-1, d) for k in uniq]
            all_s = np.stack([maxsim_many(query.multivector[i], docs) for i in range(len(query))])
        for qi in range(keys.shape[0]):
            ok = keys[qi] >= 0
            cols = np.array([pos[int(k)] for k in keys[qi][ok]], np.int64)
            out[qi, ok] = all_s[qi, cols]
        return out

    def search(
        self, query: Encoded, k: int = 10, *, mode: str | None = None, filter: Mapping[str, Any] | None = None,  # noqa: A002
        candidates: int = 100, fusion: str | Fusion = DEFAULT_FUSION, rerank: bool | None = None, fusion_in: str = "client",
    ) -> Hits:
        """Search as :meth:`HybridIndex.search` does (see the module docstring for ``fusion_in``)."""
        if fusion_in not in ("client", "engine"):
            raise ConfigError(f"fusion_in must be 'client' or 'engine', got {fusion_in!r}")
        if filter is not None:
            parse_filter(filter)
        if not self.modes:
            return Hits.empty(len(query), k)
        query = self._query_for_search(query)
        if fusion_in == "engine" and pick_mode(self.modes, query, mode) == "hybrid":
            fz = parse_fusion(fusion)
            if mode is not None:
                rerank = index_search_args(mode, rerank)[1]
            use_mv = "multivector" in self.modes and query.multivector is not None and rerank is not False
            keys, scores = self._engine_hybrid(query, k, max(candidates, k), fz, filter, use_mv)
            ranks: dict[str, np.ndarray] = {}
            views: dict[str, np.ndarray] = {}
            record = {"stage": "retrieval", "mode": "all" if use_mv else "dense+sparse", "fusion": f"{self.engine}:{fz}",
                      "candidates": max(candidates, k)}
        else:
            keys, scores, ranks, views, record = coordinate(self, query, k, mode=mode, filter=filter,
                                                            candidates=candidates, fusion=fusion, rerank=rerank,
                                                            encoder=self.encoder)
        valid = keys >= 0
        recs = self._records(np.unique(keys[valid]).tolist()) if valid.any() else {}
        doc_ids = np.full(keys.shape, "", dtype=object)
        doc_ids[valid] = [recs[int(x)]["doc_id"] for x in keys[valid]]

        def lookup(rows: np.ndarray) -> tuple[list[str], list[dict[str, Any]]]:
            return [recs[int(r)]["text"] for r in rows], [recs[int(r)]["metadata"] for r in rows]

        return to_hits(keys, scores, ranks, views, record, doc_ids, lookup)
