"""Turn a job request into the fully resolved gan_core TrainConfig stored in the job record."""

from __future__ import annotations

from typing import Any

from gan_core.config import RegularizerConfig, TrainConfig, config_to_dict, get_preset, validate_config
from service.schemas.jobs import JobCreate
from service.settings import Settings


class JobConfigError(ValueError):
    """A request that names valid values but does not make a usable config."""


def resolve_config(body: JobCreate, settings: Settings) -> TrainConfig:
    cfg = get_preset(body.preset or settings.default_preset)
    if body.kimg is not None:
        cfg.kimg = float(body.kimg)
    if cfg.kimg > settings.max_kimg:
        raise JobConfigError(f"kimg must be <= {settings.max_kimg:g} on this server, got {cfg.kimg:g}")
    if body.seed is not None:
        cfg.seed = body.seed
    if body.augment is not None:
        cfg.augment.kind = body.augment
    if body.batch_size is not None:
        cfg.batch_size = body.batch_size
    if body.g_lr is not None:
        cfg.g_lr = float(body.g_lr)
    if body.d_lr is not None:
        cfg.d_lr = float(body.d_lr)
    if body.metrics is not None:
        cfg.metrics = list(body.metrics)
    if body.metrics_every is not None:
        cfg.metrics_every = body.metrics_every
    if body.metrics_num_gen is not None:
        cfg.metrics_num_gen = body.metrics_num_gen
    if body.regularizers is not None:
        cfg.regularizers = [_regularizer(spec.name, spec.weight, spec.interval, spec.params, cfg) for spec in body.regularizers]
    _apply_schedule(cfg, body)
    try:
        validate_config(cfg)
    except ValueError as e:
        raise JobConfigError(str(e)) from e
    return cfg


def resolve_config_dict(body: JobCreate, settings: Settings) -> dict[str, Any]:
    return config_to_dict(resolve_config(body, settings))


def _regularizer(name: str, weight: float, interval: int | None, params: dict[str, Any], cfg: TrainConfig) -> RegularizerConfig:
    # Unspecified interval/params fall back to the preset's entry of the same name.
    base = cfg.regularizer(name)
    merged = dict(base.params) if base else {}
    merged.update({k: float(v) for k, v in params.items()})
    return RegularizerConfig(
        name=name,
        weight=float(weight),
        interval=interval or (base.interval if base else RegularizerConfig.__dataclass_fields__["interval"].default),
        params=merged,
    )


def _apply_schedule(cfg: TrainConfig, body: JobCreate) -> None:
    """tick_kimg / snapshot_kimg: a snapshot is a whole number of ticks."""
    if body.tick_kimg is not None:
        cfg.tick_kimg = float(body.tick_kimg)
    if body.snapshot_kimg is not None:
        snap = float(body.snapshot_kimg)
        if body.tick_kimg is None and snap < cfg.tick_kimg:
            cfg.tick_kimg = snap  # a snapshot more often than the preset's tick: tick as often
        cfg.snapshot_ticks = max(1, round(snap / cfg.tick_kimg))
    if cfg.tick_kimg > cfg.kimg:
        cfg.tick_kimg = cfg.kimg  # at least one tick, so the job reports progress
