"""Each benchmark owns one marked section of benchmarks/README.md and replaces only that section."""

from __future__ import annotations

from pathlib import Path

from hybridsearch._atomic import write_text_atomic


def replace_section(path: Path, start: str, end: str, section: str) -> None:
    """Replace the text between ``start`` and ``end`` (markers included in ``section``), or append it."""
    text = path.read_text(encoding="utf-8") if path.exists() else "# Benchmarks\n"
    if start in text and end in text:
        a, b = text.index(start), text.index(end) + len(end)
        text = text[:a] + section + text[b:]
    else:
        text = text.rstrip("\n") + "\n\n" + section + "\n"
    write_text_atomic(path, text)
