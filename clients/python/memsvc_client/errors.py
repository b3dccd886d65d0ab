"""Exceptions: one named class per server error code, each carrying the server's own message.

The server answers errors as {"error": {"code", "message", "details"}}. `error_from_response` picks
the class by code first (precise), then by HTTP status (so a code this client does not know yet
still lands in the right family), and keeps code, message and details unchanged.
"""

from __future__ import annotations

from typing import Any

import httpx


class MemsvcError(Exception):
    """Base of every error raised by the client."""

    code: str = "error"

    def __init__(
        self, message: str, *, status: int | None = None, code: str | None = None, details: Any = None,
        response: httpx.Response | None = None,
    ) -> None:
        super().__init__(message)
        self.message = message
        self.status = status
        self.details = details
        self.response = response
        if code:
            self.code = code

    def __str__(self) -> str:
        where = f"{self.status} " if self.status is not None else ""
        return f"[{where}{self.code}] {self.message}"


class APIError(MemsvcError):
    """The server answered with an error status."""


class BadRequestError(APIError):
    code = "bad_request"


class InvalidCursorError(BadRequestError):
    code = "invalid_cursor"


class InvalidInputError(APIError):
    """422 from the server, or input this client rejected before sending (status None, code invalid_input)."""

    code = "invalid_input"


class EmbeddingDimensionError(InvalidInputError):
    code = "embedding_dimension_mismatch"


class AuthenticationError(APIError):
    code = "unauthorized"


class PermissionDeniedError(APIError):
    code = "forbidden"


class NotFoundError(APIError):
    code = "not_found"


class ConflictError(APIError):
    code = "conflict"


class IdempotencyKeyReusedError(ConflictError):
    """The Idempotency-Key was already used for a different request body."""

    code = "idempotency_key_reused"


class PayloadTooLargeError(APIError):
    code = "payload_too_large"


class RateLimitError(APIError):
    code = "rate_limited"

    def __init__(self, message: str, *, retry_after: float | None = None, **kwargs: Any) -> None:
        super().__init__(message, **kwargs)
        self.retry_after = retry_after


class ServerError(APIError):
    """5xx: the server failed. Retried automatically before it reaches you."""

    code = "internal_error"


class ServiceUnavailableError(ServerError):
    code = "unavailable"


class TokenizerUnavailableError(ServiceUnavailableError):
    """The server knows the model's tokenizer but does not have its files installed."""

    code = "tokenizer_unavailable"


class ModelError(ServerError):
    """The server's LLM (consolidation, summaries) failed or answered unusably."""

    code = "llm_call_failed"


class ModelOutputError(ModelError):
    code = "llm_output_invalid"


class MemsvcConnectionError(MemsvcError):
    """The server could not be reached (after the retries)."""

    code = "connection_error"


class MemsvcTimeoutError(MemsvcConnectionError):
    code = "timeout"


_BY_CODE: dict[str, type[APIError]] = {
    cls.code: cls
    for cls in (
        BadRequestError, InvalidCursorError, InvalidInputError, EmbeddingDimensionError, AuthenticationError,
        PermissionDeniedError, NotFoundError, ConflictError, IdempotencyKeyReusedError, PayloadTooLargeError,
        RateLimitError, ServerError, ServiceUnavailableError, TokenizerUnavailableError, ModelError, ModelOutputError,
    )
}
_BY_CODE.update({"invalid_id": InvalidInputError, "invalid_json": BadRequestError})

_BY_STATUS: dict[int, type[APIError]] = {
    400: BadRequestError, 401: AuthenticationError, 403: PermissionDeniedError, 404: NotFoundError,
    409: ConflictError, 413: PayloadTooLargeError, 422: InvalidInputError, 429: RateLimitError,
    503: ServiceUnavailableError,
}


def _family(code: str, status: int) -> type[APIError]:
    return _BY_CODE.get(code) or _BY_STATUS.get(status) or (ServerError if status >= 500 else APIError)


def error_from_response(response: httpx.Response, retry_after: float | None = None) -> APIError:
    status = response.status_code
    code, message, details = f"http_{status}", response.reason_phrase or f"HTTP {status}", None
    try:
        body = response.json()
    except ValueError:
        body = None
        if response.text.strip():
            message = f"{message}: {response.text.strip()[:500]}"
    if isinstance(body, dict) and isinstance(body.get("error"), dict):
        error = body["error"]
        code = str(error.get("code") or code)
        message = str(error.get("message") or message)
        details = error.get("details")
    cls = _family(code, status)
    kwargs: dict[str, Any] = {"status": status, "code": code, "details": details, "response": response}
    if issubclass(cls, RateLimitError):
        return cls(message, retry_after=retry_after, **kwargs)
    return cls(message, **kwargs)


def invalid(message: str, field: str | None = None) -> InvalidInputError:
    """An error for input rejected locally, shaped like the server's (code invalid_input, no status)."""
    return InvalidInputError(message, details={"field": field} if field else None)
