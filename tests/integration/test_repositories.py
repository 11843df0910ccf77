"""The repositories on a real database, each test on SQLite and on PostgreSQL (the `database_url` fixture):
the job state machine, idempotency and quotas under concurrent writers, lease fencing, the sweep, the
database's clock, uploads' lifecycle, migrations that match the models, and the 0.1 record import."""

from __future__ import annotations

import json
import threading
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime, timedelta, timezone

import pytest
from sqlalchemy import func, select

from service.core.db.models import Blob, Job, ObjectDeletion, Tick
from service.core.jobs import CheckpointInfo, IdempotencyConflict, JobStatus
from service.core.lease import JobLease, LeaseLost, claim
from service.core.quotas import QuotaExceeded, Quotas
from service.core.services import open_core
from service.core.settings import Settings
from service.core.sweep import resend_due, sweep
from service.core.uploads import DatasetRecord, InUse
from tests.dbstate import set_job

QUOTAS = Quotas(concurrent_jobs=2, total_kimg=10.0, storage_bytes=10_000, requests_per_s=100.0, burst=100)


@pytest.fixture
def core(database_url, tmp_path):
    c = open_core(Settings(data_dir=tmp_path / "data", database_url=database_url, stale_after_s=30, max_attempts=3))
    yield c
    c.close()


def _dataset(core, tenant="t", size=100) -> str:
    from service.core.ids import new_id

    rec = DatasetRecord(id=new_id("ds"), tenant=tenant, name="d", num_images=8, resolution=32)
    path = core.settings.data_dir / f"{rec.id}.bin"
    path.write_bytes(b"x" * size)
    core.datasets.create(rec, [(f"tenants/{tenant}/datasets/{rec.id}/prepared.zip", path, "application/zip")],
                         core.store, None)
    return rec.id


def _job(core, ds, tenant="t", kimg=1.0, quotas=None, idem=None):
    return core.jobs.create(tenant=tenant, dataset_id=ds, config={"kimg": kimg}, request={}, init_from=None,
                            charged_kimg=kimg, quotas=quotas, idempotency=idem, idempotency_ttl_s=3600)


# --------------------------------------------------------------------------- the state machine


def test_cancel_queued_ends_it_and_a_finished_job_cannot_be_canceled(core):
    ds = _dataset(core)
    job, _ = _job(core, ds)
    assert job.status == JobStatus.queued and job.created_at.tzinfo is not None
    rec = core.jobs.cancel("t", job.id)
    assert rec.status == JobStatus.canceled and rec.finished_at and rec.cancel_requested_at
    assert core.jobs.cancel("t", job.id).status == JobStatus.canceled  # repeated: unchanged
    other, _ = _job(core, ds)
    set_job(core, other.id, status="succeeded")
    assert core.jobs.cancel("t", other.id).status == JobStatus.succeeded
    assert core.jobs.cancel("someone-else", other.id) is None


def test_cancel_racing_the_workers_finish_always_ends_terminal(core):
    """50 rounds: a cancel and the worker's finish at once; whichever commits first wins, the other's
    conditional UPDATE matches nothing, and the job always ends in a terminal state."""
    ds = _dataset(core)
    outcomes = []
    for _ in range(50):
        job, _ = _job(core, ds)
        rec = claim(core.db, "t", job.id, "w", "cpu", 30, 3)
        lease = JobLease(core.db, rec)
        barrier = threading.Barrier(2)

        # This round's barrier, lease and job, bound now (both run and finish within the round anyway).
        def finish(barrier=barrier, lease=lease):
            barrier.wait()
            try:
                lease.finish(JobStatus.succeeded)
            except LeaseLost:
                pass

        def cancel(barrier=barrier, job=job):
            barrier.wait()
            core.jobs.cancel("t", job.id)

        with ThreadPoolExecutor(2) as pool:
            list(pool.map(lambda f: f(), (finish, cancel)))
        status = core.jobs.find("t", job.id).status
        if status == JobStatus.cancelling:  # the cancel won: the worker stops at its next step
            lease.finish(JobStatus.canceled)
            status = core.jobs.find("t", job.id).status
        assert status in (JobStatus.succeeded, JobStatus.canceled), status
        outcomes.append(status)
    assert len(outcomes) == 50


