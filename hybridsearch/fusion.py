"""Fuse per-representation result lists into one score: weighted sum, (weighted) RRF, min-max, DBSF, z-score.

Inputs are aligned candidate lists for a batch of queries: for each representation (``"dense"``, ``"sparse"``,
``"multivector"``) a float ``(n_queries, m)`` array of scores, ``-inf`` where that representation has no score for
the candidate, and/or an int ``(n_queries, m)`` array of 1-based ranks in that representation's own list, ``0``
where it did not retrieve the candidate. Every function returns a new float32 ``(n_queries, m)`` array and never
changes its inputs.

- :func:`weighted_sum`: ``Σ w_r · s_r`` over raw scores, bge-m3's own way of combining its three scores. The
  default weights, :data:`DEFAULT_WEIGHTS` (dense 1, sparse 0.3, multi-vector 1), are bge-m3's ensemble
  (``ensemble_score`` in FlagEmbedding's training code: ``dense + 0.3 · sparse + colbert``). FlagEmbedding's README
  uses 0.4 / 0.2 / 0.4 with ``compute_score``: ``"weighted_sum(dense=0.4,sparse=0.2,multivector=0.4)"``. Raw
  scores only combine well when they share a scale (bge-m3's do); for BM25 + a dense model prefer rrf or minmax.
- :func:`rrf`: ``Σ w_r / (k + rank_r)`` over the lists that retrieved the candidate, with 1-based ranks. ``k = 60``
  follows the RRF paper (Cormack, Clarke and Büttcher, SIGIR 2009) and Milvus's ``RRFRanker``. Qdrant's RRF
  defaults to ``k = 2`` over 0-based ranks (the paper's 60 is Qdrant's 61), so its fused order differs.
  Weighted RRF (``"rrf(dense=2,sparse=1)"``) multiplies each list's term by its weight.
- :func:`minmax`: min-max normalise each representation's scores per query to ``[0, 1]``, then weighted sum
  (equal weights by default).
- :func:`dbsf`: distribution-based score fusion, as Qdrant's ``DBSF`` (Qdrant 1.11): per query and
  representation, map ``[mean - 3σ, mean + 3σ]`` of the candidates' scores to ``[0, 1]``, then weighted sum.
- :func:`zscore`: ``(s - mean) / σ`` per query and representation, then weighted sum.

Weights. Without weights every method uses its defaults (above). A spec that names weights must name one for
**every** representation it fuses: ``minmax(dense=0.7)`` applied to dense and sparse lists raises
:class:`~hybridsearch.errors.ConfigError` instead of silently giving sparse a weight. Naming extra
representations is fine (``weighted_sum(dense=0.4,sparse=0.2,multivector=0.4)`` also fuses dense + sparse).

The default fusion is :data:`DEFAULT_FUSION` (``"rrf"``, k = 60) everywhere: :class:`Fusion` ``()``,
``HybridIndex.search``, the retriever and the command line. Besides the representations, the names
``"retrieval"`` (the first-stage score of a result) and ``"rerank"`` (a reranker's score) are accepted, so a
reranker's score can be fused with the first stage: ``"rrf"``, ``"minmax(retrieval=0.3,rerank=0.7)"``.

A fusion is named by a short spec string that round-trips: ``"rrf"``, ``"rrf(k=60)"``,
``"weighted_sum(dense=1,sparse=0.3)"``, ``"minmax(dense=0.7,sparse=0.3)"``, ``"dbsf"``; see :func:`parse_fusion`.

>>> import numpy as np
>>> fused = fuse("rrf(k=60)", ranks={"dense": np.array([[1, 2]]), "sparse": np.array([[0, 1]])})
>>> bool(np.allclose(fused, [[1 / 61, 1 / 62 + 1 / 61]]))
True
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any

import numpy as np

from .errors import ConfigError, InputError

__all__ = [
    "DEFAULT_FUSION",
    "DEFAULT_WEIGHTS",
    "FUSIONS",
    "STAGES",
    "REPRESENTATIONS",
    "RRF_K",
    "Fusion",
    "dbsf",
    "dbsf_normalize",
    "fuse",
    "min_max_normalize",
    "minmax",
    "parse_fusion",
    "rrf",
    "weighted_sum",
    "zscore",
    "zscore_normalize",
]

REPRESENTATIONS = ("dense", "sparse", "multivector")
STAGES = ("retrieval", "rerank")
"""Names of pipeline stages that can be fused like representations: the first-stage score and a reranker's."""
_NAMES = REPRESENTATIONS + STAGES
DEFAULT_FUSION = "rrf"
"""The one default fusion (RRF, k = 60): score-free, so it combines BM25 and dense scores of any scale."""
DEFAULT_WEIGHTS: Mapping[str, float] = MappingProxyType({"dense": 1.0, "sparse": 0.3, "multivector": 1.0})
"""bge-m3's ensemble weights (``dense + 0.3 · sparse + colbert``), the defaults of :func:`weighted_sum`."""
RRF_K = 60
"""RRF's rank offset, as in the RRF paper and Milvus (Qdrant uses 2)."""


