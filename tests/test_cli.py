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


# ------------------------------------------------------------------ empty documents and queries
EMPTY_DOCS = [*DOCS, {"_id": "e1", "text": ""}, {"_id": "e2", "text": " \t "}]


@pytest.fixture()
def corpus_with_empty(tmp_path):
    path = tmp_path / "with-empty.jsonl"
    path.write_text("".join(json.dumps(d) + "\n" for d in EMPTY_DOCS), encoding="utf-8")
    return path


def test_empty_documents_are_indexed_and_counted(tmp_path, corpus_with_empty, capsys) -> None:
    out = tmp_path / "idx"
    assert main(["index", "--input", str(corpus_with_empty), "--encoder", "bm25-word", "--out", str(out), "-q"]) == 0
    summary = capsys.readouterr().out
    assert "indexed 5 documents (sparse; 2 empty, indexed with no terms: e1, e2)" in summary
    from hybridsearch.index import HybridIndex

    index = HybridIndex.load(out)
    assert len(index) == 5 and index.get("e1").text == ""
    assert main(["search", str(out), "dogs bark", "--json"]) == 0
    assert [h["doc_id"] for h in json.loads(capsys.readouterr().out)] == ["d2"]  # empty documents match nothing


def test_empty_documents_can_be_skipped_or_refused(tmp_path, corpus_with_empty, capsys) -> None:
    out = tmp_path / "idx"
    args = ["index", "--input", str(corpus_with_empty), "--encoder", "bm25-word", "--out", str(out), "-q"]
    assert main([*args, "--empty-documents", "skip"]) == 0
    assert "indexed 3 documents (sparse; 2 empty, skipped: e1, e2)" in capsys.readouterr().out
    before = sorted(p.name for p in out.rglob("*"))
    assert main([*args, "--empty-documents", "error"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "2 documents are empty or whitespace-only (ids e1, e2)" in err
    assert sorted(p.name for p in out.rglob("*")) == before
    # encode: ids follow the documents actually encoded
    bundle = tmp_path / "enc.npz"
    assert main(["encode", str(corpus_with_empty), "--encoder", "bm25-word", "--out", str(bundle), "-q",
                 "--empty-documents", "skip"]) == 0
    assert (tmp_path / "enc.ids.txt").read_text().split() == ["d1", "d2", "d3"] and len(Encoded.load(bundle)) == 3
    assert main(["encode", str(corpus_with_empty), "--encoder", "bm25-word", "--out", str(bundle), "-q"]) == 0
    assert len(Encoded.load(bundle)) == 5 and "2 empty, indexed with no terms" in capsys.readouterr().out


def test_empty_queries_are_an_error_everywhere(tmp_path, corpus, corpus_with_empty, capsys) -> None:
    out = tmp_path / "idx"
    assert main(["index", "--input", str(corpus), "--encoder", "bm25-word", "--out", str(out), "-q"]) == 0
    capsys.readouterr()
    for query in ("", "   "):
        assert main(["search", str(out), query]) == 2
        err = capsys.readouterr().err
        assert err.count("\n") == 1 and "the query is empty or whitespace-only" in err
    assert main(["encode", str(corpus_with_empty), "--queries", "--encoder", "bm25-word", "--out", str(tmp_path / "q")]) == 2
    assert "2 queries are empty or whitespace-only (ids e1, e2)" in capsys.readouterr().err
    from hybridsearch.encoders.stored import load_encoder
    from hybridsearch.errors import InputError

    with pytest.raises(InputError, match="1 query is empty or whitespace-only"):
        load_encoder(out).encode_queries(["cats", " "])


# ------------------------------------------------------------------ one-line errors for bad input
def _err_line(capsys) -> str:
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "Traceback" not in err, err
    return err


def test_invalid_filter_json_is_one_line_with_position_and_example(tmp_path, corpus, capsys) -> None:
    out = tmp_path / "idx"
    assert main(["index", "--input", str(corpus), "--encoder", "bm25-word", "--out", str(out), "-q"]) == 0
    capsys.readouterr()
    assert main(["search", str(out), "cat", "--filter", '{"year": ']) == 2
    err = _err_line(capsys)
    assert "--filter is not valid JSON" in err and "character 10" in err and '{"year": {"$gte": 2000}' in err
    assert main(["search", str(out), "cat", "--filter", "[1, 2]"]) == 2
    assert "must be a JSON object" in _err_line(capsys)
    assert main(["search", str(out), "cat", "--filter", '{"year": NaN}']) == 2
    assert "NaN is not valid JSON" in _err_line(capsys)
    assert main(["search", str(out), "cats", "-k", str(10**12), "--json"]) == 0  # k past the index size is fine
    assert [h["doc_id"] for h in json.loads(capsys.readouterr().out)] == ["d1"]


def test_input_that_is_not_utf8_names_file_offset_and_encoding(tmp_path, capsys) -> None:
    utf16 = tmp_path / "bad.jsonl"
    utf16.write_bytes(b"\xff\xfe" + '{"_id": "a", "text": "cat"}\n'.encode("utf-16-le"))
    assert main(["index", "--input", str(utf16), "--encoder", "bm25-word", "--out", str(tmp_path / "idx")]) == 2
    err = _err_line(capsys)
    assert str(utf16) in err and "byte offset 0" in err and "UTF-16-LE" in err and "UTF-8" in err
    latin1 = tmp_path / "latin1.tsv"
    latin1.write_bytes("a\tcats\nb\tcaf\xe9 au lait\n".encode("latin-1"))
    assert main(["encode", str(latin1), "--encoder", "bm25-word", "--out", str(tmp_path / "x.npz")]) == 2
    err = _err_line(capsys)
    assert f"{latin1} is not UTF-8: byte 0xe9 at byte offset 12 (line 2)" in err  # len(b"a\tcats\nb\tcaf")
    assert not (tmp_path / "idx").exists() and not (tmp_path / "x.npz").exists()


def test_utf8_with_a_byte_order_mark_just_works(tmp_path, capsys) -> None:
    for name, body in (("bom.jsonl", '{"_id": "a", "text": "cats purr"}\r\n{"_id": "b", "text": "dogs"}\r\n'),
                       ("bom.tsv", "a\tcats purr\r\nb\tdogs\r\n")):
        path = tmp_path / name
        path.write_bytes(b"\xef\xbb\xbf" + body.encode("utf-8"))
        out = tmp_path / f"idx-{name}"
        assert main(["index", "--input", str(path), "--encoder", "bm25-word", "--out", str(out), "-q"]) == 0
        capsys.readouterr()
        assert main(["search", str(out), "cats", "--json"]) == 0
        assert [h["doc_id"] for h in json.loads(capsys.readouterr().out)] == ["a"]


def test_version(capsys) -> None:
    from hybridsearch import __version__

    assert main(["--version"]) == 0
    assert capsys.readouterr().out.strip() == f"hybridsearch {__version__}"


def test_usage_errors_are_one_line_with_status_2(capsys) -> None:
    assert main([]) == 2
    assert "required: COMMAND" in _err_line(capsys)
    assert main(["search", "idx", "q", "-k", "many"]) == 2
    assert "argument -k: invalid int value: 'many'" in _err_line(capsys)
    assert main(["index", "--out"]) == 2
    _err_line(capsys)


def test_unexpected_exceptions_are_one_line_with_status_1(tmp_path, corpus, capsys, monkeypatch) -> None:
    """A bug of ours still ends in one line (exit 1); HYBRIDSEARCH_DEBUG=1 shows its traceback."""
    from hybridsearch.index import HybridIndex

    def broken(*args, **kwargs):
        raise ZeroDivisionError("division by zero")

    monkeypatch.setattr(HybridIndex, "add", broken)
    args = ["index", "--input", str(corpus), "--encoder", "bm25-word", "--out", str(tmp_path / "idx"), "-q"]
    assert main(args) == 1
    err = capsys.readouterr().err
    assert err.strip().splitlines()[-1].startswith("hybridsearch index: error: internal error ZeroDivisionError")
    assert "Traceback" not in err
    monkeypatch.setenv("HYBRIDSEARCH_DEBUG", "1")
    with pytest.raises(ZeroDivisionError):
        main(args)


def test_undecodable_input_from_any_reader_is_bad_input(tmp_path, capsys, monkeypatch) -> None:
    from hybridsearch import textfiles

    def reader(path):
        return open(path, encoding="utf-8").read()  # a reader that lets UnicodeDecodeError escape

    monkeypatch.setattr(textfiles, "read_documents", reader)
    path = tmp_path / "x.tsv"
    path.write_bytes(b"a\tcaf\xe9\n")
    assert main(["encode", str(path), "--encoder", "bm25-word", "--out", str(tmp_path / "x.npz")]) == 2
    assert "not UTF-8 (byte 0xe9" in _err_line(capsys)


def test_os_errors_on_named_paths_are_bad_input(tmp_path, corpus, capsys) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("x")
    assert main(["encode", str(corpus), "--encoder", "bm25-word", "--out", str(blocker / "sub" / "x.npz"), "-q"]) == 2
    err = _err_line(capsys)
    assert "Not a directory" in err and str(blocker) in err
