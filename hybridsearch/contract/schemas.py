"""The request and response bodies as pydantic models: validation for the ``/v1`` routes, and the OpenAPI document.

The Workers AI bodies mirror the model's JSON Schema (§2, §3): extra keys are allowed in requests, as Cloudflare
allows them; the server checks them with :func:`~hybridsearch.contract.workers_ai.classify_input`, which words
its errors the way Cloudflare does. The ``/v1/embeddings`` body is OpenAI's; ``/v1/search`` and
``/v1/documents`` are this library's own and refuse unknown fields.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field

__all__ = [
    "AsyncResult",
    "BatchDone",
    "BatchInput",
    "BulkDeleteRequest",
    "CommitResponse",
    "ContextsEmbeddingOutput",
    "DeleteResponse",
    "Document",
    "EmbeddingItem",
    "EmbeddingOutput",
    "EmbeddingsRequest",
    "EmbeddingsResponse",
    "ErrorEnvelope",
    "ErrorItem",
    "PendingResult",
    "PollInput",
    "QueryContextsInput",
    "QueryOutput",
    "SearchHit",
    "SearchRequest",
    "SearchResponse",
    "SuccessEnvelope",
    "TextInput",
    "UpsertRequest",
    "UpsertResponse",
]

NonEmpty = Annotated[str, Field(min_length=1, pattern=r"\S", description="at least one non-whitespace character")]


class _Open(BaseModel):
    model_config = ConfigDict(extra="allow")


class _Closed(BaseModel):
    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)


# --------------------------------------------------------------------------------------- Workers AI in
class ContextItem(_Open):
    text: NonEmpty


class QueryContextsInput(_Open):
    """Form A: score ``contexts`` against ``query``, or embed them when ``query`` is left out."""

    query: NonEmpty | None = None
    contexts: list[ContextItem]
    truncate_inputs: bool = False
    external_reference: str | None = Field(None, description="batch requests only: echoed in the result")


class TextInput(_Open):
    """Form B: embed one text or up to 100."""

    text: NonEmpty | Annotated[list[NonEmpty], Field(min_length=1, max_length=100)]
    truncate_inputs: bool = False
    external_reference: str | None = Field(None, description="batch requests only: echoed in the result")


class BatchInput(_Open):
    """Form C: a batch for the async queue (``?queueRequest=true``)."""

    requests: Annotated[list[QueryContextsInput | TextInput], Field(min_length=1)]


class PollInput(_Open):
    """Poll a queued batch by the id its submit returned."""

    request_id: NonEmpty


# -------------------------------------------------------------------------------------- Workers AI out
class ScoreItem(BaseModel):
    id: int
    score: float


class QueryOutput(BaseModel):
    """Output form 1: one score per context, best first."""

    response: list[ScoreItem]


class ContextsEmbeddingOutput(BaseModel):
    """Output form 2."""

    response: list[list[float]]
    shape: list[int]
    pooling: Literal["cls", "mean"]


class EmbeddingOutput(BaseModel):
    """Output form 3."""

    shape: list[int]
    data: list[list[float]]
    pooling: Literal["cls", "mean"]


class AsyncResult(BaseModel):
    """Output form 4, the queue-submit answer."""

    status: Literal["queued"]
    request_id: str
    model: str


class PendingResult(BaseModel):
    status: Literal["queued", "running"]
    request_id: str


class BatchResponseItem(BaseModel):
    id: int
    result: QueryOutput | ContextsEmbeddingOutput | EmbeddingOutput | None
    success: bool
    external_reference: str | None
    errors: list[ErrorItem] | None = None


class Usage(BaseModel):
    prompt_tokens: int
    completion_tokens: int = 0
    total_tokens: int


class BatchDone(BaseModel):
    responses: list[BatchResponseItem]
    usage: Usage


class ErrorItem(BaseModel):
    code: int
    message: str


class SuccessEnvelope(BaseModel):
    result: QueryOutput | ContextsEmbeddingOutput | EmbeddingOutput | AsyncResult | PendingResult | BatchDone
    success: Literal[True]
    errors: list[ErrorItem]
    messages: list[Any]


class ErrorEnvelope(BaseModel):
    """Every error of every route: ``{result: null | {}, success: false, errors: [{code, message}], messages}``."""

    result: dict[str, Any] | None
    success: Literal[False]
    errors: Annotated[list[ErrorItem], Field(min_length=1)]
    messages: list[Any]
    error: OpenAIError | None = Field(None, description="on /v1 routes: the same error as OpenAI SDKs read it")


class OpenAIError(BaseModel):
    message: str
    type: str
    code: int


BatchResponseItem.model_rebuild()
ErrorEnvelope.model_rebuild()


# -------------------------------------------------------------------------------------- /v1/embeddings
class EmbeddingsRequest(_Closed):
    """OpenAI's embeddings request. ``dimensions`` other than the model's width is refused; ``user`` is ignored."""

    input: NonEmpty | Annotated[list[NonEmpty], Field(min_length=1)]
    model: NonEmpty
    encoding_format: Literal["float", "base64"] = "float"
    dimensions: Annotated[int, Field(ge=1)] | None = None
    user: str | None = None


class EmbeddingItem(BaseModel):
    object: Literal["embedding"] = "embedding"
    index: int
    embedding: list[float] | str = Field(description="floats, or base64 of little-endian float32 bytes")


class EmbeddingsUsage(BaseModel):
    prompt_tokens: int
    total_tokens: int


class EmbeddingsResponse(BaseModel):
    object: Literal["list"] = "list"
    data: list[EmbeddingItem]
    model: str
    usage: EmbeddingsUsage


# ------------------------------------------------------------------------------------------ /v1/search
class SearchRequest(_Closed):
    """A text query against the served index, through its Retriever."""

    query: NonEmpty
    k: Annotated[int, Field(ge=1)] = 10
    mode: Literal["dense", "sparse", "multivector", "dense+sparse", "all", "hybrid"] | None = Field(
        None, description="a bge-m3 paper mode; default: the index's recorded mode, else hybrid when it holds several views"
    )
    fusion: NonEmpty | None = Field(None, description="rrf, weighted_sum, minmax or e.g. 'weighted_sum(dense=1,sparse=0.3)'")
    rerank: bool = Field(True, description="run the server's reranker (when it has one) on the first stage's results")
    candidates: Annotated[int, Field(ge=1, le=10_000)] | None = Field(None, description="rows each first stage proposes")
    filter: dict[str, Any] | None = Field(None, description='metadata filter, e.g. {"year": {"$gte": 2000}}')


class SearchHit(BaseModel):
    id: str
    score: float
    text: str | None
    metadata: dict[str, Any] | None
    ranks: dict[str, int] = Field(description="1-based rank in each view's own list; 0 where it did not retrieve it")
    scores: dict[str, float] = Field(default_factory=dict, description="each view's own score of the hit (and the reranker's)")


class Timing(BaseModel):
    encode_ms: float
    search_ms: float
    total_ms: float


class SearchResponse(BaseModel):
    hits: list[SearchHit]
    mode: str
    reranked: bool = Field(description="whether a rerank stage (MaxSim in mode all, or the reranker) ordered the hits")
    reranker: str | None = Field(description="the reranker that ran, if any")
    timing: Timing


# ---------------------------------------------------------------------------------------- /v1/documents
class Document(_Closed):
    id: NonEmpty
    text: NonEmpty
    metadata: dict[str, Any] | None = None


class UpsertRequest(_Closed):
    documents: Annotated[list[Document], Field(min_length=1)]


class UpsertResponse(BaseModel):
    upserted: int
    documents: int = Field(description="documents in the index after the upsert")
    uncommitted: int = Field(description="changes not yet committed to disk")


class BulkDeleteRequest(_Closed):
    ids: Annotated[list[NonEmpty], Field(min_length=1)]


class DeleteResponse(BaseModel):
    deleted: int
    documents: int
    uncommitted: int


class CommitResponse(BaseModel):
    committed: bool
    generation: int | None
    documents: int
