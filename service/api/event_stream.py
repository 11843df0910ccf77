"""Server-sent event streams that poll a record: framing, keep-alives, the idle timeout and the tenant's slot.

The job and projection event routes differ only in what they read and emit; the pacing lives here.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator

import anyio
from fastapi import Request
from fastapi.responses import StreamingResponse

from service.core.services import Core
from service.core.settings import Settings

SSE_POLL_S = 0.5
SSE_KEEPALIVE_S = 15.0
STREAM_SLOT_TTL_S = 180.0  # an open stream extends its slot well before this; a dead process' slot lapses
KEEP_ALIVE = b": keep-alive\n\n"  # a comment line: stops proxies from closing an idle stream


def sse(event: str, data: object, event_id: str | None = None) -> bytes:
    lines = [f"event: {event}"]
    if event_id is not None:
        lines.append(f"id: {event_id}")
    lines.append("data: " + json.dumps(data, default=str, separators=(",", ":")))
    return ("\n".join(lines) + "\n\n").encode()


async def acquire_stream_slot(core: Core, tenant: str, settings: Settings) -> str:
    """One of the tenant's open-stream slots (429 past the limit), held while the stream is open."""
    return await anyio.to_thread.run_sync(core.slots.acquire, tenant, "events", settings.max_event_streams_per_tenant,
                                          STREAM_SLOT_TTL_S)


def event_stream_response(stream: AsyncIterator[bytes]) -> StreamingResponse:
    return StreamingResponse(stream, media_type="text/event-stream",
                             headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"})


class StreamPacer:
    """The clock of one polling stream. Use as `async with`: the slot is released however the stream ends
    (also when the client went away mid-stream)."""

    def __init__(self, request: Request, core: Core, slot: str, idle_timeout_s: float) -> None:
        self.request, self.core, self.slot, self.idle_timeout_s = request, core, slot, idle_timeout_s
        self.quiet = self.idle = self.held = 0.0

    async def __aenter__(self) -> StreamPacer:
        return self

    async def __aexit__(self, *exc: object) -> None:
        with anyio.CancelScope(shield=True):
            await anyio.to_thread.run_sync(self.core.slots.release, self.slot)

    def news(self) -> None:
        """Something was sent: the keep-alive and idle clocks restart."""
        self.quiet = self.idle = 0.0

    @property
    def idle_expired(self) -> bool:
        """Nothing new for idle_timeout_s: the stream should say `idle` and close, freeing the slot."""
        return self.idle >= self.idle_timeout_s

    def keep_alive(self) -> bytes | None:
        if self.quiet < SSE_KEEPALIVE_S:
            return None
        self.quiet = 0.0
        return KEEP_ALIVE

    async def wait(self) -> bool:
        """Sleep one poll interval, keeping the slot alive; False once the client has gone."""
        await asyncio.sleep(SSE_POLL_S)
        self.quiet, self.idle, self.held = self.quiet + SSE_POLL_S, self.idle + SSE_POLL_S, self.held + SSE_POLL_S
        if self.held >= STREAM_SLOT_TTL_S / 3:
            await anyio.to_thread.run_sync(self.core.slots.extend, self.slot, STREAM_SLOT_TTL_S)
            self.held = 0.0
        return not await self.request.is_disconnected()
