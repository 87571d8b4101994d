"""BGEM3Encoder on the tiny bge-m3-layout model, with real FlagEmbedding and transformers on CPU.

Expected values come from an independent recomputation: a plain transformers ``XLMRobertaModel`` forward
on each text alone (no padding, no batching) plus the head weights read with ``torch.load``.
"""

from __future__ import annotations

import logging
import re
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch

from hybridsearch.encoders import get_encoder
from hybridsearch.encoders.bge_m3 import BGEM3Encoder
from hybridsearch.errors import ConfigError, InputError, ModelLoadError
from hybridsearch.types import Encoded

ALL = ("dense", "sparse", "multivector")
TEXTS = [
    "What causes cancer in the brain?",
    "dog",
    "The cat sits on the mat, the cat sleeps; the cat eats.",  # repeated tokens: sparse max-pooling
    "Café résumé naïve",  # characters outside the vocabulary: <unk> tokens
    "A small red bird",
    "Protein 42 reduces the risk of heart disease in old patients by 7%.",
    "sun moon",
]
LONG = " ".join(["the fast dog runs in the rain and the slow cat sleeps"] * 20)


# ------------------------------------------------------------------ helpers
class Reference:
    """bge-m3's three outputs recomputed from the raw files, one text at a time."""

    def __init__(self, model_dir: Path) -> None:
        from transformers import AutoTokenizer, XLMRobertaModel

        self.tok = AutoTokenizer.from_pretrained(str(model_dir))
        self.model = XLMRobertaModel.from_pretrained(str(model_dir)).float().eval()
        self.colbert = torch.load(model_dir / "colbert_linear.pt", weights_only=True)
        self.sparse = torch.load(model_dir / "sparse_linear.pt", weights_only=True)
        self.special = {self.tok.cls_token_id, self.tok.eos_token_id, self.tok.pad_token_id, self.tok.unk_token_id}

    def ids(self, text: str, max_length: int) -> list[int]:
        return self.tok(text, truncation=True, max_length=max_length)["input_ids"]

    def __call__(self, text: str, max_length: int = 512) -> tuple[np.ndarray, dict[int, float], np.ndarray]:
        ids = self.ids(text, max_length)
        with torch.no_grad():
            h = self.model(input_ids=torch.tensor([ids])).last_hidden_state[0].double()
        dense = (h[0] / h[0].norm()).numpy()
        w = torch.relu(h @ self.sparse["weight"].double().T + self.sparse["bias"].double())[:, 0].numpy()
        lexical: dict[int, float] = {}
        for t, x in zip(ids, w, strict=True):
            if t not in self.special and x > 0:
                lexical[t] = max(lexical.get(t, 0.0), float(x))
        c = h[1:] @ self.colbert["weight"].double().T + self.colbert["bias"].double()
        colbert = (c / c.norm(dim=1, keepdim=True)).numpy()
        return dense, lexical, colbert


def assert_matches_reference(enc: Encoded, texts: list[str], ref: Reference, max_length: int, atol: float = 1e-5) -> None:
    dicts = enc.sparse_dicts()
    for i, text in enumerate(texts):
        dense, lexical, colbert = ref(text, max_length)
        np.testing.assert_allclose(enc.dense[i], dense, atol=atol, err_msg=f"dense of text {i}")
        assert set(dicts[i]) == set(lexical), f"sparse token ids of text {i}"
        np.testing.assert_allclose([dicts[i][t] for t in sorted(lexical)], [lexical[t] for t in sorted(lexical)], atol=atol)
        got = enc.multivector[i].astype(np.float64)
        assert got.shape == colbert.shape == (len(ref.ids(text, max_length)) - 1, enc.multivector.dim)
        np.testing.assert_allclose(got, colbert, atol=atol, err_msg=f"multivector of text {i}")


def copy_model(src: Path, dst: Path) -> Path:
    shutil.copytree(src, dst)
    return dst


