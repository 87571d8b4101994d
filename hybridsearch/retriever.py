"""Texts in, ranked documents out: :class:`Retriever` encodes queries, searches an index and reranks.

>>> from hybridsearch import Retriever                                        # doctest: +SKIP
>>> retriever = Retriever.load("indexes/built/scifact")                       # doctest: +SKIP
>>> hits = retriever.retrieve("what causes cancer?", k=5)                    # doctest: +SKIP
>>> hits[0][0].doc_id, hits[0][0].scores                                      # doctest: +SKIP
('4983', {'dense': 0.71, 'sparse': 18.2})

A retriever picks the query views each mode needs (see :mod:`hybridsearch.modes`), asks the encoder for exactly
those, searches (the index refuses query views from an encoder that does not match, per
:mod:`hybridsearch.identity`), and passes the first stage's top ``rerank_depth`` to the reranker, if any.

Saved with :meth:`Retriever.save`, an index directory also holds the query encoder (``encoder.json`` and, for
fitted encoders such as BM25, ``encoder-state.npz``) and the retriever's defaults (``retriever.json``: mode,
fusion, candidates), so :meth:`Retriever.load` (and ``hybridsearch search DIR "query"``) needs nothing else.
Rerankers hold connections or models and are not saved: pass ``reranker=`` to :meth:`Retriever.load`.
"""

from __future__ import annotations

import asyncio
import json
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ._atomic import write_text_atomic
from .encoders.base import Encoder, check_texts
from .errors import ConfigError, InputError, positive_int
from .fusion import DEFAULT_FUSION, Fusion, parse_fusion
from .hits import Hits
from .modes import FIRST_STAGE, check_mode, query_views

if TYPE_CHECKING:
    from .index.hybrid import HybridIndex
    from .rerankers.base import Reranker

__all__ = ["RETRIEVER_FILE", "Retriever", "encoder_spec_of", "read_retriever_config", "write_retriever_config"]

RETRIEVER_FILE = "retriever.json"
_FORMAT = "hybridsearch-retriever"
_VERSION = 1
DEFAULT_CANDIDATES = 100
"""Rows each first stage proposes in fused and multi-vector modes (the paper uses 200 for multi-vector, 1000 for
dense+sparse)."""


