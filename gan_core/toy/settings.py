"""Every number of the paper-variant toy, chosen once, with where it comes from.

The DigGAN paper (Fang, Sun, Schwing, NeurIPS 2022; ../shared/papers/diggan-paper.txt, section 3.3)
describes a toy: "generating two real data points [0 and 4]. The generator is a 4-layer fully connected
network (FCN) with 5 neurons per layer and [lost] activation. The discriminator is a 4-layer FCN with 10
neurons per layer and sigmoid activation. Both the discriminator and the generator are updated with
momentum coefficient [lost] [25] and learning rate [lost]. We use [lost] and [lost] in Eq. (3). We use
[lost] iterations". Reference [25] is Kingma & Ba, "Adam" (docs/diggan.md). The Chinese summary
(diggan-summary-zh.txt) keeps the experiments' outcomes, not these numbers. So:

Kept from the paper
    real data       the two points 0 and 4, both in every D step (the whole data set).
    G               4 Linear layers 1-5-5-5-1 (three hidden layers of 5 units). It "generates two points":
                    G is applied to two FIXED latent inputs, one per generated point, the same at every
                    iteration (no sampling).
    D               4 Linear layers 1-10-10-10-1, SIGMOID hidden activations, one logit out (the sigmoid of
                    the output is inside the loss).
    loss            the non-saturating GAN loss of paper Eq. 1 with l(t) = log(1 + e^t): D minimises
                    softplus(-D(x_r)) + softplus(D(G(z))), G minimises softplus(-D(G(z))); DigGAN adds
                    lambda * mean((g_r(t) - g_f(t))^2) (Eq. 3) to D's loss only.
    optimizer       Adam for both nets (the paper's "momentum coefficient [25]").
    noise levels    Experiment 2 adds N(0, s) to every D parameter with s in {0.1, 1, 5, 10}; the paper calls s
                    a "noise variance", so the noise std is sqrt(s).
    Exp. 4 start    G = Experiment 2's final G at s = 5; D trained to optimality against that fixed G with the
                    objective of Eq. 3 (the DigGAN one).

Chosen here, once, before any run of this variant (none of these was tuned on results)
    G activation    tanh. The word was lost while "sigmoid" for D survived, so it was typeset as math
                    (e.g. $\\tanh$), and tanh is what the authors' earlier two-cluster toy uses
                    (AilsaF/RS-GAN, GAN2_2Cluster.py).
    latent inputs   z = -1 and z = +1 (1-D): symmetric, unit scale, where a tanh net at PyTorch's default
                    init is neither saturated nor linear.
    init            PyTorch's nn.Linear default, W and b ~ U(-1/sqrt(fan_in), 1/sqrt(fan_in)), from a
                    per-seed generator (the authors' code is PyTorch and sets no toy init we know of).
    Adam            lr 1e-3, betas (0.9, 0.999), eps 1e-8: the defaults of the cited source, Kingma & Ba 2015,
                    Algorithm 1 (also torch.optim.Adam's). A fresh optimizer state at the start of every
                    experiment (the paper restarts from "states", i.e. networks).
    steps           one D step then one G step per iteration (alternating, on the updated D).
    lambda          100: the only DigGAN weight the paper's text keeps (section 4.4, StyleGAN2).
    alpha           0.5: the smoothing weight of the authors' code (AilsaF/DigGAN train_fns.py,
                    `0.5 * grad + 0.5 * grad_ema`), elementwise over the batch vector, first step unsmoothed.
    pairing         reals paired with fakes at random each iteration (paper section 4.6, "random pairing");
                    with two points that is one fair coin per iteration from a per-seed generator.
    iterations      10,000 per experiment: the paper's vanilla run is stuck "starting with rough iteration
                    3000" and Exp. 4 moves "around iteration 2000", so 10k leaves > 3x that to settle.
    D to optimality 5,000 D-only Adam steps with G frozen (Exp. 4). Its end state is recorded (D loss and its
                    change over the last 500 steps) so "optimal" can be checked, not assumed.
    DIG logged      paper Eq. 2 averaged over all 2 x 2 real/fake pairs (the expectation over the random
                    pairing, so the curve has no pairing noise), before every D update, for every run.

Reading the outcome (fixed before the runs)
    tol             a generated point is "at" a real point when within 0.5 of it (1/8 of the gap).
    outcome         "both" (one point at 0, the other at 4), "mode@0" / "mode@4" (both at the same point:
                    one mode), "neither" (a point at no real point).
    settled         no generated point moved more than 0.1 over the last 1,000 iterations; a run that ends
                    otherwise "does not converge" (the paper's s = 10 case).
    collapse        for a run that ends in one mode: the first iteration from which it stays there.
    DIG spike       "DIG spikes right before collapse": compare the DIG peak in the 500 iterations before the
                    collapse with the peak in the 500 iterations before those (paired over seeds).
    perturbation    Exp. 4's "visible perturbation": the first iteration at which a generated point has moved
                    more than 0.1 from where it started.

Seeds: a seed fixes the initial G and D (Exp. 1 and 3 start from the same ones), the Exp. 2 noise and every
pairing coin. Everything runs on the CPU in float32 with one torch thread, so a seed's numbers are
bit-for-bit repeatable.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any

__all__ = ["PAPER_SETTINGS", "PaperSettings"]


@dataclass(frozen=True)
class PaperSettings:
    """The paper-variant toy's knobs (see the module docstring for each one's source)."""

    real_points: tuple[float, float] = (0.0, 4.0)  # paper section 3.3
    latents: tuple[float, float] = (-1.0, 1.0)  # ours: two fixed 1-D inputs, one per generated point
    g_sizes: tuple[int, ...] = (1, 5, 5, 5, 1)  # paper: 4-layer FCN, 5 units per layer
    g_act: str = "tanh"  # ours (word lost; math-typeset; AilsaF/RS-GAN GAN2_2Cluster.py uses tanh)
    d_sizes: tuple[int, ...] = (1, 10, 10, 10, 1)  # paper: 4-layer FCN, 10 units per layer
    d_act: str = "sigmoid"  # paper: "sigmoid activation"
    lr: float = 1e-3  # Kingma & Ba 2015, Algorithm 1 default (paper ref. [25])
    betas: tuple[float, float] = (0.9, 0.999)  # Kingma & Ba 2015 defaults
    eps: float = 1e-8  # Kingma & Ba 2015 default
    lam: float = 100.0  # paper section 4.4 (the only lambda its text keeps)
    alpha: float = 0.5  # AilsaF/DigGAN DiffAugment-biggan-cifar/train_fns.py
    iterations: int = 10_000  # ours: > 3x the paper's ~3000 (Exp. 1) and ~2000 (Exp. 4)
    d_opt_steps: int = 5_000  # ours: Exp. 4's "D trained to optimality", checked by its loss change
    noise_variances: tuple[float, ...] = (0.1, 1.0, 5.0, 10.0)  # paper Exp. 2 ("noise variance")
    exp4_variance: float = 5.0  # paper Exp. 4 starts from Exp. 2's s = 5 generator
    tol: float = 0.5  # ours: "at a real point" within 1/8 of the gap
    settle_window: int = 1_000  # ours: last 10% of the run
    settle_tol: float = 0.1  # ours
    spike_window: int = 500  # ours: "right before" the collapse
    move_tol: float = 0.1  # ours: Exp. 4 perturbation onset

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


PAPER_SETTINGS = PaperSettings()