def _check(arrays: Mapping[str, Any], what: str, *, integer: bool) -> dict[str, np.ndarray]:
    if not isinstance(arrays, Mapping) or not arrays:
        raise InputError(f"{what} must be a non-empty mapping of representation name to a (n_queries, m) array")
    out: dict[str, np.ndarray] = {}
    shape = None
    for name, a in arrays.items():
        if name not in _NAMES:
            raise InputError(f"unknown representation {name!r} in {what}; expected one of: {', '.join(_NAMES)}")
        arr = np.asarray(a)
        if arr.ndim != 2:
            raise InputError(f"{what}[{name!r}] must be 2-D (n_queries, m), got shape {arr.shape}")
        if shape is not None and arr.shape != shape:
            raise InputError(f"{what} arrays must share one shape; {name!r} has {arr.shape}, others {shape}")
        shape = arr.shape
        if integer:
            if arr.dtype.kind not in "iu":
                raise InputError(f"{what}[{name!r}] must hold integer ranks, got dtype {arr.dtype}")
            if arr.size and arr.min() < 0:
                raise InputError(f"{what}[{name!r}] holds a negative rank; ranks are 1-based with 0 for 'not retrieved'")
        else:
            if arr.dtype.kind not in "fiu":
                raise InputError(f"{what}[{name!r}] must hold numbers, got dtype {arr.dtype}")
            if arr.size and (np.isnan(arr).any() or np.isposinf(arr).any()):
                raise InputError(f"{what}[{name!r}] holds NaN or +inf; only -inf may mark a missing score")
        out[name] = arr
    return out


def _check_weights(weights: Mapping[str, Any] | None) -> dict[str, float]:
    given = dict(weights or {})
    for name, w in given.items():
        if name not in _NAMES:
            raise ConfigError(f"weight for unknown representation {name!r}; expected one of: {', '.join(_NAMES)}")
        if isinstance(w, bool) or not isinstance(w, (int, float, np.integer, np.floating)) or not math.isfinite(w) or w < 0:
            raise ConfigError(f"weight {name}={w!r} must be a finite number >= 0")
    return {n: float(w) for n, w in given.items()}


def _weights(names: Any, weights: Mapping[str, float] | None, default: Mapping[str, float] | float) -> dict[str, float]:
    """Each fused name's weight: all from ``default`` when ``weights`` is empty, else all from ``weights``.

    A partial spec (some fused names without a weight) raises ConfigError naming what to add.
    """
    given = _check_weights(weights)
    names = list(names)
    if given:
        missing = [n for n in names if n not in given]
        if missing:
            named = ",".join(f"{n}={_num(w)}" for n, w in given.items())
            raise ConfigError(
                f"the fusion weights ({named}) name no weight for {', '.join(missing)}; when weights are given, "
                f"name one for every list fused ({', '.join(names)}), e.g. "
                + ",".join(f"{n}={_num(given.get(n, 1.0))}" for n in names)
            )
        return {n: given[n] for n in names}
    return {n: float(default if isinstance(default, (int, float)) else default.get(n, 1.0)) for n in names}


