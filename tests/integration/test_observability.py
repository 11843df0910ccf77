"""What an operator watches, with a real worker and a real job: a request id that reaches the worker's log
line for the job (JSON logs, with job id, tenant and attempt on every worker line), /metrics whose job
counters move while the job trains (and which is protected), TensorBoard event files of the job, and a time
estimate measured by the worker before training."""

from __future__ import annotations

import io
import json
import uuid
import zipfile

from tests.e2e.harness import LiveServer, images_zip, make_settings, server_with_worker, upload_zip, wait_for, wait_job

TINY = {"preset": "cpu-tiny", "kimg": 0.048, "tick_kimg": 0.016, "snapshot_kimg": 0.032}


def _metric(text: str, name: str, labels: str = "") -> float | None:
    for line in text.splitlines():
        if line.startswith(f"{name}{labels} ") or (not labels and line.startswith(f"{name} ")):
            return float(line.rsplit(" ", 1)[1])
    return None


def test_request_ids_metrics_tensorboard_and_estimate_on_a_real_job(tmp_path):
    with server_with_worker(tmp_path, log_format="json") as (srv, worker):
        c = srv.client
        ds = upload_zip(c, images_zip(8)).json()["id"]

        # A time estimate: the worker times the setup on its device, and the answer is reused.
        est = c.post("/v1/jobs/estimate", json={"dataset_id": ds, **TINY})
        assert est.status_code == 200, est.text
        e = est.json()["estimate"]
        assert e["calibrated_now"] and e["device"] == "cpu" and e["sec_per_kimg"] > 0
        assert abs(e["total_seconds"] - e["sec_per_kimg"] * est.json()["charged_kimg"]) < 1e-6
        again = c.post("/v1/jobs/estimate", json={"dataset_id": ds, **TINY, "seed": 5}).json()["estimate"]
        assert not again["calibrated_now"] and again["sec_per_kimg"] == e["sec_per_kimg"]  # same setup, cached
        assert c.post("/v1/jobs/estimate", json={"dataset_id": ds, "kimg": 1e9}).status_code == 422

        before = c.get("/metrics").text
        assert _metric(before, "diggan_ticks_total") is not None
        rid = str(uuid.uuid4())
        r = c.post("/v1/jobs", json={"dataset_id": ds, **TINY}, headers={"X-Request-ID": rid})
        assert r.status_code == 202 and r.headers["x-request-id"] == rid
        job = r.json()["id"]
        assert c.get("/healthz").headers["x-request-id"]  # one is made up when the client sends none

        running = wait_job(c, job, lambda j: j["status"] == "running" and j["latest_tick"], 120, worker)
        during = c.get("/metrics").text
        assert _metric(during, "diggan_jobs", '{status="running"}') == 1.0
        assert _metric(during, "diggan_ticks_total") > _metric(before, "diggan_ticks_total")
        assert f'diggan_worker_heartbeat_age_seconds{{worker_id="{running["worker_id"]}"}}' in during
        assert 'http_requests_total{handler="/v1/jobs/{job_id}"' in during  # the HTTP metrics, per route
        done = wait_job(c, job, lambda j: j["status"] in ("succeeded", "failed"), 120, worker)
        assert done["status"] == "succeeded"
        after = c.get("/metrics").text
        assert _metric(after, "diggan_jobs", '{status="succeeded"}') >= 1.0
        assert _metric(after, "diggan_checkpoints_total") >= 2.0

        tb = c.get(f"/v1/jobs/{job}/report/tensorboard")
        assert tb.status_code == 200 and tb.headers["content-type"] == "application/zip"
        names = zipfile.ZipFile(io.BytesIO(tb.content)).namelist()
        assert len(names) == 1 and names[0].startswith(f"{job}/events.out.tfevents.")
        tick_stats = c.get(f"/v1/jobs/{job}/metrics").json()["ticks"]
        assert tick_stats[-1]["rss_mb"] > 0 and "gpu_mem_peak_mb" in tick_stats[-1]  # resources in every tick

        def job_lines():
            lines = []
            for raw in worker.log_path.read_text().splitlines():
                try:
                    lines.append(json.loads(raw))
                except ValueError:
                    continue
            return [rec for rec in lines if rec.get("job_id") == job] or None

        lines = wait_for(job_lines, 30, "the worker's JSON log lines for the job")
        assert any(rec.get("request_id") == rid for rec in lines), lines[:3]
        assert all(rec["tenant"] == "default" for rec in lines)
        assert any(rec.get("attempt") == 1 and "attempt 1" in rec["msg"] for rec in lines)

    # With TensorBoard, read back what was written.
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    out = tmp_path / "tb"
    zipfile.ZipFile(io.BytesIO(tb.content)).extractall(out)
    acc = EventAccumulator(str(out / job))
    acc.Reload()
    assert {"Loss/G", "Loss/D", "DIG/dig"} <= set(acc.Tags()["scalars"])
    assert [int(ev.step) for ev in acc.Scalars("Loss/G")] == [round(t["kimg"] * 1000) for t in tick_stats]


def test_metrics_are_protected(tmp_path):
    with LiveServer(make_settings(tmp_path / "a", auth_required=True, api_keys=[f"t:{'0' * 64}"])) as srv:
        assert srv.client.get("/metrics").status_code == 403  # auth on and no metrics token: off
    with LiveServer(make_settings(tmp_path / "b", auth_required=True, api_keys=[f"t:{'0' * 64}"],
                                  metrics_token="scrape-secret-123456")) as srv:
        assert srv.client.get("/metrics").status_code == 401
        assert srv.client.get("/metrics", headers={"Authorization": "Bearer wrong"}).status_code == 401
        ok = srv.client.get("/metrics", headers={"Authorization": "Bearer scrape-secret-123456"})
        assert ok.status_code == 200 and "diggan_jobs" in ok.text
