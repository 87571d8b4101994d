"""Dataset loaders: qrels labels, streaming corpora, names under $HYBRIDSEARCH_DATA, missing-data messages."""

from __future__ import annotations

import gzip
import json

import pytest

from hybridsearch.datasets import Corpus, iter_corpus, load_dataset, load_files, read_qrels, read_queries
from hybridsearch.errors import ConfigError, InputError


@pytest.mark.parametrize(
    "text",
    ["q1\td1\t1\nq2\td7\t2.0\n", "q1 0 d1 1\nq2 0 d7 2.0\n", "query-id\tcorpus-id\tscore\nq1\td1\t1\nq2\td7\t2.0\n",
     "q1\tQ0\td1\t1\r\nq2\tQ0\td7\t2.0\r\n"],
    ids=["tsv", "trec", "beir-header", "crlf"],
)
def test_float_labels_are_read_as_whole_numbers(tmp_path, text):
    p = tmp_path / "qrels.tsv"
    p.write_text(text, encoding="utf-8")
    assert read_qrels(p) == {"q1": {"d1": 1}, "q2": {"d7": 2}}


@pytest.mark.parametrize("bad, line", [("q1\td1\t1\nq2\td7\t0.5\n", 2), ("q1 0 d1 1\nq2 0 d7 abc\n", 2),
                                        ("q1\td1\t1\nquery-id\tcorpus-id\tscore\n", 2), ("q1 d1\n", 1)])
def test_bad_labels_and_lines_name_file_and_line(tmp_path, bad, line):
    p = tmp_path / "qrels.txt"
    p.write_text(bad, encoding="utf-8")
    with pytest.raises(InputError, match=rf"qrels.txt:{line}"):
        read_qrels(p)


def test_topics_lines_without_a_tab_are_errors(tmp_path):
    p = tmp_path / "topics.tsv"
    p.write_text("1\tfirst\n\n2 second\n", encoding="utf-8")
    with pytest.raises(InputError, match="topics.tsv:3"):
        read_queries(p)
    p.write_text("1\tfirst\n2\tsecond\n", encoding="utf-8")
    assert read_queries(p) == {"1": "first", "2": "second"}


def test_corpus_streams_jsonl_gz_and_tsv(tmp_path):
    rows = [{"docid": "1#0", "title": "T", "text": "one"}, {"_id": "2", "text": "two"}]
    gz = tmp_path / "docs-0.jsonl.gz"
    with gzip.open(gz, "wt", encoding="utf-8") as f:
        f.write("".join(json.dumps(r) + "\n" for r in rows))
    tsv = tmp_path / "more.tsv"
    tsv.write_text("3\tthree\n4\tTitle\tfour\n", encoding="utf-8")
    corpus = Corpus.from_files([gz, tsv])
    assert [d.doc_id for d in corpus] == ["1#0", "2", "3", "4"]
    assert [d.doc_id for d in corpus] == ["1#0", "2", "3", "4"]  # iterable again
    assert len(corpus) == 4 and [len(b) for b in corpus.batches(3)] == [3, 1]
    assert next(iter(corpus)).contents == "T one"
    stream = iter_corpus(tsv)
    assert next(stream).doc_id == "3"  # a generator: nothing is read past what is asked for
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"docid": "1", "text": "x"}\n{"title": "no id"}\n', encoding="utf-8")
    with pytest.raises(InputError, match="bad.jsonl:2"):
        list(iter_corpus(bad))


def test_load_files_keeps_judged_queries(tmp_path):
    (tmp_path / "c.jsonl").write_text('{"_id": "d1", "text": "x"}\n', encoding="utf-8")
    (tmp_path / "q.tsv").write_text("q1\tfirst\nq2\tsecond\n", encoding="utf-8")
    (tmp_path / "r.txt").write_text("q1 0 d1 1\n", encoding="utf-8")
    ds = load_files("mine", corpus=tmp_path / "c.jsonl", queries=tmp_path / "q.tsv", qrels=tmp_path / "r.txt")
    assert ds.queries == {"q1": "first"} and len(ds.corpus) == 1


def test_named_datasets(data_root):
    sf = load_dataset("scifact")
    assert len(sf.queries) == 300 and len(sf.corpus) == 5183 and sum(map(len, sf.qrels.values())) == 339
    yo = load_dataset("miracl-subset/yo")
    assert "not comparable" in yo.note and len(yo.corpus) == 2647
    full = load_dataset("miracl/sw")
    assert len(full.queries) == 482 and sum(map(len, full.qrels.values())) == 5092


def test_missing_data_says_where_to_put_it(tmp_path, monkeypatch):
    monkeypatch.setenv("HYBRIDSEARCH_DATA", str(tmp_path))
    with pytest.raises(ConfigError, match=r"scifact/corpus.jsonl.*BEIR"):
        load_dataset("scifact")
    with pytest.raises(ConfigError, match="miracl-subset/xx"):
        load_dataset("miracl-subset/xx")
    with pytest.raises(ConfigError, match="unknown dataset"):
        load_dataset("nope")
    # the full MIRACL corpus: topics and qrels load, the corpus says where it should come from
    (tmp_path / "miracl" / "topics").mkdir(parents=True)
    (tmp_path / "miracl" / "qrels").mkdir(parents=True)
    (tmp_path / "miracl" / "topics" / "topics.miracl-v1.0-yo-dev.tsv").write_text("1\tq\n", encoding="utf-8")
    (tmp_path / "miracl" / "qrels" / "qrels.miracl-v1.0-yo-dev.tsv").write_text("1\tQ0\t5#0\t1\n", encoding="utf-8")
    ds = load_dataset("miracl/yo")
    assert ds.queries == {"1": "q"}
    corpus_dir = tmp_path / "miracl" / "corpus" / "yo"
    corpus_dir.mkdir(parents=True)
    (corpus_dir / "docs-0.jsonl").write_text('{"docid": "5#0", "title": "t", "text": "x"}\n', encoding="utf-8")
    assert [d.doc_id for d in load_dataset("miracl/yo").corpus] == ["5#0"]
    monkeypatch.delenv("HYBRIDSEARCH_DATA")
    with pytest.raises(ConfigError, match="HYBRIDSEARCH_DATA"):
        load_dataset("scifact")
