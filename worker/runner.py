"""Run one job: storage <-> gan_core's Trainer.

- the prepared dataset is fetched to a temp run dir; the config comes from the record;
- resume from the record's latest checkpoint (verified by sha256), so a re-delivered job
  continues where the last stored checkpoint left it instead of starting over;
- every tick updates the record (progress, latest tick, heartbeat) and the stored series;
- every snapshot uploads the checkpoint (then points `latest` at it) and its grid;
- should_stop polls the cancel marker (throttled) and stops on a lost lease;
- a heartbeat thread keeps the lease fresh even while one tick runs for minutes.
"""

from __future__ import annotations

import logging
import math
import shutil
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

from gan_core.config import config_from_dict
from service import keys
from service.jobs.records import CheckpointInfo, JobRecord, JobRepo, JobStatus, utcnow
from service.settings import Settings
from service.storage import ObjectNotFound, ObjectStore
from worker.lease import LeaseLost

log = logging.getLogger(__name__)

STOP_POLL_S = 1.0


def configure_torch(settings: Settings) -> None:
    import torch

    torch.set_num_threads(settings.training_threads)


def pick_device(setting: str) -> str:
    import torch

    if setting in ("auto", "cuda") and torch.cuda.is_available():
        return "cuda"
    if setting == "cuda":
        log.warning("DIGGAN_DEVICE=cuda but no GPU is visible; training on cpu")
    return "cpu"


def _clean(v: Any) -> Any:
    # JSON has no NaN/inf; a diverging tick must still be storable.
    return None if isinstance(v, float) and not math.isfinite(v) else v


class JobCallbacks:
    """TrainingCallbacks for one job (duck-typed; bound to gan_core's class in make_callbacks)."""

    def __init__(self, runner: "JobRunner"):
        self.r = runner

    def on_tick(self, stats: dict[str, Any]) -> None:
        self.r.on_tick(stats)

    def on_snapshot(self, snapshot: Any) -> None:
        self.r.on_snapshot(snapshot)

    def should_stop(self) -> bool:
        return self.r.should_stop()


