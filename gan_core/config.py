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
ARCHS = ("stylegan2", "sngan", "biggan")
CONDITIONAL_ARCHS = ("biggan",)
FIXED_RESOLUTION_ARCHS = {"sngan": 32, "biggan": 32}  # the papers' CIFAR architectures only
LOSSES = ("logistic", "hinge")
ARCH_PRESETS = {"stylegan2": "cpu-tiny", "sngan": "sngan-32", "biggan": "biggan-32"}  # an arch's starting preset
# Regularizers that cannot work on an architecture, and why (validate_config says so).
UNSUPPORTED_REGULARIZERS = {
    "biggan": {"gp1": "GP-1 needs D's value between a real and a fake image, which have different classes, so a "
                      "class-conditional D has no label for it (the DigGAN paper, Tab. 10); use r1, r2, dragan or diggan"},
}


# Sources named in the comments below (every default names one):
#   NVlabs      NVlabs/stylegan2-ada-pytorch: train.py (cfg_specs, the 'auto' rule, --resume branch),
#               training/training_loop.py, training/loss.py, training/networks.py defaults.
#   DigGAN      Fang et al. 2022 (../shared/papers/diggan-paper.txt) and the authors' code AilsaF/DigGAN
#               (DiffAugment-biggan-cifar/scripts/*_Diggan.sh, train_fns.py).
#   SNGAN       Miyato et al. 2018 (ResNet CIFAR setting: hinge, Adam 2e-4, betas (0, 0.9), n_dis 5).
#   BigGAN      ajbrock/BigGAN-PyTorch as run by the DiffAugment/DigGAN CIFAR scripts (hinge, Adam 2e-4,
#               betas (0, 0.999), 4 D steps, no attention).
#   ours        a choice of this project, with the reason (and the measurement, if any, in docs/results.md).


@dataclass
class NetworkConfig:
    """Which G/D pair (`arch`) and its shape. The StyleGAN2 fields use NVlabs naming;
    sngan/biggan read resolution (32 only), img_channels, z_dim, num_classes, g/d_channels, shared_dim."""

    resolution: int = 64  # output resolution, a power of two in [32, 1024] (ours: the CPU size; presets set theirs)
    img_channels: int = 3  # RGB
    z_dim: int = 512  # input latent size (NVlabs train.py: z_dim=512)
    w_dim: int = 512  # intermediate latent size (NVlabs train.py: w_dim=512)
    mapping_layers: int = 8  # depth of the mapping MLP (NVlabs cfg 'stylegan2'/'paper*': map=8; 'auto': 2)
    channel_base: int = 32768  # channels at resolution r: min(channel_base // r, channel_max) (NVlabs fmaps=1)
    channel_max: int = 512  # NVlabs train.py: channel_max = 512
    mbstd_group_size: int = 4  # minibatch-stddev group size, clipped to the batch (NVlabs networks.py default 4)
    mbstd_num_channels: int = 1  # NVlabs networks.py default 1
    conv_clamp: float | None = 256.0  # clamp activations to +-conv_clamp (NVlabs train.py: 256 with fp16)
    mapping_lr_mult: float = 0.01  # learning-rate multiplier of the mapping network (NVlabs networks.py 0.01)
    # Which G/D pair, and the sngan/biggan shape (new fields last: positional construction keeps working).
    arch: str = "stylegan2"  # "stylegan2" | "sngan" | "biggan" (gan_core.networks.build_networks)
    num_classes: int = 0  # biggan: classes of the conditional nets (0 = take it from the dataset, 1 = unconditional)
    g_channels: int = 0  # sngan/biggan widths; 0 = the paper's (SNGAN G 256 / D 128, BigGAN 256 / 256)
    d_channels: int = 0
    shared_dim: int = 128  # biggan: shared class embedding + hierarchical z (BigGAN paper; 0 = per-layer, BigGAN-PyTorch CIFAR)


