"""gan_core.toy: the DigGAN toy experiment (schema, figure, and the penalty against hand computations)."""

from __future__ import annotations

import argparse
import dataclasses
import json
import math
from pathlib import Path

import pytest
import torch
from PIL import Image

from gan_core import toy

FAST = dataclasses.replace(toy.DEFAULT_SETTINGS, log_every=5, n_eval=200, exp4_d_warmup=5)


def _check_png(path: Path) -> None:
    assert path.is_file() and path.stat().st_size > 1000
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    with Image.open(path) as im:
        im.verify()
    with Image.open(path) as im:
        assert im.format == "PNG" and im.size[0] > 300 and im.size[1] > 300


def test_run_toy_writes_summary_and_figure(tmp_path: Path) -> None:
    out = tmp_path / "toy"
    summary = toy.run_toy(seeds=2, out_dir=out, iterations=40, progress=False, settings=FAST)

    on_disk = json.loads((out / "summary.json").read_text())
    assert on_disk == json.loads(json.dumps(summary))
    for name in ("vanilla", "diggan"):
        agg = on_disk[name]
        assert agg["seeds"] == 2
        assert isinstance(agg["both_modes"], int) and 0 <= agg["both_modes"] <= 2
        assert agg["both_modes"] + agg["one_mode"] + agg["neither"] == 2
        assert len(agg["per_seed"]) == 2
        assert [r["seed"] for r in agg["per_seed"]] == [0, 1]
        for r in agg["per_seed"]:
            assert len(r["frac_near_points"]) == 2
            assert all(0.0 <= f <= 1.0 for f in r["frac_near_points"])
            assert r["both_modes"] == all(f >= FAST.min_frac for f in r["frac_near_points"])
            assert r["max_dig"] >= 0.0 and math.isfinite(r["max_dig"])
    settings = on_disk["settings"]
    for key in ("lr_d", "lr_g", "momentum", "lam", "alpha", "batch_size", "latent", "latent_description",
                "coverage_criterion", "tol", "min_frac", "n_eval"):
        assert key in settings
    assert settings["iterations"] == 40  # the override is what is recorded
    assert on_disk["representative_seed"] in (0, 1)
    assert "experiment2" not in on_disk  # perturb defaults to off
    _check_png(out / "toy.png")


def test_same_seed_same_start_and_models_do_not_interact() -> None:
    st = dataclasses.replace(FAST, iterations=15)
    a, b = toy._init_state([3], st), toy._init_state([3], st)
    assert all(torch.equal(x, y) for x, y in zip(a.G + a.D, b.G + b.D))
    assert not torch.equal(toy._init_state([4], st).G[0], a.G[0])
    # seed 3 vanilla alone vs. the same seed in a batch beside other seeds and DigGAN copies
    alone = toy._init_state([3], st)
    toy._train(alone, st, lam=0.0, iterations=15, noise_keys=[toy._noise_key(3, 0)])
    init = toy._init_state([3, 5], st)
    mixed = toy._State.cat([init, init.select([0, 1])])
    keys = [toy._noise_key(s, 0) for s in (3, 5)] * 2
    toy._train(mixed, st, lam=torch.tensor([0.0, 0.0, 1.0, 1.0]), iterations=15, noise_keys=keys)
    for x, y in zip(alone.G + alone.D, mixed.G + mixed.D):
        torch.testing.assert_close(x[0], y[0], rtol=1e-4, atol=1e-5)
    # DigGAN moved away from vanilla although both started from the same weights and noise
    assert not torch.allclose(mixed.D[0][0], mixed.D[0][2])


def test_experiments_2_and_4_schema() -> None:
    st = dataclasses.replace(FAST, iterations=10)
    stuck = toy._init_state([0, 1], st)
    before = ["mode@4", "mode@0"]
    exp2, h2 = toy._experiment2(stuck, before, st, 10, None)
    assert set(exp2["by_variance"]) == {"0", "0.1", "1", "5", "10"}
    for b in exp2["by_variance"].values():
        assert b["escaped"] + b["same_mode"] + b["other_mode"] + b["neither"] == 2
        assert b["std"] == pytest.approx(math.sqrt(b["variance"]))
    assert h2["frac"].shape[0] == 2 * 5
    exp4, _ = toy._experiment4(stuck, before, st, 10, None)
    assert exp4["d_warmup_steps"] == 5
    for name in ("diggan", "vanilla_control"):
        assert len(exp4[name]["per_seed"]) == 2 and 0 <= exp4[name]["escaped"] <= 2
    # the input state is left untouched
    assert torch.equal(stuck.D[0], toy._init_state([0, 1], st).D[0])


def test_cli_registers_toy(tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch) -> None:
    parser = argparse.ArgumentParser()
    toy.add_cli(parser.add_subparsers(dest="command"))
    args = parser.parse_args(["toy", "--seeds", "3", "--out", str(tmp_path), "--iterations", "10", "--no-progress"])
    assert (args.seeds, args.out, args.iterations, args.perturb) == (3, tmp_path, 10, False)
    assert parser.parse_args(["toy", "--perturb"]).perturb is True
    assert parser.parse_args(["toy"]).seeds == 10
    calls = []

    def fake_run_toy(**kwargs):
        calls.append(kwargs)
        return {"vanilla": {"seeds": 3, "both_modes": 1}, "diggan": {"seeds": 3, "both_modes": 2}, "settings": {}}

    monkeypatch.setattr(toy, "run_toy", fake_run_toy)
    assert args.func(args) == 0
    assert calls == [dict(seeds=3, out_dir=tmp_path, iterations=10, perturb=False, progress=False)]
    assert json.loads(capsys.readouterr().out)["diggan"]["both_modes"] == 2


