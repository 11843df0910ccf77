"""Work is bounded by what is charged, and nothing can be kept forever, over real HTTP:
- a tick must hold a minibatch; snapshot metrics count against the kimg quota;
- heavy requests and open event streams are capped per tenant (counted in the database, so every
  replica sees them); an idle stream ends with an `idle` event;
- exports are made once per checkpoint and format, stored and charged;
- DELETE for datasets, jobs, sample sets and models reclaims their objects and credits the quota.
"""

from __future__ import annotations

import anyio
import pytest
import torch
from sqlalchemy import func, select

from gan_core.config import config_to_dict, get_preset
from gan_core.networks import Generator
from gan_core.training.checkpoint import checkpoint_bytes
from service.core.db.models import Blob, Tick
from tests.dbstate import add_checkpoint, set_job
from tests.e2e.harness import LiveServer, images_zip, make_settings, store_keys

CKPT = "ckpt-00000.032.pt"


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    settings = make_settings(tmp_path_factory.mktemp("limits"), auth_required=True, max_kimg=1000,
                             max_heavy_requests_per_tenant=1, max_event_streams_per_tenant=1, events_idle_timeout_s=2)
    with LiveServer(settings) as srv:
        yield srv


def _key(srv, tenant, **quotas) -> dict:
    return {"Authorization": f"Bearer {srv.core.keys.create(tenant, '', quotas)[1]}"}


def _used(srv, tenant) -> int:
    with srv.core.db.read() as s:
        return int(s.scalar(select(func.coalesce(func.sum(Blob.size), 0)).where(Blob.tenant == tenant)))


def _job_with_checkpoint(srv, h, tenant) -> str:
    c = srv.client
    ds = c.post("/v1/datasets", files={"file": ("d.zip", images_zip(8), "application/zip")}, headers=h).json()["id"]
    job = c.post("/v1/jobs", json={"dataset_id": ds, "kimg": 1}, headers=h).json()["id"]
    assert c.post(f"/v1/jobs/{job}/cancel", headers=h).json()["status"] == "canceled"
    cfg = get_preset("cpu-tiny")
    torch.manual_seed(0)
    add_checkpoint(srv.core, tenant, job, CKPT, checkpoint_bytes({"config": config_to_dict(cfg),
                                                                   "G_ema": Generator(cfg.network).state_dict()}))
    return job


def test_a_tick_must_hold_a_minibatch(server):
    h = _key(server, "ticks")
    c = server.client
    ds = c.post("/v1/datasets", files={"file": ("d.zip", images_zip(8), "application/zip")}, headers=h).json()["id"]
    r = c.post("/v1/jobs", json={"dataset_id": ds, "kimg": 1, "tick_kimg": 0.001, "batch_size": 8}, headers=h)
    assert r.status_code == 422 and "at least one minibatch" in r.json()["detail"] and "0.008" in r.json()["detail"]
    assert c.post("/v1/jobs", json={"dataset_id": ds, "kimg": 1, "tick_kimg": 0.008}, headers=h).status_code == 202


def test_snapshot_metrics_count_against_the_kimg_quota(server):
    c, h = server.client, _key(server, "metered", total_kimg=6)
    ds = c.post("/v1/datasets", files={"file": ("d.zip", images_zip(8), "application/zip")}, headers=h).json()["id"]
    body = {"dataset_id": ds, "kimg": 2, "tick_kimg": 0.5, "snapshot_kimg": 1, "metrics": ["kid"],
            "metrics_num_gen": 2000}
    r = c.post("/v1/jobs", json=body, headers=h)  # 2 kimg + 3 evaluated snapshots x 2000 images = 8 kimg
    assert r.status_code == 429 and "training plus snapshot metrics" in r.json()["detail"], r.text
    assert c.post("/v1/jobs", json={**body, "metrics_num_gen": 1000}, headers=h).status_code == 202  # 5 <= 6


def test_heavy_requests_are_capped_per_tenant(server):
    h = _key(server, "heavy")
    job = _job_with_checkpoint(server, h, "heavy")
    slot = server.core.slots.acquire("heavy", "heavy", 1, 60)  # another replica is sampling for this tenant
    try:
        r = server.client.post(f"/v1/jobs/{job}/samples", json={"n": 1}, headers=h)
        assert r.status_code == 429 and "heavy requests" in r.json()["detail"] and r.headers["retry-after"]
        other = _key(server, "light")  # another tenant is not affected
        assert server.client.get("/v1/jobs", headers=other).status_code == 200
    finally:
        server.core.slots.release(slot)
    r = server.client.post(f"/v1/jobs/{job}/samples", json={"n": 1}, headers=h)
    assert r.status_code == 200 and r.headers["content-type"] == "image/png"


def test_event_streams_are_capped_and_an_idle_one_ends(server):
    c, h = server.client, _key(server, "streams")
    ds = c.post("/v1/datasets", files={"file": ("d.zip", images_zip(8), "application/zip")}, headers=h).json()["id"]
    job = c.post("/v1/jobs", json={"dataset_id": ds, "kimg": 1}, headers=h).json()["id"]  # stays queued: no worker
    with c.stream("GET", f"/v1/jobs/{job}/events", headers=h) as first:
        second = c.get(f"/v1/jobs/{job}/events", headers=h)
        assert second.status_code == 429 and "open event streams" in second.json()["detail"]
        events = [line[7:] for line in first.iter_lines() if line.startswith("event: ")]
    assert events == ["state", "idle"]  # nothing new for events_idle_timeout_s: the stream closes, freeing its slot
    with c.stream("GET", f"/v1/jobs/{job}/events", headers=h) as again:
        assert again.status_code == 200


