"""One path from a training request to a `TrainConfig`, shared by `gan_core train` and POST /v1/jobs.

A `TrainRequest` holds what a person asked for (every field optional); `resolve_train_config` holds
every rule that turns it into a full config: which preset (or a stored config) to start from, the
network (the preset's or the pretrained weights'), regularizer defaults and merging, the tick and
snapshot schedule, `--set`-style overrides, and validation. The CLI and the API only translate their
flags or JSON into a request, so the same inputs give the same config on both paths.

Service policy (a server's kimg cap; Freeze-D only with pretrained weights) stays in the service.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass, field
from typing import Any, cast

from .config import (
    ARCH_PRESETS,
    NetworkConfig,
    RegularizerConfig,
    TrainConfig,
    apply_overrides,
    get_preset,
    network_conflicts,
    validate_config,
)


class ConfigRequestError(ValueError):
    """A request that does not make a usable config; the message says what to change."""


@dataclass
class RegularizerRequest:
    """One regularizer as asked for: what is left out (None, or a missing param) comes from the
    config's entry of the same name, else from the regularizer's suggested defaults."""

    name: str
    weight: float | None = None
    interval: int | None = None
    params: dict[str, float] = field(default_factory=dict)


@dataclass
class TrainRequest:
    preset: str | None = None  # None: `arch`'s preset, else the caller's default preset
    arch: str | None = None
    base: TrainConfig | None = None  # a stored config to start from instead of a preset (`train --config`)
    resolution: int | None = None
    kimg: float | None = None
    seed: int | None = None
    augment: str | None = None
    batch_size: int | None = None
    gpus: int | None = None  # processes (GPUs) one run is split over; the split is checked by validate_config
    batch_gpu: int | None = None  # images per pass on one GPU (NVlabs --batch-gpu): gradient accumulation
    g_lr: float | None = None
    d_lr: float | None = None
    metrics: list[str] | None = None
    metrics_every: int | None = None
    metrics_num_gen: int | None = None
    regularizers: list[RegularizerRequest] | None = None  # the whole list (None: the starting config's)
    regularizer_changes: list[RegularizerRequest] = field(default_factory=list)  # add or update one by name, in order
    tick_kimg: float | None = None
    snapshot_kimg: float | None = None  # rounded to whole ticks
    snapshot_ticks: int | None = None
    freeze_d_layers: int | None = None
    pretrained_network: dict[str, Any] | None = None  # the init_from weights' NetworkConfig fields
    overrides: dict[str, Any] = field(default_factory=dict)  # dotted keys, e.g. {"network.channel_base": 4096}


def resolve_train_config(request: TrainRequest, *, default_preset: str = ARCH_PRESETS["stylegan2"]) -> TrainConfig:
    """The full, validated config for `request`; raises ConfigRequestError saying what to fix.

    `default_preset`: the preset of a request that names neither `preset` nor a non-StyleGAN2 `arch`."""
    cfg = _starting_config(request, default_preset)
    _apply_network(cfg, request)
    _apply_fields(cfg, request)
    if request.regularizers is not None:
        cfg.regularizers = [merge_regularizer(spec, cfg.regularizer(spec.name)) for spec in request.regularizers]
    for spec in request.regularizer_changes:  # changed where it stands (the order of the loss terms), else added
        merged = merge_regularizer(spec, cfg.regularizer(spec.name))
        names = [r.name for r in cfg.regularizers]
        if spec.name in names:
            cfg.regularizers[names.index(spec.name)] = merged
        else:
            cfg.regularizers.append(merged)
    # Weight 0 switches a regularizer off (its passes would cost time for nothing); DigGAN stays, weight 0
    # or not, as the documented way to log its smoothed norms without the penalty.
    cfg.regularizers = [r for r in cfg.regularizers if r.weight > 0 or r.name == "diggan"]
    if request.freeze_d_layers is not None:
        cfg.freeze_d_layers = int(request.freeze_d_layers)
    cfg = _apply_overrides(cfg, request)
    if cfg.freeze_d_layers:
        _check_freeze_d(cfg)
    _apply_schedule(cfg, request)
    return cfg


# ---------------------------------------------------------------- where a request starts


def _starting_config(request: TrainRequest, default_preset: str) -> TrainConfig:
    if request.base is not None:
        if request.preset is not None:
            raise ConfigRequestError(f"preset {request.preset!r} and a stored config were both given; drop one of "
                                     "them (the stored config already holds its preset's settings)")
        base_arch = request.base.network.arch
        if request.arch is not None and request.arch != base_arch:
            raise ConfigRequestError(f"arch {request.arch!r} conflicts with the stored config, which is a {base_arch}; "
                                     "drop `arch`")
        return copy.deepcopy(request.base)
    return _get_preset(preset_name(request, default_preset))


def preset_name(request: TrainRequest, default_preset: str = ARCH_PRESETS["stylegan2"]) -> str:
    """`preset`, else `arch`'s preset (StyleGAN2: `default_preset`); a preset of another arch is an error."""
    arch = request.arch
    if request.preset is None:
        return ARCH_PRESETS[arch] if arch is not None and arch != "stylegan2" and arch in ARCH_PRESETS \
            else default_preset
    preset_arch = _get_preset(request.preset).network.arch
    if arch is not None and arch != preset_arch:
        hint = (f"preset {ARCH_PRESETS[arch]!r}" if arch in ARCH_PRESETS and arch != "stylegan2"
                else f"a stylegan2 preset such as {ARCH_PRESETS['stylegan2']!r}")
        raise ConfigRequestError(f"preset {request.preset!r} is a {preset_arch} preset but arch is {arch!r}; "
                                 f"drop one of them or use {hint}")
    return request.preset


