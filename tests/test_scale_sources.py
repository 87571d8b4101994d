"""Input shards, work units, retries and BM25 statistics merging of distributed encoding (no Ray needed)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from hybridsearch.encoders import get_encoder
from hybridsearch.encoders.base import Encoder
from hybridsearch.errors import ConfigError, InputError
from hybridsearch.scale.corpus_stats import CorpusStatistics
from hybridsearch.scale.encode import encode_with_retries
from hybridsearch.scale.sources import expand_inputs, plan_units, read_unit
from hybridsearch.types import Encoded, EncoderInfo

TEXTS = ["the cat sat on the mat", "a dog barked at the cat", "protein folding in cells", "the sun rises",
         "rain and snow fall from clouds", "vaccine dose and patient risk", "fast red fox"]


def test_jsonl_and_parquet_units_cover_every_row_once(tmp_path: Path):
    rows = [{"_id": f"d{i}", "title": "T" if i % 2 else "", "text": t, "metadata": {"i": i}} for i, t in enumerate(TEXTS)]
    jl = tmp_path / "a.jsonl"
    jl.write_text("".join(json.dumps(r) + "\n" + ("\n" if i == 2 else "") for i, r in enumerate(rows)), encoding="utf-8")
    pqf = tmp_path / "b.parquet"
    pq.write_table(pa.Table.from_pylist([{"id": r["_id"] + "p", "text": r["text"], "metadata": json.dumps(r["metadata"])}
                                         for r in rows]), pqf)
    files = expand_inputs([tmp_path])
    assert files == [jl.resolve(), pqf.resolve()]
    units = plan_units(files, 3)
    assert [(Path(u.path).name, u.start, u.stop) for u in units] == [
        ("a.jsonl", 0, 3), ("a.jsonl", 3, 6), ("a.jsonl", 6, 7), ("b.parquet", 0, 3), ("b.parquet", 3, 6), ("b.parquet", 6, 7)]
    assert len({u.name for u in units}) == 6 and plan_units(files, 3) == units  # stable names for resumption
    got = [read_unit(u) for u in units]
    ids = [i for g in got for i in g.ids]
    assert ids == [f"d{i}" for i in range(7)] + [f"d{i}p" for i in range(7)]
    assert got[0].texts[1] == "T a dog barked at the cat" and got[0].metadata[1] == {"title": "T", "i": 1}
    assert got[4].metadata[0] == {"i": 3}


def test_bad_inputs_raise_clear_errors(tmp_path: Path):
    with pytest.raises(InputError, match="no input file matches"):
        expand_inputs(str(tmp_path / "*.jsonl"))
    bad = tmp_path / "x.csv"
    bad.write_text("a,b\n")
    with pytest.raises(InputError, match="unsupported input format"):
        expand_inputs(bad)
    noid = tmp_path / "noid.jsonl"
    noid.write_text('{"text": "hello"}\n')
    with pytest.raises(InputError, match="no document id"):
        read_unit(plan_units([noid], 10)[0])
    broken = tmp_path / "broken.jsonl"
    broken.write_text('{"_id": "a", "text": "x"}\n{not json\n')
    with pytest.raises(InputError, match="row 1 is not valid UTF-8 JSON"):
        read_unit(plan_units([broken], 10)[0])
    with pytest.raises(InputError, match="rows_per_unit"):
        plan_units([noid], 0)


class _Flaky(Encoder):
    """Fails the first ``failures`` calls, then encodes (a real encoder behind a flaky link)."""

    name = "flaky"
    supported_outputs = ("dense",)
    default_outputs = ("dense",)

    def __init__(self, failures: int) -> None:
        self.failures, self.calls = failures, 0

    @property
    def info(self) -> EncoderInfo:
        return EncoderInfo("flaky")

    def _encode(self, texts, *, is_query, outputs, show_progress) -> Encoded:
        self.calls += 1
        if self.calls <= self.failures:
            raise ConnectionError("link dropped")
        return Encoded(dense=np.array([[len(t), 1.0] for t in texts], np.float32))


def test_failed_batches_are_retried_and_input_errors_are_not():
    enc = _Flaky(failures=2)
    out, retries = encode_with_retries(enc, TEXTS, outputs=None, batch_size=3, max_retries=2, backoff_s=0)
    assert retries == 2 and len(out) == len(TEXTS) and out.dense[:, 0].tolist() == [len(t) for t in TEXTS]
    with pytest.raises(ConnectionError):
        encode_with_retries(_Flaky(failures=5), TEXTS, outputs=None, batch_size=3, max_retries=2, backoff_s=0)
    enc = _Flaky(failures=0)
    with pytest.raises(InputError):
        encode_with_retries(enc, ["ok", 3], outputs=None, batch_size=3, max_retries=2, backoff_s=0)
    assert enc.calls == 0  # rejected before encoding, and not retried


@pytest.mark.parametrize("spec", ["bm25", "bm25-word"])
def test_merged_statistics_equal_one_fit(spec: str):
    parts = [TEXTS[:2], TEXTS[2:3], TEXTS[3:]]
    stats = CorpusStatistics.merge(CorpusStatistics.gather(get_encoder(spec), p) for p in parts)
    merged = stats.apply(get_encoder(spec))
    single = get_encoder(spec).fit(TEXTS)
    assert merged.info == single.info and merged.n_docs == 7 and merged.avgdl == single.avgdl
    assert np.array_equal(merged.df, single.df)
    a, b = merged.encode_corpus(TEXTS).sparse, single.encode_corpus(TEXTS).sparse
    assert np.array_equal(a.indices, b.indices) and np.array_equal(a.data, b.data)
    # payloads move between processes losslessly
    again = CorpusStatistics.merge(CorpusStatistics.from_payload(CorpusStatistics.gather(get_encoder(spec), p).to_payload())
                                   for p in parts)
    assert again.apply(get_encoder(spec)).info == single.info


def test_statistics_refuse_other_encoders():
    s = CorpusStatistics.gather(get_encoder("bm25-word"), TEXTS)
    with pytest.raises(ConfigError):
        s.apply(get_encoder("bm25"))
    with pytest.raises(InputError, match="cannot merge"):
        s + CorpusStatistics.gather(get_encoder("bm25"), TEXTS)
