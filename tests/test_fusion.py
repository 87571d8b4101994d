"""Fusion functions: formula-shaped expectations on hand-sized inputs, immutability, the spec grammar."""

from __future__ import annotations

import numpy as np
import pytest

from hybridsearch.errors import ConfigError, InputError
from hybridsearch.fusion import (
    DEFAULT_WEIGHTS,
    FUSIONS,
    RRF_K,
    Fusion,
    fuse,
    min_max_normalize,
    minmax,
    parse_fusion,
    rrf,
    weighted_sum,
)

NINF = -np.inf

# Two queries, three candidates each. Query 0: candidate 2 was not retrieved by sparse (-inf / rank 0).
SCORES = {
    "dense": np.array([[0.9, 0.5, 0.7], [0.2, 0.4, 0.6]], np.float32),
    "sparse": np.array([[10.0, 30.0, NINF], [5.0, 5.0, 1.0]], np.float32),
}
RANKS = {
    "dense": np.array([[1, 3, 2], [3, 2, 1]]),
    "sparse": np.array([[2, 1, 0], [1, 2, 3]]),
}


def test_weighted_sum_uses_bge_m3_default_weights_and_skips_missing_scores():
    out = weighted_sum(SCORES)
    expected = [
        [0.9 + 0.3 * 10.0, 0.5 + 0.3 * 30.0, 0.7],
        [0.2 + 0.3 * 5.0, 0.4 + 0.3 * 5.0, 0.6 + 0.3 * 1.0],
    ]
    assert out.dtype == np.float32
    np.testing.assert_allclose(out, expected, rtol=1e-6)
    assert dict(DEFAULT_WEIGHTS) == {"dense": 1.0, "sparse": 0.3, "multivector": 1.0}


def test_weighted_sum_with_explicit_weights_and_all_missing():
    out = weighted_sum(
        {"dense": np.array([[1.0, NINF]]), "multivector": np.array([[0.5, NINF]])}, weights={"dense": 0.4, "multivector": 0.4}
    )
    np.testing.assert_allclose(out[0, 0], 0.4 * 1.0 + 0.4 * 0.5, rtol=1e-6)
    assert out[0, 1] == NINF  # no representation scored it: stays padding


def test_rrf_matches_the_formula_with_k_60():
    out = rrf(RANKS)
    expected = [
        [1 / (60 + 1) + 1 / (60 + 2), 1 / (60 + 3) + 1 / (60 + 1), 1 / (60 + 2)],
        [1 / (60 + 3) + 1 / (60 + 1), 1 / (60 + 2) + 1 / (60 + 2), 1 / (60 + 1) + 1 / (60 + 3)],
    ]
    np.testing.assert_allclose(out, expected, rtol=1e-6)
    assert RRF_K == 60


def test_rrf_other_k_and_weights():
    out = rrf(RANKS, k=2, weights={"dense": 2.0, "sparse": 0.5})
    np.testing.assert_allclose(out[0, 2], 2.0 / (2 + 2), rtol=1e-6)
    np.testing.assert_allclose(out[1, 0], 2.0 / (2 + 3) + 0.5 / (2 + 1), rtol=1e-6)


def test_rrf_candidate_retrieved_nowhere_scores_zero():
    assert rrf({"dense": np.array([[0, 1]])}).tolist()[0][0] == 0.0


@pytest.mark.parametrize("k", [0, -1, float("nan"), True, "60"])
def test_rrf_rejects_bad_k(k):
    with pytest.raises(ConfigError, match="k must be a positive number"):
        rrf(RANKS, k=k)


def test_min_max_normalize_rows_and_constant_rows():
    out = min_max_normalize(np.array([[2.0, 4.0, 3.0, NINF], [5.0, 5.0, NINF, NINF]]))
    np.testing.assert_allclose(out[0, :3], [0.0, 1.0, 0.5])
    assert out[0, 3] == NINF
    assert out[1, :2].tolist() == [1.0, 1.0]  # all equal: every candidate is the best


