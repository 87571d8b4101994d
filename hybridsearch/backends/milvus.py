"""Milvus behind the index API (pymilvus ``MilvusClient``): milvus-lite files, or a Milvus server or cluster.

One collection per index: ``pk`` (INT64 key, see :func:`~.base.doc_key`), ``doc_id`` (VARCHAR), ``text``
(VARCHAR), ``metadata`` (JSON), ``dense`` (``FLOAT_VECTOR``, inner product) and ``sparse``
(``SPARSE_FLOAT_VECTOR``, inner product, ``SPARSE_INVERTED_INDEX``). Milvus keeps no ColBERT multi-vectors
here, so this adapter stores dense and sparse only; hybrid search then fuses those two (as the embedded index
does when it holds no multi-vectors).

>>> db = MilvusDatabase("corpus", uri="./milvus.db")           # milvus-lite, a local file   # doctest: +SKIP
>>> db = MilvusDatabase("corpus", uri="http://milvus:19530", token="root:Milvus")             # doctest: +SKIP
>>> db.from_index(HybridIndex.load("indexes/scifact"))          # migrate without re-encoding  # doctest: +SKIP
>>> db.search(query, k=10, mode="hybrid", fusion="rrf")                                        # doctest: +SKIP
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from .._optional import require
from ..errors import ConfigError
from ..fusion import Fusion
from ..types import Encoded, EncoderInfo
from .base import VectorDatabase
from .filters import to_milvus

__all__ = ["MilvusDatabase"]

_TEXT_MAX = 65_535
_ID_MAX = 1_024
_QUERY_CHUNK = 1_000  # keys per "pk in [...]" query


class MilvusDatabase(VectorDatabase):
    """A Milvus collection with the dense and sparse views. ``uri``: a ``.db`` file path (milvus-lite) or a server
    URL; ``token``/``db_name`` as pymilvus takes them. ``dense_index`` is the Milvus index type for ``dense``
    (``"FLAT"`` exact, ``"HNSW"``, ``"IVF_FLAT"``...), with ``dense_params`` its build parameters."""

    engine = "Milvus"
    supported_views = ("dense", "sparse")

    def __init__(self, collection: str, *, uri: str = "./milvus.db", token: str = "", db_name: str = "",
                 views: Sequence[str] | None = None, dense_index: str = "FLAT", dense_params: dict[str, Any] | None = None,
                 consistency_level: str = "Strong") -> None:
        super().__init__(collection, views=views)
        pymilvus = require("pymilvus", extra="scale")
        self._pm = pymilvus
        kwargs: dict[str, Any] = {"uri": uri}
        if token:
            kwargs["token"] = token
        if db_name:
            kwargs["db_name"] = db_name
        self.client = pymilvus.MilvusClient(**kwargs)
        self.dense_index, self.dense_params = dense_index, dict(dense_params or {})
        self.consistency_level = consistency_level

    def close(self) -> None:
        self.client.close()

    # ------------------------------------------------------------------ schema
    def _exists(self) -> bool:
        return bool(self.client.has_collection(self.collection))

    def _create(self, modes: tuple[str, ...], dims: dict[str, int]) -> None:
        DataType = self._pm.DataType
        about = {"format": "hybridsearch", "dims": dims, "encoder": None if self.encoder is None else self.encoder.to_dict()}
        schema = self.client.create_schema(auto_id=False, enable_dynamic_field=False)
        schema.add_field("pk", DataType.INT64, is_primary=True)
        schema.add_field("doc_id", DataType.VARCHAR, max_length=_ID_MAX)
        schema.add_field("text", DataType.VARCHAR, max_length=_TEXT_MAX)
        schema.add_field("metadata", DataType.JSON)
        index = self.client.prepare_index_params()
        if "dense" in modes:
            schema.add_field("dense", DataType.FLOAT_VECTOR, dim=dims["dense"])
            index.add_index("dense", index_type=self.dense_index, metric_type="IP", params=self.dense_params)
        if "sparse" in modes:
            schema.add_field("sparse", DataType.SPARSE_FLOAT_VECTOR)
            index.add_index("sparse", index_type="SPARSE_INVERTED_INDEX", metric_type="IP")
        self.client.create_collection(self.collection, schema=schema, index_params=index,
                                      consistency_level=self.consistency_level)
        # what the schema cannot say (vocabulary size, encoder) is kept in a collection property
        self.client.alter_collection_properties(self.collection, properties={"hybridsearch": json.dumps(about)})

    def _describe(self) -> tuple[tuple[str, ...], dict[str, int]]:
        desc = self.client.describe_collection(self.collection)
        try:
            about = json.loads((desc.get("properties") or {}).get("hybridsearch") or "")
        except json.JSONDecodeError:
            about = None
        if not isinstance(about, dict) or about.get("format") != "hybridsearch":
            raise ConfigError(f"Milvus collection {self.collection!r} was not created by hybridsearch; choose another name")
        dims = {str(m): int(v) for m, v in about["dims"].items()}
        if about.get("encoder") and self.encoder is None:
            self.encoder = EncoderInfo.from_dict(about["encoder"])
        return tuple(m for m in ("dense", "sparse") if m in dims), dims

    # ------------------------------------------------------------------ data
    def _write(self, keys: list[int], ids: list[str], texts: list[str], metas: list[dict[str, Any]], enc: Encoded) -> None:
        for i, t in zip(ids, texts, strict=True):
            if len(i.encode("utf-8")) > _ID_MAX or len(t.encode("utf-8")) > _TEXT_MAX:
                raise ConfigError(f"document {i!r}: Milvus VARCHAR fields hold at most {_ID_MAX} bytes of id and {_TEXT_MAX} of text")
        sparse = enc.sparse_dicts() if enc.sparse is not None else None
        rows = []
        for n, (k, d, t, m) in enumerate(zip(keys, ids, texts, metas, strict=True)):
            row: dict[str, Any] = {"pk": int(k), "doc_id": d, "text": t, "metadata": m}
            if enc.dense is not None:
                row["dense"] = enc.dense[n].tolist()
            if sparse is not None:
                row["sparse"] = sparse[n]
            rows.append(row)
        self.client.upsert(self.collection, rows)

    def _remove(self, keys: list[int]) -> None:
        self.client.delete(self.collection, ids=[int(k) for k in keys])

    def _records(self, keys: list[int], views: Sequence[str] = ()) -> dict[int, dict[str, Any]]:
        if not keys or not self._exists():
            return {}
        fields = ["pk", "doc_id", "text", "metadata", *views]
        out: dict[int, dict[str, Any]] = {}
        for s in range(0, len(keys), _QUERY_CHUNK):
            chunk = [int(k) for k in keys[s : s + _QUERY_CHUNK]]
            for r in self.client.query(self.collection, filter=f"pk in {chunk}", output_fields=fields):
                rec = dict(r)
                if "sparse" in rec:
                    rec["sparse"] = {int(t): float(w) for t, w in dict(rec["sparse"]).items()}
                out[int(rec["pk"])] = rec
        return out

    def count(self) -> int:
        if not self._exists():
            return 0
        res = self.client.query(self.collection, filter="", output_fields=["count(*)"])
        return int(res[0]["count(*)"])

    # ------------------------------------------------------------------ search
    def _data(self, view: str, query: Encoded) -> list[Any]:
        if view == "dense":
            return [row.tolist() for row in query.dense]  # type: ignore[union-attr]
        return query.sparse_dicts()

    def _search_view(self, view: str, query: Encoded, c: int, flt: Mapping[str, Any] | None) -> tuple[np.ndarray, np.ndarray]:
        expr = "" if flt is None else to_milvus(flt)
        res = self.client.search(self.collection, data=self._data(view, query), anns_field=view, limit=c, filter=expr,
                                 output_fields=[], search_params={"metric_type": "IP"})
        return _pad(res, len(query), c)

    def _engine_hybrid(self, query: Encoded, k: int, c: int, fz: Fusion, flt: Mapping[str, Any] | None,
                       use_mv: bool) -> tuple[np.ndarray, np.ndarray]:
        views = [v for v in ("dense", "sparse") if v in self.modes]
        if fz.method == "rrf":
            if any(fz.weights.get(v, 1.0) != 1.0 for v in views):
                raise ConfigError("Milvus's RRFRanker takes no per-view weights; use fusion_in='client' for weighted RRF")
            ranker = self._pm.RRFRanker(int(fz.k)) if float(fz.k).is_integer() else None
            if ranker is None:
                raise ConfigError(f"Milvus's RRFRanker takes an integer k, got {fz.k}")
        elif fz.method == "weighted_sum":
            from ..fusion import DEFAULT_WEIGHTS

            w = [float(fz.weights.get(v, DEFAULT_WEIGHTS[v])) for v in views]
            ranker = self._pm.WeightedRanker(*w, norm_score=False)
        else:
            raise ConfigError(f"Milvus cannot fuse with {fz.method!r} in the engine (it has RRFRanker and WeightedRanker); "
                              "use fusion_in='client'")
        expr = "" if flt is None else to_milvus(flt)
        reqs = [self._pm.AnnSearchRequest(self._data(v, query), v, {"metric_type": "IP"}, c, expr=expr) for v in views]
        res = self.client.hybrid_search(self.collection, reqs, ranker, limit=k, output_fields=[])
        return _pad(res, len(query), k)


def _pad(res: Any, nq: int, width: int) -> tuple[np.ndarray, np.ndarray]:
    keys = np.full((nq, width), -1, np.int64)
    scores = np.full((nq, width), -np.inf, np.float32)
    for qi, hits in enumerate(res):
        for j, h in enumerate(list(hits)[:width]):
            keys[qi, j] = int(h["pk"] if "pk" in h else h["id"])
            scores[qi, j] = float(h["distance"])
    return keys, scores