class Retriever:
    """Encode queries, search an index, optionally rerank: ``retrieve(texts) -> Hits``.

    Parameters
    ----------
    encoder:
        The query encoder: the index's own, or one whose views are declared interchangeable with it
        (e.g. Workers AI dense queries on a local bge-m3 index, see :mod:`hybridsearch.identity`).
    index:
        A :class:`~hybridsearch.index.HybridIndex` (or a directory to load one from).
    mode:
        Default mode: ``"dense"``, ``"sparse"``, ``"multivector"``, ``"dense+sparse"``, ``"all"`` or ``"hybrid"``
        (see :mod:`hybridsearch.modes`). ``None``: ``"hybrid"`` when the encoder and the index share both
        first-stage views, else the one view they share.
    fusion:
        Default fusion spec (:mod:`hybridsearch.fusion`), :data:`~hybridsearch.fusion.DEFAULT_FUSION` (RRF,
        k = 60) unless given.
    reranker:
        A :class:`~hybridsearch.rerankers.Reranker` applied to the first stage's top ``rerank_depth``.
    candidates:
        Rows each first stage proposes in fused and multi-vector modes (default 100).
    rerank_depth:
        First-stage results handed to the reranker per query (default 100; never fewer than ``k``).
    """

    def __init__(
        self,
        encoder: Encoder,
        index: HybridIndex | str | os.PathLike[str],
        *,
        mode: str | None = None,
        fusion: str | Fusion = DEFAULT_FUSION,
        reranker: Reranker | None = None,
        candidates: int = DEFAULT_CANDIDATES,
        rerank_depth: int = 100,
    ) -> None:
        from .index.hybrid import HybridIndex
        from .rerankers.base import Reranker

        if not isinstance(encoder, Encoder):
            raise ConfigError(f"encoder must be an Encoder (e.g. get_encoder('bge-m3')), got {type(encoder).__name__}")
        if isinstance(index, (str, os.PathLike)):
            index = HybridIndex.load(index)
        if not isinstance(index, HybridIndex) and not (hasattr(index, "search") and hasattr(index, "modes")):
            # a ShardedIndex (hybridsearch.scale) or a vector database (hybridsearch.backends) searches the same way
            raise ConfigError(f"index must be a HybridIndex, an index directory, a ShardedIndex or a vector database, got {type(index).__name__}")
        if reranker is not None and not isinstance(reranker, Reranker):
            raise ConfigError(f"reranker must be a Reranker (hybridsearch.rerankers), got {type(reranker).__name__}")
        self.encoder = encoder
        self.index = index
        self.mode = None if mode is None else check_mode(mode)
        self.fusion = parse_fusion(fusion)
        self.reranker = reranker
        self.candidates = positive_int(candidates, "candidates")
        self.rerank_depth = positive_int(rerank_depth, "rerank_depth")

    def __repr__(self) -> str:
        rr = "" if self.reranker is None else f", reranker={self.reranker!r}"
        return (
            f"Retriever(encoder={self.encoder.info.name!r}, index={self.index!r}, mode={self.mode!r}, "
            f"fusion={str(self.fusion)!r}{rr})"
        )

    # ------------------------------------------------------------------ planning
    def resolve_mode(self, mode: str | None = None) -> str:
        """The mode a call runs: ``mode``, else the default, else ``"hybrid"`` / the one shared view."""
        mode = mode if mode is not None else self.mode
        if mode is not None:
            return check_mode(mode)
        shared = [m for m in FIRST_STAGE if m in self.index.modes and m in self.encoder.supported_outputs]
        if not self.index.modes:
            shared = [m for m in FIRST_STAGE if m in self.encoder.supported_outputs]
        if len(shared) > 1:
            return "hybrid"
        if not shared:
            raise InputError(
                f"the encoder produces {list(self.encoder.supported_outputs)} but the index holds {list(self.index.modes)}: "
                "no first-stage view in common"
            )
        return shared[0]

    def query_views(self, mode: str) -> tuple[str, ...]:
        """The views the encoder is asked for in ``mode``; ConfigError when it cannot produce one the mode needs."""
        held = self.index.modes or self.encoder.supported_outputs
        views = query_views(mode, held)
        if mode == "hybrid" and "multivector" in views and "multivector" not in self.encoder.supported_outputs:
            views = tuple(v for v in views if v != "multivector")  # hybrid without MaxSim is dense+sparse
        missing = [v for v in views if v not in self.encoder.supported_outputs]
        if missing:
            raise ConfigError(
                f"mode {mode!r} needs {', '.join(missing)} query vectors, which {self.encoder.info.name!r} cannot "
                f"produce (it produces {list(self.encoder.supported_outputs)}); pick another mode or encoder"
            )
        return views

    def _plan(self, queries: Any, k: Any, mode: str | None, fusion: Any, candidates: Any, rerank: bool) -> dict[str, Any]:
        texts = check_texts(queries)
        k = positive_int(k, "k")
        m = self.resolve_mode(mode)
        views = self.query_views(m)
        use_reranker = bool(rerank) and self.reranker is not None
        depth = max(k, self.rerank_depth) if use_reranker else k
        return {
            "texts": texts, "k": k, "mode": m, "views": views, "depth": depth, "rerank": use_reranker,
            "fusion": self.fusion if fusion is None else parse_fusion(fusion),
            "candidates": max(self.candidates if candidates is None else positive_int(candidates, "candidates"), depth),
        }  # fmt: skip

    def _search(self, plan: dict[str, Any], flt: Mapping[str, Any] | None, search_options: dict[str, Any]) -> Hits:
        query = self.encoder.encode_queries(plan["texts"], outputs=plan["views"])
        return self.index.search(
            query, k=plan["depth"], mode=plan["mode"], filter=flt, candidates=plan["candidates"], fusion=plan["fusion"],
            **search_options,
        )  # fmt: skip

    # ------------------------------------------------------------------ retrieval
    def retrieve(
        self,
        queries: str | Sequence[str],
        k: int = 10,
        *,
        mode: str | None = None,
        fusion: str | Fusion | None = None,
        filter: Mapping[str, Any] | None = None,  # noqa: A002 - the natural name in a search API
        candidates: int | None = None,
        rerank: bool = True,
        **search_options: Any,
    ) -> Hits:
        """Top-``k`` documents for each query, with text, metadata, each view's score and rank.

        ``queries``: one string or a list. ``mode`` / ``fusion`` / ``candidates`` override the defaults for this
        call; ``filter`` is a metadata filter applied before top-k; ``rerank=False`` skips the reranker.
        ``search_options`` go to :meth:`HybridIndex.search` (``ef_search``, ``nprobe``, ``approximate``).
        Returns :class:`~hybridsearch.hits.Hits` with ``k`` slots per query. Raises InputError for empty
        queries, ConfigError for an unknown mode or one the encoder cannot serve, IndexMismatchError when the
        encoder does not match the index.
        """
        plan = self._plan(queries, k, mode, fusion, candidates, rerank)
        hits = self._search(plan, filter, search_options)
        if plan["rerank"]:
            assert self.reranker is not None
            hits = self.reranker.rerank(plan["texts"], hits, k=plan["k"])
        return hits

    async def aretrieve(
        self,
        queries: str | Sequence[str],
        k: int = 10,
        *,
        mode: str | None = None,
        fusion: str | Fusion | None = None,
        filter: Mapping[str, Any] | None = None,  # noqa: A002
        candidates: int | None = None,
        rerank: bool = True,
        **search_options: Any,
    ) -> Hits:
        """The ``async`` twin of :meth:`retrieve`: encoding and search run in a worker thread, the reranker's
        :meth:`~hybridsearch.rerankers.Reranker.arerank` on the event loop."""
        plan = self._plan(queries, k, mode, fusion, candidates, rerank)
        hits = await asyncio.to_thread(self._search, plan, filter, search_options)
        if plan["rerank"]:
            assert self.reranker is not None
            hits = await self.reranker.arerank(plan["texts"], hits, k=plan["k"])
        return hits

    # ------------------------------------------------------------------ persistence
    def config(self) -> dict[str, Any]:
        """The defaults :meth:`save` records: mode, fusion spec, candidates, rerank depth."""
        return {"mode": self.mode, "fusion": str(self.fusion), "candidates": self.candidates, "rerank_depth": self.rerank_depth}

    def save(
        self, path: str | os.PathLike[str] | None = None, *, encoder_spec: str | None = None,
        encoder_options: Mapping[str, Any] | None = None,
    ) -> Path:
        """Save the index (crash-safe, see ``HybridIndex.save``), the query encoder and these defaults.

        The encoder is recorded as a registry spec plus options (see :func:`encoder_spec`); pass
        ``encoder_spec`` / ``encoder_options`` for an encoder configured in a way the spec cannot express.
        API tokens are never written. Returns the directory.
        """
        from .encoders.stored import save_encoder

        if encoder_spec is None:
            spec, options = encoder_spec_of(self.encoder)
            if encoder_options is not None:
                options = dict(encoder_options)
        else:
            spec, options = encoder_spec, dict(encoder_options or {})
        out = self.index.save(path)
        save_encoder(out, spec, options, self.encoder)
        write_retriever_config(out, **self.config())
        return out

    @classmethod
    def load(
        cls,
        path: str | os.PathLike[str],
        *,
        encoder: Encoder | None = None,
        reranker: Reranker | None = None,
        mmap: bool = True,
        **overrides: Any,
    ) -> Retriever:
        """Open an index directory with its recorded query encoder and defaults, in one call.

        ``encoder`` replaces the recorded one (e.g. a Workers AI encoder for a local bge-m3 index); ``overrides``
        (``mode``, ``fusion``, ``candidates``, ``rerank_depth``) replace recorded defaults. A directory without
        ``retriever.json`` (built by ``hybridsearch index`` before it existed, or by ``HybridIndex.save``) opens
        with the library defaults. Raises ConfigError when no encoder is recorded and none is given.
        """
        from .encoders.stored import load_encoder
        from .index.hybrid import HybridIndex

        directory = Path(path)
        index = HybridIndex.load(directory, mmap=mmap)
        config = read_retriever_config(directory)
        unknown = set(overrides) - {"mode", "fusion", "candidates", "rerank_depth"}
        if unknown:
            raise ConfigError(f"unknown Retriever option(s) {sorted(unknown)}; use mode, fusion, candidates, rerank_depth")
        config.update({key: v for key, v in overrides.items() if v is not None})
        enc = encoder if encoder is not None else load_encoder(directory)
        return cls(enc, index, reranker=reranker, **config)


