"""Snapshot KID/FID in a real job, `best` sampling, and the curves and memorization reports."""

from __future__ import annotations

import io

import pytest
from PIL import Image

from tests.e2e.harness import LiveServer, Worker, images_zip, make_settings, store_keys, upload_zip, wait_job

pytestmark = pytest.mark.slow


def test_snapshot_metrics_best_checkpoint_and_reports(tmp_path):
    settings = make_settings(tmp_path, worker_heartbeat_s=1.0)
    with Worker(settings, tmp_path / "worker.log") as worker, LiveServer(settings) as srv:
        worker.wait_ready()
        c = srv.client
        ds = upload_zip(c, images_zip(8)).json()
        job = c.post("/v1/jobs", json={"dataset_id": ds["id"], "kimg": 0.064, "tick_kimg": 0.032,
                                       "snapshot_kimg": 0.032, "metrics": ["kid", "fid"],
                                       "metrics_num_gen": 32}).json()
        assert job["config"]["metrics"] == ["kid", "fid"] and job["config"]["metrics_num_gen"] == 32
        done = wait_job(c, job["id"], lambda j: j["status"] in ("succeeded", "failed", "canceled"), 600, worker)
        assert done["status"] == "succeeded", done

        snaps = c.get(f"/v1/jobs/{job['id']}/metrics").json()["snapshots"]
        assert len(snaps) == 2
        for s in snaps:
            assert s["metrics"]["kid"] is not None and s["metrics"]["fid"] > 0 and "kid_std_err" in s["metrics"]
        best = [s for s in snaps if s["is_best"]]
        assert best and done["best_checkpoint"] == best[-1]["checkpoint"]
        assert min(s["metrics"]["kid"] for s in snaps) == best[-1]["metrics"]["kid"]

        # The dataset's Inception features were computed once and cached in storage for later jobs.
        assert any(k.startswith(f"tenants/default/datasets/{ds['id']}/features/") and k.endswith(".npz")
                   for k in store_keys(srv.store))

        r = c.post(f"/v1/jobs/{job['id']}/samples", json={"n": 4, "checkpoint": "best"})
        assert r.status_code == 200 and r.headers["x-checkpoint"] == done["best_checkpoint"]

        r = c.get(f"/v1/jobs/{job['id']}/report/curves.png")
        assert r.status_code == 200 and Image.open(io.BytesIO(r.content)).format == "PNG"

        r = c.get(f"/v1/jobs/{job['id']}/report/memorization", params={"n": 3})
        assert r.status_code == 200, r.text
        report = r.json()
        assert report["checkpoint"] == done["latest_checkpoint"] and len(report["samples"]) == 3
        for sample in report["samples"]:
            assert len(sample["neighbors"]) == 3
            assert all(0 <= nb["train_index"] < 8 and nb["distance"] >= 0 for nb in sample["neighbors"])
        png = c.get(f"/v1/jobs/{job['id']}/report/memorization", params={"n": 3, "format": "png"})
        assert png.status_code == 200 and Image.open(io.BytesIO(png.content)).size[0] > 4 * 32
        assert c.get("/v1/jobs/job_00000000000000000000000000/report/curves.png").status_code == 404
