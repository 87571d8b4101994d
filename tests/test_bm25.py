from __future__ import annotations

import functools
import math
import random
from collections import Counter

import numpy as np
import pytest

from hybridsearch.datasets import Dataset, load_dataset
from hybridsearch.encoders import get_encoder
from hybridsearch.encoders.bm25 import BM25Encoder, BM25WordEncoder
from hybridsearch.errors import ConfigError, InputError
from hybridsearch.metrics import evaluate
from hybridsearch.types import BGE_M3_VOCAB_SIZE

K1, B = 0.9, 0.4


def idf(n: int, df: int) -> float:
    return math.log(1 + (n - df + 0.5) / (df + 0.5))


def tfw(tf: int, dl: int, avgdl: float, k1: float = K1, b: float = B) -> float:
    return tf * (k1 + 1) / (tf + k1 * (1 - b + b * dl / avgdl))


@pytest.fixture
def bm25(data_root) -> BM25Encoder:
    return BM25Encoder()  # the tokenizer file is read once per process, then shared


TINY = ["a b b c", "b c d e f", "a a a"]  # dl 4, 5, 3; avgdl 4; df a=2 b=2 c=2 d=e=f=1


# ------------------------------------------------------------------------------- the BM25 formula


def test_query_dot_document_is_the_bm25_score():
    enc = BM25WordEncoder().fit(TINY)
    docs = enc.encode_corpus(TINY)
    query = enc.encode_queries(["a b b"])  # "b" twice: query weight 2
    scores = (enc.apply_idf(query).sparse @ docs.sparse.T).toarray()[0]  # idf from the fitted statistics
    n, avgdl = 3, 4.0
    expected = [
        1 * idf(n, 2) * tfw(1, 4, avgdl) + 2 * idf(n, 2) * tfw(2, 4, avgdl),
        2 * idf(n, 2) * tfw(1, 5, avgdl),
        1 * idf(n, 2) * tfw(3, 3, avgdl),
    ]
    np.testing.assert_allclose(scores, expected, rtol=1e-6)
    assert enc.n_docs == 3 and enc.avgdl == 4.0
    assert enc.vocabulary == ["a", "b", "c", "d", "e", "f"]
    assert enc.df.tolist() == [2, 2, 2, 1, 1, 1]
    assert query.sparse_dicts() == [{0: 1.0, 1: 2.0}]


def test_parameters_enter_the_formula():
    enc = BM25WordEncoder(k1=1.2, b=0.75).fit(TINY)
    row = enc.encode_corpus(["b c d e f"]).sparse_dicts()[0]
    expected = {t: tfw(1, 5, 4.0, 1.2, 0.75) for t in range(1, 6)}  # documents carry the term-frequency part
    assert row.keys() == expected.keys()
    np.testing.assert_allclose([row[t] for t in expected], list(expected.values()), rtol=1e-6)
    # b=0: no length normalization, so the same term count weighs the same in short and long documents.
    flat = BM25WordEncoder(b=0.0).fit(TINY).encode_corpus(["c", "c x x x x x x"]).sparse_dicts()
    assert flat[0] == flat[1]


def test_new_documents_use_the_fitted_statistics():
    enc = BM25WordEncoder().fit(TINY)
    # "z" is outside the vocabulary: no weight, but it still counts in the document length (dl 2).
    row = enc.encode_corpus(["a z"]).sparse_dicts()[0]
    assert list(row) == [0]
    assert row[0] == pytest.approx(tfw(1, 2, 4.0), rel=1e-6)  # idf is applied at query time


def test_fit_encode_equals_fit_then_encode():
    enc = BM25WordEncoder()
    once = enc.fit_encode_corpus(TINY)
    again = enc.encode_corpus(TINY)
    assert (once.sparse != again.sparse).nnz == 0
    assert once.encoder == again.encoder == enc.info


def test_xlmr_bm25_matches_the_formula_on_counted_tokens(bm25):
    corpus = ["The cat sat on the mat.", "Dogs chase cats; the cats run.", "Ọmọ ìlú wo ni òṣèré?"]
    enc = BM25Encoder().fit(corpus)
    tokens = [Counter(bm25.analyzer.token_ids([t])[0].tolist()) for t in corpus]
    n, avgdl = len(corpus), sum(sum(c.values()) for c in tokens) / len(corpus)
    df = Counter(t for c in tokens for t in c)
    query = "the cats"
    qtf = Counter(bm25.analyzer.token_ids([query])[0].tolist())
    expected = [
        sum(q * idf(n, df[t]) * tfw(c[t], sum(c.values()), avgdl) for t, q in qtf.items() if t in c) for c in tokens
    ]
    got = (enc.apply_idf(enc.encode_queries([query])).sparse @ enc.encode_corpus(corpus).sparse.T).toarray()[0]
    np.testing.assert_allclose(got, expected, rtol=1e-6)
    assert expected[1] > expected[0] > expected[2] == 0


