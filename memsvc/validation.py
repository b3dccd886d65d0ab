"""Checks on user text before it reaches Postgres (which rejects NUL and invalid UTF-8 with a 500)."""

from __future__ import annotations

import math
from typing import Any

from memsvc.errors import InvalidInput, PayloadTooLarge


def check_text(value: str, field: str, *, max_chars: int | None = None, allow_empty: bool = False) -> str:
    if not allow_empty and not value.strip():
        raise InvalidInput(f"{field} must not be empty or whitespace", details={"field": field})
    if "\x00" in value:
        raise InvalidInput(f"{field} contains a NUL character (\\u0000); remove it", details={"field": field})
    try:
        value.encode("utf-8")
    except UnicodeEncodeError as exc:
        raise InvalidInput(
            f"{field} contains an unpaired surrogate at position {exc.start}; send valid UTF-8 text",
            details={"field": field, "position": exc.start},
        ) from None
    if max_chars is not None and len(value) > max_chars:
        raise PayloadTooLarge(
            f"{field} has {len(value)} characters; the limit is {max_chars}",
            details={"field": field, "length": len(value), "limit": max_chars},
        )
    return value


def check_json(value: Any, field: str) -> Any:
    """Walk JSON (metadata) and reject strings Postgres jsonb cannot hold."""
    if isinstance(value, str):
        check_text(value, field, allow_empty=True)
    elif isinstance(value, dict):
        for key, item in value.items():
            check_text(str(key), f"{field} key", allow_empty=True)
            check_json(item, f"{field}.{key}")
    elif isinstance(value, list):
        for i, item in enumerate(value):
            check_json(item, f"{field}[{i}]")
    return value


def check_embedding(vector: list[float], dim: int) -> list[float]:
    if len(vector) != dim:
        raise InvalidInput(
            f"embedding has {len(vector)} dimensions; this server stores {dim}",
            details={"field": "embedding", "got": len(vector), "expected": dim},
            code="embedding_dimension_mismatch",
        )
    if not all(math.isfinite(x) for x in vector):
        raise InvalidInput("embedding contains NaN or infinite values", details={"field": "embedding"})
    return vector
