"""Parameterised sparse-search workloads for ``bench_sparse.py``: bge-m3-like synthetic shapes and a real-token shape.

A synthetic shape draws each document's and query's tokens from a Zipf law over the 250,002-token XLM-R
vocabulary (ids 0-3, the special tokens, are never drawn), with a fixed rank -> token id map, and gives
frequent tokens smaller weights (as learned lexical weights and IDF both do)::

    weight = uniform(lo, hi) * min(1, floor + (1 - floor) * log10(rank) / 3)

so rank 1 gets ``floor`` times the uniform draw and ranks >= 1000 get all of it. The parameters are

- ``doc_draws``: tokens drawn per document (repeats merge, so the unique count is lower; see ``SHAPES``);
- ``query_terms``: ``(lo, hi)`` unique tokens per query, uniform in that range;
- ``doc_zipf`` / ``query_zipf``: the Zipf exponents (queries slightly flatter, so they hit mid-frequency tokens);
- ``doc_weight`` / ``query_weight``: the uniform ranges; ``floor``: the weight factor of the most frequent token.

``reference`` is ``shared/bench/synth.py`` itself (``make_corpus`` / ``make_queries``), so its numbers stay
comparable with earlier runs. ``real`` is BM25 (``BM25Encoder``, XLM-R token ids, k1 = 0.9, b = 0.4) over the
SciFact and MIRACL-subset (sw, yo, id) corpora, replicated with small perturbations (each copy keeps a posting
with probability 0.9 and scales its weight by uniform(0.9, 1.1)) up to the requested size; its queries are the
real SciFact and MIRACL dev queries.

Corpora are built in chunks of 50,000 documents (seeded per chunk), so memory stays near the final CSR's size,
and can be cached as ``.npz`` files (``--cache`` in ``bench_sparse.py``).
"""

from __future__ import annotations

import importlib.util
import os
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType

import numpy as np
import scipy.sparse as sp

VOCAB = 250_002
_CHUNK = 50_000
_PERM = np.random.default_rng(12345).permutation(VOCAB - 4)  # rank - 1 -> token id - 4, as in synth.py
_RANK_OF = _PERM.argsort()  # token id - 4 -> rank - 1


@dataclass(frozen=True)
class Shape:
    """A synthetic workload's parameters (see the module docstring)."""

    name: str
    doc_draws: int
    query_terms: tuple[int, int]
    doc_zipf: float = 1.1
    query_zipf: float = 1.05
    doc_weight: tuple[float, float] = (0.02, 0.4)
    query_weight: tuple[float, float] = (0.05, 0.4)
    floor: float = 0.15
    description: str = ""


SHAPES: dict[str, Shape] = {
    # the reference shape is synth.py itself; the parameters here describe it
    "reference": Shape("reference", 110, (11, 12), description="synth.py: ~76 unique tokens/doc, ~11/query"),
    "heavier": Shape(
        "heavier",
        260,
        (26, 30),
        description="~160 unique tokens/doc (SciFact-like abstracts), 26-30/query (RAG-style questions)",
    ),
    "short": Shape("short", 110, (3, 5), description="~76 unique tokens/doc, 3-5 tokens/query (keyword queries)"),
    "flat": Shape(
        "flat",
        160,
        (10, 14),
        doc_zipf=1.05,
        query_zipf=1.02,
        floor=0.4,
        description="flatter Zipf (1.05), weaker down-weighting of frequent tokens (floor 0.4)",
    ),
}
REAL = "real"


def load_synth(path: Path) -> ModuleType:
    spec = importlib.util.spec_from_file_location("synth", path)
    if spec is None or spec.loader is None or not path.exists():
        raise SystemExit(f"reference workload not found at {path}; pass --synth")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def _zipf_ranks(rng: np.random.Generator, size: int, a: float) -> np.ndarray:
    """``size`` Zipf(a) ranks (1-based) below the vocabulary size."""
    out = np.empty(0, np.int64)
    while out.size < size:
        r = rng.zipf(a, size=max(size - out.size, 1024) * 2)
        out = np.concatenate([out, r[r < VOCAB - 4]])
    return out[:size]


def _scale(ranks: np.ndarray, floor: float) -> np.ndarray:
    return np.minimum(1.0, floor + (1.0 - floor) * np.log10(ranks) / 3.0).astype(np.float32)


def make_corpus(shape: Shape, n: int, seed: int = 0) -> sp.csr_matrix:
    """``n`` documents of ``shape`` as a canonical CSR (float32, sorted unique indices), built in chunks."""
    parts = []
    for c, a in enumerate(range(0, n, _CHUNK)):
        m = min(_CHUNK, n - a)
        rng = np.random.default_rng([seed, c])
        ranks = _zipf_ranks(rng, m * shape.doc_draws, shape.doc_zipf)
        w = rng.uniform(*shape.doc_weight, size=ranks.size).astype(np.float32) * _scale(ranks, shape.floor)
        rows = np.repeat(np.arange(m, dtype=np.int32), shape.doc_draws)
        terms = (_PERM[ranks - 1] + 4).astype(np.int32)
        del ranks
        part = sp.csr_matrix((w, (rows, terms)), shape=(m, VOCAB))
        part.sum_duplicates()
        parts.append(part)
    out = sp.vstack(parts, format="csr") if len(parts) > 1 else parts[0]
    out.sort_indices()
    return out


