"""The `diggan` CLI's after-training commands as real subprocesses against a real server with API keys and a
real Celery worker on the light queue, on a briefly trained cpu-tiny checkpoint (tests/editing_world.py):
project (with the progress bar) and the files it writes, latents save/list/get/download/image/edit/
interpolate/delete, mix, directions, edit, export --format onnx (run by onnxruntime), jobs create with
--init-from and --freeze-d, cancel + watch, and errors carrying the server's message."""

from __future__ import annotations

import hashlib
import io
import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from diggan import DigganClient
from tests.e2e.harness import Cli, LiveServer, Worker, make_settings
from tests.editing_world import RES, job_with_checkpoint, pixels, trained_checkpoint

pytestmark = pytest.mark.slow

KEY = "cli-editing-key-0123456789"
TENANT = "ed"


@pytest.fixture(scope="module")
def stack(tmp_path_factory):
    root = tmp_path_factory.mktemp("cli-ed")
    ckpt = trained_checkpoint(root)
    settings = make_settings(root / "srv", api_keys=[f"{TENANT}:{hashlib.sha256(KEY.encode()).hexdigest()}"],
                             worker_heartbeat_s=0.5)
    worker = Worker(settings, root / "worker.log", queues="light", name="light").start()
    try:
        with LiveServer(settings) as srv:
            worker.wait_ready()
            h = {"Authorization": f"Bearer {KEY}"}
            job = job_with_checkpoint(srv.client, srv.core, TENANT, ckpt, headers=h)
            with DigganClient(srv.url, KEY) as client:
                yield srv, worker, client, Cli(srv.url, root, KEY), job
    finally:
        worker.stop()


def test_project_watch_then_edit_mix_and_latents(stack, tmp_path):
    srv, worker, client, cli, job = stack
    target = tmp_path / "face.png"
    target.write_bytes(_one_png(client, job, 21))  # one of the generator's own samples
    out = tmp_path / "out"
    r = cli("project", job, str(target), "--steps", "30", "--distance", "pixel", "--watch", "-o", str(out))
    p = json.loads(r.stdout)
    assert p["status"] == "succeeded" and p["config"]["steps"] == 30, worker.tail()
    assert "30/30 steps" in r.stderr and "100%" in r.stderr and f"projection {p['id']} succeeded" in r.stderr
    lat = p["images"][0]["latent_id"]
    recon = out / f"{p['id']}-0-reconstruction.png"
    assert Image.open(recon).size == (RES, RES) and (out / f"{p['id']}-0-progress.gif").is_file()
    assert np.load(out / f"{lat}.npy").shape == (1, 64)

    # Latents: the projected one is listed; a seed's is saved; download, image, edit, interpolate, delete.
    assert lat in [x["id"] for x in cli.json("latents", "list", job)]
    saved = cli.json("latents", "save", job, "--seed", "3", "--psi", "0.7", "--name", "three")
    assert saved["name"] == "three" and saved["source"] == {"type": "seed", "seed": 3, "psi": 0.7}
    assert cli.json("latents", "get", job, saved["id"])["id"] == saved["id"]
    dl = cli.json("latents", "download", job, lat, "-o", str(tmp_path / "w.npy"))
    assert np.array_equal(np.load(dl["out"]), np.load(out / f"{lat}.npy"))
    cli("latents", "image", job, lat, "-o", str(tmp_path / "lat.png"))
    assert np.array_equal(pixels((tmp_path / "lat.png").read_bytes()), pixels(recon.read_bytes()))
    edited = cli.json("latents", "edit", job, lat, "--direction", "1", "--strength", "-2", "--name", "edited")
    assert edited["kind"] == "w+" and edited["source"]["strength"] == -2.0
    cli("latents", "interpolate", job, lat, "7", "--steps", "4", "-o", str(tmp_path / "walk.gif"))
    assert Image.open(tmp_path / "walk.gif").n_frames == 4 + 2  # there and back
    assert cli.json("latents", "delete", job, saved["id"]) == {"deleted": saved["id"]}
    assert saved["id"] not in [x["id"] for x in cli.json("latents", "list", job)]

    # Mixing grid from seeds and a latent; SeFa directions and a strip.
    mix = cli.json("mix", job, "--rows", f"1,{lat}", "--cols", "3-5", "--styles", "0-6", "-o", str(tmp_path / "g.png"))
    assert mix["rows"] == [1, lat] and mix["cols"] == [3, 4, 5]
    assert Image.open(tmp_path / "g.png").size == (4 * RES, 3 * RES)
    d = cli.json("directions", job, "--k", "3")
    assert len(d["directions"]) == 3 and "vector" not in d["directions"][0]
    s = cli.json("edit", job, "--latent", lat, "--direction", "0", "--strengths", "-3,0,3", "-o", str(tmp_path / "s.png"))
    assert s["strengths"] == [-3.0, 0.0, 3.0] and Image.open(tmp_path / "s.png").size == (3 * (RES + 2) + 2, RES + 4)
    strip = pixels((tmp_path / "s.png").read_bytes())
    assert np.array_equal(strip[2:2 + RES, RES + 4:2 * RES + 4], pixels(recon.read_bytes()))  # strength 0: itself
    cli("edit", job, "--seed", "5", "--strengths", "-1,1", "-o", str(tmp_path / "s2.png"))