def test_output_is_canonical_sparse(bm25):
    corpus = ["Hello world, hello again.", "Another document about the world."]
    bm25.fit(corpus)
    for e in (bm25.encode_corpus(corpus), bm25.encode_queries(["hello world"])):
        s = e.sparse
        assert e.modes == ("sparse",) and e.encoder == bm25.info
        assert s.shape[1] == BGE_M3_VOCAB_SIZE
        assert s.data.dtype == np.float32 and s.indices.dtype == np.int32
        assert (s.data > 0).all() and s.has_sorted_indices
    words = BM25WordEncoder().fit(corpus)
    assert words.encode_corpus(corpus).sparse.shape == (2, len(words.vocabulary)) == (2, 7)


# ------------------------------------------------------------------------------- empty rows, bad input


def test_texts_without_known_terms_give_empty_rows(bm25):
    bm25.fit(["Hello world.", "Other text here."])
    q = bm25.encode_queries(["<s> </s> <unk>", "𓀀𓀀", "Hello", "zebra"])
    assert np.diff(q.sparse.indptr).tolist()[:2] == [0, 0]  # only special / unknown characters
    assert q.sparse[2].nnz > 0
    # "▁zebra" is a real token that no fitted document has: the query keeps it (documents added to an index later
    # may hold it; the index's idf decides), and the fitted idf gives it no weight
    assert q.sparse[3].nnz == 1 and bm25.apply_idf(q[3]).sparse.nnz == 0
    d = bm25.encode_corpus(["<mask>"])
    assert d.sparse.shape == (1, BGE_M3_VOCAB_SIZE) and d.sparse.nnz == 0
    words = BM25WordEncoder().fit(TINY)
    assert words.encode_queries(["?!", "zebra"]).sparse.nnz == 0


@pytest.mark.parametrize(
    "texts, message",
    [
        ([], "texts is empty"),
        (None, "texts is None"),
        (["ok", 3], r"texts\[1\] is int"),
    ],
    ids=["empty-list", "none", "non-str"],
)
def test_bad_input_is_an_input_error(texts, message):
    enc = BM25WordEncoder().fit(TINY)
    for call in (enc.encode_queries, enc.encode_corpus, BM25WordEncoder().fit):
        with pytest.raises(InputError, match=message):
            call(texts)


def test_empty_documents_have_no_terms_and_count_in_the_statistics():
    texts = ["the cat sat", "", "a dog barked", " \t "]
    enc = BM25WordEncoder().fit(texts)
    assert enc.n_docs == 4 and enc.avgdl == 1.5  # as bm25s and rank_bm25: empty documents have length 0
    docs = enc.encode_corpus(texts)
    assert np.diff(docs.sparse.indptr).tolist() == [3, 0, 3, 0]
    assert len(enc.encode_corpus(texts, empty="skip")) == 2
    with pytest.raises(InputError, match=r"2 documents are empty or whitespace-only \(indices 1, 3\)"):
        enc.encode_corpus(texts, empty="error")
    with pytest.raises(InputError, match="1 query is empty or whitespace-only"):
        enc.encode_queries(["cat", "  "])
    with pytest.raises(InputError, match="nothing is left"):
        enc.encode_corpus(["", " "], empty="skip")
    with pytest.raises(ConfigError, match="empty must be one of"):
        enc.encode_corpus(texts, empty="drop")


def test_fit_on_a_corpus_without_terms_fails_and_keeps_the_old_fit():
    enc = BM25WordEncoder().fit(TINY)
    before = enc.info
    with pytest.raises(InputError, match="no terms after analysis"):
        enc.fit(["!!!", "..."])
    assert enc.info == before and enc.vocabulary == ["a", "b", "c", "d", "e", "f"]


def test_unfitted_encoder_says_to_call_fit(bm25):
    for enc in (BM25WordEncoder(), BM25Encoder()):
        assert not enc.is_fitted and "not fitted" in repr(enc)
        for call in (enc.encode_queries, enc.encode_corpus):
            with pytest.raises(ConfigError, match=r"not fitted: call \.fit\(corpus_texts\)"):
                call(["query"])
        with pytest.raises(ConfigError, match="not fitted"):
            enc.save("unused.npz")


def test_bad_parameters():
    for kwargs in ({"k1": -1}, {"b": 1.5}, {"k1": float("nan")}, {"b": "0.4"}, {"k1": True}):
        with pytest.raises(ConfigError):
            BM25WordEncoder(**kwargs)


