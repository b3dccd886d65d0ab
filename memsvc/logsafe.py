"""Logs hold no memory content and no key material unless debug logging is asked for (MEMSVC_LOG_LEVEL=DEBUG).

Two layers. At the source, the engine hides SQL parameters (memsvc.db: memory contents, search text, key
hashes are all parameters). Then every log record, whatever logger or handler it goes to (ours, uvicorn's,
Celery's, a test's caplog), is cleaned when it is made: Postgres DETAIL lines (a constraint's "Failing row
contains (...)" quotes the row), SQLAlchemy parameter blocks, API keys and bearer tokens, in the message and
in the traceback text; and the access log loses query strings (search text, user ids).
"""

from __future__ import annotations

import logging
import re
import traceback
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from memsvc.config import Settings

_PATTERNS: list[tuple[re.Pattern[str], str]] = [
    # SQLAlchemy's "[parameters: ...]" block, up to its "(Background on this error ...)" line or the end.
    (re.compile(r"\[parameters: .*?\](?=\s*\n\(Background on this error|\s*$)", re.S), "[parameters redacted]"),
    # Postgres's DETAIL quotes values: "Failing row contains (...)", "Key (x)=(...) already exists".
    (re.compile(r"^(\s*DETAIL:\s*).*$", re.M), r"\1[redacted]"),
    (re.compile(r"msk_[A-Za-z0-9_\-]+"), "msk_[redacted]"),
    (re.compile(r"(?i)(bearer\s+)[A-Za-z0-9_\-.~+/=]+"), r"\1[redacted]"),
]
_installed: dict[str, Any] = {}


def sensitive_logging(settings: Settings) -> bool:
    """Whether logs may hold memory content and key material: only when debug logging is asked for."""
    return settings.log_level.strip().upper() == "DEBUG"


def redact(text: str) -> str:
    for pattern, replacement in _PATTERNS:
        text = pattern.sub(replacement, text)
    return text


def clean(record: logging.LogRecord) -> logging.LogRecord:
    """Redact a record in place (the traceback is rendered now, redacted, and kept as its exc_text)."""
    if record.name == "uvicorn.access":
        # (client, method, path with query, http version, status): the query may hold search text or user ids.
        args = record.args
        if isinstance(args, tuple) and len(args) >= 3 and isinstance(args[2], str) and "?" in args[2]:
            record.args = (*args[:2], args[2].split("?", 1)[0] + "?[query redacted]", *args[3:])
        return record
    try:
        message = record.getMessage()
    except Exception:  # a malformed record: leave it to the handler to report
        return record
    cleaned = redact(message)
    if cleaned != message:
        record.msg, record.args = cleaned, None
    if record.exc_info and record.exc_info[1] is not None and not record.exc_text:
        record.exc_text = redact("".join(traceback.format_exception(*record.exc_info)).rstrip("\n"))
    return record


def install(settings: Settings) -> None:
    """Clean every log record of this process from now on, unless debug logging is asked for (then undo it).
    Idempotent; the API (create_app) and the CLI (serve, worker, beat) call it."""
    if sensitive_logging(settings):
        if "base" in _installed:
            logging.setLogRecordFactory(_installed.pop("base"))
        return
    if "base" in _installed:
        return
    base = logging.getLogRecordFactory()

    def factory(*args: Any, **kwargs: Any) -> logging.LogRecord:
        return clean(base(*args, **kwargs))

    _installed["base"] = base
    logging.setLogRecordFactory(factory)
