"""The `diggan` CLI as a real subprocess against a real server (uvicorn) and a real Celery worker:
upload a folder, start a job, watch it to the end (progress bar from SSE), sample, download a
checkpoint, export the generator and sample the export in a clean process, cancel, errors.
Also reproducibility: the same job config trains the same first ticks, through the API and in a
plain Trainer fed only the job record's resolved config. API keys are on throughout."""

from __future__ import annotations

import hashlib
import io
import json
import os
import subprocess
import zipfile
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from diggan import DigganClient, DigganError
from gan_core.cli import build_parser as gan_core_parser
from gan_core.cli import build_train_config
from gan_core.config import config_to_dict
from service.core import object_keys as keys
from tests.dbstate import add_checkpoint, set_job
from tests.e2e.harness import (
    TERMINAL,
    Cli,
    LiveServer,
    Worker,
    cli_command,
    images_zip,
    make_settings,
    png_bytes,
    wait_for,
)
from tests.recorder import Recorder
from tests.unit.test_export import TORCHSCRIPT_USER, run_clean

pytestmark = pytest.mark.slow

KEY = "cli-test-key-0123456789"
TENANT = "cli"
# 6 cpu-tiny iterations: a tick every 2, a checkpoint every 4 (and a final one).
JOB_FLAGS = ["--preset", "cpu-tiny", "--kimg", "0.048", "--regularizer", "diggan:100", "--regularizer", "r1:1",
             "--config-json", '{"tick_kimg": 0.016, "snapshot_kimg": 0.032, "seed": 3}']
TICK_KEYS = ("loss_G", "loss_D", "dig", "r1", "augment_p", "D_real", "D_fake")
SEEDS = [0, 1, 2, 3]


def _auth_settings(root: Path, **kw):
    return make_settings(root, api_keys=[f"{TENANT}:{hashlib.sha256(KEY.encode()).hexdigest()}"], **kw)


@pytest.fixture(scope="module")
def stack(tmp_path_factory):
    root = tmp_path_factory.mktemp("cli")
    settings = _auth_settings(root, worker_heartbeat_s=1.0, torch_threads=1)
    worker = Worker(settings, root / "worker.log").start()
    try:
        with LiveServer(settings) as srv, DigganClient(srv.url, KEY) as client:
            worker.wait_ready()
            yield srv, worker, client, Cli(srv.url, root, KEY)
    finally:
        worker.stop()


