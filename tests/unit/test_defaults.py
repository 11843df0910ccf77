"""Every corrected default equals the value its source comment cites (gan_core/config.py, gan_core/regularizers).

A failure here means a default drifted from its source: fix the value, or change the comment and this
test together, naming the new source (or our measurement in docs/results.md).
"""

from __future__ import annotations

import pytest

from gan_core.config import (
    RegularizerConfig,
    config_from_dict,
    config_to_dict,
    diggan_cifar_lambda,
    get_preset,
    nvlabs_auto_r1_gamma,
    validate_config,
)
from gan_core.regularizers import REGISTRY, build_regularizers, suggested_defaults
from gan_core.regularizers.lecam import ARCH_DEFAULTS as LECAM_ARCH_DEFAULTS

# ---------------------------------------------------------------- DigGAN on SNGAN / BigGAN (AilsaF/DigGAN)


def test_authors_lambda_table() -> None:
    # DiffAugment-biggan-cifar/scripts/biggan/*_Diggan.sh (no augmentation): 100% 1000, 20% 5000, 10% 10000
    assert [diggan_cifar_lambda(f) for f in (1.0, 0.2, 0.1)] == [1000.0, 5000.0, 10000.0]
    # scripts/DiffAug/*_Diggan.sh (DiffAugment translation,cutout): 100% 10, 20% 250, 10% 1000
    assert [diggan_cifar_lambda(f, diffaugment=True) for f in (1.0, 0.2, 0.1)] == [10.0, 250.0, 1000.0]
    with pytest.raises(ValueError):
        diggan_cifar_lambda(0.5, diffaugment=True)


@pytest.mark.parametrize("name, d_steps", [("sngan-32", 5), ("biggan-32", 4)])
def test_cifar_presets_apply_diggan_as_the_authors(name: str, d_steps: int) -> None:
    cfg = get_preset(name)
    assert cfg.d_steps == d_steps and cfg.augment.kind == "none"
    dig = cfg.regularizer("diggan")
    assert dig.weight == pytest.approx(1000 / 0.1)  # 10% data, no augmentation
    assert dig.params["alpha"] == 0.5  # train_fns.py: 0.5 * grad + 0.5 * grad_ema
    assert dig.interval == d_steps and dig.scale_by_interval is False
    (reg,) = build_regularizers([dig])
    assert reg.lazy_multiplier == 1  # not multiplied by the interval
    # due exactly on the minibatches that start with a G step: the first D step after each G step
    due = [b for b in range(4 * d_steps) if reg.is_due(b)]
    assert due == [b for b in range(4 * d_steps) if b % cfg.d_steps == 0]


def test_stylegan2_diggan_stays_lazy_and_scaled() -> None:
    for name in ("cpu-tiny", "low-shot-256"):
        dig = get_preset(name).regularizer("diggan")
        assert (dig.weight, dig.interval, dig.scale_by_interval) == (100.0, 8, True)  # paper 4.4; NVlabs-style lazy
        (reg,) = build_regularizers([dig])
        assert reg.lazy_multiplier == 8


def test_old_configs_without_the_new_fields_still_load() -> None:
    d = config_to_dict(get_preset("cpu-tiny"))
    for r in d["regularizers"]:
        del r["scale_by_interval"]
    del d["style_mixing_prob"]
    cfg = config_from_dict(d)
    assert all(r.scale_by_interval for r in cfg.regularizers) and cfg.style_mixing_prob == 0.0
    assert RegularizerConfig("r1", 1.0).scale_by_interval is True
    (reg,) = build_regularizers([{"name": "r1", "weight": 1.0, "interval": 16}])
    assert reg.lazy_multiplier == 16


# ---------------------------------------------------------------- low-shot-256: NVlabs 'auto' at 256x256, one GPU


