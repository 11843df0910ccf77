"""Server-sent events: parse a text/event-stream line by line (the WHATWG rules that matter here)."""

from __future__ import annotations

import json
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class Event:
    """One event: `event` is the name ("state", "tick", "end", ...), `data` the decoded JSON payload."""

    event: str
    data: Any
    id: str | None = None


def iter_events(lines: Iterable[str]) -> Iterator[Event]:
    """Events from the stream's lines (without their line endings). Comments (keep-alives) are skipped;
    an event is dispatched at the blank line that ends it; a truncated last event is dropped."""
    data: list[str]
    name, data, event_id = "", [], None
    for line in lines:
        line = line.rstrip("\r\n")
        if not line:
            if data:
                text = "\n".join(data)
                try:
                    payload: Any = json.loads(text)
                except json.JSONDecodeError:
                    payload = text
                yield Event(name or "message", payload, event_id)
            name, data, event_id = "", [], None
            continue
        if line.startswith(":"):
            continue
        field, _, value = line.partition(":")
        value = value[1:] if value.startswith(" ") else value
        if field == "event":
            name = value
        elif field == "data":
            data.append(value)
        elif field == "id":
            event_id = value
