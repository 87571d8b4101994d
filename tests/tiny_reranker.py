"""Build a tiny, deterministic cross-encoder directory with bge-reranker-v2-m3's layout, for offline tests.

bge-reranker-v2-m3 is an ``XLMRobertaForSequenceClassification`` with one label over the XLM-R tokenizer. The tiny
model has the same class, config keys and files (``config.json``, ``model.safetensors``, tokenizer), hidden size
32 and 2 layers, with every weight drawn from ``numpy.random.RandomState(1)``: the scores mean nothing, the
structure and arithmetic are real. ``head=False`` writes only the backbone (no classification head), the case
where transformers would initialise the head at random.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from tiny_bge_m3 import HIDDEN, _write_tokenizer

__all__ = ["build_tiny_reranker"]


def build_tiny_reranker(path: str | Path, *, head: bool = True) -> Path:
    import torch
    from transformers import XLMRobertaConfig, XLMRobertaForSequenceClassification, XLMRobertaModel

    path = Path(path)
    path.mkdir(parents=True, exist_ok=True)
    vocab_size = _write_tokenizer(path)
    config = XLMRobertaConfig(
        vocab_size=vocab_size, hidden_size=HIDDEN, num_hidden_layers=2, num_attention_heads=2, intermediate_size=64,
        max_position_embeddings=8194, type_vocab_size=1, pad_token_id=1, bos_token_id=0, eos_token_id=2,
        layer_norm_eps=1e-5, num_labels=1, architectures=["XLMRobertaForSequenceClassification"],
    )  # fmt: skip
    model = XLMRobertaForSequenceClassification(config) if head else XLMRobertaModel(config)
    rng = np.random.RandomState(1)
    with torch.no_grad():
        params = dict(model.named_parameters())
        for name in sorted(params):
            p = params[name]
            if "LayerNorm" in name:
                p.fill_(1.0 if name.endswith("weight") else 0.0)
            else:
                p.copy_(torch.from_numpy(rng.normal(0.0, 0.3, size=tuple(p.shape)).astype(np.float32)))
    model.save_pretrained(str(path))
    return path
