"""Rerank in process with the local bge-m3: FlagEmbedding's ``compute_score``, without its re-encoding cost.

``BGEM3FlagModel.compute_score(pairs, weights_for_different_modes=[w_dense, w_sparse, w_colbert])`` returns, per
(query, passage) pair (FlagEmbedding 1.4, ``inference/embedder/encoder_only/m3.py``):

- ``dense``: the dot product of the L2-normalised CLS vectors;
- ``sparse``: ``Σ_t w_q[t] · w_p[t]`` over shared token ids, each weight the maximum ReLU weight of that token;
- ``colbert``: ``(1/N) Σ_i max_j q_i · p_j`` over the query's N token vectors (after CLS, ``</s>`` included);
- ``sparse+dense``: ``(w_s · sparse + w_d · dense) / (w_s + w_d)``;
- ``colbert+sparse+dense``: ``(w_d · dense + w_s · sparse + w_c · colbert) / (w_d + w_s + w_c)``.

:class:`BGEM3Reranker` computes the same numbers from one encoding of each query and each distinct candidate text
(``compute_score`` encodes both sides of every pair and builds ``B × B`` score matrices to keep their diagonal).
The default weights are FlagEmbedding's README example, 0.4 / 0.2 / 0.4, and the default score is
``colbert+sparse+dense``. One difference, by design: inside ``compute_score`` a short passage batched with longer
ones gets zero vectors at padded positions, so a query token whose similarities are all negative scores 0 there;
here MaxSim runs over the passage's real tokens only (equal to ``compute_score`` with ``batch_size=1``).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from ..encoders.bge_m3 import DEFAULT_MODEL, BGEM3Encoder
from ..errors import ConfigError
from ..hits import Hits
from .base import Reranker, ScoredBatch, candidate_texts

__all__ = ["SCORES", "BGEM3Reranker"]

SCORES = ("dense", "sparse", "colbert", "sparse+dense", "colbert+sparse+dense")
"""The score names of ``compute_score``."""
DEFAULT_WEIGHTS = (0.4, 0.2, 0.4)
"""``[dense, sparse, colbert]`` from FlagEmbedding's README ``compute_score`` example."""


