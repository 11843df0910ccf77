"""gan_core.toy: the paper's toy as written (nets, Adam, Experiments 1-4, determinism), the legacy
variant, the CLI, and the DigGAN penalty against hand computations."""

from __future__ import annotations

import argparse
import dataclasses
import json
import math
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from gan_core.toy import analysis, legacy, stats
from gan_core.toy.cli import add_cli
from gan_core.toy.experiments import load_stage, run_paper
from gan_core.toy.nets import BatchedMLP, make_adam
from gan_core.toy.penalty import dig_penalty, input_grad_norms, pairwise_dig
from gan_core.toy.settings import PAPER_SETTINGS
from gan_core.toy.train import pairing_coins, train

# Real training, few iterations: enough to exercise every stage, not to reproduce the paper.
TINY = dataclasses.replace(PAPER_SETTINGS, iterations=60, d_opt_steps=20, settle_window=20, spike_window=10)


def _check_png(path: Path) -> None:
    assert path.is_file() and path.stat().st_size > 1000
    with Image.open(path) as im:
        assert im.format == "PNG" and im.size[0] > 300 and im.size[1] > 150


# ----------------------------------------------------------------- the paper's nets and optimizer


def test_paper_nets_have_the_stated_shapes_and_activations() -> None:
    st = PAPER_SETTINGS
    G = BatchedMLP.init(st.g_sizes, st.g_act, [0, 1, 2], tag=1)
    D = BatchedMLP.init(st.d_sizes, st.d_act, [0, 1, 2], tag=2)
    # 4 fully connected layers each; G 5 units per hidden layer, D 10; one input, one output
    assert G.n_layers == 4 and D.n_layers == 4
    assert [tuple(p.shape) for p in G.params] == [(3, 1, 5), (3, 1, 5), (3, 5, 5), (3, 1, 5), (3, 5, 5), (3, 1, 5),
                                                  (3, 5, 1), (3, 1, 1)]
    assert [tuple(p.shape) for p in D.params][::2] == [(3, 1, 10), (3, 10, 10), (3, 10, 10), (3, 10, 1)]
    assert D.act_name == "sigmoid" and G.act_name == "tanh"
    # D's forward is sigmoid hidden layers and a linear logit, model by model
    x = torch.tensor([[[0.0], [4.0], [-1.5]]] * 3)
    got = D(x)
    for i in range(3):
        h = x[i]
        W = [p[i] for p in D.params]
        for k in range(3):
            h = torch.sigmoid(h @ W[2 * k] + W[2 * k + 1])
        torch.testing.assert_close(got[i], h @ W[6] + W[7])
    # G produces two points from the two fixed latent inputs
    assert st.latents == (-1.0, 1.0) and G(torch.tensor(st.latents).view(1, 2, 1).expand(3, -1, -1)).shape == (3, 2, 1)


def test_paper_init_is_pytorch_linear_default_and_per_seed() -> None:
    a = BatchedMLP.init((1, 10, 10, 10, 1), "sigmoid", [7, 8], tag=2)
    b = BatchedMLP.init((1, 10, 10, 10, 1), "sigmoid", [8], tag=2)
    assert torch.equal(a.params[2][1], b.params[2][0])  # a seed's weights do not depend on its neighbours
    assert a.params[2].abs().max() <= 1 / math.sqrt(10)  # U(-1/sqrt(fan_in), 1/sqrt(fan_in))
    assert not torch.equal(a.params[0][0], a.params[0][1])


def test_training_uses_adam_with_the_sources_defaults() -> None:
    st = PAPER_SETTINGS
    assert (st.lr, st.betas, st.eps) == (1e-3, (0.9, 0.999), 1e-8)  # Kingma & Ba 2015, Algorithm 1
    D = BatchedMLP.init(st.d_sizes, st.d_act, [0], tag=2)
    opt = make_adam(D, st.lr, st.betas, st.eps)
    assert isinstance(opt, torch.optim.Adam)
    assert opt.defaults["lr"] == 1e-3 and opt.defaults["betas"] == (0.9, 0.999)
    # One real D step: Adam's first update is lr * g / (|g| + eps), i.e. ~lr * sign(g) for every
    # parameter with a gradient (SGD would move by lr * g instead).
    G = BatchedMLP.init(st.g_sizes, st.g_act, [0], tag=1)
    before = D.weights()
    D_ref = D.select([0])
    z = torch.tensor(st.latents).view(1, 2, 1)
    reals = torch.tensor(st.real_points).view(1, 2, 1)
    with torch.no_grad():
        fakes = G(z)
    coins = torch.zeros(1, 1, dtype=torch.bool)
    train(G, D, st, lam=0.0, iterations=1, coins=coins, train_g=False)
    loss = (torch.nn.functional.softplus(-D_ref(reals)).mean() + torch.nn.functional.softplus(D_ref(fakes)).mean())
    grads = torch.autograd.grad(loss, list(D_ref.params))
    for p0, p1, g in zip(before, D.weights(), grads):
        torch.testing.assert_close(p1 - p0, -st.lr * g / (g.abs() + st.eps), rtol=1e-4, atol=1e-9)


