"""The dashboard's after-training tools in a real headless Chromium (as tests/e2e/test_dashboard.py), against the
real API and a real Celery worker on the light queue, on a briefly trained cpu-tiny checkpoint:

1. Upload one of the generator's own samples as a photo and watch its projection: the progress bar is driven
   by the projection's event stream through intermediate values to 100 %, then target, reconstruction and the
   optimisation GIF show; the result becomes the edit source. Drag the SeFa slider (keyboard, as a user would)
   and the image follows: the one shown equals the API's edit at that strength. A style-mixing grid, saved
   latents, an ONNX download from the export card.
2. The API-only features now in the page: a new job started from another job's checkpoint with Freeze-D, and
   the sampler's class selection for a class-conditional (biggan) job.

Screenshots (JPEG) go to $DIGGAN_SCREENSHOTS (default: the test's tmp_path): dashboard-projection.jpg and
dashboard-edit.jpg.
"""

from __future__ import annotations

import io
import zipfile
from pathlib import Path

import numpy as np
import pytest
import torch

from tests.dbstate import add_checkpoint
from tests.e2e.harness import LiveServer, Worker, make_settings
from tests.e2e.test_dashboard import PROGRESS_RECORDER, browser, new_page, shots, wait_image  # noqa: F401 (fixtures)
from tests.editing_world import RES, job_with_checkpoint, pixels, trained_checkpoint

pytestmark = pytest.mark.slow

# The projection's bar: every value it takes (as PROGRESS_RECORDER does for the job's bar).
PROJ_RECORDER = PROGRESS_RECORDER.replace("__progress", "__proj").replace('"job-progress"', '"proj-progress"')


@pytest.fixture(scope="module")
def stack(tmp_path_factory):
    root = tmp_path_factory.mktemp("dash-ed")
    ckpt = trained_checkpoint(root)
    settings = make_settings(root / "srv", worker_heartbeat_s=0.5)
    worker = Worker(settings, root / "worker.log", queues="light", name="light").start()
    try:
        with LiveServer(settings) as srv:
            worker.wait_ready()
            job = job_with_checkpoint(srv.client, srv.core, "default", ckpt)
            yield srv, worker, job, root
    finally:
        worker.stop()


def _own_sample(srv, job: str, seed: int, path: Path) -> Path:
    r = srv.client.post(f"/v1/jobs/{job}/samples", json={"seeds": [seed], "psi": 1.0, "format": "zip"})
    with zipfile.ZipFile(io.BytesIO(r.content)) as zf:
        path.write_bytes(zf.read(zf.namelist()[0]))
    return path


def test_project_a_photo_then_edit_it_with_the_slider(browser, stack, tmp_path, shots):  # noqa: F811
    srv, worker, job, _ = stack
    photo = _own_sample(srv, job, 21, tmp_path / "photo.png")
    page, js_errors = new_page(browser, f"{srv.url}/ui/#/jobs/{job}")
    page.evaluate(PROJ_RECORDER)
    page.wait_for_selector("#proj-go:not([disabled])")

    page.set_input_files("#proj-file", str(photo))
    page.fill("#proj-steps", "80")
    page.select_option("#proj-distance", "pixel")
    page.click("#proj-go")
    page.wait_for_selector("#proj-progress-text[data-status=succeeded]", timeout=120_000)
    seen = page.evaluate("window.__proj") + [float(page.get_attribute("#proj-progress", "aria-valuenow"))]
    assert seen[-1] == 100 and any(0 < v < 100 for v in seen), (seen, worker.tail())
    wait_image(page, "#proj-recon", RES)
    wait_image(page, "#proj-gif", 2 * RES)
    latent = page.inner_text("#proj-latent")
    assert latent.startswith("lat_") and "pixel distance" in page.inner_text("#proj-result")
    p = srv.client.get(f"/v1/jobs/{job}/projections").json()["data"][0]
    assert p["status"] == "succeeded" and p["images"][0]["latent_id"] == latent
    page.locator("#card-projection").screenshot(path=str(shots / "dashboard-projection.jpg"), type="jpeg", quality=80)

    # The result is the edit source; the slider moves it along direction 0 (keyboard: 0.5 per step).
    assert page.input_value("#edit-source") == latent
    page.wait_for_function("() => document.getElementById('edit-image').dataset.strength === '0'")
    page.focus("#edit-strength")
    for _ in range(6):
        page.keyboard.press("ArrowRight")
    page.wait_for_function("() => document.getElementById('edit-image').dataset.strength === '3'", timeout=60_000)
    assert page.inner_text("#edit-strength-value") == "3"
    shown = page.evaluate("""async () => {
        const img = document.getElementById('edit-image');
        const c = document.createElement('canvas'); c.width = img.naturalWidth; c.height = img.naturalHeight;
        const g = c.getContext('2d'); g.drawImage(img, 0, 0);
        return Array.from(g.getImageData(0, 0, c.width, c.height).data);
    }""")
    shown = np.array(shown, dtype=np.int16).reshape(RES, RES, 4)[..., :3]
    want = pixels(srv.client.post(f"/v1/jobs/{job}/edits/image", json={"source": latent, "direction": 0,
                                                                        "strength": 3}).content)
    assert np.array_equal(shown, want)
    unedited = pixels(srv.client.get(f"/v1/jobs/{job}/latents/{latent}/image.png").content)
    assert np.abs(shown - unedited).mean() > 1  # it moved
    page.locator("#card-edit").screenshot(path=str(shots / "dashboard-edit.jpg"), type="jpeg", quality=80)

    # Save the edit as a latent: it shows in the list.
    page.click("#edit-save")
    page.wait_for_function("() => document.querySelectorAll('#latents tr[data-latent]').length === 2")

    # Style mixing grid with the projected latent as a row.
    page.fill("#mix-rows", f"1,{latent}")
    page.fill("#mix-cols", "3-5")
    page.fill("#mix-styles", "0-3")
    page.click("#mix-go")
    wait_image(page, "#mix-grid", 4 * RES)
    assert page.eval_on_selector("#mix-grid", "i => i.naturalHeight") == 3 * RES

    # An ONNX download from the export card.
    with page.expect_download(timeout=120_000) as dl:
        page.click("#export-onnx")
    body = Path(dl.value.path()).read_bytes()
    assert dl.value.suggested_filename == f"{job}-ckpt-00000.032-generator.onnx" and len(body) > 100_000
    ort = pytest.importorskip("onnxruntime")
    out = ort.InferenceSession(body, providers=["CPUExecutionProvider"]).run(
        None, {"z": np.zeros((1, 64), np.float32), "psi": np.array(0.7, np.float32)})[0]
    assert out.shape == (1, 3, RES, RES)
    assert not js_errors, js_errors
    page.context.close()