class BGEM3Reranker(Reranker):
    """Rerank with bge-m3's dense, sparse and ColBERT scores of each (query, document text) pair.

    ``encoder``: a :class:`~hybridsearch.encoders.bge_m3.BGEM3Encoder`, or a model id / directory to load one
    (``encoder_options`` are passed on; multi-vectors are kept in float32 for scoring). ``weights``:
    ``(dense, sparse, colbert)``, default 0.4 / 0.2 / 0.4. ``score``: one of :data:`SCORES`. ``combine``:
    ``"replace"`` or a fusion spec with the first stage (see :mod:`.base`).
    """

    def __init__(
        self,
        encoder: BGEM3Encoder | str = DEFAULT_MODEL,
        *,
        weights: Sequence[float] = DEFAULT_WEIGHTS,
        score: str = "colbert+sparse+dense",
        combine: str = "replace",
        **encoder_options: Any,
    ) -> None:
        super().__init__(combine=combine)
        w = tuple(weights)
        if len(w) != 3 or any(isinstance(x, bool) or not isinstance(x, (int, float)) or not np.isfinite(x) or x < 0 for x in w):
            raise ConfigError(f"weights must be three numbers >= 0 (dense, sparse, colbert), got {weights!r}")
        if score not in SCORES:
            raise ConfigError(f"score must be one of {', '.join(SCORES)}, got {score!r}")
        parts = {"dense": w[0], "sparse": w[1], "colbert": w[2]}
        used = [p for p in ("dense", "sparse", "colbert") if p in score]
        if sum(parts[p] for p in used) <= 0 and len(used) > 1:
            raise ConfigError(f"the weights of {score} sum to 0")
        if isinstance(encoder, BGEM3Encoder):
            if encoder_options:
                raise ConfigError("encoder options apply only when the reranker loads the model itself")
            self.encoder = encoder
        else:
            self.encoder = BGEM3Encoder(encoder, **{"multivector_dtype": "float32", **encoder_options})
        self.weights = tuple(float(x) for x in w)
        self.score_name = score
        self._views = tuple(v for v, p in (("dense", "dense"), ("sparse", "sparse"), ("multivector", "colbert")) if p in used)

    def describe(self) -> dict[str, Any]:
        return {"type": "BGEM3Reranker", "model": self.encoder.model_id, "score": self.score_name, "weights": list(self.weights)}

    def compute_score(self, pairs: Sequence[tuple[str, str]]) -> dict[str, np.ndarray]:
        """Every score of ``compute_score`` for ``(query, passage)`` pairs: ``{name: float64 (n_pairs,)}``."""
        if not pairs:
            return {name: np.zeros(0) for name in SCORES}
        queries = list(dict.fromkeys(q for q, _ in pairs))
        passages = list(dict.fromkeys(p for _, p in pairs))
        views = ("dense", "sparse", "multivector")
        q = self.encoder.encode_queries(queries, outputs=views)
        p = self.encoder.encode_corpus(passages, outputs=views)
        qi = _positions(queries, [a for a, _ in pairs])
        pi = _positions(passages, [b for _, b in pairs])
        return self._scores(q, p, qi, pi)

    def _scores(self, q: Any, p: Any, qi: np.ndarray, pi: np.ndarray) -> dict[str, np.ndarray]:
        n = qi.size
        out: dict[str, np.ndarray] = {}
        wd, ws, wc = self.weights
        if q.dense is not None:
            out["dense"] = np.einsum("ij,ij->i", q.dense[qi].astype(np.float64), p.dense[pi].astype(np.float64))
        if q.sparse is not None:
            out["sparse"] = np.asarray(q.sparse[qi].multiply(p.sparse[pi]).sum(axis=1), dtype=np.float64).ravel()
        if q.multivector is not None:
            col = np.zeros(n)
            for k in range(n):
                qv = q.multivector[int(qi[k])].astype(np.float32)
                pv = p.multivector[int(pi[k])].astype(np.float32)
                col[k] = float((qv @ pv.T).max(axis=1).mean()) if qv.size and pv.size else 0.0
            out["colbert"] = col
        if "dense" in out and "sparse" in out:
            out["sparse+dense"] = (ws * out["sparse"] + wd * out["dense"]) / (ws + wd) if ws + wd > 0 else np.zeros(n)
            if "colbert" in out:
                total = wd + ws + wc
                out["colbert+sparse+dense"] = (wd * out["dense"] + ws * out["sparse"] + wc * out["colbert"]) / total
        return out

    def score(self, queries: list[str], hits: Hits) -> ScoredBatch:
        scores = np.full(hits.rows.shape, np.nan)
        items = candidate_texts(hits)
        passages = list(dict.fromkeys(t for cand in items for _, t in cand))
        if not passages:
            return ScoredBatch(scores, [None] * hits.n_queries)
        q = self.encoder.encode_queries(queries, outputs=self._views)
        p = self.encoder.encode_corpus(passages, outputs=self._views)
        where = {t: n for n, t in enumerate(passages)}
        qi = np.array([i for i, cand in enumerate(items) for _ in cand], np.int64)
        pi = np.array([where[t] for cand in items for _, t in cand], np.int64)
        values = self._scores(q, p, qi, pi)[self.score_name]
        k = 0
        for i, cand in enumerate(items):
            for slot, _ in cand:
                scores[i, slot] = values[k]
                k += 1
        return ScoredBatch(scores, [None] * hits.n_queries)


def _positions(unique: list[str], items: list[str]) -> np.ndarray:
    where = {t: n for n, t in enumerate(unique)}
    return np.array([where[t] for t in items], np.int64)
