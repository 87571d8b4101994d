"""Distributed encoding and sharded search on a real local Ray (2 CPUs, small object store)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

ray = pytest.importorskip("ray")

from hybridsearch.encoders import get_encoder  # noqa: E402
from hybridsearch.errors import ConfigError  # noqa: E402
from hybridsearch.scale import build_index, encode_corpus  # noqa: E402
from hybridsearch.scale.units import RunFolder  # noqa: E402
from hybridsearch.types import Encoded  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
VIEWS = ("dense", "sparse", "multivector")


@pytest.fixture(scope="session")
def ray_cluster():
    """One local Ray for the whole session: 2 CPUs, 300 MB object store, no dashboard."""
    ray.init(num_cpus=2, object_store_memory=300 * 2**20, include_dashboard=False, log_to_driver=False)
    yield ray.get_runtime_context().gcs_address
    ray.shutdown()


def _write_corpus(path: Path, docs: list[dict]) -> Path:
    path.write_text("".join(json.dumps(d) + "\n" for d in docs), encoding="utf-8")
    return path


@pytest.fixture(scope="module")
def scifact_docs(data_root: Path) -> list[dict]:
    docs = []
    with open(data_root / "scifact" / "corpus.jsonl", encoding="utf-8") as f:
        for line in f:
            d = json.loads(line)
            docs.append({"_id": d["_id"], "title": d["title"], "text": d["text"][:400], "metadata": {"n": len(docs) % 3}})
            if len(docs) == 60:
                break
    return docs


@pytest.mark.slow
@pytest.mark.timeout(300)
def test_two_actors_equal_single_process(ray_cluster, tmp_path, tiny_bge_m3_dir, scifact_docs):
    a = _write_corpus(tmp_path / "a.jsonl", scifact_docs[:35])
    b = _write_corpus(tmp_path / "b.jsonl", scifact_docs[35:])
    # batch_size=1: every text is its own forward pass, so the vectors cannot depend on how texts were batched
    options = {"model": str(tiny_bge_m3_dir), "device": "cpu", "batch_size": 1}
    summary = encode_corpus([a, b], tmp_path / "out", encoder="bge-m3", options=options, outputs=VIEWS,
                            actors=2, rows_per_unit=15, batch_size=8, show_progress=False)
    assert summary.complete and summary.units_total == 5 and summary.documents == 60 and summary.tokens > 60
    shards = list(RunFolder(tmp_path / "out").shards())
    got = Encoded.concat([s.encoded for s in shards])
    ids = [i for s in shards for i in s.ids]
    assert ids == [d["_id"] for d in scifact_docs]
    ref = get_encoder("bge-m3", **options).encode_corpus(
        [f"{d['title']} {d['text']}".strip() for d in scifact_docs], outputs=VIEWS)
    assert got.encoder == ref.encoder
    assert np.array_equal(got.dense, ref.dense)
    assert (got.sparse != ref.sparse).nnz == 0 and np.array_equal(got.sparse.indptr, ref.sparse.indptr)
    assert np.array_equal(got.multivector.offsets, ref.multivector.offsets)
    assert np.array_equal(got.multivector.vectors, ref.multivector.vectors)
    folder = RunFolder(tmp_path / "out")
    workers = {folder.done_record(u.name)["worker"] for u in folder.units()}
    assert len(workers) == 2, workers  # both actors encoded units
    saved = json.loads((tmp_path / "out" / "summary.json").read_text())
    assert saved["documents"] == 60 and saved["failures"] == [] and saved["documents_per_s"] > 0

    # a second run finds everything finished and encodes nothing
    again = encode_corpus([a, b], tmp_path / "out", encoder="bge-m3", options=options, outputs=VIEWS,
                          actors=2, rows_per_unit=15, batch_size=8, show_progress=False)
    assert again.units_skipped == 5 and again.units_encoded == 0 and again.documents == 0 and again.complete
    # another encoder or unit size over the same folder is refused, not mixed in
    with pytest.raises(ConfigError, match="other inputs or with another encoder"):
        encode_corpus([a, b], tmp_path / "out", encoder="bge-m3", options=options, outputs=VIEWS,
                      rows_per_unit=10, show_progress=False)

    index = build_index(tmp_path / "out", tmp_path / "index")
    assert len(index) == 60 and index.modes == VIEWS
    assert index.get(scifact_docs[5]["_id"]).metadata == {"title": scifact_docs[5]["title"], "n": 2}


@pytest.mark.slow
@pytest.mark.timeout(300)
def test_bm25_statistics_merged_across_shards(ray_cluster, tmp_path, scifact_docs):
    parts = [_write_corpus(tmp_path / f"p{i}.jsonl", scifact_docs[i * 20 : (i + 1) * 20]) for i in range(3)]
    for spec in ("bm25-word",):  # bm25 (token ids) merges the same way; tests/test_scale_sources.py covers both
        out = tmp_path / spec
        summary = encode_corpus(parts, out, encoder=spec, actors=2, rows_per_unit=8, show_progress=False)
        assert summary.complete and summary.documents == 60
        texts = [f"{d['title']} {d['text']}".strip() for d in scifact_docs]
        single = get_encoder(spec).fit(texts)
        ref = single.encode_corpus(texts)
        got = Encoded.concat([s.encoded for s in RunFolder(out).shards()])
        assert got.encoder == ref.encoder  # same fitted statistics, hence the same fingerprint
        assert np.array_equal(got.sparse.indices, ref.sparse.indices) and np.array_equal(got.sparse.data, ref.sparse.data)
        # the saved statistics encode queries like the single-process fit
        from hybridsearch.encoders.stored import load_encoder

        q = ["protein folding in cancer cells"]
        assert (load_encoder(out).encode_queries(q).sparse != single.encode_queries(q).sparse).nnz == 0


@pytest.mark.slow
@pytest.mark.timeout(300)
def test_killed_run_resumes_without_duplicates_or_losses(ray_cluster, tmp_path, tiny_bge_m3_dir, data_root):
    docs = []
    with open(data_root / "scifact" / "corpus.jsonl", encoding="utf-8") as f:
        for line in f:
            d = json.loads(line)
            docs.append({"_id": d["_id"], "text": d["text"][:200]})
            if len(docs) == 240:
                break
    corpus = _write_corpus(tmp_path / "corpus.jsonl", docs)
    out = tmp_path / "out"
    args = ["encode-corpus", str(corpus), "--out", str(out), "--encoder", "bge-m3", "-o", f"model={tiny_bge_m3_dir}", "-o", "device=cpu",
            "-o", "batch_size=1", "--actors", "1", "--rows-per-unit", "8", "--batch-size", "8",
            "--address", ray_cluster, "--quiet"]
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")])}
    proc = subprocess.Popen([sys.executable, "-c", "import sys; from hybridsearch.cli import main; sys.exit(main())", *args],
                            env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    deadline = time.monotonic() + 240
    done = 0
    while time.monotonic() < deadline and proc.poll() is None:
        done = len(list((out / "units").glob("*.done.json"))) if (out / "units").is_dir() else 0
        if done >= 3:
            break
        time.sleep(0.02)
    assert proc.poll() is None, f"the run ended before it could be killed: {proc.stdout.read().decode()[-2000:]}"
    proc.send_signal(signal.SIGKILL)  # the driver dies mid-run; Ray ends its actors
    proc.wait(timeout=30)
    proc.stdout.close()
    finished_before = {p.name for p in (out / "units").glob("*.done.json")}
    assert 3 <= len(finished_before) < 30

    summary = encode_corpus(corpus, out, encoder="bge-m3",
                            options={"model": str(tiny_bge_m3_dir), "device": "cpu", "batch_size": 1},
                            actors=2, rows_per_unit=8, batch_size=8, show_progress=False)
    assert summary.complete, str(summary)
    assert summary.units_skipped >= len(finished_before) and summary.documents_total == 240
    assert summary.units_skipped + summary.units_encoded == 30
    ids = [i for s in RunFolder(out).shards() for i in s.ids]
    assert ids == [d["_id"] for d in docs]  # every document exactly once, in input order
    assert not list((out / "units").glob(".*.tmp"))  # no partial file is left visible


# ---------------------------------------------------------------------------------------------- sharded search
@pytest.fixture(scope="module")
def scifact_index():
    from scifact_views import scifact

    from hybridsearch.index import HybridIndex

    d = scifact()
    index = HybridIndex(multivector_compression="fp32")
    index.add(d["ids"], d["docs"], texts=d["texts"], metadata=d["metadata"])
    index.delete(d["ids"][100:110])  # tombstones are not exported into shards
    return index, d


FUSIONS = ("rrf", "rrf(k=5)", "weighted_sum", "minmax(dense=0.7,sparse=0.3,multivector=1)")


@pytest.mark.slow
@pytest.mark.timeout(600)
def test_sharded_search_equals_single_index_on_scifact(ray_cluster, tmp_path, scifact_index):
    from hybridsearch.scale.sharded import ShardedIndex

    index, d = scifact_index
    ShardedIndex.split(index, tmp_path / "shards", 3, batch_size=1000)
    q = d["queries"]
    with ShardedIndex(tmp_path / "shards", num_cpus=0.25) as sharded:
        assert len(sharded) == len(index) and sharded.n_shards == 3
        cases = [(m, "rrf", None) for m in ("dense", "sparse", "multivector")]
        cases += [("hybrid", f, None) for f in FUSIONS] + [("dense+sparse", "rrf", None), ("all", "minmax", None)]
        cases += [("hybrid", "rrf", {"bucket": {"$ne": "a"}, "year": {"$gte": 2010}}),
                  ("hybrid", "minmax", {"$or": [{"long": True}, {"bucket": "b"}]}),
                  ("dense", "rrf", {"bucket": {"$in": ["c"]}})]
        for mode, fusion, flt in cases:
            want = index.search(q, k=10, mode=mode, fusion=fusion, filter=flt, candidates=50)
            got = sharded.search(q, k=10, mode=mode, fusion=fusion, filter=flt, candidates=50)
            assert got.doc_ids.tolist() == want.doc_ids.tolist(), (mode, fusion, flt)
            assert np.array_equal(got.rows, want.rows)  # keys are the single index's row ids
            np.testing.assert_allclose(got.scores, want.scores, rtol=1e-5, atol=1e-6)
            assert got.modes == want.modes
            for m in want.modes:
                assert np.array_equal(got.ranks[m], want.ranks[m]), (mode, fusion, m)
            assert set(got.view_scores) == set(want.view_scores)
            for m in want.view_scores:
                np.testing.assert_allclose(got.view_scores[m], want.view_scores[m], rtol=1e-5, atol=1e-6)
            assert got.stages == want.stages
        hit = sharded.search(q[:1], k=3, mode="sparse")[0][0]
        ref = index.get(hit.doc_id)
        assert hit.text == ref.text and hit.metadata == ref.metadata
        from hybridsearch.errors import FilterError

        with pytest.raises(FilterError, match="no document has the field"):
            sharded.search(q[:1], filter={"nope": 1})
