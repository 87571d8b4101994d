"""The served index: searches run concurrently with ingest and commits, on the index's point-in-time snapshots.

A search reads the newest published snapshot of the index and takes no lock: it sees all of an upsert or delete
or none of it, never a half-applied change, and keeps running while a commit is written (see "Readers, writers and
persistence" in the README). Upserts and deletes are serialised by the index itself; documents are encoded before
they reach it. The policy commits every ``commit_every`` changed documents, every ``commit_interval`` seconds when
something changed, and on shutdown.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from ..encoders.base import Encoder
from ..hits import Hits
from ..index import HybridIndex
from ..retriever import Retriever, read_retriever_config
from ..types import Encoded

__all__ = ["IndexStore"]


class IndexStore:
    """A loaded index directory, its query/document encoder, and the commit policy."""

    def __init__(
        self, path: str | Path, encoder: Encoder, *, commit_every: int, commit_interval: float, reranker: Any = None,
        rerank_depth: int | None = None,
    ) -> None:
        self.path = Path(path)
        self.index = HybridIndex.load(self.path)
        self.encoder = encoder
        # The retriever holds the defaults recorded with the index (mode, fusion, candidates, rerank depth) and the
        # reranker; the server encodes queries itself (micro-batched) and searches the index's snapshots.
        # ``rerank_depth`` replaces the recorded depth.
        settings = read_retriever_config(self.path)
        if rerank_depth is not None:
            settings["rerank_depth"] = rerank_depth
        self.retriever = Retriever(encoder, self.index, reranker=reranker, **settings)
        self.commit_every = commit_every
        self.commit_interval = commit_interval
        self.uncommitted = 0
        self.last_commit = time.monotonic()
        self._count_lock = threading.Lock()  # the uncommitted counter, updated by concurrent ingest requests
        self._commit_lock = threading.Lock()

    @property
    def outputs(self) -> tuple[str, ...]:
        """The views the index holds, which queries and documents are encoded into."""
        return tuple(self.index.modes)

    def __len__(self) -> int:
        return len(self.index)

    def search(self, query: Encoded, **options: Any) -> Hits:
        """Search the newest snapshot; never waits for a writer or a commit."""
        return self.index.search(query, **options)

    def upsert(self, ids: Sequence[str], encoded: Encoded, texts: Sequence[str], metadata: Sequence[Mapping[str, Any] | None]) -> None:
        """Add or replace documents; raises the index's InputError subclasses and then changes nothing."""
        self.index.upsert(ids, encoded, texts=texts, metadata=metadata)
        with self._count_lock:
            self.uncommitted += len(ids)
        if self.uncommitted >= self.commit_every:
            self.commit()

    def delete(self, ids: Sequence[str]) -> None:
        """Delete documents; UnknownIdError (nothing deleted) when any id is missing."""
        self.index.delete(ids)
        with self._count_lock:
            self.uncommitted += len(set(ids))
        if self.uncommitted >= self.commit_every:
            self.commit()

    def commit(self) -> bool:
        """Save the index if anything changed since the last commit; return whether it saved."""
        # Searches go on during the save (they read the published snapshot); changes made while it is written
        # wait for the index's own lock, and are counted towards the next commit.
        with self._commit_lock:
            self.last_commit = time.monotonic()
            with self._count_lock:
                pending, self.uncommitted = self.uncommitted, 0
            if not pending:
                return False
            try:
                self.index.save(self.path)
            except BaseException:
                with self._count_lock:
                    self.uncommitted += pending
                raise
            return True

    def commit_due(self) -> bool:
        return bool(self.uncommitted) and time.monotonic() - self.last_commit >= self.commit_interval