@dataclass
class AugmentConfig:
    """Differentiable augmentation applied to every image D sees."""

    kind: str = "ada"  # "ada" | "diffaugment" | "none" (NVlabs train.py default --aug=ada)
    initial_p: float = 0.0  # ADA: starting probability (NVlabs training_loop.py augment_p=0)
    ada_target: float = 0.6  # ADA: target of E[sign(D(real))] (NVlabs train.py: target=0.6 for --aug=ada)
    ada_interval: int = 4  # ADA: minibatches between p updates (NVlabs training_loop.py ada_interval=4)
    # ADA: kimg for p to move by 1.0. NVlabs uses 100 when it starts from a pretrained network (train.py
    # --resume: "make ADA react faster at the beginning"), this service's main use (fine-tuning); 500 from
    # scratch (training_loop.py default), which the from-scratch presets below set.
    ada_kimg: float = 100.0
    diffaugment_policy: str = "color,translation,cutout"  # DiffAugment's policy for low-shot StyleGAN2 (Zhao et al. 2020)


@dataclass
class RegularizerConfig:
    """One discriminator regularizer: its registry name, weight and own parameters.

    `interval` makes it lazy: computed every `interval` minibatches. With `scale_by_interval`
    (the default, NVlabs' lazy R1) its loss is multiplied by `interval` so the average pull per
    minibatch is unchanged; without it the loss is added at its own weight on the minibatches where
    it runs (the DigGAN authors' BigGAN/SNGAN code: once per G step, on the first of the D steps,
    unscaled). The trainer multiplies by the regularizer's `lazy_multiplier`.
    """

    name: str
    weight: float
    interval: int = 16  # NVlabs training_loop.py D_reg_interval=16
    params: dict[str, float] = field(default_factory=dict)
    scale_by_interval: bool = True  # new fields last, defaulted: old checkpoints' configs still load


# ---- Speed and precision policy (gan_core.training.perf) -------------------------------------------
# How the trainer runs, not what it learns. Defaults keep CPU runs float32 and bit-reproducible.
PRECISIONS = ("float32", "bf16")


@dataclass
class PerfConfig:
    """Execution policy of the trainer (docs/speed.md). None = chosen by device and architecture."""

    channels_last: bool | None = None  # NHWC activations/weights; None = on for stylegan2 (ours: ~20% per step on CPU)
    # "bf16": bf16 autocast in the G/D passes without double backward; regularizer passes stay float32
    precision: str = "float32"  # float32 everywhere (NVlabs' float32 path; its fp16 layers need CUDA)
    allow_tf32: bool = False  # CUDA only: TF32 matmul/conv (NVlabs training_loop.py allow_tf32=False)
    cudnn_benchmark: bool = True  # CUDA only: autotune conv algorithms (NVlabs training_loop.py cudnn_benchmark=True)
    joint_d_pass: bool | None = None  # one D forward for reals + fakes when no input gradient is due; None = stylegan2
    fused_adam: bool | None = None  # fused Adam kernel where torch has one (ours: ~40% of Adam's time on CPU)
    # glibc keeps freed activation buffers for reuse instead of unmapping them every step (ours: 23k -> 0.5k
    # page faults per step at 64x64, ~3% of a CPU step); process-wide. None = on when training on CPU.
    host_memory_reuse: bool | None = None
    # Winograd F(4x4, 3x3) for wide 3x3 convolutions (gan_core.networks.winograd): 4x fewer multiplies,
    # float rounding differs from the direct conv (~1e-6 relative). None = on for float32 channels-last
    # StyleGAN2 training on CPU (ours: measured per layer in bench/winograd_layers.py); cuDNN has its own on GPU.
    winograd: bool | None = None
    # The weight gradient of strided convolutions (D's down-, G's up-convolutions) as im2col + one matmul
    # (gan_core.networks.strided_conv) instead of oneDNN's, which ran at under half its forward's rate on the AVX2
    # CPU we measured; float rounding differs (~1e-6 relative). None = on for float32 channels-last StyleGAN2 training on
    # a CPU where torch runs AVX2 kernels (ours: 0.73-0.85 of those layers' time with 64+ channels,
    # bench/strided_layers.py; not measured with AVX-512, so off there).
    window_matmul: bool | None = None