def test_requeue_on_shutdown_and_cancel_while_handing_back(core):
    ds = _dataset(core)
    job, _ = _job(core, ds)
    lease = JobLease(core.db, claim(core.db, "t", job.id, "w", "cpu", 30, 3))
    assert lease.requeue() == "queued"
    rec = core.jobs.find("t", job.id)
    assert rec.status == JobStatus.queued and rec.worker_id is None and rec.enqueued_at is None
    lease2 = JobLease(core.db, claim(core.db, "t", job.id, "w2", "cpu", 30, 3))
    assert lease2.attempt == 2
    core.jobs.cancel("t", job.id)
    assert lease2.requeue() == "canceled"


# --------------------------------------------------------------------------- leases and fencing


def test_claim_is_exclusive_and_increments_the_attempt(core):
    ds = _dataset(core)
    job, _ = _job(core, ds)
    with ThreadPoolExecutor(8) as pool:
        claims = list(pool.map(lambda i: claim(core.db, "t", job.id, f"w{i}", "cpu", 30, 3), range(8)))
    won = [c for c in claims if c is not None]
    assert len(won) == 1 and won[0].attempt == 1 and won[0].status == JobStatus.running
    assert claim(core.db, "t", job.id, "late", "cpu", 30, 3) is None  # held, heartbeat fresh
    assert claim(core.db, "wrong-tenant", job.id, "x", "cpu", 30, 3) is None


def test_a_stale_worker_is_fenced_out_of_every_write(core):
    ds = _dataset(core)
    job, _ = _job(core, ds)
    old = JobLease(core.db, claim(core.db, "t", job.id, "old", "cpu", 30, 3))
    old.record_tick({"tick": 1, "kimg": 0.1}, 0.1, 1.0, None)
    set_job(core, job.id, heartbeat_age_s=60)  # the old worker froze
    new = claim(core.db, "t", job.id, "new", "cpu", 30, 3)  # a stale lease can be taken over directly
    assert new is not None and new.attempt == 2
    info = CheckpointInfo(name="ckpt-1.pt", kimg=0.2, sha256="a" * 64, size=3, created_at=datetime.now(timezone.utc),
                          object_key="tenants/t/jobs/x/attempts/1/checkpoints/ckpt-1.pt")
    for write in (old.heartbeat, lambda: old.record_tick({"tick": 2}, 0.2, 1.0, None),
                  lambda: old.register_checkpoint(info, [(info.object_key, 3)]),
                  lambda: old.record_provenance({}, "x"), lambda: old.note_resume({}, 0.0),
                  lambda: old.finish(JobStatus.succeeded), old.requeue):
        with pytest.raises(LeaseLost, match="taken over"):
            write()
    rec = core.jobs.find("t", job.id)
    assert rec.status == JobStatus.running and rec.attempt == 2 and rec.latest_checkpoint is None
    with core.db.read() as s:
        assert s.scalar(select(func.count()).select_from(Tick).where(Tick.job_id == job.id)) == 1
        assert s.scalar(select(func.count()).select_from(Blob).where(Blob.key == info.object_key)) == 0


def test_ticks_append_and_a_resume_drops_the_ones_it_redoes(core):
    ds = _dataset(core)
    job, _ = _job(core, ds)
    lease = JobLease(core.db, claim(core.db, "t", job.id, "w", "cpu", 30, 3))
    for i in range(1, 6):
        lease.record_tick({"tick": i, "kimg": i * 0.1}, i * 0.1, 1.0, 10.0)
    lease.record_tick({"tick": 5, "kimg": 0.5, "again": True}, 0.5, 1.0, 10.0)  # a retried tick replaces itself
    assert [t["tick"] for t in core.jobs.ticks(job.id)] == [1, 2, 3, 4, 5] and core.jobs.ticks(job.id)[-1]["again"]
    assert [t["tick"] for t in core.jobs.ticks(job.id, after_tick=3)] == [4, 5]
    lease.note_resume({"kimg": 0.3}, truncate_after_kimg=0.3)
    assert [t["tick"] for t in core.jobs.ticks(job.id)] == [1, 2, 3]
    rec = core.jobs.find("t", job.id)
    assert rec.resumes == [{"kimg": 0.3}] and rec.progress.eta_seconds == 10.0


