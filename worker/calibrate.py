"""Measure a training setup's seconds per kimg on this worker's device: a few real minibatches of the job's
own config on a synthetic dataset of its resolution (the data's content does not change the speed)."""

from __future__ import annotations

import tempfile
from pathlib import Path
from typing import Any

TICKS = 3  # the first tick pays for warm-up (allocations, cudnn autotuning); the last two are timed


def measure(config: dict[str, Any], device: str, minibatches_per_tick: int = 2) -> float:
    import torch

    from gan_core.config import config_from_dict
    from gan_core.data import PreparedDataset
    from gan_core.training import Trainer, TrainingCallbacks

    cfg = config_from_dict(config)
    cfg.metrics = []
    cfg.tick_kimg = cfg.batch_size * cfg.d_steps * minibatches_per_tick / 1000.0
    cfg.kimg = cfg.tick_kimg * TICKS
    cfg.snapshot_ticks = 10**6  # no snapshot before the end
    res, n = cfg.network.resolution, max(16, cfg.batch_size)
    gen = torch.Generator().manual_seed(0)
    images = torch.randint(0, 256, (n, cfg.network.img_channels, res, res), dtype=torch.uint8, generator=gen)
    labels = list(range(n)) if cfg.network.arch == "biggan" else None
    if labels is not None:
        labels = [i % max(1, cfg.network.num_classes or 10) for i in labels]
        cfg.network.num_classes = max(1, cfg.network.num_classes or 10)
    dataset = PreparedDataset(images=images, names=[f"{i}.png" for i in range(n)], resolution=res, labels=labels,
                              class_names=[str(i) for i in range(cfg.network.num_classes)] if labels else None)
    speeds: list[float] = []

    class Timer(TrainingCallbacks):
        def on_tick(self, stats: dict[str, Any]) -> None:
            speeds.append(float(stats["sec_per_kimg"]))

    with tempfile.TemporaryDirectory(prefix="diggan-calibrate-") as tmp:
        Trainer(cfg, dataset, Path(tmp), device=device, callbacks=Timer()).run()
    timed = speeds[1:] or speeds
    return sum(timed) / len(timed)