def weighted_sum(scores: Mapping[str, np.ndarray], *, weights: Mapping[str, float] | None = None) -> np.ndarray:
    """``Σ w_r · s_r`` over raw scores; a ``-inf`` (missing) score adds nothing, all missing gives ``-inf``.

    Weights not given default to :data:`DEFAULT_WEIGHTS` (dense 1.0, sparse 0.3, multivector 1.0).
    """
    s = _check(scores, "scores", integer=False)
    w = _weights(s, weights, DEFAULT_WEIGHTS)
    shape = next(iter(s.values())).shape
    out = np.zeros(shape, np.float64)
    seen = np.zeros(shape, bool)
    for name, arr in s.items():
        ok = np.isfinite(arr)
        out += np.where(ok, arr.astype(np.float64) * w[name], 0.0)
        seen |= ok
    return np.where(seen, out, -np.inf).astype(np.float32)


def _check_k(k: Any) -> None:
    if isinstance(k, bool) or not isinstance(k, (int, float, np.integer, np.floating)) or not math.isfinite(k) or k <= 0:
        raise ConfigError(f"rrf k must be a positive number (60 in the RRF paper), got {k!r}")


def rrf(ranks: Mapping[str, np.ndarray], *, k: float = RRF_K, weights: Mapping[str, float] | None = None) -> np.ndarray:
    """Reciprocal rank fusion: ``Σ w_r / (k + rank_r)`` over the lists that retrieved the candidate (rank > 0).

    ``k = 60`` by default (the RRF paper, Milvus); weights default to 1. A candidate no list retrieved scores 0.
    """
    _check_k(k)
    r = _check(ranks, "ranks", integer=True)
    w = _weights(r, weights, 1.0)
    shape = next(iter(r.values())).shape
    out = np.zeros(shape, np.float64)
    for name, arr in r.items():
        out += np.where(arr > 0, w[name] / (float(k) + arr.astype(np.float64)), 0.0)
    return out.astype(np.float32)


def min_max_normalize(scores: np.ndarray) -> np.ndarray:
    """Scale each row's finite scores to ``[0, 1]`` (``(s - min) / (max - min)``); ``-inf`` stays ``-inf``.

    A row whose finite scores are all equal maps them to ``1.0``.
    """
    a = np.asarray(scores, dtype=np.float64)
    if a.ndim != 2:
        raise InputError(f"scores must be 2-D (n_queries, m), got shape {a.shape}")
    ok = np.isfinite(a)
    lo = np.where(ok, a, np.inf).min(axis=1, keepdims=True) if a.shape[1] else np.zeros((a.shape[0], 1))
    hi = np.where(ok, a, -np.inf).max(axis=1, keepdims=True) if a.shape[1] else np.zeros((a.shape[0], 1))
    span = hi - lo
    with np.errstate(invalid="ignore", divide="ignore"):
        norm = np.where(span > 0, (a - lo) / np.where(span > 0, span, 1.0), 1.0)
    return np.where(ok, norm, -np.inf)


def minmax(scores: Mapping[str, np.ndarray], *, weights: Mapping[str, float] | None = None) -> np.ndarray:
    """Min-max normalise each representation per query over the candidates, then ``Σ w_r · s_r`` (weights 1)."""
    s = _check(scores, "scores", integer=False)
    w = _weights(s, weights, 1.0)
    return weighted_sum({n: min_max_normalize(a) for n, a in s.items()}, weights=w)


