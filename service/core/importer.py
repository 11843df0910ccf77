"""Import the JSON records of version 0.1 (one object per record in the object store) into the database.

    python -m service import-records [--dry-run]

What 0.1 stored, and where it goes:
    system/api-keys/<id>.json                          -> api_keys
    tenants/<t>/records/datasets/<id>.json             -> datasets (+ blobs for tenants/<t>/datasets/<id>/*)
    tenants/<t>/records/models/<id>.json               -> models   (+ blobs for tenants/<t>/models/<id>/*)
    tenants/<t>/records/jobs/<id>.json                 -> jobs, checkpoints (+ blobs for tenants/<t>/jobs/<id>/*)
    tenants/<t>/jobs/<id>/series.json                  -> ticks
    tenants/<t>/jobs/<id>/samples/<smp>/samples.json   -> sample_sets
    tenants/<t>/idempotency/<hash>.json                -> idempotency_keys
Checkpoints and grids stay where 0.1 put them; their rows record those keys. Every insert is
`ON CONFLICT DO NOTHING`, so running it again imports only what is new, and says so. A job that
was running when the old service stopped keeps its status: its heartbeat is old, so the sweep
re-queues it and it resumes from its latest checkpoint.
"""

from __future__ import annotations

import json
import logging
from collections import Counter
from datetime import datetime, timezone
from typing import Any

from service.core import blobs
from service.core.db.engine import Database
from service.core.db.models import ApiKey, Checkpoint, Dataset, IdempotencyKey, Job, Model, SampleSet, Tick
from service.core.db.sql import insert_ignore
from service.core.storage import ObjectNotFound, ObjectStore

log = logging.getLogger(__name__)


def _dt(value: Any) -> datetime | None:
    if value in (None, ""):
        return None
    dt = datetime.fromisoformat(str(value).replace("Z", "+00:00"))
    return dt if dt.tzinfo else dt.replace(tzinfo=timezone.utc)


def _when(value: Any) -> datetime:
    """For NOT NULL timestamps: the recorded time, or now when 0.1 did not record one."""
    return _dt(value) or datetime.now(timezone.utc)


def _json(store: ObjectStore, key: str) -> Any:
    try:
        return json.loads(store.get_bytes(key))
    except (ObjectNotFound, ValueError) as e:
        log.warning("skipping %s: %s", key, e)
        return None


