"""Put jobs into states a test needs (a finished job, a dead worker's job, a stored checkpoint), by
writing the database rows and store objects a worker would have written. Used where running a real
worker to get there would only make a test slow, never in place of the code under test."""

from __future__ import annotations

import hashlib
from typing import Any

from sqlalchemy import update

from service.core import object_keys
from service.core.db.models import Checkpoint, Job
from service.core.db.types import seconds_before_now


def set_job(core: Any, job_id: str, *, heartbeat_age_s: float | None = None, **values: Any) -> None:
    """UPDATE the job row; `heartbeat_age_s` sets heartbeat_at that many seconds before the database's now."""
    if heartbeat_age_s is not None:
        values["heartbeat_at"] = seconds_before_now(heartbeat_age_s)
    with core.db.write() as s:
        s.execute(update(Job).where(Job.id == job_id).values(**values).execution_options(synchronize_session=False))


def add_checkpoint(core: Any, tenant: str, job_id: str, name: str, data: bytes, *, kimg: float = 0.032,
                   attempt: int = 1, grid: bytes | None = None, metrics: dict[str, float] | None = None,
                   is_best: bool = False, latest: bool = True, sha256: str | None = None) -> str:
    """Store `data` as checkpoint `name` of the job (under `attempt`'s keys) and register it; returns its key."""
    key = object_keys.job_checkpoint(tenant, job_id, attempt, name)
    core.store.put_bytes(key, data)
    grid_key = None
    if grid is not None:
        grid_key = object_keys.job_grid(tenant, job_id, attempt, name.replace(".pt", ".png"))
        core.store.put_bytes(grid_key, grid, "image/png")
    with core.db.write() as s:
        s.add(Checkpoint(job_id=job_id, name=name, attempt=attempt, object_key=key, grid_key=grid_key,
                         grid=grid_key.rsplit("/", 1)[-1] if grid_key else None, kimg=kimg,
                         sha256=sha256 or hashlib.sha256(data).hexdigest(), size=len(data), metrics=metrics or {},
                         is_best=is_best, final=False))
        if latest:
            values: dict[str, Any] = {"latest_checkpoint": name}
            if is_best:
                values["best_checkpoint"] = name
            s.execute(update(Job).where(Job.id == job_id).values(**values)
                      .execution_options(synchronize_session=False))
    return key
