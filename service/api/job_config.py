"""Turn a job request into the fully resolved gan_core TrainConfig stored in the job record."""

from __future__ import annotations

import math
from typing import Any, cast

from gan_core.config import ARCH_PRESETS as gan_core_arch_presets
from gan_core.config import (
    NetworkConfig,
    RegularizerConfig,
    TrainConfig,
    config_from_dict,
    config_to_dict,
    fit_to_dataset,
    get_preset,
    validate_config,
)
from service.api.schemas.jobs import JobCreate
from service.core.settings import Settings


class JobConfigError(ValueError):
    """A request that names valid values but does not make a usable config."""


def resolve_config(body: JobCreate, settings: Settings, pretrained_network: dict[str, Any] | None = None) -> TrainConfig:
    """`pretrained_network`: the network config of the job's `init_from` weights; it replaces the preset's."""
    cfg = get_preset(_preset_name(body, settings))
    _apply_network(cfg, body, pretrained_network)
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
    _apply_gpus(cfg, body, settings)
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
    if body.freeze_d_layers:
        cfg.freeze_d_layers = _freeze_d_layers(body.freeze_d_layers, cfg, pretrained_network is not None)
    _apply_schedule(cfg, body)
    try:
        validate_config(cfg)
    except ValueError as e:
        raise JobConfigError(str(e)) from e
    return cfg


def _apply_gpus(cfg: TrainConfig, body: JobCreate, settings: Settings) -> None:
    """`gpus` against what this server's workers own; the split itself is checked by validate_config."""
    if body.gpus is not None:
        if body.gpus > settings.max_job_gpus:
            raise JobConfigError(f"gpus must be <= {settings.max_job_gpus} on this server (DIGGAN_MAX_JOB_GPUS), "
                                 f"got {body.gpus}")
        cfg.gpus = body.gpus
    if body.batch_gpu is not None:
        cfg.batch_gpu = body.batch_gpu


# An arch's starting preset (gan_core's table), except stylegan2, which gets the server's default preset.
ARCH_PRESETS = {arch: name for arch, name in gan_core_arch_presets.items() if arch != "stylegan2"}


def _preset_name(body: JobCreate, settings: Settings) -> str:
    """The preset a job starts from: `preset`, else `arch`'s preset, else the server default."""
    arch = getattr(body, "arch", None)
    if body.preset is None:
        return ARCH_PRESETS.get(arch or "", settings.default_preset)
    preset_arch = get_preset(body.preset).network.arch
    if arch is not None and arch != preset_arch:
        hint = f"preset {ARCH_PRESETS[arch]!r}" if arch in ARCH_PRESETS else "a stylegan2 preset such as 'cpu-tiny'"
        raise JobConfigError(f"preset {body.preset!r} is a {preset_arch} preset but arch is {arch!r}; "
                             f"drop one of them or use {hint}")
    return body.preset


def fit_config_to_dataset(config: dict[str, Any], dataset_classes: int) -> dict[str, Any]:
    """The job's config with what depends on its dataset resolved (BigGAN's num_classes = the dataset's)."""
    try:
        return config_to_dict(fit_to_dataset(config_from_dict(config), dataset_classes))
    except ValueError as e:
        raise JobConfigError(str(e)) from e


def resolve_config_dict(body: JobCreate, settings: Settings, pretrained_network: dict[str, Any] | None = None
                        ) -> dict[str, Any]:
    return config_to_dict(resolve_config(body, settings, pretrained_network))


def _apply_network(cfg: TrainConfig, body: JobCreate, pretrained_network: dict[str, Any] | None) -> None:
    if pretrained_network is None:
        if body.resolution is not None:
            cfg.network.resolution = body.resolution
        return
    try:
        net = NetworkConfig(**pretrained_network)
    except TypeError as e:  # stored by a version with other network fields
        raise JobConfigError(f"the pretrained weights' network config is not one this server understands ({e})") from e
    if body.resolution is not None and body.resolution != net.resolution:
        raise JobConfigError(f"resolution {body.resolution} conflicts with the pretrained weights in init_from, which "
                             f"are {net.resolution}x{net.resolution}; drop `resolution` (the dataset is resized to "
                             f"{net.resolution}) or start from a model of that resolution")
    arch, net_arch = getattr(body, "arch", None), getattr(net, "arch", "stylegan2")
    if arch is not None and arch != net_arch:
        raise JobConfigError(f"arch {arch!r} conflicts with the pretrained weights in init_from, which are a {net_arch}; "
                             "drop `arch` (a job started from weights keeps their network)")
    cfg.network = net


