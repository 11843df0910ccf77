"""DigGAN and R1 checked against hand computations on a tiny quadratic D.

D(x) = c * ||x||^2 per sample, so grad_x D = 2 c x and ||grad|| = 2 |c| ||x||:
every term of the penalty is known in closed form.
"""

from __future__ import annotations

import pytest
import torch
from torch import nn

from gan_core.regularizers import R1, DigGAN, RegContext, build_regularizers, describe_regularizers, gradient_gap


class QuadraticD(nn.Module):
    def __init__(self, c: float) -> None:
        super().__init__()
        self.c = nn.Parameter(torch.tensor(float(c)))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return (self.c * x.flatten(1).square().sum(1)).unsqueeze(1)


def _batch(norms: list[float]) -> torch.Tensor:
    """Images [N, 1, 2, 2] whose L2 norms are exactly `norms`."""
    x = torch.zeros(len(norms), 1, 2, 2)
    x[:, 0, 0, 0] = torch.tensor(norms)
    return x


def test_input_gradient_norms_match_closed_form() -> None:
    D = QuadraticD(0.5)
    ctx = RegContext(D, _batch([1.0, 2.0, 3.0]), _batch([0.5, 0.5, 4.0]), create_graph=True)
    assert torch.allclose(ctx.real().norms, torch.tensor([1.0, 2.0, 3.0]))  # 2 * 0.5 * ||x||
    assert torch.allclose(ctx.fake().norms, torch.tensor([0.5, 0.5, 4.0]))
    assert ctx.real() is ctx.real()  # computed once per step, shared by R1 and DigGAN


def test_diggan_penalty_value_pairing_and_gradient() -> None:
    c, lam = 0.75, 100.0
    xr, xf = [1.0, 2.0, 3.0, 4.0], [4.0, 1.0, 1.0, 2.0]
    D = QuadraticD(c)
    reg = DigGAN(weight=lam, interval=1, alpha=1.0)
    torch.manual_seed(123)
    loss, stats = reg.penalty(RegContext(D, _batch(xr), _batch(xf), create_graph=True))
    torch.manual_seed(123)
    perm = torch.randperm(4)
    a = torch.tensor(xr)
    b = torch.tensor(xf)[perm]
    expected = lam * ((2 * c * a - 2 * c * b) ** 2).mean()
    assert torch.allclose(loss, expected)
    assert stats["dig_smoothed"] == pytest.approx(float(expected / lam))
    # d/dc [lam * mean((2c(a-b))^2)] = lam * 8c * mean((a-b)^2): gradients reach D's parameters.
    loss.backward()
    assert D.c.grad is not None
    assert torch.allclose(D.c.grad, lam * 8 * c * ((a - b) ** 2).mean())


def test_diggan_moving_average_uses_previous_step_as_constant() -> None:
    alpha = 0.25
    prev_r, prev_f = torch.tensor([1.0, 1.0]), torch.tensor([3.0, 5.0])
    real = torch.tensor([2.0, 4.0], requires_grad=True)
    fake = torch.tensor([6.0, 6.0], requires_grad=True)  # equal entries: pairing cannot matter
    gap, g_r, g_f = gradient_gap(real, fake, alpha, prev_r, prev_f)
    exp_r = alpha * torch.tensor([2.0, 4.0]) + (1 - alpha) * prev_r
    exp_f = alpha * torch.tensor([6.0, 6.0]) + (1 - alpha) * prev_f
    assert torch.allclose(g_r, exp_r) and torch.allclose(g_f, exp_f)
    assert torch.allclose(gap, ((exp_r - exp_f) ** 2).mean())
    gap.backward()
    # Only the current batch carries gradient, scaled by alpha.
    assert torch.allclose(real.grad, 2 * (exp_r - exp_f) / 2 * alpha)


def test_diggan_state_carries_over_between_steps_and_resets_on_new_batch_size() -> None:
    D = QuadraticD(1.0)
    reg = DigGAN(weight=1.0, alpha=0.5)
    reg.penalty(RegContext(D, _batch([1.0, 1.0]), _batch([2.0, 2.0]), create_graph=True))
    assert torch.allclose(reg.prev_real, torch.tensor([2.0, 2.0]))
    reg.penalty(RegContext(D, _batch([3.0, 3.0]), _batch([2.0, 2.0]), create_graph=True))
    assert torch.allclose(reg.prev_real, torch.tensor([0.5 * 6.0 + 0.5 * 2.0] * 2))
    state = reg.extra_state()
    other = DigGAN(weight=1.0, alpha=0.5)
    other.load_extra_state(state)
    assert torch.equal(other.prev_real, reg.prev_real)
    reg.penalty(RegContext(D, _batch([1.0, 1.0, 1.0]), _batch([1.0, 1.0, 1.0]), create_graph=True))
    assert reg.prev_real.shape == (3,)  # batch size changed: the average restarted


def test_r1_matches_closed_form() -> None:
    D = QuadraticD(0.5)
    loss, stats = R1(weight=10.0).penalty(RegContext(D, _batch([1.0, 3.0]), _batch([0.0, 0.0]), create_graph=True))
    assert torch.allclose(loss, torch.tensor(10.0 / 2 * (1.0 + 9.0) / 2))
    assert stats["r1"] == pytest.approx(5.0)


def test_registry_builds_and_rejects() -> None:
    regs = build_regularizers([{"name": "diggan", "weight": 100, "interval": 4, "params": {"alpha": 0.3}},
                               {"name": "r1", "weight": 1}])
    assert [r.name for r in regs] == ["diggan", "r1"]
    assert regs[0].hparams["alpha"] == 0.3 and regs[0].interval == 4
    with pytest.raises(ValueError, match="unknown regularizer"):
        build_regularizers([{"name": "nope", "weight": 1}])
    with pytest.raises(ValueError, match="no parameter"):
        build_regularizers([{"name": "diggan", "weight": 1, "params": {"beta": 1}}])
    with pytest.raises(ValueError, match="alpha"):
        DigGAN(weight=1, alpha=0.0)
    names = {d["name"] for d in describe_regularizers()}
    assert {"diggan", "r1"} <= names
