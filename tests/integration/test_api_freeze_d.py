"""Freeze-D as a job field (POST /v1/jobs `freeze_d_layers`): stored in the job's resolved config (what the
worker hands to gan_core's Trainer), refused without init_from, beyond the discriminator's layer count, and
for a network without the StyleGAN2 discriminator. No worker: the jobs stay queued."""

from __future__ import annotations

import pytest

from tests.dbstate import add_checkpoint
from tests.e2e.harness import LiveServer, images_zip, make_settings


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    with LiveServer(make_settings(tmp_path_factory.mktemp("freeze"))) as srv:
        c = srv.client
        ds = c.post("/v1/datasets", files={"file": ("d.zip", images_zip(8), "application/zip")}).json()["id"]
        src = c.post("/v1/jobs", json={"dataset_id": ds, "preset": "cpu-tiny", "kimg": 1}).json()["id"]
        c.post(f"/v1/jobs/{src}/cancel")
        add_checkpoint(srv.core, "default", src, "ckpt-00000.032.pt", b"weights: only their existence is checked here")
        yield {"c": c, "ds": ds, "src": src}


def _create(world, **fields):
    return world["c"].post("/v1/jobs", json={"dataset_id": world["ds"], "kimg": 1, **fields})


def test_the_stored_config_carries_freeze_d_layers(world):
    r = _create(world, init_from={"job": world["src"]}, freeze_d_layers=10)
    assert r.status_code == 202, r.text
    job = r.json()
    assert job["config"]["freeze_d_layers"] == 10 and job["request"]["freeze_d_layers"] == 10
    assert world["c"].get(f"/v1/jobs/{job['id']}").json()["config"]["freeze_d_layers"] == 10
    # The config the worker builds its Trainer from has it.
    from gan_core.config import config_from_dict

    assert config_from_dict(job["config"]).freeze_d_layers == 10
    # Left out (or 0): off, as before.
    plain = _create(world, init_from={"job": world["src"]}).json()
    assert plain["config"]["freeze_d_layers"] == 0 and "freeze_d_layers" not in plain["request"]
    for j in (job, plain):
        world["c"].post(f"/v1/jobs/{j['id']}/cancel")


@pytest.mark.parametrize("fields,words", [
    ({"freeze_d_layers": 4}, "needs init_from"),
    ({"freeze_d_layers": 14, "init_from": "src"}, "has 13 freezable layers (b64.fromrgb .. b8.skip"),
    ({"freeze_d_layers": -1, "init_from": "src"}, "freeze_d_layers"),
    ({"freeze_d_layers": 2.5, "init_from": "src"}, "freeze_d_layers"),
])
def test_bad_freeze_d_is_a_422_with_a_message(world, fields, words):
    if fields.get("init_from") == "src":
        fields = {**fields, "init_from": {"job": world["src"]}}
    r = _create(world, **fields)
    assert r.status_code == 422 and words in r.json()["detail"], r.text
