"""Projections and latents on a real database, each test on SQLite and on PostgreSQL (`database_url`):
migration 0003 on a 0002 database that holds a job, and back; the claim (a duplicate delivery is dropped),
attempt fencing, the sweep of a dead worker's projection (re-queued, canceled, or failed after max_attempts),
limits and storage charged when one is created, and latents charged and credited."""

from __future__ import annotations

import numpy as np
import pytest
from sqlalchemy import func, select, update

from service.core.db.models import Blob, Projection
from service.core.db.types import seconds_before_now
from service.core.ids import new_id
from service.core.latents import LatentRecord, LatentRepo, npy_bytes
from service.core.projections import (
    LeaseLost,
    ProjectionLease,
    ProjectionRecord,
    ProjectionRepo,
    ProjectionStatus,
    claim,
    target_key,
)
from service.core.quotas import QuotaExceeded, Quotas
from service.core.services import open_core
from service.core.settings import Settings
from service.core.sweep import sweep

QUOTAS = Quotas(concurrent_jobs=2, total_kimg=10.0, storage_bytes=10_000, requests_per_s=100.0, burst=100)


@pytest.fixture
def core(database_url, tmp_path):
    c = open_core(Settings(data_dir=tmp_path / "data", database_url=database_url, stale_after_s=30, max_attempts=2))
    yield c
    c.close()


def _job(core, tenant="t") -> str:
    from service.core.uploads import DatasetRecord

    ds = DatasetRecord(id=new_id("ds"), tenant=tenant, name="d", num_images=8, resolution=32)
    path = core.settings.data_dir / f"{ds.id}.bin"
    path.write_bytes(b"x")
    core.datasets.create(ds, [(f"tenants/{tenant}/datasets/{ds.id}/prepared.zip", path, "application/zip")],
                         core.store, None)
    job, _ = core.jobs.create(tenant=tenant, dataset_id=ds.id, config={"kimg": 1}, request={}, init_from=None,
                              charged_kimg=1, quotas=None, idempotency=None, idempotency_ttl_s=3600)
    return job.id


def _projection(core, job: str, tenant="t", n=1, quotas=None, max_active=2, size=100) -> ProjectionRecord:
    pid = new_id("proj")
    images = [{"index": i, "filename": f"{i}.png", "width": 64, "height": 64, "status": "pending",
               "target_key": target_key(tenant, job, pid, i)} for i in range(n)]
    rec = ProjectionRecord(id=pid, tenant=tenant, job_id=job, checkpoint="c.pt", checkpoint_key="k",
                           checkpoint_sha256="0" * 64, config={"steps": 10, "w_plus": False, "distance": "pixel",
                                                               "seed": 303}, images=images, total_steps=10 * n)
    return ProjectionRepo(core.db).create(core.store, rec, [b"p" * size] * n, quotas, max_active)


def _stale(core, pid: str) -> None:
    with core.db.write() as s:
        s.execute(update(Projection).where(Projection.id == pid).values(heartbeat_at=seconds_before_now(3600))
                  .execution_options(synchronize_session=False))


def _used(core, tenant="t") -> int:
    with core.db.read() as s:
        return int(s.scalar(select(func.coalesce(func.sum(Blob.size), 0)).where(Blob.tenant == tenant)))


def _latent(pid: str, job: str, tenant="t") -> LatentRecord:
    from service.core.latents import latent_key

    lid = new_id("lat")
    return LatentRecord(id=lid, tenant=tenant, job_id=job, kind="w", shape=[1, 4], checkpoint="c.pt",
                        checkpoint_sha256="0" * 64, object_key=latent_key(tenant, job, lid), size=10,
                        source={"type": "projection", "projection_id": pid})


