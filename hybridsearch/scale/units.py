"""The output folder of a distributed encoding run: one encoded shard per work unit, written crash-safely.

Layout of ``OUT``::

    run.json                  the plan: inputs (path, size, rows), units, encoder spec and options, views
    encoder.json              the encoder spec, read by :func:`hybridsearch.encoders.stored.load_encoder`
    encoder-state.npz         merged BM25 statistics, when the encoder has a fitted part
    units/NAME.npz            the unit's :class:`~hybridsearch.types.Encoded` bundle
    units/NAME.docs.jsonl     one ``{"id", "text", "metadata"}`` line per row, in the bundle's row order
    units/NAME.ids.txt        the same ids, one JSON string per line (for the duplicate check without reading texts)
    units/NAME.done.json      written last: the unit is complete (documents, tokens, seconds, attempts)
    summary.json              the last run's summary

Every file is written to a temporary name and renamed (see :mod:`hybridsearch._atomic`), and a unit counts as
finished only once its ``done`` marker exists, so a run killed at any point leaves finished units intact and
unfinished ones absent; a restarted run encodes exactly the units without a marker.
"""

from __future__ import annotations

import io
import json
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .._atomic import write_text_atomic
from ..errors import IndexCorruptedError, InputError
from ..types import Encoded
from .sources import DocumentRows, Unit

__all__ = ["EncodedShard", "RunFolder"]

RUN_FILE = "run.json"
SUMMARY_FILE = "summary.json"
UNITS_DIR = "units"
FORMAT = "hybridsearch.encoded-corpus"
VERSION = 1


@dataclass
class EncodedShard:
    """One finished unit: its documents' ids, texts and metadata and their encodings, row-aligned."""

    name: str
    ids: list[str]
    texts: list[str]
    metadata: list[dict[str, Any]]
    encoded: Encoded

    def __len__(self) -> int:
        return len(self.ids)


class RunFolder:
    """Reads and writes the files of one output folder (see the module docstring)."""

    def __init__(self, root: str | Path) -> None:
        self.root = Path(root)
        self.units_dir = self.root / UNITS_DIR

    # ------------------------------------------------------------------ plan
    def read_plan(self) -> dict[str, Any] | None:
        path = self.root / RUN_FILE
        if not path.is_file():
            return None
        try:
            plan = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, ValueError) as exc:
            raise IndexCorruptedError(f"{path} is not readable: {exc}") from None
        if not isinstance(plan, dict) or plan.get("format") != FORMAT:
            raise InputError(f"{self.root} is not an encoded-corpus folder ({RUN_FILE} is something else)")
        if int(plan.get("version", 0)) > VERSION:
            raise InputError(f"{self.root} was written by a newer hybridsearch; upgrade to read it")
        return plan

    def write_plan(self, plan: dict[str, Any]) -> None:
        self.units_dir.mkdir(parents=True, exist_ok=True)
        write_text_atomic(self.root / RUN_FILE, json.dumps({"format": FORMAT, "version": VERSION, **plan}, indent=1) + "\n")

    def units(self) -> list[Unit]:
        plan = self.read_plan()
        if plan is None:
            raise InputError(f"{self.root} holds no encoded corpus ({RUN_FILE} is missing); run encode-corpus first")
        return [Unit.from_dict(u) for u in plan["units"]]

    # ------------------------------------------------------------------ units
    def _paths(self, name: str) -> tuple[Path, Path, Path]:
        base = self.units_dir / name
        return base.with_name(name + ".npz"), base.with_name(name + ".docs.jsonl"), base.with_name(name + ".done.json")

    def read_ids(self, name: str) -> list[str]:
        """The ids of a finished unit, in row order."""
        path = self.units_dir / (name + ".ids.txt")
        if path.is_file():
            return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()]
        return self.read_unit(name).ids

    def is_done(self, name: str) -> bool:
        npz, docs, done = self._paths(name)
        return done.is_file() and npz.is_file() and docs.is_file()

    def done_record(self, name: str) -> dict[str, Any]:
        return json.loads(self._paths(name)[2].read_text(encoding="utf-8"))

    def write_unit(self, name: str, docs: DocumentRows, encoded: Encoded, record: dict[str, Any]) -> None:
        """Write a finished unit: bundle and documents first, the ``done`` marker last."""
        if len(encoded) != len(docs):
            raise InputError(f"unit {name}: {len(encoded)} encoded rows for {len(docs)} documents")
        npz, docs_path, done = self._paths(name)
        buf = io.StringIO()
        for i, t, m in zip(docs.ids, docs.texts, docs.metadata, strict=True):
            buf.write(json.dumps({"id": i, "text": t, "metadata": m}, ensure_ascii=False) + "\n")
        write_text_atomic(docs_path, buf.getvalue())
        write_text_atomic(self.units_dir / (name + ".ids.txt"), "".join(json.dumps(i) + "\n" for i in docs.ids))
        encoded.save(npz)
        write_text_atomic(done, json.dumps({"documents": len(docs), **record}) + "\n")

    def read_unit(self, name: str) -> EncodedShard:
        npz, docs_path, _ = self._paths(name)
        if not self.is_done(name):
            raise InputError(f"unit {name} of {self.root} is not finished; run encode-corpus again to complete it")
        encoded = Encoded.load(npz)
        ids: list[str] = []
        texts: list[str] = []
        metas: list[dict[str, Any]] = []
        with open(docs_path, encoding="utf-8") as f:
            for line in f:
                row = json.loads(line)
                ids.append(row["id"])
                texts.append(row["text"])
                metas.append(row["metadata"])
        if len(ids) != len(encoded) or len(ids) != int(self.done_record(name)["documents"]):
            raise IndexCorruptedError(f"unit {name} of {self.root} is damaged: its files disagree on the row count")
        return EncodedShard(name, ids, texts, metas, encoded)

    def shards(self) -> Iterator[EncodedShard]:
        """Every unit in plan order; InputError when a unit is unfinished."""
        units = self.units()
        missing = [u.name for u in units if not self.is_done(u.name)]
        if missing:
            raise InputError(
                f"{len(missing)} of {len(units)} units of {self.root} are unfinished (e.g. {missing[0]}); "
                "run encode-corpus again with the same arguments to complete them"
            )
        for u in units:
            yield self.read_unit(u.name)

    def remove_partial_files(self) -> int:
        """Delete temporary files a killed writer left behind (never a finished file); returns how many."""
        n = 0
        if self.units_dir.is_dir():
            for p in self.units_dir.glob(".*.tmp"):
                p.unlink(missing_ok=True)
                n += 1
        return n

    def write_summary(self, summary: dict[str, Any]) -> None:
        write_text_atomic(self.root / SUMMARY_FILE, json.dumps(summary, indent=1) + "\n")

