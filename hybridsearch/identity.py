"""Which encoders produce interchangeable views: the one place that says so.

An index records the :class:`~hybridsearch.types.EncoderInfo` of its documents; a query is accepted view by view.
A query view matches an index view when

1. both come from the same encoder (same name, model id and fingerprint), or
2. both belong to the same declared **view family** below: the same model's view served by different runtimes.

=================  ========  =====================================================================================
family             view      members
=================  ========  =====================================================================================
``BAAI/bge-m3``    dense     local bge-m3 loaded by hub id ``BAAI/bge-m3`` (any revision: ``fingerprint`` not
                             checked); Workers AI ``@cf/baai/bge-m3`` on Cloudflare (the Cloudflare endpoint
                             fingerprint of :func:`~hybridsearch.encoders.workers_ai.endpoint_fingerprint`).
=================  ========  =====================================================================================

Workers AI serves only bge-m3's dense view (CLS vector, L2-normalised; fp16 rounding differs by ~1e-3), so only
``dense`` is declared; sparse and multi-vector views still need the local model. A self-hosted server speaking the
Workers AI contract joins the family when its encoder is created with the Cloudflare fingerprint
(``WorkersAIEncoder(base_url=..., fingerprint=cloudflare_fingerprint())``), or by :func:`declare_same_view`.

Per-view identity of a composite encoder (e.g. MiniLM dense + BM25 sparse) comes from ``EncoderInfo.parts``.
A real mismatch (MiniLM queries on a bge-m3 index) raises :class:`~hybridsearch.errors.IndexMismatchError`.
"""

from __future__ import annotations

import functools
from collections.abc import Sequence
from dataclasses import dataclass

from .errors import ConfigError, IndexMismatchError
from .types import MODES, EncoderInfo

__all__ = ["check_views", "cloudflare_fingerprint", "declare_same_view", "same_view", "view_info", "view_family"]

WORKERS_AI_MODEL = "@cf/baai/bge-m3"
_CLOUDFLARE_RUN_URL = "https://api.cloudflare.com/client/v4/accounts/-/ai/run"


@functools.lru_cache(maxsize=1)
def cloudflare_fingerprint(model: str = WORKERS_AI_MODEL) -> str:
    """The fingerprint a :class:`~hybridsearch.encoders.workers_ai.WorkersAIEncoder` has on Cloudflare."""
    from .encoders.workers_ai import endpoint_fingerprint

    return endpoint_fingerprint(model, f"{_CLOUDFLARE_RUN_URL}/{model}")


@dataclass(frozen=True)
class _Member:
    family: str
    view: str
    name: str
    model_id: str
    fingerprint: str | None  # None: any fingerprint

    def matches(self, info: EncoderInfo, view: str) -> bool:
        if view != self.view or info.name != self.name or info.model_id != self.model_id:
            return False
        if self.fingerprint is None:
            return True
        return info.fingerprint == self.fingerprint


_EXTRA: list[_Member] = []


def _members() -> list[_Member]:
    return [
        _Member("BAAI/bge-m3", "dense", "bge-m3", "BAAI/bge-m3", None),
        _Member("BAAI/bge-m3", "dense", "workers-ai", WORKERS_AI_MODEL, cloudflare_fingerprint()),
        *_EXTRA,
    ]


def declare_same_view(view: str, family: str, *infos: EncoderInfo) -> None:
    """Declare that ``view`` of each encoder in ``infos`` is the same model's view (joins ``family``).

    Use it for a self-hosted deployment of a model the table above knows, e.g. a private Workers AI compatible
    server running bge-m3: ``declare_same_view("dense", "BAAI/bge-m3", encoder.info)``.
    """
    if view not in MODES:
        raise ConfigError(f"view must be one of {list(MODES)}, got {view!r}")
    if not isinstance(family, str) or not family:
        raise ConfigError("family must be a non-empty name such as 'BAAI/bge-m3'")
    for info in infos:
        if not isinstance(info, EncoderInfo):
            raise ConfigError(f"declare_same_view takes EncoderInfo objects (encoder.info), got {type(info).__name__}")
        _EXTRA.append(_Member(family, view, info.name, info.model_id, info.fingerprint))


def view_info(info: EncoderInfo, view: str) -> EncoderInfo:
    """The encoder that produced ``view``: the composite's part for that view, else ``info`` itself."""
    if info.parts and view in info.parts:
        return info.parts[view]
    return info


def view_family(info: EncoderInfo, view: str) -> str | None:
    """The declared family of ``info``'s ``view``, or ``None``."""
    part = view_info(info, view)
    for m in _members():
        if m.matches(part, view):
            return m.family
    return None


def same_view(a: EncoderInfo, b: EncoderInfo, view: str) -> bool:
    """Whether ``a``'s and ``b``'s ``view`` are interchangeable (same encoder or same declared family)."""
    pa, pb = view_info(a, view), view_info(b, view)
    if pa == pb:
        return True
    fa = view_family(a, view)
    return fa is not None and fa == view_family(b, view)


def check_views(held: EncoderInfo | None, given: EncoderInfo | None, views: Sequence[str], what: str) -> None:
    """Raise IndexMismatchError unless ``given``'s ``views`` match the index's (``held``). ``None``: not checked."""
    if held is None or given is None:
        return  # hand-built Encoded objects carry no identity; widths are still checked
    if held == given:
        return
    bad = [v for v in views if not same_view(held, given, v)]
    if not bad:
        return
    v = bad[0]
    g, h = view_info(given, v), view_info(held, v)
    raise IndexMismatchError(
        f"the {what}' {', '.join(bad)} view(s) were encoded by {g.name!r} (model {g.model_id!r}, fingerprint "
        f"{g.fingerprint!r}) but this index holds that view from {h.name!r} (model {h.model_id!r}, fingerprint "
        f"{h.fingerprint!r}); encode with the index's encoder (same weights or fitted state) or an encoder declared "
        "interchangeable for that view in hybridsearch.identity"
    )
