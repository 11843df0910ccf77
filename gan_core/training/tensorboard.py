"""Training stats as TensorBoard event files, beside stats.jsonl, so people can use the tool they know.

    write_events(ticks, snapshots, logdir)          # from recorded stats (a finished run, or a service job)
    TensorBoardCallbacks(logdir)                    # live, as a TrainingCallbacks while training

Scalars are grouped as TensorBoard shows them: Loss/G, Loss/D, DIG/dig, GradNorm/real, Augment/p,
Speed/sec_per_kimg, Metrics/kid ... with the step in images shown (kimg x 1000), as NVlabs logs them.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from .trainer import TrainingCallbacks

GROUPS = {"loss_G": "Loss/G", "loss_D": "Loss/D", "r1": "Loss/r1", "dig": "DIG/dig",
          "grad_norm_real": "GradNorm/real", "grad_norm_fake": "GradNorm/fake", "D_real": "Logits/real",
          "D_fake": "Logits/fake", "augment_p": "Augment/p", "sec_per_kimg": "Speed/sec_per_kimg",
          "rss_mb": "Resources/rss_mb", "gpu_mem_peak_mb": "Resources/gpu_mem_peak_mb"}
SKIP = {"tick", "kimg", "total_kimg", "time", "eta_seconds"}


def _writer(logdir: Path) -> Any:
    from torch.utils.tensorboard import SummaryWriter

    return SummaryWriter(log_dir=str(logdir), flush_secs=30)


def _scalars(writer: Any, stats: dict[str, Any], prefix_unknown: str) -> None:
    step = int(round(float(stats.get("kimg") or 0.0) * 1000))
    walltime = stats.get("time") if isinstance(stats.get("time"), (int, float)) and stats.get("time") > 1e9 else None
    for key, value in stats.items():
        if key in SKIP or isinstance(value, bool) or not isinstance(value, (int, float)):
            continue
        writer.add_scalar(GROUPS.get(key, f"{prefix_unknown}/{key}"), float(value), step, walltime=walltime)


def write_events(ticks: list[dict[str, Any]], snapshots: list[dict[str, Any]], logdir: str | Path) -> Path:
    """Write every tick's stats and every snapshot's metrics; returns the event file."""
    logdir = Path(logdir)
    writer = _writer(logdir)
    try:
        for stats in ticks:
            _scalars(writer, stats, "Stats")
        for snap in snapshots:
            _scalars(writer, {"kimg": snap.get("kimg"), **(snap.get("metrics") or {})}, "Metrics")
    finally:
        writer.close()
    return max(logdir.glob("events.out.tfevents.*"), key=lambda p: p.stat().st_mtime)


class TensorBoardCallbacks(TrainingCallbacks):
    """Writes each tick (and each snapshot's metrics) as it happens."""

    def __init__(self, logdir: str | Path):
        self.writer = _writer(Path(logdir))

    def on_tick(self, stats: dict[str, Any]) -> None:
        _scalars(self.writer, stats, "Stats")
        self.writer.flush()

    def on_snapshot(self, snapshot: Any) -> None:
        if snapshot.metrics:
            _scalars(self.writer, {"kimg": snapshot.kimg, **snapshot.metrics}, "Metrics")

    def close(self) -> None:
        self.writer.close()