# ----------------------------------------------------------------- fixtures
@pytest.fixture(scope="module")
def ref(tiny_bge_m3_dir: Path) -> Reference:
    return Reference(tiny_bge_m3_dir)


@pytest.fixture(scope="module")
def enc32(tiny_bge_m3_dir: Path) -> BGEM3Encoder:
    """Small batches (several per call) and fp32 multi-vectors, for exact comparisons."""
    return BGEM3Encoder(str(tiny_bge_m3_dir), device="cpu", batch_size=2, multivector_dtype="float32")


@pytest.fixture(scope="module")
def enc(tiny_bge_m3_dir: Path) -> BGEM3Encoder:
    return BGEM3Encoder(str(tiny_bge_m3_dir), device="cpu", batch_size=3)


@pytest.fixture(scope="module")
def flag_model(tiny_bge_m3_dir: Path):
    from FlagEmbedding import BGEM3FlagModel

    return BGEM3FlagModel(str(tiny_bge_m3_dir), use_fp16=False, devices="cpu", batch_size=2)


class CallCounter:
    """Counts forward calls of a torch module through a forward hook."""

    def __init__(self, module) -> None:
        self.calls = 0
        self.handle = module.register_forward_hook(self._hook)

    def _hook(self, *args) -> None:
        self.calls += 1

    def remove(self) -> None:
        self.handle.remove()


# -------------------------------------------------------------- the outputs
@pytest.mark.parametrize("side", ["corpus", "queries"])
def test_all_outputs_match_independent_recomputation(enc32, ref, side):
    fn = enc32.encode_corpus if side == "corpus" else enc32.encode_queries
    out = fn(TEXTS, outputs=ALL)
    assert out.modes == ALL
    assert_matches_reference(out, TEXTS, ref, max_length=512)


def test_types_shapes_and_norms(enc, tiny_bge_m3_dir, ref):
    out = enc.encode_corpus(TEXTS, outputs=ALL)
    n = len(TEXTS)
    assert out.dense.dtype == np.float32 and out.dense.shape == (n, 32)
    np.testing.assert_allclose(np.linalg.norm(out.dense, axis=1), 1.0, atol=1e-6)
    assert out.sparse.shape == (n, len(ref.tok)) and out.sparse.shape[1] == enc.vocab_size
    assert out.sparse.indices.dtype == np.int32 and out.sparse.data.dtype == np.float32
    assert (out.sparse.data > 0).all()
    mv = out.multivector
    assert mv.vectors.dtype == np.float16 and mv.dim == 32 and len(mv) == n
    np.testing.assert_allclose(np.linalg.norm(mv.vectors.astype(np.float32), axis=1), 1.0, atol=2e-3)
    # fp16 storage of the same vectors the fp32 path computes
    assert_matches_reference(out, TEXTS, ref, max_length=512, atol=2e-3)
    assert out.encoder == enc.info


def test_sparse_drops_special_and_unknown_tokens(enc, ref):
    ids = ref.ids(TEXTS[3], 512)
    assert ref.tok.unk_token_id in ids  # the text really contains <unk>
    assert (ref.tok.cls_token_id, ref.tok.pad_token_id, ref.tok.eos_token_id, ref.tok.unk_token_id) == (0, 1, 2, 3)
    out = enc.encode_corpus(TEXTS, outputs="sparse")
    assert not set(out.sparse.indices.tolist()) & {0, 1, 2, 3}
    # the repeated "the"/"cat" of text 2 appear once each, with their largest weight (checked above)
    row = out.sparse_dicts()[2]
    the = ref.tok.convert_tokens_to_ids("\u2581the")
    assert ref.ids(TEXTS[2], 512).count(the) == 3 and the in row


