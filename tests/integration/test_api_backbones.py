"""SNGAN/BigGAN through the real API and a real worker: a 10-class zip uploaded with class
folders, a tiny biggan-32 job trained on its labels, samples by class, and the 4xx answers for
classes and backbone combinations that do not fit."""

from __future__ import annotations

import io

import pytest
from PIL import Image

from gan_core.data import write_synthetic_classes, zip_folder
from tests.e2e.harness import server_with_worker, wait_job

pytestmark = pytest.mark.slow

# 4 minibatches of 16 (one G step with biggan-32's 4 D steps per G step), one snapshot at the end.
TINY = {"kimg": 0.064, "tick_kimg": 0.032, "snapshot_kimg": 0.064}


@pytest.fixture(scope="module")
def stack(tmp_path_factory):
    with server_with_worker(tmp_path_factory.mktemp("backbones")) as (srv, worker):
        yield srv, worker


@pytest.fixture(scope="module")
def ten_class_zip(tmp_path_factory) -> bytes:
    root = tmp_path_factory.mktemp("ten")
    folder = write_synthetic_classes(root / "shapes", num_classes=10, per_class=3, resolution=32, seed=0)
    return zip_folder(folder, root / "shapes.zip").read_bytes()


def _upload(client, data: bytes, **form: str):
    return client.post("/v1/datasets", files={"file": ("shapes.zip", data, "application/zip")},
                       data={"name": "shapes", **form})


def test_class_folders_upload_and_dataset_checks(stack, ten_class_zip):
    c = stack[0].client
    ds = _upload(c, ten_class_zip, class_folders="true")
    assert ds.status_code == 201, ds.text
    body = ds.json()
    assert body["num_classes"] == 10 and body["class_names"] == [f"class{k}" for k in range(10)]
    assert c.get(f"/v1/datasets/{body['id']}").json()["num_classes"] == 10
    plain = _upload(c, ten_class_zip).json()  # without the flag the folders are not labels
    assert plain["num_classes"] == 0 and plain["class_names"] == []
    r = _upload(c, ten_class_zip, class_folders="maybe")
    assert r.status_code == 422 and "class_folders" in r.json()["detail"]

    presets = c.get("/v1/presets").json()["data"]
    assert presets["biggan-32"]["network"]["arch"] == "biggan" and presets["sngan-32"]["loss"] == "hinge"

    def create(**kw):
        return c.post("/v1/jobs", json={"dataset_id": body["id"], **TINY, **kw})

    r = create(preset="cpu-tiny", arch="biggan")
    assert r.status_code == 422 and "biggan-32" in r.json()["detail"], r.text
    r = create(preset="biggan-32", regularizers=[{"name": "gp1", "weight": 10}])
    assert r.status_code == 422 and "gp1" in r.json()["detail"], r.text


def test_biggan_job_trains_on_labels_and_samples_by_class(stack, ten_class_zip):
    srv, worker = stack
    c = srv.client
    ds = _upload(c, ten_class_zip, class_folders="true").json()
    r = c.post("/v1/jobs", json={"dataset_id": ds["id"], "arch": "biggan",
                                 "regularizers": [{"name": "diggan", "weight": 100, "interval": 2},
                                                  {"name": "r1", "weight": 1, "interval": 2}], **TINY})
    assert r.status_code == 202, r.text
    job = r.json()
    net = job["config"]["network"]
    assert (job["config"]["preset"], net["arch"], net["num_classes"], job["config"]["d_steps"]) == ("biggan-32", "biggan", 10, 4)
    done = wait_job(c, job["id"], lambda j: j["status"] in ("succeeded", "failed", "canceled"), 240, worker)
    assert done["status"] == "succeeded", (done.get("error"), worker.tail())
    assert done["latest_tick"]["loss_D"] is not None and done["latest_tick"]["dig"] is not None

    url = f"/v1/jobs/{job['id']}/samples"
    by_class = c.post(url, json={"seeds": [0, 1, 2, 3], "psi": 1.0, "class_index": 7})
    assert by_class.status_code == 200 and by_class.headers["x-class"] == "7"
    assert Image.open(io.BytesIO(by_class.content)).size == (2 * 34 + 2,) * 2  # 2x2 grid of 32px
    other = c.post(url, json={"seeds": [0, 1, 2, 3], "psi": 1.0, "class_index": 2})
    assert other.status_code == 200 and other.content != by_class.content  # the class changes the images
    stored = c.post(url, json={"seeds": [5], "class_index": 9, "format": "json"})
    assert stored.status_code == 201 and stored.json()["class_index"] == 9

    for bad in (10, 12345):
        r = c.post(url, json={"n": 2, "class_index": bad})
        assert r.status_code == 422 and "class_index must be in [0, 9]" in r.json()["detail"], r.text
    assert c.post(url, json={"n": 2, "class_index": -1}).status_code == 422


def test_sngan_job_is_unconditional(stack, ten_class_zip):
    c = stack[0].client
    ds = _upload(c, ten_class_zip, class_folders="true").json()
    r = c.post("/v1/jobs", json={"dataset_id": ds["id"], "arch": "sngan", "kimg": 0.016, "tick_kimg": 0.016})
    assert r.status_code == 202, r.text
    job = r.json()
    assert job["config"]["preset"] == "sngan-32" and job["config"]["network"]["num_classes"] == 0
    r = c.post(f"/v1/jobs/{job['id']}/samples", json={"n": 2, "class_index": 1})
    assert r.status_code == 422 and "unconditional sngan" in r.json()["detail"], r.text
    # Let it finish so the worker is idle when the module's stack stops.
    done = wait_job(c, job["id"], lambda j: j["status"] in ("succeeded", "failed", "canceled"), 240, stack[1])
    assert done["status"] == "succeeded", done.get("error")
