"""Vector databases behind the index API: Milvus (pymilvus, milvus-lite) and Qdrant (qdrant-client).

Both take the same ``Encoded`` documents, the same metadata filters (translated to each engine's language, see
:mod:`.filters`) and answer ``search`` with the same ``Hits`` as :class:`~hybridsearch.index.HybridIndex`;
``from_index`` migrates an existing index without re-encoding (through :mod:`hybridsearch.index.export`).
"""

from .base import VectorDatabase, doc_key
from .milvus import MilvusDatabase
from .qdrant import QdrantDatabase

__all__ = ["MilvusDatabase", "QdrantDatabase", "VectorDatabase", "doc_key"]