def _get_preset(name: str) -> TrainConfig:
    try:
        return get_preset(name)
    except KeyError as e:
        raise ConfigRequestError(e.args[0]) from None


# ---------------------------------------------------------------- network and plain fields


def _apply_network(cfg: TrainConfig, request: TrainRequest) -> None:
    """The network is the starting config's (at `resolution`), or the pretrained weights', which win."""
    if request.pretrained_network is None:
        if request.resolution is not None:
            cfg.network.resolution = int(request.resolution)
        return
    try:
        net = NetworkConfig(**request.pretrained_network)
    except TypeError as e:  # stored by a version with other network fields
        raise ConfigRequestError(f"the pretrained weights' network config is not one this version understands "
                                 f"({e})") from e
    if request.resolution is not None and request.resolution != net.resolution:
        raise ConfigRequestError(
            f"resolution {request.resolution} conflicts with the pretrained weights in init_from, which are "
            f"{net.resolution}x{net.resolution}; drop `resolution` (the dataset is resized to {net.resolution}) or "
            "start from a model of that resolution")
    if request.arch is not None and request.arch != net.arch:
        raise ConfigRequestError(f"arch {request.arch!r} conflicts with the pretrained weights in init_from, which are "
                                 f"a {net.arch}; drop `arch` (a job started from weights keeps their network)")
    conflicts = network_conflicts(net, {k: v for k, v in request.overrides.items() if k.startswith("network.")})
    if conflicts:
        raise ConfigRequestError(f"these settings conflict with the pretrained model: {'; '.join(conflicts)}. A run "
                                 "started from pretrained weights keeps their network shape (your images are resized "
                                 "to its resolution); drop these settings")
    cfg.network = net


# Request fields copied as they are (converted), when given.
_PLAIN_FIELDS: dict[str, Any] = {"kimg": float, "seed": int, "batch_size": int, "gpus": int, "batch_gpu": int,
                                 "g_lr": float, "d_lr": float,
                                 "metrics_every": int, "metrics_num_gen": int}


def _apply_fields(cfg: TrainConfig, request: TrainRequest) -> None:
    for name, convert in _PLAIN_FIELDS.items():
        value = getattr(request, name)
        if value is not None:
            setattr(cfg, name, convert(value))
    if request.augment is not None:
        cfg.augment.kind = request.augment
    if request.metrics is not None:
        cfg.metrics = list(request.metrics)


def _apply_overrides(cfg: TrainConfig, request: TrainRequest) -> TrainConfig:
    if not request.overrides:
        return cfg
    try:
        return apply_overrides(cfg, request.overrides)
    except KeyError as e:
        raise ConfigRequestError(f"{e.args[0]}; keys are TrainConfig fields, dotted for nested ones "
                                 "(e.g. network.channel_base, augment.ada_target)") from None
    except (TypeError, ValueError) as e:
        raise ConfigRequestError(f"the overrides {sorted(request.overrides)} do not make a config: {e}") from None


# ---------------------------------------------------------------- regularizers

# RegularizerConfig's own default interval (16, NVlabs' D_reg_interval): for a regularizer that suggests none.
# (A dataclass field's default is typed as possibly MISSING; this one is set.)
_DEFAULT_INTERVAL = cast(int, RegularizerConfig.__dataclass_fields__["interval"].default)


def _suggested(name: str) -> tuple[float | None, int]:
    """(weight or None, interval) of regularizer `name`: the defaults, defined once in gan_core.regularizers
    (suggested_defaults). Parameters left out take the regularizer's own defaults (its class's `params`)."""
    from .regularizers import REGISTRY, suggested_defaults

    if name not in REGISTRY:
        raise ConfigRequestError(f"unknown regularizer {name!r}; choose from {', '.join(sorted(REGISTRY))}")
    weight, interval = suggested_defaults(name)
    return weight, interval or _DEFAULT_INTERVAL


