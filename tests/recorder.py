"""A TrainingCallbacks that records ticks, snapshots and rollbacks and can stop a run after N ticks."""

from __future__ import annotations

from typing import Any

from gan_core.training import Rollback, Snapshot, TrainingCallbacks


class Recorder(TrainingCallbacks):
    def __init__(self, stop_after_ticks: int | None = None) -> None:
        self.ticks: list[dict[str, Any]] = []
        self.snapshots: list[Snapshot] = []
        self.rollbacks: list[Rollback] = []
        self.stop_after_ticks = stop_after_ticks

    def on_tick(self, stats: dict[str, Any]) -> None:
        self.ticks.append(stats)

    def on_snapshot(self, snap: Snapshot) -> None:
        self.snapshots.append(snap)

    def on_rollback(self, rollback: Rollback) -> None:
        self.rollbacks.append(rollback)

    def should_stop(self) -> bool:
        return self.stop_after_ticks is not None and len(self.ticks) >= self.stop_after_ticks
