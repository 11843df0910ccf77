"""diggan client pieces that need no training: SSE parsing, resuming a dropped event stream
(against a real HTTP server that hangs up mid-event), argument parsing."""

from __future__ import annotations

import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlparse

import pytest

from diggan import DigganClient, DigganError
from diggan.cli import parse_regularizer, parse_seeds
from diggan.sse import Event, iter_events


def test_iter_events_follows_the_sse_rules() -> None:
    lines = [": keep-alive", "", "event: state", 'data: {"status":"running"}', "",
             "event: tick", "id: 7", "data: {\"tick\":", "data: 7}", "",  # data lines join with newlines
             "data: plain text", "",  # no event name: "message"; not JSON: kept as text
             "event: tick", "id: 8", 'data: {"tick": 8}']  # no blank line: truncated, dropped
    assert list(iter_events(lines)) == [Event("state", {"status": "running"}), Event("tick", {"tick": 7}, "7"),
                                        Event("message", "plain text")]


class _DroppingSSE(BaseHTTPRequestHandler):
    """First connection: state, tick 1, then half of tick 2 and a hang-up. Later ones: from since_tick."""

    seen: list[tuple[int, str | None]] = []

    def do_GET(self) -> None:  # noqa: N802
        q = parse_qs(urlparse(self.path).query)
        since = int(q.get("since_tick", ["0"])[0])
        type(self).seen.append((since, self.headers.get("Last-Event-ID")))
        self.send_response(200)
        self.send_header("Content-Type", "text/event-stream")
        self.end_headers()
        out = 'event: state\ndata: {"status": "running"}\n\n'
        if since == 0:
            out += 'event: tick\nid: 1\ndata: {"tick": 1, "kimg": 0.1}\n\nevent: tick\nid: 2\ndata: {"ti'
        else:
            out += 'event: tick\nid: 2\ndata: {"tick": 2, "kimg": 0.2}\n\nevent: end\ndata: {"status": "succeeded"}\n\n'
        self.wfile.write(out.encode())
        self.wfile.flush()
        self.close_connection = True  # HTTP/1.0, no length: the stream ends when we hang up

    def log_message(self, *args: object) -> None:
        pass


def test_events_resume_after_the_stream_drops_without_losing_or_repeating_ticks() -> None:
    server = ThreadingHTTPServer(("127.0.0.1", 0), _DroppingSSE)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        with DigganClient(f"http://127.0.0.1:{server.server_address[1]}", api_key="k") as c:
            events = list(c.events("job_x"))
    finally:
        server.shutdown()
    assert [(e.event, e.data.get("tick")) for e in events] == [
        ("state", None), ("tick", 1), ("state", None), ("tick", 2), ("end", None)]
    assert _DroppingSSE.seen == [(0, None), (1, "1")]  # reconnected after tick 1, saying so both ways


def test_unreachable_server_is_a_diggan_error() -> None:
    with DigganClient("http://127.0.0.1:9", api_key="k", timeout=5) as c, pytest.raises(DigganError) as e:
        c.list_datasets()
    assert e.value.status is None and "cannot reach http://127.0.0.1:9" in str(e.value)


def test_cli_argument_parsers() -> None:
    assert parse_seeds("0-3,7, 9") == [0, 1, 2, 3, 7, 9]
    with pytest.raises(ValueError, match="backwards"):
        parse_seeds("5-1")
    assert parse_regularizer("diggan:100") == {"name": "diggan", "weight": 100.0}
    assert parse_regularizer("lecam:0.3:1:decay=0.99") == {"name": "lecam", "weight": 0.3, "interval": 1, "decay": 0.99}
    with pytest.raises(ValueError, match="NAME:WEIGHT"):
        parse_regularizer("diggan")
    assert json.loads(json.dumps(parse_regularizer("r1:1:16"))) == {"name": "r1", "weight": 1.0, "interval": 16}


def test_jobs_create_sends_gpus_and_batch_gpu() -> None:
    from diggan.cli import build_parser, cmd_jobs_create

    sent: dict = {}

    class Recording:  # stands in for the HTTP client: this test is about the flags -> request fields
        def create_job(self, dataset: str, idempotency_key: str | None = None, **fields: object) -> dict:
            sent.update(fields, dataset=dataset)
            return {"id": "job_x"}

    args = build_parser().parse_args(["jobs", "create", "--dataset", "ds_1", "--gpus", "2", "--batch-gpu", "4"])
    assert cmd_jobs_create(Recording(), args) == 0  # type: ignore[arg-type]
    assert sent["gpus"] == 2 and sent["batch_gpu"] == 4 and sent["dataset"] == "ds_1"
