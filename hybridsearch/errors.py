"""Exceptions raised by hybridsearch.

Our exception hierarchy::

    HybridSearchError
    ├── InputError (ValueError)             bad input from the caller; nothing was changed
    │   ├── DimensionMismatchError          vectors of the wrong width for this encoder or index
    │   ├── DuplicateIdError                the same document id twice in one batch
    │   ├── UnknownIdError (KeyError)       an id that is not in the index
    │   └── FilterError                     a metadata filter that cannot be applied
    ├── ConfigError (ValueError)            unknown encoder name, bad option value
    ├── MissingDependencyError (ImportError) an optional extra is not installed
    ├── IncompatibleDependencyError (ImportError) installed, but fails to import (a version the project does not support)
    ├── ModelLoadError                      weights or head files missing or unreadable
    ├── IndexFormatError                    an index directory that cannot be trusted
    │   ├── IndexCorruptedError             truncated file, bad checksum, missing part
    │   ├── IndexVersionError               written by a newer format version
    │   └── IndexMismatchError              query encoder does not match the index's encoder
    ├── IndexWriteError                     a save or change that cannot be done safely; nothing on disk changed
    │   ├── CommitConflictError             another writer committed since this index was loaded
    │   ├── IndexExistsError                the directory already holds an index (pass overwrite=True)
    │   └── WriterPoisonedError             an earlier failure could not be undone; reload the index
    └── WorkersAIError                      the Workers AI API (or a compatible server) failed
        ├── APIStatusError                  an error envelope / HTTP error status
        │   ├── BadRequestError             400: bad input, invalid data, no such model
        │   ├── AuthenticationError         401
        │   ├── PermissionDeniedError       403
        │   ├── NotFoundError               404
        │   ├── RequestTimeoutError         408
        │   ├── PayloadTooLargeError        413
        │   ├── RateLimitError              429
        │   └── ServerError                 5xx
        ├── APIConnectionError              the server could not be reached
        ├── APIResponseError                a 2xx body that does not follow the contract
        └── QueueTimeoutError               an async batch did not finish in time

Catch ``HybridSearchError`` to catch everything the library raises on purpose.
"""

from __future__ import annotations

__all__ = [
    "positive_int",
    "APIConnectionError",
    "APIResponseError",
    "APIStatusError",
    "AuthenticationError",
    "BadRequestError",
    "CommitConflictError",
    "ConfigError",
    "DimensionMismatchError",
    "DuplicateIdError",
    "FilterError",
    "HybridSearchError",
    "IndexCorruptedError",
    "IndexExistsError",
    "IndexFormatError",
    "IndexMismatchError",
    "IndexWriteError",
    "IndexVersionError",
    "IncompatibleDependencyError",
    "InputError",
    "MissingDependencyError",
    "ModelLoadError",
    "NotFoundError",
    "PayloadTooLargeError",
    "PermissionDeniedError",
    "QueueTimeoutError",
    "RateLimitError",
    "RequestTimeoutError",
    "ServerError",
    "UnknownIdError",
    "WorkersAIError",
    "WriterPoisonedError",
]


class HybridSearchError(Exception):
    """Base class of every error hybridsearch raises on purpose."""


class InputError(HybridSearchError, ValueError):
    """The caller passed something unusable. The message says what to fix."""


class DimensionMismatchError(InputError):
    """Vectors have a different width than the encoder or index expects."""


class DuplicateIdError(InputError):
    """The same document id appears more than once in one batch."""


class UnknownIdError(InputError, KeyError):
    """A document id that the index does not hold."""

    def __str__(self) -> str:  # KeyError would repr() the message
        return str(self.args[0]) if self.args else ""


class FilterError(InputError):
    """A metadata filter names a missing field or uses an unsupported operator."""


class ConfigError(HybridSearchError, ValueError):
    """An unknown name or an invalid option value."""


class MissingDependencyError(HybridSearchError, ImportError):
    """An optional dependency is not installed; the message gives the pip command."""


