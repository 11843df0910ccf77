"""The paper-variant toy's training loop: alternating D and G Adam steps, optional DigGAN penalty.

`train(G, D, settings, lam=..., iterations=..., coins=...)` trains every (G, D) pair of the batch in
place and returns a `History`: the two generated points before the first and after every iteration,
the DIG (paper Eq. 2, averaged over the 2 x 2 real/fake pairs) and D's adversarial loss before every
D update. Models with lambda 0 are vanilla GANs; their penalty gradient is exactly zero.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor

from ..threads import one_thread
from .nets import BatchedMLP, make_adam
from .penalty import dig_penalty, input_grad_norms, pairwise_dig
from .settings import PaperSettings

__all__ = ["History", "latent_inputs", "one_thread", "pairing_coins", "stream_key", "train"]


@dataclass
class History:
    x: np.ndarray  # [S, T + 1, 2]: the generated points at the start and after every iteration
    dig: np.ndarray  # [S, T]: pairwise DIG before every D update
    loss_d: np.ndarray  # [S, T]: D's adversarial loss before every D update (penalty not included)


def stream_key(seed: int, stream: int) -> int:
    """The generator seed of one random stream of one toy seed (init, noise and coins never share one)."""
    return int(seed) * 7919 + 104_729 * int(stream) + 17


def pairing_coins(seeds: Sequence[int], stream: int, iterations: int) -> Tensor:
    """[S, T] bool: at iteration t model i pairs real 0 with fake 1 (True) or with fake 0 (False).

    One generator per seed, so a seed's coins do not depend on the other seeds in the batch."""
    rows = [torch.rand(iterations, generator=torch.Generator().manual_seed(stream_key(s, stream))) < 0.5
            for s in seeds]
    return torch.stack(rows) if rows else torch.zeros(0, iterations, dtype=torch.bool)


def latent_inputs(st: PaperSettings, n_models: int) -> Tensor:
    """[S, 2, 1]: the two fixed latent inputs, the same for every model and iteration."""
    return torch.tensor(st.latents, dtype=torch.float32).view(1, -1, 1).expand(n_models, -1, -1).contiguous()


def train(
    G: BatchedMLP,
    D: BatchedMLP,
    st: PaperSettings,
    *,
    lam: Sequence[float] | float,
    iterations: int,
    coins: Tensor,
    train_g: bool = True,
    on_step: Callable[[int], None] | None = None,
) -> History:
    """Train every model of the batch in place for `iterations` iterations with fresh Adam states.

    lam: DigGAN lambda, one per model or one for all (0: vanilla). coins [S, >= iterations]: the
    random real/fake pairing (pairing_coins). train_g=False freezes G: D alone is trained (Exp. 4's
    "D to optimality"). on_step(t) is called after every 100 iterations (progress).
    """
    S = G.n_models
    if D.n_models != S or coins.shape[0] != S or coins.shape[1] < iterations:
        raise ValueError("G, D and coins must hold the same models, with a coin for every iteration")
    lam_t = torch.as_tensor(lam, dtype=torch.float32).expand(S).clone()
    use_pen = bool((lam_t > 0).any())
    opt_d = make_adam(D, st.lr, st.betas, st.eps)
    opt_g = make_adam(G, st.lr, st.betas, st.eps)
    z = latent_inputs(st, S)
    reals = torch.tensor(st.real_points, dtype=torch.float32).view(1, 2, 1).expand(S, -1, -1)
    hist = History(
        x=np.zeros((S, iterations + 1, 2), np.float32),
        dig=np.zeros((S, iterations), np.float32),
        loss_d=np.zeros((S, iterations), np.float32),
    )
    prev: tuple[Tensor, Tensor] | None = None
    with one_thread():
        with torch.no_grad():
            hist.x[:, 0] = G(z).squeeze(-1).numpy()
        for t in range(iterations):
            # ---- D step: reals (0, 4) against the two generated points
            with torch.no_grad():
                x_f = G(z)
            swap = coins[:, t].view(S, 1, 1)
            x_f_paired = torch.where(swap, x_f.flip(1), x_f)  # random pairing: real i with fake i (or 1 - i)
            D.requires_grad_(True)
            logits, norms = input_grad_norms(D, torch.cat([reals, x_f_paired], 1), create_graph=use_pen)
            l_r, l_f = logits[:, :2], logits[:, 2:]
            g_r, g_f = norms[:, :2], norms[:, 2:]
            loss_d = F.softplus(-l_r).mean(1) + F.softplus(l_f).mean(1)  # [S]
            hist.dig[:, t] = pairwise_dig(g_r, g_f).detach().numpy()
            hist.loss_d[:, t] = loss_d.detach().numpy()
            total = loss_d
            if use_pen:
                pen, prev = dig_penalty(g_r, g_f, st.alpha, prev)
                total = total + lam_t * pen
            opt_d.zero_grad(set_to_none=True)
            total.sum().backward()  # summed over models: each model's parameters get only its own loss
            opt_d.step()
            # ---- G step on the updated D
            if train_g:
                D.requires_grad_(False)
                loss_g = F.softplus(-D(G(z))).mean(dim=(1, 2))
                opt_g.zero_grad(set_to_none=True)
                loss_g.sum().backward()
                opt_g.step()
            with torch.no_grad():
                hist.x[:, t + 1] = G(z).squeeze(-1).numpy()
            if on_step is not None and (t + 1) % 100 == 0:
                on_step(t + 1)
        D.requires_grad_(True)
    return hist