def test_matches_flag_embedding_encode_and_round_trips(enc32, flag_model):
    for ours, theirs in (
        (enc32.encode_corpus(TEXTS, outputs=ALL), flag_model.encode_corpus(TEXTS, return_dense=True, return_sparse=True, return_colbert_vecs=True)),
        (enc32.encode_queries(TEXTS, outputs=ALL), flag_model.encode_queries(TEXTS, return_dense=True, return_sparse=True, return_colbert_vecs=True)),
    ):
        as_flag = ours.to_flag_embedding()
        np.testing.assert_array_equal(as_flag["dense_vecs"], theirs["dense_vecs"])
        assert [dict(d) for d in as_flag["lexical_weights"]] == [dict(d) for d in theirs["lexical_weights"]]
        for a, b in zip(as_flag["colbert_vecs"], theirs["colbert_vecs"], strict=True):
            np.testing.assert_array_equal(a, b)
        back = Encoded.from_flag_embedding(theirs, vocab_size=enc32.vocab_size, multivector_dtype=np.float32)
        np.testing.assert_array_equal(back.dense, ours.dense)
        assert (back.sparse != ours.sparse).nnz == 0
        np.testing.assert_array_equal(back.multivector.vectors, ours.multivector.vectors)
        np.testing.assert_array_equal(back.multivector.offsets, ours.multivector.offsets)


# ------------------------------------------------------- lengths and batches
def test_query_and_passage_max_lengths_truncate(tiny_bge_m3_dir, ref):
    short = BGEM3Encoder(
        str(tiny_bge_m3_dir), device="cpu", query_max_length=8, passage_max_length=16, multivector_dtype="float32"
    )
    assert len(ref.ids(LONG, 10_000)) > 100
    texts = [LONG, "dog", LONG + " bird"]
    q = short.encode_queries(texts, outputs=ALL)
    d = short.encode_corpus(texts, outputs=ALL)
    assert q.multivector.lengths.tolist() == [7, 2, 7]
    assert d.multivector.lengths.tolist() == [15, 2, 15]
    assert_matches_reference(q, texts, ref, max_length=8)
    assert_matches_reference(d, texts, ref, max_length=16)
    # truncation keeps the start: a text and its extension agree once both are cut
    np.testing.assert_array_equal(q.dense[0], q.dense[2])


def test_order_preserved_across_batches_and_chunks(tiny_bge_m3_dir, ref, monkeypatch, capsys):
    import hybridsearch.encoders.bge_m3 as bge_m3_module

    monkeypatch.setattr(bge_m3_module, "_TEXTS_PER_CHUNK_BATCHES", 3)  # 6 texts per chunk: several chunks
    e = BGEM3Encoder(str(tiny_bge_m3_dir), device="cpu", batch_size=2, multivector_dtype="float32")
    rng = np.random.RandomState(1)
    words = [w for w in ref.tok.get_vocab() if w.startswith("\u2581") and len(w) > 2]
    texts = [" ".join(rng.choice(words, size=int(rng.randint(1, 30)))) for _ in range(17)]
    out = e.encode_corpus(texts, outputs=ALL, show_progress=True)
    assert "bge-m3 corpus" in capsys.readouterr().err
    assert_matches_reference(out, texts, ref, max_length=512)
    rev = e.encode_corpus(texts[::-1], outputs=ALL)
    # Different batch companions mean different padding, so values agree to float32 rounding, not bit for bit.
    np.testing.assert_allclose(rev.dense[::-1], out.dense, atol=1e-5)
    np.testing.assert_allclose(rev.sparse.toarray()[::-1], out.sparse.toarray(), atol=1e-5)
    assert rev.multivector.lengths[::-1].tolist() == out.multivector.lengths.tolist()


def test_single_string_is_a_batch_of_one(enc, ref):
    out = enc.encode_queries("What causes cancer?", outputs=ALL)
    assert len(out) == 1 and out.multivector.lengths.tolist() == [len(ref.ids("What causes cancer?", 512)) - 1]


