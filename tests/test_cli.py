from __future__ import annotations

import json

import numpy as np
import pytest

from hybridsearch import Encoded
from hybridsearch.cli import main
from hybridsearch.encoders.bm25 import BM25Encoder

DOCS = [
    {"_id": "d1", "title": "Cats", "text": "Cats are small domesticated felines that purr."},
    {"_id": "d2", "title": "Dogs", "text": "Dogs are loyal animals that bark at strangers."},
    {"_id": "d3", "title": "Fish", "text": "Fish swim in rivers, lakes and the open sea."},
]


@pytest.fixture()
def corpus(tmp_path):
    path = tmp_path / "corpus.jsonl"
    path.write_text("".join(json.dumps(d) + "\n" for d in DOCS), encoding="utf-8")
    return path


def test_encode_bm25_writes_bundle_ids_and_state(tmp_path, corpus, capsys) -> None:
    out = tmp_path / "enc.npz"
    state = tmp_path / "bm25.npz"
    assert main(["encode", "--encoder", "bm25", str(corpus), "--out", str(out), "--save-state", str(state), "-q"]) == 0
    enc = Encoded.load(out)
    assert len(enc) == 3 and enc.modes == ("sparse",) and enc.vocab_size == 250_002
    assert (tmp_path / "enc.ids.txt").read_text().split() == ["d1", "d2", "d3"]
    assert "texts/s" in capsys.readouterr().out
    # Queries are encoded with the saved statistics; without them the command says what to pass.
    queries = tmp_path / "q.tsv"
    queries.write_text("q1\tpurring cats\n", encoding="utf-8")
    assert main(["encode", "--encoder", "bm25", str(queries), "--queries", "--state", str(state), "--out", str(tmp_path / "q.npz"), "-q"]) == 0
    q = Encoded.load(tmp_path / "q.npz")
    scores = (BM25Encoder.load(state).apply_idf(q).sparse @ enc.sparse.T).toarray()[0]
    assert int(np.argmax(scores)) == 0
    assert main(["encode", "--encoder", "bm25", str(queries), "--queries", "--out", str(tmp_path / "x.npz")]) == 2
    assert "--state" in capsys.readouterr().err


def test_encode_bge_m3_tiny_model(tmp_path, corpus, tiny_bge_m3_dir) -> None:
    out = tmp_path / "m3.npz"
    code = main(["encode", "--encoder", "bge-m3", "-o", f"model={tiny_bge_m3_dir}", "--outputs", "dense,sparse,multivector",
                 str(corpus), "--out", str(out), "-q"])
    assert code == 0
    enc = Encoded.load(out)
    assert enc.modes == ("dense", "sparse", "multivector") and enc.dense.shape == (3, 32)


def test_index_and_search_from_input(tmp_path, corpus, capsys) -> None:
    index_dir = tmp_path / "idx"
    assert main(["index", "--input", str(corpus), "--encoder", "bm25-word", "--out", str(index_dir), "-q"]) == 0
    assert (index_dir / "manifest.json").is_file() and (index_dir / "encoder.json").is_file()
    capsys.readouterr()
    assert main(["search", str(index_dir), "do dogs bark", "-k", "2", "--json"]) == 0
    hits = json.loads(capsys.readouterr().out)
    assert hits[0]["doc_id"] == "d2" and hits[0]["ranks"] == {"sparse": 1}
    assert "bark" in hits[0]["text"] and hits[0]["metadata"] == {"title": "Dogs"}
    capsys.readouterr()
    assert main(["search", str(index_dir), "do dogs bark", "--json", "--filter", '{"title": {"$in": ["Cats", "Fish"]}}']) == 0
    assert [h["doc_id"] for h in json.loads(capsys.readouterr().out)] == []
    assert main(["search", str(index_dir), "dogs", "--filter", '{"year": 2020}']) == 2
    assert "year" in capsys.readouterr().err


def test_index_from_bundle(tmp_path, corpus, capsys) -> None:
    out = tmp_path / "enc.npz"
    state = tmp_path / "state.npz"
    assert main(["encode", "--encoder", "bm25-word", str(corpus), "--out", str(out), "--save-state", str(state), "-q"]) == 0
    index_dir = tmp_path / "idx"
    assert main(["index", "--bundle", str(out), "--texts", str(corpus), "--encoder", "bm25-word", "--state", str(state),
                 "--out", str(index_dir)]) == 0
    capsys.readouterr()
    assert main(["search", str(index_dir), "fish in the sea", "-k", "1"]) == 0
    assert "d3" in capsys.readouterr().out


def test_errors_are_one_line_messages(tmp_path, corpus, capsys) -> None:
    assert main(["encode", "--encoder", "nope", str(corpus), "--out", str(tmp_path / "x.npz")]) == 2
    assert "unknown encoder 'nope'" in capsys.readouterr().err
    assert main(["encode", "--encoder", "bm25", str(tmp_path / "missing.jsonl"), "--out", str(tmp_path / "x.npz")]) == 2
    assert "no such input file" in capsys.readouterr().err
    assert main(["search", str(tmp_path), "query"]) == 2
    assert "manifest" in capsys.readouterr().err
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"title": "no text"}\n', encoding="utf-8")
    assert main(["encode", "--encoder", "bm25", str(bad), "--out", str(tmp_path / "x.npz")]) == 2
    assert "text" in capsys.readouterr().err