def test_lambda_zero_is_vanilla_and_models_do_not_interact() -> None:
    st = dataclasses.replace(PAPER_SETTINGS, iterations=25)
    coins = pairing_coins([3, 5], stream=1, iterations=25)
    G, D = BatchedMLP.init(st.g_sizes, st.g_act, [3], 1), BatchedMLP.init(st.d_sizes, st.d_act, [3], 2)
    h_alone = train(G, D, st, lam=0.0, iterations=25, coins=coins[:1])
    G0, D0 = BatchedMLP.init(st.g_sizes, st.g_act, [3, 5], 1), BatchedMLP.init(st.d_sizes, st.d_act, [3, 5], 2)
    Gb, Db = BatchedMLP.cat([G0, G0]), BatchedMLP.cat([D0, D0])
    h = train(Gb, Db, st, lam=[0.0, 0.0, st.lam, st.lam], iterations=25, coins=coins.repeat(2, 1))
    np.testing.assert_allclose(h.x[0], h_alone.x[0], rtol=1e-5, atol=1e-6)  # seed 3 vanilla, alone or batched
    assert np.abs(h.x[2] - h.x[0]).max() > 1e-4  # DigGAN departs from vanilla from the same start
    assert h.dig.shape == (4, 25) and (h.dig >= 0).all()


def test_pairing_coins_are_per_seed_and_fair_looking() -> None:
    c = pairing_coins([0, 1], stream=11, iterations=2000)
    assert torch.equal(c[1], pairing_coins([1], stream=11, iterations=2000)[0])
    assert 0.45 < c.float().mean().item() < 0.55


# ----------------------------------------------------------------- Experiments 1-4 end to end


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict]:
    out = tmp_path_factory.mktemp("toy")
    return out, run_paper(seeds=[0, 1, 2], out_dir=out, settings=TINY, progress=False)


def test_run_paper_writes_summary_tests_and_figures(tiny_run: tuple[Path, dict]) -> None:
    out, summary = tiny_run
    assert json.loads((out / "summary.json").read_text()) == json.loads(json.dumps(summary))
    assert summary["variant"] == "paper" and summary["seeds"] == [0, 1, 2]
    assert summary["settings"]["iterations"] == 60 and summary["settings"]["d_sizes"] == [1, 10, 10, 10, 1]
    for key in ("experiment1_vanilla", "experiment3_diggan", "experiment4"):
        assert [r["seed"] for r in summary[key]] == [0, 1, 2]
    assert set(summary["experiment2"]) == {"0", "0.1", "1", "5", "10"}
    for r in summary["experiment1_vanilla"]:
        assert r["outcome"] in ("both", "mode@0", "mode@4", "neither") and len(r["final_x"]) == 2
    t = summary["tests"]
    cov = t["exp3_vs_exp1_coverage"]
    assert cov["n_pairs"] == 3 and cov["only_diggan"] + cov["only_vanilla"] + cov["both"] + cov["neither"] == 3
    assert 0.0 <= cov["p_value"] <= 1.0
    assert t["exp3_vs_exp1_dig"]["n_pairs"] == 3
    assert {"exp1_single_mode", "exp1_dig_spike", "exp2", "exp4_start", "exp4_trapped", "mechanism"} <= set(t)
    for name in ("exp1_exp3", "exp2", "exp4", "seeds"):
        _check_png(Path(summary["figures"][name]))


