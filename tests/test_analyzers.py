from __future__ import annotations

import sys

import numpy as np
import pytest

from hybridsearch.analyzers import STOPWORDS, WordAnalyzer, XLMRTokenAnalyzer, default_tokenizer_path
from hybridsearch.errors import ConfigError, MissingDependencyError, ModelLoadError

# ----------------------------------------------------------------------------------------- words


def test_words_are_lowercased_unicode_word_runs():
    assert WordAnalyzer().analyze("Hello, World! Ça va? 2024_x") == ["hello", "world", "ça", "va", "2024_x"]


def test_nfkc_folds_compatibility_forms_and_composes_accents():
    a = WordAnalyzer()
    assert a.analyze("Ｈｅｌｌｏ ﬁne") == ["hello", "fine"]
    # A decomposed accent (e + U+0301) and the precomposed é become the same word.
    assert a.analyze("cafe\u0301 café") == ["café", "café"]
    # Without normalization the combining mark is not a word character and splits the word.
    raw = WordAnalyzer(normalize=None)
    assert raw.analyze("Ｈｅｌｌｏ") == ["ｈｅｌｌｏ"]
    assert raw.analyze("cafe\u0301") == ["cafe"]


def test_vowel_signs_keep_words_whole():
    # Python's \w does not match these combining vowel signs; plain \w+ would give ['ह', 'द', ...].
    assert WordAnalyzer().analyze("हिंदी किताब, ภาษาไทย తెలుగు") == ["हिंदी", "किताब", "ภาษาไทย", "తెలుగు"]


def test_yoruba_precomposed_letters_stay_in_words():
    assert WordAnalyzer().analyze("Ọmọ ìlú wo ni òṣèré") == ["ọmọ", "ìlú", "wo", "ni", "òṣèré"]


def test_yoruba_tone_mark_without_precomposed_form_splits_unless_accents_are_stripped():
    # ọ̀ is ọ (U+1ECD) + combining grave: Python's \w does not match the mark, so the word breaks there.
    text = "ọ̀rọ̀ Ìlú"
    assert WordAnalyzer().analyze(text) == ["ọ", "rọ", "ìlú"]
    assert WordAnalyzer(strip_accents=True).analyze(text) == ["oro", "ilu"]
    assert WordAnalyzer(strip_accents=True).analyze("Ọmọ òṣèré, café") == ["omo", "osere", "cafe"]


def test_strip_accents_keeps_vowel_signs_of_other_scripts():
    # Devanagari vowel signs (U+093F, U+0941) are combining marks but not accents.
    assert WordAnalyzer(strip_accents=True).analyze("हिंदी किताब") == WordAnalyzer().analyze("हिंदी किताब")
    assert WordAnalyzer(strip_accents=True).analyze("Ἀθῆναι") == ["αθηναι"]


def test_stemming_on_and_off():
    text = "Running cats were connected"
    assert WordAnalyzer().analyze(text) == ["running", "cats", "were", "connected"]
    assert WordAnalyzer(stemmer="english").analyze(text) == ["run", "cat", "were", "connect"]
    assert WordAnalyzer(stemmer="id").analyze("makanan pembelajaran") == ["makan", "ajar"]


def test_unknown_stemmer_lists_the_choices():
    with pytest.raises(ConfigError, match="unknown stemmer 'klingon'.*english"):
        WordAnalyzer(stemmer="klingon")


def test_missing_pystemmer_names_the_extra(monkeypatch):
    monkeypatch.setitem(sys.modules, "Stemmer", None)  # import Stemmer now raises ImportError
    with pytest.raises(MissingDependencyError, match=r"hybridsearch\[lexical\]"):
        WordAnalyzer(stemmer="english")
    assert WordAnalyzer().analyze("still works") == ["still", "works"]


def test_builtin_stopwords_for_each_language():
    assert set(STOPWORDS) == {"english", "swahili", "yoruba", "indonesian"}
    assert WordAnalyzer(stopwords="english").analyze("The cat IS on the mat") == ["cat", "mat"]
    assert WordAnalyzer(stopwords="sw").analyze("watu wa Tanzania na Kenya") == ["watu", "tanzania", "kenya"]
    assert WordAnalyzer(stopwords="id").analyze("Kota yang besar dan indah") == ["kota", "besar", "indah"]
    # Stopwords go through the same normalization: "Àti" and "àti" match the listed "àti".
    assert WordAnalyzer(stopwords="yo").analyze("Ọmọ àti Àti ìlú") == ["ọmọ", "ìlú"]
    assert WordAnalyzer(stopwords="yo", strip_accents=True).analyze("Ọmọ àti ATI ìlú") == ["omo", "ilu"]


def test_stopwords_are_removed_before_stemming():
    # "running" is not a stopword even though its stem "run" is listed.
    a = WordAnalyzer(stopwords=["RUN", "the"], stemmer="english")
    assert a.analyze("the running run") == ["run"]


def test_bad_stopword_options():
    with pytest.raises(ConfigError, match="no built-in stopword list 'xx'"):
        WordAnalyzer(stopwords="xx")
    with pytest.raises(ConfigError, match="stopwords must be strings"):
        WordAnalyzer(stopwords=["a", 3])  # type: ignore[list-item]
    with pytest.raises(ConfigError, match="normalize must be"):
        WordAnalyzer(normalize="NFX")  # type: ignore[arg-type]
    with pytest.raises(ConfigError, match="strip_accents must be true or false, got 'False'"):
        WordAnalyzer(strip_accents="False")  # type: ignore[arg-type]


