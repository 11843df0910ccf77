"""GET /v1/regularizers and /v1/presets over real HTTP, and jobs naming the new regularizers."""

from __future__ import annotations

import hashlib

import pytest

from gan_core.config import PRESETS, config_to_dict
from gan_core.regularizers import REGISTRY
from tests.e2e.harness import LiveServer, images_zip, make_settings, upload_zip


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    with LiveServer(make_settings(tmp_path_factory.mktemp("catalog"))) as srv:
        yield srv


def test_regularizers_lists_the_registry_with_defaults(server):
    r = server.client.get("/v1/regularizers")
    assert r.status_code == 200, r.text
    data = {d["name"]: d for d in r.json()["data"]}
    assert set(data) == set(REGISTRY)
    assert {"diggan", "r1", "r2", "gp1", "dragan", "lecam", "nice", "maskedgan"} <= set(data)
    assert data["lecam"]["params"] == {"decay": 0.99}
    assert data["lecam"]["default_weight"] == 0.3 and data["lecam"]["default_interval"] == 1
    assert data["diggan"]["params"] == {"alpha": 0.5} and data["diggan"]["default_weight"] == 100.0
    assert all(d["description"] for d in data.values())


def test_presets_resolve_to_full_configs(server):
    body = server.client.get("/v1/presets").json()
    assert body["default"] == "cpu-tiny"
    assert body["data"] == {name: config_to_dict(cfg) for name, cfg in PRESETS.items()}
    assert body["data"]["cpu-tiny"]["regularizers"][0]["name"] == "diggan"


def test_jobs_accept_every_registered_regularizer(server):
    ds = upload_zip(server.client, images_zip(8)).json()["id"]
    regs = [{"name": "diggan", "weight": 100, "alpha": 0.5}, {"name": "lecam", "weight": 0.3, "interval": 1,
                                                              "decay": 0.9},
            {"name": "nice", "weight": 1, "interval": 1, "target": 0.5}, {"name": "maskedgan", "weight": 1},
            {"name": "gp1", "weight": 10}, {"name": "dragan", "weight": 10, "noise_scale": 0.25},
            {"name": "r2", "weight": 1}, {"name": "r1", "weight": 1}]
    r = server.client.post("/v1/jobs", json={"dataset_id": ds, "regularizers": regs})
    assert r.status_code == 202, r.text
    got = {g["name"]: g for g in r.json()["config"]["regularizers"]}
    assert got["lecam"] == {"name": "lecam", "weight": 0.3, "interval": 1, "params": {"decay": 0.9},
                            "scale_by_interval": True}
    assert got["nice"]["params"] == {"target": 0.5} and got["dragan"]["params"] == {"noise_scale": 0.25}
    bad = server.client.post("/v1/jobs", json={"dataset_id": ds, "regularizers": [{"name": "lecam", "weight": 1,
                                                                                     "alpha": 1}]})
    assert bad.status_code == 422 and "decay" in bad.json()["detail"]


def test_catalog_needs_a_key_when_auth_is_on(tmp_path):
    keys = [f"alice:{hashlib.sha256(b'key-a').hexdigest()}"]
    with LiveServer(make_settings(tmp_path, auth_required=True, api_keys=keys)) as srv:
        assert srv.client.get("/v1/regularizers").status_code == 401
        assert srv.client.get("/v1/presets", headers={"Authorization": "Bearer key-a"}).status_code == 200


def test_omitted_weights_and_intervals_take_the_advertised_defaults(server):
    """A regularizer named without `weight`/`interval` gets the preset's entry, else what GET /v1/regularizers
    advertises; the stored config shows what was used."""
    advertised = {d["name"]: d for d in server.client.get("/v1/regularizers").json()["data"]}
    ds = upload_zip(server.client, images_zip(8)).json()["id"]
    r = server.client.post("/v1/jobs", json={"dataset_id": ds, "preset": "cpu-tiny",
                                             "regularizers": [{"name": "lecam"}, {"name": "r1"}, {"name": "dragan"}]})
    assert r.status_code == 202, r.text
    got = {g["name"]: g for g in r.json()["config"]["regularizers"]}
    preset_r1 = next(g for g in PRESETS["cpu-tiny"].regularizers if g.name == "r1")
    assert got["r1"]["weight"] == preset_r1.weight and got["r1"]["interval"] == preset_r1.interval  # the preset's
    for name in ("lecam", "dragan"):  # not in the preset: the advertised defaults
        assert got[name]["weight"] == advertised[name]["default_weight"]
        assert got[name]["interval"] == (advertised[name]["default_interval"] or 16)
