from __future__ import annotations

import os
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]

# Tests run offline: the evaluation data sits beside the checkout, and no hub access is attempted.
if not os.environ.get("HYBRIDSEARCH_DATA") and (ROOT.parent / "shared" / "data").is_dir():
    os.environ["HYBRIDSEARCH_DATA"] = str(ROOT.parent / "shared" / "data")
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")


@pytest.fixture(scope="session")
def data_root() -> Path:
    root = os.environ.get("HYBRIDSEARCH_DATA")
    if not root or not Path(root).is_dir():
        raise RuntimeError("evaluation data not found: set HYBRIDSEARCH_DATA to the shared data folder")
    return Path(root)


@pytest.fixture(scope="session")
def tiny_bge_m3_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny random model with bge-m3's file layout (see tests/tiny_bge_m3.py), built once per session."""
    from tiny_bge_m3 import build_tiny_bge_m3

    return build_tiny_bge_m3(tmp_path_factory.mktemp("tiny-bge-m3"))


@pytest.fixture(scope="session")
def tiny_bge_m3_encoder(tiny_bge_m3_dir: Path):
    """The tiny model loaded once per session as a BGEM3Encoder on CPU, accepting inputs up to 8,192 tokens."""
    from hybridsearch.encoders.bge_m3 import BGEM3Encoder

    return BGEM3Encoder(str(tiny_bge_m3_dir), device="cpu", query_max_length=8192, passage_max_length=8192)
