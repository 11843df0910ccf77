"""Jobs over real HTTP without a worker: validation, idempotency, pagination, 404s, cancel of a
queued job, samples before any checkpoint, SSE, the stale sweep, and tenant isolation."""

from __future__ import annotations

import hashlib
import json

import pytest

from service.core.sweep import sweep
from tests.dbstate import set_job
from tests.e2e.harness import LiveServer, images_zip, make_settings, upload_zip


@pytest.fixture(scope="module", params=["sqlite", "postgresql"])
def server(request, tmp_path_factory):
    db = request.getfixturevalue("postgres").fresh_database() if request.param == "postgresql" else ""
    settings = make_settings(tmp_path_factory.mktemp("jobs"), database_url=db, max_kimg=1000, stale_after_s=60,
                             max_attempts=2)
    with LiveServer(settings) as srv:
        yield srv


@pytest.fixture(scope="module")
def dataset_id(server):
    r = upload_zip(server.client, images_zip(8))
    assert r.status_code == 201, r.text
    return r.json()["id"]


def _create(server, body, **headers):
    return server.client.post("/v1/jobs", json=body, headers=headers)


def test_create_uses_preset_defaults_with_diggan_on(server, dataset_id):
    r = _create(server, {"dataset_id": dataset_id})
    assert r.status_code == 202, r.text
    job = r.json()
    assert job["status"] == "queued" and job["id"].startswith("job_")
    cfg = job["config"]
    assert cfg["preset"] == "cpu-tiny" and cfg["kimg"] == 5.0
    assert [g["name"] for g in cfg["regularizers"]] == ["diggan", "r1"]
    assert job["progress"] == {"kimg": 0.0, "total_kimg": 5.0, "fraction": 0.0, "eta_seconds": None}


def test_create_with_overrides(server, dataset_id):
    body = {"dataset_id": dataset_id, "preset": "cpu-tiny", "kimg": 2, "seed": 7, "augment": "diffaugment",
            "regularizers": [{"name": "diggan", "weight": 50, "alpha": 0.25}, {"name": "r1", "weight": 10}],
            "snapshot_kimg": 0.5, "tick_kimg": 0.25}
    cfg = _create(server, body).json()["config"]
    assert cfg["kimg"] == 2 and cfg["seed"] == 7 and cfg["augment"]["kind"] == "diffaugment"
    assert cfg["regularizers"][0] == {"name": "diggan", "weight": 50.0, "interval": 8, "params": {"alpha": 0.25},
                                      "scale_by_interval": True}
    assert cfg["regularizers"][1]["weight"] == 10.0
    assert cfg["tick_kimg"] == 0.25 and cfg["snapshot_ticks"] == 2


def test_batch_gpu_is_stored_in_the_config(server, dataset_id):
    cfg = _create(server, {"dataset_id": dataset_id, "gpus": 1, "batch_gpu": 4}).json()["config"]
    assert cfg["gpus"] == 1 and cfg["batch_gpu"] == 4 and cfg["batch_size"] == 8


@pytest.mark.parametrize("patch,needle", [
    ({"preset": "huge"}, "cpu-tiny, cpu-faces, low-shot-256, paper256"),
    ({"augment": "mixup"}, "'ada', 'diffaugment' or 'none'"),
    ({"regularizers": [{"name": "gp", "weight": 1}]}, "diggan, dragan, gp1, lecam, maskedgan, nice, r1, r2"),
    ({"regularizers": [{"name": "diggan", "weight": 1, "beta": 2}]}, "alpha"),
    ({"regularizers": [{"name": "r1", "weight": -1}]}, "greater than or equal"),
    ({"kimg": -1}, "greater than 0"),
    ({"kimg": 0}, "greater than 0"),
    ({"kimg": 1e9}, "<= 1000"),
    ({"kimg": "lots"}, "valid number"),
    ({"seed": -3}, "greater than or equal"),
    ({"bogus": 1}, "Extra inputs"),
    ({"snapshot_kimg": 0}, "greater than 0"),
    ({"gpus": 2}, "gpus must be <= 1 on this server (DIGGAN_MAX_JOB_GPUS)"),
    ({"gpus": 0}, "greater than or equal to 1"),
    ({"batch_gpu": 3}, "batch_gpu must divide batch_size / gpus = 8"),
])
def test_invalid_job_bodies_are_422_naming_valid_values(server, dataset_id, patch, needle):
    r = _create(server, {"dataset_id": dataset_id, **patch})
    assert r.status_code == 422, r.text
    assert needle in r.json()["detail"], r.json()["detail"]


def test_unknown_dataset_is_404(server):
    for ds in ("ds_00000000000000000000000000", "../x"):
        r = _create(server, {"dataset_id": ds})
        assert r.status_code == 404 and "dataset" in r.json()["detail"]