def test_minmax_fusion_normalises_each_representation_then_sums():
    out = minmax(SCORES)
    d0 = [(0.9 - 0.5) / 0.4, 0.0, (0.7 - 0.5) / 0.4]
    s0 = [0.0, 1.0, None]  # 10 -> 0, 30 -> 1, missing
    np.testing.assert_allclose(out[0], [d0[0] + s0[0], d0[1] + s0[1], d0[2]], rtol=1e-6)
    d1 = [0.0, 0.5, 1.0]
    s1 = [1.0, 1.0, 0.0]
    np.testing.assert_allclose(out[1], np.add(d1, s1), rtol=1e-6)
    weighted = minmax(SCORES, weights={"dense": 0.7, "sparse": 0.3})
    np.testing.assert_allclose(weighted[1], 0.7 * np.array(d1) + 0.3 * np.array(s1), rtol=1e-6)


@pytest.mark.parametrize("method", sorted(FUSIONS))
def test_fusions_do_not_mutate_their_inputs(method):
    scores = {m: a.copy() for m, a in SCORES.items()}
    ranks = {m: a.copy() for m, a in RANKS.items()}
    fuse(method, scores=scores, ranks=ranks)
    for m in SCORES:
        np.testing.assert_array_equal(scores[m], SCORES[m])
        np.testing.assert_array_equal(ranks[m], RANKS[m])


def test_inputs_are_checked():
    with pytest.raises(InputError, match="share one shape"):
        weighted_sum({"dense": np.zeros((1, 2)), "sparse": np.zeros((1, 3))})
    with pytest.raises(InputError, match="unknown representation"):
        weighted_sum({"colbert": np.zeros((1, 2))})
    with pytest.raises(InputError, match="NaN"):
        weighted_sum({"dense": np.array([[np.nan]])})
    with pytest.raises(InputError, match="negative rank"):
        rrf({"dense": np.array([[-1]])})
    with pytest.raises(InputError, match="non-empty mapping"):
        weighted_sum({})
    with pytest.raises(ConfigError, match="must be a finite number >= 0"):
        weighted_sum(SCORES, weights={"dense": -1.0})
    with pytest.raises(ConfigError, match="unknown representation"):
        weighted_sum(SCORES, weights={"lexical": 1.0})


@pytest.mark.parametrize(
    ("spec", "expected"),
    [
        ("rrf", Fusion("rrf", {}, 60)),
        ("rrf(k=60)", Fusion("rrf", {}, 60)),
        ("RRF( k = 2 )", Fusion("rrf", {}, 2)),
        ("weighted_sum", Fusion("weighted_sum")),
        ("weighted_sum(dense=0.4,sparse=0.2,multivector=0.4)", Fusion("weighted_sum", {"dense": 0.4, "sparse": 0.2, "multivector": 0.4})),
        ("minmax(dense=0.7, sparse=0.3)", Fusion("minmax", {"dense": 0.7, "sparse": 0.3})),
    ],
)
def test_parse_fusion_and_round_trip(spec, expected):
    f = parse_fusion(spec)
    assert f == expected
    assert parse_fusion(str(f)) == f
    assert hash(f) == hash(expected)


def test_parse_fusion_errors_list_the_choices():
    with pytest.raises(ConfigError, match="unknown fusion 'rff'; expected one of: weighted_sum, rrf, minmax"):
        parse_fusion("rff")
    with pytest.raises(ConfigError, match="takes no k"):
        parse_fusion("weighted_sum(k=3)")
    with pytest.raises(ConfigError, match="unknown parameter 'alpha'"):
        parse_fusion("minmax(alpha=0.5)")
    with pytest.raises(ConfigError, match="write key=number"):
        parse_fusion("rrf(k=sixty)")
    with pytest.raises(ConfigError, match="spec string"):
        parse_fusion(60)  # type: ignore[arg-type]