def test_new_job_from_a_checkpoint_with_freeze_d_and_sampling_by_class(browser, stack, tmp_path):  # noqa: F811
    srv, worker, job, root = stack
    page, js_errors = new_page(browser, f"{srv.url}/ui/#/new")
    page.wait_for_selector("#job-form")
    page.select_option("#job-preset", "cpu-tiny")
    page.fill("#job-kimg", "1")
    assert page.is_disabled("#job-freeze-d")
    page.select_option("#job-init", f"job:{job}:latest")
    page.fill("#job-freeze-d", "4")
    page.click("#job-submit")
    page.wait_for_url("**/ui/#/jobs/job_*")
    new = page.url.rsplit("/", 1)[-1]
    made = srv.client.get(f"/v1/jobs/{new}").json()
    assert made["init_from"]["job"] == job and made["config"]["freeze_d_layers"] == 4
    srv.client.post(f"/v1/jobs/{new}/cancel")  # no training worker here

    # A class-conditional job: the sampler lists the dataset's classes and samples the chosen one.
    from gan_core.config import config_from_dict
    from gan_core.data import write_synthetic_classes, zip_folder
    from gan_core.networks import build_generator
    from gan_core.training.checkpoint import checkpoint_bytes

    folder = write_synthetic_classes(tmp_path / "shapes", num_classes=3, per_class=3, resolution=32, seed=0)
    zipped = zip_folder(folder, tmp_path / "shapes.zip")
    ds = srv.client.post("/v1/datasets", files={"file": ("shapes.zip", zipped.read_bytes(), "application/zip")},
                         data={"class_folders": "true"}).json()["id"]
    big = srv.client.post("/v1/jobs", json={"dataset_id": ds, "arch": "biggan", "kimg": 1}).json()
    srv.client.post(f"/v1/jobs/{big['id']}/cancel")
    cfg = config_from_dict(big["config"])
    torch.manual_seed(0)
    G = build_generator(cfg.network)
    add_checkpoint(srv.core, "default", big["id"], "ckpt-00000.032.pt",
                   checkpoint_bytes({"config": big["config"], "G_ema": G.state_dict()}))
    page.goto(f"{srv.url}/ui/#/jobs/{big['id']}")
    page.wait_for_selector("#sampler-class option[value='2']", state="attached")
    assert page.eval_on_selector_all("#sampler-class option", "os => os.map(o => o.textContent)") == [
        "each seed's own class", "0: class0", "1: class1", "2: class2"]
    assert page.query_selector("#card-projection") is None  # no W space: no projection tools
    page.select_option("#sampler-class", "1")
    page.fill("#sampler-seeds", "0-3")
    page.click("#sampler-go")
    wait_image(page, "#sampler-grid", 2 * (32 + 2) + 2)
    assert "class 1: class1" in page.inner_text("#sampler-grid-note")
    assert not js_errors, js_errors
    page.context.close()
