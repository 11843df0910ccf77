"""One logging set-up for the API, the worker and `python -m service`: text or JSON lines (DIGGAN_LOG_FORMAT),
each line carrying the request id and, in a worker, the job id, tenant and attempt it is working on.

    configure_logging(settings.log_format, settings.log_level)
    with log_context(request_id="...", job_id="job_...", tenant="acme", attempt=2):
        log.info("...")          # {"ts": ..., "level": "INFO", "msg": "...", "request_id": ..., "job_id": ...}

The API sets `request_id` per request (X-Request-ID, made up when the client sends none) and passes it
with the Celery task it causes, so one id follows a request from the API's log into the worker's.
"""

from __future__ import annotations

import json
import logging
import sys
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from contextvars import ContextVar
from datetime import datetime, timezone
from types import MappingProxyType
from typing import Any

FIELDS = ("request_id", "job_id", "tenant", "attempt")
# Read-only: every change sets a new mapping, so the shared default can never be mutated.
_context: ContextVar[Mapping[str, Any]] = ContextVar("diggan_log_context", default=MappingProxyType({}))


@contextmanager
def log_context(**values: Any) -> Iterator[None]:
    """Add fields to every log line of this context (thread, task or request) until the block ends."""
    token = _context.set({**_context.get(), **{k: v for k, v in values.items() if v is not None}})
    try:
        yield
    finally:
        _context.reset(token)


def set_log_context(**values: Any) -> None:
    """Like log_context, for the rest of the current context (an ASGI request's task)."""
    _context.set({**_context.get(), **{k: v for k, v in values.items() if v is not None}})


def current(field: str) -> Any:
    return _context.get().get(field)


class ContextFilter(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        ctx = _context.get()
        for field in FIELDS:
            if not hasattr(record, field):
                setattr(record, field, ctx.get(field))
        return True


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        out: dict[str, Any] = {"ts": datetime.fromtimestamp(record.created, timezone.utc).isoformat(),
                               "level": record.levelname, "logger": record.name, "msg": record.getMessage()}
        out.update({f: getattr(record, f, None) for f in FIELDS if getattr(record, f, None) is not None})
        if record.exc_info:
            out["exc"] = self.formatException(record.exc_info)
        return json.dumps(out, default=str)


class TextFormatter(logging.Formatter):
    def __init__(self) -> None:
        super().__init__("%(asctime)s %(levelname)s %(name)s: %(message)s")

    def format(self, record: logging.LogRecord) -> str:
        line = super().format(record)
        extra = " ".join(f"{f}={getattr(record, f)}" for f in FIELDS if getattr(record, f, None) is not None)
        return f"{line} [{extra}]" if extra else line


def configure_logging(fmt: str = "text", level: str = "INFO") -> None:
    """Root logger -> stderr in `fmt` ("text" | "json"); idempotent."""
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(JsonFormatter() if fmt == "json" else TextFormatter())
    handler.addFilter(ContextFilter())
    root = logging.getLogger()
    for old in [h for h in root.handlers if getattr(h, "_diggan", False)]:
        root.removeHandler(old)
    handler._diggan = True  # type: ignore[attr-defined]
    root.addHandler(handler)
    root.setLevel(level.upper())