def test_deterministic_across_loads(tiny_bge_m3_dir, enc32):
    again = BGEM3Encoder(str(tiny_bge_m3_dir), device="cpu", batch_size=2, multivector_dtype="float32")
    a, b = enc32.encode_corpus(TEXTS, outputs=ALL), again.encode_corpus(TEXTS, outputs=ALL)
    np.testing.assert_array_equal(a.dense, b.dense)
    assert (a.sparse != b.sparse).nnz == 0
    np.testing.assert_array_equal(a.multivector.vectors, b.multivector.vectors)
    assert again.info == enc32.info


# ------------------------------------------------------------------ outputs
def test_only_requested_views_are_computed(enc):
    head_calls = {name: CallCounter(getattr(enc._flag.model, name)) for name in ("colbert_linear", "sparse_linear")}
    try:
        assert enc.encode_corpus(TEXTS, outputs="dense").modes == ("dense",)
        assert {k: c.calls for k, c in head_calls.items()} == {"colbert_linear": 0, "sparse_linear": 0}
        assert enc.encode_corpus(TEXTS, outputs=["sparse"]).modes == ("sparse",)
        assert head_calls["colbert_linear"].calls == 0 and head_calls["sparse_linear"].calls > 0
        assert enc.encode_queries(TEXTS).modes == ("dense", "sparse")  # the default
        assert head_calls["colbert_linear"].calls == 0
        assert enc.encode_queries(TEXTS, outputs=("multivector",)).modes == ("multivector",)
        assert head_calls["colbert_linear"].calls > 0
    finally:
        for c in head_calls.values():
            c.remove()
    with pytest.raises(ConfigError, match="unknown output"):
        enc.encode_corpus(TEXTS, outputs="colbert")


@pytest.mark.parametrize(
    "texts",
    [[], None, [1, "a"], ["fine", None], b"bytes"],
    ids=["empty-list", "none", "int-item", "none-item", "bytes"],
)
def test_bad_input_raises_before_the_model_runs(enc, texts):
    backbone = CallCounter(enc._flag.model.model)
    try:
        with pytest.raises(InputError):
            enc.encode_corpus(texts)
        with pytest.raises(InputError):
            enc.encode_queries(texts)
    finally:
        backbone.remove()
    assert backbone.calls == 0


@pytest.mark.parametrize("texts", ["   ", ["fine", " \n"], ["", "fine"]], ids=["whitespace", "blank-item", "empty-item"])
def test_empty_queries_raise_before_the_model_runs(enc, texts):
    backbone = CallCounter(enc._flag.model.model)
    try:
        with pytest.raises(InputError, match="empty or whitespace-only"):
            enc.encode_queries(texts)
        with pytest.raises(InputError, match="empty or whitespace-only"):
            enc.encode_corpus(texts, empty="error")
    finally:
        backbone.remove()
    assert backbone.calls == 0


def test_empty_documents_encode_as_flag_embedding_does(enc32, flag_model):
    texts = ["a cat", "", "   ", "the dog"]
    ours = enc32.encode_corpus(texts, outputs=ALL)
    theirs = flag_model.encode_corpus(texts, return_dense=True, return_sparse=True, return_colbert_vecs=True)
    as_flag = ours.to_flag_embedding()
    np.testing.assert_array_equal(as_flag["dense_vecs"], theirs["dense_vecs"])
    assert [dict(d) for d in as_flag["lexical_weights"]] == [dict(d) for d in theirs["lexical_weights"]]
    assert dict(as_flag["lexical_weights"][1]) == {}  # no lexical terms
    assert ours.multivector[1].shape == (1, 32)  # only the </s> vector (FlagEmbedding#954)
    for a, b in zip(as_flag["colbert_vecs"], theirs["colbert_vecs"], strict=True):
        np.testing.assert_array_equal(a, b)
    skipped = enc32.encode_corpus(texts, outputs=ALL, empty="skip")
    assert len(skipped) == 2
    np.testing.assert_array_equal(skipped.dense, ours.dense[[0, 3]])