def write_retriever_config(
    directory: str | os.PathLike[str], *, mode: str | None = None, fusion: str | Fusion | None = None,
    candidates: int | None = None, rerank_depth: int | None = None,
) -> Path:
    """Record retriever defaults in ``directory/retriever.json`` (checked first: unknown modes or fusions raise)."""
    body = {
        "format": _FORMAT, "version": _VERSION, "mode": None if mode is None else check_mode(mode),
        "fusion": None if fusion is None else str(parse_fusion(fusion)),
        "candidates": None if candidates is None else positive_int(candidates, "candidates"),
        "rerank_depth": None if rerank_depth is None else positive_int(rerank_depth, "rerank_depth"),
    }  # fmt: skip
    path = Path(directory) / RETRIEVER_FILE
    write_text_atomic(path, json.dumps(body, indent=2) + "\n")
    return path


def read_retriever_config(directory: str | os.PathLike[str]) -> dict[str, Any]:
    """The defaults recorded in ``directory/retriever.json`` (``{}`` when there is none)."""
    path = Path(directory) / RETRIEVER_FILE
    if not path.is_file():
        return {}
    try:
        body = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise ConfigError(f"{path} is not readable JSON ({exc}); delete it or save the retriever again") from None
    if not isinstance(body, dict) or body.get("format") != _FORMAT:
        raise ConfigError(f"{path} is not a hybridsearch retriever file")
    if int(body.get("version", 0)) > _VERSION:
        raise ConfigError(f"{path} was written by a newer hybridsearch (version {body['version']}); upgrade to read it")
    out = {key: body[key] for key in ("mode", "fusion", "candidates", "rerank_depth") if body.get(key) is not None}
    return out