@dataclass
class TrainConfig:
    preset: str = "cpu-tiny"
    network: NetworkConfig = field(default_factory=NetworkConfig)
    augment: AugmentConfig = field(default_factory=AugmentConfig)
    regularizers: list[RegularizerConfig] = field(default_factory=list)
    batch_size: int = 8  # ours: fits two CPU cores (cpu-tiny)
    g_lr: float = 0.0025  # TTUR: separate G and D learning rates (NVlabs cfg 'auto'/'paper256': lrate=0.0025)
    d_lr: float = 0.0025
    adam_betas: tuple[float, float] = (0.0, 0.99)  # NVlabs train.py betas=[0, 0.99]
    ema_kimg: float = 10.0  # half-life of the generator EMA, in kimg (NVlabs training_loop.py default 10)
    ema_rampup: float | None = 0.05  # EMA half-life ramps up over this fraction of images seen (NVlabs 'auto': 0.05)
    pl_weight: float = 0.0  # path-length regularization weight, 0 = off (NVlabs loss.py: 2; off here unless a preset sets it)
    pl_interval: int = 4  # NVlabs training_loop.py G_reg_interval=4
    loss: str = "logistic"  # "logistic" (non-saturating G, StyleGAN2) | "hinge" (SNGAN/BigGAN)
    d_steps: int = 1  # D updates per G update (SNGAN 5, BigGAN CIFAR 4); kimg counts real images shown to D
    kimg: float = 10.0  # total training length, thousands of real images shown to D (ours: a short CPU run)
    tick_kimg: float = 1.0  # one progress report every tick_kimg (ours; NVlabs kimg_per_tick=4)
    snapshot_ticks: int = 5  # a checkpoint + sample grid every snapshot_ticks ticks (ours; NVlabs 50)
    metrics: list[str] = field(default_factory=list)  # e.g. ["kid", "fid"]; computed at snapshots
    metrics_every: int = 1  # compute metrics every k snapshots
    metrics_num_gen: int = 5000  # generated images per snapshot metric (DigGAN 100-shot protocol: 5000)
    best_metric: str | None = None  # metric that selects the "best" checkpoint (default: first of `metrics`)
    mirror: bool = True  # x-flip doubling of the dataset (ours: doubles 100 images; NVlabs default --mirror=0)
    seed: int = 0
    num_grid: int = 16  # images in each snapshot grid (fixed seeds)
    # Freeze-D (Mo et al. 2020; NVlabs train.py --freezed): keep D's first N layers from the input side fixed
    # when fine-tuning from pretrained weights (gan_core.training.freeze). 0 = off, NVlabs' default.
    freeze_d_layers: int = 0
    # New fields last, defaulted, so old checkpoints' configs still load.
    # Style mixing regularization: the probability that a generated batch mixes two latents at a random
    # layer (NVlabs loss.py style_mixing_prob=0.9). 0 = off. The trainer mixes as NVlabs' run_G does, in the
    # G pass, the D pass's fakes and the path-length pass.
    style_mixing_prob: float = 0.0
    perf: PerfConfig = field(default_factory=PerfConfig)  # speed/precision policy (new, last, defaulted)
    # Data parallel (gan_core.training.sharded): processes (GPUs) sharing each minibatch, and the micro-batch
    # one process runs at a time (NVlabs --batch-gpu; None = batch_size / gpus, no gradient accumulation).
    gpus: int = 1
    batch_gpu: int | None = None

    @property
    def snapshot_kimg(self) -> float:
        return self.tick_kimg * self.snapshot_ticks

    def regularizer(self, name: str) -> RegularizerConfig | None:
        return next((r for r in self.regularizers if r.name == name), None)


def nvlabs_auto_r1_gamma(resolution: int, batch_size: int) -> float:
    """NVlabs' 'auto' R1 gamma: 0.0002 * res^2 / batch (stylegan2-ada-pytorch train.py, "heuristic formula")."""
    return 0.0002 * resolution**2 / batch_size


def diggan_cifar_lambda(data_fraction: float, diffaugment: bool = False) -> float:
    """The DigGAN authors' BigGAN-CIFAR lambda for a fraction of the training data.

    Without augmentation their scripts use 1000 / fraction (AilsaF/DigGAN DiffAugment-biggan-cifar/scripts/
    biggan/*_Diggan.sh: 100% 1000, 20% 5000, 10% 10000). With DiffAugment they use smaller values, listed
    (scripts/DiffAug/*_Diggan.sh: 100% 10, 20% 250, 10% 1000); other fractions have no published value.
    """
    if not diffaugment:
        return 1000.0 / data_fraction
    table = {1.0: 10.0, 0.2: 250.0, 0.1: 1000.0}
    if data_fraction not in table:
        raise ValueError(f"the authors publish DiffAugment lambdas for fractions {sorted(table)} only")
    return table[data_fraction]


