"""ASGI middleware that guards every request before any route (or body parsing) runs.

- `LoopbackOnly` (auth off): the API then trusts whoever can reach it, so it serves only loopback
  clients, on a loopback socket, and only requests whose Host names a loopback address (a DNS-rebinding
  page cannot borrow the browser's access) and whose Origin, when sent, is a loopback origin (a
  cross-site form cannot post an upload). This is in the app itself, so it also holds when uvicorn is
  started directly on 0.0.0.0.
- `BodyLimit`: a request body is capped before it is read: a declared Content-Length over the limit is
  refused at once, and a chunked body is cut off as soon as it passes the limit. Upload routes, which
  stream their bodies into temporary files under their own (larger) limits, are exempt.
"""

from __future__ import annotations

import ipaddress
import json
import re
from collections.abc import Iterable
from urllib.parse import urlsplit

from starlette.types import ASGIApp, Message, Receive, Scope, Send

LOOPBACK_NAMES = {"localhost", "localhost.", "ip6-localhost"}


def is_loopback_host(host: str | None) -> bool:
    if not host:
        return False
    host = host.strip().lower()
    if host in LOOPBACK_NAMES or host.endswith(".localhost"):
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def _host_of(host_header: str) -> str:
    """The host part of a Host header (`[::1]:8000` -> `::1`, `localhost:8000` -> `localhost`)."""
    if host_header.startswith("["):
        return host_header[1:].split("]", 1)[0]
    return host_header.rsplit(":", 1)[0] if host_header.count(":") == 1 else host_header


async def _json_error(send: Send, status: int, detail: str) -> None:
    body = json.dumps({"detail": detail}).encode()
    await send({"type": "http.response.start", "status": status,
                "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode()),
                            (b"connection", b"close")]})
    await send({"type": "http.response.body", "body": body})


def _header(scope: Scope, name: bytes) -> str | None:
    for key, value in scope.get("headers", ()):
        if key == name:
            return value.decode("latin-1")
    return None


class LoopbackOnly:
    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    def _refusal(self, scope: Scope) -> str | None:
        server, client = scope.get("server"), scope.get("client")
        if server and not is_loopback_host(server[0]) and not str(server[0]).startswith("/"):
            return (f"this server listens on {server[0]} with auth off; with auth off only a loopback address is "
                    "allowed. Set DIGGAN_AUTH_REQUIRED=true (and create API keys), or bind 127.0.0.1")
        if client and not is_loopback_host(client[0]):
            return "auth is off on this server, so it answers loopback clients only"
        host = _header(scope, b"host")
        if host is not None and not is_loopback_host(_host_of(host)):
            return (f"Host {host[:100]!r} is not a loopback name; with auth off the API answers only requests for "
                    "localhost / 127.0.0.1 / [::1] (this blocks DNS-rebinding pages)")
        origin = _header(scope, b"origin")
        if origin is not None and origin != "null" and not is_loopback_host(urlsplit(origin).hostname):
            return f"cross-site request from {origin[:100]!r} refused (auth is off; only loopback pages may call the API)"
        if origin == "null":
            return "requests from an opaque origin are refused while auth is off"
        return None

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            why = self._refusal(scope)
            if why:
                await _json_error(send, 403, why)
                return
        await self.app(scope, receive, send)


class BodyLimit:
    """Reads a non-upload body up front, at most `limit` bytes (so a handler never buffers more), and
    hands it on. Bodies are small JSON here; the ones that are not go to the exempt upload routes."""

    def __init__(self, app: ASGIApp, limit: int, exempt: Iterable[tuple[str, str]] = ()) -> None:
        self.app, self.limit = app, limit
        self.exempt = [(method, re.compile(pattern)) for method, pattern in exempt]

    def _exempt(self, scope: Scope) -> bool:
        return any(scope["method"] == m and p.fullmatch(scope["path"]) for m, p in self.exempt)

    def _too_large(self) -> str:
        return (f"request body larger than {self.limit:,} bytes; send a smaller JSON body "
                "(uploads go to POST /v1/datasets or POST /v1/models)")

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["method"] in ("GET", "HEAD", "OPTIONS") or self._exempt(scope):
            await self.app(scope, receive, send)
            return
        declared = _header(scope, b"content-length")
        if declared is not None and (not declared.isdigit() or int(declared) > self.limit):
            await _json_error(send, 413, self._too_large())
            return
        chunks, seen, more = [], 0, True
        while more:
            message = await receive()
            if message["type"] == "http.disconnect":
                return
            body = message.get("body", b"")
            seen += len(body)
            if seen > self.limit:
                await _json_error(send, 413, self._too_large())
                return
            chunks.append(body)
            more = message.get("more_body", False)
        replayed = False

        async def replay() -> Message:
            nonlocal replayed
            if not replayed:
                replayed = True
                return {"type": "http.request", "body": b"".join(chunks), "more_body": False}
            return await receive()  # after the body: wait for the disconnect, as Starlette expects

        await self.app(scope, replay, send)
