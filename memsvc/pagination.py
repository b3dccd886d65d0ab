"""Opaque, signed keyset cursors. A cursor only works for the tenant and listing that produced it."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import uuid
from dataclasses import dataclass
from datetime import datetime

from memsvc.errors import BadRequest


@dataclass(frozen=True)
class Position:
    recorded_at: datetime
    id: uuid.UUID


def _sign(secret: bytes, payload: bytes) -> str:
    return hmac.new(secret, payload, hashlib.sha256).hexdigest()[:24]


def encode_cursor(secret: bytes, tenant_id: uuid.UUID, listing: str, pos: Position) -> str:
    payload = json.dumps(
        {"t": str(tenant_id), "l": listing, "r": pos.recorded_at.isoformat(), "i": str(pos.id)},
        separators=(",", ":"),
    ).encode()
    return base64.urlsafe_b64encode(payload).decode().rstrip("=") + "." + _sign(secret, payload)


def decode_cursor(secret: bytes, tenant_id: uuid.UUID, listing: str, cursor: str) -> Position:
    bad = BadRequest("malformed cursor; pass the next_cursor of a previous page unchanged", code="invalid_cursor")
    try:
        body, signature = cursor.rsplit(".", 1)
        payload = base64.urlsafe_b64decode(body + "=" * (-len(body) % 4))
        if not hmac.compare_digest(signature, _sign(secret, payload)):
            raise BadRequest(
                "this cursor was not issued by this deployment (or was altered); pass the next_cursor of a "
                "previous page unchanged, or start again without a cursor",
                code="invalid_cursor",
            )
        data = json.loads(payload)
        if data["t"] != str(tenant_id) or data["l"] != listing:
            raise BadRequest(
                "this cursor belongs to another listing (other filters or another key's tenant); "
                "start again without a cursor",
                code="invalid_cursor",
            )
        return Position(datetime.fromisoformat(data["r"]), uuid.UUID(data["i"]))
    except BadRequest:
        raise
    except (ValueError, KeyError, TypeError):
        raise bad from None