def test_claim_once_fence_and_finish(core):
    job = _job(core)
    p = _projection(core, job, n=2)
    assert p.status == ProjectionStatus.queued and p.created_at.tzinfo is not None
    got = claim(core.db, "t", p.id, "w1", 30, 2)
    assert got.status == ProjectionStatus.running and got.attempt == 1 and got.started_at
    assert claim(core.db, "t", p.id, "w2", 30, 2) is None  # a duplicate delivery is dropped
    assert claim(core.db, "other", p.id, "w2", 30, 2) is None
    lease = ProjectionLease(core.db, got)
    assert lease.progress(5, 0.3, 12.0) is False
    before = _used(core)
    lease.record_image(0, {"distance": 0.1, "reconstruction_key": "r", "gif_key": "g"}, _latent(p.id, job),
                       [("tenants/t/x.png", 7)], 10)
    assert _used(core) == before + 10 + 7  # the latent's .npy and the reconstruction, charged
    rec = ProjectionRepo(core.db).find("t", job, p.id)
    assert rec.images[0]["status"] == "done" and rec.images[0]["latent_id"] and rec.steps_done == 10
    assert rec.images[1]["status"] == "pending"
    assert LatentRepo(core.db).find("t", job, rec.images[0]["latent_id"]) is not None
    # A cancel is seen at the next write.
    ProjectionRepo(core.db).cancel("t", job, p.id)
    assert lease.heartbeat() is True
    lease.finish(ProjectionStatus.canceled)
    assert ProjectionRepo(core.db).find("t", job, p.id).status == ProjectionStatus.canceled
    with pytest.raises(LeaseLost):
        lease.heartbeat()


def test_the_sweep_requeues_a_dead_workers_projection_and_fences_the_old_attempt(core):
    job = _job(core)
    p = _projection(core, job)
    old = ProjectionLease(core.db, claim(core.db, "t", p.id, "w1", 30, 2))
    sent = []
    noop = lambda *_: None  # noqa: E731  (a job sender takes 3 arguments, a projection sender 2)
    assert sweep(core.db, core.settings, noop, enqueue_projection=lambda t, i: sent.append(i)) == []  # fresh beat
    _stale(core, p.id)
    actions = sweep(core.db, core.settings, noop, enqueue_projection=lambda t, i: sent.append(i))
    assert (p.id, "projection re-queued (attempt 1)") in actions and sent == [p.id]
    rec = ProjectionRepo(core.db).find("t", job, p.id)
    assert rec.status == ProjectionStatus.queued and rec.enqueued_at is not None and rec.enqueue_count == 1
    with pytest.raises(LeaseLost):  # the dead worker (were it only slow) can no longer write
        old.progress(3, 0.5, None)
    new = claim(core.db, "t", p.id, "w2", 30, 2)
    assert new.attempt == 2
    with pytest.raises(LeaseLost):
        old.record_image(0, {}, _latent(p.id, job), [], 10)
    assert LatentRepo(core.db).list("t", job)[0] == []  # nothing the old attempt tried to record
    # Dead again, at max_attempts (2): failed with a message; the sweep without a sender leaves it alone.
    _stale(core, p.id)
    assert sweep(core.db, core.settings, noop) == []
    actions = sweep(core.db, core.settings, noop, enqueue_projection=lambda t, i: sent.append(i))
    assert (p.id, "projection failed (too many attempts)") in actions
    rec = ProjectionRepo(core.db).find("t", job, p.id)
    assert rec.status == ProjectionStatus.failed and "stopped responding 2 time(s)" in rec.error and rec.finished_at


def test_a_stale_projection_with_a_cancel_ends_canceled_and_unsent_ones_are_sent(core):
    job = _job(core)
    p = _projection(core, job)
    claim(core.db, "t", p.id, "w1", 30, 2)
    ProjectionRepo(core.db).cancel("t", job, p.id)
    _stale(core, p.id)
    noop = lambda *_: None  # noqa: E731  (a job sender takes 3 arguments, a projection sender 2)
    assert (p.id, "projection canceled (worker lost)") in sweep(core.db, core.settings, noop, enqueue_projection=noop)
    # A queued projection whose message never left (the broker was down at creation) is sent by the sweep.
    q = _projection(core, job)
    with core.db.write() as s:
        s.execute(update(Projection).where(Projection.id == q.id)
                  .values(updated_at=seconds_before_now(60)).execution_options(synchronize_session=False))
    sent = []
    actions = sweep(core.db, core.settings, noop, enqueue_projection=lambda t, i: sent.append(i))
    assert (q.id, "projection sent to the queue") in actions and sent == [q.id]


def test_limits_storage_and_delete(core):
    job = _job(core)
    a = _projection(core, job, quotas=QUOTAS, max_active=2, size=1000)
    _projection(core, job, quotas=QUOTAS, max_active=2, size=1000)
    stored = core.store.list(f"tenants/t/jobs/{job}/projections/")
    assert len(stored) == 2
    with pytest.raises(QuotaExceeded, match="too many projections"):
        _projection(core, job, quotas=QUOTAS, max_active=2)
    assert len(core.store.list(f"tenants/t/jobs/{job}/projections/")) == 2  # the refused one stored nothing
    assert _projection(core, job, tenant="t", quotas=None, max_active=3)  # the limit is the caller's
    ProjectionRepo(core.db).cancel("t", job, a.id)
    with pytest.raises(QuotaExceeded, match="storage quota"):
        _projection(core, job, quotas=QUOTAS, max_active=10, size=20_000)
    used = _used(core)
    assert ProjectionRepo(core.db).delete("t", job, a.id)
    assert _used(core) == used - 1000
    assert not ProjectionRepo(core.db).delete("t", job, a.id)


