"""The LEGACY toy variant (`python -m gan_core toy --variant legacy`): a latent-sampling, SGD variant of
the DigGAN paper's toy. The paper's version as written is `gan_core.toy.experiments` (`--variant paper`,
the default); this one is kept unchanged for comparison with the numbers measured before.

Two real 1-D points, vanilla GAN vs DigGAN from the same start, over many seeds. Reproduces the small-scale case study of the DigGAN paper (section 3.3, "Intuition for DigGAN regularizer
and attractors", Fig. 3-5; docs/diggan.md calls it "Toy"). The paper's learning rate, momentum, lambda,
alpha, batch size and iteration count were lost in extraction; every value below is a choice of ours.

Setup (what the paper fixes)
    data   two real points, 0 and 4. Each iteration D sees batch_size/2 copies of each, shuffled.
    G      4 Linear layers 1-5-5-5-1, tanh hidden (the activation word was lost; tanh is what the
           authors' earlier two-cluster toy, github.com/AilsaF/RS-GAN GAN2_2Cluster.py, uses).
    D      4 Linear layers 1-10-10-10-1 and a sigmoid output, kept as a logit inside BCE-with-logits.
    opt    SGD with momentum for both nets (torch.optim.SGD semantics), one D and one G step per iteration.
    loss   non-saturating GAN (paper Eq. 1, l(t) = log(1 + e^t)). DigGAN adds to D's loss
           lambda * mean((g_real(t) - g_fake(t))^2), where g is the per-sample L2 norm of d logit / d x
           (create_graph=True), reals paired with fakes at random (the real batch is shuffled every
           iteration), smoothed elementwise over the batch vector: g(t) = alpha * g_now + (1 - alpha) *
           g(t-1).detach(), g(0) = g_now (as in the authors' BigGAN code). G's loss is unchanged.
    start  vanilla and DigGAN of a seed start from the same G and D weights (PyTorch's default Linear
           init from a per-seed generator) and draw the same noise sequence (latents and pairings).

Settings chosen here (ToySettings; all saved under "settings" in summary.json)
    latent        z ~ U(-5, 5), 1-D (the authors' earlier toy uses the same). A narrow latent (N(0, 1),
                  U(-1, 1)) leaves the tanh G nearly affine over it, so it hardly ever splits into two modes,
                  with or without DigGAN (see the sweep).
    D hidden act  tanh. Sigmoid hidden layers (one reading of the paper's "sigmoid activation") learn so
                  slowly at lr 1e-2 that nothing happens in a few thousand iterations, and at lr 5e-2 both
                  GANs fail (sweep). The output sigmoid is there either way.
    lr, momentum  1e-2 for both nets, momentum 0.5. With the authors' earlier-toy momentum 0.9 at lr 1e-2
                  vanilla runs mostly end oscillating away from both points ("neither") instead of in the
                  single-mode attractor the paper studies; momentum 0.5 gives that attractor (sweep).
    batch         64 fakes against 32 + 32 reals.
    iterations    4000 (the paper's vanilla run collapses "around iteration 3000").
    lambda, alpha 1.0 and 0.5 (0.5 is the authors' code's smoothing weight). lambda 10 erases the benefit.
    coverage      a run "covers both modes" when, at the end, >= 20% of 1000 generated samples (fixed
                  per-seed evaluation latents) lie within 0.5 of each real point. Outcomes: "both",
                  "mode@p" (only p reaches 20%), "neither".
    DIG logged    the raw (unsmoothed) DIG of paper Eq. 2 at every D step, for both runs.

Experiments 2 and 4 (perturb=True), started from every vanilla run that ended in a single mode
    Exp. 2   add N(0, s) noise to every D parameter, s in {0.1, 1, 5, 10} read as a variance as in the paper
             (std sqrt(s)), reset momentum, continue vanilla for `iterations`; s = 0 is the control. Result per
             seed: escaped_both_modes / same_mode / other_mode / neither.
    Exp. 4   as in the paper, first train D alone (G frozen, DigGAN objective, 500 steps), then DigGAN for
             `iterations`; control: vanilla from the same warmed-up state and noise. Recorded: whether and
             when (first logged iteration covering both) it escapes. The paper starts Exp. 4 from Exp. 2's
             s = 5 end state; we start from Exp. 1's stuck state.

What we measured (CPU, torch 2.13; a rerun with the same code and seeds gives identical numbers)
    Default, seeds 0-9: vanilla covers both modes in 4/10 (6 end in the mode at 4), DigGAN in 7/10
    (2 at 4, 1 neither); paired by seed, DigGAN-only 3, vanilla-only 0. Median final DIG 0.24 vanilla vs
    0.012 DigGAN. The smoothed DIG peak falls within 500 iterations before the collapse in 5 of the 6
    collapsed vanilla runs. Exp. 2: 0 of 6 stuck runs escape at any noise level (all return to the same
    mode, or with s >= 1 sometimes end "neither"). Exp. 4: DigGAN escapes in 1/6 (seed 2, iteration 1010),
    the vanilla control in 0/6; the other five DigGAN runs stay in one mode with DIG driven to ~1e-4, i.e.
    here the single-mode state is compatible with a small DIG. Continuing 12000 iterations instead of 4000
    changes nothing (still 1/6); lambda 10 also escapes 1/6 (another seed), lambda 100 0/6 (4 end "neither").
    Fresh seeds 100-149: vanilla 17/50, DigGAN 27/50 (DigGAN-only 16, vanilla-only 6, exact McNemar
    p = 0.052); DIG peak before collapse in 14/32 vanilla collapses (and 10/23 DigGAN ones), so the
    "spike just before" is not a reliable signature here; DigGAN's lower DIG (0.006 vs 0.20) is.
    Sensitivity, seeds 1000-1019, both-mode counts of 20 (vanilla -> DigGAN), one change at a time:
        default 6 -> 13 | lambda 0.1: 6 -> 10 | lambda 10: 6 -> 6 | alpha 1: 6 -> 14 | alpha 0.1: 6 -> 10
        momentum 0.9: 4 -> 14 | momentum 0.9, lr 2e-3: 10 -> 14 | 8000 iterations: 6 -> 14
        D leaky-ReLU: 14 -> 19 | 3 Linear layers per net: 15 -> 20 | D sigmoid hidden, lr 5e-2: 0 -> 0
        z ~ N(0, 1): 3 -> 1 | z ~ U(-1, 1): 0 -> 1
    So: with a wide latent DigGAN covers both modes more often than vanilla in every variant tried, but far
    from always, and vanilla often covers both too; with a narrow latent neither does, and DigGAN does not
    help. Momentum 0.5 and lambda 1 were picked from exploratory runs on seeds 0-15 with an earlier version
    of this code; the sweep and the 50 fresh seeds were run after the settings were fixed.

Cost: all seeds and both runs train as one batch of independent nets (batched matmuls, per-model losses
summed; SGD is elementwise so models never interact). The default (10 seeds, 4000 iterations) takes ~23 s
of CPU on one thread (training runs under torch.set_num_threads(1), restored after): 46 s wall on a 2-core
box shared with other jobs (load ~7). --perturb brings it to ~65 s CPU (117 s wall on that box).

API
    run_toy(seeds=10, out_dir=Path("runs/toy"), iterations=None, perturb=False, progress=True, *, settings=None)
        -> summary dict, also written to out_dir/summary.json; figures out_dir/toy.png (paper Fig. 3
        analogue: one seed's final samples and D, generated-data movement with red lines at the real points,
        DIG over iterations, for vanilla and DigGAN, plus an all-seeds row) and, with perturb,
        out_dir/toy_perturb.png.
    The CLI (gan_core/toy/cli.py): `toy --variant legacy --seeds N --out DIR [--iterations N] [--perturb]
    [--no-progress]` prints the summary JSON.
    input_grad_norms(d_fn, x, create_graph) and dig_penalty(g_real, g_fake, alpha, prev) are the penalty's
    two halves, exposed for tests.
"""

