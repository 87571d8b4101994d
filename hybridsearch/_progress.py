"""Progress bars for long work: tqdm when installed, otherwise a plain line on stderr."""

from __future__ import annotations

import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager

__all__ = ["progress"]


class _Plain:
    def __init__(self, total: int, desc: str, unit: str) -> None:
        self.total, self.desc, self.unit, self.n = total, desc, unit, 0
        self.t0 = self.last = time.perf_counter()

    def update(self, n: int = 1) -> None:
        self.n += n
        now = time.perf_counter()
        if now - self.last >= 1.0 or self.n >= self.total:
            self.last = now
            rate = self.n / max(now - self.t0, 1e-9)
            sys.stderr.write(f"\r{self.desc}: {self.n}/{self.total} {self.unit} ({rate:,.0f} {self.unit}/s)")
            if self.n >= self.total:
                sys.stderr.write("\n")
            sys.stderr.flush()

    def close(self) -> None:
        pass


class _Null:
    def update(self, n: int = 1) -> None:
        pass

    def close(self) -> None:
        pass


@contextmanager
def progress(total: int, desc: str, *, unit: str = "texts", enabled: bool = True) -> Iterator[_Plain | _Null]:
    """``with progress(n, "encoding") as bar: bar.update(batch)``; silent when ``enabled`` is false."""
    if not enabled:
        yield _Null()
        return
    try:
        from tqdm.auto import tqdm
    except ImportError:
        bar = _Plain(total, desc, unit)
    else:
        bar = tqdm(total=total, desc=desc, unit=unit, dynamic_ncols=True)
    try:
        yield bar
    finally:
        bar.close()