def test_fusion_object_applies_its_parameters():
    f = parse_fusion("weighted_sum(dense=0.5,sparse=1)")
    np.testing.assert_allclose(f(scores=SCORES)[1], 0.5 * SCORES["dense"][1] + 1.0 * SCORES["sparse"][1], rtol=1e-6)
    assert f.needs == "scores" and parse_fusion("rrf").needs == "ranks"
    with pytest.raises(InputError, match="needs ranks="):
        parse_fusion("rrf")(scores=SCORES)


# ----------------------------------------------------------------------------------- DBSF, z-score, weights, default
def test_dbsf_maps_mean_plus_minus_three_sigma_to_unit_interval():
    from hybridsearch.fusion import dbsf, dbsf_normalize

    a = np.array([[1.0, 2.0, 3.0, NINF]])
    mean, std = 2.0, np.sqrt(2 / 3)  # population σ over the finite scores
    want = (a[0, :3] - (mean - 3 * std)) / (6 * std)
    np.testing.assert_allclose(dbsf_normalize(a)[0, :3], want)
    assert dbsf_normalize(a)[0, 3] == NINF
    assert dbsf_normalize(np.array([[4.0, 4.0]])).tolist() == [[0.5, 0.5]]  # σ = 0
    fused = dbsf(SCORES, weights={"dense": 2.0, "sparse": 1.0})
    np.testing.assert_allclose(
        fused, 2.0 * dbsf_normalize(SCORES["dense"]) + np.where(np.isfinite(SCORES["sparse"]), dbsf_normalize(SCORES["sparse"]), 0),
        rtol=1e-6,
    )
    assert parse_fusion("dbsf").needs == "scores"


def test_zscore_fusion():
    from hybridsearch.fusion import zscore

    d = SCORES["dense"][1].astype(np.float64)
    s = SCORES["sparse"][1].astype(np.float64)
    want = (d - d.mean()) / d.std() + (s - s.mean()) / s.std()
    np.testing.assert_allclose(zscore(SCORES)[1], want, rtol=1e-5)


def test_weighted_rrf():
    out = fuse("rrf(k=60,dense=2,sparse=0.5)", ranks=RANKS)
    np.testing.assert_allclose(out[0, 0], 2 / 61 + 0.5 / 62, rtol=1e-6)
    assert str(parse_fusion("rrf(k=60,dense=2,sparse=0.5)")) == "rrf(k=60,dense=2,sparse=0.5)"


@pytest.mark.parametrize("spec", ["minmax(dense=0.7)", "weighted_sum(dense=1)", "dbsf(sparse=1)", "rrf(dense=2)"])
def test_a_partial_weight_spec_is_refused_not_silently_completed(spec):
    f = parse_fusion(spec)
    with pytest.raises(ConfigError, match="name one for every list fused"):
        f(scores=SCORES, ranks=RANKS)
    assert "defaults" in repr(parse_fusion("minmax")) and "defaults" not in repr(f)


def test_extra_weights_for_lists_not_fused_are_fine():
    f = parse_fusion("weighted_sum(dense=0.4,sparse=0.2,multivector=0.4)")
    np.testing.assert_allclose(f(scores=SCORES)[1], 0.4 * SCORES["dense"][1] + 0.2 * SCORES["sparse"][1], rtol=1e-6)


def test_one_default_fusion_everywhere():
    import inspect

    from hybridsearch.fusion import DEFAULT_FUSION
    from hybridsearch.index.hybrid import HybridIndex
    from hybridsearch.retriever import Retriever

    assert Fusion() == parse_fusion(DEFAULT_FUSION) == Fusion("rrf", {}, RRF_K)
    assert inspect.signature(HybridIndex.search).parameters["fusion"].default == DEFAULT_FUSION
    assert inspect.signature(Retriever).parameters["fusion"].default == DEFAULT_FUSION