def _one_png(client: DigganClient, job: str, seed: int) -> bytes:
    import zipfile

    with zipfile.ZipFile(io.BytesIO(client.samples(job, seeds=[seed], psi=1.0, format="zip"))) as zf:
        return zf.read(zf.namelist()[0])


def test_onnx_export_from_the_cli_runs_in_onnxruntime(stack, tmp_path):
    ort = pytest.importorskip("onnxruntime", reason="the 'export' extra")
    srv, worker, client, cli, job = stack
    out = cli.json("export", job, "--format", "onnx")  # default name: <job>-latest.onnx in the working directory
    path = Path(cli.cwd) / out["out"]
    assert path.name == f"{job}-latest.onnx" and out["bytes"] == path.stat().st_size
    sess = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    z = np.random.RandomState(0).randn(2, 64).astype(np.float32)
    images = sess.run(None, {"z": z, "psi": np.array(0.7, np.float32)})[0]
    assert images.shape == (2, 3, RES, RES) and images.dtype == np.uint8


def test_freeze_d_cancel_watch_and_errors(stack, tmp_path):
    srv, worker, client, cli, job = stack
    ds = client.get_job(job)["dataset_id"]
    made = cli.json("jobs", "create", "--dataset", ds, "--kimg", "1", "--init-from", f"{job}:latest", "--freeze-d", "4")
    assert made["config"]["freeze_d_layers"] == 4 and made["init_from"]["job"] == job
    assert made["request"]["freeze_d_layers"] == 4
    cli("jobs", "cancel", made["id"])
    r = cli("jobs", "create", "--dataset", ds, "--kimg", "1", "--freeze-d", "4", ok=False)
    assert r.returncode == 2 and "HTTP 422" in r.stderr and "needs init_from" in r.stderr

    # A long projection, canceled: `projections watch` exits 3.
    target = tmp_path / "t.png"
    target.write_bytes(_one_png(client, job, 4))
    p = cli.json("project", job, str(target), "--steps", "5000", "--distance", "pixel")
    assert p["status"] == "queued"
    cli.json("projections", "cancel", job, p["id"])
    w = cli("projections", "watch", job, p["id"], ok=False)
    assert w.returncode == 3 and f"projection {p['id']} was canceled" in w.stderr
    assert p["id"] in [x["id"] for x in cli.json("projections", "list", job)]

    notes = tmp_path / "notes.txt"
    notes.write_text("not an image")
    r = cli("project", job, str(notes), ok=False)
    assert r.returncode == 2 and "HTTP 422" in r.stderr and "is not an image" in r.stderr
    r = cli("project", job, str(tmp_path / "missing.png"), ok=False)
    assert r.returncode == 2 and "no such image file" in r.stderr
    r = cli("edit", job, "--seed", "1", "--strengths", "a,b", "-o", str(tmp_path / "x.png"), ok=False)
    assert r.returncode == 2 and "--strengths" in r.stderr
    r = cli("mix", job, "--rows", "1", "--cols", "2", "--styles", "0-99", "-o", str(tmp_path / "x.png"), ok=False)
    assert r.returncode == 2 and "style layers must be in 0..9" in r.stderr
    r = cli("latents", "get", job, "lat_00000000000000000000000000", ok=False)
    assert r.returncode == 2 and "HTTP 404" in r.stderr and "no latent" in r.stderr
    assert not (tmp_path / "x.png").exists()
