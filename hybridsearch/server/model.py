"""The model behind the embedding routes: dense vectors, token counts and truncation, query + contexts scores.

:class:`EmbeddingModel` wraps an :class:`~hybridsearch.encoders.Encoder` that yields dense vectors, plus the
Hugging Face tokenizer of that encoder, which the token limits are counted with (special tokens included, as
the encoders count their ``max_length``). The routes count on the event loop while the encoder tokenizes on its
worker thread, so the model keeps its own copy of the tokenizer: a fast tokenizer's padding and truncation
settings are state that each call sets, and two threads sharing one see each other's (batches then fail with
"expected sequence of length ..." errors).
"""

from __future__ import annotations

import copy
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from ..contract.workers_ai import bad_input
from ..encoders.base import Encoder
from ..errors import ConfigError
from ..types import Encoded

__all__ = ["EmbeddingModel", "Fitted", "find_tokenizer", "score_contexts"]


def find_tokenizer(encoder: Encoder) -> Any:
    """The Hugging Face tokenizer inside ``encoder`` (bge-m3, MiniLM, or the dense part of a composite).

    Raises ConfigError for an encoder without one: token limits could not be enforced.
    """
    parts = getattr(encoder, "parts", None)
    if isinstance(parts, dict) and "dense" in parts:
        encoder = parts["dense"]
    for path in (("tokenizer",), ("_flag", "tokenizer"), ("_model", "tokenizer")):
        obj: Any = encoder
        for attr in path:
            obj = getattr(obj, attr, None)
        if obj is not None and callable(obj):
            return obj
    raise ConfigError(f"encoder {encoder!r} exposes no tokenizer, so token limits cannot be counted")


def _encoder_max_tokens(encoder: Encoder) -> int | None:
    parts = getattr(encoder, "parts", None)
    if isinstance(parts, dict) and "dense" in parts:
        encoder = parts["dense"]
    limits = [getattr(encoder, a, None) for a in ("passage_max_length", "query_max_length", "max_length")]
    limits = [v for v in limits if isinstance(v, int)]
    return min(limits) if limits else None


@dataclass(frozen=True)
class Fitted:
    """Texts after the token limits: ``texts`` (truncated where allowed) and ``tokens`` per text."""

    texts: list[str]
    tokens: list[int]


class EmbeddingModel:
    """Dense embeddings with token limits.

    ``max_input_tokens`` is capped at the encoder's own maximum (``passage_max_length`` / ``max_length``), so an
    input is never truncated silently by the encoder: it is either refused or truncated here, as the request asks.
    """

    def __init__(self, encoder: Encoder, *, name: str, max_input_tokens: int, max_request_tokens: int) -> None:
        if "dense" not in encoder.supported_outputs:
            raise ConfigError(
                f"the embedding routes need an encoder with dense output; {encoder!r} has {list(encoder.supported_outputs)}"
            )
        self.encoder = encoder
        self.name = name
        self.tokenizer = copy.deepcopy(find_tokenizer(encoder))  # not the encoder's: see the module docstring
        own = _encoder_max_tokens(encoder)
        self.max_input_tokens = min(max_input_tokens, own) if own else max_input_tokens
        self.max_request_tokens = max_request_tokens
        self.dim: int | None = getattr(encoder, "dim", None)

    def count(self, texts: Sequence[str]) -> list[int]:
        """Tokens per text, ``<s>`` and ``</s>`` included."""
        ids = self.tokenizer(list(texts), add_special_tokens=True, truncation=False)["input_ids"]
        return [len(x) for x in ids]

    def fit(self, texts: Sequence[str], *, truncate: bool, names: Sequence[str] | None = None) -> Fitted:
        """Apply the per-input limit (refuse, or truncate when ``truncate``) and the per-request total.

        Raises :class:`ContractError` 400 / 5006 naming the input and its token count (§11.3, §11.5).
        """
        limit = self.max_input_tokens
        counts = self.count(texts)
        out, tokens = list(texts), list(counts)
        for i, n in enumerate(counts):
            if n <= limit:
                continue
            name = names[i] if names else f"input {i}"
            if not truncate:
                raise bad_input(
                    f"{name} has {n} tokens, over the {limit}-token limit; set truncate_inputs to true to truncate it"
                )
            ids = self.tokenizer(out[i], add_special_tokens=False, truncation=False)["input_ids"][: limit - 2]
            out[i] = self.tokenizer.decode(ids)
            tokens[i] = min(self.count([out[i]])[0], limit)
        total = sum(tokens)
        if total > self.max_request_tokens:
            raise bad_input(
                f"the request has {total} tokens, over the {self.max_request_tokens}-token limit per request"
            )
        return Fitted(out, tokens)


def score_contexts(query: Encoded, contexts: Encoded, *, mode: str, weights: tuple[float, float, float]) -> np.ndarray:
    """float32 ``(n_contexts,)``: the score of each context for the one query row.

    ``mode="dense"``: dot product of the unit dense vectors (cosine; Cloudflare's score, §9). ``mode="all"``:
    ``w_dense * dense + w_sparse * lexical + w_mv * colbert`` over the views both sides hold, with the weights
    renormalised over those views (bge-m3's ``compute_score``: lexical = sum of matching token weight products,
    colbert = mean over query tokens of the best context token dot product).
    """
    dense = (contexts.dense @ query.dense[0]).astype(np.float32)
    if mode == "dense":
        return dense
    parts, used = [weights[0] * dense], [weights[0]]
    if query.sparse is not None and contexts.sparse is not None:
        lex = np.asarray((contexts.sparse @ query.sparse[0].T).todense()).ravel().astype(np.float32)
        parts.append(weights[1] * lex)
        used.append(weights[1])
    if query.multivector is not None and contexts.multivector is not None:
        q = query.multivector[0].astype(np.float32)
        mv = np.array([float((q @ contexts.multivector[i].astype(np.float32).T).max(axis=1).mean())
                       for i in range(len(contexts))], np.float32)  # fmt: skip
        parts.append(weights[2] * mv)
        used.append(weights[2])
    return (np.sum(parts, axis=0) / sum(used)).astype(np.float32)