def encoder_spec_of(encoder: Encoder) -> tuple[str, dict[str, Any]]:
    """The registry spec and options that recreate ``encoder`` (see :func:`hybridsearch.encoders.get_encoder`).

    Covers the registered encoders with their model choice; composite encoders as ``"dense=minilm,sparse=bm25"``.
    Fitted state (BM25 statistics) is saved separately. Raises ConfigError for an encoder it cannot describe.
    """
    from .encoders import ENCODERS, CompositeEncoder

    if isinstance(encoder, CompositeEncoder):
        parts = []
        for view, part in encoder.parts.items():
            spec, options = encoder_spec_of(part)
            if options:
                raise ConfigError(
                    f"the {view} part of this composite encoder has options ({options}) a composite spec cannot record; "
                    "pass encoder_spec= and encoder_options= to save()"
                )
            parts.append(f"{view}={spec}")
        return ",".join(parts), {}
    name = getattr(encoder, "name", "")
    if name not in ENCODERS:
        raise ConfigError(
            f"cannot record encoder {type(encoder).__name__} ({name!r} is not a registered encoder name); "
            "pass encoder_spec= (and encoder_options=) to save()"
        )
    options: dict[str, Any] = {}
    if name == "bge-m3" and encoder.model_id != "BAAI/bge-m3":  # type: ignore[attr-defined]
        options["model"] = encoder.model_id  # type: ignore[attr-defined]
    elif name == "minilm" and encoder.model_id != "sentence-transformers/all-MiniLM-L6-v2":  # type: ignore[attr-defined]
        options["model"] = encoder.model_id  # type: ignore[attr-defined]
    elif name == "workers-ai":
        from .encoders.workers_ai import endpoint_fingerprint
        from .workers_ai import DEFAULT_API_BASE, DEFAULT_MODEL

        client = encoder.client  # type: ignore[attr-defined]
        if client.model != DEFAULT_MODEL:
            options["model"] = client.model
        base = client.run_url[: -len(client.model) - 1]
        if not base.startswith(DEFAULT_API_BASE + "/accounts/"):
            options["base_url"] = base  # a self-hosted server; Cloudflare's URL is rebuilt from the account id
        if encoder.info.fingerprint != endpoint_fingerprint(client.model, client.run_url):
            options["fingerprint"] = encoder.info.fingerprint
    return name, options