def test_exports_are_made_once_per_checkpoint_and_charged(server):
    h = _key(server, "exports")
    job = _job_with_checkpoint(server, h, "exports")
    before = _used(server, "exports")
    a = server.client.get(f"/v1/jobs/{job}/export", params={"format": "safetensors"}, headers=h)
    assert a.status_code == 200
    cached = [k for k in store_keys(server.store) if f"/jobs/{job}/reports/exports/" in k]
    assert len(cached) == 1 and _used(server, "exports") == before + len(a.content)
    b = server.client.get(f"/v1/jobs/{job}/export", params={"format": "safetensors"}, headers=h)
    assert b.content == a.content and _used(server, "exports") == before + len(a.content)


def test_a_heavy_slot_is_free_before_its_response_is_sent(server):
    """A client that sends its next heavy request as soon as the last one answered must not get a 429:
    the slot is released when the work ends, not after the body has gone out (FastAPI runs a yield
    dependency's exit after sending unless its scope is "function"). The real app, called in-process
    over ASGI, counts the tenant's heavy slots in the database when the response starts."""
    h = _key(server, "slot-order")
    job = _job_with_checkpoint(server, h, "slot-order")
    seen: list[tuple[int, int]] = []

    async def call() -> None:
        scope = {"type": "http", "asgi": {"version": "3.0"}, "http_version": "1.1", "method": "GET", "scheme": "http",
                 "path": f"/v1/jobs/{job}/export", "raw_path": f"/v1/jobs/{job}/export".encode(),
                 "query_string": b"format=safetensors", "root_path": "",
                 "headers": [(b"host", b"127.0.0.1"), (b"authorization", h["Authorization"].encode())],
                 "client": ("127.0.0.1", 50000), "server": ("127.0.0.1", server.port)}

        async def receive() -> dict:
            return {"type": "http.request", "body": b"", "more_body": False}

        async def send(message: dict) -> None:
            if message["type"] == "http.response.start":
                seen.append((message["status"], server.core.slots.in_use("slot-order", "heavy")))

        await server.app(scope, receive, send)

    anyio.run(call)
    assert seen == [(200, 0)]
    r = server.client.get(f"/v1/jobs/{job}/export", params={"format": "safetensors"}, headers=h)
    assert r.status_code == 200  # back to back, over HTTP


def test_deleting_reclaims_storage_and_credits_the_quota(server):
    c, h = server.client, _key(server, "deletes")
    job = _job_with_checkpoint(server, h, "deletes")
    ds = c.get(f"/v1/jobs/{job}", headers=h).json()["dataset_id"]
    stored = c.post(f"/v1/jobs/{job}/samples", json={"seeds": [1, 2], "format": "json"}, headers=h)
    assert stored.status_code == 201
    with_samples = _used(server, "deletes")
    assert c.delete(f"/v1/jobs/{job}/samples/{stored.json()['id']}", headers=h).status_code == 204
    assert _used(server, "deletes") < with_samples
    assert not [k for k in store_keys(server.store) if stored.json()["id"] in k]
    assert c.get(f"/v1/jobs/{job}/samples/{stored.json()['id']}", headers=h).status_code == 404

    running = c.post("/v1/jobs", json={"dataset_id": ds, "kimg": 1}, headers=h).json()["id"]
    set_job(server.core, running, status="running")
    r = c.delete(f"/v1/jobs/{running}", headers=h)
    assert r.status_code == 409 and "cancel it" in r.json()["detail"]
    set_job(server.core, running, status="canceled")

    assert c.delete(f"/v1/jobs/{job}", headers=h).status_code == 204
    assert c.get(f"/v1/jobs/{job}", headers=h).status_code == 404
    assert not [k for k in store_keys(server.store) if f"/jobs/{job}/" in k]
    with server.core.db.read() as s:
        assert s.scalar(select(func.count()).select_from(Tick).where(Tick.job_id == job)) == 0
    assert c.delete(f"/v1/jobs/{running}", headers=h).status_code == 204
    assert c.delete(f"/v1/datasets/{ds}", headers=h).status_code == 204
    assert _used(server, "deletes") == 0
    assert not [k for k in store_keys(server.store) if k.startswith("tenants/deletes/")]


def test_a_job_with_an_unfinished_projection_cannot_be_deleted(server):
    from service.core.db.models import Projection

    h = _key(server, "busy")
    job = _job_with_checkpoint(server, h, "busy")
    with server.core.db.write() as s:
        s.add(Projection(id="proj_" + "1" * 26, tenant="busy", job_id=job, status="running", checkpoint=CKPT,
                         checkpoint_key="k", checkpoint_sha256="0" * 64, config={}, images=[], total_steps=10))
    r = server.client.delete(f"/v1/jobs/{job}", headers=h)
    assert r.status_code == 409 and "proj_" + "1" * 26 in r.json()["detail"] and "cancel" in r.json()["detail"]
    with server.core.db.write() as s:
        s.get(Projection, "proj_" + "1" * 26).status = "canceled"
    assert server.client.delete(f"/v1/jobs/{job}", headers=h).status_code == 204
