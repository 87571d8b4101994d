"""The notebooks run top to bottom with the public API (their code cells, executed in order)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

NOTEBOOKS = sorted((Path(__file__).resolve().parents[1] / "notebooks").glob("*.ipynb"))


@pytest.mark.parametrize("path", NOTEBOOKS, ids=[p.name for p in NOTEBOOKS])
def test_notebook_runs(path: Path) -> None:
    nb = json.loads(path.read_text(encoding="utf-8"))
    namespace: dict = {}
    for cell in nb["cells"]:
        if cell["cell_type"] == "code":
            exec(compile("".join(cell["source"]), f"{path.name}", "exec"), namespace)
    assert namespace  # every notebook defines something
    if "run" in namespace and "ds" in namespace:
        from hybridsearch import evaluate

        assert evaluate(namespace["ds"].qrels, namespace["run"], ["nDCG@10"])["nDCG@10"] > 0.6
