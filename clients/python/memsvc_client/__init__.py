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
    ModelError,
    ModelOutputError,
    NotFoundError,
    PayloadTooLargeError,
    PermissionDeniedError,
    RateLimitError,
    ServerError,
    ServiceUnavailableError,
    TokenizerUnavailableError,
)
from memsvc_client.models import (  # noqa: E402
    ApiKey,
    ApiKeyCreated,
    BatchResult,
    ContextResult,
    DecodedTokens,
    DeletionReport,
    Health,
    Job,
    JobAccepted,
    JobPage,
    Lineage,
    Memory,
    MemoryPage,
    MemoryTokenPolicy,
    MemoryTokenStatus,
    NewMemory,
    Policy,
    Readiness,
    RetentionCurve,
    SearchHit,
    SearchResult,
    Stats,
    Tenant,
)

__all__ = [
    "APIError", "ApiKey", "ApiKeyCreated", "AsyncMemsvcClient", "AuthenticationError", "BadRequestError",
    "BatchResult", "Call", "ConflictError", "ContextResult", "DecodedTokens", "DeletionReport",
    "EmbeddingDimensionError", "Health", "IdempotencyKeyReusedError", "InvalidCursorError", "InvalidInputError",
    "Job", "JobAccepted", "JobPage", "Lineage", "Memory", "MemoryPage", "MemoryTokenPolicy", "MemoryTokenStatus",
    "MemsvcClient", "MemsvcConnectionError", "MemsvcError", "MemsvcTimeoutError", "ModelError", "ModelOutputError",
    "NewMemory", "NotFoundError", "PayloadTooLargeError", "PermissionDeniedError", "Policy", "RateLimitError",
    "Readiness", "RetentionCurve", "RetryPolicy", "SearchHit", "SearchResult", "ServerError",
    "ServiceUnavailableError", "Stats", "Tenant", "TokenizerUnavailableError", "UNSET",
]