def test_registry_names(data_root):
    enc = get_encoder("bm25")
    assert isinstance(enc, BM25Encoder) and enc.info.name == "bm25" and enc.vocab_size == BGE_M3_VOCAB_SIZE
    words = get_encoder("bm25-word", stemmer="english", stopwords="english", k1=1.2)
    assert isinstance(words, BM25WordEncoder) and words.k1 == 1.2
    assert words.analyzer.stemmer == "english"
    assert words.fit(["The cats are running"]).vocabulary == ["cat", "run"]


def test_refit_replaces_the_statistics():
    enc = BM25WordEncoder().fit(TINY)
    assert enc.fit(["x y", "y"]) is enc
    assert enc.vocabulary == ["x", "y"] and enc.n_docs == 2 and enc.df.tolist() == [1, 2]


# ------------------------------------------------------------------------------- identity, save, load


def test_fingerprint_follows_what_decides_the_vectors(bm25):
    shuffled = random.Random(0).sample(TINY, len(TINY))
    for make in (BM25WordEncoder, lambda **kw: BM25Encoder(**kw)):
        fp = make().fit(TINY).info.fingerprint
        assert make().fit(shuffled).info.fingerprint == fp  # order does not matter
        assert make().fit(TINY + ["a a a a a a a a"]).info.fingerprint != fp  # avgdl changes the document vectors
        # document frequencies only enter idf, which an index applies at query time: same avgdl and terms, same id
        assert make().fit(["a b b c", "b c d e f", "a a a", "b c d"]).info.fingerprint == make().fit(
            ["a b b c", "b c d e f", "a a a", "d e f"]).info.fingerprint
        assert make(k1=1.2).fit(TINY).info.fingerprint != fp
        assert make().info.fingerprint != fp
    assert BM25WordEncoder(stemmer="english").fit(TINY).info != BM25WordEncoder().fit(TINY).info


def test_save_load_round_trip_word(tmp_path):
    corpus = ["Àwọn ọmọ ìlú", "The runners were running", "ọmọ ati ìlú wọn"]
    enc = BM25WordEncoder(k1=1.1, b=0.6, strip_accents=True, stopwords=["the", "ATI"], stemmer="english").fit(corpus)
    path = enc.save(tmp_path / "stats")
    assert path.name == "stats.npz"
    loaded = BM25WordEncoder.load(tmp_path / "stats")
    assert loaded.info == enc.info and loaded.vocabulary == enc.vocabulary
    assert loaded.analyzer.config == enc.analyzer.config
    for fn in ("encode_corpus", "encode_queries"):
        a, b = getattr(enc, fn)(corpus + ["Omo runs"]).sparse, getattr(loaded, fn)(corpus + ["Omo runs"]).sparse
        for attr in ("data", "indices", "indptr"):
            np.testing.assert_array_equal(getattr(a, attr), getattr(b, attr))


def test_save_load_round_trip_xlmr(bm25, tmp_path):
    corpus = ["Hello world.", "Habari ya dunia?", "Ọmọ ìlú wo ni òṣèré?"]
    bm25.fit(corpus)
    bm25.save(tmp_path / "bm25.npz")
    loaded = BM25Encoder.load(tmp_path / "bm25.npz")
    assert loaded.info == bm25.info
    for fn in ("encode_corpus", "encode_queries"):
        a, b = getattr(bm25, fn)(corpus).sparse, getattr(loaded, fn)(corpus).sparse
        assert (a != b).nnz == 0 and a.shape == b.shape


def test_load_state_replaces_the_fit_in_place(bm25, tmp_path):
    saved = BM25WordEncoder(stemmer="english", k1=1.5).fit(["Runners running", "cats"])
    saved.save(tmp_path / "w.npz")
    enc = BM25WordEncoder().fit(TINY)
    assert enc.load_state(tmp_path / "w.npz") is enc
    assert enc.info == saved.info and enc.k1 == 1.5 and enc.analyzer.stemmer == "english"
    assert enc.encode_queries(["run"]).sparse_dicts() == [{1: 1.0}]  # vocabulary ["cat", "run"]
    # A failed load changes nothing.
    before = bm25.fit(["Hello world."]).info
    with pytest.raises(InputError, match="load it with BM25WordEncoder.load"):
        bm25.load_state(tmp_path / "w.npz")
    assert bm25.info == before
    other = BM25Encoder(tokenizer=bm25.analyzer).fit(["Habari ya dunia"])
    other.save(tmp_path / "x.npz")
    assert bm25.load_state(tmp_path / "x.npz").info == other.info
    assert bm25.analyzer is other.analyzer


