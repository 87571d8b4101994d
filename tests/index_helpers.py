"""Small synthetic ``Encoded`` corpora and brute-force oracles for the HybridIndex tests (no model needed)."""

from __future__ import annotations

from typing import Any

import numpy as np
import scipy.sparse as sp

from hybridsearch.index import HybridIndex
from hybridsearch.types import Encoded, EncoderInfo, MultiVectors

TOY = EncoderInfo(name="toy", model_id="toy/v1", fingerprint="f00d")
DENSE_DIM, VOCAB, MV_DIM = 16, 64, 8
ALL = ("dense", "sparse", "multivector")


def unit(a: np.ndarray) -> np.ndarray:
    return (a / np.linalg.norm(a, axis=-1, keepdims=True)).astype(np.float32)


def make_encoded(
    n: int, *, seed: int, views: tuple[str, ...] = ALL, encoder: EncoderInfo | None = TOY, terms: int = 6
) -> Encoded:
    """``n`` random rows: unit dense vectors, ``terms`` positive sparse weights per row, 1-5 unit token vectors."""
    rng = np.random.default_rng(seed)
    dense = unit(rng.normal(size=(n, DENSE_DIM))) if "dense" in views else None
    sparse = None
    if "sparse" in views:
        cols = np.stack([rng.choice(VOCAB, size=terms, replace=False) for _ in range(n)]) if n else np.zeros((0, terms), int)
        vals = rng.uniform(0.05, 1.0, size=(n, terms)).astype(np.float32)
        sparse = sp.csr_matrix((vals.ravel(), cols.ravel(), np.arange(0, n * terms + 1, terms)), shape=(n, VOCAB))
    mv = None
    if "multivector" in views:
        mv = MultiVectors.from_list([unit(rng.normal(size=(int(rng.integers(1, 6)), MV_DIM))) for _ in range(n)],
                                    dim=MV_DIM, dtype=np.float32)
    return Encoded(dense=dense, sparse=sparse, multivector=mv, encoder=encoder)


def build(n: int = 120, *, seed: int = 1, views: tuple[str, ...] = ALL, **config: Any) -> tuple[HybridIndex, Encoded, list[str]]:
    """An index of ``n`` documents ``d0..`` with texts and metadata (lang cycles sw/yo/en, year 1990 + i % 30)."""
    config.setdefault("multivector_compression", "fp32")
    index = HybridIndex(**config)
    enc = make_encoded(n, seed=seed, views=views)
    ids = [f"d{i}" for i in range(n)]
    index.add(ids, enc, texts=[f"text of d{i}" for i in range(n)], metadata=[meta(i) for i in range(n)])
    return index, enc, ids


def meta(i: int) -> dict[str, Any]:
    m: dict[str, Any] = {"lang": ("sw", "yo", "en")[i % 3], "year": 1990 + i % 30, "even": i % 2 == 0}
    if i % 5 == 0:
        m["tag"] = None
    if i % 7 == 0:
        m["keywords"] = ["a", "b"]
    return m


def topk(scores: np.ndarray, rows: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """Brute-force top-k per query: descending score, ties by row id; -1 / -inf padding."""
    nq = scores.shape[0]
    out_r = np.full((nq, k), -1, np.int64)
    out_s = np.full((nq, k), -np.inf, np.float32)
    for i in range(nq):
        ok = np.isfinite(scores[i])
        order = np.lexsort((rows[ok], -scores[i][ok].astype(np.float64)))[:k]
        out_r[i, : order.size] = rows[ok][order]
        out_s[i, : order.size] = scores[i][ok][order]
    return out_r, out_s


def assert_same_ranking(rows: np.ndarray, scores: np.ndarray, ref_rows: np.ndarray, ref_scores: np.ndarray,
                        full: np.ndarray, *, rtol: float = 1e-5) -> None:
    """Rows and scores equal a brute-force top-k, up to the order of rows whose scores tie within float error."""
    np.testing.assert_allclose(scores, ref_scores, rtol=rtol)
    for i, j in zip(*np.nonzero(rows != ref_rows), strict=True):
        a, b = int(rows[i, j]), int(ref_rows[i, j])
        assert a >= 0 and b >= 0, f"query {i}: padding differs at rank {j + 1}"
        assert np.isclose(full[i, a], full[i, b], rtol=rtol), f"query {i}: row {a} instead of {b} at rank {j + 1}"


def maxsim(q: np.ndarray, d: np.ndarray) -> float:
    return float((q.astype(np.float32) @ d.astype(np.float32).T).max(axis=1).mean()) if d.shape[0] else 0.0


def snapshot(index: HybridIndex, query: Encoded) -> dict[str, Any]:
    """Everything observable about an index, to check that a failed call changed nothing."""
    info = index.info()
    state: dict[str, Any] = {"len": len(index), "ids": index.doc_ids(), "info": info}
    state["docs"] = [index.get(d) for d in index.doc_ids()]
    for mode in ("dense", "sparse", "multivector", "hybrid"):
        if mode in index.modes or (mode == "hybrid" and index.modes):
            h = index.search(query, k=len(index) or 1, mode=mode, candidates=len(index) or 1)
            state[mode] = (h.rows.tolist(), h.scores.tolist())
    return state