def test_experiment4_starts_from_the_saved_experiment2_state(tiny_run: tuple[Path, dict]) -> None:
    out, summary = tiny_run
    s2, s4d, s4 = load_stage(out, "exp2"), load_stage(out, "exp4_d"), load_stage(out, "exp4")
    S = 3
    vi = [float(v) for v in s2["variances"]].index(TINY.exp4_variance)
    # G2 is Exp. 2's final G at s = 5, unchanged by the D-only phase ...
    for g2, g_exp2 in zip(s4d["G"], s2["G"]):
        assert torch.equal(g2, g_exp2[vi * S:(vi + 1) * S])
    # ... D-only training started from Exp. 2's final D and moved only D (G frozen)
    torch.testing.assert_close(s4d["x"][:, 0], s2["x"][vi * S:(vi + 1) * S, -1])
    torch.testing.assert_close(s4d["x"][:, -1], s4d["x"][:, 0])
    # ... and both Exp. 4 runs (DigGAN, vanilla) start from that G2 and the optimised D2
    torch.testing.assert_close(s4["x"][:S, 0], s2["x"][vi * S:(vi + 1) * S, -1])
    torch.testing.assert_close(s4["x"][S:, 0], s2["x"][vi * S:(vi + 1) * S, -1])
    assert [r["start_x"] for r in summary["experiment4"]] == [
        [round(float(v), 4) for v in row] for row in s2["x"][vi * S:(vi + 1) * S, -1]]

    # It reads the state from disk: change the saved Exp. 2 G, drop the later stages, rerun.
    edited = dict(s2)
    edited["G"] = [g.clone() for g in s2["G"]]
    edited["G"][-1][vi * S:(vi + 1) * S] += 1.0  # the last bias: every generated point moves by +1
    torch.save(edited, out / "states" / "exp2.pt")
    for name in ("exp4_d", "exp4"):
        (out / "states" / f"{name}.pt").unlink()
    again = run_paper(seeds=[0, 1, 2], out_dir=out, settings=TINY, progress=False, figures=False)
    moved = np.array([r["start_x"] for r in again["experiment4"]]) - np.array([r["start_x"] for r in summary["experiment4"]])
    np.testing.assert_allclose(moved, 1.0, atol=1e-3)
    torch.save(s2, out / "states" / "exp2.pt")  # leave the fixture as it was


def test_results_are_deterministic_for_a_seed(tmp_path: Path, tiny_run: tuple[Path, dict]) -> None:
    _, first = tiny_run
    second = run_paper(seeds=[0, 1, 2], out_dir=tmp_path, settings=TINY, progress=False, figures=False)
    for key in ("experiment1_vanilla", "experiment3_diggan", "experiment2", "experiment4", "tests"):
        assert second[key] == first[key], key


def test_a_stage_is_reused_only_when_its_settings_match(tmp_path: Path) -> None:
    st = dataclasses.replace(TINY, iterations=10, d_opt_steps=5)
    run_paper(seeds=[4], out_dir=tmp_path, settings=st, progress=False, figures=False)
    mtime = (tmp_path / "states" / "exp13.pt").stat().st_mtime_ns
    run_paper(seeds=[4], out_dir=tmp_path, settings=st, progress=False, figures=False)
    assert (tmp_path / "states" / "exp13.pt").stat().st_mtime_ns == mtime  # resumed, not recomputed
    run_paper(seeds=[4], out_dir=tmp_path, settings=dataclasses.replace(st, lam=10.0), progress=False, figures=False)
    assert load_stage(tmp_path, "exp13")["key"]["settings"]["lam"] == 10.0


# ----------------------------------------------------------------- reading rules and tests


def test_outcome_collapse_settled_and_onset() -> None:
    st = PAPER_SETTINGS
    assert analysis.outcome(np.array([0.1, 3.8]), st) == "both"
    assert analysis.outcome(np.array([4.2, 3.9]), st) == "mode@4"
    assert analysis.outcome(np.array([0.2, -0.3]), st) == "mode@0"
    assert analysis.outcome(np.array([0.2, 2.0]), st) == "neither"
    xs = np.zeros((3001, 2), np.float32)
    xs[:, 1] = 4.0
    xs[1200:] = 0.0  # covers both, then both points at 0 from iteration 1200 on
    assert analysis.collapse_iter(xs, st) == 1200
    assert analysis.settled(xs, st)
    xs[-10:, 0] = 0.3  # moved more than 0.1 in the last 1000 iterations
    assert not analysis.settled(xs, st)
    assert analysis.collapse_iter(np.tile([0.0, 4.0], (50, 1)), st) is None
    ys = np.zeros((100, 2))
    ys[40:, 0] = 0.5
    assert analysis.perturbation_onset(ys, st) == 40
    dig = np.ones(3000)
    dig[1100] = 50.0
    spike = analysis.dig_spike(dig, 1200, dataclasses.replace(st, spike_window=500))
    assert spike["peak_pre"] == 50.0 and spike["peak_prev"] == 1.0
    assert analysis.dig_spike(dig, 900, st) is None  # fewer than two windows before the collapse


