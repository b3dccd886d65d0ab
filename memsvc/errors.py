"""Domain errors. Each carries the HTTP-ish status the API maps it to, so the core stays web-free."""

from __future__ import annotations

from typing import Any


class MemsvcError(Exception):
    status: int = 400
    code: str = "bad_request"

    def __init__(self, message: str, *, details: Any = None, code: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.details = details
        if code:
            self.code = code

    def to_dict(self) -> dict[str, Any]:
        return {"error": {"code": self.code, "message": self.message, "details": self.details}}


class InvalidInput(MemsvcError):
    status, code = 422, "invalid_input"


class BadRequest(MemsvcError):
    status, code = 400, "bad_request"


class PayloadTooLarge(MemsvcError):
    status, code = 413, "payload_too_large"


class NotFound(MemsvcError):
    status, code = 404, "not_found"


class Conflict(MemsvcError):
    status, code = 409, "conflict"


class Unauthorized(MemsvcError):
    status, code = 401, "unauthorized"


class Forbidden(MemsvcError):
    status, code = 403, "forbidden"


class Unavailable(MemsvcError):
    status, code = 503, "unavailable"
