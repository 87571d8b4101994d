"""``hybridsearch eval``: the command, its outputs, resuming, and the expected-results check CI runs."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from hybridsearch.cli import main
from hybridsearch.errors import ConfigError
from hybridsearch.experiments import parse_encoder, parse_modes
from hybridsearch.runs import read_run

ROOT = Path(__file__).resolve().parents[1]


def test_mode_and_encoder_specs():
    assert [s.label for s in parse_modes(["dense", "dense+sparse"], ["rrf", "minmax"])] == [
        "dense", "dense+sparse:rrf", "dense+sparse:minmax"]
    assert parse_modes(["dense+sparse:weighted_sum(dense=1,sparse=0.3)"])[0].fusion == "weighted_sum(dense=1,sparse=0.3)"
    assert parse_encoder("minilm+bm25-word") == {"dense": "minilm", "sparse": "bm25-word"}
    for bad in (["hybrid"], ["dense:rrf"], ["dense+sparse:nope"], ["dense", "dense"]):
        with pytest.raises(ConfigError):
            parse_modes(bad)
    with pytest.raises(ConfigError):
        parse_encoder("bm25+bm25-word")


def test_eval_writes_json_reports_and_runs_and_resumes(data_root, tmp_path, capsys):
    out = tmp_path / "out.json"
    argv = ["eval", "--dataset", "miracl-subset/yo", "--encoder", "bm25-word", "--modes", "sparse", "--json", str(out),
            "--workdir", str(tmp_path / "runs"), "--out-dir", str(tmp_path / "report"), "-q"]
    assert main(argv) == 0
    printed = capsys.readouterr().out
    assert "| bm25-word sparse | 0.844 |" in printed and "not comparable" in printed and "counted as 0" in printed
    doc = json.loads(out.read_text())
    assert doc["dataset"] == "miracl-subset/yo" and doc["encoder"] == "bm25-word"
    assert doc["results"]["sparse"]["nDCG@10"] == pytest.approx(0.8443, abs=1e-4)
    assert len(doc["per_query"]["sparse"]["nDCG@10"]) == 53
    assert doc["missing_query_policy"] == "zero"
    run = read_run(doc["runs"]["sparse"])
    assert run.tag == "miracl-subset-yo.bm25-word.sparse" and max(map(len, run.run.values())) <= 1000
    for name in ("table.md", "results.json", "results.csv", "plot.png"):
        assert (tmp_path / "report" / name).stat().st_size > 0
    # the second time the run is read from its file, and gives the same numbers
    assert main(argv) == 0
    assert "cached" in capsys.readouterr().out
    assert json.loads(out.read_text())["results"] == doc["results"]
    # two encoders side by side, with paired significance tests of the second against the first
    assert main([*argv[:4], "bm25,bm25-word", *argv[5:], "--significance"]) == 0
    printed = capsys.readouterr().out
    assert "miracl-subset/yo: bm25-word sparse vs bm25 sparse: +0.1867 nDCG@10 over 53 queries, paired t-test p=" in printed
    assert [d["encoder"] for d in json.loads(out.read_text())["datasets"]] == ["bm25", "bm25-word"]


def test_eval_errors_are_clear(data_root, tmp_path, capsys):
    assert main(["eval", "--dataset", "scifact", "--encoder", "bm25", "--modes", "dense", "--workdir", str(tmp_path)]) == 2
    assert "gives none of the modes" in capsys.readouterr().err
    assert main(["eval", "--dataset", "nope", "--encoder", "bm25", "--modes", "sparse", "--workdir", str(tmp_path)]) == 2
    assert "unknown dataset" in capsys.readouterr().err


def test_check_fails_on_drift(data_root, tmp_path, capsys):
    expected = {"tolerance": 0.0005, "checks": [
        {"dataset": "miracl-subset/yo", "encoder": "bm25", "mode": "sparse", "quick": True, "expected": {"nDCG@10": 0.6576}},
        {"dataset": "miracl-subset/yo", "encoder": "bm25-word", "mode": "sparse", "quick": True, "expected": {"nDCG@10": 0.70}},
    ]}
    path = tmp_path / "expected.json"
    path.write_text(json.dumps(expected))
    assert main(["eval", "--check", str(path), "--quick", "-q", "--workdir", str(tmp_path / "runs")]) == 1
    printed = capsys.readouterr().out
    assert "ok   miracl-subset/yo bm25 sparse nDCG@10" in printed and "FAIL miracl-subset/yo bm25-word" in printed


@pytest.mark.slow
def test_committed_expected_results_reproduce(data_root, tmp_path, capsys):
    """The quick entries of evaluation/expected/offline.json (every lexical configuration), as CI runs them."""
    code = main(["eval", "--check", str(ROOT / "evaluation" / "expected" / "offline.json"), "--quick", "-q",
                 "--workdir", str(tmp_path / "runs")])
    printed = capsys.readouterr().out
    assert code == 0, printed
    assert "expected scores reproduced" in printed
