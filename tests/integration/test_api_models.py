"""Pretrained models over real HTTP: upload the NVlabs fixture pkl, start real jobs from it (and from
a job's checkpoint) on a real worker, and refuse bad uploads and bad `init_from`s with 4xx."""

from __future__ import annotations

import os
import pickle
from pathlib import Path

import pytest
import torch

from gan_core.config import config_from_dict
from gan_core.networks import Generator
from gan_core.training.checkpoint import load_checkpoint_bytes
from gan_core.training.transfer import load_pretrained
from tests.e2e.harness import (
    LiveServer,
    images_zip,
    make_settings,
    png_bytes,
    server_with_worker,
    store_keys,
    upload_zip,
    wait_job,
)

pytestmark = pytest.mark.slow

PKL = Path(__file__).resolve().parents[1] / "fixtures" / "nvlabs" / "tiny.pkl"
# cpu-tiny batch 8: 2 iterations, one tick, one (final) checkpoint.
SHORT = {"preset": "cpu-tiny", "kimg": 0.016, "tick_kimg": 0.016, "snapshot_kimg": 0.016}


def _upload_pkl(c, data: bytes = b"", name: str = "tiny"):
    return c.post("/v1/models", files={"file": ("tiny.pkl", data or PKL.read_bytes(), "application/octet-stream")},
                  data={"name": name})


def _max_diff(a: dict, b: dict) -> float:
    assert set(a) == set(b)
    return max((a[k].float() - b[k].float()).abs().max().item() for k in a)


class _System:
    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


def test_upload_validate_list_delete_without_worker(tmp_path):
    settings = make_settings(tmp_path, max_model_upload_bytes=2_000_000)
    with LiveServer(settings) as srv:  # no worker: jobs stay queued
        c = srv.client
        r = _upload_pkl(c)
        assert r.status_code == 201, r.text
        m = r.json()
        assert m["kind"] == "nvlabs-pkl" and m["resolution"] == 32 and m["has_discriminator"] is True
        assert m["network"]["channel_max"] == 16 and m["network"]["mapping_layers"] == 2 and m["name"] == "tiny"
        assert any("mixed precision" in n for n in m["notes"])
        raw = c.post("/v1/models?name=raw", content=PKL.read_bytes(), headers={"content-type": "application/octet-stream"})
        assert raw.status_code == 201 and raw.json()["name"] == "raw", raw.text
        assert [x["id"] for x in c.get("/v1/models").json()["data"]] == [raw.json()["id"], m["id"]]
        assert c.get(f"/v1/models/{m['id']}").json()["sha256"] == m["sha256"]

        # Bad uploads: 4xx with a reason, and nothing stored for them.
        before = store_keys(srv.store)
        r = c.post("/v1/models", files={"file": ("cat.png", png_bytes(), "image/png")})
        assert r.status_code == 422 and "neither one of our .pt checkpoints" in r.json()["detail"]
        r = _upload_pkl(c, PKL.read_bytes()[:100_000])
        assert r.status_code == 422 and "truncated or damaged" in r.json()["detail"]
        marker = tmp_path / "pwned"
        r = _upload_pkl(c, pickle.dumps({"G_ema": _System(marker)}))
        assert r.status_code == 422 and "refusing to load" in r.json()["detail"] and "system" in r.json()["detail"]
        assert not marker.exists()
        r = _upload_pkl(c, b"\x80\x04" + os.urandom(2_100_000))
        assert r.status_code == 413 and "limit" in r.json()["detail"]
        assert c.post("/v1/models", content=b"x", headers={"content-type": "text/plain"}).status_code == 415
        assert c.post("/v1/models", files={"other": ("a", b"b")}).status_code == 400
        assert store_keys(srv.store) == before

        # A queued job that starts from the model keeps it from being deleted.
        ds = upload_zip(c, images_zip(8)).json()
        job = c.post("/v1/jobs", json={"dataset_id": ds["id"], "init_from": {"model": m["id"]}, **SHORT})
        assert job.status_code == 202, job.text
        assert c.delete(f"/v1/models/{m['id']}").status_code == 409
        c.post(f"/v1/jobs/{job.json()['id']}/cancel")
        assert c.delete(f"/v1/models/{m['id']}").status_code == 204
        assert c.get(f"/v1/models/{m['id']}").status_code == 404
        assert not [k for k in store_keys(srv.store) if m["id"] in k]
        assert c.get("/v1/models/model_" + "0" * 26).status_code == 404
        assert c.get("/v1/models/nope").status_code == 404


