"""hybridsearch doctor, and import errors that tell a missing package from an installed one that fails to import."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from importlib.metadata import version
from pathlib import Path

import pytest

from hybridsearch._optional import require, supported_ranges
from hybridsearch.errors import IncompatibleDependencyError, MissingDependencyError


def run_cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "hybridsearch.cli", *args], capture_output=True, text=True, timeout=300
    )


@pytest.fixture(scope="module")
def doctor_json() -> dict:
    res = run_cli("doctor", "--json")
    assert res.returncode == 0, res.stdout + res.stderr
    return json.loads(res.stdout)


def test_doctor_reports_versions_extras_data_numba_gpu(doctor_json):
    rep = doctor_json
    assert rep["python"] == sys.version.split()[0]
    deps = {d["name"]: d for d in rep["dependencies"]}
    assert deps["numpy"]["installed"] == version("numpy") and deps["numpy"]["in_range"]
    assert deps["transformers"]["extra"] == "model" and "<5.24" in deps["transformers"]["range"]
    assert deps["FlagEmbedding"]["installed"] == version("FlagEmbedding")
    assert set(rep["extras"]) >= {"model", "lexical", "server", "eval", "scale"}
    assert rep["extras"]["model"]["ok"], rep["extras"]["model"]
    assert rep["data"]["datasets"]["scifact"] is True
    assert rep["data"]["tokenizer"].endswith("tokenizer.json")
    assert rep["numba"]["installed"] and rep["numba"]["kernels"] and rep["numba"]["jit"]
    assert "nvidia_smi" in rep["gpu"]
    assert rep["lock"] and all(d["matches_lock"] for d in rep["dependencies"] if d["installed"]), [
        d for d in rep["dependencies"] if d["installed"] and not d["matches_lock"]
    ]


def test_doctor_text_output():
    res = run_cli("doctor", "--no-imports")
    assert res.returncode == 0, res.stderr
    for part in ("hybridsearch ", "python ", "dependencies", "transformers", "XLM-R tokenizer", "numba ", "gpu "):
        assert part in res.stdout


def test_missing_package_is_a_missing_dependency():
    with pytest.raises(MissingDependencyError, match=r"pip install 'hybridsearch\[eval\]'") as info:
        require("hybridsearch_no_such_module", extra="eval")
    assert not isinstance(info.value, IncompatibleDependencyError)


def _broken_package(tmp_path: Path, name: str, body: str) -> None:
    pkg = tmp_path / name
    pkg.mkdir()
    (pkg / "__init__.py").write_text(textwrap.dedent(body), encoding="utf-8")


def test_installed_package_that_fails_to_import_names_the_versions(tmp_path, monkeypatch):
    """A real import of a module that the installed transformers does not have (as FlagEmbedding 1.4.2 under 5.24)."""
    monkeypatch.syspath_prepend(str(tmp_path))
    _broken_package(tmp_path, "brokenpkg", "from transformers.modeling_attn_mask_gone import AttentionMaskConverter\n")
    with pytest.raises(IncompatibleDependencyError) as info:
        require("brokenpkg", extra="model")
    err = info.value
    msg = str(err)
    assert "brokenpkg is installed but fails to import" in msg
    assert "transformers.modeling_attn_mask_gone" in msg
    assert f"transformers {version('transformers')}" in msg
    assert supported_ranges()["transformers"] in msg
    assert "Fix:" in msg and "hybridsearch doctor" in msg
    assert err.versions["transformers"] == version("transformers")
    assert not isinstance(err, MissingDependencyError)


def test_import_that_raises_something_else_is_reported_too(tmp_path, monkeypatch):
    monkeypatch.syspath_prepend(str(tmp_path))
    _broken_package(tmp_path, "brokenpkg2", "raise RuntimeError('compiled against another numpy')\n")
    with pytest.raises(IncompatibleDependencyError, match="RuntimeError: compiled against another numpy"):
        require("brokenpkg2", extra="model")


def test_flagembedding_with_a_transformers_that_lacks_its_module():
    """The reported failure, reproduced on the real packages: transformers without modeling_attn_mask_utils.

    ``sys.modules[name] = None`` is Python's documented way to make ``import name`` fail (as a removed module does).
    """
    code = textwrap.dedent(
        """
        import sys
        sys.modules["transformers.modeling_attn_mask_utils"] = None
        from hybridsearch._optional import require
        from hybridsearch.errors import IncompatibleDependencyError
        try:
            require("FlagEmbedding", extra="model")
        except IncompatibleDependencyError as exc:
            print(type(exc).__name__, exc)
        """
    )
    res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    out = res.stdout
    assert out.startswith("IncompatibleDependencyError FlagEmbedding is installed but fails to import"), (
        out + res.stderr
    )
    assert f"FlagEmbedding {version('FlagEmbedding')}" in out
    assert f"transformers {version('transformers')}" in out
    assert "not installed" not in out.split("Installed:")[0]