def test_latents_are_charged_and_credited_and_refused_past_the_quota(core):
    job = _job(core)
    repo = LatentRepo(core.db)
    w = np.arange(8, dtype=np.float32).reshape(1, 8)
    rec = repo.save(core.store, LatentRecord(id=new_id("lat"), tenant="t", job_id=job, kind="w", shape=[1, 8],
                                             checkpoint="c", checkpoint_sha256="0" * 64), npy_bytes(w), QUOTAS)
    assert rec.created_at is not None and rec.size == len(npy_bytes(w))
    assert np.array_equal(repo.load(core.store, rec), w)
    used = _used(core)
    small = Quotas(**{**QUOTAS.__dict__, "storage_bytes": used + 10})
    with pytest.raises(QuotaExceeded):
        repo.save(core.store, LatentRecord(id=new_id("lat"), tenant="t", job_id=job, kind="w", shape=[1, 8],
                                           checkpoint="c", checkpoint_sha256="0" * 64), npy_bytes(w), small)
    assert len(repo.list("t", job)[0]) == 1
    assert repo.delete("t", job, rec.id) and _used(core) == used - rec.size
    assert repo.find("t", job, rec.id) is None and not repo.delete("t", job, rec.id)


def test_migration_0003_upgrades_a_0002_database_with_a_job_and_back(database_url):
    from alembic import command

    from service.core.db import Database
    from service.core.db.migrate import alembic_config, current_revision, upgrade

    db = Database(database_url)
    try:
        upgrade(db, "0002")
        with db.engine.begin() as conn:
            conn.exec_driver_sql("INSERT INTO datasets (id, tenant, status, name, num_images, resolution, warnings, "
                                 "size_bytes, original_bytes, source, num_classes, class_names) VALUES "
                                 "('ds_0', 't', 'ready', 'd', 8, 32, '[]', 0, 0, 'zip', 0, '[]')")
            conn.exec_driver_sql('INSERT INTO jobs (id, tenant, dataset_id, status, config, request, kimg, total_kimg, '
                                 "charged_kimg, enqueue_count, attempt, versions, resumes, metadata) VALUES ('job_old', "
                                 """'t', 'ds_0', 'succeeded', '{"kimg": 1}', '{}', 1, 1, 1, 1, 1, '{}', '[]', '{}')""")
        upgrade(db)
        assert current_revision(db) == "0003"
        with db.engine.begin() as conn:
            conn.exec_driver_sql("INSERT INTO latents (id, tenant, job_id, kind, shape, source, checkpoint, "
                                 "checkpoint_sha256, object_key, size) VALUES ('lat_0', 't', 'job_old', 'w', '[1, 4]', "
                                 """'{"type": "seed"}', 'c', 'x', 'k', 1)""")
            conn.exec_driver_sql("INSERT INTO projections (id, tenant, job_id, status, checkpoint, checkpoint_key, "
                                 "checkpoint_sha256, config, images, total_steps, steps_done, attempt, enqueue_count) "
                                 "VALUES ('proj_0', 't', 'job_old', 'queued', 'c', 'k', 'x', '{}', '[]', 1, 0, 0, 0)")
        lat = LatentRepo(db).find("t", "job_old", "lat_0")
        assert lat.shape == [1, 4] and lat.created_at is not None
        assert ProjectionRepo(db).find("t", "job_old", "proj_0").status == ProjectionStatus.queued
        with db.engine.begin() as conn:  # deleting the job takes its latents and projections with it
            conn.exec_driver_sql("DELETE FROM jobs WHERE id = 'job_old'")
        assert LatentRepo(db).find("t", "job_old", "lat_0") is None
        with db.engine.begin() as conn:
            cfg = alembic_config(db)
            cfg.attributes["connection"] = conn
            command.downgrade(cfg, "0002")
        assert current_revision(db) == "0002"
        upgrade(db)
        assert current_revision(db) == "0003"
    finally:
        db.dispose()
