"""Qdrant behind the index API (qdrant-client): local mode (``path=`` or ``":memory:"``) or a Qdrant server/cluster.

One collection per index with named vectors ``dense`` (dot product), ``multivector`` (dot product with the
``MAX_SIM`` comparator: ColBERT MaxSim) and a sparse vector ``sparse``. A point's id is the document key
(:func:`~.base.doc_key`); its payload holds ``doc_id``, ``text`` and ``metadata``. Engine-side fusion uses the
Query API: one prefetch per first-stage view, fused with RRF (our ``rrf(k)`` is Qdrant's ``Rrf(k + 1)``: Qdrant
counts ranks from 0), then, when multi-vectors are held, MaxSim alone over the fused candidates (Qdrant's MaxSim
sums over query tokens where the library averages, so those scores are the library's times the query length).

>>> db = QdrantDatabase("corpus", path="./qdrant")            # local mode, a folder   # doctest: +SKIP
>>> db = QdrantDatabase("corpus", url="http://qdrant:6333")   # a server              # doctest: +SKIP
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from .._optional import require
from ..errors import ConfigError
from ..fusion import Fusion
from ..types import Encoded, EncoderInfo
from .base import VectorDatabase
from .filters import to_qdrant

__all__ = ["QdrantDatabase"]

_BATCH = 256


class QdrantDatabase(VectorDatabase):
    """A Qdrant collection with dense, sparse and multi-vector views. Give one of ``path`` (local mode on disk),
    ``location=":memory:"`` or ``url`` (with ``api_key``)."""

    engine = "Qdrant"

    def __init__(self, collection: str, *, path: str | None = None, location: str | None = None, url: str | None = None,
                 api_key: str | None = None, views: Sequence[str] | None = None, hnsw_ef: int | None = None,
                 exact: bool = True) -> None:
        super().__init__(collection, views=views)
        qc = require("qdrant_client", extra="scale")
        self.models = qc.models
        given = [x for x in (path, location, url) if x]
        if len(given) != 1:
            raise ConfigError("give exactly one of path= (local folder), location=':memory:' or url=")
        self.client = qc.QdrantClient(path=path, location=location, url=url, api_key=api_key)
        self.search_params = self.models.SearchParams(exact=exact, hnsw_ef=hnsw_ef)

    def close(self) -> None:
        self.client.close()

    # ------------------------------------------------------------------ schema
    def _exists(self) -> bool:
        return bool(self.client.collection_exists(self.collection))

    def _create(self, modes: tuple[str, ...], dims: dict[str, int]) -> None:
        m = self.models
        vectors: dict[str, Any] = {}
        if "dense" in modes:
            vectors["dense"] = m.VectorParams(size=dims["dense"], distance=m.Distance.DOT)
        if "multivector" in modes:
            vectors["multivector"] = m.VectorParams(
                size=dims["multivector"], distance=m.Distance.DOT,
                multivector_config=m.MultiVectorConfig(comparator=m.MultiVectorComparator.MAX_SIM))
        sparse = {"sparse": m.SparseVectorParams()} if "sparse" in modes else None
        about = {"format": "hybridsearch", "dims": dims, "encoder": None if self.encoder is None else self.encoder.to_dict()}
        self.client.create_collection(self.collection, vectors_config=vectors, sparse_vectors_config=sparse,
                                      metadata={"hybridsearch": about})

    def _describe(self) -> tuple[tuple[str, ...], dict[str, int]]:
        info = self.client.get_collection(self.collection)
        about = (getattr(info.config, "metadata", None) or {}).get("hybridsearch")
        if not isinstance(about, dict) or about.get("format") != "hybridsearch":
            raise ConfigError(f"Qdrant collection {self.collection!r} was not created by hybridsearch; choose another name")
        if about.get("encoder") and self.encoder is None:
            self.encoder = EncoderInfo.from_dict(about["encoder"])
        dims = {str(k): int(v) for k, v in about["dims"].items()}
        return tuple(x for x in ("dense", "sparse", "multivector") if x in dims), dims

    # ------------------------------------------------------------------ data
    def _write(self, keys: list[int], ids: list[str], texts: list[str], metas: list[dict[str, Any]], enc: Encoded) -> None:
        m = self.models
        sparse = enc.to_qdrant_sparse() if enc.sparse is not None else None
        points = []
        for n, (k, d, t, meta) in enumerate(zip(keys, ids, texts, metas, strict=True)):
            vec: dict[str, Any] = {}
            if enc.dense is not None:
                vec["dense"] = enc.dense[n].tolist()
            if sparse is not None:
                vec["sparse"] = sparse[n]
            if enc.multivector is not None:
                mv = np.asarray(enc.multivector[n], np.float32)
                if mv.shape[0] == 0:
                    raise ConfigError(f"document {d!r} has no token vectors; Qdrant multivectors need at least one")
                vec["multivector"] = mv.tolist()
            points.append(m.PointStruct(id=int(k), vector=vec, payload={"doc_id": d, "text": t, "metadata": meta}))
        for s in range(0, len(points), _BATCH):
            self.client.upsert(self.collection, points[s : s + _BATCH], wait=True)

    def _remove(self, keys: list[int]) -> None:
        self.client.delete(self.collection, points_selector=self.models.PointIdsList(points=[int(k) for k in keys]), wait=True)

    def _records(self, keys: list[int], views: Sequence[str] = ()) -> dict[int, dict[str, Any]]:
        if not keys or not self._exists():
            return {}
        out: dict[int, dict[str, Any]] = {}
        for s in range(0, len(keys), 1000):
            got = self.client.retrieve(self.collection, ids=[int(k) for k in keys[s : s + 1000]], with_payload=True,
                                       with_vectors=list(views) if views else False)
            for p in got:
                rec = dict(p.payload or {})
                vec = p.vector or {}
                for v in views:
                    x = vec.get(v) if isinstance(vec, dict) else None
                    if v == "sparse":
                        rec["sparse"] = {} if x is None else dict(zip(x.indices, x.values, strict=False))
                    else:
                        rec[v] = x
                out[int(p.id)] = rec
        return out

    def count(self) -> int:
        if not self._exists():
            return 0
        return int(self.client.count(self.collection, exact=True).count)

    # ------------------------------------------------------------------ search
    def _query_vector(self, view: str, query: Encoded, i: int) -> Any:
        if view == "dense":
            return query.dense[i].tolist()  # type: ignore[index]
        if view == "sparse":
            s = query.sparse
            a, b = s.indptr[i], s.indptr[i + 1]  # type: ignore[union-attr]
            return self.models.SparseVector(indices=s.indices[a:b].tolist(), values=s.data[a:b].tolist())  # type: ignore[union-attr]
        return np.asarray(query.multivector[i], np.float32).tolist()  # type: ignore[index]

    def _search_view(self, view: str, query: Encoded, c: int, flt: Mapping[str, Any] | None) -> tuple[np.ndarray, np.ndarray]:
        f = None if flt is None else to_qdrant(flt)
        keys = np.full((len(query), c), -1, np.int64)
        scores = np.full((len(query), c), -np.inf, np.float32)
        reqs = [self.models.QueryRequest(query=self._query_vector(view, query, i), using=view, limit=c, filter=f,
                                         params=self.search_params, with_payload=False) for i in range(len(query))]
        for s in range(0, len(reqs), _BATCH):
            for qi, res in enumerate(self.client.query_batch_points(self.collection, reqs[s : s + _BATCH]), start=s):
                for j, p in enumerate(res.points[:c]):
                    keys[qi, j], scores[qi, j] = int(p.id), float(p.score)
        return keys, scores

    def _engine_hybrid(self, query: Encoded, k: int, c: int, fz: Fusion, flt: Mapping[str, Any] | None,
                       use_mv: bool) -> tuple[np.ndarray, np.ndarray]:
        m = self.models
        views = [v for v in ("dense", "sparse") if v in self.modes]
        if any(w != 1.0 for w in fz.weights.values()):
            raise ConfigError("Qdrant's fusion takes no per-view weights; use fusion_in='client' for weighted fusion")
        if fz.method == "rrf":
            if not float(fz.k).is_integer() or fz.k < 1:
                raise ConfigError(f"Qdrant's RRF takes an integer k, got {fz.k}")
            fused = m.RrfQuery(rrf=m.Rrf(k=int(fz.k) + 1))  # 1 / (k + rank), ranks from 0 in Qdrant, from 1 here
        else:
            raise ConfigError(f"Qdrant cannot fuse with {fz.method!r} in the engine (it has RRF, and DBSF, which is "
                              "neither min-max nor a weighted sum); use fusion_in='client'")
        f = None if flt is None else to_qdrant(flt)
        keys = np.full((len(query), k), -1, np.int64)
        scores = np.full((len(query), k), -np.inf, np.float32)
        for i in range(len(query)):
            pre = [m.Prefetch(query=self._query_vector(v, query, i), using=v, limit=c, filter=f, params=self.search_params)
                   for v in views]
            if use_mv:
                pre = [m.Prefetch(prefetch=pre, query=fused, limit=c)]
                res = self.client.query_points(self.collection, prefetch=pre, query=self._query_vector("multivector", query, i),
                                               using="multivector", limit=k, with_payload=False)
            else:
                res = self.client.query_points(self.collection, prefetch=pre, query=fused, limit=k, with_payload=False)
            for j, p in enumerate(res.points[:k]):
                keys[i, j], scores[i, j] = int(p.id), float(p.score)
        return keys, scores