class Importer:
    def __init__(self, db: Database, store: ObjectStore, dry_run: bool = False):
        self.db, self.store, self.dry_run = db, store, dry_run
        self.imported: Counter[str] = Counter()
        self.present: Counter[str] = Counter()

    def _insert(self, s: Any, kind: str, table: Any, values: dict[str, Any], keys: list[str]) -> bool:
        if self.dry_run:
            exists = s.get(table, tuple(values[k] for k in keys) if len(keys) > 1 else values[keys[0]])
            (self.present if exists else self.imported)[kind] += 1
            return exists is None
        won = insert_ignore(s, table, values, keys) == 1
        (self.imported if won else self.present)[kind] += 1
        return won

    def _charge(self, s: Any, tenant: str, prefix: str, owner_type: str, owner_id: str) -> None:
        """0.1 charged everything under tenants/<t>/ to the tenant; so does this."""
        if self.dry_run:
            return
        for obj in self.store.list(prefix):
            blobs.register(s, tenant, obj.key, obj.size, owner_type, owner_id)

    def run(self) -> dict[str, dict[str, int]]:
        with self.db.write() as s:
            for obj in self.store.list("system/api-keys/"):
                self._api_key(s, _json(self.store, obj.key))
            tenants = sorted({o.key.split("/")[1] for o in self.store.list("tenants/") if o.key.count("/") >= 2})
            for tenant in tenants:
                self._tenant(s, tenant)
            if self.dry_run:
                s.rollback()
        return {"imported": dict(self.imported), "already_present": dict(self.present)}

    def _api_key(self, s: Any, rec: dict | None) -> None:
        if not rec:
            return
        self._insert(s, "api_keys", ApiKey, {
            "id": rec["id"], "tenant": rec["tenant"], "name": rec.get("name", ""), "salt": rec["salt"],
            "sha256": rec["sha256"], "quotas": rec.get("quotas") or {},
            "created_at": _when(rec.get("created_at")),
            "revoked_at": _dt(rec.get("revoked_at"))}, ["id"])

    def _tenant(self, s: Any, tenant: str) -> None:
        root = f"tenants/{tenant}/"
        for obj in self.store.list(f"{root}records/datasets/"):
            rec = _json(self.store, obj.key)
            if rec and self._insert(s, "datasets", Dataset, {
                    **{k: rec[k] for k in ("id", "tenant", "name", "num_images", "resolution")},
                    "warnings": rec.get("warnings", []), "size_bytes": rec.get("size_bytes", 0),
                    "original_bytes": rec.get("original_bytes", 0), "source": rec.get("source", "zip"),
                    "num_classes": rec.get("num_classes", 0), "class_names": rec.get("class_names", []),
                    "created_at": _when(rec.get("created_at")), "status": "ready"}, ["id"]):
                self._charge(s, tenant, f"{root}datasets/{rec['id']}/", "dataset", rec["id"])
        for obj in self.store.list(f"{root}records/models/"):
            rec = _json(self.store, obj.key)
            if rec and self._insert(s, "models", Model, {
                    **{k: rec[k] for k in ("id", "tenant", "name", "kind", "resolution", "network", "sha256")},
                    "has_discriminator": rec.get("has_discriminator", True), "notes": rec.get("notes", []),
                    "size_bytes": rec.get("size_bytes", 0), "original_bytes": rec.get("original_bytes", 0),
                    "original_sha256": rec.get("original_sha256", ""), "created_at": _when(rec.get("created_at")),
                    "status": "ready"}, ["id"]):
                self._charge(s, tenant, f"{root}models/{rec['id']}/", "model", rec["id"])
        for obj in self.store.list(f"{root}records/jobs/"):
            rec = _json(self.store, obj.key)
            if rec:
                self._job(s, tenant, rec)
        for obj in self.store.list(f"{root}idempotency/"):
            rec = _json(self.store, obj.key)
            if rec:
                self._insert(s, "idempotency_keys", IdempotencyKey, {
                    "tenant": tenant, "key_hash": obj.key.rsplit("/", 1)[-1].removesuffix(".json"),
                    "body_hash": rec["body_hash"], "job_id": rec["job_id"],
                    "created_at": _when(rec.get("created_at"))}, ["tenant", "key_hash"])

    def _job(self, s: Any, tenant: str, rec: dict) -> None:
        job_id, progress = rec["id"], rec.get("progress") or {}
        prefix = f"tenants/{tenant}/jobs/{job_id}/"
        fresh = self._insert(s, "jobs", Job, {
            "id": job_id, "tenant": tenant, "dataset_id": rec["dataset_id"], "status": rec.get("status", "queued"),
            "config": rec["config"], "request": rec.get("request") or {}, "kimg": progress.get("kimg", 0.0),
            "total_kimg": progress.get("total_kimg", rec["config"].get("kimg", 0.0)),
            "charged_kimg": progress.get("total_kimg", rec["config"].get("kimg", 0.0)),
            "eta_seconds": progress.get("eta_seconds"), "latest_tick": rec.get("latest_tick"), "error": rec.get("error"),
            "created_at": _when(rec.get("created_at")), "updated_at": _when(rec.get("updated_at")),
            "started_at": _dt(rec.get("started_at")), "finished_at": _dt(rec.get("finished_at")),
            "cancel_requested_at": _dt(rec.get("cancel_requested_at")), "heartbeat_at": _dt(rec.get("heartbeat_at")),
            "enqueued_at": _dt(rec.get("enqueued_at")), "enqueue_count": 1 if rec.get("enqueued_at") else 0,
            "worker_id": rec.get("worker_id"), "attempt": rec.get("attempt", 0), "device": rec.get("device"),
            "versions": rec.get("versions") or {}, "dataset_sha256": rec.get("dataset_sha256"),
            "latest_checkpoint": rec.get("latest_checkpoint"), "best_checkpoint": rec.get("best_checkpoint"),
            "resumes": rec.get("resumes") or [], "init_from": rec.get("init_from"),
            "idempotency_key_hash": rec.get("idempotency_key_hash")}, ["id"])
        if not fresh:
            return
        if not self.dry_run:
            s.flush()  # checkpoints and ticks reference the job row
        for c in rec.get("checkpoints") or []:
            grid = c.get("grid")
            self._insert(s, "checkpoints", Checkpoint, {
                "job_id": job_id, "name": c["name"], "attempt": rec.get("attempt", 0),
                "object_key": f"{prefix}checkpoints/{c['name']}", "grid": grid,
                "grid_key": f"{prefix}grids/{grid}" if grid else None, "kimg": c["kimg"], "sha256": c["sha256"],
                "size": c["size"], "metrics": c.get("metrics") or {}, "is_best": c.get("is_best", False),
                "final": c.get("final", False), "created_at": _when(c.get("created_at"))}, ["job_id", "name"])
        series = _json(self.store, f"{prefix}series.json") if self.store.exists(f"{prefix}series.json") else None
        for t in (series or {}).get("ticks", []):
            self._insert(s, "ticks", Tick, {"job_id": job_id, "tick": int(t.get("tick") or 0),
                                           "attempt": rec.get("attempt", 0), "kimg": float(t.get("kimg") or 0.0),
                                           "stats": t}, ["job_id", "tick"])
        for obj in self.store.list(f"{prefix}samples/"):
            if obj.key.endswith("/samples.json"):
                sset = _json(self.store, obj.key)
                if sset:
                    self._insert(s, "sample_sets", SampleSet, {
                        "id": sset["id"], "tenant": tenant, "job_id": job_id, "status": "ready",
                        "checkpoint": sset["checkpoint"], "psi": sset["psi"], "class_index": sset.get("class_index"),
                        "seeds": [img["seed"] for img in sset.get("images", [])],
                        "object_prefix": obj.key.removesuffix("samples.json"),
                        "created_at": _when(sset.get("created_at"))}, ["id"])
        self._charge(s, tenant, prefix, "job", job_id)


def import_records(db: Database, store: ObjectStore, dry_run: bool = False) -> dict[str, dict[str, int]]:
    return Importer(db, store, dry_run).run()
