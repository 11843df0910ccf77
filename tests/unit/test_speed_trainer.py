"""The trainer's speed levers keep the maths: one D call for reals and fakes, channels-last,
fused Adam, the multi-tensor EMA, tick stats read once, ADA's host copy of p, style mixing."""

from __future__ import annotations

import copy
from pathlib import Path

import numpy as np
import pytest
import torch

from gan_core.augment import AdaAugment
from gan_core.config import PerfConfig, RegularizerConfig, config_from_dict, config_to_dict, get_preset
from gan_core.data import PreparedDataset
from gan_core.threads import one_thread
from gan_core.training import Trainer
from gan_core.training.perf import foreach_lerp_copy, resolve_perf
from gan_core.training.stats import TickAccumulator
from tests.recorder import Recorder


@pytest.fixture(autouse=True)
def single_thread():
    # One intra-op thread: two OpenMP threads on a busy 2-core machine spin against each other.
    with one_thread():
        yield


def micro(batch: int = 8, **perf) -> object:
    cfg = get_preset("cpu-tiny")
    cfg.network.resolution = 32
    cfg.network.channel_base = 512
    cfg.network.channel_max = 32
    cfg.network.z_dim = cfg.network.w_dim = 32
    cfg.batch_size = batch
    cfg.regularizers = [RegularizerConfig("diggan", 100.0, 2, {"alpha": 0.5}), RegularizerConfig("r1", 1.0, 4)]
    cfg.perf = PerfConfig(**perf)
    return cfg


def dataset(n: int = 12, res: int = 32) -> PreparedDataset:
    g = torch.Generator().manual_seed(0)
    images = torch.randint(0, 256, (n, 3, res, res), dtype=torch.uint8, generator=g)
    return PreparedDataset(images=images, names=[f"{i}.png" for i in range(n)], warnings=[], resolution=res)


def test_joint_d_call_forms_the_minibatch_std_groups_of_two_calls(tmp_path: Path) -> None:
    tr = Trainer(micro(batch=8), dataset(), tmp_path)
    assert tr.perf.joint_d_pass and tr.perf.channels_last
    torch.manual_seed(1)
    real = torch.randn(8, 3, 32, 32).contiguous(memory_format=torch.channels_last)
    fake = torch.randn(8, 3, 32, 32).contiguous(memory_format=torch.channels_last) * 3
    joint_real, joint_fake = tr._d_logits_joint(real, fake, None, None)
    assert torch.allclose(joint_real, tr.D(real), atol=1e-5)
    assert torch.allclose(joint_fake, tr.D(fake), atol=1e-5)
    # A plain concatenation mixes reals and fakes in stddev groups: visibly different logits,
    # so the check above can fail.
    naive = tr.D(torch.cat([real, fake]))
    assert not torch.allclose(naive[:8], tr.D(real), atol=1e-3)
    # 6 per side: groups of 3 for 6 but of 4 for 12, so two calls it is.
    assert tr._d_logits_joint(real[:6], fake[:6], None, None) is None


def test_joint_pass_is_off_for_spectral_norm_nets() -> None:
    # SNGAN/BigGAN's power iteration advances once per D call: one call for two would change it.
    assert not resolve_perf(PerfConfig(joint_d_pass=True), torch.device("cpu"), "sngan").joint_d_pass
    assert not resolve_perf(PerfConfig(), torch.device("cpu"), "biggan").channels_last


def run_steps(cfg, tmp_path: Path, n: int = 6) -> Trainer:
    tr = Trainer(cfg, dataset(), tmp_path)
    acc = TickAccumulator()
    for _ in range(n):
        tr.train_step(acc)
    return tr


def test_speed_levers_stay_close_to_the_plain_path(tmp_path: Path) -> None:
    """NCHW, two D calls, for-loop Adam vs channels-last, one call, fused Adam: the same training
    up to float rounding (6 steps with R1 and DigGAN due on some)."""
    plain = run_steps(micro(channels_last=False, joint_d_pass=False, fused_adam=False), tmp_path / "a")
    fast = run_steps(micro(channels_last=True, joint_d_pass=True, fused_adam=True), tmp_path / "b")
    # Adam's first steps (beta1 = 0) move each weight by about +-lr whatever the gradient's size, so a
    # gradient within rounding of 0 may step either way: allow that on a few weights, nothing more.
    lr, n = plain.cfg.g_lr, 6
    for name in ("G", "D", "G_ema"):
        a, b = getattr(plain, name).state_dict(), getattr(fast, name).state_dict()
        diff = torch.cat([(a[k] - b[k]).abs().flatten() for k in a])
        assert diff.max() <= 2 * lr * n + 1e-6, name
        assert (diff > 1e-4).float().mean() < 0.01, name
    assert fast.G.synthesis.b32.conv1.weight.is_contiguous(memory_format=torch.channels_last)


