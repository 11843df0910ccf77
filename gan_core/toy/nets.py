"""Many independent small fully connected nets trained as one batch (the paper-variant toy's G and D).

`BatchedMLP(sizes, act, seeds)` holds one MLP per seed, every weight stacked on a leading seed axis,
so one forward pass (batched matmuls) runs all of them and one `torch.optim.Adam` over the stacked
parameters is exactly one Adam per net: Adam's update is elementwise, so nets never interact.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Callable, Sequence

import torch
from torch import Tensor, nn

__all__ = ["ACTIVATIONS", "BatchedMLP", "make_adam"]

ACTIVATIONS: dict[str, Callable[[Tensor], Tensor]] = {"tanh": torch.tanh, "sigmoid": torch.sigmoid}


class BatchedMLP(nn.Module):
    """S independent MLPs of the same shape; parameters `W{i}` [S, in, out] and `b{i}` [S, 1, out].

    Hidden layers use `act`; the last layer is linear (a logit for D, a position for G).
    """

    def __init__(self, sizes: Sequence[int], act: str, weights: Sequence[Tensor]) -> None:
        super().__init__()
        if act not in ACTIVATIONS:
            raise ValueError(f"unknown activation {act!r}; choose from {sorted(ACTIVATIONS)}")
        self.sizes = tuple(int(s) for s in sizes)
        self.act_name = act
        self.act = ACTIVATIONS[act]
        if len(weights) != 2 * (len(self.sizes) - 1):
            raise ValueError("need one (W, b) pair per layer")
        self.params = nn.ParameterList([nn.Parameter(w.detach().clone()) for w in weights])

    @classmethod
    def init(cls, sizes: Sequence[int], act: str, seeds: Sequence[int], tag: int) -> BatchedMLP:
        """PyTorch's nn.Linear default init, W and b ~ U(-1/sqrt(fan_in), 1/sqrt(fan_in)), one generator per seed.

        A seed's weights do not depend on which other seeds share the batch. `tag` separates G from D.
        """
        per_seed: list[list[Tensor]] = []
        for s in seeds:
            gen = torch.Generator().manual_seed(int(s) * 1_000_003 + int(tag))
            layers: list[Tensor] = []
            for fan_in, fan_out in itertools.pairwise(sizes):
                k = 1.0 / math.sqrt(fan_in)
                layers.append((torch.rand(fan_in, fan_out, generator=gen) * 2 - 1) * k)
                layers.append((torch.rand(1, fan_out, generator=gen) * 2 - 1) * k)
            per_seed.append(layers)
        return cls(sizes, act, [torch.stack([p[i] for p in per_seed]) for i in range(len(per_seed[0]))])

    @property
    def n_models(self) -> int:
        return int(self.params[0].shape[0])

    @property
    def n_layers(self) -> int:
        return len(self.sizes) - 1

    def forward(self, x: Tensor) -> Tensor:
        """x [S, N, in] -> [S, N, out]; model i sees only x[i]."""
        h = x
        for i in range(self.n_layers):
            h = torch.baddbmm(self.params[2 * i + 1], h, self.params[2 * i])
            if i < self.n_layers - 1:
                h = self.act(h)
        return h

    def weights(self) -> list[Tensor]:
        """Detached copies of the stacked parameters (for saving and for new nets)."""
        return [p.detach().clone() for p in self.params]

    def select(self, idx: Sequence[int]) -> BatchedMLP:
        """A new batch holding copies of models `idx` (in that order)."""
        ix = torch.as_tensor(list(idx), dtype=torch.long)
        return BatchedMLP(self.sizes, self.act_name, [p.detach()[ix] for p in self.params])

    @staticmethod
    def cat(nets: Sequence[BatchedMLP]) -> BatchedMLP:
        first = nets[0]
        if any(n.sizes != first.sizes or n.act_name != first.act_name for n in nets):
            raise ValueError("can only concatenate nets of the same shape and activation")
        stacked = [torch.cat([n.params[i].detach() for n in nets]) for i in range(len(first.params))]
        return BatchedMLP(first.sizes, first.act_name, stacked)

    @torch.no_grad()
    def add_gaussian_noise_(self, variance: float, generators: Sequence[torch.Generator]) -> None:
        """Every parameter of model i += N(0, variance) noise drawn from generators[i] (std = sqrt(variance))."""
        std = math.sqrt(variance)
        for i, gen in enumerate(generators):
            for p in self.params:
                p[i] += torch.randn(p.shape[1:], generator=gen) * std


def make_adam(net: nn.Module, lr: float, betas: tuple[float, float], eps: float) -> torch.optim.Adam:
    """Adam over the stacked parameters: per element, so per model, identical to one Adam per net.

    foreach=False: the plain per-tensor loop, the same arithmetic on every torch version."""
    return torch.optim.Adam(net.parameters(), lr=lr, betas=(float(betas[0]), float(betas[1])), eps=eps, foreach=False)
