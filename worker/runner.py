"""Run one job: the database and object store <-> gan_core's Trainer.

- the prepared dataset is fetched to a temp run dir; the config comes from the job row;
- resume from the job's latest registered checkpoint (verified by sha256), so a re-delivered job
  continues where the last stored checkpoint left it instead of starting over;
- every tick is one fenced transaction: progress and heartbeat on the job row, the tick appended;
- every snapshot uploads the checkpoint and grid under this attempt's keys, then registers them
  (fenced): a worker that lost its lease can neither overwrite nor register anything;
- should_stop polls the job's status (throttled) for a cancel, and stops on a lost lease;
- a heartbeat thread keeps the lease fresh even while one tick runs for minutes;
- divergence is gan_core's Trainer's to handle (one rollback with halved rates, as under `gan_core train`);
  the runner only records the rollback in the job's `resumes` (on_rollback, fenced).
"""

from __future__ import annotations

import contextvars
import hashlib
import logging
import math
import shutil
import tempfile
import threading
import time
from collections.abc import Callable
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, TypeVar

from sqlalchemy import select
from sqlalchemy.exc import DBAPIError

from gan_core.config import config_from_dict
from service.core import blobs
from service.core import object_keys as keys
from service.core.db.models import Job
from service.core.init_from import describe, fetch_init_weights
from service.core.jobs import LEASED, CheckpointInfo, JobRecord, JobStatus
from service.core.lease import JobLease, LeaseLost
from service.core.queue import train_queue
from service.core.services import Core
from service.core.storage import ObjectNotFound, StorageError
from worker import metrics

log = logging.getLogger(__name__)

STOP_POLL_S = 1.0
T = TypeVar("T")


def configure_torch(settings: Any) -> None:
    import torch

    torch.set_num_threads(settings.training_threads)


def pick_device(setting: str) -> str:
    import torch

    if setting in ("auto", "cuda") and torch.cuda.is_available():
        return "cuda"
    if setting == "cuda":
        log.warning("DIGGAN_DEVICE=cuda but no GPU is visible; training on cpu")
    return "cpu"


def worker_gpus(settings: Any) -> int:
    """The GPUs this worker owns: DIGGAN_WORKER_GPUS, else every visible GPU (1 on a CPU-only worker)."""
    if settings.worker_gpus:
        return int(settings.worker_gpus)
    import torch

    return max(1, torch.cuda.device_count())


def resource_stats(device: str) -> dict[str, float | None]:
    """What NVlabs' training log shows each tick: process memory (resident now, and its peak) and peak GPU
    memory (CUDA only), in MiB."""
    import resource

    import torch

    with open("/proc/self/statm") as f:  # Linux: pages resident now
        rss = int(f.read().split()[1]) * resource.getpagesize()
    peak_rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024  # KiB on Linux
    gpu = torch.cuda.max_memory_allocated() if device.startswith("cuda") and torch.cuda.is_available() else None
    return {"rss_mb": round(rss / 2**20, 1), "peak_rss_mb": round(peak_rss / 2**20, 1),
            "gpu_mem_peak_mb": round(gpu / 2**20, 1) if gpu is not None else None}


def _clean(v: Any) -> Any:
    # JSON has no NaN/inf; a diverging tick must still be storable.
    return None if isinstance(v, float) and not math.isfinite(v) else v


def _now_iso() -> str:
    return datetime.now(timezone.utc).isoformat()


class JobCallbacks:
    """TrainingCallbacks for one job (duck-typed; bound to gan_core's class in JobRunner.run)."""

    def __init__(self, runner: JobRunner):
        self.r = runner

    def on_tick(self, stats: dict[str, Any]) -> None:
        self.r.on_tick(stats)

    def on_snapshot(self, snapshot: Any) -> None:
        self.r.on_snapshot(snapshot)

    def should_stop(self) -> bool:
        return self.r.should_stop()

    def on_rollback(self, rollback: Any) -> None:
        self.r.on_rollback(rollback)