class IncompatibleDependencyError(HybridSearchError, ImportError):
    """A dependency is installed but fails to import, usually because of a version hybridsearch does not support.

    The message names the packages involved with their installed versions, the ranges hybridsearch supports and
    the command that fixes it. Attributes: ``module`` (what was imported), ``versions`` (``{distribution:
    installed version or None}``), ``supported`` (``{distribution: version range}``).
    """

    def __init__(
        self,
        message: str,
        *,
        module: str,
        versions: dict[str, str | None] | None = None,
        supported: dict[str, str] | None = None,
    ) -> None:
        super().__init__(message)
        self.module = module
        self.versions = dict(versions or {})
        self.supported = dict(supported or {})


class ModelLoadError(HybridSearchError):
    """Model weights or head files are missing or cannot be loaded."""


class IndexFormatError(HybridSearchError):
    """An index directory that cannot be loaded safely."""


class IndexCorruptedError(IndexFormatError):
    """A part of the index is missing, truncated or fails its checksum."""


class IndexVersionError(IndexFormatError):
    """The index was written by a newer format version than this library reads."""


class IndexMismatchError(IndexFormatError):
    """The encoder used for queries does not match the encoder the index was built with."""


class IndexWriteError(HybridSearchError):
    """A save or change that cannot be done safely; the index on disk is left as it was."""


class CommitConflictError(IndexWriteError):
    """Another writer committed to the directory after this index was loaded from it (or last saved to it)."""


class IndexExistsError(IndexWriteError):
    """A save would replace an index this object was not loaded from; pass ``overwrite=True`` to replace it."""


class WriterPoisonedError(IndexWriteError):
    """A failed change could not be rolled back; the in-memory index refuses further changes and saves."""


class WorkersAIError(HybridSearchError):
    """Base class for errors from the Workers AI API or a compatible server."""


class APIStatusError(WorkersAIError):
    """The server answered with an error envelope or an HTTP error status.

    Attributes: ``status_code`` (HTTP status), ``code`` (the first Cloudflare error code, or
    ``None``), ``errors`` (the envelope's ``errors`` list), ``request_id`` (``cf-ai-req-id``
    header when present).
    """

    def __init__(
        self,
        message: str,
        *,
        status_code: int,
        code: int | None = None,
        errors: list[dict] | None = None,
        request_id: str | None = None,
    ) -> None:
        super().__init__(message)
        self.status_code = status_code
        self.code = code
        self.errors = errors or []
        self.request_id = request_id


class BadRequestError(APIStatusError):
    """HTTP 400: bad input (5006), invalid data (5004), incomplete request (3003), no such model (5007)."""


class AuthenticationError(APIStatusError):
    """HTTP 401: the API token is missing or invalid."""


class PermissionDeniedError(APIStatusError):
    """HTTP 403: private model or blocked account."""


class NotFoundError(APIStatusError):
    """HTTP 404: invalid model id, unknown or expired request id."""


class RequestTimeoutError(APIStatusError):
    """HTTP 408: the request timed out (3007) or was aborted (3008) on the server."""


class PayloadTooLargeError(APIStatusError):
    """HTTP 413: the request body is too large (3006)."""


class RateLimitError(APIStatusError):
    """HTTP 429: rate limited, out of capacity (3040) or daily allocation used up (3036)."""


class ServerError(APIStatusError):
    """HTTP 5xx from the server."""


class APIConnectionError(WorkersAIError):
    """The server could not be reached (connection refused, DNS, transport timeout)."""


class APIResponseError(WorkersAIError):
    """A success response whose body does not follow the wire contract."""


class QueueTimeoutError(WorkersAIError):
    """An async batch was still queued or running when the overall timeout expired."""

    def __init__(self, message: str, *, request_id: str) -> None:
        super().__init__(message)
        self.request_id = request_id


def positive_int(value: object, name: str) -> int:
    """``value`` as an int when it is a positive integer (Python or numpy, not bool); InputError naming ``name``
    otherwise."""
    import numbers

    if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value <= 0:
        raise InputError(f"{name} must be a positive integer, got {value!r}")
    return int(value)
