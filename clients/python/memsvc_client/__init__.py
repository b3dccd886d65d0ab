"""memsvc-client: sync and async Python clients for memsvc (long-term memory for AI agents)."""

__version__ = "0.1.0"

from memsvc_client._protocol import Call, RetryPolicy  # noqa: E402
from memsvc_client.client import UNSET, AsyncMemsvcClient, MemsvcClient  # noqa: E402
from memsvc_client.errors import (  # noqa: E402
    APIError,
    AuthenticationError,
    BadRequestError,
    ConflictError,
    EmbeddingDimensionError,
    IdempotencyKeyReusedError,
    InvalidCursorError,
    InvalidInputError,
    MemsvcConnectionError,
    MemsvcError,
    MemsvcTimeoutError,
    NotFoundError,
    PayloadTooLargeError,
    PermissionDeniedError,
    RateLimitError,
    ServerError,
    ServiceUnavailableError,
)
from memsvc_client.models import (  # noqa: E402
    ApiKey,
    ApiKeyCreated,
    BatchResult,
    ContextResult,
    DeletionReport,
    Health,
    Memory,
    MemoryPage,
    NewMemory,
    Readiness,
    SearchHit,
    SearchResult,
    Tenant,
)

__all__ = [
    "APIError", "ApiKey", "ApiKeyCreated", "AsyncMemsvcClient", "AuthenticationError", "BadRequestError",
    "BatchResult", "Call", "ContextResult", "ConflictError", "DeletionReport", "EmbeddingDimensionError", "Health",
    "IdempotencyKeyReusedError", "InvalidCursorError", "InvalidInputError", "Memory", "MemoryPage",
    "MemsvcClient", "MemsvcConnectionError", "MemsvcError", "MemsvcTimeoutError", "NewMemory", "NotFoundError",
    "PayloadTooLargeError", "PermissionDeniedError", "RateLimitError", "Readiness", "RetryPolicy", "SearchHit",
    "SearchResult", "ServerError", "ServiceUnavailableError", "Tenant", "UNSET",
]
