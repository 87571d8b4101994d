"""Encoders with fitted state (BM25 statistics): fit on a corpus, or load a saved fit.

An encoder is stateful when it has ``fit(texts)``, ``save(path)``, a ``load(path)`` classmethod and an
``is_fitted`` property. Composite encoders forward to their stateful parts.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from ..errors import ConfigError
from .base import Encoder
from .composite import CompositeEncoder

__all__ = ["fit_or_load", "stateful_parts"]


def stateful_parts(encoder: Encoder) -> list[Encoder]:
    """The encoders inside ``encoder`` (itself included) that need fitting."""
    parts = list(dict.fromkeys(encoder.parts.values())) if isinstance(encoder, CompositeEncoder) else [encoder]
    return [p for p in parts if hasattr(p, "fit") and hasattr(p, "is_fitted")]


def fit_or_load(
    encoder: Encoder,
    texts: Sequence[str],
    *,
    state: str | Path | None = None,
    save_state: str | Path | None = None,
    fit: bool = True,
) -> None:
    """Bring every stateful part of ``encoder`` into a fitted state.

    With ``state`` the saved fit is loaded; otherwise the parts are fitted on ``texts`` when ``fit`` is
    true (documents), and an unfitted part with ``fit`` false (queries) is an error.
    """
    parts = stateful_parts(encoder)
    if len(parts) > 1 and (state or save_state):
        raise ConfigError("--state/--save-state support one stateful encoder part; fit each part separately")
    for part in parts:
        if state is not None:
            part.load_state(state)  # type: ignore[attr-defined]
        elif not part.is_fitted:  # type: ignore[attr-defined]
            if not fit:
                raise ConfigError(
                    f"{part.info.name} must be fitted on the corpus before encoding queries; pass --state with the "
                    "statistics saved by --save-state when the corpus was encoded"
                )
            part.fit(texts)  # type: ignore[attr-defined]
        if save_state is not None:
            part.save(save_state)  # type: ignore[attr-defined]
