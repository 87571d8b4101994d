"""Import optional dependencies lazily, with errors that tell a missing package from a broken one.

A package that is not installed raises :class:`~hybridsearch.errors.MissingDependencyError` naming the extra that
provides it. A package that is installed but fails to import (FlagEmbedding 1.4.2 under transformers 5.24, say)
raises :class:`~hybridsearch.errors.IncompatibleDependencyError` naming the packages involved, their installed
versions, the ranges hybridsearch supports and the command that fixes it: reinstalling the extra would change
nothing there.
"""

from __future__ import annotations

import importlib
import importlib.metadata as metadata
import re
from functools import lru_cache
from types import ModuleType

from .errors import IncompatibleDependencyError, MissingDependencyError

__all__ = ["import_failure", "installed_version", "require", "supported_ranges"]


def require(module: str, *, extra: str, package: str | None = None) -> ModuleType:
    """Import ``module`` (a dotted import name).

    Raises:
        MissingDependencyError: ``module`` (or the package it belongs to) is not installed; the message names
            the extra, ``pip install 'hybridsearch[extra]'``.
        IncompatibleDependencyError: it is installed but importing it fails (a dependency of it is missing or
            of an unsupported version, or its import raised); the message names the packages and versions.
    """
    try:
        return importlib.import_module(module)
    except Exception as exc:  # noqa: BLE001 - any failure while importing is reported, typed
        raise import_failure(module, exc, extra=extra, package=package) from exc


def _is_missing(module: str, exc: BaseException) -> bool:
    """True when ``exc`` says ``module`` itself (or a parent package of it) is not installed."""
    if not isinstance(exc, ModuleNotFoundError) or not exc.name:
        return False
    return module == exc.name or module.startswith(exc.name + ".")


@lru_cache(maxsize=1)
def _top_level_to_dists() -> dict[str, list[str]]:
    try:
        return {k: list(v) for k, v in metadata.packages_distributions().items()}
    except Exception:  # noqa: BLE001 - broken metadata must not hide the real error
        return {}


def _distribution_of(module: str) -> str:
    """The distribution that provides import name ``module`` (``FlagEmbedding``, ``Stemmer`` -> ``PyStemmer``)."""
    top = module.split(".")[0]
    dists = _top_level_to_dists().get(top)
    return dists[0] if dists else top


def installed_version(distribution: str) -> str | None:
    """The installed version of ``distribution``, or ``None`` when it is not installed."""
    try:
        return metadata.version(distribution)
    except metadata.PackageNotFoundError:
        return None


def _canonical(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


@lru_cache(maxsize=1)
def supported_ranges() -> dict[str, str]:
    """``{canonical distribution name: version range}`` from hybridsearch's own metadata (every extra).

    Empty when hybridsearch is not installed as a distribution (run from a plain source folder).
    """
    out: dict[str, str] = {}
    try:
        requires = metadata.requires("hybridsearch") or []
    except metadata.PackageNotFoundError:
        return out
    for req in requires:
        spec = req.split(";")[0].strip()
        m = re.match(r"^([A-Za-z0-9][A-Za-z0-9._-]*)\s*(\[[^\]]*\])?\s*(.*)$", spec)
        if not m or _canonical(m.group(1)) == "hybridsearch":
            continue
        rng = m.group(3).strip().strip("()")
        name = _canonical(m.group(1))
        if rng and name not in out:
            out[name] = rng
    return out


def import_failure(
    module: str, exc: BaseException, *, extra: str, package: str | None = None
) -> MissingDependencyError | IncompatibleDependencyError:
    """The typed error for a failed ``import module``; see :func:`require`."""
    if _is_missing(module, exc):
        return MissingDependencyError(
            f"{module} is needed for this feature but is not installed; "
            f"install it with: pip install 'hybridsearch[{extra}]'"
            + (f" (or pip install {package})" if package else "")
        )
    dist = package or _distribution_of(module)
    involved = [dist]
    culprit_name = getattr(exc, "name", None) if isinstance(exc, ImportError) else None
    if culprit_name:
        culprit = _distribution_of(culprit_name)
        if _canonical(culprit) != _canonical(dist):
            involved.append(culprit)
    versions = {d: installed_version(d) for d in involved}
    ranges = supported_ranges()
    supported = {d: ranges[_canonical(d)] for d in involved if _canonical(d) in ranges}
    installed = ", ".join(f"{d} {v}" if v else f"{d} (no installed distribution)" for d, v in versions.items())
    wanted = ", ".join(f"{d}{r}" for d, r in supported.items()) or "see pyproject.toml"
    out_of_range = [d for d in involved if d in supported and not _satisfies(versions[d], supported[d])]
    if out_of_range:
        fix = "pip install " + " ".join(f"'{d}{supported[d]}'" for d in out_of_range)
    else:
        fix = f"pip install --force-reinstall 'hybridsearch[{extra}]'"
    return IncompatibleDependencyError(
        f"{dist} is installed but fails to import ({type(exc).__name__}: {exc}). "
        f"Installed: {installed}. hybridsearch supports: {wanted}. "
        f"Fix: {fix} (in a checkout, bash scripts/setup.sh installs the tested set from requirements.lock); "
        f"`hybridsearch doctor` shows every version.",
        module=module,
        versions=versions,
        supported=supported,
    )


def _satisfies(version: str | None, spec: str) -> bool:
    """Whether ``version`` is inside ``spec``; unknown (no ``packaging``) counts as inside."""
    if version is None:
        return False
    try:
        from packaging.specifiers import InvalidSpecifier, SpecifierSet
        from packaging.version import InvalidVersion, Version
    except ImportError:
        return True
    try:
        return Version(version) in SpecifierSet(spec)
    except (InvalidSpecifier, InvalidVersion):
        return True
