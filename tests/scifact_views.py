"""SciFact (all 5,183 documents, 300 test queries) with three cheap, deterministic views, for backend tests.

- ``sparse``: real BM25 weights (``bm25-word``) fitted on the corpus;
- ``dense``: a fixed random projection of the BM25 vector to 48 dimensions, L2-normalised (an LSA-like view);
- ``multivector``: one unit vector per top-weighted term (up to 6), from a fixed random term embedding.

The views only need real data's structure (term overlap, skewed weights, ties in ranks), not a model's quality:
the tests compare engines and shardings with each other, never with published scores.
"""

from __future__ import annotations

import functools
from typing import Any

import numpy as np
import scipy.sparse as sp

from hybridsearch.datasets import load_dataset
from hybridsearch.encoders import get_encoder
from hybridsearch.types import Encoded, EncoderInfo, MultiVectors

INFO = EncoderInfo("scifact-views", "bm25-word+projection", "v1")
DENSE_DIM, MV_DIM, MV_TERMS = 48, 16, 6


def _unit(a: np.ndarray) -> np.ndarray:
    n = np.linalg.norm(a, axis=-1, keepdims=True)
    return (a / np.where(n > 0, n, 1.0)).astype(np.float32)


def _views(s: sp.csr_matrix) -> tuple[np.ndarray, MultiVectors]:
    rng = np.random.default_rng(12)
    proj = rng.normal(size=(s.shape[1], DENSE_DIM)).astype(np.float32)
    emb = _unit(rng.normal(size=(s.shape[1], MV_DIM)))
    dense = _unit(np.asarray(s @ proj))
    mvs = []
    for i in range(s.shape[0]):
        a, b = s.indptr[i], s.indptr[i + 1]
        top = s.indices[a:b][np.argsort(-s.data[a:b], kind="stable")[:MV_TERMS]]
        mvs.append(emb[top] if top.size else np.zeros((0, MV_DIM), np.float32))
    return dense, MultiVectors.from_list(mvs, dim=MV_DIM, dtype=np.float32)


@functools.lru_cache(maxsize=1)
def scifact() -> dict[str, Any]:
    """ids, texts, metadata, docs (Encoded), qids, queries (Encoded), qrels."""
    ds = load_dataset("scifact")
    texts = [d.contents for d in ds.corpus]
    bm25 = get_encoder("bm25-word")
    ds_sparse = bm25.fit_encode_corpus(texts).sparse
    dense, mv = _views(ds_sparse)
    docs = Encoded(dense=dense, sparse=ds_sparse, multivector=mv, encoder=INFO)
    qids = list(ds.queries)
    q_sparse = bm25.encode_queries([ds.queries[q] for q in qids]).sparse
    q_dense, q_mv = _views(q_sparse)
    queries = Encoded(dense=q_dense, sparse=q_sparse, multivector=q_mv, encoder=INFO)
    metadata = [{"bucket": "abc"[i % 3], "year": 2000 + i % 20, "long": len(t) > 1200} for i, t in enumerate(texts)]
    return {"ids": [d.doc_id for d in ds.corpus], "texts": texts, "metadata": metadata, "docs": docs,
            "qids": qids, "queries": queries, "qrels": ds.qrels}