def _wordlevel_tokenizer(path):
    from tokenizers import Tokenizer, models, pre_tokenizers

    tok = Tokenizer(models.WordLevel({"<unk>": 0, "hello": 1, "world": 2}, unk_token="<unk>"))
    tok.pre_tokenizer = pre_tokenizers.Whitespace()
    tok.save(str(path))
    return path


def test_any_tokenizer_json_works_and_load_checks_the_tokenizer(bm25, tmp_path):
    small = _wordlevel_tokenizer(tmp_path / "tokenizer.json")
    enc = BM25Encoder(tokenizer=tmp_path).fit(["hello world", "hello unknownword"])
    assert enc.vocab_size == 3 and enc.df.tolist() == [0, 2, 1]  # <unk> is dropped
    bm25.fit(["hello world"])
    bm25.save(tmp_path / "xlmr.npz")
    with pytest.raises(ConfigError, match="fitted with tokenizer .* pass tokenizer="):
        BM25Encoder.load(tmp_path / "xlmr.npz", tokenizer=small)


def test_load_rejects_wrong_missing_and_damaged_files(tmp_path):
    enc = BM25WordEncoder().fit(TINY)
    path = enc.save(tmp_path / "w.npz")
    with pytest.raises(InputError, match="load it with BM25WordEncoder.load"):
        BM25Encoder.load(path)
    with pytest.raises(InputError, match="no saved BM25 statistics"):
        BM25WordEncoder.load(tmp_path / "missing.npz")
    truncated = tmp_path / "truncated.npz"
    truncated.write_bytes(path.read_bytes()[:200])
    with pytest.raises(InputError, match="not readable BM25 statistics"):
        BM25WordEncoder.load(truncated)
    with np.load(path) as z:
        arrays = {k: z[k] for k in z.files}
    arrays["df"] = arrays["df"] + 1
    np.savez(tmp_path / "tampered.npz", **arrays)
    with pytest.raises(InputError, match="does not match its recorded fingerprint"):
        BM25WordEncoder.load(tmp_path / "tampered.npz")


# ------------------------------------------------------------------------------- real data

# An independent BM25 (k1=0.9, b=0.4, Lucene idf, documents = title + " " + text) scored these nDCG@10.
REFERENCE = [
    ("scifact", "bm25", 0.647),
    ("miracl-subset/sw", "bm25", 0.480),
    ("miracl-subset/yo", "bm25", 0.658),
    ("miracl-subset/id", "bm25", 0.685),
    ("scifact", "bm25-word", 0.662),
    ("miracl-subset/sw", "bm25-word", 0.669),
    ("miracl-subset/yo", "bm25-word", 0.704),
    ("miracl-subset/id", "bm25-word", 0.781),
]


@functools.cache
def _dataset(name: str) -> Dataset:
    return load_dataset(name)


def _ndcg10(enc: BM25Encoder | BM25WordEncoder, ds: Dataset, k: int = 100) -> float:
    """Exact brute-force retrieval: every query against every document, top-k by sparse dot product."""
    docs = enc.fit_encode_corpus([d.contents for d in ds.corpus]).sparse
    qids = list(ds.queries)
    scores = (enc.apply_idf(enc.encode_queries([ds.queries[q] for q in qids])).sparse @ docs.T).toarray()
    doc_ids = [d.doc_id for d in ds.corpus]
    run = {}
    for i, q in enumerate(qids):
        top = np.argpartition(-scores[i], k)[:k]
        run[q] = {doc_ids[j]: float(scores[i, j]) for j in top if scores[i, j] > 0}
    return evaluate(ds.qrels, run, ["nDCG@10"])["nDCG@10"]


@pytest.mark.slow
@pytest.mark.parametrize("dataset, encoder, expected", REFERENCE, ids=[f"{e}-{d}" for d, e, _ in REFERENCE])
def test_reference_ndcg(data_root, bm25, dataset, encoder, expected):
    enc = BM25Encoder() if encoder == "bm25" else BM25WordEncoder()
    assert _ndcg10(enc, _dataset(dataset)) == pytest.approx(expected, abs=0.005)


# Analysis options of bm25-word, measured with this implementation (regression values).
OPTIONS = [
    ("scifact", {"stemmer": "english"}, 0.682),
    ("miracl-subset/yo", {"strip_accents": True}, 0.832),
    ("miracl-subset/id", {"stemmer": "indonesian", "stopwords": "indonesian"}, 0.837),
]


@pytest.mark.slow
@pytest.mark.parametrize("dataset, options, expected", OPTIONS, ids=[d for d, _, _ in OPTIONS])
def test_word_analysis_options_on_real_data(data_root, dataset, options, expected):
    assert _ndcg10(BM25WordEncoder(**options), _dataset(dataset)) == pytest.approx(expected, abs=0.005)