def default_regularizer(name: str) -> RegularizerConfig:
    """Regularizer `name` at its suggested weight and interval: what a request that names it gets when the
    config has no entry of that name (GET /v1/regularizers lists the same numbers)."""
    return merge_regularizer(RegularizerRequest(name), None)


def merge_regularizer(spec: RegularizerRequest, base: RegularizerConfig | None) -> RegularizerConfig:
    """`spec` on top of `base` (the config's entry of that name), else on top of the regularizer's defaults."""
    from .regularizers import REGISTRY

    weight, interval = _suggested(spec.name)
    declared = dict(REGISTRY[spec.name].params)
    unknown = sorted(set(spec.params) - set(declared))
    if unknown:
        allowed = ", ".join(sorted(declared)) or "none"
        raise ConfigRequestError(f"regularizer {spec.name!r} has no parameter {unknown[0]!r} (parameters: {allowed})")
    if base is None:
        if spec.weight is None and weight is None:
            raise ConfigRequestError(f"regularizer {spec.name!r} has no default weight; give one (\"weight\": ...)")
        base = RegularizerConfig(spec.name, float(weight or 0.0), interval)
    params = {**base.params, **{k: float(v) for k, v in spec.params.items()}}
    return RegularizerConfig(name=spec.name,
                             weight=float(spec.weight if spec.weight is not None else base.weight),
                             interval=int(spec.interval if spec.interval is not None else base.interval),
                             params=params, scale_by_interval=base.scale_by_interval)


# ---------------------------------------------------------------- Freeze-D and the schedule


def _check_freeze_d(cfg: TrainConfig) -> None:
    """Against D's real layer count, so a run cannot fail at its first step for it."""
    n = cfg.freeze_d_layers
    if n < 0:
        raise ConfigRequestError(f"freeze_d_layers must be >= 0, got {n}")
    if cfg.network.arch != "stylegan2":
        raise ConfigRequestError(f"freeze_d_layers is implemented for the stylegan2 discriminator, not "
                                 f"{cfg.network.arch}")
    import torch

    from .networks import build_discriminator
    from .training.freeze import d_layers

    with torch.device("meta"):  # the layer names only: no memory, no initialisation
        layers = d_layers(build_discriminator(cfg.network))
    if n > len(layers):
        res = cfg.network.resolution
        raise ConfigRequestError(f"freeze_d_layers={n}, but this {res}x{res} discriminator has {len(layers)} freezable "
                                 f"layers ({layers[0]} .. {layers[-1]}; the 4x4 epilogue always trains)")


def _apply_schedule(cfg: TrainConfig, request: TrainRequest) -> None:
    """A snapshot is a whole number of ticks; a tick is at most the run and at least one minibatch."""
    if request.snapshot_kimg is not None and request.snapshot_ticks is not None:
        raise ConfigRequestError("give snapshot_kimg or snapshot_ticks, not both")
    if request.tick_kimg is not None:
        cfg.tick_kimg = float(request.tick_kimg)
    if request.snapshot_ticks is not None:
        cfg.snapshot_ticks = int(request.snapshot_ticks)
    if request.snapshot_kimg is not None:
        snap = float(request.snapshot_kimg)
        if request.tick_kimg is None and snap < cfg.tick_kimg:
            cfg.tick_kimg = snap  # a snapshot more often than the starting tick: tick as often
        cfg.snapshot_ticks = max(1, round(snap / cfg.tick_kimg))
    if cfg.snapshot_ticks < 1:
        raise ConfigRequestError(f"snapshot_ticks must be >= 1, got {cfg.snapshot_ticks}")
    if 0 < cfg.kimg < cfg.tick_kimg:
        cfg.tick_kimg = cfg.kimg  # at least one tick, so the run reports progress
    try:
        validate_config(cfg)
    except ValueError as e:
        raise ConfigRequestError(str(e)) from None
    minibatch_kimg = cfg.batch_size / 1000.0
    if cfg.tick_kimg < minibatch_kimg:  # a tick of less than one minibatch never ends (0 images per tick)
        raise ConfigRequestError(f"tick_kimg ({cfg.tick_kimg:g}) must hold at least one minibatch: batch_size "
                                 f"{cfg.batch_size} is {minibatch_kimg:g} kimg; use tick_kimg >= {minibatch_kimg:g} "
                                 f"(and kimg >= {minibatch_kimg:g})")