def _moments(a: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per-row mean and population standard deviation over finite entries, and the finite mask."""
    ok = np.isfinite(a)
    n = ok.sum(axis=1, keepdims=True)
    x = np.where(ok, a, 0.0)
    with np.errstate(invalid="ignore", divide="ignore"):
        mean = np.where(n > 0, x.sum(axis=1, keepdims=True) / np.maximum(n, 1), 0.0)
        var = np.where(ok, (a - mean) ** 2, 0.0).sum(axis=1, keepdims=True) / np.maximum(n, 1)
    return mean, np.sqrt(var), ok


def dbsf_normalize(scores: np.ndarray) -> np.ndarray:
    """Map each row's ``[mean - 3σ, mean + 3σ]`` to ``[0, 1]`` (values beyond 3σ fall outside, unclipped).

    ``σ`` is the population standard deviation of the row's finite scores; a row whose finite scores are all
    equal (σ = 0) maps them to ``0.5``. ``-inf`` stays ``-inf``.
    """
    a = np.asarray(scores, dtype=np.float64)
    if a.ndim != 2:
        raise InputError(f"scores must be 2-D (n_queries, m), got shape {a.shape}")
    mean, std, ok = _moments(a)
    with np.errstate(invalid="ignore", divide="ignore"):
        norm = np.where(std > 0, (a - (mean - 3.0 * std)) / np.where(std > 0, 6.0 * std, 1.0), 0.5)
    return np.where(ok, norm, -np.inf)


def zscore_normalize(scores: np.ndarray) -> np.ndarray:
    """``(s - mean) / σ`` per row over finite scores (population σ); σ = 0 gives 0; ``-inf`` stays ``-inf``."""
    a = np.asarray(scores, dtype=np.float64)
    if a.ndim != 2:
        raise InputError(f"scores must be 2-D (n_queries, m), got shape {a.shape}")
    mean, std, ok = _moments(a)
    with np.errstate(invalid="ignore", divide="ignore"):
        norm = np.where(std > 0, (a - mean) / np.where(std > 0, std, 1.0), 0.0)
    return np.where(ok, norm, -np.inf)


def dbsf(scores: Mapping[str, np.ndarray], *, weights: Mapping[str, float] | None = None) -> np.ndarray:
    """Distribution-based score fusion (Qdrant's ``DBSF``): :func:`dbsf_normalize` each list, then ``Σ w_r · s_r``.

    Weights default to 1. A candidate a list did not score adds nothing from that list; none scored: ``-inf``.
    """
    s = _check(scores, "scores", integer=False)
    w = _weights(s, weights, 1.0)
    return weighted_sum({n: dbsf_normalize(a) for n, a in s.items()}, weights=w)


def zscore(scores: Mapping[str, np.ndarray], *, weights: Mapping[str, float] | None = None) -> np.ndarray:
    """:func:`zscore_normalize` each list per query, then ``Σ w_r · s_r`` (weights 1)."""
    s = _check(scores, "scores", integer=False)
    w = _weights(s, weights, 1.0)
    return weighted_sum({n: zscore_normalize(a) for n, a in s.items()}, weights=w)


@dataclass(frozen=True)
class _Method:
    fn: Callable[..., np.ndarray]
    needs: str  # "scores" or "ranks"
    takes_k: bool = False


FUSIONS: Mapping[str, _Method] = MappingProxyType({
    "weighted_sum": _Method(weighted_sum, "scores"),
    "rrf": _Method(rrf, "ranks", takes_k=True),
    "minmax": _Method(minmax, "scores"),
    "dbsf": _Method(dbsf, "scores"),
    "zscore": _Method(zscore, "scores"),
})
"""Fusion methods by name."""


@dataclass(frozen=True)
class Fusion:
    """A fusion method with its parameters; ``str(f)`` gives the spec string that :func:`parse_fusion` reads.

    ``Fusion()`` is :data:`DEFAULT_FUSION` (RRF, k = 60). Empty ``weights`` means the method's defaults for
    every list (bge-m3's 1 / 0.3 / 1 for ``weighted_sum``, 1 otherwise); given weights must cover every list
    fused (see the module docstring).
    """

    method: str = DEFAULT_FUSION
    weights: Mapping[str, float] = field(default_factory=dict)
    k: float | None = None

    def __post_init__(self) -> None:
        if self.method not in FUSIONS:
            raise ConfigError(f"unknown fusion {self.method!r}; expected one of: {', '.join(FUSIONS)}")
        object.__setattr__(self, "weights", MappingProxyType(_check_weights(self.weights)))
        if self.k is not None and not FUSIONS[self.method].takes_k:
            raise ConfigError(f"fusion {self.method!r} takes no k (only rrf does)")
        if FUSIONS[self.method].takes_k and self.k is None:
            object.__setattr__(self, "k", RRF_K)
        if self.k is not None:
            _check_k(self.k)

    @property
    def needs(self) -> str:
        """``"scores"`` or ``"ranks"``: what the method reads."""
        return FUSIONS[self.method].needs

    def __call__(
        self, *, scores: Mapping[str, np.ndarray] | None = None, ranks: Mapping[str, np.ndarray] | None = None
    ) -> np.ndarray:
        m = FUSIONS[self.method]
        data = scores if m.needs == "scores" else ranks
        if data is None:
            raise InputError(f"fusion {self.method!r} needs {m.needs}=")
        extra: dict[str, Any] = {"k": self.k} if m.takes_k else {}
        return m.fn(data, weights=dict(self.weights) or None, **extra)

    def __hash__(self) -> int:
        return hash((self.method, tuple(self.weights.items()), self.k))

    def __repr__(self) -> str:
        w = dict(self.weights) if self.weights else "defaults"
        return f"Fusion(method={self.method!r}, weights={w!r}, k={self.k!r})"

    def __str__(self) -> str:
        params = [f"k={_num(self.k)}"] if self.k is not None else []
        params += [f"{n}={_num(w)}" for n, w in self.weights.items()]
        return f"{self.method}({','.join(params)})" if params else self.method


def _num(x: float | None) -> str:
    return repr(int(x)) if x is not None and float(x).is_integer() else repr(x)


_SPEC = re.compile(r"^\s*([A-Za-z_]+)\s*(?:\((.*)\))?\s*$")


def parse_fusion(spec: str | Fusion) -> Fusion:
    """Read ``"rrf"``, ``"rrf(k=60,dense=2,sparse=1)"``, ``"weighted_sum(dense=1,sparse=0.3)"``, ``"dbsf"``, ``"zscore"``.

    Keys are ``k`` (rrf only) and representation names (weights). A :class:`Fusion` passes through.
    """
    if isinstance(spec, Fusion):
        return spec
    if not isinstance(spec, str):
        raise ConfigError(f"fusion must be a spec string such as 'rrf(k=60)' or a Fusion, got {type(spec).__name__}")
    m = _SPEC.match(spec)
    if not m:
        raise ConfigError(f"cannot read fusion spec {spec!r}; write it like 'rrf(k=60)' or 'weighted_sum(dense=1,sparse=0.3)'")
    name = m.group(1).lower().replace("-", "_")
    if name not in FUSIONS:
        raise ConfigError(f"unknown fusion {m.group(1)!r}; expected one of: {', '.join(FUSIONS)}")
    weights: dict[str, float] = {}
    k: float | None = None
    for item in filter(None, (p.strip() for p in (m.group(2) or "").split(","))):
        key, sep, value = (x.strip() for x in item.partition("="))
        try:
            num = float(value)
        except ValueError:
            num = math.nan
        if not sep or not math.isfinite(num):
            raise ConfigError(f"bad parameter {item!r} in fusion spec {spec!r}; write key=number")
        if key == "k":
            k = int(num) if num.is_integer() else num
        elif key in _NAMES:
            weights[key] = num
        else:
            raise ConfigError(
                f"unknown parameter {key!r} in fusion spec {spec!r}; use k (rrf) or weights named {', '.join(_NAMES)}"
            )
    return Fusion(name, weights, k)


def fuse(
    fusion: str | Fusion,
    *,
    scores: Mapping[str, np.ndarray] | None = None,
    ranks: Mapping[str, np.ndarray] | None = None,
) -> np.ndarray:
    """Apply the fusion named by ``fusion`` (a spec string or :class:`Fusion`) to scores or ranks."""
    return parse_fusion(fusion)(scores=scores, ranks=ranks)
