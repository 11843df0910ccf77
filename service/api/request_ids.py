"""A request id on every request: asgi-correlation-id reads the client's X-Request-ID (or makes one) and
returns it in the response header; this copies it into the log context (service/core/logs.py), so every
log line of the request, and the Celery task it queues, carry it."""

from __future__ import annotations

from asgi_correlation_id import CorrelationIdMiddleware
from asgi_correlation_id.context import correlation_id
from fastapi import FastAPI
from starlette.types import ASGIApp, Receive, Scope, Send

from service.core.logs import log_context

HEADER = "X-Request-ID"


class _IntoLogContext:
    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        with log_context(request_id=correlation_id.get()):
            await self.app(scope, receive, send)


def install(app: FastAPI) -> None:
    app.add_middleware(_IntoLogContext)  # inner: runs after the id is known
    app.add_middleware(CorrelationIdMiddleware, header_name=HEADER, update_request_header=True)