def test_idempotency_key(server, dataset_id):
    body = {"dataset_id": dataset_id, "kimg": 1}
    a = _create(server, body, **{"Idempotency-Key": "abc-123"})
    b = _create(server, body, **{"Idempotency-Key": "abc-123"})
    assert a.status_code == 202 and b.status_code == 200 and a.json()["id"] == b.json()["id"]
    c = _create(server, {**body, "kimg": 2}, **{"Idempotency-Key": "abc-123"})
    assert c.status_code == 409 and "different" in c.json()["detail"]
    d = _create(server, body, **{"Idempotency-Key": "another"})
    assert d.status_code == 202 and d.json()["id"] != a.json()["id"]


def test_list_pagination_newest_first_and_status_filter(server, dataset_id):
    ids = [_create(server, {"dataset_id": dataset_id, "kimg": 0.5}).json()["id"] for _ in range(5)]
    seen, cursor = [], None
    while True:
        params = {"limit": 2, **({"cursor": cursor} if cursor else {})}
        page = server.client.get("/v1/jobs", params=params).json()
        assert len(page["data"]) <= 2
        seen += [j["id"] for j in page["data"]]
        cursor = page["next_cursor"]
        assert page["has_more"] == (cursor is not None)
        if not cursor:
            break
    assert seen == sorted(seen, reverse=True) and len(seen) == len(set(seen))
    assert seen[:5] == ids[::-1]
    server.client.post(f"/v1/jobs/{ids[0]}/cancel")
    canceled = server.client.get("/v1/jobs", params={"status": "canceled"}).json()["data"]
    assert ids[0] in [j["id"] for j in canceled] and all(j["status"] == "canceled" for j in canceled)
    assert server.client.get("/v1/jobs", params={"status": "exploded"}).status_code == 422
    assert server.client.get("/v1/jobs", params={"limit": 0}).status_code == 422
    assert server.client.get("/v1/jobs", params={"cursor": "zzz"}).status_code == 422


@pytest.mark.parametrize("path", ["", "/metrics", "/checkpoints", "/checkpoints/latest", "/events"])
@pytest.mark.parametrize("job_id", ["job_00000000000000000000000000", "job_x", "ds_00000000000000000000000000"])
def test_unknown_or_malformed_job_ids_are_404(server, job_id, path):
    r = server.client.get(f"/v1/jobs/{job_id}{path}")
    assert r.status_code == 404, r.text
    assert server.client.post(f"/v1/jobs/{job_id}/cancel").status_code == 404
    assert server.client.post(f"/v1/jobs/{job_id}/samples", json={"n": 1}).status_code == 404


def test_cancel_queued_job_and_repeat(server, dataset_id):
    job = _create(server, {"dataset_id": dataset_id}).json()
    r = server.client.post(f"/v1/jobs/{job['id']}/cancel")
    assert r.status_code == 200 and r.json()["status"] == "canceled" and r.json()["finished_at"]
    again = server.client.post(f"/v1/jobs/{job['id']}/cancel")
    assert again.status_code == 200 and again.json()["status"] == "canceled"


def test_delete_dataset_in_use_is_409(server):
    ds = upload_zip(server.client, images_zip(8)).json()
    job = _create(server, {"dataset_id": ds["id"]}).json()
    r = server.client.delete(f"/v1/datasets/{ds['id']}")
    assert r.status_code == 409 and job["id"] in r.json()["detail"]
    server.client.post(f"/v1/jobs/{job['id']}/cancel")
    assert server.client.delete(f"/v1/datasets/{ds['id']}").status_code == 204


def test_cancel_finished_job_is_409(server, dataset_id):
    job = _create(server, {"dataset_id": dataset_id}).json()
    set_job(server.core, job["id"], status="succeeded")
    r = server.client.post(f"/v1/jobs/{job['id']}/cancel")
    assert r.status_code == 409 and "succeeded" in r.json()["detail"]


def test_samples_before_any_checkpoint_is_409_and_limits_are_422(server, dataset_id):
    job = _create(server, {"dataset_id": dataset_id}).json()
    r = server.client.post(f"/v1/jobs/{job['id']}/samples", json={"n": 4})
    assert r.status_code == 409 and "no checkpoint yet" in r.json()["detail"]
    for body, needle in [({"n": 10**6}, "at most 64"), ({"psi": 1e9}, "psi must be within"),
                         ({"n": 0}, "greater than or equal"), ({"format": "gif"}, "'grid', 'zip' or 'json'"),
                         ({"seeds": list(range(65))}, "at most 64"), ({"seeds": [-1]}, "greater than or equal")]:
        r = server.client.post(f"/v1/jobs/{job['id']}/samples", json=body)
        assert r.status_code == 422 and needle in r.json()["detail"], (body, r.text)


