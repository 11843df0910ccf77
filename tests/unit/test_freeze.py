"""Freeze-D (gan_core.training.freeze) on a real StyleGAN2 discriminator."""

from __future__ import annotations

import pytest
import torch

from gan_core.config import TrainConfig, config_from_dict, config_to_dict, get_preset
from gan_core.networks import build_discriminator
from gan_core.training.freeze import apply_freeze_d, d_layers, frozen_parameter_names


@pytest.fixture
def D():
    net = get_preset("cpu-tiny").network  # 64x64: blocks b64, b32, b16, b8, then the b4 epilogue
    torch.manual_seed(0)
    return build_discriminator(net)


def test_layers_are_numbered_from_the_input_side_like_nvlabs(D) -> None:
    assert d_layers(D) == ["b64.fromrgb", "b64.conv0", "b64.conv1", "b64.skip",
                           "b32.conv0", "b32.conv1", "b32.skip", "b16.conv0", "b16.conv1", "b16.skip",
                           "b8.conv0", "b8.conv1", "b8.skip"]
    assert frozen_parameter_names(D, 0) == []
    assert frozen_parameter_names(D, 1) == ["b64.fromrgb.weight", "b64.fromrgb.bias"]
    four = frozen_parameter_names(D, 4)  # the whole first block (skip has no bias)
    assert four == ["b64.fromrgb.weight", "b64.fromrgb.bias", "b64.conv0.weight", "b64.conv0.bias",
                    "b64.conv1.weight", "b64.conv1.bias", "b64.skip.weight"]
    every = frozen_parameter_names(D, 13)
    assert not any(n.startswith("b4.") for n in every)  # the epilogue always trains (NVlabs)
    assert set(every) | {n for n, _ in D.named_parameters() if n.startswith("b4.")} == {n for n, _ in D.named_parameters()}
    with pytest.raises(ValueError, match="only 13 freezable layers"):
        frozen_parameter_names(D, 14)
    with pytest.raises(ValueError, match=">= 0"):
        frozen_parameter_names(D, -1)


def test_frozen_layers_do_not_move_in_a_real_optimizer_step(D) -> None:
    trainable = apply_freeze_d(D, 7)  # b64 and b32
    frozen = set(frozen_parameter_names(D, 7))
    params = dict(D.named_parameters())
    assert {id(p) for p in trainable} == {id(p) for n, p in params.items() if n not in frozen}
    assert all(not params[n].requires_grad for n in frozen)
    before = {n: p.detach().clone() for n, p in params.items()}
    opt = torch.optim.Adam(trainable, lr=0.01, betas=(0.0, 0.99))
    x = torch.randn(4, 3, 64, 64, requires_grad=True)  # R1-style input gradients still flow through frozen layers
    logits = D(x)
    (grad_x,) = torch.autograd.grad(logits.sum(), x, create_graph=True)
    (torch.nn.functional.softplus(logits).mean() + grad_x.square().sum()).backward()
    opt.step()
    for n, p in params.items():
        if n in frozen:
            assert torch.equal(p, before[n]) and p.grad is None, n
        elif p.grad is not None and p.grad.abs().sum() > 0:
            assert not torch.equal(p, before[n]), n
    assert not torch.equal(params["b16.conv0.weight"], before["b16.conv0.weight"])

    # After the trainer's D.requires_grad_(True) (its G phase toggles it), applying again re-freezes.
    D.requires_grad_(True)
    apply_freeze_d(D, 7)
    assert all(not params[n].requires_grad for n in frozen)


def test_zero_keeps_every_parameter_in_order_and_other_archs_are_refused(D) -> None:
    assert [id(p) for p in apply_freeze_d(D, 0)] == [id(p) for p in D.parameters()]
    sngan_d = build_discriminator(get_preset("sngan-32").network)
    assert len(apply_freeze_d(sngan_d, 0)) == len(list(sngan_d.parameters()))
    with pytest.raises(ValueError, match="StyleGAN2 discriminator only"):
        apply_freeze_d(sngan_d, 2)


def test_config_field_defaults_to_zero_and_round_trips() -> None:
    assert TrainConfig().freeze_d_layers == 0
    cfg = get_preset("low-shot-256")
    cfg.freeze_d_layers = 10
    assert config_from_dict(config_to_dict(cfg)).freeze_d_layers == 10
    old = config_to_dict(get_preset("cpu-tiny"))
    old.pop("freeze_d_layers")  # checkpoints written before the field existed
    assert config_from_dict(old).freeze_d_layers == 0
