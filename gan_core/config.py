"""Training configuration: dataclasses, presets, and (de)serialisation.

A `TrainConfig` is saved inside every checkpoint (as a plain dict), so a
checkpoint describes itself. Every field can be overridden; presets are only
starting points.
"""

from __future__ import annotations

import copy
import dataclasses
from dataclasses import dataclass, field
from typing import Any

AUGMENT_KINDS = ("ada", "diffaugment", "none")


@dataclass
class NetworkConfig:
    """StyleGAN2 generator + residual discriminator shape (NVlabs naming)."""

    resolution: int = 64  # output resolution, a power of two in [32, 1024]
    img_channels: int = 3
    z_dim: int = 512  # input latent size
    w_dim: int = 512  # intermediate latent size
    mapping_layers: int = 8  # depth of the mapping MLP
    channel_base: int = 32768  # channels at resolution r: min(channel_base // r, channel_max)
    channel_max: int = 512
    mbstd_group_size: int = 4  # minibatch-stddev group size (clipped to the batch)
    mbstd_num_channels: int = 1
    conv_clamp: float | None = 256.0  # clamp activations to +-conv_clamp (NVlabs: 256 with fp16)
    mapping_lr_mult: float = 0.01  # learning-rate multiplier of the mapping network


@dataclass
class AugmentConfig:
    """Differentiable augmentation applied to every image D sees."""

    kind: str = "ada"  # "ada" | "diffaugment" | "none"
    initial_p: float = 0.0  # ADA: starting probability
    ada_target: float = 0.6  # ADA: target of E[sign(D(real))]
    ada_interval: int = 4  # ADA: minibatches between p updates
    ada_kimg: float = 100.0  # ADA: kimg for p to move by 1.0 (NVlabs: 500; 100 suits 100-shot runs)
    diffaugment_policy: str = "color,translation,cutout"


@dataclass
class RegularizerConfig:
    """One discriminator regularizer: its registry name, weight and own parameters.

    `interval` makes it lazy: computed every `interval` minibatches with its
    weight multiplied by `interval` (NVlabs' lazy R1).
    """

    name: str
    weight: float
    interval: int = 16
    params: dict[str, float] = field(default_factory=dict)


@dataclass
class TrainConfig:
    preset: str = "cpu-tiny"
    network: NetworkConfig = field(default_factory=NetworkConfig)
    augment: AugmentConfig = field(default_factory=AugmentConfig)
    regularizers: list[RegularizerConfig] = field(default_factory=list)
    batch_size: int = 8
    g_lr: float = 0.0025  # TTUR: generator and discriminator learning rates are separate
    d_lr: float = 0.0025
    adam_betas: tuple[float, float] = (0.0, 0.99)
    ema_kimg: float = 10.0  # half-life of the generator EMA, in kimg
    ema_rampup: float | None = 0.05  # EMA half-life ramps up to ema_kimg over this fraction of images seen
    pl_weight: float = 0.0  # path-length regularization weight (0 = off)
    pl_interval: int = 4
    kimg: float = 10.0  # total training length, thousands of real images shown to D
    tick_kimg: float = 1.0  # one progress report every tick_kimg
    snapshot_ticks: int = 5  # a checkpoint + sample grid every snapshot_ticks ticks
    metrics: list[str] = field(default_factory=list)  # e.g. ["kid", "fid"]; computed at snapshots
    metrics_every: int = 1  # compute metrics every k snapshots
    metrics_num_gen: int = 5000  # generated images per snapshot metric (paper protocol: 5000)
    best_metric: str | None = None  # metric that selects the "best" checkpoint (default: first of `metrics`)
    mirror: bool = True  # x-flip doubling of the dataset
    seed: int = 0
    num_grid: int = 16  # images in each snapshot grid (fixed seeds)

    @property
    def snapshot_kimg(self) -> float:
        return self.tick_kimg * self.snapshot_ticks

    def regularizer(self, name: str) -> RegularizerConfig | None:
        return next((r for r in self.regularizers if r.name == name), None)


def _diggan(weight: float, alpha: float = 0.5, interval: int = 8) -> RegularizerConfig:
    # Lazy every 8 minibatches (weight x 8): bench/train_step.py measured +16% s/kimg at
    # interval 4 and +5% at 16 on cpu-tiny; 8 keeps DigGAN within the 15% budget.
    return RegularizerConfig("diggan", weight, interval, {"alpha": alpha})


def _r1(gamma: float, interval: int = 16) -> RegularizerConfig:
    return RegularizerConfig("r1", gamma, interval)