# ----------------------------------------------------------------- the penalty, by hand
# Tiny D(x) = w * x^2 on 1-D inputs: d D / d x = 2 w x, so ||grad|| = 2 |w| |x|.


def _quadratic_d(w: torch.Tensor):
    return lambda x: w * x.squeeze(-1) ** 2


def test_input_grad_norms_closed_form() -> None:
    w = torch.tensor(0.5, requires_grad=True)
    x = torch.tensor([[1.0], [-2.0], [3.0], [0.0]])
    logits, norms = toy.input_grad_norms(_quadratic_d(w), x, create_graph=True)
    torch.testing.assert_close(logits.detach(), torch.tensor([0.5, 2.0, 4.5, 0.0]))
    torch.testing.assert_close(norms.detach(), torch.tensor([1.0, 2.0, 3.0, 0.0]))
    (dw,) = torch.autograd.grad(norms.sum(), w)  # d/dw sum 2|w||x| = 2 * sum|x| (w > 0)
    assert dw.item() == pytest.approx(12.0)


def test_dig_penalty_value_gradient_and_smoothing() -> None:
    w = torch.tensor(0.5, requires_grad=True)
    d = _quadratic_d(w)
    x_real = torch.tensor([[1.0], [2.0]])
    x_fake = torch.tensor([[3.0], [-1.0]])
    _, g_r = toy.input_grad_norms(d, x_real, create_graph=True)
    _, g_f = toy.input_grad_norms(d, x_fake, create_graph=True)

    # step 1, no history: mean((2w(|xr| - |xf|))^2) = 4 w^2 * mean([4, 1]) = 2.5 ; d/dw = 8 w * 2.5 = 10
    pen1, prev = toy.dig_penalty(g_r, g_f, alpha=0.3)
    assert pen1.item() == pytest.approx(2.5)
    (dw,) = torch.autograd.grad(pen1, w, retain_graph=True)
    assert dw.item() == pytest.approx(10.0)
    assert not prev[0].requires_grad and not prev[1].requires_grad
    torch.testing.assert_close(prev[0], torch.tensor([1.0, 2.0]))
    torch.testing.assert_close(prev[1], torch.tensor([3.0, 1.0]))

    # step 2: g(t) = a * now + (1 - a) * prev, elementwise; only `now` carries the gradient
    a = 0.3
    x_real2 = torch.tensor([[4.0], [0.5]])
    x_fake2 = torch.tensor([[1.0], [2.0]])
    _, g_r2 = toy.input_grad_norms(d, x_real2, create_graph=True)
    _, g_f2 = toy.input_grad_norms(d, x_fake2, create_graph=True)
    pen2, prev2 = toy.dig_penalty(g_r2, g_f2, alpha=a, prev=prev)
    sr = [a * 4.0 + (1 - a) * 1.0, a * 0.5 + (1 - a) * 2.0]  # [1.9, 1.55]
    sf = [a * 1.0 + (1 - a) * 3.0, a * 2.0 + (1 - a) * 1.0]  # [2.4, 1.3]
    diffs = [r - f for r, f in zip(sr, sf)]  # [-0.5, 0.25]
    assert pen2.item() == pytest.approx(sum(v * v for v in diffs) / 2)  # 0.15625
    torch.testing.assert_close(prev2[0], torch.tensor(sr))
    torch.testing.assert_close(prev2[1], torch.tensor(sf))
    # d/dw: mean(2 * diff * a * 2 * (|xr2| - |xf2|)) with sign(w) = +1
    raw = [4.0 - 1.0, 0.5 - 2.0]
    expect = sum(2 * dv * a * 2 * r for dv, r in zip(diffs, raw)) / 2  # (-1.8 - 0.45) / 2
    (dw2,) = torch.autograd.grad(pen2, w, retain_graph=True)
    assert dw2.item() == pytest.approx(expect)

    # alpha = 1: no smoothing (history ignored); alpha = 0: frozen at history, no gradient to D
    pen_a1, _ = toy.dig_penalty(g_r2, g_f2, alpha=1.0, prev=prev)
    assert pen_a1.item() == pytest.approx(((2 * 0.5 * 3.0) ** 2 + (2 * 0.5 * 1.5) ** 2) / 2)
    pen_a0, _ = toy.dig_penalty(g_r2, g_f2, alpha=0.0, prev=prev)
    assert pen_a0.item() == pytest.approx(((1.0 - 3.0) ** 2 + (2.0 - 1.0) ** 2) / 2)
    (dw0,) = torch.autograd.grad(pen_a0, w, allow_unused=True, materialize_grads=True)
    assert dw0.item() == 0.0


def test_dig_penalty_is_per_model_over_a_batch_axis() -> None:
    g_r = torch.tensor([[1.0, 2.0], [0.0, 0.0]])
    g_f = torch.tensor([[3.0, 1.0], [1.0, 1.0]])
    pen, _ = toy.dig_penalty(g_r, g_f, alpha=0.5)
    torch.testing.assert_close(pen, torch.tensor([2.5, 1.0]))