class JobRunner:
    def __init__(self, core: Core, rec: JobRecord, worker_id: str, device: str,
                 shutdown: threading.Event | None = None):
        self.core, self.store, self.settings = core, core.store, core.settings
        self.tenant, self.job_id, self.me, self.device = rec.tenant, rec.id, worker_id, device
        self.rec = rec
        self.lease = JobLease(core.db, rec)
        self.cancel = rec.status == JobStatus.cancelling
        self.lease_lost = False
        self.shutdown = shutdown or threading.Event()
        self._last_poll = 0.0
        self._stop_hb = threading.Event()
        self._uploaded: set[str] = set()
        self.helpers: Any = None  # ranks 1..N-1 of a job asking for N GPUs (gan_core.training.ranks)

    # --- fenced writes
    def _observe(self, status: str) -> None:
        if status == JobStatus.cancelling.value:
            self.cancel = True

    def _fenced(self, fn: Callable[[], str]) -> str:
        try:
            status = fn()
        except LeaseLost:
            self.lease_lost = True
            raise
        self._observe(status)
        return status

    def _heartbeat_loop(self) -> None:
        while not self._stop_hb.wait(self.settings.worker_heartbeat_s):
            try:
                self._fenced(self.lease.heartbeat)
            except LeaseLost as e:
                log.warning("heartbeat: %s; the job stops at its next step", e)
                return
            except Exception as e:  # database blip: the next beat retries
                log.warning("heartbeat for %s failed: %s", self.job_id, e)

    def _outlast_outage(self, fn: Callable[[], T], what: str, failures: Any = None) -> T:
        """Run a write; while storage or the database is unavailable, wait with backoff (training pauses,
        nothing is lost) up to settings.storage_outage_tolerance_s, then let the error end the job."""
        deadline = time.monotonic() + self.settings.storage_outage_tolerance_s
        pause = 0.5
        while True:
            try:
                return fn()
            except (ObjectNotFound, LeaseLost):
                raise
            except (StorageError, DBAPIError) as e:
                if failures is not None:
                    failures.inc()
                if time.monotonic() + pause > deadline or self.shutdown.is_set():
                    raise
                down = "storage" if isinstance(e, StorageError) else "the database"
                log.warning("job %s: %s failed (%s); %s looks down, retrying in %.1f s", self.job_id, what, e, down,
                            pause)
                time.sleep(pause)
                pause = min(pause * 2, 10.0)

    # --- callbacks
    def on_tick(self, stats: dict[str, Any]) -> None:
        self._outlast_outage(lambda: self._on_tick(stats), "recording a tick")

    def on_snapshot(self, snap: Any) -> None:
        self._outlast_outage(lambda: self._on_snapshot(snap), "storing a snapshot", metrics.CHECKPOINT_UPLOAD_FAILURES)

    def on_rollback(self, rollback: Any) -> None:
        """The trainer diverged and went back once with halved rates (gan_core.training.Rollback): record
        where from, and drop the ticks it will train again."""
        self._outlast_outage(lambda: self._on_rollback(rollback), "recording a rollback")

    def _on_rollback(self, rollback: Any) -> None:
        ckpt = Path(rollback.checkpoint).name if rollback.checkpoint is not None else None
        log.warning("job %s: %s; rolled back to %s with g_lr=%g d_lr=%g", self.job_id, rollback.reason,
                    ckpt or "the start of training", rollback.g_lr, rollback.d_lr)
        entry = {"attempt": self.lease.attempt, "kimg": float(rollback.kimg), "checkpoint": ckpt, "at": _now_iso(),
                 "reason": f"rollback after divergence: {rollback.reason[:300]}", "g_lr": rollback.g_lr,
                 "d_lr": rollback.d_lr}
        truncate = float(rollback.kimg) if ckpt is not None else None  # None: back to the start, every tick goes
        self._fenced(lambda: self.lease.note_resume(entry, truncate_after_kimg=truncate))

    def _on_tick(self, stats: dict[str, Any]) -> None:
        stats = {k: _clean(v) for k, v in {**stats, **resource_stats(self.device)}.items()}
        metrics.TICKS.inc()
        metrics.RSS_BYTES.set(stats["rss_mb"] * 2**20)
        if stats.get("gpu_mem_peak_mb") is not None:
            metrics.GPU_MEMORY_PEAK.set(stats["gpu_mem_peak_mb"] * 2**20)
        total = float(stats.get("total_kimg") or self.rec.progress.total_kimg or 1.0)
        kimg = float(stats.get("kimg") or 0.0)
        self._fenced(lambda: self.lease.record_tick(stats, kimg, total, stats.get("eta_seconds")))

    def _on_snapshot(self, snap: Any) -> None:
        ckpt_path, grid_path = Path(snap.checkpoint), Path(snap.grid)
        name = ckpt_path.name
        attempt = self.lease.attempt
        ckpt_key = keys.job_checkpoint(self.tenant, self.job_id, attempt, name)
        # Objects first (under this attempt's keys), registration last: a crash in between leaves the old
        # `latest`, never a dangling one.
        with metrics.CHECKPOINT_UPLOAD_SECONDS.time():
            self.store.put_file(ckpt_key, ckpt_path)
            stored = [(ckpt_key, ckpt_path.stat().st_size)]
            grid_name = grid_key = None
            if grid_path.is_file():
                grid_name = grid_path.name
                grid_key = keys.job_grid(self.tenant, self.job_id, attempt, grid_name)
                self.store.put_file(grid_key, grid_path, "image/png")
                stored.append((grid_key, grid_path.stat().st_size))
        self._uploaded.add(name)
        if snap.metrics:
            self._publish_feature_cache()
        scores = {k: float(v) for k, v in (snap.metrics or {}).items() if isinstance(v, (int, float)) and math.isfinite(v)}
        info = CheckpointInfo(name=name, kimg=float(snap.kimg), sha256=snap.sha256, size=ckpt_path.stat().st_size,
                              created_at=datetime.now(timezone.utc), metrics=scores, is_best=bool(snap.is_best),
                              final=bool(snap.final), grid=grid_name, attempt=attempt, object_key=ckpt_key,
                              grid_key=grid_key)
        self._fenced(lambda: self.lease.register_checkpoint(info, stored))

    def should_stop(self) -> bool:
        if self.cancel or self.lease_lost or self.shutdown.is_set():
            return True
        now = time.monotonic()
        if now - self._last_poll >= STOP_POLL_S:  # throttled: one primary-key read per second
            self._last_poll = now
            try:
                with self.core.db.read() as s:
                    row = s.execute(select(Job.status, Job.attempt).where(Job.id == self.job_id)).first()
                if row is None or row.attempt != self.lease.attempt or row.status not in LEASED:
                    self.lease_lost = True  # the next fenced write says why
                elif row.status == JobStatus.cancelling.value:
                    self.cancel = True
            except Exception as e:
                log.warning("status poll for %s failed: %s", self.job_id, e)
        return self.cancel or self.lease_lost

    # --- the run
    def run(self) -> str:
        """Train to the end, to a cancel, or to a worker shutdown. Returns the job's new status."""
        from gan_core.data import load_prepared
        from gan_core.training import Trainer, TrainingCallbacks

        class _Callbacks(JobCallbacks, TrainingCallbacks):
            pass

        # The heartbeat thread logs with this task's context (job id, tenant, attempt, request id).
        ctx = contextvars.copy_context()
        hb = threading.Thread(target=ctx.run, args=(self._heartbeat_loop,), name=f"heartbeat-{self.job_id}",
                              daemon=True)
        hb.start()
        run_dir = Path(tempfile.mkdtemp(prefix=f"diggan-{self.job_id}-"))
        try:
            cfg = config_from_dict(self.rec.config)
            ds_path = run_dir / "dataset.zip"
            try:
                self.store.get_file(keys.dataset_prepared(self.tenant, self.rec.dataset_id), ds_path)
            except ObjectNotFound:
                raise UserError(f"dataset {self.rec.dataset_id} no longer exists (was it deleted?); "
                                "upload it again and start a new job") from None
            dataset = load_prepared(ds_path)
            self._record_provenance(ds_path)
            resume = self._fetch_resume(run_dir)
            self.run_root = run_dir / "run"
            self._fetch_feature_cache()
            self.helpers = self._start_helper_ranks(cfg, ds_path, resume)
            trainer = Trainer(cfg, dataset, self.run_root, callbacks=_Callbacks(self), resume_from=resume,
                              device=self.helpers.device if self.helpers else self.device,
                              dist=self.helpers.info if self.helpers else None)
            if resume is None:  # a resumed job has its own weights, which win over init_from
                self._apply_init_from(trainer, run_dir)
            # A divergence rolls back once inside the trainer (to its last checkpoint, or to the start with the
            # pretrained weights), on every rank alike, reported through on_rollback; a second one raises
            # TrainingDiverged, whose message says what to change (user_message passes it on).
            result = trainer.run()
            if self.lease_lost:
                raise LeaseLost(f"job {self.job_id}: this worker's lease (attempt {self.lease.attempt}) was lost")
            self._upload_last(result)
            if result.stopped and self.cancel:
                self._outlast_outage(lambda: self.lease.finish(JobStatus.canceled), "recording the cancel")
                return JobStatus.canceled.value
            if result.stopped:  # worker shutdown: hand the job back, it resumes from the final checkpoint
                return self._outlast_outage(self.lease.requeue, "handing the job back")
            self._outlast_outage(lambda: self.lease.finish(JobStatus.succeeded), "recording the end")
            return JobStatus.succeeded.value
        finally:
            self._stop_hb.set()
            if self.helpers is not None:
                self.helpers.close()
            shutil.rmtree(run_dir, ignore_errors=True)

    def _start_helper_ranks(self, cfg: Any, ds_path: Path, resume: Path | None) -> Any:
        """A job asking for N > 1 GPUs: ranks 1..N-1 as processes beside this one, which stays rank 0 (it keeps
        the lease, the uploads and the stop requests). None for one GPU."""
        if cfg.gpus == 1:
            return None
        owned = worker_gpus(self.settings)
        if cfg.gpus > owned:
            # A last guard: routing sends a job only to workers owning enough GPUs (service/core/queue.py), so this
            # is a message on the wrong queue (a worker started with -Q train-gpus-N by hand, or an old message).
            raise UserError(f"this job asks for gpus={cfg.gpus} but the worker that took it owns {owned}; start it "
                            f"again with gpus <= {owned}, or ask the operator to check that workers are not given "
                            f"the queue {train_queue(cfg.gpus)!r} by hand (a worker picks its queues from "
                            "DIGGAN_WORKER_GPUS)")
        from gan_core.training.ranks import HelperRanks, follower_rank

        log.info("job %s: %d ranks on %s (this process is rank 0)", self.job_id, cfg.gpus, self.device)
        return HelperRanks(cfg.gpus, follower_rank,
                           (self.rec.config, str(ds_path), str(self.run_root), str(resume) if resume else None),
                           device=self.device)

    def _apply_init_from(self, trainer: Any, run_dir: Path) -> None:
        """Load the pretrained G, D and G_ema the job starts from (its `init_from`), before the first step."""
        init = self.rec.init_from
        if not init:
            return
        from gan_core.training.transfer import PretrainedError, apply_pretrained

        try:
            path = fetch_init_weights(self.store, self.tenant, init, run_dir / "init")
            apply_pretrained(trainer, path)
        except ObjectNotFound:
            raise UserError(f"the pretrained weights this job starts from ({describe(init)}) no longer exist; "
                            "upload them again and start a new job") from None
        except PretrainedError as e:
            raise UserError(f"could not start from {describe(init)}: {e}") from None
        log.info("job %s starts from %s", self.job_id, describe(init))

    def _record_provenance(self, ds_path: Path) -> None:
        """What this attempt trains with, beside the resolved config: software versions and the data's hash."""
        from gan_core.versions import runtime_versions

        h = hashlib.sha256()
        with ds_path.open("rb") as f:  # streamed: a prepared set can be large
            for chunk in iter(lambda: f.read(1 << 20), b""):
                h.update(chunk)
        versions, digest = runtime_versions(self.device), h.hexdigest()
        self._fenced(lambda: self.lease.record_provenance(versions, digest))

    # Inception features of the dataset are computed once per dataset (and resolution), then
    # shared by every job on it through storage: gan_core caches them as run/features/<hash>.npz.
    def _features_prefix(self) -> str:
        return keys.dataset_features_prefix(self.tenant, self.rec.dataset_id)

    def _fetch_feature_cache(self) -> None:
        if not self.rec.config.get("metrics"):
            return
        try:
            for obj in self.store.list(self._features_prefix()):
                self.store.get_file(obj.key, self.run_root / "features" / obj.key.rsplit("/", 1)[-1])
        except Exception as e:  # a cache: on any trouble the trainer recomputes
            log.warning("feature cache fetch for %s failed: %s", self.job_id, e)

    def _publish_feature_cache(self) -> None:
        for path in sorted((self.run_root / "features").glob("*.npz")):
            key = self._features_prefix() + path.name
            if not self.store.exists(key):
                self.store.put_file(key, path, "application/octet-stream")
                with self.core.db.write() as s:  # charged to the tenant, removed with the dataset
                    blobs.register(s, self.tenant, key, path.stat().st_size, "dataset", self.rec.dataset_id)

    def _fetch_resume(self, run_dir: Path) -> Path | None:
        ckpt = self.core.jobs.checkpoint(self.rec, "latest")
        if ckpt is None:
            return None
        dest = run_dir / "resume" / ckpt.name
        dest.parent.mkdir(parents=True, exist_ok=True)
        self.store.get_file(ckpt.object_key, dest)
        # The sidecar makes gan_core verify the download against the sha recorded at registration.
        dest.with_name(dest.name + ".sha256").write_text(ckpt.sha256 + "\n")
        # Ticks after this checkpoint are redone by the resumed run: they are dropped with the note.
        entry = {"attempt": self.lease.attempt, "kimg": ckpt.kimg, "checkpoint": ckpt.name, "at": _now_iso()}
        self._fenced(lambda: self.lease.note_resume(entry, truncate_after_kimg=ckpt.kimg))
        log.info("job %s resumes from %s (%.3f kimg)", self.job_id, ckpt.name, ckpt.kimg)
        return dest

    def _upload_last(self, result: Any) -> None:
        # The trainer snapshots on stop/finish (via on_snapshot); this covers a trainer that did not.
        last = getattr(result, "last_checkpoint", None)
        if last is not None and Path(last).name not in self._uploaded and Path(last).is_file() \
                and Path(last).name.startswith("ckpt-"):
            from gan_core.training.checkpoint import sha256_hex

            last_path = Path(last)

            class _Snap:
                kimg = float(result.kimg)
                checkpoint = last_path
                grid = last_path.with_suffix(".missing")
                sha256 = sha256_hex(last_path.read_bytes())
                metrics: dict = {}
                is_best = False
                final = True

            self.on_snapshot(_Snap)

    def fail(self, message: str, bound_s: float = 120.0) -> None:
        """Record the failure, retrying while the database is down (bounded: after that the sweep
        takes the job over, so it is never left `running` forever)."""
        deadline, pause = time.monotonic() + bound_s, 1.0
        while True:
            try:
                self.lease.finish(JobStatus.failed, message)
                return
            except LeaseLost:
                return
            except Exception as e:
                if time.monotonic() + pause > deadline:
                    log.error("could not record the failure of job %s (%s); the sweep will handle it", self.job_id, e)
                    return
                log.warning("recording the failure of job %s failed (%s); retrying in %.0f s", self.job_id, e, pause)
                time.sleep(pause)
                pause = min(pause * 2, 15.0)


class UserError(Exception):
    """A failure whose message tells the user what to do."""


def user_message(exc: BaseException) -> str:
    """Turn an exception into a message a user can act on."""
    from gan_core.data import DatasetError
    from gan_core.training import CheckpointError, TrainingDiverged

    if isinstance(exc, (UserError, TrainingDiverged, DatasetError)):
        return str(exc)
    if isinstance(exc, StorageError):
        return (f"the object store failed while training ({exc}); the job stopped at its last stored checkpoint. "
                "Start it again once storage is healthy")
    if isinstance(exc, DBAPIError):
        return (f"the database failed while training ({type(exc.orig).__name__}); the job stopped at its last "
                "stored checkpoint. Start it again once the database is healthy")
    if isinstance(exc, CheckpointError):
        return f"the stored checkpoint could not be loaded ({exc}); start a new job"
    text = str(exc)
    if "out of memory" in text.lower():
        return ("the worker ran out of memory; start the job again with a smaller batch_size, "
                "a lower resolution preset, or on a bigger GPU")
    return f"training failed: {type(exc).__name__}: {text[:500]}. Retry the job; if it fails again, report this message"
