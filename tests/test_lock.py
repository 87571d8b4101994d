"""requirements.lock and pyproject.toml agree: every dependency is locked, inside its range, and installed as locked.

The lock is what scripts/setup.sh installs (and so what CI tests). Adding a dependency to pyproject.toml without
running ``bash scripts/lock.sh`` fails here. ``$HYBRIDSEARCH_LOCK`` points the checks at a candidate lock (the
refresh script tests a new lock before writing it).
"""

from __future__ import annotations

import importlib.metadata as metadata
import os
import re
import sys
from pathlib import Path

import pytest
from packaging.markers import default_environment
from packaging.requirements import Requirement
from packaging.version import Version

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - Python 3.10
    import tomli as tomllib

ROOT = Path(__file__).resolve().parents[1]
LOCK = Path(os.environ.get("HYBRIDSEARCH_LOCK") or ROOT / "requirements.lock")


def canonical(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def read_lock(path: Path) -> dict[str, str]:
    pins: dict[str, str] = {}
    for number, raw in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
        line = raw.split("#")[0].strip()
        if not line:
            continue
        m = re.fullmatch(r"([A-Za-z0-9][A-Za-z0-9._-]*)==([A-Za-z0-9.!+_-]+)", line)
        assert m, f"{path.name}:{number}: not an exact pin 'name==version': {raw!r}"
        assert canonical(m.group(1)) not in pins, f"{path.name}:{number}: {m.group(1)} pinned twice"
        pins[canonical(m.group(1))] = m.group(2)
    return pins


def applies(req: Requirement, extras: set[str]) -> bool:
    if req.marker is None:
        return True
    env = default_environment()
    return any(req.marker.evaluate({**env, "extra": e}) for e in (extras or {""}))


def declared() -> list[Requirement]:
    """Core dependencies and every extra's, with self-references (hybridsearch[model,...]) expanded."""
    project = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))["project"]
    reqs = [Requirement(r) for r in project["dependencies"]]
    for items in project["optional-dependencies"].values():
        reqs += [Requirement(r) for r in items if canonical(Requirement(r).name) != "hybridsearch"]
    return [r for r in reqs if applies(r, set())]


@pytest.fixture(scope="module")
def lock() -> dict[str, str]:
    assert LOCK.is_file(), f"{LOCK} is missing: run bash scripts/lock.sh"
    return read_lock(LOCK)


def test_every_declared_dependency_is_locked_inside_its_range(lock):
    problems = []
    for req in declared():
        pin = lock.get(canonical(req.name))
        if pin is None:
            problems.append(f"{req} is not in {LOCK.name}")
        elif req.specifier and not req.specifier.contains(Version(pin), prereleases=True):
            problems.append(f"{req.name}=={pin} in {LOCK.name} is outside pyproject.toml's range {req.specifier}")
    assert not problems, "pyproject.toml and the lock disagree; run bash scripts/lock.sh:\n" + "\n".join(problems)


def test_lock_holds_every_transitive_dependency(lock):
    """Walk the installed dependency graph from hybridsearch's declared requirements: every node is pinned."""
    missing, seen = [], set()
    todo = [(r, set(r.extras)) for r in declared()]
    while todo:
        req, extras = todo.pop()
        key = (canonical(req.name), tuple(sorted(extras)))
        if key in seen:
            continue
        seen.add(key)
        if canonical(req.name) not in lock:
            missing.append(str(req))
            continue
        try:
            requires = metadata.requires(req.name) or []
        except metadata.PackageNotFoundError:
            missing.append(f"{req.name} (locked but not installed)")
            continue
        for sub in map(Requirement, requires):
            if applies(sub, extras):
                todo.append((sub, set(sub.extras)))
    assert not missing, f"not in {LOCK.name} (run bash scripts/lock.sh): {sorted(set(missing))}"


def test_installed_versions_are_the_locked_ones(lock):
    """The environment the suite runs in is the locked set (scripts/setup.sh installs with -c requirements.lock)."""
    wrong = []
    for name, pin in sorted(lock.items()):
        try:
            have = metadata.version(name)
        except metadata.PackageNotFoundError:
            continue  # platform-specific pins (e.g. a package only another OS needs) may be absent
        if Version(have).public != Version(pin).public:
            wrong.append(f"{name}: installed {have}, locked {pin}")
    assert not wrong, "the environment is not the locked set; run bash scripts/setup.sh:\n" + "\n".join(wrong)


def test_known_breaks_are_bounded():
    """transformers 5.24 removed modeling_attn_mask_utils, which FlagEmbedding 1.4.2 imports."""
    transformers = next(r for r in declared() if canonical(r.name) == "transformers")
    assert not transformers.specifier.contains("5.24.0")
    assert transformers.specifier.contains("5.23.0")


def test_read_lock_rejects_loose_pins(tmp_path):
    bad = tmp_path / "lock"
    bad.write_text("numpy>=1.24\n", encoding="utf-8")
    with pytest.raises(AssertionError, match="exact pin"):
        read_lock(bad)