# The suggested weight / interval of DigGAN and R1, defined once: the StyleGAN2 presets below, the CLI's
# --diggan-*/--r1-gamma flags and an API request naming them (gan_core.request), GET /v1/regularizers
# (gan_core.regularizers.suggested_defaults) and bench/quality.py all read these.
#   diggan: lambda 100, the DigGAN paper's StyleGAN2 setting (section 4.4); every 8 minibatches with the
#           weight x 8, like NVlabs' lazy R1 (there is no authors' StyleGAN2 code): bench/train_step.py measured
#           +16% s/kimg at interval 4 and +5% at 16 on cpu-tiny, and 8 keeps DigGAN within the 15% budget.
#           The SNGAN/BigGAN presets use the authors' lambda = 1000 / data fraction, unscaled (diggan_cifar_lambda).
#   r1:     gamma 1, NVlabs cfg 'paper256' (train.py); every 16, NVlabs D_reg_interval=16.
SUGGESTED_REGULARIZERS: dict[str, tuple[float, int]] = {"diggan": (100.0, 8), "r1": (1.0, 16)}
# DigGAN's smoothing weight: the authors' (AilsaF/DigGAN train_fns.py: 0.5 * grad + 0.5 * grad_ema).
DIGGAN_ALPHA = 0.5


def _diggan(weight: float, alpha: float = DIGGAN_ALPHA, interval: int = SUGGESTED_REGULARIZERS["diggan"][1],
            scale_by_interval: bool = True) -> RegularizerConfig:
    return RegularizerConfig("diggan", weight, interval, {"alpha": alpha}, scale_by_interval)


def _diggan_authors(data_fraction: float, d_steps: int) -> RegularizerConfig:
    """DigGAN as the authors run it on BigGAN-CIFAR: lambda = 1000 / data fraction (no augmentation), on the
    first of the `d_steps` D steps of each G step (interval = d_steps, due on the G-step minibatch), unscaled."""
    return _diggan(diggan_cifar_lambda(data_fraction), interval=d_steps, scale_by_interval=False)


def _r1(gamma: float, interval: int = SUGGESTED_REGULARIZERS["r1"][1]) -> RegularizerConfig:
    return RegularizerConfig("r1", gamma, interval)  # interval 16: NVlabs D_reg_interval, weight x 16 (lazy R1)


# The data fraction the SNGAN/BigGAN presets' DigGAN lambda assumes: the paper's lowest CIFAR setting (10%).
CIFAR_DATA_FRACTION = 0.1