# ------------------------------------------------------------------ loading
@pytest.mark.parametrize(
    ("remove", "named"),
    [
        ("colbert_linear.pt", "colbert_linear.pt"),
        ("sparse_linear.pt", "sparse_linear.pt"),
        ("model.safetensors", "model weights"),
        ("config.json", "config.json"),
        ("tokenizer.json", "tokenizer"),
    ],
)
def test_incomplete_model_directory_is_refused(tiny_bge_m3_dir, tmp_path, remove, named):
    d = copy_model(tiny_bge_m3_dir, tmp_path / "m")
    (d / remove).unlink()
    with pytest.raises(ModelLoadError) as info:
        BGEM3Encoder(str(d), device="cpu")
    msg = str(info.value)
    assert named in msg
    others = {"colbert_linear.pt", "sparse_linear.pt"} - {remove}
    assert not any(o in msg for o in others)  # names exactly what is missing


def test_pytorch_bin_weights_load_the_same(tiny_bge_m3_dir, tmp_path, enc32):
    from safetensors.torch import load_file

    d = copy_model(tiny_bge_m3_dir, tmp_path / "m")
    torch.save(load_file(d / "model.safetensors"), d / "pytorch_model.bin")
    (d / "model.safetensors").unlink()
    e = BGEM3Encoder(str(d), device="cpu", batch_size=2, multivector_dtype="float32")
    np.testing.assert_array_equal(e.encode_corpus(TEXTS).dense, enc32.encode_corpus(TEXTS).dense)


def test_unreadable_head_becomes_model_load_error(tiny_bge_m3_dir, tmp_path):
    d = copy_model(tiny_bge_m3_dir, tmp_path / "m")
    torch.save(torch.nn.Linear(32, 2).state_dict(), d / "sparse_linear.pt")  # wrong shape
    with pytest.raises(ModelLoadError, match="could not load bge-m3"):
        BGEM3Encoder(str(d), device="cpu")
    (d / "colbert_linear.pt").write_bytes(b"not a torch file")
    with pytest.raises(ModelLoadError):
        BGEM3Encoder(str(d), device="cpu")


def test_heads_in_memory_are_checked_against_the_files(tiny_bge_m3_dir):
    e = BGEM3Encoder(str(tiny_bge_m3_dir), device="cpu")
    e._verify_heads(e._flag.model, torch)  # loaded heads pass
    with torch.no_grad():
        e._flag.model.colbert_linear.weight.add_(1e-3)  # what a re-initialised head would look like
    with pytest.raises(ModelLoadError, match="colbert_linear head in memory differs"):
        e._verify_heads(e._flag.model, torch)