def test_heartbeats_are_stamped_by_the_database_clock(core):
    from service.core.db.types import db_now

    ds = _dataset(core)
    job, _ = _job(core, ds)
    lease = JobLease(core.db, claim(core.db, "t", job.id, "w", "cpu", 30, 3))
    lease.heartbeat()
    with core.db.read() as s:
        now, beat = s.execute(select(db_now(), Job.heartbeat_at).where(Job.id == job.id)).one()
    assert beat.tzinfo is not None and timedelta(0) <= now - beat < timedelta(seconds=5)
    # Staleness is decided in SQL against that clock (the sweep never reads this process' clock).
    set_job(core, job.id, heartbeat_age_s=29)
    assert sweep(core.db, core.settings, lambda t, j, g: None) == []
    set_job(core, job.id, heartbeat_age_s=31)
    assert dict(sweep(core.db, core.settings, lambda t, j, g: None))[job.id].startswith("re-queued")


# --------------------------------------------------------------------------- idempotency and quotas


def test_one_job_per_idempotency_key_under_concurrent_creates(core):
    ds = _dataset(core)
    for round_ in range(5):
        key = (f"{round_:064x}", "b" * 64)
        with ThreadPoolExecutor(8) as pool:
            results = list(pool.map(lambda _, key=key: _job(core, ds, idem=key), range(8)))
        assert len({rec.id for rec, _ in results}) == 1
        assert sum(1 for _, replayed in results if not replayed) == 1
    with pytest.raises(IdempotencyConflict):
        _job(core, ds, idem=(f"{0:064x}", "c" * 64))
    with core.db.read() as s:
        assert s.scalar(select(func.count()).select_from(Job)) == 5


def test_an_expired_idempotency_key_may_be_used_again(core):
    ds = _dataset(core)
    a, _ = core.jobs.create(tenant="t", dataset_id=ds, config={"kimg": 1}, request={}, init_from=None,
                            charged_kimg=1, quotas=None, idempotency=("k" * 64, "b" * 64), idempotency_ttl_s=3600)
    again, replayed = core.jobs.create(tenant="t", dataset_id=ds, config={"kimg": 1}, request={}, init_from=None,
                                       charged_kimg=1, quotas=None, idempotency=("k" * 64, "b" * 64),
                                       idempotency_ttl_s=0.000001)
    assert not replayed and again.id != a.id


def test_concurrent_creates_cannot_overshoot_the_quotas(core):
    ds = _dataset(core)
    with ThreadPoolExecutor(8) as pool:
        results = list(pool.map(lambda _: _try(lambda: _job(core, ds, kimg=1.0, quotas=QUOTAS)), range(8)))
    assert sum(1 for r in results if r == "ok") == 2  # concurrent_jobs = 2
    assert all(r == "ok" or "concurrent job quota" in r for r in results)
    for rec in core.jobs.list("t")[0]:
        core.jobs.cancel("t", rec.id)  # canceled while queued: trained 0 kimg
    with ThreadPoolExecutor(8) as pool:
        results = list(pool.map(lambda _: _try(lambda: _job(core, ds, kimg=4.0, quotas=QUOTAS)), range(8)))
    assert sum(1 for r in results if r == "ok") == 2  # 2 x 4 <= 10 kimg, and 2 concurrent


def _try(fn):
    try:
        fn()
        return "ok"
    except QuotaExceeded as e:
        return str(e)


def test_storage_is_charged_at_reservation_and_credited_on_delete(core):
    ds = _dataset(core, size=4000)
    with pytest.raises(QuotaExceeded, match="storage quota"):
        core.datasets.reserve(DatasetRecord(id="ds_" + "1" * 26, tenant="t", name="x", num_images=8, resolution=32),
                              [("tenants/t/datasets/ds_11111111111111111111111111/prepared.zip", 7000)], QUOTAS)
    job, _ = _job(core, ds)
    with pytest.raises(InUse):
        core.datasets.delete("t", ds)  # an unfinished job trains on it
    core.jobs.cancel("t", job.id)
    assert core.datasets.delete("t", ds)
    with core.db.read() as s:
        assert s.scalar(select(func.coalesce(func.sum(Blob.size), 0)).where(Blob.tenant == "t")) == 0
        assert s.scalar(select(func.count()).select_from(ObjectDeletion)) == 1
    assert core.store.list(f"tenants/t/datasets/{ds}/")
    sweep(core.db, core.settings, lambda t, j, g: None, core.store)  # the sweep removes the objects
    assert not core.store.list(f"tenants/t/datasets/{ds}/")


