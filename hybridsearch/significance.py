"""Paired significance tests between two runs on the same queries, as ranx and trectools offer.

- ``"t-test"``: the paired Student's t-test on per-query differences (``scipy.stats.ttest_rel``, two-sided);
- ``"randomization"``: Fisher's paired randomization (permutation) test: each query's pair of scores is swapped
  with probability 1/2, ``n_resamples`` times; the p-value is ``(1 + #{|mean diff*| >= |mean diff|}) /
  (1 + n_resamples)`` (two-sided, Smucker, Allan & Carterette, CIKM 2007). Seeded, so reproducible.

Per-query values come from :func:`hybridsearch.metrics.evaluate_run` with the same missing-query policy for
both runs, so the two runs are compared on the same query set.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Literal

import numpy as np

from .errors import ConfigError, InputError
from .metrics import MissingPolicy, evaluate_run

__all__ = ["Comparison", "compare", "paired_test"]

Test = Literal["t-test", "randomization"]


@dataclass(frozen=True)
class Comparison:
    """``mean_a``, ``mean_b``, ``diff = mean_b - mean_a``, ``p_value``, the ``test`` used and ``queries`` compared."""

    measure: str
    mean_a: float
    mean_b: float
    diff: float
    p_value: float
    test: str
    queries: int

    def significant(self, alpha: float = 0.05) -> bool:
        return self.p_value < alpha


def paired_test(a: np.ndarray, b: np.ndarray, test: Test = "t-test", *, n_resamples: int = 10_000, seed: int = 0) -> float:
    """Two-sided p-value for paired per-query scores ``a``, ``b`` (float arrays of one shape ``(n_queries,)``)."""
    a = np.asarray(a, dtype=np.float64)
    b = np.asarray(b, dtype=np.float64)
    if a.shape != b.shape or a.ndim != 1:
        raise InputError(f"paired scores need two 1-D arrays of one length, got {a.shape} and {b.shape}")
    if a.size < 2:
        raise InputError(f"a paired test needs at least 2 queries, got {a.size}")
    d = b - a
    if test == "t-test":
        from scipy import stats

        if not np.any(d != d[0]):  # constant differences: t is undefined (0 or infinite)
            return 1.0 if d[0] == 0 else 0.0
        return float(stats.ttest_rel(b, a).pvalue)
    if test == "randomization":
        if n_resamples < 1:
            raise ConfigError(f"n_resamples must be >= 1, got {n_resamples}")
        rng = np.random.default_rng(seed)
        observed = abs(d.mean())
        hits = 0
        for start in range(0, n_resamples, 1000):  # chunks bound memory at 1000 x n_queries
            m = min(1000, n_resamples - start)
            signs = rng.integers(0, 2, size=(m, d.size), dtype=np.int8) * 2 - 1
            hits += int((np.abs((signs * d).mean(axis=1)) >= observed - 1e-12).sum())
        return (1 + hits) / (1 + n_resamples)
    raise ConfigError(f"unknown test {test!r}; expected 't-test' or 'randomization'")


def compare(
    qrels: Mapping[str, Mapping[str, int]],
    run_a: Mapping[str, Mapping[str, float]],
    run_b: Mapping[str, Mapping[str, float]],
    measure: str = "nDCG@10",
    *,
    test: Test = "t-test",
    missing: MissingPolicy = "zero",
    n_resamples: int = 10_000,
    seed: int = 0,
) -> Comparison:
    """Is ``run_b`` better or worse than ``run_a`` on ``measure``? Paired over the queries both are scored on.

    >>> qrels = {"1": {"a": 1}, "2": {"b": 1}, "3": {"c": 1}}
    >>> c = compare(qrels, {"1": {"x": 1.0}, "2": {"b": 1.0}, "3": {"x": 1.0}}, {"1": {"a": 1.0}, "2": {"b": 1.0}, "3": {"c": 1.0}})
    >>> round(c.diff, 3), c.test
    (0.667, 't-test')
    """
    ea = evaluate_run(qrels, run_a, [measure], missing=missing).per_query[measure]
    eb = evaluate_run(qrels, run_b, [measure], missing=missing).per_query[measure]
    common = [q for q in ea if q in eb]
    a = np.array([ea[q] for q in common])
    b = np.array([eb[q] for q in common])
    p = paired_test(a, b, test, n_resamples=n_resamples, seed=seed)
    return Comparison(measure, float(a.mean()), float(b.mean()), float(b.mean() - a.mean()), p, test, len(common))
