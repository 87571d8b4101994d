"""Import optional dependencies lazily, with an install hint when they are missing."""

from __future__ import annotations

import importlib
from types import ModuleType

from .errors import MissingDependencyError

__all__ = ["require"]


def require(module: str, *, extra: str, package: str | None = None) -> ModuleType:
    """Import ``module`` or raise :class:`MissingDependencyError` naming the extra that provides it."""
    try:
        return importlib.import_module(module)
    except ImportError as exc:
        raise MissingDependencyError(
            f"{module} is needed for this feature but is not installed ({exc}); "
            f"install it with: pip install 'hybridsearch[{extra}]'"
            + (f" (or pip install {package})" if package else "")
        ) from exc
