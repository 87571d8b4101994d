"""Past one machine: distributed corpus encoding on Ray and sharded search with global fusion.

- :func:`encode_corpus` / ``hybridsearch encode-corpus``: jsonl/parquet shards in, a folder of encoded shards out
  (resumable, retried, BM25 statistics merged across shards); :func:`build_index` turns it into a ``HybridIndex``.
- :class:`CorpusStatistics`: BM25 statistics gathered per shard and merged exactly.
"""

from .corpus_stats import CorpusStatistics
from .encode import EncodeSummary, build_index, encode_corpus, ray_session

__all__ = ["CorpusStatistics", "EncodeSummary", "build_index", "encode_corpus", "ray_session"]
