"""Checks on user input before it reaches Postgres or date arithmetic, each refusal saying what to change: text
(NUL, invalid UTF-8), JSON (non-finite numbers, nesting depth) and times (outside years 1-9999 in UTC)."""

from __future__ import annotations

import json
import math
from datetime import UTC, datetime
from typing import Any

from memsvc.errors import BadRequest, InvalidInput, MemsvcError, PayloadTooLarge

# The largest embedding value memsvc takes: the largest 16-bit float, since search and archived memories use the
# vector as pgvector's halfvec (a larger value there was a 500 "out of range for type halfvec").
EMBEDDING_MAX = 65504.0
MAX_JSON_DEPTH = 64  # levels of nested objects/arrays in a body or a metadata value: deeper is a mistake


def text_problem(value: str) -> str | None:
    """Why Postgres cannot store or compare this text (a NUL, an unpaired surrogate), else None."""
    if "\x00" in value:
        return "contains a NUL character (\\u0000); remove it"
    try:
        value.encode("utf-8")
    except UnicodeEncodeError as exc:
        return f"contains an unpaired surrogate at position {exc.start}; send valid UTF-8 text"
    return None


def check_text(value: str, field: str, *, max_chars: int | None = None, allow_empty: bool = False) -> str:
    if not allow_empty and not value.strip():
        raise InvalidInput(f"{field} must not be empty or whitespace", details={"field": field})
    problem = text_problem(value)
    if problem is not None:
        raise InvalidInput(f"{field} {problem}", details={"field": field})
    if max_chars is not None and len(value) > max_chars:
        raise PayloadTooLarge(
            f"{field} has {len(value)} characters; the limit is {max_chars}",
            details={"field": field, "length": len(value), "limit": max_chars},
        )
    return value


def check_json(value: Any, field: str, *, max_depth: int = MAX_JSON_DEPTH) -> Any:
    """Walk JSON (metadata) and reject what Postgres jsonb cannot hold: bad strings, NaN and infinite numbers
    (Python's JSON reader takes NaN, Infinity and 1e999), and nesting past `max_depth`."""
    stack: list[tuple[Any, str, int]] = [(value, field, 0)]
    while stack:
        item, where, depth = stack.pop()
        if depth > max_depth:
            raise InvalidInput(f"{field} is nested more than {max_depth} levels deep (at {where}); flatten it",
                               details={"field": field, "limit": max_depth})
        if isinstance(item, str):
            check_text(item, where, allow_empty=True)
        elif isinstance(item, float) and not math.isfinite(item):
            raise InvalidInput(f"{where} must be a finite number, not {item}; JSON has no NaN or Infinity",
                               details={"field": where})
        elif isinstance(item, dict):
            for key, child in item.items():
                check_text(str(key), f"{where} key", allow_empty=True)
                stack.append((child, f"{where}.{key}", depth + 1))
        elif isinstance(item, list):
            stack.extend((child, f"{where}[{i}]", depth + 1) for i, child in enumerate(item))
    return value


def parse_json(body: bytes | str, *, max_depth: int = MAX_JSON_DEPTH) -> Any:
    """A request body read as strict JSON: finite numbers only and at most `max_depth` levels deep, each refusal
    an InvalidInput saying what to change. Malformed JSON raises ValueError, as json.loads does."""

    def constant(name: str) -> Any:
        raise InvalidInput(f"the body holds {name}, which JSON does not allow; numbers must be finite",
                           code="invalid_json")

    def number(text: str) -> float:
        value = float(text)
        if not math.isfinite(value):
            raise InvalidInput(f"the body holds the number {text[:40]}, too large to be finite; numbers must be "
                               "finite", code="invalid_json")
        return value

    try:
        data = json.loads(body, parse_constant=constant, parse_float=number)
    except RecursionError:
        raise too_deep(max_depth) from None
    if _depth_exceeds(data, max_depth):
        raise too_deep(max_depth)
    return data


def too_deep(max_depth: int = MAX_JSON_DEPTH) -> BadRequest:
    return BadRequest(f"the body is nested too deeply; at most {max_depth} levels of objects and arrays",
                        code="invalid_json")


def unreadable_body(cause: BaseException | None) -> MemsvcError | None:
    """Why a JSON reader gave up on a body, as a refusal that says what to fix (None: not a reading problem we
    know). The web framework's own reader turns these into a bare 400 'error parsing the body'."""
    if isinstance(cause, RecursionError):
        return too_deep()
    if isinstance(cause, UnicodeDecodeError):
        return BadRequest(f"the body is not valid UTF-8 (byte {cause.start}); send JSON encoded as UTF-8",
                          code="invalid_json")
    return None


def _depth_exceeds(value: Any, limit: int) -> bool:
    stack = [(value, 0)]
    while stack:
        item, depth = stack.pop()
        if isinstance(item, dict | list):
            if depth >= limit:
                return True
            stack.extend((child, depth + 1) for child in (item.values() if isinstance(item, dict) else item))
    return False


def check_time(value: datetime, field: str) -> datetime:
    """A time in UTC (naive means UTC). A time that is valid with its offset but outside years 1-9999 in UTC
    (9999-12-31T23:59:59-14:00) is refused rather than overflowing later."""
    try:
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)
    except OverflowError:
        raise InvalidInput(f"{field} {value.isoformat()} falls outside the years 0001-9999 once converted to UTC; "
                           "send a time within them", details={"field": field}) from None


def check_embedding(vector: list[float], dim: int) -> list[float]:
    if len(vector) != dim:
        raise InvalidInput(
            f"embedding has {len(vector)} dimensions; this server stores {dim}",
            details={"field": "embedding", "got": len(vector), "expected": dim},
            code="embedding_dimension_mismatch",
        )
    if not all(math.isfinite(x) for x in vector):
        raise InvalidInput("embedding contains NaN or infinite values", details={"field": "embedding"})
    if not all(-EMBEDDING_MAX <= x <= EMBEDDING_MAX for x in vector):
        raise InvalidInput(f"embedding values must lie within +-{EMBEDDING_MAX:g} (search uses them as 16-bit floats)",
                           details={"field": "embedding"})
    return vector