def test_the_sweep_removes_uploads_that_never_finished(core):
    rec = core.datasets.reserve(DatasetRecord(id="ds_" + "2" * 26, tenant="t", name="x", num_images=8, resolution=32),
                                [("tenants/t/datasets/ds_22222222222222222222222222/prepared.zip", 10)], None)
    core.store.put_bytes("tenants/t/datasets/ds_22222222222222222222222222/prepared.zip", b"x" * 10)
    assert core.datasets.find("t", rec.id) is None  # never visible while uploading
    settings = core.settings.model_copy(update={"upload_orphan_after_s": 0.001})
    actions = dict(sweep(core.db, settings, lambda t, j, g: None, core.store))
    assert "never finished" in actions[rec.id]
    assert core.store.list("tenants/t/datasets/") == []


# --------------------------------------------------------------------------- the sweep


def test_queued_jobs_are_sent_and_resent_with_backoff(core):
    ds = _dataset(core)
    job, _ = _job(core, ds)
    sent: list[str] = []
    set_job(core, job.id, updated_at=datetime.now(timezone.utc) - timedelta(seconds=10))
    sweep(core.db, core.settings, lambda t, j, g: sent.append(j))
    assert sent == [job.id] and core.jobs.find("t", job.id).enqueue_count == 1
    sweep(core.db, core.settings, lambda t, j, g: sent.append(j))
    assert sent == [job.id]  # sent a moment ago: not again
    settings = core.settings.model_copy(update={"resend_queued_after_s": 0.001})
    sweep(core.db, settings, lambda t, j, g: sent.append(j))
    assert sent == [job.id, job.id]  # the message may have been lost: sent again

    now = datetime.now(timezone.utc)
    assert resend_due(None, now - timedelta(seconds=6), 0, now, 300)
    assert not resend_due(None, now - timedelta(seconds=1), 0, now, 300)
    assert not resend_due(now - timedelta(seconds=400), now, 2, now, 300)  # second resend waits 600 s
    assert resend_due(now - timedelta(seconds=601), now, 2, now, 300)
    assert not resend_due(now - timedelta(seconds=3500), now, 20, now, 300)  # capped at an hour
    assert resend_due(now - timedelta(seconds=3601), now, 20, now, 300)


def test_the_sweep_sends_each_job_with_its_gpu_count(core):
    """The sender routes by GPU count (service/core/queue.py): unsent and re-queued jobs carry their config's gpus."""
    ds = _dataset(core)
    multi = core.jobs.create(tenant="t", dataset_id=ds, config={"kimg": 1.0, "gpus": 2}, request={}, init_from=None,
                             charged_kimg=1.0, quotas=None, idempotency=None, idempotency_ttl_s=3600)[0]
    old, _ = _job(core, ds)  # a config from before multi-GPU: no `gpus`
    lost, _ = _job(core, ds)
    for job in (multi, old):
        set_job(core, job.id, updated_at=datetime.now(timezone.utc) - timedelta(seconds=10))
    sent: dict[str, int] = {}
    claim(core.db, "t", lost.id, "w", "cpu", 30, 3)
    with core.db.write() as s:  # the lost job asked 4 GPUs (written after the claim, which needs none)
        s.execute(Job.__table__.update().where(Job.id == lost.id).values(config={"kimg": 1.0, "gpus": 4}))
    set_job(core, lost.id, heartbeat_age_s=31)
    sweep(core.db, core.settings, lambda t, j, g: sent.update({j: g}))
    assert sent == {multi.id: 2, old.id: 1, lost.id: 4}


def test_a_broker_failure_leaves_the_job_unsent_for_the_next_pass(core):
    ds = _dataset(core)
    job, _ = _job(core, ds)
    set_job(core, job.id, updated_at=datetime.now(timezone.utc) - timedelta(seconds=10))

    def down(t, j, g):
        raise ConnectionError("broker down")

    sweep(core.db, core.settings, down)
    assert core.jobs.find("t", job.id).enqueued_at is None


# --------------------------------------------------------------------------- schema


def test_migrations_match_the_models(core):
    from alembic.autogenerate import compare_metadata
    from alembic.migration import MigrationContext

    from service.core.db.models import Base

    with core.db.engine.connect() as conn:
        diff = compare_metadata(MigrationContext.configure(conn, opts={"compare_type": True}), Base.metadata)
    assert diff == [], diff


# --------------------------------------------------------------------------- the 0.1 import