def test_paired_tests_against_hand_values() -> None:
    res = stats.mcnemar_exact([True] * 8 + [False] * 2, [False] * 8 + [False] * 2, "d", "v")
    assert (res["only_d"], res["only_v"]) == (8, 0)
    assert res["p_value"] == pytest.approx(2 / 2**8)  # all 8 discordant pairs one way
    assert stats.mcnemar_exact([True, False], [True, False])["p_value"] == 1.0
    w = stats.wilcoxon_paired([1.0, 2.0, 3.0, 4.0, 5.0, 6.0], [0.0] * 6)
    assert w["p_value"] == pytest.approx(2 / 2**6)  # exact: every difference positive
    ci = stats.proportion(0, 6)["ci95"]
    assert ci[0] == 0.0 and ci[1] == pytest.approx(1 - 0.025 ** (1 / 6))


# ----------------------------------------------------------------- CLI (both variants, real runs)


def test_cli_runs_the_paper_variant(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    parser = argparse.ArgumentParser()
    add_cli(parser.add_subparsers(dest="command"))
    assert parser.parse_args(["toy"]).variant == "paper" and parser.parse_args(["toy"]).seeds == 20
    args = parser.parse_args(["toy", "--seeds", "1", "--out", str(tmp_path), "--iterations", "20", "--no-progress",
                              "--set", "d_opt_steps=15", "--set", "latents=[-2, 2]"])
    assert args.func(args) == 0
    printed = json.loads(capsys.readouterr().out)
    summary = json.loads((tmp_path / "summary.json").read_text())
    assert printed["tests"] == summary["tests"] and summary["settings"]["iterations"] == 20
    assert summary["settings"]["d_opt_steps"] == 15 and summary["settings"]["latents"] == [-2.0, 2.0]
    assert summary["settings"]["lam"] == PAPER_SETTINGS.lam  # only what was asked changed
    with pytest.raises(ValueError, match="KEY=VALUE"):
        bad = parser.parse_args(["toy", "--set", "lambda=3"])
        bad.func(bad)
    with pytest.raises(ValueError, match="legacy"):
        args.perturb = True
        args.func(args)


def test_cli_keeps_the_legacy_variant(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    parser = argparse.ArgumentParser()
    add_cli(parser.add_subparsers(dest="command"))
    args = parser.parse_args(["toy", "--variant", "legacy", "--seeds", "2", "--out", str(tmp_path),
                              "--iterations", "20", "--no-progress"])
    assert args.func(args) == 0
    summary = json.loads(capsys.readouterr().out)
    assert summary["settings"]["optimizer"].startswith("SGD") and summary["vanilla"]["seeds"] == 2
    _check_png(tmp_path / "toy.png")


def test_legacy_same_seed_same_start_and_models_do_not_interact() -> None:
    st = dataclasses.replace(legacy.DEFAULT_SETTINGS, log_every=5, n_eval=200, iterations=15)
    a, b = legacy._init_state([3], st), legacy._init_state([3], st)
    assert all(torch.equal(x, y) for x, y in zip(a.G + a.D, b.G + b.D))
    alone = legacy._init_state([3], st)
    legacy._train(alone, st, lam=0.0, iterations=15, noise_keys=[legacy._noise_key(3, 0)])
    init = legacy._init_state([3, 5], st)
    mixed = legacy._State.cat([init, init.select([0, 1])])
    keys = [legacy._noise_key(s, 0) for s in (3, 5)] * 2
    legacy._train(mixed, st, lam=torch.tensor([0.0, 0.0, 1.0, 1.0]), iterations=15, noise_keys=keys)
    for x, y in zip(alone.G + alone.D, mixed.G + mixed.D):
        torch.testing.assert_close(x[0], y[0], rtol=1e-4, atol=1e-5)
    assert not torch.allclose(mixed.D[0][0], mixed.D[0][2])


# ----------------------------------------------------------------- the penalty, by hand
# Tiny D(x) = w * x^2 on 1-D inputs: d D / d x = 2 w x, so ||grad|| = 2 |w| |x|.


def _quadratic_d(w: torch.Tensor):
    return lambda x: w * x.squeeze(-1) ** 2


def test_input_grad_norms_closed_form() -> None:
    w = torch.tensor(0.5, requires_grad=True)
    x = torch.tensor([[1.0], [-2.0], [3.0], [0.0]])
    logits, norms = input_grad_norms(_quadratic_d(w), x, create_graph=True)
    torch.testing.assert_close(logits.detach(), torch.tensor([0.5, 2.0, 4.5, 0.0]))
    torch.testing.assert_close(norms.detach(), torch.tensor([1.0, 2.0, 3.0, 0.0]))
    (dw,) = torch.autograd.grad(norms.sum(), w)  # d/dw sum 2|w||x| = 2 * sum|x| (w > 0)
    assert dw.item() == pytest.approx(12.0)


def test_dig_penalty_value_gradient_and_smoothing() -> None:
    w = torch.tensor(0.5, requires_grad=True)
    d = _quadratic_d(w)
    _, g_r = input_grad_norms(d, torch.tensor([[1.0], [2.0]]), create_graph=True)
    _, g_f = input_grad_norms(d, torch.tensor([[3.0], [-1.0]]), create_graph=True)
    # step 1, no history: mean((2w(|xr| - |xf|))^2) = 4 w^2 * mean([4, 1]) = 2.5 ; d/dw = 8 w * 2.5 = 10
    pen1, prev = dig_penalty(g_r, g_f, alpha=0.3)
    assert pen1.item() == pytest.approx(2.5)
    (dw,) = torch.autograd.grad(pen1, w, retain_graph=True)
    assert dw.item() == pytest.approx(10.0)
    assert not prev[0].requires_grad and not prev[1].requires_grad
    # step 2: g(t) = a * now + (1 - a) * prev, elementwise; only `now` carries the gradient
    a = 0.3
    _, g_r2 = input_grad_norms(d, torch.tensor([[4.0], [0.5]]), create_graph=True)
    _, g_f2 = input_grad_norms(d, torch.tensor([[1.0], [2.0]]), create_graph=True)
    pen2, prev2 = dig_penalty(g_r2, g_f2, alpha=a, prev=prev)
    sr = [a * 4.0 + (1 - a) * 1.0, a * 0.5 + (1 - a) * 2.0]
    sf = [a * 1.0 + (1 - a) * 3.0, a * 2.0 + (1 - a) * 1.0]
    diffs = [r - f for r, f in zip(sr, sf)]
    assert pen2.item() == pytest.approx(sum(v * v for v in diffs) / 2)
    torch.testing.assert_close(prev2[0], torch.tensor(sr))
    raw = [4.0 - 1.0, 0.5 - 2.0]
    expect = sum(2 * dv * a * 2 * r for dv, r in zip(diffs, raw)) / 2
    (dw2,) = torch.autograd.grad(pen2, w, retain_graph=True)
    assert dw2.item() == pytest.approx(expect)
    pen_a0, _ = dig_penalty(g_r2, g_f2, alpha=0.0, prev=prev)
    (dw0,) = torch.autograd.grad(pen_a0, w, allow_unused=True, materialize_grads=True)
    assert dw0.item() == 0.0


def test_pairwise_dig_is_the_mean_over_every_pairing() -> None:
    g_r, g_f = torch.tensor([[1.0, 2.0]]), torch.tensor([[0.0, 4.0]])
    # pairs: (1,0) (1,4) (2,0) (2,4) -> 1, 9, 4, 4 -> mean 4.5; the two random pairings give 6.5 and 2.5
    torch.testing.assert_close(pairwise_dig(g_r, g_f), torch.tensor([4.5]))
    p_same, _ = dig_penalty(g_r, g_f, 1.0)
    p_swap, _ = dig_penalty(g_r, g_f.flip(-1), 1.0)
    torch.testing.assert_close((p_same + p_swap) / 2, torch.tensor([4.5]))