PRESETS: dict[str, TrainConfig] = {
    # Small enough to train on two CPU cores: well under a second per iteration.
    "cpu-tiny": TrainConfig(
        preset="cpu-tiny",
        network=NetworkConfig(
            resolution=64, z_dim=64, w_dim=64, mapping_layers=2, channel_base=1024, channel_max=32
        ),
        augment=AugmentConfig(kind="ada"),
        regularizers=[_diggan(100.0), _r1(1.0)],
        batch_size=8,
        g_lr=0.002,
        d_lr=0.002,
        ema_kimg=1.0,
        kimg=5.0,
        tick_kimg=0.2,
        snapshot_ticks=5,
        metrics_num_gen=500,  # Inception on a CPU is ~20 images/s: keep snapshot metrics short
    ),
    # The DigGAN paper's 100-shot StyleGAN2-ADA setting.
    "low-shot-256": TrainConfig(
        preset="low-shot-256",
        network=NetworkConfig(resolution=256, mapping_layers=2, channel_base=16384, channel_max=512),
        augment=AugmentConfig(kind="ada", ada_kimg=100.0),
        regularizers=[_diggan(100.0), _r1(10.0)],
        batch_size=16,
        g_lr=0.0025,
        d_lr=0.0025,
        ema_kimg=5.0,
        kimg=600.0,
        tick_kimg=4.0,
        snapshot_ticks=10,
    ),
    # NVlabs stylegan2-ada-pytorch's "paper256" configuration.
    "paper256": TrainConfig(
        preset="paper256",
        network=NetworkConfig(resolution=256, mapping_layers=8, channel_base=16384, channel_max=512),
        augment=AugmentConfig(kind="ada", ada_kimg=500.0),
        regularizers=[_r1(1.0)],
        batch_size=64,
        g_lr=0.0025,
        d_lr=0.0025,
        ema_kimg=20.0,
        ema_rampup=None,
        kimg=25000.0,
        tick_kimg=4.0,
        snapshot_ticks=50,
    ),
}


def preset_names() -> list[str]:
    return list(PRESETS)


def get_preset(name: str) -> TrainConfig:
    """A fresh copy of a preset; raises KeyError naming the known presets."""
    if name not in PRESETS:
        raise KeyError(f"unknown preset {name!r}; choose one of {', '.join(PRESETS)}")
    return copy.deepcopy(PRESETS[name])


def config_to_dict(cfg: TrainConfig) -> dict[str, Any]:
    """Plain JSON-compatible dict (safe for torch.load(weights_only=True))."""
    d = dataclasses.asdict(cfg)
    d["adam_betas"] = list(cfg.adam_betas)
    return d


def config_from_dict(d: dict[str, Any]) -> TrainConfig:
    d = copy.deepcopy(d)
    net = NetworkConfig(**d.pop("network", {}))
    aug = AugmentConfig(**d.pop("augment", {}))
    regs = [RegularizerConfig(**r) for r in d.pop("regularizers", [])]
    if "adam_betas" in d:
        d["adam_betas"] = tuple(float(b) for b in d["adam_betas"])
    known = {f.name for f in dataclasses.fields(TrainConfig)}
    unknown = set(d) - known
    if unknown:
        raise ValueError(f"unknown TrainConfig fields: {sorted(unknown)}")
    return TrainConfig(network=net, augment=aug, regularizers=regs, **d)


def apply_overrides(cfg: TrainConfig, overrides: dict[str, Any]) -> TrainConfig:
    """Return a copy with dotted-key overrides applied, e.g. {"network.channel_base": 4096}."""
    d = config_to_dict(cfg)
    for key, value in overrides.items():
        node = d
        parts = key.split(".")
        for p in parts[:-1]:
            if p not in node or not isinstance(node[p], dict):
                raise KeyError(f"unknown config key {key!r}")
            node = node[p]
        if parts[-1] not in node:
            raise KeyError(f"unknown config key {key!r}")
        node[parts[-1]] = value
    return config_from_dict(d)


def validate_config(cfg: TrainConfig) -> None:
    """Raise ValueError with an actionable message for an unusable config."""
    res = cfg.network.resolution
    if res < 32 or res > 1024 or res & (res - 1):
        raise ValueError(f"network.resolution must be a power of two in [32, 1024], got {res}")
    if cfg.augment.kind not in AUGMENT_KINDS:
        raise ValueError(f"augment.kind must be one of {AUGMENT_KINDS}, got {cfg.augment.kind!r}")
    if cfg.batch_size < 1:
        raise ValueError("batch_size must be >= 1")
    if cfg.kimg <= 0 or cfg.tick_kimg <= 0:
        raise ValueError("kimg and tick_kimg must be positive")
    for r in cfg.regularizers:
        if r.weight < 0 or r.interval < 1:
            raise ValueError(f"regularizer {r.name}: weight must be >= 0 and interval >= 1")