def test_low_shot_256_follows_nvlabs_auto() -> None:
    cfg = get_preset("low-shot-256")
    res, mb = 256, min(4096 // 256, 32)  # train.py 'auto', one GPU
    assert cfg.batch_size == mb == 16
    assert cfg.regularizer("r1").weight == pytest.approx(0.0002 * 256**2 / 16)
    assert cfg.regularizer("r1").weight == pytest.approx(nvlabs_auto_r1_gamma(res, mb))
    assert cfg.network.mbstd_group_size == min(mb, 4)
    assert cfg.ema_kimg == pytest.approx(mb * 10 / 32) and cfg.ema_rampup == 0.05
    assert cfg.network.channel_base == int(0.5 * 32768) and cfg.network.mapping_layers == 2
    assert cfg.g_lr == cfg.d_lr == 0.0025 and cfg.adam_betas == (0.0, 0.99)
    assert cfg.augment.ada_kimg == 500.0  # training_loop.py default (from scratch)
    assert (cfg.pl_weight, cfg.pl_interval, cfg.style_mixing_prob) == (2.0, 4, 0.9)  # loss.py defaults
    assert cfg.kimg == 600.0  # DigGAN paper 4.4


# ---------------------------------------------------------------- paper256: NVlabs cfg_specs['paper256']


def test_paper256_follows_nvlabs() -> None:
    cfg = get_preset("paper256")
    assert cfg.network.mbstd_group_size == 8
    assert (cfg.pl_weight, cfg.pl_interval) == (2.0, 4)
    assert cfg.style_mixing_prob == 0.9
    assert cfg.regularizer("r1").weight == 1.0 and cfg.regularizer("r1").interval == 16
    assert (cfg.batch_size, cfg.ema_kimg, cfg.ema_rampup, cfg.kimg) == (64, 20.0, None, 25000.0)
    assert (cfg.network.mapping_layers, cfg.network.channel_base) == (8, 16384)
    assert cfg.augment.ada_kimg == 500.0 and cfg.augment.ada_target == 0.6 and cfg.augment.ada_interval == 4
    validate_config(cfg)


def test_style_mixing_is_stylegan2_only_and_a_probability() -> None:
    cfg = get_preset("sngan-32")
    cfg.style_mixing_prob = 0.9
    with pytest.raises(ValueError, match="style mixing"):
        validate_config(cfg)
    cfg = get_preset("paper256")
    cfg.style_mixing_prob = 1.5
    with pytest.raises(ValueError, match="style_mixing_prob"):
        validate_config(cfg)
    assert get_preset("cpu-tiny").style_mixing_prob == 0.0  # off unless a preset names NVlabs


# ---------------------------------------------------------------- regularizer registry defaults


def test_lecam_defaults_per_backbone() -> None:
    assert LECAM_ARCH_DEFAULTS["biggan"] == (0.3, 0.9)  # lecam-gan --LC 0.3; ema_losses decay 0.9
    assert LECAM_ARCH_DEFAULTS["sngan"] == LECAM_ARCH_DEFAULTS["biggan"]
    assert LECAM_ARCH_DEFAULTS["stylegan2"][1] == 0.99  # stylegan2/lecam_loss.py decay=0.99
    assert suggested_defaults("lecam") == (0.3, 1) and REGISTRY["lecam"].params == {"decay": 0.99}


def test_other_registry_defaults_match_their_sources() -> None:
    assert REGISTRY["diggan"].params == {"alpha": 0.5}  # AilsaF/DigGAN train_fns.py
    assert suggested_defaults("diggan") == (100.0, 8)  # paper 4.4; bench/train_step.py interval
    assert suggested_defaults("r1") == (1.0, 16)  # NVlabs paper256 gamma; D_reg_interval
    assert suggested_defaults("gp1")[0] == 10.0  # WGAN-GP lambda = 10
    assert suggested_defaults("dragan")[0] == 10.0  # kodalinaveen3/DRAGAN lambda_ = 10
    assert REGISTRY["dragan"].params["noise_scale"] == 0.5  # DRAGAN: 0.5 * X.std() * U[0, 1)
    assert REGISTRY["nice"].params["target"] == 0.6  # ADA's target (NVlabs train.py)


# ---------------------------------------------------------------- cpu-faces: ours, measured (docs/results.md)


def test_cpu_faces_is_the_measured_cpu_preset() -> None:
    cfg = get_preset("cpu-faces")
    net = cfg.network
    assert (net.resolution, net.channel_base, net.channel_max, net.mapping_layers) == (32, 1024, 128, 2)
    assert (net.z_dim, net.w_dim) == (64, 64)
    assert cfg.augment.kind == "ada" and cfg.augment.ada_kimg == 100.0
    dig, r1 = cfg.regularizer("diggan"), cfg.regularizer("r1")
    assert (dig.weight, dig.interval, dig.scale_by_interval) == (100.0, 8, True)  # paper 4.4, lazy as cpu-tiny
    assert r1.weight == pytest.approx(nvlabs_auto_r1_gamma(32, 16)) and r1.interval == 16  # NVlabs 'auto'
    assert (cfg.batch_size, cfg.g_lr, cfg.d_lr) == (16, 0.0025, 0.0025)  # ours; NVlabs 'auto' lrate
    assert cfg.ema_kimg == pytest.approx(16 * 10 / 32) and cfg.ema_rampup == 0.05  # NVlabs 'auto'
    assert cfg.mirror is True and cfg.kimg == 100.0
    validate_config(cfg)