class JobRunner:
    def __init__(self, repo: JobRepo, store: ObjectStore, settings: Settings, rec: JobRecord, worker_id: str,
                 device: str, shutdown: threading.Event | None = None):
        self.repo, self.store, self.settings = repo, store, settings
        self.tenant, self.job_id, self.me, self.device = rec.tenant, rec.id, worker_id, device
        self.rec = rec
        self.series = repo.get_series(rec.tenant, rec.id)
        self.cancel = rec.status == JobStatus.cancelling
        self.lease_lost = False
        self.shutdown = shutdown or threading.Event()
        self._last_poll = 0.0
        self._stop_hb = threading.Event()
        self._uploaded: set[str] = set()

    # --- record writes, only while we hold the lease
    def _update(self, fn) -> JobRecord:
        def guarded(r: JobRecord):
            if r.worker_id != self.me:
                self.lease_lost = True
                return False
            if r.status == JobStatus.canceled or r.status == JobStatus.cancelling:
                self.cancel = True
            return fn(r)

        self.rec = self.repo.update(self.tenant, self.job_id, guarded)
        if self.lease_lost:
            raise LeaseLost(f"job {self.job_id} was taken over by {self.rec.worker_id}")
        return self.rec

    def _heartbeat_loop(self) -> None:
        while not self._stop_hb.wait(self.settings.worker_heartbeat_s):
            try:
                self._update(lambda r: setattr(r, "heartbeat_at", utcnow()))
            except LeaseLost:
                return
            except Exception as e:  # storage blip: the next beat retries
                log.warning("heartbeat for %s failed: %s", self.job_id, e)

    def _outlast_outage(self, fn, what: str):
        """Run a storage write; while storage is unavailable, wait with backoff (training pauses, nothing
        is lost) up to settings.storage_outage_tolerance_s, then let the error end the job."""
        from service.storage import StorageError

        deadline = time.monotonic() + self.settings.storage_outage_tolerance_s
        pause = 0.5
        while True:
            try:
                return fn()
            except (ObjectNotFound, LeaseLost):
                raise
            except StorageError as e:
                if time.monotonic() + pause > deadline or self.shutdown.is_set():
                    raise
                log.warning("job %s: %s failed (%s); storage looks down, retrying in %.1f s", self.job_id, what, e, pause)
                time.sleep(pause)
                pause = min(pause * 2, 10.0)

    # --- callbacks
    def on_tick(self, stats: dict[str, Any]) -> None:
        self._outlast_outage(lambda: self._on_tick(stats), "recording a tick")

    def on_snapshot(self, snap: Any) -> None:
        self._outlast_outage(lambda: self._on_snapshot(snap), "storing a snapshot")

    def _on_tick(self, stats: dict[str, Any]) -> None:
        stats = {k: _clean(v) for k, v in stats.items()}
        ticks = [t for t in self.series["ticks"] if t.get("tick") != stats.get("tick")]  # a retried tick once
        self.series["ticks"] = ticks + [stats]
        self.repo.put_series(self.tenant, self.job_id, self.series)
        total = float(stats.get("total_kimg") or self.rec.progress.total_kimg or 1.0)
        kimg = float(stats.get("kimg") or 0.0)

        def tick(r: JobRecord) -> None:
            r.latest_tick = stats
            r.progress.kimg, r.progress.total_kimg = kimg, total
            r.progress.fraction = min(1.0, kimg / total) if total > 0 else 0.0
            r.progress.eta_seconds = stats.get("eta_seconds")
            r.heartbeat_at = utcnow()
            if self.cancel and r.status == JobStatus.running:
                r.status = JobStatus.cancelling

        self._update(tick)

    def _on_snapshot(self, snap: Any) -> None:
        ckpt_path, grid_path = Path(snap.checkpoint), Path(snap.grid)
        name = ckpt_path.name
        # Objects first, pointer last: a crash in between leaves the old `latest`, never a dangling one.
        self.store.put_file(keys.job_checkpoint(self.tenant, self.job_id, name), ckpt_path)
        grid_name = None
        if grid_path.is_file():
            grid_name = grid_path.name
            self.store.put_file(keys.job_grid(self.tenant, self.job_id, grid_name), grid_path, "image/png")
        self._uploaded.add(name)
        if snap.metrics:
            self._publish_feature_cache()
        metrics = {k: float(v) for k, v in (snap.metrics or {}).items() if isinstance(v, (int, float)) and math.isfinite(v)}
        info = CheckpointInfo(name=name, kimg=float(snap.kimg), sha256=snap.sha256, size=ckpt_path.stat().st_size,
                              created_at=utcnow(), metrics=metrics, is_best=bool(snap.is_best), final=bool(snap.final),
                              grid=grid_name)
        self.series["snapshots"] = [x for x in self.series["snapshots"] if x.get("checkpoint") != name] + [
            {"kimg": info.kimg, "checkpoint": name, "grid": grid_name, "metrics": metrics, "is_best": info.is_best,
             "final": info.final}]
        self.repo.put_series(self.tenant, self.job_id, self.series)

        def point(r: JobRecord) -> None:
            r.checkpoints = [c for c in r.checkpoints if c.name != name] + [info]
            r.latest_checkpoint = name
            if info.is_best:
                r.best_checkpoint = name
            r.heartbeat_at = utcnow()

        self._update(point)

    def should_stop(self) -> bool:
        if self.cancel or self.lease_lost or self.shutdown.is_set():
            return True
        now = time.monotonic()
        if now - self._last_poll >= STOP_POLL_S:  # throttled: one small storage read per second
            self._last_poll = now
            try:
                if self.repo.cancel_requested(self.tenant, self.job_id):
                    self.cancel = True
            except Exception as e:
                log.warning("cancel poll for %s failed: %s", self.job_id, e)
        return self.cancel

    # --- the run
    def run(self) -> str:
        """Train to the end, to a cancel, or to a worker shutdown. Returns the final status."""
        from gan_core.data import load_prepared
        from gan_core.training import Trainer, TrainingCallbacks, TrainingDiverged

        class _Callbacks(JobCallbacks, TrainingCallbacks):
            pass

        hb = threading.Thread(target=self._heartbeat_loop, name=f"heartbeat-{self.job_id}", daemon=True)
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
            trainer = Trainer(cfg, dataset, self.run_root, device=self.device, callbacks=_Callbacks(self),
                              resume_from=resume)
            if resume is None:  # a resumed job has its own weights, which win over init_from
                self._apply_init_from(trainer, run_dir)
            try:
                result = trainer.run()
            except TrainingDiverged as e:
                if trainer.last_checkpoint is not None:
                    raise  # the trainer rolled back to its last good checkpoint once already; its message says so
                # Diverged before the first checkpoint: the rollback target is the start. Once, with halved rates.
                trainer = self._restart_after_divergence(cfg, dataset, run_dir, _Callbacks, e)
                try:
                    result = trainer.run()
                except TrainingDiverged as again:
                    raise TrainingDiverged(
                        f"{again}. This was after one rollback to the start of training with halved learning rates "
                        f"(g_lr={cfg.g_lr:g}, d_lr={cfg.d_lr:g}), so the job was stopped: start a new job with "
                        "lower g_lr/d_lr (the preset's are a safe choice) or a higher R1 weight"
                    ) from None
            self._upload_last(result)
            if self.lease_lost:
                raise LeaseLost(self.job_id)
            if result.stopped and self.cancel:
                return self._outlast_outage(lambda: self._finish(JobStatus.canceled), "recording the cancel")
            if result.stopped:  # worker shutdown: hand the job back, it resumes from the final checkpoint
                self._update(lambda r: _requeue(r))
                return JobStatus.queued.value
            return self._outlast_outage(lambda: self._finish(JobStatus.succeeded), "recording the end")
        finally:
            self._stop_hb.set()
            shutil.rmtree(run_dir, ignore_errors=True)

    def _restart_after_divergence(self, cfg: Any, dataset: Any, run_dir: Path, callbacks_cls: type, exc: Exception):
        from gan_core.training import Trainer

        cfg.g_lr *= 0.5
        cfg.d_lr *= 0.5
        log.warning("job %s diverged before its first checkpoint (%s); restarting from the start with g_lr=%g d_lr=%g",
                    self.job_id, exc, cfg.g_lr, cfg.d_lr)
        self.series = {"ticks": [], "snapshots": []}
        self.repo.put_series(self.tenant, self.job_id, self.series)

        def note(r: JobRecord) -> None:
            r.resumes.append({"attempt": r.attempt, "kimg": 0.0, "checkpoint": None, "at": utcnow().isoformat(),
                              "reason": f"rollback after divergence: {str(exc)[:300]}",
                              "g_lr": cfg.g_lr, "d_lr": cfg.d_lr})
            r.progress.kimg, r.progress.fraction, r.latest_tick = 0.0, 0.0, None

        self._update(note)
        self.run_root = run_dir / "run-rollback"
        trainer = Trainer(cfg, dataset, self.run_root, device=self.device, callbacks=callbacks_cls(self))
        self._apply_init_from(trainer, run_dir)  # "the start" of a transfer job is the pretrained weights
        return trainer

    def _apply_init_from(self, trainer: Any, run_dir: Path) -> None:
        """Load the pretrained G, D and G_ema the job starts from (its `init_from`), before the first step."""
        init = self.rec.init_from
        if not init:
            return
        from gan_core.training.transfer import PretrainedError, apply_pretrained
        from service.models.sources import describe, fetch_init_weights

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
        import hashlib

        from gan_core.versions import runtime_versions

        h = hashlib.sha256()
        with ds_path.open("rb") as f:  # streamed: a prepared set can be large
            for chunk in iter(lambda: f.read(1 << 20), b""):
                h.update(chunk)
        versions, digest = runtime_versions(self.device), h.hexdigest()

        def note(r: JobRecord) -> None:
            r.versions, r.dataset_sha256 = versions, digest

        self._update(note)

    # Inception features of the dataset are computed once per dataset (and resolution), then
    # shared by every job on it through storage: gan_core caches them as run/features/<hash>.npz.
    def _features_prefix(self) -> str:
        return keys.dataset_prefix(self.tenant, self.rec.dataset_id) + "features/"

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

    def _fetch_resume(self, run_dir: Path) -> Path | None:
        ckpt = self.rec.checkpoint("latest")
        if ckpt is None:
            return None
        dest = run_dir / "resume" / ckpt.name
        dest.parent.mkdir(parents=True, exist_ok=True)
        self.store.get_file(keys.job_checkpoint(self.tenant, self.job_id, ckpt.name), dest)
        # The sidecar makes gan_core verify the download against the sha recorded at upload.
        dest.with_name(dest.name + ".sha256").write_text(ckpt.sha256 + "\n")
        # Ticks after this checkpoint are redone by the resumed run: drop them from the series.
        self.series["ticks"] = [t for t in self.series["ticks"] if float(t.get("kimg") or 0) <= ckpt.kimg + 1e-9]
        self.series["snapshots"] = [s for s in self.series["snapshots"] if float(s.get("kimg") or 0) <= ckpt.kimg + 1e-9]
        self.repo.put_series(self.tenant, self.job_id, self.series)
        self._update(lambda r: r.resumes.append({"attempt": r.attempt, "kimg": ckpt.kimg, "checkpoint": ckpt.name,
                                                 "at": utcnow().isoformat()}))
        log.info("job %s resumes from %s (%.3f kimg)", self.job_id, ckpt.name, ckpt.kimg)
        return dest

    def _upload_last(self, result: Any) -> None:
        # The trainer snapshots on stop/finish (via on_snapshot); this covers a trainer that did not.
        last = getattr(result, "last_checkpoint", None)
        if last is not None and Path(last).name not in self._uploaded and Path(last).is_file() \
                and Path(last).name.startswith("ckpt-"):
            from gan_core.training.checkpoint import sha256_hex

            class _Snap:
                kimg = float(result.kimg)
                checkpoint = Path(last)
                grid = Path(last).with_suffix(".missing")
                sha256 = sha256_hex(Path(last).read_bytes())
                metrics: dict = {}
                is_best = False
                final = True

            self.on_snapshot(_Snap)

    def _finish(self, status: JobStatus, error: str | None = None) -> str:
        def done(r: JobRecord) -> None:
            r.status, r.error, r.finished_at = status, error, utcnow()
            if status == JobStatus.succeeded:
                r.progress.fraction, r.progress.eta_seconds = 1.0, 0.0

        self._update(done)
        return status.value

    def fail(self, message: str, bound_s: float = 120.0) -> None:
        """Record the failure, retrying while storage is down (bounded: after that the stale sweep
        takes the job over, so it is never left `running` forever)."""
        deadline, pause = time.monotonic() + bound_s, 1.0
        while True:
            try:
                self._finish(JobStatus.failed, message)
                return
            except LeaseLost:
                return
            except Exception as e:
                if time.monotonic() + pause > deadline:
                    log.error("could not record the failure of job %s (%s); the stale sweep will handle it",
                              self.job_id, e)
                    return
                log.warning("recording the failure of job %s failed (%s); retrying in %.0f s", self.job_id, e, pause)
                time.sleep(pause)
                pause = min(pause * 2, 15.0)


def _requeue(r: JobRecord) -> None:
    r.status, r.worker_id, r.heartbeat_at, r.enqueued_at = JobStatus.queued, None, None, None


class UserError(Exception):
    """A failure whose message tells the user what to do."""


def user_message(exc: BaseException) -> str:
    """Turn an exception into a message a user can act on."""
    from gan_core.data import DatasetError
    from gan_core.training import CheckpointError, TrainingDiverged

    if isinstance(exc, (UserError, TrainingDiverged, DatasetError)):
        return str(exc)
    from service.storage import StorageError

    if isinstance(exc, StorageError):
        return (f"the object store failed while training ({exc}); the job stopped at its last stored checkpoint. "
                "Start it again once storage is healthy")
    if isinstance(exc, CheckpointError):
        return f"the stored checkpoint could not be loaded ({exc}); start a new job"
    text = str(exc)
    if "out of memory" in text.lower():
        return ("the worker ran out of memory; start the job again with a smaller batch_size, "
                "a lower resolution preset, or on a bigger GPU")
    return f"training failed: {type(exc).__name__}: {text[:500]}. Retry the job; if it fails again, report this message"
