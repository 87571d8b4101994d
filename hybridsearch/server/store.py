"""The served index: searches run concurrently, one writer at a time, commits on a policy.

Readers (searches) share the index; a writer (upsert, delete, commit) takes it alone. Documents are encoded before
the lock is taken, so an upsert holds it only for the in-memory change. A commit (:meth:`HybridIndex.save`) holds
it for the save, which may merge document-store parts in memory; searches wait for it. The policy commits every ``commit_every`` changed documents, every ``commit_interval``
seconds when something changed, and on shutdown.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Mapping, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from ..encoders.base import Encoder
from ..hits import Hits
from ..index import HybridIndex
from ..retriever import Retriever, read_retriever_config
from ..types import Encoded

__all__ = ["IndexStore", "RWLock"]


class RWLock:
    """Many readers or one writer; a waiting writer holds back new readers so it cannot starve."""

    def __init__(self) -> None:
        self._cond = threading.Condition()
        self._readers = 0
        self._writer = False
        self._writers_waiting = 0

    @contextmanager
    def read(self) -> Any:
        with self._cond:
            while self._writer or self._writers_waiting:
                self._cond.wait()
            self._readers += 1
        try:
            yield
        finally:
            with self._cond:
                self._readers -= 1
                if not self._readers:
                    self._cond.notify_all()

    @contextmanager
    def write(self) -> Any:
        with self._cond:
            self._writers_waiting += 1
            while self._writer or self._readers:
                self._cond.wait()
            self._writers_waiting -= 1
            self._writer = True
        try:
            yield
        finally:
            with self._cond:
                self._writer = False
                self._cond.notify_all()


class IndexStore:
    """A loaded index directory, its query/document encoder, and the commit policy."""

    def __init__(
        self, path: str | Path, encoder: Encoder, *, commit_every: int, commit_interval: float, reranker: Any = None
    ) -> None:
        self.path = Path(path)
        self.index = HybridIndex.load(self.path)
        self.encoder = encoder
        # The retriever holds the defaults recorded with the index (mode, fusion, candidates, rerank depth) and the
        # reranker; the server encodes queries itself (micro-batched) and searches through this store's lock.
        self.retriever = Retriever(encoder, self.index, reranker=reranker, **read_retriever_config(self.path))
        self.commit_every = commit_every
        self.commit_interval = commit_interval
        self.uncommitted = 0
        self.last_commit = time.monotonic()
        self._lock = RWLock()
        self._commit_lock = threading.Lock()

    @property
    def outputs(self) -> tuple[str, ...]:
        """The views the index holds, which queries and documents are encoded into."""
        return tuple(self.index.modes)

    def __len__(self) -> int:
        return len(self.index)

    def search(self, query: Encoded, **options: Any) -> Hits:
        with self._lock.read():
            return self.index.search(query, **options)

    def upsert(self, ids: Sequence[str], encoded: Encoded, texts: Sequence[str], metadata: Sequence[Mapping[str, Any] | None]) -> None:
        """Add or replace documents; raises the index's InputError subclasses and then changes nothing."""
        with self._lock.write():
            self.index.upsert(ids, encoded, texts=texts, metadata=metadata)
            self.uncommitted += len(ids)
        if self.uncommitted >= self.commit_every:
            self.commit()

    def delete(self, ids: Sequence[str]) -> None:
        """Delete documents; UnknownIdError (nothing deleted) when any id is missing."""
        with self._lock.write():
            self.index.delete(ids)
            self.uncommitted += len(set(ids))
        if self.uncommitted >= self.commit_every:
            self.commit()

    def commit(self) -> bool:
        """Save the index if anything changed since the last commit; return whether it saved."""
        # A save may merge document-store parts in memory, so it excludes searches as well as writers.
        with self._commit_lock, self._lock.write():
            self.last_commit = time.monotonic()
            if not self.uncommitted:
                return False
            self.index.save(self.path)
            self.uncommitted = 0
            return True

    def commit_due(self) -> bool:
        return bool(self.uncommitted) and time.monotonic() - self.last_commit >= self.commit_interval
