"""The interface every discriminator regularizer implements, and the shared
gradient computations they draw on.

A D step builds one `RegContext` per minibatch. Regularizers ask it for D's
input gradients on the real and fake images; the context computes each at most
once per step (R1 and DigGAN share the real-image gradient) and hands back the
logits too, so the main D loss reuses the same forward pass.

For a class-conditional D (BigGAN's projection D) the context also carries the
labels of the real and the fake batch; regularizers that run D on images of their
own call `ctx.d_real(x)` / `ctx.d_fake(x)` (D with the real / fake labels, which for
an unconditional D is plain `D(x)`). `ctx.d_loss` is the trainer's adversarial D loss
function (logistic or hinge) for regularizers that recompute it (NICE, MaskedGAN).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import ClassVar

import torch
from torch import Tensor, nn


def call_d(D: nn.Module, x: Tensor, c: Tensor | None = None) -> Tensor:
    """D's logits for `x`; with labels `c` for a conditional D. Labels follow the batch:
    a caller may pass only the first n images, so `c` is cut to match. Without labels D is
    called as `D(x)`, so any single-input D works."""
    return D(x) if c is None else D(x, c[: x.shape[0]])


@dataclass
class InputGradient:
    """D's view of one batch: the input it saw, its logits, and d(sum logits)/d(input)."""

    inputs: Tensor  # the augmented images D saw, requires_grad
    logits: Tensor  # [N, 1]
    grad: Tensor | None  # same shape as inputs; part of the graph when create_graph
    norms: Tensor | None  # [N] per-sample L2 norms of grad


class RegContext:
    """Lazily computes D's forward pass and input gradients for one D step.

    `real_aug` and `fake_aug` are the augmented images (detached). A side whose
    gradient nobody asks for is run as a plain forward pass. `real_c` / `fake_c`:
    class labels of each batch for a conditional D (None: D is called as `D(x)`).
    `d_loss(real_logits, fake_logits)`: the trainer's D loss (None: logistic).
    """

    def __init__(self, D: nn.Module, real_aug: Tensor, fake_aug: Tensor, create_graph: bool,
                 real_c: Tensor | None = None, fake_c: Tensor | None = None,
                 d_loss: Callable[[Tensor, Tensor], Tensor] | None = None) -> None:
        self.D = D
        self.real_aug = real_aug
        self.fake_aug = fake_aug
        self.create_graph = create_graph
        self.real_c = real_c
        self.fake_c = fake_c
        self.d_loss = d_loss
        self._cache: dict[tuple[str, bool], InputGradient] = {}

    def d_real(self, x: Tensor) -> Tensor:
        """D's logits for images derived from the real batch (masked, perturbed, noised...)."""
        return call_d(self.D, x, self.real_c)

    def d_fake(self, x: Tensor) -> Tensor:
        """D's logits for images derived from the fake batch."""
        return call_d(self.D, x, self.fake_c)

    def _run(self, side: str, with_grad: bool) -> InputGradient:
        if (side, True) in self._cache:
            return self._cache[(side, True)]
        if not with_grad and (side, False) in self._cache:
            return self._cache[(side, False)]
        x = (self.real_aug if side == "real" else self.fake_aug).detach()
        if with_grad:
            x = x.requires_grad_(True)
        logits = self.d_real(x) if side == "real" else self.d_fake(x)
        grad = norms = None
        if with_grad:
            # retain_graph: the logits are reused by the main D loss after this.
            (grad,) = torch.autograd.grad(
                logits.sum(), x, create_graph=self.create_graph, retain_graph=True
            )
            norms = grad.flatten(1).norm(dim=1)
        out = InputGradient(x, logits, grad, norms)
        self._cache[(side, with_grad)] = out
        return out

    def real(self, with_grad: bool = True) -> InputGradient:
        return self._run("real", with_grad)

    def fake(self, with_grad: bool = True) -> InputGradient:
        return self._run("fake", with_grad)


class DRegularizer(nn.Module):
    """A discriminator regularizer: `penalty(ctx)` returns (weighted loss, stats).

    On the steps where `is_due(step)` the trainer adds the returned loss times
    `lazy_multiplier` to D's loss: `interval` for NVlabs-style lazy regularization
    (`scale_by_interval=True`, the default: the same average pull per minibatch as
    running it every step), 1 when the weight is meant per application
    (`scale_by_interval=False`: the DigGAN authors' once-per-G-step penalty).
    Subclasses set `name`, declare `params` (name -> default, for API forms),
    and keep any running state in `extra_state` so checkpoints resume exactly.
    """

    name: ClassVar[str] = ""
    description: ClassVar[str] = ""
    params: ClassVar[dict[str, float]] = {}
    needs_real_grad: ClassVar[bool] = False
    needs_fake_grad: ClassVar[bool] = False

    def __init__(self, weight: float, interval: int = 1, *, scale_by_interval: bool = True, **params: float) -> None:
        super().__init__()
        unknown = set(params) - set(self.params)
        if unknown:
            raise ValueError(
                f"regularizer {self.name!r} has no parameter(s) {sorted(unknown)}; "
                f"known: {sorted(self.params) or 'none'}"
            )
        self.weight = float(weight)
        self.interval = int(interval)
        self.scale_by_interval = bool(scale_by_interval)
        self.hparams = {**self.params, **{k: float(v) for k, v in params.items()}}

    @property
    def lazy_multiplier(self) -> int:
        """What the trainer multiplies the penalty by on a due step: `interval` if scaled, else 1."""
        return self.interval if self.scale_by_interval else 1

    def is_due(self, step: int) -> bool:
        return step % self.interval == 0

    def penalty(self, ctx: RegContext) -> tuple[Tensor, dict[str, float]]:
        raise NotImplementedError

    # Running state (e.g. moving averages) for exact resume.
    def extra_state(self) -> dict[str, Tensor]:
        return {}

    def load_extra_state(self, state: dict[str, Tensor]) -> None:
        pass


REGISTRY: dict[str, type[DRegularizer]] = {}


def register(cls: type[DRegularizer]) -> type[DRegularizer]:
    REGISTRY[cls.name] = cls
    return cls


RegularizerFactory = Callable[..., DRegularizer]
