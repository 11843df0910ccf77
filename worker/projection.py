"""Run one projection: the database and object store <-> gan_core.latents.project.

- the checkpoint named at creation is fetched and verified against its sha256 (never unpickled), and its EMA
  generator (and D, for the `discriminator` distance) built on this worker's device;
- each image not yet done is projected with progress written (fenced, at most once a second) as steps done,
  the current distance and an ETA; a heartbeat thread keeps the lease fresh while the models load;
- a finished image's latent (.npy), reconstruction and progress GIF are stored (the files under this attempt's
  keys), then recorded with the latent row in one fenced transaction;
- a cancel (seen at a heartbeat or progress write), a lost lease or a worker shutdown stops the optimisation
  before its next step.
"""

from __future__ import annotations

import io
import logging
import threading
import time
from typing import Any

from service.core import latents as latent_store
from service.core.ids import new_id
from service.core.projections import (
    LeaseLost,
    ProjectionLease,
    ProjectionRecord,
    ProjectionStatus,
    result_key,
)
from service.core.services import Core
from service.core.storage import StorageError

log = logging.getLogger(__name__)

PROGRESS_EVERY_S = 1.0  # the API's progress bar polls about this often


class ProjectionRunner:
    def __init__(self, core: Core, rec: ProjectionRecord, device: str, shutdown: threading.Event | None = None):
        self.core, self.store, self.settings = core, core.store, core.settings
        self.rec, self.device = rec, device
        self.lease = ProjectionLease(core.db, rec)
        self.shutdown = shutdown or threading.Event()
        self.cancel = rec.cancel_requested_at is not None
        self.lease_lost = False
        self._stop_hb = threading.Event()
        self._last_write = 0.0

    # --- fenced writes
    def _fenced(self, fn: Any) -> None:
        try:
            if fn():
                self.cancel = True
        except LeaseLost:
            self.lease_lost = True
            raise

    def _heartbeat_loop(self) -> None:
        while not self._stop_hb.wait(self.settings.worker_heartbeat_s):
            try:
                self._fenced(self.lease.heartbeat)
            except LeaseLost as e:
                log.warning("projection heartbeat: %s; stopping at the next step", e)
                return
            except Exception as e:  # a database blip: the next beat retries
                log.warning("projection heartbeat failed: %s", e)

    def should_stop(self) -> bool:
        return self.cancel or self.lease_lost or self.shutdown.is_set()

    # --- the run
    def run(self) -> str:
        """Project every image not done yet. Returns the projection's new status (or "lease-lost")."""
        hb = threading.Thread(target=self._heartbeat_loop, name=f"heartbeat-{self.rec.id}", daemon=True)
        hb.start()
        try:
            G, D = self._load_models()
            steps = int(self.rec.config["steps"])
            for image in self.rec.images:
                if image.get("status") == "done":  # an earlier attempt finished it
                    continue
                if self.should_stop():
                    break
                self._project_one(G, D, image, steps)
            if self.lease_lost:
                return "lease-lost"
            if self._all_done():  # a cancel that came after the last image changes nothing
                self.lease.finish(ProjectionStatus.succeeded)
                return ProjectionStatus.succeeded.value
            if self.cancel:
                self.lease.finish(ProjectionStatus.canceled)
                return ProjectionStatus.canceled.value
            # Stopped by a worker shutdown: hand it back; the next attempt skips the images done.
            self.lease.requeue()
            return ProjectionStatus.queued.value
        except LeaseLost as e:
            log.warning("projection %s: %s; stopping without writing", self.rec.id, e)
            return "lease-lost"
        finally:
            self._stop_hb.set()

    def _all_done(self) -> bool:
        return all(i.get("status") == "done" for i in self.rec.images)

    def _load_models(self) -> tuple[Any, Any]:
        from gan_core.latents import require_stylegan2
        from gan_core.sampling import generator_from_payload
        from gan_core.training.checkpoint import load_checkpoint_bytes

        data = self.store.get_bytes(self.rec.checkpoint_key)
        # Verified against the sha256 recorded when the projection was created, then weights-only.
        payload = load_checkpoint_bytes(data, expected_sha256=self.rec.checkpoint_sha256, source=self.rec.checkpoint)
        G, cfg = generator_from_payload(payload, self.device)
        require_stylegan2(G)
        D = None
        if self.rec.config.get("distance") == "discriminator":
            from gan_core.networks import build_discriminator

            if "D" not in payload:
                raise UserError(f"checkpoint {self.rec.checkpoint} has no discriminator; use another distance")
            D = build_discriminator(cfg.network)
            D.load_state_dict(payload["D"])
            D = D.to(self.device).eval().requires_grad_(False)
        return G, D

    def _project_one(self, G: Any, D: Any, image: dict[str, Any], steps: int) -> None:
        from gan_core.latents import ProjectionConfig, load_target, project

        done_before = sum(steps for i in self.rec.images if i.get("status") == "done")
        target = load_target(io.BytesIO(self.store.get_bytes(image["target_key"])), G.img_resolution)
        cfg = ProjectionConfig(steps=steps, w_plus=bool(self.rec.config["w_plus"]),
                               distance=str(self.rec.config["distance"]), seed=int(self.rec.config["seed"]))
        started = time.monotonic()

        def progress(step: int, total: int, distance: float) -> None:
            now = time.monotonic()
            if now - self._last_write < PROGRESS_EVERY_S and step < total:
                return
            self._last_write = now
            remaining = self.rec.total_steps - done_before - step
            eta = (now - started) / step * remaining if step else None
            try:
                self._fenced(lambda: self.lease.progress(done_before + step, distance, eta))
            except LeaseLost:
                pass  # should_stop() ends the run before the next step
            except Exception as e:  # a database blip: progress is a report, the work goes on
                log.warning("projection progress write failed: %s", e)

        result = project(G, target.to(self.device), cfg, D=D, progress=progress, should_stop=self.should_stop)
        if result.stopped:
            return
        self._store_result(result, image, done_before + steps)

    def _store_result(self, result: Any, image: dict[str, Any], steps_done: int) -> None:
        from PIL import Image

        rec, index, attempt = self.rec, int(image["index"]), self.lease.attempt
        w = result.w.numpy()
        npy = latent_store.npy_bytes(w)
        latent_id = new_id("lat")
        latent = latent_store.LatentRecord(
            id=latent_id, tenant=rec.tenant, job_id=rec.job_id,
            name=f"{image.get('filename') or f'image {index}'} (projected)"[:200], kind=latent_store.kind_of(w.shape),
            shape=list(w.shape), checkpoint=rec.checkpoint, checkpoint_sha256=rec.checkpoint_sha256,
            source={"type": "projection", "projection_id": rec.id, "index": index, "filename": image.get("filename"),
                    "distance": result.distance, "distance_name": result.config.distance, "steps": result.steps,
                    "w_plus": result.config.w_plus},
            object_key=latent_store.latent_key(rec.tenant, rec.job_id, latent_id), size=len(npy))
        recon = _png(Image.fromarray(result.image.permute(1, 2, 0).numpy()))
        gif = _gif(result.frames)
        recon_key = result_key(rec.tenant, rec.job_id, rec.id, attempt, index, "reconstruction.png")
        gif_key = result_key(rec.tenant, rec.job_id, rec.id, attempt, index, "progress.gif")
        # Files first, the record last: a crash in between leaves the image to be done again, never a
        # result pointing at nothing.
        self.store.put_bytes(latent.object_key, npy, "application/octet-stream")
        self.store.put_bytes(recon_key, recon, "image/png")
        self.store.put_bytes(gif_key, gif, "image/gif")
        summary = result.summary()
        info = {"distance": result.distance, "distance_name": result.config.distance,
                "pixel_mse": summary["pixel_mse"], "initial_distance": summary["initial_distance"],
                "steps": result.steps, "reconstruction_key": recon_key, "gif_key": gif_key}
        self._fenced(lambda: self.lease.record_image(index, info, latent,
                                                      [(recon_key, len(recon)), (gif_key, len(gif))], steps_done))
        image.update(info, status="done", latent_id=latent.id)
        log.info("projection %s: image %d done (distance %.4g, latent %s)", rec.id, index, result.distance, latent.id)

    def fail(self, message: str) -> None:
        try:
            self.lease.finish(ProjectionStatus.failed, message)
        except LeaseLost:
            pass
        except Exception as e:  # the database is down: the sweep fails or re-queues it once the heartbeat is stale
            log.error("could not record the failure of projection %s (%s)", self.rec.id, e)


class UserError(Exception):
    """A failure whose message tells the user what to do."""


def user_message(exc: BaseException) -> str:
    from gan_core.latents import LatentError
    from gan_core.training.checkpoint import CheckpointError

    if isinstance(exc, (UserError, LatentError)):
        return str(exc)
    if isinstance(exc, CheckpointError):
        return f"the checkpoint could not be loaded ({exc}); start a projection with another checkpoint"
    if isinstance(exc, StorageError):
        return f"the object store failed during the projection ({exc}); start it again once storage is healthy"
    text = str(exc)
    if "out of memory" in text.lower():
        return "the worker ran out of memory; project fewer images at once, or use the 'pixel' distance"
    return f"projection failed: {type(exc).__name__}: {text[:500]}"


def _png(img: Any) -> bytes:
    buf = io.BytesIO()
    img.save(buf, format="PNG")
    return buf.getvalue()


def _gif(frames: list[Any], duration_ms: int = 100) -> bytes:
    buf = io.BytesIO()
    frames[0].save(buf, format="GIF", save_all=True, append_images=frames[1:], duration=duration_ms, loop=0)
    return buf.getvalue()
