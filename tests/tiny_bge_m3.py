"""Build a tiny, deterministic model directory with bge-m3's exact layout, for offline tests.

The directory holds an XLM-R config (hidden size 32, 2 layers), ``model.safetensors``, a Unigram tokenizer
with XLM-R's special-token ids, and the two heads ``colbert_linear.pt`` and ``sparse_linear.pt``.
``BGEM3FlagModel`` loads it like the real model. Every weight comes from ``numpy.random.RandomState(0)``,
so the files and the vectors are the same on every machine; the numbers mean nothing, only the structure
and the arithmetic are real.

Run ``python tests/tiny_bge_m3.py OUT_DIR`` to write one by hand.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np

__all__ = ["HIDDEN", "WORDS", "build_tiny_bge_m3"]

HIDDEN = 32
SPECIALS = ("<s>", "<pad>", "</s>", "<unk>")  # ids 0-3, as in XLM-R; <mask> is added last
WORDS = (
    "the a an of and or to in on for with is are was be by as at from that this it not no "
    "what which who how why when where does do can could may might "
    "cat dog bird fish mouse horse cow sheep animal pet "
    "sun moon star sky rain snow wind cloud water fire earth "
    "protein gene cell cancer virus vaccine patient disease drug dose blood brain heart risk study "
    "search index vector sparse dense token query document model retrieval hybrid score rank "
    "red green blue black white small large fast slow old new good bad high low "
    "sits runs eats sleeps grows falls rises causes reduces increases"
).split()
PUNCTUATION = ".,;:!?'\"()[]{}-_/%&+=*<>@#$"
CHARS = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789" + PUNCTUATION


def _vocabulary() -> list[tuple[str, float]]:
    vocab = [(s, 0.0) for s in SPECIALS]
    seen = {s for s, _ in vocab}

    def add(piece: str, score: float) -> None:
        if piece not in seen:
            seen.add(piece)
            vocab.append((piece, score))

    for w in WORDS:
        add("\u2581" + w, -2.0)
        add("\u2581" + w[0].upper() + w[1:], -2.0)
    add("\u2581", -8.0)
    for c in CHARS:
        add(c, -8.0)
    for c in CHARS:
        add("\u2581" + c, -8.0)
    return vocab


def _write_tokenizer(path: Path) -> int:
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors
    from transformers import PreTrainedTokenizerFast

    tok = Tokenizer(models.Unigram(_vocabulary(), unk_id=3, byte_fallback=False))
    tok.pre_tokenizer = pre_tokenizers.Sequence(
        [pre_tokenizers.WhitespaceSplit(), pre_tokenizers.Metaspace(replacement="\u2581", prepend_scheme="always")]
    )
    tok.decoder = decoders.Metaspace(replacement="\u2581", prepend_scheme="always")
    tok.add_special_tokens(["<s>", "<pad>", "</s>", "<unk>", "<mask>"])
    tok.post_processor = processors.TemplateProcessing(
        single="<s> $A </s>", pair="<s> $A </s> </s> $B </s>", special_tokens=[("<s>", 0), ("</s>", 2)]
    )
    fast = PreTrainedTokenizerFast(
        tokenizer_object=tok,
        bos_token="<s>",
        cls_token="<s>",
        eos_token="</s>",
        sep_token="</s>",
        unk_token="<unk>",
        pad_token="<pad>",
        mask_token="<mask>",
        model_max_length=8192,
    )
    fast.save_pretrained(str(path))
    cfg_path = path / "tokenizer_config.json"
    cfg = json.loads(cfg_path.read_text(encoding="utf-8"))
    cfg["tokenizer_class"] = "XLMRobertaTokenizer"
    cfg_path.write_text(json.dumps(cfg, indent=2), encoding="utf-8")
    return len(fast)


def build_tiny_bge_m3(path: str | Path) -> Path:
    """Write the tiny model into ``path`` (created if needed) and return it.

    >>> d = build_tiny_bge_m3(tmp_path / "tiny")          # doctest: +SKIP
    >>> sorted(p.name for p in d.iterdir())[:2]            # doctest: +SKIP
    ['colbert_linear.pt', 'config.json']
    """
    import torch
    from transformers import XLMRobertaConfig, XLMRobertaModel

    path = Path(path)
    path.mkdir(parents=True, exist_ok=True)
    vocab_size = _write_tokenizer(path)

    config = XLMRobertaConfig(
        vocab_size=vocab_size,
        hidden_size=HIDDEN,
        num_hidden_layers=2,
        num_attention_heads=2,
        intermediate_size=64,
        max_position_embeddings=8194,
        type_vocab_size=1,
        pad_token_id=1,
        bos_token_id=0,
        eos_token_id=2,
        layer_norm_eps=1e-5,
        initializer_range=0.5,
        architectures=["XLMRobertaModel"],
    )
    model = XLMRobertaModel(config)
    rng = np.random.RandomState(0)
    # Overwrite every parameter from the numpy generator: torch's own initialisation differs between
    # transformers versions, so seeding torch alone would not give the same files everywhere.
    with torch.no_grad():
        params = dict(model.named_parameters())
        for name in sorted(params):
            p = params[name]
            if "LayerNorm" in name:
                p.fill_(1.0 if name.endswith("weight") else 0.0)
            else:
                p.copy_(torch.from_numpy(rng.normal(0.0, 0.5, size=tuple(p.shape)).astype(np.float32)))
    model.save_pretrained(str(path))

    bound = 1.0 / np.sqrt(HIDDEN)
    colbert = torch.nn.Linear(HIDDEN, HIDDEN)
    sparse = torch.nn.Linear(HIDDEN, 1)
    with torch.no_grad():
        for layer in (colbert, sparse):
            layer.weight.copy_(torch.from_numpy(rng.uniform(-bound, bound, size=tuple(layer.weight.shape)).astype(np.float32)))
            layer.bias.copy_(torch.from_numpy(rng.uniform(-bound, bound, size=tuple(layer.bias.shape)).astype(np.float32)))
        # A positive bias keeps most token weights above zero, as in the real model; otherwise ReLU
        # would zero so many tokens that several test pairs would share no sparse term.
        sparse.bias.fill_(1.0)
    torch.save(colbert.state_dict(), path / "colbert_linear.pt")
    torch.save(sparse.state_dict(), path / "sparse_linear.pt")
    return path


if __name__ == "__main__":  # pragma: no cover - manual use
    if len(sys.argv) != 2:
        sys.exit("usage: python tests/tiny_bge_m3.py OUT_DIR")
    print(build_tiny_bge_m3(sys.argv[1]))
