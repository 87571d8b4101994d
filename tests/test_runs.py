"""TREC run files and paired significance tests."""

from __future__ import annotations

import numpy as np
import pytest

from hybridsearch.errors import ConfigError, InputError
from hybridsearch.metrics import MEASURES, evaluate
from hybridsearch.runs import read_run, write_run
from hybridsearch.significance import compare, paired_test


def test_run_file_round_trip_reproduces_every_metric(tmp_path):
    rng = np.random.default_rng(0)
    run = {f"q{i}": {f"d{j}": float(rng.normal()) for j in rng.choice(50, 20, replace=False)} for i in range(10)}
    run["q0"].update({"tie1": 0.25, "tie2": 0.25})
    qrels = {f"q{i}": {f"d{j}": int(rng.integers(0, 3)) for j in range(0, 50, 7)} for i in range(12)}
    path = write_run(tmp_path / "runs" / "x.trec", run, "scifact.bm25.sparse")
    back = read_run(path)
    assert back.tag == "scifact.bm25.sparse" and back.run == run
    assert evaluate(qrels, back.run, MEASURES) == evaluate(qrels, run, MEASURES)
    first = path.read_text().splitlines()[0].split()
    assert first[1] == "Q0" and first[3] == "1"
    lines = [ln.split() for ln in path.read_text().splitlines() if ln.startswith("q0 ")]
    assert [ln[2] for ln in lines if ln[2].startswith("tie")] == ["tie2", "tie1"]  # trec_eval's tie order
    assert len(read_run(write_run(tmp_path / "top5.trec", run, "t", depth=5)).run["q1"]) == 5


@pytest.mark.parametrize(
    "text, match",
    [("q1 Q0 d1 1 0.5\n", "columns"), ("q1 Q0 d1 1 x t\n", "not a number"), ("q1 Q0 d1 1 1 a\nq1 Q0 d2 2 0.5 b\n", "tag"),
     ("q1 Q0 d1 1 1 a\nq1 Q0 d1 2 0.5 a\n", "twice"), ("\n", "no run lines")],
)
def test_bad_run_files(tmp_path, text, match):
    p = tmp_path / "bad.trec"
    p.write_text(text, encoding="utf-8")
    with pytest.raises(InputError, match=match):
        read_run(p)


def test_bad_runs_are_not_written(tmp_path):
    with pytest.raises(InputError, match="tag"):
        write_run(tmp_path / "a", {"q": {"d": 1.0}}, "two words")
    with pytest.raises(InputError, match="whitespace"):
        write_run(tmp_path / "a", {"q": {"d 1": 1.0}}, "t")
    with pytest.raises(InputError, match="finite"):
        write_run(tmp_path / "a", {"q": {"d": float("inf")}}, "t")
    assert not (tmp_path / "a").exists()


def test_paired_tests():
    rng = np.random.default_rng(1)
    a = rng.uniform(0, 1, 200)
    b = np.clip(a + 0.1 + rng.normal(0, 0.05, 200), 0, 1)
    assert paired_test(a, b, "t-test") < 1e-10
    assert paired_test(a, b, "randomization", n_resamples=2000) == pytest.approx(1 / 2001)
    same = paired_test(a, a + rng.normal(0, 0.01, 200) * 0, "randomization", n_resamples=500)
    assert same == 1.0 and paired_test(a, a, "t-test") == 1.0
    noise = a + rng.normal(0, 0.2, 200)
    p1 = paired_test(a, noise, "randomization", n_resamples=5000, seed=3)
    assert p1 == paired_test(a, noise, "randomization", n_resamples=5000, seed=3)  # seeded
    from scipy import stats

    assert paired_test(a, noise, "t-test") == pytest.approx(stats.ttest_rel(noise, a).pvalue)
    assert abs(p1 - paired_test(a, noise, "t-test")) < 0.05  # the two tests agree on a large sample
    with pytest.raises(ConfigError):
        paired_test(a, b, "wilcoxon")  # type: ignore[arg-type]
    with pytest.raises(InputError):
        paired_test(a[:1], b[:1])


def test_compare_runs():
    qrels = {str(i): {f"r{i}": 1} for i in range(30)}
    good = {str(i): {f"r{i}": 2.0, "x": 1.0} for i in range(30)}
    bad = {str(i): {"x": 2.0, f"r{i}": 1.0} for i in range(30)}
    c = compare(qrels, bad, good, "MRR@10", test="randomization", n_resamples=999)
    assert c.diff == pytest.approx(0.5) and c.queries == 30 and c.significant()