def test_fast_path_is_bit_reproducible(tmp_path: Path) -> None:
    a = run_steps(micro(), tmp_path / "a", n=4)
    b = run_steps(micro(), tmp_path / "b", n=4)
    for k, v in a.D.state_dict().items():
        assert torch.equal(v, b.D.state_dict()[k]), k


def test_foreach_ema_equals_the_per_tensor_update() -> None:
    g = torch.Generator().manual_seed(0)
    ema = [torch.randn(5, 4, generator=g), torch.randn(3, 2, 3, 3, generator=g).contiguous(memory_format=torch.channels_last)]
    src = [torch.randn(5, 4, generator=g), torch.randn(3, 2, 3, 3, generator=g)]
    want = [p.lerp(e, 0.93) for p, e in zip(src, ema)]
    foreach_lerp_copy(ema, src, 0.93)
    assert all(torch.equal(a, b) for a, b in zip(ema, want))


def test_tick_stats_read_once_give_the_per_value_means() -> None:
    acc = TickAccumulator()
    vals = [torch.tensor(0.1), torch.tensor(2.5), 3.25]
    for v in vals:
        acc.add("x", v)
    acc.add("y", torch.tensor([7.0]))
    want = sum(float(v) for v in vals) / 3
    assert acc.mean("x") == want and acc.mean("y") == 7.0 and acc.mean("z") is None
    acc.add("y", torch.tensor(1.0))  # a new value after a read is seen
    assert acc.mean("y") == 4.0


def test_ada_host_copy_of_p_follows_every_write() -> None:
    aug = AdaAugment(p=0.0)
    assert aug.host_p() == 0.0
    aug.p.fill_(0.3)
    assert aug.host_p() == float(torch.tensor(0.3))
    aug.set_p(0.123456789)
    assert aug.host_p() == float(np.float32(0.123456789)) == float(aug.p)
    aug.load_state_dict({"p": torch.tensor(0.7)})
    assert aug.host_p() == float(torch.tensor(0.7))
    assert copy.deepcopy(aug).host_p() == aug.host_p()


def test_style_mixing_takes_the_tail_of_ws_from_a_second_latent(tmp_path: Path) -> None:
    cfg = micro()
    cfg.style_mixing_prob = 1.0
    tr = Trainer(cfg, dataset(), tmp_path)
    z = torch.randn(4, tr.G.z_dim)
    torch.manual_seed(5)
    ws = tr._mixed_ws(z, update_w_avg=False)
    torch.manual_seed(5)
    cutoff = int(torch.randint(1, tr.G.num_ws, ()))
    torch.rand(())
    z2 = torch.randn_like(z)
    assert torch.equal(ws[:, :cutoff], tr.G.mapping(z)[:, :cutoff])
    assert torch.equal(ws[:, cutoff:], tr.G.mapping(z2)[:, cutoff:])
    # Probability 0 draws nothing and is the plain G: runs without mixing keep their bits.
    tr.style_mixing_prob = 0.0
    torch.manual_seed(3)
    a = tr._generate(z, None)
    state = torch.get_rng_state()
    torch.manual_seed(3)
    assert torch.equal(a, tr.G(z)) and torch.equal(state, torch.get_rng_state())


def test_style_mixing_with_path_length_trains(tmp_path: Path) -> None:
    cfg = micro(batch=4)
    cfg.style_mixing_prob = 0.9
    cfg.pl_weight = 2.0
    cfg.kimg, cfg.tick_kimg, cfg.snapshot_ticks, cfg.num_grid = 0.016, 0.008, 1, 4
    rec = Recorder()
    res = Trainer(cfg, dataset(), tmp_path / "a", callbacks=rec).run()
    assert res.kimg == pytest.approx(0.016)
    assert all(np.isfinite(t["loss_G"]) and np.isfinite(t["loss_D"]) for t in rec.ticks)
    assert rec.ticks[0]["pl"] > 0  # path length runs on minibatch 0 (every pl_interval) through the mixed ws


def test_perf_config_round_trips_and_old_configs_load() -> None:
    cfg = micro(precision="bf16", channels_last=False)
    d = config_to_dict(cfg)
    assert config_from_dict(d) == cfg
    d.pop("perf")
    assert config_from_dict(d).perf == PerfConfig()
