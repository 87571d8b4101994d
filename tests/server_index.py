"""A small index directory built with the tiny bge-m3 model, for the server tests."""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

from hybridsearch.encoders.stored import save_encoder
from hybridsearch.index import HybridIndex

__all__ = ["DOCS", "build_index", "copy_index"]

TOPICS = ("animal", "sky", "health", "search")
_WORDS = {
    "animal": "cat dog bird fish mouse horse cow sheep pet",
    "sky": "sun moon star sky rain snow wind cloud",
    "health": "protein gene cell cancer virus vaccine patient disease drug",
    "search": "search index vector sparse dense token query document retrieval",
}
DOCS: list[dict[str, Any]] = []
for t_i, topic in enumerate(TOPICS):
    words = _WORDS[topic].split()
    for j in range(6):
        text = " ".join(words[(j + s) % len(words)] for s in range(5))
        DOCS.append({"id": f"{topic}-{j}", "text": f"the {text}", "metadata": {"topic": topic, "n": t_i * 6 + j}})


def build_index(out: Path, encoder: Any, model_dir: Path) -> Path:
    """Index :data:`DOCS` (dense, sparse and multi-vector views) and record the encoder for ``serve``."""
    enc = encoder.encode_corpus([d["text"] for d in DOCS], outputs=("dense", "sparse", "multivector"))
    index = HybridIndex(multivector_compression="fp16")
    index.add([d["id"] for d in DOCS], enc, texts=[d["text"] for d in DOCS], metadata=[d["metadata"] for d in DOCS])
    index.save(out)
    save_encoder(out, "bge-m3", {"model": str(model_dir), "device": "cpu", "passage_max_length": 8192,
                                 "query_max_length": 8192}, encoder)  # fmt: skip
    return out


def copy_index(src: Path, dst: Path) -> Path:
    shutil.copytree(src, dst)
    return dst