def test_another_tenants_model_is_invisible(tmp_path):
    with LiveServer(make_settings(tmp_path, auth_required=True, quota_requests_per_s=1000, quota_burst=1000)) as srv:
        ks = srv.core.keys
        A = {"Authorization": f"Bearer {ks.create('alice', 'a')[1]}"}
        B = {"Authorization": f"Bearer {ks.create('bob', 'b')[1]}"}
        c = srv.client
        m = c.post("/v1/models", files={"file": ("tiny.pkl", PKL.read_bytes())}, headers=A).json()["id"]
        ds_b = c.post("/v1/datasets", files={"file": ("d.zip", images_zip(8), "application/zip")}, headers=B).json()
        assert c.get("/v1/models", headers=B).json()["data"] == []
        assert c.get(f"/v1/models/{m}", headers=B).status_code == 404
        assert c.delete(f"/v1/models/{m}", headers=B).status_code == 404
        r = c.post("/v1/jobs", json={"dataset_id": ds_b["id"], "init_from": {"model": m}, **SHORT}, headers=B)
        assert r.status_code == 404 and "no model" in r.json()["detail"]
        assert c.get(f"/v1/models/{m}", headers=A).status_code == 200
        assert all(k.startswith(("tenants/alice/", "tenants/bob/")) for k in store_keys(srv.store))
        assert not [k for k in store_keys(srv.store) if k.startswith("tenants/bob/") and "model" in k]


@pytest.fixture(scope="module")
def stack(tmp_path_factory):
    with server_with_worker(tmp_path_factory.mktemp("models")) as (srv, worker):
        yield srv, worker


def test_job_from_pkl_and_from_a_job_checkpoint(stack):
    srv, worker = stack
    c = srv.client
    model = _upload_pkl(c).json()
    # 64x64 images: the job trains at the model's 32x32 (the trainer resizes).
    ds = c.post("/v1/datasets", files={"file": ("d.zip", images_zip(8, size=64), "application/zip")},
                data={"resolution": "64"}).json()
    assert ds["resolution"] == 64

    # Bad init_froms: 4xx before anything is queued.
    bad = [({"init_from": {"model": "model_" + "0" * 26}}, 404, "no model"),
           ({"init_from": {"model": "nope"}}, 404, "no model"),
           ({"init_from": {"job": "job_" + "0" * 26}}, 404, "no job"),
           ({"init_from": {"model": model["id"], "job": "x"}}, 422, "exactly one"),
           ({"init_from": {"model": model["id"]}, "resolution": 64}, 422, "conflicts with the pretrained"),
           ({"init_from": {"model": model["id"]}, "arch": "sngan", "preset": None}, 422, "conflicts with the pretrained"),
           ({"resolution": 48}, 422, "power of two")]
    for extra, code, text in bad:
        r = c.post("/v1/jobs", json={"dataset_id": ds["id"], **SHORT, **extra})
        assert r.status_code == code and text in r.json()["detail"], (extra, r.status_code, r.text)

    r = c.post("/v1/jobs", json={"dataset_id": ds["id"], "init_from": {"model": model["id"]}, **SHORT})
    assert r.status_code == 202, r.text
    job = r.json()
    assert job["init_from"] == {"model": model["id"], "kind": "nvlabs-pkl", "sha256": model["sha256"],
                                "object_key": f"tenants/default/models/{model['id']}/model.pt"}
    assert job["config"]["network"] == model["network"]
    done = wait_job(c, job["id"], lambda j: j["status"] in ("succeeded", "failed", "canceled"), 240, worker)
    assert done["status"] == "succeeded", (done["error"], worker.tail())
    assert b"starts from model" in Path(worker.log_path).read_bytes()

    # Its checkpoint trained two steps away from the pkl's weights, not from a fresh init.
    ckpt = load_checkpoint_bytes(c.get(f"/v1/jobs/{job['id']}/checkpoints/latest").content)
    pkl = load_pretrained(PKL)
    cfg = config_from_dict(ckpt["config"])
    torch.manual_seed(cfg.seed)  # what the job's G would have been without init_from
    fresh = Generator(cfg.network).state_dict()
    moved, fresh_gap = _max_diff(ckpt["G"], pkl.G), _max_diff(fresh, pkl.G)
    assert 0 < moved < 0.05 < fresh_gap, (moved, fresh_gap)
    assert 0 < _max_diff(ckpt["D"], pkl.D) < 0.05
    grid = c.get(f"/v1/jobs/{job['id']}/checkpoints/latest/grid")
    assert grid.status_code == 200 and grid.headers["content-type"] == "image/png"

    # A second job continues from the first one's checkpoint (same network, fresh schedule).
    r = c.post("/v1/jobs", json={"dataset_id": ds["id"], "init_from": {"job": job["id"], "checkpoint": "latest"},
                                 **SHORT})
    assert r.status_code == 202, r.text
    job2 = r.json()
    assert job2["init_from"]["checkpoint"] == done["latest_checkpoint"] and job2["init_from"]["job"] == job["id"]
    done2 = wait_job(c, job2["id"], lambda j: j["status"] in ("succeeded", "failed", "canceled"), 240, worker)
    assert done2["status"] == "succeeded", (done2["error"], worker.tail())
    ckpt2 = load_checkpoint_bytes(c.get(f"/v1/jobs/{job2['id']}/checkpoints/latest").content)
    assert 0 < _max_diff(ckpt2["G"], ckpt["G"]) < 0.05
    assert done2["resumes"] == []  # started, not resumed

    # A job's checkpoint uploads as a model too.
    r = c.post("/v1/models", files={"file": ("ckpt.pt", c.get(f"/v1/jobs/{job2['id']}/checkpoints/latest").content)})
    assert r.status_code == 201 and r.json()["kind"] == "checkpoint" and r.json()["network"] == model["network"]