def test_batch_terms_are_flat_with_offsets():
    flat, offsets = WordAnalyzer().terms(["a b", "!!", "c"])
    assert flat == ["a", "b", "c"]
    assert offsets.tolist() == [0, 2, 2, 3]


def test_config_round_trip_rebuilds_the_same_analyzer():
    a = WordAnalyzer(strip_accents=True, stopwords="yoruba", stemmer="english")
    b = WordAnalyzer.from_config(a.config)
    assert b.config == a.config
    assert b.describe() == a.describe() == "words(nfkc,lower,noaccents,stop=yoruba,stem=english)"
    text = "Àwọn ọmọ ati ìlú running"
    assert b.analyze(text) == a.analyze(text) == ["omo", "ilu", "run"]
    with pytest.raises(ConfigError, match="unknown word analyzer settings"):
        WordAnalyzer.from_config({"lowercase": True, "colour": "red"})


# ----------------------------------------------------------------------------------------- XLM-R


@pytest.fixture(scope="module")
def xlmr(data_root) -> XLMRTokenAnalyzer:
    return XLMRTokenAnalyzer()


def test_xlmr_ids_are_bge_m3_ids_without_template_tokens(xlmr):
    ids, offsets = xlmr.token_ids(["Hello world"])
    assert ids.tolist() == [35378, 8999]  # XLM-R: <s>=0 Hello=35378 world=8999 </s>=2
    assert offsets.tolist() == [0, 2]
    assert xlmr.vocab_size == 250_002
    assert xlmr.special_ids.tolist() == [0, 1, 2, 3, 250001]


def test_xlmr_is_case_sensitive_and_not_truncated(xlmr):
    assert xlmr.analyze("Hello") != xlmr.analyze("hello")
    ids, _ = xlmr.token_ids([" ".join(["world"] * 9000)])  # longer than bge-m3's 8,192-token window
    assert ids.tolist() == [8999] * 9000


def test_xlmr_drops_special_tokens_written_in_text(xlmr):
    assert xlmr.analyze("Hello <s> world </s>") == ["▁Hello", "▁world"]
    assert xlmr.analyze("<unk> <mask> <pad>") == []


def test_xlmr_keeps_word_start_piece_but_drops_orphaned_ones(xlmr):
    # Kept: "▁" begins a word whose first piece has no "▁" form.
    assert xlmr.analyze("ọ̀rọ̀") == ["▁", "ọ", "\u0300", "r", "ọ", "\u0300"]
    # Dropped: trailing whitespace, and the "▁" before unknown characters.
    assert xlmr.analyze("Hello\n") == ["▁Hello"]
    assert xlmr.analyze("𓀀𓀀 𓀀") == []


def test_xlmr_batch_offsets_with_empty_text(xlmr):
    ids, offsets = xlmr.token_ids(["a b", "<s>", "c"])
    assert offsets.tolist() == [0, 2, 2, 3]
    assert ids.tolist() == xlmr.token_ids(["a b"])[0].tolist() + xlmr.token_ids(["c"])[0].tolist()


def test_xlmr_tokenizer_sources(xlmr, data_root):
    folder = data_root / "tokenizers" / "xlm-roberta"
    by_folder = XLMRTokenAnalyzer(folder)
    assert by_folder.identity == xlmr.identity
    assert default_tokenizer_path() == folder / "tokenizer.json"
    from tokenizers import Tokenizer

    by_object = XLMRTokenAnalyzer(Tokenizer.from_file(str(folder / "tokenizer.json")))
    assert by_object.identity == xlmr.identity
    np.testing.assert_array_equal(by_object.token_ids(["Ọmọ ìlú"])[0], xlmr.token_ids(["Ọmọ ìlú"])[0])


def test_tokenizer_object_with_truncation_is_used_untruncated_and_left_unchanged():
    from tokenizers import Tokenizer, models, pre_tokenizers

    tok = Tokenizer(models.WordLevel({"<unk>": 0, "a": 1, "b": 2}, unk_token="<unk>"))
    tok.pre_tokenizer = pre_tokenizers.Whitespace()
    tok.enable_truncation(max_length=2)
    ids, _ = XLMRTokenAnalyzer(tok).token_ids(["a b a b c"])
    assert ids.tolist() == [1, 2, 1, 2]  # all tokens; the unknown "c" (<unk>) is dropped
    assert tok.truncation is not None and len(tok.encode("a b a b").ids) == 2


def test_xlmr_tokenizer_errors(tmp_path, monkeypatch):
    with pytest.raises(ModelLoadError, match="tokenizer file not found"):
        XLMRTokenAnalyzer(tmp_path)
    bad = tmp_path / "tokenizer.json"
    bad.write_text("{not json")
    with pytest.raises(ModelLoadError, match="cannot read tokenizer"):
        XLMRTokenAnalyzer(bad)
    with pytest.raises(ConfigError, match="tokenizer must be"):
        XLMRTokenAnalyzer(42)
    monkeypatch.delenv("HYBRIDSEARCH_DATA")
    with pytest.raises(ConfigError, match="HYBRIDSEARCH_DATA is not set"):
        XLMRTokenAnalyzer()