from __future__ import annotations

import dataclasses
import json
import math
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from ..threads import one_thread
from .penalty import dig_penalty, input_grad_norms

__all__ = [
    "DEFAULT_SETTINGS",
    "ToySettings",
    "dig_penalty",
    "input_grad_norms",
    "run_toy",
]

Params = list[torch.Tensor]  # [W0, b0, W1, b1, ...], every tensor with a leading seed axis


@dataclass(frozen=True)
class ToySettings:
    """Every knob of the toy experiment. Saved verbatim under "settings" in summary.json."""

    real_points: tuple[float, float] = (0.0, 4.0)
    latent: str = "uniform"  # "uniform": z ~ U(-latent_scale, latent_scale); "normal": z ~ N(0, latent_scale^2)
    latent_scale: float = 5.0
    g_layers: int = 4  # Linear layers in G (so g_layers - 1 hidden layers)
    g_hidden: int = 5
    g_act: str = "tanh"
    d_layers: int = 4
    d_hidden: int = 10
    d_act: str = "tanh"
    lr_g: float = 1e-2
    lr_d: float = 1e-2
    momentum: float = 0.5
    batch_size: int = 64  # fakes per step; the real batch holds batch_size/2 copies of each point
    iterations: int = 4000  # one iteration = d_steps D updates + one G update
    d_steps: int = 1
    lam: float = 1.0  # DigGAN lambda
    alpha: float = 0.5  # DigGAN moving-average factor (1 = no smoothing)
    log_every: int = 10
    n_eval: int = 1000  # generated samples used to judge mode coverage
    tol: float = 0.5  # a sample "hits" a real point when |x - point| < tol
    min_frac: float = 0.2  # "covers both modes": >= min_frac of the samples hit each point
    # experiments 2 and 4
    perturb_variances: tuple[float, ...] = (0.1, 1.0, 5.0, 10.0)
    exp4_d_warmup: int = 500  # D-only steps (G frozen, DigGAN objective) before experiment 4
    noise_block: int = 250  # iterations of noise drawn per seed at a time (fixed: keeps streams reproducible)


DEFAULT_SETTINGS = ToySettings()


# --------------------------------------------------------------------------- nets


def _act(name: str) -> Callable[[torch.Tensor], torch.Tensor]:
    return {
        "tanh": torch.tanh,
        "sigmoid": torch.sigmoid,
        "relu": torch.relu,
        "lrelu": lambda h: F.leaky_relu(h, 0.2),
    }[name]


def _layer_sizes(n_layers: int, hidden: int) -> list[int]:
    return [1] + [hidden] * (n_layers - 1) + [1]


def _init_mlp(sizes: Sequence[int], seeds: Sequence[int], tag: int) -> Params:
    """PyTorch's default nn.Linear init (U(-1/sqrt(fan_in), 1/sqrt(fan_in)) for W and b), one net per seed.

    Each seed has its own generator, so a seed's weights do not depend on which other seeds
    are trained alongside it, nor on whether it is the vanilla or the DigGAN run.
    """
    per_seed: list[list[torch.Tensor]] = []
    for s in seeds:
        gen = torch.Generator().manual_seed(int(s) * 1_000_003 + tag)
        layers = []
        for fan_in, fan_out in zip(sizes[:-1], sizes[1:]):
            k = 1.0 / math.sqrt(fan_in)
            layers.append((torch.rand(fan_in, fan_out, generator=gen) * 2 - 1) * k)
            layers.append((torch.rand(1, fan_out, generator=gen) * 2 - 1) * k)
        per_seed.append(layers)
    return [torch.stack([p[i] for p in per_seed]) for i in range(len(per_seed[0]))]


def _mlp(params: Params, x: torch.Tensor, act: Callable[[torch.Tensor], torch.Tensor]) -> torch.Tensor:
    """x [S, N, 1] -> [S, N, 1]; one independent net per leading index (batched matmuls)."""
    h = x
    n = len(params) // 2
    for i in range(n):
        h = torch.baddbmm(params[2 * i + 1], h, params[2 * i])
        if i < n - 1:
            h = act(h)
    return h


# --------------------------------------------------------------------------- training


@dataclass
class _State:
    """A batch of independent (G, D) pairs: one per leading index of every tensor."""

    seeds: list[int]  # the seed each model was initialised from (eval latents are drawn from it)
    G: Params
    D: Params
    mG: Params  # SGD momentum buffers
    mD: Params

    def select(self, idx: Sequence[int]) -> _State:
        ix = torch.as_tensor(list(idx), dtype=torch.long)
        return _State(
            [self.seeds[i] for i in idx],
            *[[p[ix].clone() for p in group] for group in (self.G, self.D, self.mG, self.mD)],
        )

    def reset_momentum(self) -> None:
        for b in self.mG + self.mD:
            b.zero_()

    @staticmethod
    def cat(states: Sequence[_State]) -> _State:
        groups = [
            [torch.cat([getattr(s, name)[i] for s in states]) for i in range(len(getattr(states[0], name)))]
            for name in ("G", "D", "mG", "mD")
        ]
        return _State([x for s in states for x in s.seeds], *groups)


def _init_state(seeds: Sequence[int], st: ToySettings) -> _State:
    G = _init_mlp(_layer_sizes(st.g_layers, st.g_hidden), seeds, tag=1)
    D = _init_mlp(_layer_sizes(st.d_layers, st.d_hidden), seeds, tag=2)
    return _State(list(seeds), G, D, [torch.zeros_like(p) for p in G], [torch.zeros_like(p) for p in D])


