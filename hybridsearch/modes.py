"""Retrieval modes, named as in the bge-m3 paper (Chen et al., 2024, "BGE M3-Embedding", Tables 1-3).

==================  ============================================================================  ==============
mode                what runs                                                                     query views
==================  ============================================================================  ==============
``dense``           the dense view's top-k (FAISS)                                                dense
``sparse``          the sparse view's top-k (inverted index over lexical weights)                 sparse
``multivector``     the dense top ``candidates`` (sparse without dense), re-scored by MaxSim       dense, multivector
``dense+sparse``    dense and sparse each propose ``candidates``; the union is scored exactly     dense, sparse
                    by both views and fused
``all``             ``dense+sparse``, then the fused top ``candidates`` re-scored by MaxSim and   all three
                    fused again over the three views
``hybrid``          alias: ``all`` when the index and the query both hold multi-vectors, else
                    ``dense+sparse``
==================  ============================================================================  ==============

The paper's own settings differ in depth (multi-vector re-ranks the dense top-200; dense+sparse takes the
top-1000 of each and re-ranks by the summed score; "All" re-ranks by ``w1·s_dense + w2·s_lex + w3·s_mul``):
``candidates=200`` / ``1000`` and ``fusion="weighted_sum(dense=1,sparse=1)"`` or
``"weighted_sum(dense=0.4,sparse=0.2,multivector=0.4)"`` reproduce them. The default fusion is RRF
(:data:`hybridsearch.fusion.DEFAULT_FUSION`).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

from .errors import ConfigError, InputError

if TYPE_CHECKING:
    from .types import Encoded

__all__ = [
    "FIRST_STAGE", "MODE_ALIASES", "PAPER_MODES", "SEARCH_MODES", "check_mode", "index_search_args", "pick_mode", "query_views",
]  # fmt: skip

PAPER_MODES = ("dense", "sparse", "multivector", "dense+sparse", "all")
"""The retrieval modes of the bge-m3 paper, in its table order."""
MODE_ALIASES = {"hybrid": "dense+sparse or all"}
SEARCH_MODES = (*PAPER_MODES, "hybrid")
"""Every mode name :meth:`HybridIndex.search <hybridsearch.index.HybridIndex.search>` and the retriever accept."""
FIRST_STAGE = ("dense", "sparse")


def check_mode(mode: str) -> str:
    """``mode`` itself when it is a known mode name; ConfigError listing the names otherwise."""
    if mode not in SEARCH_MODES:
        raise ConfigError(f"unknown search mode {mode!r}; expected one of: {', '.join(SEARCH_MODES)}")
    return mode


def index_search_args(mode: str, rerank: bool | None = None) -> tuple[str, bool | None]:
    """The index's internal ``(mode, rerank)`` for a mode name: ``dense+sparse`` is hybrid without MaxSim, ``all``
    hybrid with it. Raises ConfigError for an unknown name or a ``rerank`` that contradicts the mode."""
    check_mode(mode)
    if mode in ("dense+sparse", "all"):
        want = mode == "all"
        if rerank is not None and bool(rerank) != want:
            raise ConfigError(f"mode {mode!r} {'always' if want else 'never'} re-scores with MaxSim; drop rerank={rerank!r}")
        return "hybrid", want
    return mode, rerank



def pick_mode(held: Sequence[str], query: Encoded, mode: str | None) -> str:
    """The index's internal mode for a search: ``mode`` itself (paper names allowed) or, when ``None``,
    ``"hybrid"`` if the queries and an index holding the views ``held`` share more than one view, else the one
    they share. An empty index (``held`` empty) is treated as holding the queries' views. Raises InputError when
    they share none, ConfigError for an unknown mode name."""
    if mode is not None:
        return index_search_args(mode)[0]
    shared = [m for m in held if getattr(query, m) is not None] if held else list(query.modes)
    if not shared:
        raise InputError(f"the queries hold {list(query.modes)} but the index holds {list(held)}: no view in common")
    return "hybrid" if len(shared) > 1 else shared[0]

def query_views(mode: str, index_views: Sequence[str]) -> tuple[str, ...]:
    """The query views ``mode`` needs against an index holding ``index_views`` (canonical order).

    ``hybrid`` asks for multi-vectors when the index holds them. Raises InputError when the index lacks a view
    the mode needs.
    """
    check_mode(mode)
    held = set(index_views)
    first = [m for m in FIRST_STAGE if m in held]
    if mode in ("dense", "sparse"):
        need = {mode}
    elif mode == "multivector":
        need = {first[0], "multivector"} if first else {"multivector"}
    elif mode == "dense+sparse":
        need = set(first)
        if len(need) < 2:
            raise InputError(f"mode 'dense+sparse' needs an index with dense and sparse views; this one holds {sorted(held)}")
    elif mode == "all":
        need = {*first, "multivector"}
        if len(first) < 2:
            raise InputError(f"mode 'all' needs an index with dense, sparse and multivector views; this one holds {sorted(held)}")
    else:  # hybrid
        need = set(first) | ({"multivector"} if "multivector" in held else set())
    missing = need - held
    if missing:
        raise InputError(f"mode {mode!r} needs the {', '.join(sorted(missing))} view(s); the index holds {sorted(held)}")
    return tuple(m for m in ("dense", "sparse", "multivector") if m in need)
