"""Past one machine: distributed corpus encoding on Ray and sharded search with global fusion.

- :func:`encode_corpus` / ``hybridsearch encode-corpus``: jsonl/parquet shards in, a folder of encoded shards out
  (resumable, retried, BM25 statistics merged across shards); :func:`build_index` turns it into a ``HybridIndex``.
- :class:`CorpusStatistics`: BM25 statistics gathered per shard and merged exactly.
- :class:`ShardedIndex`: an index split into shards served by Ray actors; each view's candidates are fused globally.
"""

from .corpus_stats import CorpusStatistics
from .encode import EncodeSummary, build_index, encode_corpus, ray_session
from .sharded import ShardedIndex

__all__ = ["CorpusStatistics", "EncodeSummary", "ShardedIndex", "build_index", "encode_corpus", "ray_session"]