PRESETS: dict[str, TrainConfig] = {
    # Ours: small enough to train on two CPU cores (well under a second per iteration). Its numbers are
    # the ones docs/results.md (issues 5 and 7) were measured with; none is tuned.
    "cpu-tiny": TrainConfig(
        preset="cpu-tiny",
        network=NetworkConfig(
            resolution=64, z_dim=64, w_dim=64, mapping_layers=2, channel_base=1024, channel_max=32
        ),  # ours: ~0.13 s per iteration on 2 cores (docs/environment.md); mapping 2 as NVlabs 'auto'
        augment=AugmentConfig(kind="ada"),  # NVlabs --aug=ada; ada_kimg 100 (AugmentConfig: NVlabs' fine-tune value)
        # DigGAN lambda 100: the paper's StyleGAN2 setting (section 4.4). R1 gamma 1: ours, untuned (NVlabs'
        # 'auto' rule would give 0.0002 * 64^2 / 8 = 0.1; no run of ours compares the two).
        regularizers=[_diggan(100.0), _r1(1.0)],
        batch_size=8,  # ours: CPU
        g_lr=0.002,  # ours (NVlabs 'auto' would use 0.0025); the issue-5/7 runs used 0.002
        d_lr=0.002,
        ema_kimg=1.0,  # ours: a 5-kimg run needs a short EMA (NVlabs 'auto' rule: batch * 10 / 32 = 2.5)
        kimg=5.0,  # ours: a short CPU run
        tick_kimg=0.2,  # ours
        snapshot_ticks=5,  # ours
        metrics_num_gen=500,  # ours: Inception on a CPU is ~20 images/s, keep snapshot metrics short
    ),
    # Ours, aimed at faces a person recognises from 100 images within 30 minutes on 2 CPU cores. Measured
    # (docs/results.md, "What a CPU user gets"): 100 kimg in 17.3 minutes on 2 idle cores, recognisable Obama
    # faces. 32x32: at 64x64 a comparable net still drew striped faces at 20 kimg.
    "cpu-faces": TrainConfig(
        preset="cpu-faces",
        # channels min(1024 // res, 128): 32 at 32x32, 64 at 16x16, 128 below; the pilot drew recognisable faces
        # from ~40 kimg with it (cpu-tiny's 32-channel cap: blotchy faces, KID ~0.4, at the same kimg)
        network=NetworkConfig(resolution=32, z_dim=64, w_dim=64, mapping_layers=2, channel_base=1024,
                              channel_max=128),  # mapping 2: NVlabs 'auto'
        augment=AugmentConfig(kind="ada"),  # NVlabs --aug=ada; ada_kimg 100 (AugmentConfig: NVlabs' fine-tune value)
        regularizers=[_diggan(100.0), _r1(nvlabs_auto_r1_gamma(32, 16))],  # DigGAN paper 4.4; NVlabs 'auto' 0.0128
        batch_size=16,  # ours: per kimg cheaper on CPU than 8 (bench measurement in docs/results.md)
        g_lr=0.0025,  # NVlabs 'auto' (res < 1024)
        d_lr=0.0025,
        ema_kimg=5.0,  # NVlabs 'auto': batch * 10 / 32
        kimg=100.0,  # ours: 17.3 min on 2 idle cores (10 s/kimg); leaves room for a slower or busier machine
        tick_kimg=1.0,  # ours
        snapshot_ticks=10,  # ours: a checkpoint and grid every 10 kimg
        metrics_num_gen=500,  # ours: Inception on a CPU is slow, keep snapshot metrics short
    ),
    # The DigGAN paper's 100-shot StyleGAN2-ADA setting (section 4.4: 256x256, 600 kimg, lambda 100 on
    # StyleGAN2 + ADA), with NVlabs' 'auto' config at 256x256 on one GPU (train.py: mb = min(4096 // 256,
    # 32) = 16, mbstd = min(16, 4) = 4, fmaps 0.5 -> channel_base 16384, lrate 0.0025, map 2,
    # ema = 16 * 10 / 32 = 5, ramp 0.05, gamma = 0.0002 * 256^2 / 16 = 0.8192), trained from scratch.
    "low-shot-256": TrainConfig(
        preset="low-shot-256",
        network=NetworkConfig(resolution=256, mapping_layers=2, channel_base=16384, channel_max=512,
                              mbstd_group_size=4),
        # ada_kimg 500: NVlabs' from-scratch default (training_loop.py); NVlabs uses 100 only when starting from
        # a pretrained network (train.py --resume): set augment.ada_kimg=100 (and ema_rampup=None) to fine-tune.
        augment=AugmentConfig(kind="ada", ada_kimg=500.0),
        regularizers=[_diggan(100.0), _r1(nvlabs_auto_r1_gamma(256, 16))],  # DigGAN paper 4.4; NVlabs 'auto'
        batch_size=16,  # NVlabs 'auto' on one GPU
        g_lr=0.0025,  # NVlabs 'auto' (res < 1024)
        d_lr=0.0025,
        ema_kimg=5.0,  # NVlabs 'auto': 16 * 10 / 32
        kimg=600.0,  # DigGAN paper 4.4: 600k images
        tick_kimg=4.0,  # NVlabs kimg_per_tick=4
        snapshot_ticks=10,  # ours: a checkpoint every 40 kimg (NVlabs 50 ticks = 200 kimg is 1/3 of the run)
        pl_weight=2.0,  # NVlabs loss.py pl_weight=2 (only cfg 'cifar' turns it off)
        pl_interval=4,  # NVlabs G_reg_interval=4
        style_mixing_prob=0.9,  # NVlabs loss.py (only cfg 'cifar' turns it off)
    ),
    # NVlabs stylegan2-ada-pytorch's "paper256" configuration (train.py cfg_specs['paper256']).
    "paper256": TrainConfig(
        preset="paper256",
        network=NetworkConfig(resolution=256, mapping_layers=8, channel_base=16384, channel_max=512,
                              mbstd_group_size=8),  # paper256: map=8, fmaps=0.5, mbstd=8
        augment=AugmentConfig(kind="ada", ada_kimg=500.0),  # NVlabs training_loop.py ada_kimg=500
        regularizers=[_r1(1.0)],  # paper256: gamma=1
        batch_size=64,  # paper256: mb=64
        g_lr=0.0025,  # paper256: lrate=0.0025
        d_lr=0.0025,
        ema_kimg=20.0,  # paper256: ema=20
        ema_rampup=None,  # paper256: ramp=None
        kimg=25000.0,  # paper256: kimg=25000
        tick_kimg=4.0,  # NVlabs kimg_per_tick=4
        snapshot_ticks=50,  # NVlabs --snap=50
        pl_weight=2.0,  # NVlabs loss.py pl_weight=2
        pl_interval=4,  # NVlabs G_reg_interval=4
        style_mixing_prob=0.9,  # NVlabs loss.py style_mixing_prob=0.9
    ),
    # SNGAN (Miyato et al. 2018) CIFAR ResNet at 32x32 with the paper's optimiser: hinge loss, Adam
    # lr 2e-4, betas (0, 0.9), 5 D steps per G step. Widths 32/32 instead of the paper's 256 (G) / 128 (D)
    # (set network.g_channels/d_channels, or 0 for the paper's) so a CPU minibatch stays near 0.1 s.
    "sngan-32": TrainConfig(
        preset="sngan-32",
        network=NetworkConfig(arch="sngan", resolution=32, z_dim=128, g_channels=32, d_channels=32),  # SNGAN z=128
        augment=AugmentConfig(kind="none"),  # the papers' baselines; DiffAugment is the usual add-on
        # DigGAN as its authors run it (no SNGAN script is published; their BigGAN-CIFAR scripts): lambda =
        # 1000 / 0.1 = 10000 at 10% data, once per G step on the first of the 5 D steps, not scaled by 5.
        regularizers=[_diggan_authors(CIFAR_DATA_FRACTION, d_steps=5)],
        batch_size=16,  # ours: CPU (SNGAN 64)
        g_lr=2e-4,  # SNGAN
        d_lr=2e-4,
        adam_betas=(0.0, 0.9),  # SNGAN
        loss="hinge",  # SNGAN
        d_steps=5,  # SNGAN n_dis=5
        ema_kimg=2.0,  # ours: short CPU runs (SNGAN has no EMA)
        kimg=50.0,  # ours
        tick_kimg=1.0,  # ours
        snapshot_ticks=10,  # ours
        metrics_num_gen=500,  # ours: CPU
    ),
    # BigGAN (Brock et al. 2019) at 32x32 as in BigGAN-PyTorch's CIFAR scripts, which the DiffAugment and
    # DigGAN CIFAR experiments run: hinge loss, Adam lr 2e-4 with betas (0, 0.999) (BigGAN-PyTorch's
    # defaults; its CIFAR scripts do not change them), 4 D steps per G step, no attention. Shared
    # embedding + hierarchical z as in the BigGAN paper (network.shared_dim=0 for the CIFAR scripts'
    # per-layer embeddings). Widths 32/32 instead of 256/256 for CPU speed. num_classes 0 = the dataset's.
    "biggan-32": TrainConfig(
        preset="biggan-32",
        network=NetworkConfig(arch="biggan", resolution=32, z_dim=128, g_channels=32, d_channels=32,
                              num_classes=0, shared_dim=128),
        augment=AugmentConfig(kind="none"),  # the DigGAN no-augmentation scripts (scripts/biggan/)
        # AilsaF/DigGAN scripts/biggan/biggan-cifar100-0.1_Diggan.sh: --DigGAN_penalty_weight 10000 at 10% data,
        # applied at step_index == 0 of the 4 D steps (train_fns.py), not scaled by 4.
        regularizers=[_diggan_authors(CIFAR_DATA_FRACTION, d_steps=4)],
        batch_size=16,  # ours: CPU (the scripts: 50)
        g_lr=2e-4,  # the scripts: --G_lr 2e-4 --D_lr 2e-4
        d_lr=2e-4,
        adam_betas=(0.0, 0.999),  # BigGAN-PyTorch defaults
        loss="hinge",  # BigGAN
        d_steps=4,  # the scripts: --num_D_steps 4
        ema_kimg=2.0,  # ours: short CPU runs (the scripts: ema decay 0.9999 from iteration 1000)
        kimg=50.0,  # ours
        tick_kimg=1.0,  # ours
        snapshot_ticks=10,  # ours
        metrics_num_gen=500,  # ours: CPU
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
    """The TrainConfig of `config_to_dict`'s output; a field this version does not know is a ValueError naming it."""
    d = copy.deepcopy(d)
    net = _from_fields(NetworkConfig, d.pop("network", {}), "network")
    aug = _from_fields(AugmentConfig, d.pop("augment", {}), "augment")
    regs = [_from_fields(RegularizerConfig, r, "regularizer") for r in d.pop("regularizers", [])]
    # configs saved before PerfConfig existed load with defaults
    d["perf"] = _from_fields(PerfConfig, d.get("perf") or {}, "perf")
    if "adam_betas" in d:
        d["adam_betas"] = tuple(float(b) for b in d["adam_betas"])
    known = {f.name for f in dataclasses.fields(TrainConfig)}
    unknown = set(d) - known
    if unknown:
        raise ValueError(f"unknown TrainConfig fields: {sorted(unknown)}")
    return TrainConfig(network=net, augment=aug, regularizers=regs, **d)


def _from_fields(cls: Any, values: Any, where: str) -> Any:
    if not isinstance(values, dict):
        raise ValueError(f"{where} must be an object of fields, got {type(values).__name__}")
    known = {f.name for f in dataclasses.fields(cls)}
    unknown = set(values) - known
    if unknown:
        raise ValueError(f"unknown {where} fields: {sorted(unknown)} (known: {', '.join(sorted(known))})")
    try:
        return cls(**values)
    except TypeError as e:  # a required field missing (a regularizer without name or weight)
        raise ValueError(f"{where} {values}: {e}") from None


def network_conflicts(net: NetworkConfig, settings: dict[str, Any]) -> list[str]:
    """'network.KEY=VALUE (the pretrained model has X)' for each network field in `settings` (keys bare or
    'network.'-prefixed) whose value differs from `net`'s; keys that are not network fields are skipped.
    Shared by a request resolved against pretrained weights (gan_core.request) and transfer.adopt_network."""
    out = []
    for key, value in settings.items():
        name = key.removeprefix("network.")
        if hasattr(net, name) and getattr(net, name) != value:
            out.append(f"network.{name}={value!r} (the pretrained model has {getattr(net, name)!r})")
    return out


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
    _validate_arch(cfg)
    _validate_sharding(cfg)


# Regularizers whose penalty is a per-sample mean (or, DigGAN, reduced across ranks by the trainer), so a
# minibatch split over processes and micro-batches gives the same gradient (gan_core.training.sharded).
SHARDABLE_REGULARIZERS = ("diggan", "r1", "r2", "gp1", "dragan")


def _validate_sharding(cfg: TrainConfig) -> None:
    """gpus / batch_gpu: the global minibatch must split evenly, and what is split must stay exact."""
    gpus, batch_gpu = cfg.gpus, cfg.batch_gpu
    if not isinstance(gpus, int) or gpus < 1:
        raise ValueError(f"gpus must be an integer >= 1, got {gpus!r}")
    if cfg.batch_size % gpus:
        raise ValueError(f"batch_size {cfg.batch_size} does not split over gpus={gpus}: use a multiple of {gpus}")
    per_gpu = cfg.batch_size // gpus
    if batch_gpu is not None and (not isinstance(batch_gpu, int) or batch_gpu < 1 or per_gpu % batch_gpu):
        raise ValueError(f"batch_gpu must divide batch_size / gpus = {per_gpu}, got {batch_gpu!r}")
    if gpus == 1 and batch_gpu in (None, per_gpu):
        return
    if cfg.network.arch != "stylegan2":
        raise ValueError(f"gpus > 1 and batch_gpu are built for arch 'stylegan2' only, got {cfg.network.arch!r}; "
                         "set gpus=1 and batch_gpu=null")
    bad = [r.name for r in cfg.regularizers if r.name not in SHARDABLE_REGULARIZERS]
    if bad:
        raise ValueError(f"regularizers {bad} keep state across the minibatch and are not split over processes or "
                         f"micro-batches yet; use gpus=1 and batch_gpu=null, or only {', '.join(SHARDABLE_REGULARIZERS)}")


def _validate_arch(cfg: TrainConfig) -> None:
    """The architecture, loss and D-step fields, and the combinations that cannot work."""
    net, arch = cfg.network, cfg.network.arch
    if arch not in ARCHS:
        raise ValueError(f"network.arch must be one of {ARCHS}, got {arch!r}")
    if cfg.loss not in LOSSES:
        raise ValueError(f"loss must be one of {LOSSES}, got {cfg.loss!r}")
    if not isinstance(cfg.d_steps, int) or not 1 <= cfg.d_steps <= 100:
        raise ValueError(f"d_steps (D updates per G update) must be an integer in [1, 100], got {cfg.d_steps!r}")
    if net.num_classes < 0 or net.g_channels < 0 or net.d_channels < 0 or net.shared_dim < 0:
        raise ValueError("network.num_classes, g_channels, d_channels and shared_dim must be >= 0")
    fixed = FIXED_RESOLUTION_ARCHS.get(arch)
    if fixed is not None and net.resolution != fixed:
        raise ValueError(f"network.arch {arch!r} is the {fixed}x{fixed} CIFAR architecture; set network.resolution="
                         f"{fixed} (images are resized to it) or use arch 'stylegan2' for {net.resolution}x{net.resolution}")
    if arch not in CONDITIONAL_ARCHS and net.num_classes:
        raise ValueError(f"network.arch {arch!r} is unconditional: set network.num_classes=0, or use arch "
                         f"{' or '.join(repr(a) for a in CONDITIONAL_ARCHS)} for class-conditional training")
    if arch == "biggan" and net.shared_dim and net.z_dim < 4:
        raise ValueError(f"biggan splits z into 4 chunks (shared_dim > 0): network.z_dim must be >= 4, got {net.z_dim}")
    if cfg.pl_weight > 0 and arch != "stylegan2":
        raise ValueError(f"path-length regularization (pl_weight) needs StyleGAN2's W space; set pl_weight=0 for {arch!r}")
    if cfg.perf.precision not in PRECISIONS:
        raise ValueError(f"perf.precision must be one of {PRECISIONS}, got {cfg.perf.precision!r}")
    if not 0.0 <= cfg.style_mixing_prob <= 1.0:
        raise ValueError(f"style_mixing_prob must be in [0, 1], got {cfg.style_mixing_prob}")
    if cfg.style_mixing_prob > 0 and arch != "stylegan2":
        raise ValueError(f"style mixing needs StyleGAN2's W space; set style_mixing_prob=0 for {arch!r}")
    if cfg.pl_weight > 0 and cfg.d_steps > 1:
        raise ValueError("path-length regularization runs in G steps: use d_steps=1 with pl_weight > 0")
    for r in cfg.regularizers:
        why = UNSUPPORTED_REGULARIZERS.get(arch, {}).get(r.name)
        if why:
            raise ValueError(f"regularizer {r.name!r} cannot be used with arch {arch!r}: {why}")


def fit_to_dataset(cfg: TrainConfig, dataset_classes: int) -> TrainConfig:
    """Resolve what depends on the data (BigGAN's num_classes) or say what does not fit.

    `dataset_classes`: the dataset's class count (0 = no labels). For a conditional arch,
    num_classes 0 becomes the dataset's count (1 for an unlabelled set: an unconditional BigGAN);
    num_classes 1 ignores any labels; num_classes K > 1 needs a dataset with exactly K classes.
    Returns `cfg` itself when nothing changes, else a changed copy. Raises ValueError on a mismatch.
    """
    net = cfg.network
    if net.arch not in CONDITIONAL_ARCHS:
        return cfg  # labels, if any, are not used
    want = net.num_classes
    if want == 0:
        out = copy.deepcopy(cfg)
        out.network.num_classes = max(1, dataset_classes)
        return out
    if dataset_classes == 0 and want > 1:
        raise ValueError(f"network.num_classes={want} but the dataset has no class labels; upload it with one folder "
                         "per class (class_folders), or set num_classes=1 (unconditional) or 0 (from the data)")
    if want > 1 and dataset_classes and want != dataset_classes:  # want == 1: labels are ignored
        raise ValueError(f"network.num_classes={want} but the dataset has {dataset_classes} classes; "
                         "set num_classes=0 to take it from the dataset")
    return cfg