def make_queries(shape: Shape, q: int, seed: int = 1) -> sp.csr_matrix:
    """``q`` queries of ``shape``: each has a uniform number of unique tokens in ``shape.query_terms``."""
    rng = np.random.default_rng([seed, 7])
    lo, hi = shape.query_terms
    indptr, indices, data = [0], [], []
    for _ in range(q):
        m = int(rng.integers(lo, hi + 1))
        seen: list[int] = []
        while len(seen) < m:
            for r in _zipf_ranks(rng, 4 * m, shape.query_zipf).tolist():
                if r not in seen:
                    seen.append(r)
                    if len(seen) == m:
                        break
        ranks = np.array(seen, np.int64)
        w = rng.uniform(*shape.query_weight, size=m).astype(np.float32) * _scale(ranks, shape.floor)
        terms = _PERM[ranks - 1] + 4
        o = np.argsort(terms)
        indices.append(terms[o])
        data.append(w[o])
        indptr.append(indptr[-1] + m)
    return sp.csr_matrix(
        (np.concatenate(data), np.concatenate(indices).astype(np.int32), np.array(indptr)), shape=(q, VOCAB)
    )


# ----------------------------------------------------------------------------- real tokens: BM25 over XLM-R ids
def _real_texts(data_dir: Path) -> tuple[list[str], list[str]]:
    import json

    docs: list[str] = []
    queries: list[str] = []
    sf = data_dir / "scifact"
    with open(sf / "corpus.jsonl", encoding="utf-8") as f:
        for line in f:
            d = json.loads(line)
            docs.append(f"{d.get('title', '')} {d['text']}".strip())
    with open(sf / "queries.jsonl", encoding="utf-8") as f:
        queries += [json.loads(line)["text"] for line in f]
    for lang in ("sw", "yo", "id"):
        root = data_dir / "miracl-subset" / lang
        with open(root / "corpus.jsonl", encoding="utf-8") as f:
            for line in f:
                d = json.loads(line)
                docs.append(f"{d.get('title', '')} {d['text']}".strip())
        topics = root / f"topics.miracl-v1.0-{lang}-dev.subset.tsv"
        with open(topics, encoding="utf-8") as f:
            queries += [line.rstrip("\n").split("\t", 1)[1] for line in f if "\t" in line]
    return docs, queries


def make_real(n: int, seed: int = 3) -> tuple[sp.csr_matrix, sp.csr_matrix, int]:
    """BM25 over XLM-R tokens of SciFact + MIRACL subsets, replicated with perturbations to ``n`` documents.

    Returns ``(docs, queries, n_original)``; the first ``n_original`` documents are the real ones, unperturbed.
    """
    from hybridsearch.encoders.bm25 import BM25Encoder

    data_dir = Path(os.environ.get("HYBRIDSEARCH_DATA", ""))
    texts, qtexts = _real_texts(data_dir)
    enc = BM25Encoder()
    base = sp.csr_matrix(enc.fit_encode_corpus(texts).sparse, dtype=np.float32)
    queries = sp.csr_matrix(enc.encode_queries(qtexts).sparse, dtype=np.float32)
    queries = queries[np.diff(queries.indptr) > 0]
    base.sort_indices()
    n0 = base.shape[0]
    parts = [base[: min(n, n0)]]
    rng = np.random.default_rng(seed)
    done = parts[0].shape[0]
    while done < n:
        m = min(n0, n - done)
        src = base[:m]
        keep = rng.random(src.nnz) < 0.9
        data = src.data * rng.uniform(0.9, 1.1, size=src.nnz).astype(np.float32)
        data[~keep] = 0.0
        copy = sp.csr_matrix((data, src.indices.copy(), src.indptr.copy()), shape=src.shape)
        copy.eliminate_zeros()
        parts.append(copy)
        done += m
    out = sp.vstack(parts, format="csr")
    out.sort_indices()
    return out, queries, n0


# ----------------------------------------------------------------------------- caching
def cached(path: Path | None, build):  # type: ignore[no-untyped-def]
    """``build()``'s CSR, read from / written to ``path`` (``.npz``) when a path is given."""
    if path is not None and path.exists():
        return sp.load_npz(path).tocsr()
    m = build()
    if path is not None:
        path.parent.mkdir(parents=True, exist_ok=True)
        sp.save_npz(path, m, compressed=False)
    return m