def test_events_stream_ends_at_terminal_state(server, dataset_id):
    job = _create(server, {"dataset_id": dataset_id}).json()
    server.client.post(f"/v1/jobs/{job['id']}/cancel")
    with server.client.stream("GET", f"/v1/jobs/{job['id']}/events") as r:
        assert r.headers["content-type"].startswith("text/event-stream")
        text = "".join(r.iter_text())
    events = [line.split(": ", 1)[1] for line in text.splitlines() if line.startswith("event: ")]
    assert events == ["state", "end"]
    data = [json.loads(line[6:]) for line in text.splitlines() if line.startswith("data: ")]
    assert data[0]["status"] == "canceled" and data[1] == {"status": "canceled"}


def test_stale_sweep_requeues_then_fails(server, dataset_id):
    """A running job whose worker stopped heart-beating (on the database's clock) is re-queued, then failed
    after max_attempts."""
    core, settings = server.core, server.app.state.settings
    job_id = _create(server, {"dataset_id": dataset_id}).json()["id"]
    sent: list[str] = []

    def orphan(attempt: int) -> None:
        set_job(core, job_id, status="running", worker_id="dead-worker", attempt=attempt,
                heartbeat_age_s=settings.stale_after_s + 5)

    orphan(1)
    actions = dict(sweep(core.db, settings, lambda t, j, g: sent.append(j)))
    assert actions[job_id].startswith("re-queued") and sent == [job_id]
    job = server.client.get(f"/v1/jobs/{job_id}").json()
    assert job["status"] == "queued" and job["attempt"] == 1

    # A live worker (fresh heartbeat) is left alone.
    set_job(core, job_id, status="running", heartbeat_age_s=0)
    assert job_id not in dict(sweep(core.db, settings, lambda t, j, g: sent.append(j)))

    orphan(2)
    actions = dict(sweep(core.db, settings, lambda t, j, g: sent.append(j)))
    assert actions[job_id].startswith("failed")
    job = server.client.get(f"/v1/jobs/{job_id}").json()
    assert job["status"] == "failed" and "stopped responding" in job["error"] and "batch_size" in job["error"]


def test_tenants_are_isolated_and_keys_required(tmp_path):
    keys = [f"alice:{hashlib.sha256(b'key-a').hexdigest()}", f"bob:{hashlib.sha256(b'key-b').hexdigest()}"]
    with LiveServer(make_settings(tmp_path, auth_required=True, api_keys=keys)) as srv:
        c = srv.client
        assert c.get("/v1/datasets").status_code == 401
        assert c.get("/v1/datasets", headers={"Authorization": "Bearer wrong"}).status_code == 401
        a, b = {"Authorization": "Bearer key-a"}, {"X-API-Key": "key-b"}
        ds = c.post("/v1/datasets", files={"file": ("d.zip", images_zip(8), "application/zip")}, headers=a).json()
        job = c.post("/v1/jobs", json={"dataset_id": ds["id"]}, headers=a).json()
        assert c.get(f"/v1/datasets/{ds['id']}", headers=b).status_code == 404
        assert c.get(f"/v1/jobs/{job['id']}", headers=b).status_code == 404
        assert c.post(f"/v1/jobs/{job['id']}/cancel", headers=b).status_code == 404
        assert c.post("/v1/jobs", json={"dataset_id": ds["id"]}, headers=b).status_code == 404
        assert c.get("/v1/jobs", headers=b).json()["data"] == []
        assert c.get(f"/v1/jobs/{job['id']}", headers=a).status_code == 200
        assert all(k.startswith("tenants/alice/") for k in (o.key for o in srv.store.list("")))


def test_name_and_metadata_are_returned_and_filter_the_list(server, dataset_id):
    a = _create(server, {"dataset_id": dataset_id, "name": "obama-run", "metadata": {"team": "vision", "exp": "7"}})
    b = _create(server, {"dataset_id": dataset_id, "name": "obama-run", "metadata": {"team": "audio"}})
    assert a.status_code == 202 and a.json()["name"] == "obama-run" and a.json()["metadata"]["exp"] == "7"
    got = server.client.get(f"/v1/jobs/{a.json()['id']}").json()
    assert got["metadata"] == {"team": "vision", "exp": "7"}
    by_name = server.client.get("/v1/jobs", params={"name": "obama-run"}).json()["data"]
    assert [j["id"] for j in by_name] == [b.json()["id"], a.json()["id"]]
    by_meta = server.client.get("/v1/jobs", params={"metadata[team]": "vision"}).json()["data"]
    assert [j["id"] for j in by_meta] == [a.json()["id"]]
    both = server.client.get("/v1/jobs", params={"metadata[team]": "vision", "metadata[exp]": "8"}).json()["data"]
    assert both == []
    for bad in ({"metadata": {f"k{i}": "v" for i in range(17)}}, {"metadata": {"bad key": "v"}},
                {"metadata": {"k": "x" * 513}}, {"name": "x" * 201}):
        r = _create(server, {"dataset_id": dataset_id, **bad})
        assert r.status_code == 422, (bad, r.text)
    assert server.client.get("/v1/jobs", params={"metadata[bad key]": "x"}).status_code == 422