@pytest.fixture(scope="module")
def image_folder(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("faces")
    for i in range(8):
        (folder / f"{i:02d}.png").write_bytes(png_bytes(40, seed=i))
    (folder / "notes.txt").write_text("not an image")  # the server skips it with a warning
    (folder / ".DS_Store").write_bytes(b"\0")  # never uploaded
    return folder


def _wait(client: DigganClient, job_id: str, until, timeout: float, worker: Worker) -> dict:
    try:
        return wait_for(lambda: (lambda j: j if until(j) else None)(client.get_job(job_id)), timeout, job_id)
    except TimeoutError as e:
        raise TimeoutError(f"{e}\n{worker.tail()}") from None


def _pngs(zipped: bytes) -> torch.Tensor:
    with zipfile.ZipFile(io.BytesIO(zipped)) as zf:
        arrays = [np.asarray(Image.open(io.BytesIO(zf.read(n))).convert("RGB")) for n in sorted(zf.namelist())]
    return torch.from_numpy(np.stack(arrays)).permute(0, 3, 1, 2).contiguous()


def test_upload_create_watch_sample_download_export(stack, image_folder, tmp_path):
    srv, worker, client, cli = stack
    up = cli("datasets", "upload", str(image_folder), "--name", "faces")
    ds = json.loads(up.stdout)
    assert ds["num_images"] == 8 and ds["name"] == "faces"
    assert "warning: Skipped 1 non-image file(s)" in up.stderr  # the server's validation warnings are shown
    assert ds["id"] in [d["id"] for d in cli.json("datasets", "list")]

    job = cli.json("jobs", "create", "--dataset", ds["id"], *JOB_FLAGS)
    assert job["status"] == "queued" and job["config"]["kimg"] == 0.048 and job["config"]["seed"] == 3
    assert [r["name"] for r in job["config"]["regularizers"]] == ["diggan", "r1"]

    watch = cli("jobs", "watch", job["id"])  # exits 0 only when the job succeeds
    done = json.loads(watch.stdout)
    assert done["status"] == "succeeded", watch.stderr
    bar = watch.stderr
    assert "kimg" in bar and "0.048/0.048 kimg" in bar and "100%" in bar, bar
    assert "loss_G=" in bar and "loss_D=" in bar and "DIG=" in bar, bar
    assert f"job {job['id']} succeeded" in bar

    # Reproducibility fields: resolved config (seed), the request as sent, versions, the data's hash.
    got = cli.json("jobs", "get", job["id"])
    assert got["request"]["seed"] == 3 and got["request"]["dataset_id"] == ds["id"]
    # `diggan jobs config` prints the stored config, which `gan_core train --config FILE` resolves to itself.
    stored = cli.json("jobs", "config", job["id"])
    (tmp_path / "job-config.json").write_text(json.dumps(stored))
    assert stored == got["config"] and config_to_dict(build_train_config(gan_core_parser().parse_args(
        ["train", "--data", "-", "--out", "-", "--config", str(tmp_path / "job-config.json")]))) == stored
    v = got["versions"]
    assert v["torch"] == torch.__version__ and v["gan_core"] and v["diggan_service"] and v["device"] == "cpu"
    prepared = srv.store.get_bytes(keys.dataset_prepared(TENANT, ds["id"]))
    assert got["dataset_sha256"] == hashlib.sha256(prepared).hexdigest()

    # Samples: a real PNG grid of the right size.
    res = got["config"]["network"]["resolution"]
    cli("samples", job["id"], "--seeds", "0-3", "--psi", "0.7", "-o", str(tmp_path / "grid.png"))
    img = Image.open(tmp_path / "grid.png")
    assert img.format == "PNG" and img.size == (2 * (res + 2) + 2,) * 2

    # Checkpoints: list, then download (streamed, atomic) with the server's sha256.
    ckpts = cli.json("checkpoints", "list", job["id"])
    assert ckpts[-1]["final"] and ckpts[-1]["name"] == got["latest_checkpoint"]
    dl = cli.json("checkpoints", "download", job["id"], "-o", str(tmp_path / "model.pt"))
    data = (tmp_path / "model.pt").read_bytes()
    assert hashlib.sha256(data).hexdigest() == dl["sha256"] == ckpts[-1]["sha256"]
    first = cli.json("checkpoints", "download", job["id"], ckpts[0]["name"], "-o", str(tmp_path))
    assert Path(first["path"]).name == f"{job['id']}-{ckpts[0]['name']}"
    payload = torch.load(io.BytesIO(data), map_location="cpu", weights_only=True)
    assert payload["versions"]["torch"] == torch.__version__ and payload["versions"]["diggan_service"]
    assert payload["config"]["seed"] == 3 and payload["config"]["network"] == got["config"]["network"]

    # Export, then sample each export in a clean process; compare with the sample endpoint.
    served = _pngs(client.samples(job["id"], seeds=SEEDS, psi=0.7, format="zip"))
    cli("export", job["id"], "--format", "torchscript", "-o", str(tmp_path / "g.pt"))
    clean = tmp_path / "elsewhere"
    clean.mkdir()
    ts = run_clean(TORCHSCRIPT_USER, clean, str(tmp_path / "g.pt"), json.dumps(SEEDS), json.dumps([0.7]))
    assert ts["project_modules"] == [] and ts["config"]["source"]["job_id"] == job["id"]
    diff = (torch.tensor(ts["images"]["0.7"], dtype=torch.uint8).int() - served.int()).abs()
    assert diff.max() <= 1 and (diff > 0).float().mean() < 0.01

    cli("export", job["id"], "--format", "safetensors", "-o", str(tmp_path / "g.zip"))
    script = """
        import json, sys
        from gan_core.export import load_safetensors
        from gan_core.sampling import generate_images
        G, _ = load_safetensors(sys.argv[1])
        print(json.dumps({"images": generate_images(G, json.loads(sys.argv[2]), psi=0.7).tolist()}))
    """
    st = run_clean(script, clean, str(tmp_path / "g.zip"), json.dumps(SEEDS))
    assert torch.equal(torch.tensor(st["images"], dtype=torch.uint8), served)  # same weights, same code

    # Reproducibility: the same request trains the same ticks (a second job through the API) ...
    again = client.create_job(ds["id"], **{k: v for k, v in got["request"].items() if k != "dataset_id"})
    again = _wait(client, again["id"], lambda j: j["status"] in TERMINAL, 240, worker)
    assert again["status"] == "succeeded" and again["config"] == got["config"]
    ticks_a, ticks_b = client.job_metrics(job["id"])["ticks"], client.job_metrics(again["id"])["ticks"]
    assert len(ticks_a) == len(ticks_b) == 3
    for ta, tb in zip(ticks_a, ticks_b):
        assert {k: ta[k] for k in TICK_KEYS} == {k: tb[k] for k in TICK_KEYS}

    # ... and so does a plain gan_core Trainer given only the record's resolved config and the data.
    from gan_core.config import config_from_dict
    from gan_core.data import load_prepared
    from gan_core.training import Trainer

    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # as the worker (torch_threads=1): CPU kernels may sum in thread order
    try:
        rec = Recorder()
        Trainer(config_from_dict(got["config"]), load_prepared(prepared), tmp_path / "rerun", device="cpu",
                callbacks=rec).run()
    finally:
        torch.set_num_threads(threads)
    for ta, tr in zip(ticks_a, rec.ticks):
        assert {k: ta[k] for k in TICK_KEYS} == {k: tr[k] for k in TICK_KEYS}


def test_cancel_exits_nonzero_and_errors_carry_the_server_message(stack, image_folder, tmp_path):
    srv, worker, client, cli = stack
    zipped = tmp_path / "faces.zip"
    with zipfile.ZipFile(zipped, "w") as zf:
        for p in sorted(image_folder.glob("*.png")):
            zf.write(p, f"faces/{p.name}")
    ds = cli.json("datasets", "upload", str(zipped))  # a .zip is sent as it is
    assert ds["num_images"] == 8 and ds["name"] == "faces" and not ds["warnings"]
    assert cli.json("datasets", "get", ds["id"])["id"] == ds["id"]
    job = cli.json("jobs", "create", "--dataset", ds["id"], "--kimg", "5", "--tick-kimg", "0.016",
                   "--snapshot-kimg", "0.032")
    _wait(client, job["id"], lambda j: j["status"] == "running" and j["progress"]["kimg"] > 0, 180, worker)
    canceled = cli.json("jobs", "cancel", job["id"])
    assert canceled["status"] in ("cancelling", "canceled")
    watch = cli("jobs", "watch", job["id"], ok=False)
    assert watch.returncode == 3, watch.stderr
    assert f"job {job['id']} was canceled" in watch.stderr and json.loads(watch.stdout)["status"] == "canceled"
    assert job["id"] in [j["id"] for j in cli.json("jobs", "list", "--status", "canceled")]

    # Unknown job: non-zero, and the server's own message.
    r = cli("jobs", "get", "job_doesnotexist", ok=False)
    assert r.returncode == 2 and "HTTP 404" in r.stderr and "no job 'job_doesnotexist'" in r.stderr
    # Export: a bad checkpoint or format is a 4xx with a message saying what to use.
    r = cli("export", job["id"], "--format", "torchscript", "--checkpoint", "nope", "-o", str(tmp_path / "x.pt"), ok=False)
    assert r.returncode == 2 and "has no checkpoint 'nope'" in r.stderr and "latest" in r.stderr
    assert not (tmp_path / "x.pt").exists() and not list(tmp_path.glob(".x.pt.*"))  # nothing half-written
    with pytest.raises(DigganError) as e:
        client._send("GET", f"/v1/jobs/{job['id']}/export", params={"format": "pickle"})
    assert e.value.status == 422 and "format" in e.value.detail
    with pytest.raises(DigganError) as e:
        client._send("GET", f"/v1/jobs/{job['id']}/export")
    assert e.value.status == 422 and "format" in e.value.detail
    # A wrong key is refused with the server's hint; bad flags are usage errors.
    r = subprocess.run([*cli_command(), "--api-key", "wrong", "datasets", "list"], capture_output=True, text=True,
                       env={**cli.env}, timeout=60)
    assert r.returncode == 2 and "HTTP 401" in r.stderr and "invalid API key" in r.stderr
    r = cli("jobs", "create", "--dataset", ds["id"], "--regularizer", "diggan", ok=False)
    assert r.returncode == 2 and "NAME:WEIGHT" in r.stderr
    r = cli("jobs", "create", "--dataset", ds["id"], "--regularizer", "nosuch:1", ok=False)
    assert r.returncode == 2 and "HTTP 422" in r.stderr and "unknown regularizer 'nosuch'" in r.stderr


def test_checkpoint_download_follows_s3_presigned_redirect(tmp_path, s3_server, s3_bucket):
    """S3 storage answers 307 to a presigned URL: followed, without sending the API key to S3,
    verified against the recorded sha256, written atomically (a corrupt copy leaves no file)."""
    settings = _auth_settings(tmp_path / "srv", storage="s3", s3=s3_server, s3_bucket=s3_bucket)
    with LiveServer(settings) as srv, DigganClient(srv.url, KEY) as client:
        blob = os.urandom(300_000)
        name = "ckpt-000000.032.pt"
        (tmp_path / "imgs.zip").write_bytes(images_zip(8))
        ds = client.upload_dataset(tmp_path / "imgs.zip")
        job_id = client.create_job(ds["id"], kimg=1)["id"]
        set_job(srv.core, job_id, status="succeeded")
        key = add_checkpoint(srv.core, TENANT, job_id, name, blob)
        r = client._http.get(f"/v1/jobs/{job_id}/checkpoints/latest", params={"redirect": "true"})
        assert r.status_code == 307 and "X-Amz-Signature" in r.headers["location"]

        out = Cli(srv.url, tmp_path, KEY).json("checkpoints", "download", job_id, "-o", str(tmp_path / "c.pt"))
        assert (tmp_path / "c.pt").read_bytes() == blob and out["sha256"] == hashlib.sha256(blob).hexdigest()

        srv.store.put_bytes(key, blob[:-1] + b"!")  # corrupted in storage
        with pytest.raises(DigganError, match="corrupt"):
            client.download_checkpoint(job_id, tmp_path / "bad.pt")
        assert sorted(p.name for p in tmp_path.iterdir()) == ["c.pt", "imgs.zip", "srv"]  # no bad.pt, no partial file