def _sgd(params: Params, bufs: Params, grads: Sequence[torch.Tensor], lr: float, momentum: float) -> None:
    # torch.optim.SGD semantics (dampening 0, no nesterov): buf = m*buf + g; p -= lr*buf.
    # A zero buffer at the first step gives buf = g, the same as SGD's lazy init. Elementwise, so the
    # models stacked along the leading axis do not interact.
    with torch.no_grad():
        torch._foreach_mul_(bufs, momentum)
        torch._foreach_add_(bufs, list(grads))
        torch._foreach_add_(params, bufs, alpha=-lr)


def _sample_latent(st: ToySettings, shape: tuple[int, ...], gen: torch.Generator) -> torch.Tensor:
    if st.latent == "uniform":
        return (torch.rand(shape, generator=gen) * 2 - 1) * st.latent_scale
    if st.latent == "normal":
        return torch.randn(shape, generator=gen) * st.latent_scale
    raise ValueError(f"unknown latent {st.latent!r}")


def _latent_quantiles(st: ToySettings, n: int) -> torch.Tensor:
    """n evenly spaced quantiles of the latent law: fixed inputs whose outputs are drawn as traces."""
    q = (torch.arange(n, dtype=torch.float64) + 0.5) / n
    if st.latent == "uniform":
        z = (2 * q - 1) * st.latent_scale
    else:
        z = torch.special.ndtri(q) * st.latent_scale
    return z.float()


def _noise_key(seed: int, stream: int) -> int:
    return int(seed) * 7919 + 104_729 * int(stream) + 17