def _freeze_d_layers(n: int, cfg: TrainConfig, has_init_from: bool) -> int:
    """Freeze-D is a fine-tuning method: refused without pretrained weights, where the frozen layers would keep
    their random initialisation for the whole run (NVlabs' train.py accepts --freezed without --resume, but
    then D's first layers never learn: a silent misconfiguration, which the service reports instead; gan_core's
    TrainConfig.freeze_d_layers still allows it for experiments). Checked here against D's real layer count,
    so a job cannot fail at its first step for it."""
    from gan_core.networks import build_discriminator
    from gan_core.training.freeze import d_layers

    if not has_init_from:
        raise JobConfigError(f"freeze_d_layers={n} needs init_from (pretrained weights to fine-tune): without them "
                             "the frozen discriminator layers would keep their random initialisation; drop "
                             "freeze_d_layers or start from a model or another job's checkpoint")
    if cfg.network.arch != "stylegan2":
        raise JobConfigError(f"freeze_d_layers is implemented for the stylegan2 discriminator, not {cfg.network.arch}")
    import torch

    with torch.device("meta"):  # the layer names only: no memory, no initialisation
        layers = d_layers(build_discriminator(cfg.network))
    if n > len(layers):
        raise JobConfigError(f"freeze_d_layers={n}, but this {cfg.network.resolution}x{cfg.network.resolution} "
                             f"discriminator has {len(layers)} freezable layers ({layers[0]} .. {layers[-1]}; the "
                             "4x4 epilogue always trains)")
    return int(n)


# RegularizerConfig's own default interval (16, NVlabs' D_reg_interval): for a regularizer that suggests none.
# (A dataclass field's default is typed as possibly MISSING; this one is set.)
_DEFAULT_INTERVAL = cast(int, RegularizerConfig.__dataclass_fields__["interval"].default)


def _regularizer(name: str, weight: float | None, interval: int | None, params: dict[str, Any],
                 cfg: TrainConfig) -> RegularizerConfig:
    """What the request leaves out comes from the preset's entry of the same name, else from the defaults
    GET /v1/regularizers advertises (gan_core.regularizers.suggested_defaults)."""
    from gan_core.regularizers import suggested_defaults

    base = cfg.regularizer(name)
    default_weight, default_interval = suggested_defaults(name)
    merged = dict(base.params) if base else {}
    merged.update({k: float(v) for k, v in params.items()})
    if weight is None:
        weight = base.weight if base else default_weight
    if weight is None:
        raise JobConfigError(f"regularizer {name!r} has no default weight; give one (\"weight\": ...)")
    if interval is None:
        interval = base.interval if base else default_interval
    kept = {"scale_by_interval": base.scale_by_interval} if base and hasattr(base, "scale_by_interval") else {}
    return RegularizerConfig(name=name, weight=float(weight),
                             interval=interval or _DEFAULT_INTERVAL,
                             params=merged, **kept)


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
    minibatch_kimg = cfg.batch_size / 1000.0
    if cfg.tick_kimg < minibatch_kimg:  # a tick of less than one minibatch never ends (0 images per tick)
        raise JobConfigError(f"tick_kimg ({cfg.tick_kimg:g}) must hold at least one minibatch: batch_size "
                             f"{cfg.batch_size} is {minibatch_kimg:g} kimg; use tick_kimg >= {minibatch_kimg:g} "
                             f"(and kimg >= {minibatch_kimg:g})")


def charged_kimg(config: dict[str, Any]) -> float:
    """What a job costs against the kimg quota: its training kimg, plus the images its snapshot metrics
    generate (metrics_num_gen per evaluated snapshot, final one included), in thousands."""
    kimg = float(config["kimg"])
    if not config.get("metrics"):
        return kimg
    snapshot_kimg = float(config.get("tick_kimg") or kimg) * int(config.get("snapshot_ticks") or 1)
    snapshots = math.ceil(kimg / snapshot_kimg) if snapshot_kimg > 0 else 1
    evaluated = snapshots // max(1, int(config.get("metrics_every") or 1)) + 1
    return kimg + evaluated * int(config.get("metrics_num_gen") or 0) / 1000.0