def test_unknown_hub_id_offline(monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(ModelLoadError, match=r"not available offline.*huggingface-cli download hybridsearch-tests/no-such-model"):
        BGEM3Encoder("hybridsearch-tests/no-such-model", device="cpu")


def test_missing_local_path(tmp_path):
    with pytest.raises(ModelLoadError, match="no model directory"):
        BGEM3Encoder(str(tmp_path / "nope" / "model"), device="cpu")
    (tmp_path / "file").write_text("x")
    with pytest.raises(ModelLoadError, match="is a file"):
        BGEM3Encoder(str(tmp_path / "file"), device="cpu")


def _fake_hub_cache(root: Path, repo: str, model_dir: Path, drop: str | None = None) -> None:
    commit = "0123456789abcdef0123456789abcdef01234567"
    store = root / ("models--" + repo.replace("/", "--"))
    (store / "refs").mkdir(parents=True)
    (store / "refs" / "main").write_text(commit)
    shutil.copytree(model_dir, store / "snapshots" / commit)
    if drop:
        (store / "snapshots" / commit / drop).unlink()


def test_hub_id_resolves_through_the_local_cache(tiny_bge_m3_dir, tmp_path, monkeypatch, enc32):
    import huggingface_hub.constants

    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_CACHE", str(tmp_path))
    _fake_hub_cache(tmp_path, "hybridsearch-tests/tiny-m3", tiny_bge_m3_dir)
    _fake_hub_cache(tmp_path, "hybridsearch-tests/tiny-m3-no-colbert", tiny_bge_m3_dir, drop="colbert_linear.pt")

    e = BGEM3Encoder("hybridsearch-tests/tiny-m3", device="cpu", batch_size=2, multivector_dtype="float32")
    assert e.info.model_id == "hybridsearch-tests/tiny-m3" and e.info.fingerprint == enc32.info.fingerprint
    np.testing.assert_array_equal(e.encode_corpus(TEXTS).dense, enc32.encode_corpus(TEXTS).dense)
    with pytest.raises(ModelLoadError, match="missing colbert_linear.pt"):
        BGEM3Encoder("hybridsearch-tests/tiny-m3-no-colbert", device="cpu")


# ------------------------------------------------------- options and identity
@pytest.mark.parametrize(
    "options",
    [
        {"batch_size": 0},
        {"batch_size": 2.5},
        {"query_max_length": 1},
        {"passage_max_length": 8193},
        {"multivector_dtype": "int8"},
        {"device": ""},
    ],
    ids=lambda o: next(iter(o)) + "=" + repr(next(iter(o.values()))),
)
def test_bad_options(tiny_bge_m3_dir, options):
    with pytest.raises(ConfigError):
        BGEM3Encoder(str(tiny_bge_m3_dir), **options)


def test_max_lengths_up_to_the_model_limit(tiny_bge_m3_dir):
    e = BGEM3Encoder(str(tiny_bge_m3_dir), device="cpu", passage_max_length=8192)
    assert e.encode_corpus([LONG]).multivector is None  # default outputs: dense + sparse


def test_cuda_request(tiny_bge_m3_dir, enc32):
    if torch.cuda.is_available():
        e = BGEM3Encoder(str(tiny_bge_m3_dir), device="cuda")
        assert e.use_fp16
        np.testing.assert_allclose(e.encode_corpus(TEXTS).dense, enc32.encode_corpus(TEXTS).dense, atol=1e-2)
    else:
        with pytest.raises(ConfigError, match="no CUDA GPU"):
            BGEM3Encoder(str(tiny_bge_m3_dir), device="cuda")


def test_fp16_is_never_used_on_cpu(tiny_bge_m3_dir, enc32, caplog):
    with caplog.at_level(logging.WARNING, logger="hybridsearch.encoders.bge_m3"):
        e = BGEM3Encoder(str(tiny_bge_m3_dir), device="cpu", batch_size=2, use_fp16=True)
    assert not e.use_fp16 and "ignored on CPU" in caplog.text
    assert e._flag.model.model.embeddings.word_embeddings.weight.dtype == torch.float32
    np.testing.assert_array_equal(e.encode_corpus(TEXTS).dense, enc32.encode_corpus(TEXTS).dense)


def test_get_encoder_and_info(tiny_bge_m3_dir, enc):
    e = get_encoder("bge-m3", model=str(tiny_bge_m3_dir), device="cpu")
    assert isinstance(e, BGEM3Encoder)
    info = e.info
    assert info.name == "bge-m3" and info.model_id == str(tiny_bge_m3_dir)
    assert re.fullmatch(r"[0-9a-f]{16}", info.fingerprint) and info == enc.info
    assert "bge-m3" in repr(e)


def test_fingerprint_follows_the_weights(tiny_bge_m3_dir, tmp_path, enc):
    d = copy_model(tiny_bge_m3_dir, tmp_path / "m")
    assert BGEM3Encoder(str(d), device="cpu").info.fingerprint == enc.info.fingerprint  # same bytes, other path
    head = torch.load(d / "sparse_linear.pt", weights_only=True)
    head["bias"] += 0.5
    torch.save(head, d / "sparse_linear.pt")
    changed = BGEM3Encoder(str(d), device="cpu")
    assert changed.info.fingerprint != enc.info.fingerprint
    assert changed.encode_corpus(["dog"]).sparse.sum() > enc.encode_corpus(["dog"]).sparse.sum()