def test_import_of_0_1_records_is_idempotent(core):
    from service.core.importer import import_records

    s = core.store
    now = datetime.now(timezone.utc).isoformat()
    ds, job = "ds_" + "a" * 26, "job_" + "b" * 26
    s.put_json("system/api-keys/key_" + "c" * 26 + ".json", {"id": "key_" + "c" * 26, "tenant": "acme", "name": "ci",
                                                            "salt": "00" * 16, "sha256": "f" * 64, "created_at": now})
    s.put_json(f"tenants/acme/records/datasets/{ds}.json", {"id": ds, "tenant": "acme", "name": "obama",
                                                            "num_images": 100, "resolution": 64, "created_at": now})
    s.put_bytes(f"tenants/acme/datasets/{ds}/prepared.zip", b"z" * 50)
    s.put_json(f"tenants/acme/records/jobs/{job}.json", {
        "id": job, "tenant": "acme", "dataset_id": ds, "status": "succeeded", "config": {"kimg": 1.0},
        "progress": {"kimg": 1.0, "total_kimg": 1.0}, "created_at": now, "updated_at": now, "attempt": 1,
        "latest_checkpoint": "ckpt-1.pt",
        "checkpoints": [{"name": "ckpt-1.pt", "kimg": 1.0, "sha256": "d" * 64, "size": 7, "created_at": now,
                         "grid": "grid-1.png"}]})
    s.put_bytes(f"tenants/acme/jobs/{job}/checkpoints/ckpt-1.pt", b"weights")
    s.put_json(f"tenants/acme/jobs/{job}/series.json", {"ticks": [{"tick": 1, "kimg": 0.5}, {"tick": 2, "kimg": 1.0}],
                                                        "snapshots": []})
    s.put_json(f"tenants/acme/idempotency/{'e' * 64}.json", {"job_id": job, "body_hash": "9" * 64, "created_at": now})

    first = import_records(core.db, s)
    assert first["imported"] == {"api_keys": 1, "datasets": 1, "jobs": 1, "checkpoints": 1, "ticks": 2,
                                 "idempotency_keys": 1}
    second = import_records(core.db, s)
    assert second["imported"] == {} and second["already_present"]["jobs"] == 1
    rec = core.jobs.find("acme", job)
    ckpt = core.jobs.checkpoint(rec, "latest")
    assert ckpt.object_key == f"tenants/acme/jobs/{job}/checkpoints/ckpt-1.pt" and s.get_bytes(ckpt.object_key)
    assert [t["tick"] for t in core.jobs.ticks(job)] == [1, 2]
    assert core.datasets.find("acme", ds).num_images == 100
    assert core.keys.get("key_" + "c" * 26).tenant == "acme"
    replay, replayed = core.jobs.create(tenant="acme", dataset_id=ds, config={"kimg": 1}, request={}, init_from=None,
                                        charged_kimg=1, quotas=None, idempotency=("e" * 64, "9" * 64),
                                        idempotency_ttl_s=10**9)
    assert replayed and replay.id == job
    assert json.loads(json.dumps(first))  # printable as the CLI prints it


def test_upgrading_a_0001_database_keeps_its_jobs(database_url, tmp_path):
    """Revision 0002 adds job names, metadata and webhooks to a database that already holds jobs."""
    from service.core.db import Database
    from service.core.db.migrate import current_revision, head_revision, upgrade

    db = Database(database_url)
    try:
        upgrade(db)
        with db.engine.begin() as conn:  # back to 0001, as a 0.2 deployment before this change would be
            from alembic import command

            from service.core.db.migrate import alembic_config

            cfg = alembic_config(db)
            cfg.attributes["connection"] = conn
            command.downgrade(cfg, "0001")
        assert current_revision(db) == "0001"
        with db.engine.begin() as conn:
            conn.exec_driver_sql("INSERT INTO datasets (id, tenant, status, name, num_images, resolution, warnings, "
                                 "size_bytes, original_bytes, source, num_classes, class_names) VALUES "
                                 "('ds_0', 't', 'ready', 'd', 8, 32, '[]', 0, 0, 'zip', 0, '[]')")
            conn.exec_driver_sql('INSERT INTO jobs (id, tenant, dataset_id, status, config, request, kimg, total_kimg, '
                                 "charged_kimg, enqueue_count, attempt, versions, resumes) VALUES ('job_old', 't', "
                                 """'ds_0', 'succeeded', '{"kimg": 1}', '{}', 1, 1, 1, 1, 1, '{}', '[]')""")
        upgrade(db)
        assert current_revision(db) == head_revision(db)  # 0002 and every later revision
        from service.core.jobs import JobRepo

        rec = JobRepo(db).find("t", "job_old")
        assert rec.metadata == {} and rec.name is None and rec.webhook is None and rec.config == {"kimg": 1}
    finally:
        db.dispose()