class _Noise:
    """Per-model random streams: latents for the D and G steps and the real/fake pairing permutation.

    One generator per model, keyed by (seed, stream) and drawn in fixed-size blocks, so a seed's stream is
    identical in its vanilla and DigGAN runs and does not depend on which other models share the batch.
    """

    def __init__(self, keys: Sequence[int], st: ToySettings):
        self.gens = [torch.Generator().manual_seed(k) for k in keys]
        self.st = st
        self.block = st.noise_block
        self.t0 = -1
        self.zd = self.zg = self.perm = torch.empty(0)

    def get(self, t: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        b0 = (t // self.block) * self.block
        if b0 != self.t0:
            B, n = self.st.batch_size, self.block
            zd, zg, perm = [], [], []
            for g in self.gens:
                zd.append(_sample_latent(self.st, (n, B), g))
                zg.append(_sample_latent(self.st, (n, B), g))
                perm.append(torch.argsort(torch.rand(n, B, generator=g), dim=1))
            self.zd, self.zg, self.perm = torch.stack(zd, 1), torch.stack(zg, 1), torch.stack(perm, 1)
            self.t0 = b0
        i = t - b0
        return self.zd[i].unsqueeze(-1), self.zg[i].unsqueeze(-1), self.perm[i]


def _eval_latents(seeds: Sequence[int], st: ToySettings) -> torch.Tensor:
    """The n_eval latent samples (fixed per seed) on which mode coverage is judged. [S, n_eval, 1]."""
    zs = [_sample_latent(st, (st.n_eval,), torch.Generator().manual_seed(int(s) * 31 + 999_983)) for s in seeds]
    return torch.stack(zs).unsqueeze(-1)


def _mode_fractions(x: torch.Tensor, st: ToySettings) -> torch.Tensor:
    """x [S, N] -> [S, 2]: fraction of samples within tol of each real point."""
    pts = torch.tensor(st.real_points, dtype=x.dtype)
    return ((x.unsqueeze(-1) - pts).abs() < st.tol).float().mean(dim=1)


def _real_batch(st: ToySettings, S: int) -> torch.Tensor:
    """[S, B]: the two real points, batch_size/2 copies each (the dataset is exactly these two points)."""
    B = st.batch_size
    reals = torch.tensor(st.real_points, dtype=torch.float32).repeat_interleave(B // 2)
    if reals.numel() < B:  # odd batch size: one extra copy of the first point
        reals = torch.cat([reals, reals[:1]])
    return reals.expand(S, B)


N_TRACES = 40  # G outputs on this many fixed latent quantiles are drawn as the blue "movement" curves
PCTS = (5.0, 25.0, 50.0, 75.0, 95.0)


def _train(
    state: _State,
    st: ToySettings,
    *,
    lam: torch.Tensor | float,
    iterations: int,
    noise_keys: Sequence[int],
    train_g: bool = True,
    on_step: Callable[[float], None] | None = None,
) -> dict[str, np.ndarray]:
    """Train every model in `state` in place for `iterations` iterations.

    lam: DigGAN lambda, a float or one value per model (0 = vanilla GAN). Non-saturating loss (paper Eq. 1):
    D minimises softplus(-D(x_r)) + softplus(D(G(z))) + lam * DIG penalty, G minimises softplus(-D(G(z))).
    train_g=False freezes G (experiment 4's "train D to optimality" warm-up). on_step(fraction done) is
    called every log_every iterations (progress bars).

    Returns the history: per-iteration raw DIG (paper Eq. 2, unsmoothed, logged for every model) and D loss,
    and every log_every iterations the mode fractions on the fixed eval latents, percentiles of G's output
    and G's outputs on N_TRACES fixed latent quantiles.
    """
    with one_thread():
        return _train_impl(state, st, lam=lam, iterations=iterations, noise_keys=noise_keys, train_g=train_g,
                           on_step=on_step)


def _train_impl(
    state: _State,
    st: ToySettings,
    *,
    lam: torch.Tensor | float,
    iterations: int,
    noise_keys: Sequence[int],
    train_g: bool,
    on_step: Callable[[float], None] | None,
) -> dict[str, np.ndarray]:
    S = len(state.seeds)
    B = st.batch_size
    lam_t = torch.as_tensor(lam, dtype=torch.float32).expand(S).clone()
    use_pen = bool((lam_t > 0).any())
    g_act, d_act = _act(st.g_act), _act(st.d_act)
    noise = _Noise(noise_keys, st)
    z_eval = _eval_latents(state.seeds, st)
    z_trace = _latent_quantiles(st, N_TRACES).view(1, -1, 1).expand(S, -1, -1).contiguous()
    reals = _real_batch(st, S)

    n_log = -(-iterations // st.log_every) + 1
    hist = {
        "dig": np.zeros((S, iterations), np.float32),
        "loss_d": np.zeros((S, iterations), np.float32),
        "log_iter": np.zeros(n_log, np.int64),
        "frac": np.zeros((S, n_log, 2), np.float32),
        "pct": np.zeros((S, n_log, len(PCTS)), np.float32),
        "trace": np.zeros((S, n_log, N_TRACES), np.float32),
    }
    pct_q = torch.tensor(PCTS) / 100.0
    prev: tuple[torch.Tensor, torch.Tensor] | None = None

    def log(k: int, t: int) -> None:
        with torch.no_grad():
            xe = _mlp(state.G, z_eval, g_act).squeeze(-1)
            hist["log_iter"][k] = t
            hist["frac"][:, k] = _mode_fractions(xe, st).numpy()
            hist["pct"][:, k] = torch.quantile(xe, pct_q, dim=1).T.numpy()
            hist["trace"][:, k] = _mlp(state.G, z_trace, g_act).squeeze(-1).numpy()

    def d_fn(x: torch.Tensor) -> torch.Tensor:
        return _mlp(state.D, x, d_act)

    for t in range(iterations):
        if t % st.log_every == 0:
            log(t // st.log_every, t)
        zd, zg, perm = noise.get(t)
        # ---- D step(s)
        for _ in range(st.d_steps):
            with torch.no_grad():
                x_f = _mlp(state.G, zd, g_act)
            # random real/fake pairing: the real batch is shuffled against the fake one every iteration
            x_r = torch.gather(reals, 1, perm).unsqueeze(-1)
            for p in state.D:
                p.requires_grad_(True)
            logits, gn = input_grad_norms(d_fn, torch.cat([x_r, x_f], 1), create_graph=use_pen)
            l_r, l_f = logits[:, :B], logits[:, B:]
            g_r, g_f = gn[:, :B], gn[:, B:]
            loss_d = F.softplus(-l_r).mean(1) + F.softplus(l_f).mean(1)  # [S]
            hist["dig"][:, t] = ((g_r - g_f) ** 2).mean(1).detach().numpy()
            hist["loss_d"][:, t] = loss_d.detach().numpy()
            total = loss_d
            if use_pen:
                pen, prev = dig_penalty(g_r, g_f, st.alpha, prev)
                total = total + lam_t * pen
            # summed over models: each model's parameters only receive its own loss's gradient
            grads = torch.autograd.grad(total.sum(), state.D)
            for p in state.D:
                p.requires_grad_(False)
            _sgd(state.D, state.mD, grads, st.lr_d, st.momentum)
        # ---- G step (fresh latents)
        if train_g:
            for p in state.G:
                p.requires_grad_(True)
            x_f = _mlp(state.G, zg, g_act)
            loss_g = F.softplus(-_mlp(state.D, x_f, d_act)).mean(dim=(1, 2))
            grads = torch.autograd.grad(loss_g.sum(), state.G)
            for p in state.G:
                p.requires_grad_(False)
            _sgd(state.G, state.mG, grads, st.lr_g, st.momentum)
        if on_step is not None and ((t + 1) % st.log_every == 0 or t + 1 == iterations):
            on_step((t + 1) / iterations)
    log(n_log - 1, iterations)
    return hist


# --------------------------------------------------------------------------- analysis


def _outcome(frac: np.ndarray, st: ToySettings) -> str:
    """'both' | 'mode@<point>' (only that point reaches min_frac) | 'neither'."""
    hit = frac >= st.min_frac
    if hit.all():
        return "both"
    if hit.any():
        return f"mode@{st.real_points[int(np.argmax(hit))]:g}"
    return "neither"


def _collapse_iter(frac: np.ndarray, log_iter: np.ndarray, st: ToySettings) -> int | None:
    """First logged iteration from which the run stays in the single mode it ends in; None if it does not end so."""
    outs = [_outcome(f, st) for f in frac]
    if not outs[-1].startswith("mode@"):
        return None
    k = len(outs) - 1
    while k > 0 and outs[k - 1] == outs[-1]:
        k -= 1
    return int(log_iter[k])


def _first_both_iter(frac: np.ndarray, log_iter: np.ndarray, st: ToySettings) -> int | None:
    hit = (frac >= st.min_frac).all(-1)
    return int(log_iter[int(np.argmax(hit))]) if hit.any() else None


def _running_mean(x: np.ndarray, w: int) -> np.ndarray:
    if x.shape[-1] < w or w <= 1:
        return x
    c = np.cumsum(np.concatenate([np.zeros(x.shape[:-1] + (1,)), x], -1), -1)
    out = (c[..., w:] - c[..., :-w]) / w
    pad = np.repeat(out[..., :1], w - 1, axis=-1)
    return np.concatenate([pad, out], -1)


DIG_SMOOTH = 25  # iterations of running mean used to locate DIG peaks (single-batch DIG is noisy)
SPIKE_WINDOW = 500  # "DIG spikes just before collapse": peak within this many iterations before it


def _per_seed(hist: dict[str, np.ndarray], seeds: Sequence[int], st: ToySettings) -> list[dict[str, Any]]:
    rows = []
    dig_s = _running_mean(hist["dig"].astype(np.float64), DIG_SMOOTH)
    tail = max(1, min(100, hist["dig"].shape[1]))
    for i, seed in enumerate(seeds):
        frac = hist["frac"][i]
        ci = _collapse_iter(frac, hist["log_iter"], st)
        peak = int(np.argmax(dig_s[i])) if dig_s.shape[1] else 0
        rows.append(
            {
                "seed": int(seed),
                "frac_near_points": [round(float(v), 4) for v in frac[-1]],
                "both_modes": bool((frac[-1] >= st.min_frac).all()),
                "outcome": _outcome(frac[-1], st),
                "max_dig": float(hist["dig"][i].max()) if hist["dig"].shape[1] else 0.0,
                "max_dig_iter": int(np.argmax(hist["dig"][i])) if hist["dig"].shape[1] else 0,
                "max_dig_smoothed": float(dig_s[i].max()) if dig_s.shape[1] else 0.0,
                "max_dig_smoothed_iter": peak,
                "final_dig": float(hist["dig"][i, -tail:].mean()) if hist["dig"].shape[1] else 0.0,
                "collapse_iter": ci,
                "dig_peak_before_collapse": (ci is not None and ci - SPIKE_WINDOW <= peak <= ci),
                "first_both_iter": _first_both_iter(frac, hist["log_iter"], st),
                "final_percentiles": {f"p{int(q)}": round(float(v), 4) for q, v in zip(PCTS, hist["pct"][i, -1])},
            }
        )
    return rows


def _aggregate(rows: list[dict[str, Any]]) -> dict[str, Any]:
    n = len(rows)
    outs = [r["outcome"] for r in rows]
    collapsed = [r for r in rows if r["collapse_iter"] is not None]
    return {
        "seeds": n,
        "both_modes": sum(r["both_modes"] for r in rows),
        "one_mode": sum(o.startswith("mode@") for o in outs),
        "neither": outs.count("neither"),
        "outcomes": {o: outs.count(o) for o in sorted(set(outs))},
        "median_max_dig": float(np.median([r["max_dig"] for r in rows])) if rows else None,
        "median_final_dig": float(np.median([r["final_dig"] for r in rows])) if rows else None,
        "dig_peak_before_collapse": f"{sum(r['dig_peak_before_collapse'] for r in collapsed)}/{len(collapsed)}",
        "per_seed": rows,
    }


# --------------------------------------------------------------------------- experiments 2 and 4


def _experiment2(
    stuck: _State, out_before: list[str], st: ToySettings, iterations: int, on_step: Callable[[float], None] | None
) -> tuple[dict[str, Any], dict[str, np.ndarray]]:
    """Perturb each stuck D with N(0, variance) noise on every parameter, then continue vanilla training.

    Variance 0 (no noise) is the control. All (variance, seed) runs are trained as one batch.
    """
    variances = (0.0,) + tuple(st.perturb_variances)
    k = len(stuck.seeds)
    parts, keys = [], []
    for vi, var in enumerate(variances):
        s = stuck.select(range(k))
        s.reset_momentum()  # the old momentum is meaningless once D has jumped
        for j, seed in enumerate(s.seeds):
            gen = torch.Generator().manual_seed(_noise_key(seed, 200 + vi))
            for p in s.D:
                p[j] += torch.randn(p[j].shape, generator=gen) * math.sqrt(var)
        parts.append(s)
        keys += [_noise_key(seed, 300 + vi) for seed in s.seeds]
    batch = _State.cat(parts)
    hist = _train(batch, st, lam=0.0, iterations=iterations, noise_keys=keys, on_step=on_step)
    rows = _per_seed(hist, batch.seeds, st)
    res: dict[str, Any] = {
        "description": "vanilla GAN continued from each stuck vanilla state after adding N(0, variance) noise to "
        "every D parameter (std = sqrt(variance), momentum reset); variance 0 is the no-noise control",
        "stuck_seeds": list(stuck.seeds),
        "iterations": iterations,
        "by_variance": {},
    }
    for vi, var in enumerate(variances):
        sub = rows[vi * k : (vi + 1) * k]
        results = []
        for r, before in zip(sub, out_before):
            after = r["outcome"]
            r["result"] = (
                "escaped_both_modes" if after == "both"
                else "same_mode" if after == before
                else "other_mode" if after.startswith("mode@")
                else "neither"
            )
            r["stuck_outcome"] = before
            results.append(r["result"])
        res["by_variance"][f"{var:g}"] = {
            "variance": var,
            "std": math.sqrt(var),
            "escaped": results.count("escaped_both_modes"),
            "same_mode": results.count("same_mode"),
            "other_mode": results.count("other_mode"),
            "neither": results.count("neither"),
            "per_seed": [
                {key: r[key] for key in ("seed", "stuck_outcome", "outcome", "result", "frac_near_points", "first_both_iter")}
                for r in sub
            ],
        }
    return res, hist


def _experiment4(
    stuck: _State, out_before: list[str], st: ToySettings, iterations: int, on_step: Callable[[float], None] | None
) -> tuple[dict[str, Any], dict[str, np.ndarray]]:
    """From each stuck vanilla state: train D alone (G frozen, DigGAN objective, paper's "D to optimality"),
    then continue with DigGAN, and, as a control from the very same state and noise, with vanilla GAN."""
    k = len(stuck.seeds)
    warm = stuck.select(range(k))
    warm.reset_momentum()
    warmup = min(st.exp4_d_warmup, iterations)
    if warmup:
        _train(warm, st, lam=st.lam, iterations=warmup, train_g=False,
               noise_keys=[_noise_key(s, 400) for s in warm.seeds])
    warm.reset_momentum()
    batch = _State.cat([warm, warm.select(range(k))])
    lam = torch.tensor([st.lam] * k + [0.0] * k)
    keys = [_noise_key(s, 401) for s in warm.seeds] * 2
    hist = _train(batch, st, lam=lam, iterations=iterations, noise_keys=keys, on_step=on_step)
    rows = _per_seed(hist, batch.seeds, st)
    res: dict[str, Any] = {
        "description": f"from each stuck vanilla state, {warmup} D-only steps (G frozen, DigGAN objective), then "
        "DigGAN training; control: vanilla training from the same warmed-up state and noise",
        "stuck_seeds": list(stuck.seeds),
        "d_warmup_steps": warmup,
        "iterations": iterations,
    }
    for name, sub in (("diggan", rows[:k]), ("vanilla_control", rows[k:])):
        res[name] = {
            "escaped": sum(r["both_modes"] for r in sub),
            "ever_both_modes": sum(r["first_both_iter"] is not None for r in sub),
            "per_seed": [
                {"seed": r["seed"], "stuck_outcome": b, "outcome": r["outcome"], "frac_near_points": r["frac_near_points"],
                 "first_both_iter": r["first_both_iter"], "max_dig": r["max_dig"], "final_dig": r["final_dig"]}
                for r, b in zip(sub, out_before)
            ],
        }
    return res, hist


# --------------------------------------------------------------------------- plotting


def _movement(ax: Any, hist: dict[str, np.ndarray], i: int, st: ToySettings, title: str, collapse: int | None = None) -> None:
    it = hist["log_iter"]
    pct = hist["pct"][i]
    ax.fill_between(it, pct[:, 0], pct[:, -1], color="tab:blue", alpha=0.15, lw=0, label="5-95% of G(z)")
    ax.plot(it, hist["trace"][i], color="tab:blue", lw=0.5, alpha=0.55)
    for p in st.real_points:
        ax.axhline(p, color="red", lw=1.2)
    if collapse is not None:
        ax.axvline(collapse, color="k", ls="--", lw=0.8)
    lo = min(st.real_points) - 2.0
    hi = max(st.real_points) + 2.0
    finite = pct[np.isfinite(pct)]
    if finite.size:
        lo, hi = max(min(lo, float(finite.min()) - 0.5), lo - 6), min(max(hi, float(finite.max()) + 0.5), hi + 6)
    ax.set_ylim(lo, hi)
    ax.set_xlim(it[0], it[-1])
    ax.set_xlabel("iteration")
    ax.set_ylabel("data position")
    ax.set_title(title, fontsize=9)


def _dig_plot(ax: Any, dig: np.ndarray, title: str, color: str, collapse: int | None = None) -> None:
    d = np.clip(dig.astype(np.float64), 1e-12, None)
    ax.plot(d, color=color, lw=0.3, alpha=0.35)
    ax.plot(_running_mean(d, DIG_SMOOTH), color=color, lw=1.2, label=f"running mean ({DIG_SMOOTH})")
    ax.set_yscale("log")
    if collapse is not None:
        ax.axvline(collapse, color="k", ls="--", lw=0.8, label="enters final single mode")
    ax.set_xlabel("iteration")
    ax.set_ylabel("DIG  mean (|grad D(x_r)| - |grad D(x_f)|)^2")
    ax.set_title(title, fontsize=9)
    ax.legend(fontsize=7, loc="upper right")


def _snapshot(ax: Any, samples: np.ndarray, d_grid: tuple[np.ndarray, np.ndarray], st: ToySettings, title: str) -> None:
    lo, hi = min(st.real_points) - 2.0, max(st.real_points) + 2.0
    ax.hist(np.clip(samples, lo, hi), bins=80, range=(lo, hi), color="tab:blue", alpha=0.7)
    for p in st.real_points:
        ax.axvline(p, color="red", lw=1.2)
    ax.set_xlabel("x")
    ax.set_ylabel(f"count of {len(samples)} G samples")
    ax2 = ax.twinx()
    ax2.plot(d_grid[0], d_grid[1], color="tab:green", lw=1.2)
    ax2.set_ylim(-0.02, 1.02)
    ax2.set_ylabel("D(x) = sigmoid(logit)", color="tab:green", fontsize=8)
    ax.set_title(title, fontsize=9)


def _plot_main(path: Path, ctx: dict[str, Any], st: ToySettings) -> None:
    import matplotlib

    matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt

    hv, hd, S, i = ctx["hist_v"], ctx["hist_d"], ctx["S"], ctx["rep"]
    rv, rd = ctx["vanilla"]["per_seed"][i], ctx["diggan"]["per_seed"][i]
    seed = rv["seed"]
    fig, axes = plt.subplots(3, 3, figsize=(16, 12.5))
    for row, (name, h, r, color) in enumerate((("vanilla GAN", hv, rv, "tab:blue"), ("DigGAN", hd, rd, "tab:orange"))):
        f = r["frac_near_points"]
        _snapshot(axes[row, 0], ctx["samples"][row], ctx["d_grid"][row], st,
                  f"(a) {name}, seed {seed}: final samples ({r['outcome']}; near 0/4: {f[0]:.2f}/{f[1]:.2f})")
        _movement(axes[row, 1], h, i, st, f"(b) {name}, seed {seed}: generated data movement", r["collapse_iter"])
        _dig_plot(axes[row, 2], h["dig"][i], f"(c) {name}, seed {seed}: DIG (max {r['max_dig']:.3g})", color,
                  r["collapse_iter"])
    # row 3: every seed
    ax = axes[2, 0]
    for h, color, name in ((hv, "tab:blue", "vanilla"), (hd, "tab:orange", "DigGAN")):
        m = h["frac"].min(-1)
        for j in range(S):
            ax.plot(h["log_iter"], m[j], color=color, lw=0.6, alpha=0.5, label=name if j == 0 else None)
    ax.axhline(st.min_frac, color="k", ls="--", lw=0.8, label=f"coverage threshold {st.min_frac}")
    ax.set_xlabel("iteration")
    ax.set_ylabel(f"fraction of samples within {st.tol} of the less-covered point")
    ax.set_title(f"all {S} seeds: mass on the less-covered real point", fontsize=9)
    ax.legend(fontsize=7)
    ax = axes[2, 1]
    for h, color, name in ((hv, "tab:blue", "vanilla"), (hd, "tab:orange", "DigGAN")):
        d = _running_mean(np.clip(h["dig"].astype(np.float64), 1e-12, None), DIG_SMOOTH)
        q25, q50, q75 = np.percentile(d, [25, 50, 75], axis=0)
        ax.plot(q50, color=color, lw=1.2, label=f"{name} median over seeds")
        ax.fill_between(np.arange(d.shape[1]), q25, q75, color=color, alpha=0.2, lw=0)
    ax.set_yscale("log")
    ax.set_xlabel("iteration")
    ax.set_ylabel("DIG (running mean), median and IQR over seeds")
    ax.set_title(f"all {S} seeds: DIG", fontsize=9)
    ax.legend(fontsize=7)
    ax = axes[2, 2]
    ax.add_patch(plt.Rectangle((st.min_frac, st.min_frac), 1, 1, color="green", alpha=0.08, lw=0))
    for agg, color, marker, name in ((ctx["vanilla"], "tab:blue", "o", "vanilla"), (ctx["diggan"], "tab:orange", "x", "DigGAN")):
        fr = np.array([r["frac_near_points"] for r in agg["per_seed"]])
        ax.scatter(fr[:, 0], fr[:, 1], c=color, marker=marker, s=40, alpha=0.8,
                   label=f"{name}: both modes {agg['both_modes']}/{agg['seeds']}")
    ax.set_xlim(-0.03, 1.03)
    ax.set_ylim(-0.03, 1.03)
    ax.set_xlabel(f"final fraction within {st.tol} of {st.real_points[0]:g}")
    ax.set_ylabel(f"final fraction within {st.tol} of {st.real_points[1]:g}")
    ax.set_title("all seeds: final mode fractions (shaded: covers both)", fontsize=9)
    ax.legend(fontsize=7)
    fig.suptitle(
        f"DigGAN toy (paper Fig. 3 analogue): real points {list(st.real_points)}, {st.iterations} iterations, "
        f"lambda={st.lam:g}, alpha={st.alpha:g}, SGD lr={st.lr_d:g} momentum={st.momentum:g}; "
        f"vanilla covers both modes in {ctx['vanilla']['both_modes']}/{S} seeds, DigGAN in "
        f"{ctx['diggan']['both_modes']}/{S}\nRows 1-2: seed {seed} ({ctx['rep_reason']}); row 3: all seeds. "
        f"Dashed line: iteration from which the run stays in its final single mode.",
        fontsize=10,
    )
    fig.tight_layout(rect=(0, 0, 1, 0.96))
    fig.savefig(path, dpi=90)
    plt.close(fig)


def _plot_perturb(path: Path, ctx: dict[str, Any], st: ToySettings) -> None:
    import matplotlib

    matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt

    e2, h2, e4, h4, j = ctx["exp2"], ctx["hist2"], ctx["exp4"], ctx["hist4"], ctx["stuck_rep"]
    k = len(e2["stuck_seeds"])
    seed = e2["stuck_seeds"][j]
    variances = list(e2["by_variance"].keys())
    fig, axes = plt.subplots(2, len(variances), figsize=(3.6 * len(variances), 8), squeeze=False)
    for vi, key in enumerate(variances):
        b = e2["by_variance"][key]
        r = b["per_seed"][j]
        _movement(axes[0, vi], h2, vi * k + j, st,
                  f"Exp.2 var={key}: seed {seed} -> {r['result']}\nall stuck seeds: escaped {b['escaped']}, same "
                  f"{b['same_mode']}, other {b['other_mode']}, neither {b['neither']}")
    for col, (name, off) in enumerate((("diggan", 0), ("vanilla_control", k))):
        r = e4[name]["per_seed"][j]
        _movement(axes[1, col], h4, off + j, st,
                  f"Exp.4 {name}: seed {seed} -> {r['outcome']} (first both: {r['first_both_iter']})\n"
                  f"all stuck seeds: escaped {e4[name]['escaped']}/{k}")
    _dig_plot(axes[1, 2], h4["dig"][j], f"Exp.4 DIG, seed {seed}: DigGAN", "tab:orange")
    _dig_plot(axes[1, 3 % len(variances)], h4["dig"][k + j], f"Exp.4 DIG, seed {seed}: vanilla control", "tab:blue")
    if len(variances) >= 5:
        ax = axes[1, 4]
        for off, color, name in ((0, "tab:orange", "DigGAN"), (k, "tab:blue", "vanilla control")):
            m = h4["frac"][off : off + k].min(-1)
            for jj in range(k):
                ax.plot(h4["log_iter"], m[jj], color=color, lw=0.8, alpha=0.6, label=name if jj == 0 else None)
        ax.axhline(st.min_frac, color="k", ls="--", lw=0.8)
        ax.set_xlabel("iteration")
        ax.set_ylabel("mass on the less-covered point")
        ax.set_title(f"Exp.4, all {k} stuck seeds", fontsize=9)
        ax.legend(fontsize=7)
    for ax in axes[1, 5:]:
        ax.axis("off")
    fig.suptitle(
        f"Experiments 2 and 4 from the stuck (single-mode) vanilla end states of {k} seeds; {e2['iterations']} "
        f"iterations each; Exp.4 after {e4['d_warmup_steps']} D-only warm-up steps.\nCurves: seed {seed} "
        f"(the main figure's seed if it is stuck, else the first stuck seed); titles: counts over all stuck seeds.",
        fontsize=10,
    )
    fig.tight_layout(rect=(0, 0, 1, 0.95))
    fig.savefig(path, dpi=80)
    plt.close(fig)


# --------------------------------------------------------------------------- entry points


def _json_safe(x: Any) -> Any:
    if isinstance(x, dict):
        return {str(k): _json_safe(v) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return [_json_safe(v) for v in x]
    if isinstance(x, (np.floating, float)):
        return float(x) if math.isfinite(float(x)) else None
    if isinstance(x, (np.integer,)):
        return int(x)
    if isinstance(x, np.bool_):
        return bool(x)
    return x


def _paired_comparison(vanilla: list[dict[str, Any]], diggan: list[dict[str, Any]]) -> dict[str, Any]:
    """Per-seed pairing (same init and noise): who covers both modes, and an exact McNemar test on it."""
    pairs = [(v["both_modes"], d["both_modes"]) for v, d in zip(vanilla, diggan)]
    v_only = sum(1 for v, d in pairs if v and not d)
    d_only = sum(1 for v, d in pairs if d and not v)
    n = v_only + d_only
    p = min(1.0, 2 * sum(math.comb(n, i) for i in range(min(v_only, d_only) + 1)) / 2**n) if n else 1.0
    return {
        "both_cover": sum(1 for v, d in pairs if v and d),
        "only_diggan_covers": d_only,
        "only_vanilla_covers": v_only,
        "neither_covers": sum(1 for v, d in pairs if not v and not d),
        "mcnemar_exact_p_two_sided": p,
    }


def _pick_representative(vanilla: list[dict[str, Any]], diggan: list[dict[str, Any]]) -> tuple[int, str]:
    """The first seed that shows the paper's contrast if there is one, and say so (and how many do)."""
    both = [i for i, (v, d) in enumerate(zip(vanilla, diggan)) if v["outcome"].startswith("mode@") and d["both_modes"]]
    if both:
        return both[0], f"first of {len(both)}/{len(vanilla)} seeds where vanilla ends in one mode and DigGAN covers both"
    stuck = [i for i, v in enumerate(vanilla) if v["outcome"].startswith("mode@")]
    if stuck:
        return stuck[0], "no seed shows vanilla one-mode + DigGAN both; first seed where vanilla ends in one mode"
    return 0, "no seed where vanilla ends in one mode; first seed"


def _settings_dict(st: ToySettings) -> dict[str, Any]:
    d = dataclasses.asdict(st)
    d["latent_description"] = (
        f"z ~ U(-{st.latent_scale:g}, {st.latent_scale:g}), 1-D" if st.latent == "uniform"
        else f"z ~ N(0, {st.latent_scale:g}^2), 1-D"
    )
    d["G_architecture"] = f"{st.g_layers} Linear layers 1-{'-'.join([str(st.g_hidden)] * (st.g_layers - 1))}-1, {st.g_act}"
    d["D_architecture"] = (
        f"{st.d_layers} Linear layers 1-{'-'.join([str(st.d_hidden)] * (st.d_layers - 1))}-1, {st.d_act} hidden, "
        "sigmoid output applied inside BCE-with-logits"
    )
    d["init"] = "PyTorch nn.Linear default: W, b ~ U(-1/sqrt(fan_in), 1/sqrt(fan_in)), per-seed generator"
    d["optimizer"] = f"SGD lr_d={st.lr_d:g}, lr_g={st.lr_g:g}, momentum={st.momentum:g} (torch.optim.SGD semantics)"
    d["loss"] = "non-saturating GAN (paper Eq. 1, JS-GAN l(t)=log(1+e^t)); DigGAN adds lambda*mean((g_r(t)-g_f(t))^2) to D's loss"
    d["dig_penalty"] = (
        "g = per-sample L2 norm of d logit/d x (create_graph=True); reals shuffled against fakes each iteration "
        "(random pairing); g(t) = alpha*g_now + (1-alpha)*g(t-1).detach() elementwise over the batch, g(0) = g_now"
    )
    d["dig_logged"] = "raw (unsmoothed) DIG of paper Eq. 2 for every run, per D step: mean over pairs"
    d["real_batch"] = f"{st.batch_size // 2} copies of each real point, shuffled each iteration; {st.batch_size} fakes"
    d["coverage_criterion"] = (
        f"both modes <=> at the end, >= {st.min_frac:g} of {st.n_eval} generated samples (fixed eval latents) lie "
        f"within {st.tol:g} of each real point; 'mode@p': only p reaches that; 'neither': none does"
    )
    d["collapse_iter"] = "first logged iteration from which the run stays in the single mode it ends in"
    d["dig_peak_before_collapse"] = (
        f"argmax of the {DIG_SMOOTH}-iteration running mean of DIG lies in [collapse_iter - {SPIKE_WINDOW}, collapse_iter]"
    )
    d["perturbation"] = "every D parameter += N(0, variance) noise, i.e. std = sqrt(variance) (the paper calls s a variance)"
    return d


def _bar_setter(bar: Any, total: float) -> Callable[[float], None]:
    """on_step callback moving a tqdm bar (counted in seeds) to fraction * total."""

    def set_fraction(frac: float) -> None:
        target = min(float(total), round(frac * total, 6))
        if target > bar.n:
            bar.update(target - bar.n)

    return set_fraction


def run_toy(
    seeds: int | list[int] = 10,
    out_dir: Path = Path("runs/toy"),
    iterations: int | None = None,
    perturb: bool = False,
    progress: bool = True,
    *,
    settings: ToySettings | None = None,
) -> dict:
    """Run the toy experiment (vanilla vs DigGAN from the same start, per seed) and write
    out_dir/summary.json and out_dir/toy.png (and out_dir/toy_perturb.png with perturb=True).

    seeds: a count n (seeds 0..n-1) or an explicit list. iterations: overrides settings.iterations (also used
    for the continuations of experiments 2 and 4). Returns the summary dict.
    """
    t_start, cpu_start = time.perf_counter(), time.process_time()
    st = settings or DEFAULT_SETTINGS
    if iterations is not None:
        st = dataclasses.replace(st, iterations=int(iterations))
    seed_list = list(range(int(seeds))) if isinstance(seeds, int) else [int(s) for s in seeds]
    if not seed_list:
        raise ValueError("need at least one seed")
    if st.iterations < 1 or st.batch_size < 2 or st.log_every < 1:
        raise ValueError("iterations >= 1, batch_size >= 2 and log_every >= 1 are required")
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    S = len(seed_list)

    from tqdm.auto import tqdm

    fmt = "{l_bar}{bar}| {n:.1f}/{total_fmt} seeds [{elapsed}<{remaining}]"
    with one_thread():
        # ---- experiments 1 and 3: vanilla and DigGAN from the same init and the same noise, one batch
        init = _init_state(seed_list, st)
        batch = _State.cat([init, init.select(range(S))])
        lam = torch.tensor([0.0] * S + [st.lam] * S)
        keys = [_noise_key(s, 0) for s in seed_list] * 2
        with tqdm(total=S, desc="toy: vanilla + DigGAN", disable=not progress, bar_format=fmt) as bar:
            hist = _train(batch, st, lam=lam, iterations=st.iterations, noise_keys=keys,
                          on_step=_bar_setter(bar, S))
        hist_v = {k: v[:S] if v.ndim > 1 else v for k, v in hist.items()}
        hist_d = {k: v[S:] if v.ndim > 1 else v for k, v in hist.items()}
        rows = _per_seed(hist, batch.seeds, st)
        vanilla, diggan = _aggregate(rows[:S]), _aggregate(rows[S:])
        rep, rep_reason = _pick_representative(vanilla["per_seed"], diggan["per_seed"])

        # final samples and D curves of the representative seed, for panel (a)
        g_act, d_act = _act(st.g_act), _act(st.d_act)
        z_eval = _eval_latents([seed_list[rep]], st)
        grid = torch.linspace(min(st.real_points) - 2, max(st.real_points) + 2, 400).view(1, -1, 1)
        samples, d_grid = [], []
        with torch.no_grad():
            for idx in (rep, S + rep):
                one = batch.select([idx])
                samples.append(_mlp(one.G, z_eval, g_act).flatten().numpy())
                d_grid.append((grid.flatten().numpy(), torch.sigmoid(_mlp(one.D, grid, d_act)).flatten().numpy()))

        summary: dict[str, Any] = {
            "vanilla": vanilla,
            "diggan": diggan,
            "settings": _settings_dict(st),
            "seed_list": seed_list,
            "paired": _paired_comparison(vanilla["per_seed"], diggan["per_seed"]),
            "representative_seed": seed_list[rep],
            "representative_reason": rep_reason,
        }

        # ---- experiments 2 and 4, from the vanilla runs that ended in one mode
        ctx2: dict[str, Any] = {}
        if perturb:
            stuck_idx = [i for i, r in enumerate(vanilla["per_seed"]) if r["outcome"].startswith("mode@")]
            if not stuck_idx:
                note = {"skipped": "no vanilla seed ended in a single mode, so there is no stuck state to start from"}
                summary["experiment2"] = summary["experiment4"] = note
            else:
                stuck = batch.select(stuck_idx)  # the vanilla half of the batch: indices < S
                before = [vanilla["per_seed"][i]["outcome"] for i in stuck_idx]
                k = len(stuck_idx)
                n_runs = k * (len(st.perturb_variances) + 1)
                with tqdm(total=n_runs, desc="toy: experiment 2", disable=not progress, bar_format=fmt) as bar:
                    exp2, hist2 = _experiment2(stuck, before, st, st.iterations, _bar_setter(bar, n_runs))
                with tqdm(total=2 * k, desc="toy: experiment 4", disable=not progress, bar_format=fmt) as bar:
                    exp4, hist4 = _experiment4(stuck, before, st, st.iterations, _bar_setter(bar, 2 * k))
                summary["experiment2"], summary["experiment4"] = exp2, exp4
                stuck_rep = stuck_idx.index(rep) if rep in stuck_idx else 0
                ctx2 = {"exp2": exp2, "hist2": hist2, "exp4": exp4, "hist4": hist4, "stuck_rep": stuck_rep}

        ctx = {"hist_v": hist_v, "hist_d": hist_d, "S": S, "rep": rep, "rep_reason": rep_reason,
               "vanilla": vanilla, "diggan": diggan, "samples": samples, "d_grid": d_grid}
        _plot_main(out_dir / "toy.png", ctx, st)
        figures = {"main": str(out_dir / "toy.png")}
        if ctx2:
            _plot_perturb(out_dir / "toy_perturb.png", ctx2, st)
            figures["perturb"] = str(out_dir / "toy_perturb.png")
        summary["figures"] = figures
        summary["wall_time_s"] = round(time.perf_counter() - t_start, 2)
        summary["cpu_time_s"] = round(time.process_time() - cpu_start, 2)  # this process; wall is longer on a busy box
        summary["torch_version"] = torch.__version__
        summary = _json_safe(summary)
        tmp = out_dir / "summary.json.tmp"
        tmp.write_text(json.dumps(summary, indent=2, allow_nan=False))
        tmp.replace(out_dir / "summary.json")  # atomic: readers never see a half-written file
        return summary
