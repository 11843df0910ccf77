"""How fast a training setup runs on the workers' devices, for a time estimate before training.

A setup is what decides the speed (network, batch, augmentation, regularizers and their intervals, loss,
D steps); its signature keys the `calibrations` table. A worker measures one (worker/calibrate.py) when
asked through the training queue, so the figure comes from the device that will train.
"""

from __future__ import annotations

import hashlib
import json
from datetime import datetime
from typing import Any

from sqlalchemy import select

from service.core.db.engine import Database
from service.core.db.models import Calibration
from service.core.db.sql import insert_for
from service.core.db.types import seconds_before_now

SPEED_KEYS = ("network", "batch_size", "augment", "loss", "d_steps", "pl_weight", "pl_interval", "style_mixing_prob",
              "precision", "channels_last")
FRESH_S = 7 * 24 * 3600.0  # a calibration older than a week is measured again (drivers, code and load change)


def signature(config: dict[str, Any]) -> str:
    what = {k: config.get(k) for k in SPEED_KEYS}
    what["augment"] = (config.get("augment") or {}).get("kind")
    what["regularizers"] = sorted((r["name"], r.get("interval")) for r in config.get("regularizers") or [])
    return hashlib.sha256(json.dumps(what, sort_keys=True, default=str).encode()).hexdigest()


def latest(db: Database, sig: str) -> tuple[float, str, datetime] | None:
    """(seconds per kimg, device, when) of the newest fresh measurement, or None."""
    with db.read() as s:
        row = s.execute(select(Calibration.sec_per_kimg, Calibration.device, Calibration.measured_at)
                        .where(Calibration.signature == sig, Calibration.measured_at >= seconds_before_now(FRESH_S))
                        .order_by(Calibration.measured_at.desc()).limit(1)).first()
    return (row.sec_per_kimg, row.device, row.measured_at) if row else None


def record(db: Database, sig: str, device: str, sec_per_kimg: float) -> None:
    with db.write() as s:
        stmt = insert_for(s, Calibration).values(signature=sig, device=device, sec_per_kimg=sec_per_kimg)
        s.execute(stmt.on_conflict_do_update(index_elements=["signature", "device"],
                                             set_={"sec_per_kimg": sec_per_kimg,
                                                   "measured_at": stmt.excluded.measured_at}))
