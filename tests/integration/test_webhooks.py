"""Webhooks with a real local HTTP receiver and a real worker: a job's events arrive signed (Standard
Webhooks), in order, and the first is retried after the receiver fails twice; the delivery log shows it.
A webhook to a private or loopback address is refused unless the setting allows it; redirects are not
followed."""

from __future__ import annotations

import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
from standardwebhooks.webhooks import Webhook, WebhookVerificationError

from tests.e2e.harness import LiveServer, images_zip, make_settings, server_with_worker, upload_zip, wait_for, wait_job

TINY = {"preset": "cpu-tiny", "kimg": 0.032, "tick_kimg": 0.016, "snapshot_kimg": 0.032}


class Receiver:
    """A loopback HTTP endpoint that records what it gets and fails the first `fail_first` requests."""

    def __init__(self, fail_first: int = 0, redirect_to: str | None = None):
        self.received: list[tuple[dict, bytes]] = []
        self.fail_left, self.redirect_to = fail_first, redirect_to
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802 - the http.server API
                body = self.rfile.read(int(self.headers["content-length"]))
                receiver.received.append(({k.lower(): v for k, v in self.headers.items()}, body))
                if receiver.redirect_to:
                    self.send_response(307)
                    self.send_header("Location", receiver.redirect_to)
                elif receiver.fail_left > 0:
                    receiver.fail_left -= 1
                    self.send_response(500)
                else:
                    self.send_response(204)
                self.end_headers()

            def log_message(self, *args: object) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/hook"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.server.shutdown()


def test_job_events_arrive_signed_in_order_and_are_retried(tmp_path):
    receiver = Receiver(fail_first=2)
    try:
        with server_with_worker(tmp_path, webhooks_allow_private=True, webhook_retry_base_s=0.3,
                                webhook_poll_s=0.2) as (srv, worker):
            c = srv.client
            secret = c.get("/v1/webhooks").json()["secret"]
            assert secret.startswith("whsec_")
            ds = upload_zip(c, images_zip(8)).json()["id"]
            job = c.post("/v1/jobs", json={"dataset_id": ds, **TINY, "name": "hooked",
                                           "webhook": {"url": receiver.url}}).json()
            assert job["webhook"]["url"] == receiver.url and job["name"] == "hooked"
            done = wait_job(c, job["id"], lambda j: j["status"] in ("succeeded", "failed"), 180, worker)
            assert done["status"] == "succeeded", done

            def all_delivered():
                log = c.get(f"/v1/jobs/{job['id']}/webhook-deliveries").json()["data"]
                return log if log and all(d["status"] == "delivered" for d in log) else None

            log = wait_for(all_delivered, 60, "every delivery")
    finally:
        receiver.close()
    # The log: the first delivery failed twice, then went through; every one is recorded.
    assert log[0]["attempts"] == 3 and log[0]["last_status"] == 204 and all(d["attempts"] == 1 for d in log[1:])
    events = [(d["event"], d["payload"]["data"].get("status")) for d in log]
    assert events[0] == ("job.status", "queued") and events[1] == ("job.status", "running")
    assert events[-1] == ("job.status", "succeeded") and ("job.checkpoint", None) in events
    # What arrived: the failed tries, then each event once, in the order of the log, each signed.
    ok = receiver.received[2:]
    assert [h["webhook-id"] for h, _ in ok] == [d["id"] for d in log]
    assert [h["webhook-id"] for h, _ in receiver.received[:3]] == [log[0]["id"]] * 3  # the same id, retried
    verifier = Webhook(secret)
    for headers, body in ok:
        payload = verifier.verify(body, headers)  # raises on a bad signature or an old timestamp
        assert payload["data"].get("id") == job["id"] or payload["data"].get("job_id") == job["id"]
    tampered = dict(ok[0][0])
    with pytest.raises(WebhookVerificationError, match="signature"):
        verifier.verify(ok[0][1].replace(b"queued", b"running"), tampered)
    assert json.loads(ok[0][1])["type"] == "job.status"


def test_private_addresses_are_refused_and_redirects_not_followed(tmp_path):
    with LiveServer(make_settings(tmp_path)) as srv:  # webhooks_allow_private off (the default)
        c = srv.client
        for url in ("http://127.0.0.1:9/x", "http://10.1.2.3/x", "http://169.254.169.254/latest/meta-data",
                    "http://[::1]/x", "http://localhost/x"):
            r = c.put("/v1/webhooks", json={"url": url})
            assert r.status_code == 422 and ("private or local" in r.json()["detail"]), (url, r.text)
        ds = upload_zip(c, images_zip(8)).json()["id"]
        r = c.post("/v1/jobs", json={"dataset_id": ds, "webhook": {"url": "http://192.168.0.1/x"}})
        assert r.status_code == 422 and "private or local" in r.json()["detail"]
        assert c.put("/v1/webhooks", json={"url": "ftp://example.com/x"}).status_code == 422

    target = Receiver()
    redirector = Receiver(redirect_to=target.url)
    try:
        with LiveServer(make_settings(tmp_path / "b", webhooks_allow_private=True, webhook_poll_s=0.2,
                                      webhook_retry_base_s=60)) as srv:
            c = srv.client
            assert c.put("/v1/webhooks", json={"url": redirector.url}).status_code == 200  # the tenant default
            ds = upload_zip(c, images_zip(8)).json()["id"]
            job = c.post("/v1/jobs", json={"dataset_id": ds}).json()["id"]
            first = wait_for(lambda: [d for d in c.get(f"/v1/jobs/{job}/webhook-deliveries").json()["data"]
                                      if d["attempts"]], 30, "a delivery attempt")[0]
            assert first["status"] == "pending" and first["last_status"] == 307 and "redirects" in first["last_error"]
            assert target.received == [] and len(redirector.received) == 1
    finally:
        target.close()
        redirector.close()
