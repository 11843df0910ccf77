"""MaskedGAN (Huang et al.), from the abstract: shifted spatial masking and
balanced spectral masking of D's inputs, each with its own adversarial loss.

Only the abstract is available (../shared/papers/related-abstracts.txt) and
there is no official code; every choice below is ours and is listed in
docs/regularizers.md. The abstract says: random masking of image information
for D; a *shifted spatial masking* (spatial masks with random shifts) and a
*balanced spectral masking* (spectral bands masked with self-adaptive
probabilities), complementary, pushing D towards holistic evidence.

As implemented, at every D step where it is due, on the augmented images D sees:

  * shifted spatial masking: a grid of `patches` x `patches` square cells
    (cell = resolution // patches pixels) offset by a random shift (sy, sx) in
    [0, cell) per sample, i.e. a (patches+1)^2 grid of which the border cells are
    partly visible; a random `spatial_ratio` of those cells is set to 0 (mid-grey);
  * balanced spectral masking: the 2-D FFT of each channel is split into `bands`
    radial frequency bands of equal width (|f| / |f|max); one band per sample is
    zeroed and the image transformed back. The band is drawn with probabilities
    p = softmax(d / temperature), d_k = |log P_real(k) - log P_fake(k)| where
    P_b(k) is an EMA (`decay`) of the mean power of band k on real / fake images:
    the bands where fakes differ most from reals are hidden most often, so D cannot
    lean on one spectral shortcut, while the clean main loss still sees every band.
    The statistics are updated with this step's batch before drawing;
  * balance between real and fake: sample i of the real batch and sample i of the fake
    batch get the *same* spatial mask and the *same* spectral band, so the masking
    carries no real/fake signal;
  * losses: the trainer's D loss on the masked pairs,
        penalty = weight * (spatial_weight * L_D(D(m*x_r), D(m*x_f))
                            + spectral_weight * L_D(D(S_k x_r), D(S_k x_f)))
    four extra D passes (no double backward). The generator is trained on the clean
    D only (masking G's loss too would need a trainer hook).

Random draws use torch's global generator on the CPU (seeded and checkpointed by
the trainer), so runs are reproducible on any device.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor

from .base import DRegularizer, RegContext, register
from .nice import d_loss_for


def shifted_spatial_mask(drop: Tensor, shifts: Tensor, cell: int, h: int, w: int) -> Tensor:
    """Keep-mask [N, 1, h, w] (1 keep, 0 masked) from per-sample dropped cells and grid shifts.

    drop: bool [N, G, G] (G = cells per side of the shifted grid); shifts: int [N, 2] (sy, sx).
    Pixel (y, x) of sample i lies in cell ((y + sy_i) // cell, (x + sx_i) // cell).
    """
    n, g, _ = drop.shape
    cy = (torch.arange(h)[None, :] + shifts[:, :1]) // cell  # [N, h]
    cx = (torch.arange(w)[None, :] + shifts[:, 1:]) // cell  # [N, w]
    idx = (cy[:, :, None] * g + cx[:, None, :]).clamp_(max=g * g - 1)  # [N, h, w]
    dropped = torch.gather(drop.reshape(n, -1), 1, idx.reshape(n, -1)).reshape(n, 1, h, w)
    return (~dropped).float()


def radial_bands(h: int, w: int, bands: int) -> Tensor:
    """Band index [h, w] of each FFT coefficient: floor(|f| / |f|max * bands), |f|max = sqrt(0.5^2 + 0.5^2)."""
    fy = torch.fft.fftfreq(h)[:, None]
    fx = torch.fft.fftfreq(w)[None, :]
    r = (fy.square() + fx.square()).sqrt() / math.sqrt(0.5)
    return (r * bands).floor().long().clamp_(max=bands - 1)


def spectral_mask(x: Tensor, band_map: Tensor, band: Tensor) -> Tensor:
    """Zero band `band[i]` of sample i's 2-D spectrum (every channel) and return the real image."""
    keep = (band_map.to(x.device)[None] != band.to(x.device)[:, None, None]).to(x.dtype)  # [N, h, w]
    spec = torch.fft.fft2(x) * keep[:, None]
    return torch.fft.ifft2(spec).real.to(x.dtype)


def band_log_power(x: Tensor, band_map: Tensor, bands: int) -> Tensor:
    """log of the mean power |FFT|^2 / (h*w) of each band, averaged over the batch and channels: [bands]."""
    power = torch.fft.fft2(x.detach().float()).abs().square().mean(dim=(0, 1)) / (x.shape[-1] * x.shape[-2])
    flat = band_map.to(x.device).flatten()
    sums = torch.zeros(bands, device=x.device).index_add_(0, flat, power.flatten())
    counts = torch.bincount(flat, minlength=bands).clamp_(min=1).float()
    return (sums / counts + 1e-8).log().cpu()


@register
class MaskedGAN(DRegularizer):
    name = "maskedgan"
    description = (
        "MaskedGAN (from the abstract): extra D losses on shifted spatial patch masks (spatial_ratio of a "
        "patches x patches grid, random shift) and on one radial FFT band masked per image, the band drawn "
        "with probabilities softmax(|log P_real - log P_fake| / temperature); same masks for real and fake."
    )
    # all ours (abstract only, no official code; docs/regularizers.md lists each choice)
    params = {
        "patches": 8.0,
        "spatial_ratio": 0.25,
        "bands": 8.0,
        "decay": 0.99,
        "temperature": 1.0,
        "spatial_weight": 0.5,
        "spectral_weight": 0.5,
    }
    default_weight = 1.0  # ours, untuned: the two masked losses together weigh as much as the clean one
    default_interval = 1  # ours: the band statistics are EMAs updated every step

    def __init__(self, weight: float, interval: int = 1, **params: float) -> None:
        super().__init__(weight, interval, **params)
        hp = self.hparams
        if hp["patches"] < 1 or hp["bands"] < 2 or not 0 <= hp["spatial_ratio"] <= 1:
            raise ValueError("maskedgan: patches must be >= 1, bands >= 2 and spatial_ratio in [0, 1]")
        if not 0 <= hp["decay"] < 1 or hp["temperature"] <= 0:
            raise ValueError("maskedgan: decay must be in [0, 1) and temperature > 0")
        self.patches, self.bands = int(hp["patches"]), int(hp["bands"])
        self.log_power_real: Tensor | None = None  # [bands] EMAs of log band power
        self.log_power_fake: Tensor | None = None

    # --- the adaptive band probabilities -------------------------------------------------

    def update_spectrum(self, real: Tensor, fake: Tensor, band_map: Tensor) -> None:
        lr, lf = band_log_power(real, band_map, self.bands), band_log_power(fake, band_map, self.bands)
        if self.log_power_real is None or self.log_power_fake is None or self.log_power_real.numel() != self.bands:
            self.log_power_real, self.log_power_fake = lr, lf
        else:
            d = self.hparams["decay"]
            self.log_power_real = d * self.log_power_real + (1 - d) * lr
            self.log_power_fake = d * self.log_power_fake + (1 - d) * lf

    def band_probabilities(self) -> Tensor:
        if self.log_power_real is None or self.log_power_fake is None:
            return torch.full((self.bands,), 1.0 / self.bands)
        gap = (self.log_power_real - self.log_power_fake).abs()
        return torch.softmax(gap / self.hparams["temperature"], dim=0)

    # --- masks -----------------------------------------------------------------------------

    def draw_masks(self, n: int, h: int, w: int) -> tuple[Tensor, Tensor]:
        """(spatial keep-mask [n, 1, h, w], spectral band [n]); draws in this order on the CPU:
        randint shifts [n, 2], rand cell scores [n, G*G], multinomial bands [n]."""
        cell = max(1, h // self.patches)
        g = -(-h // cell) + 1  # cells per side of the shifted grid
        shifts = torch.randint(0, cell, (n, 2))
        scores = torch.rand(n, g * g)
        k = int(round(self.hparams["spatial_ratio"] * g * g))
        drop = torch.zeros(n, g * g, dtype=torch.bool)
        if k > 0:
            drop.scatter_(1, scores.argsort(dim=1)[:, :k], True)
        mask = shifted_spatial_mask(drop.reshape(n, g, g), shifts, cell, h, w)
        band = torch.multinomial(self.band_probabilities(), n, replacement=True)
        return mask, band

    # --- the penalty -------------------------------------------------------------------------

    def penalty(self, ctx: RegContext) -> tuple[Tensor, dict[str, float]]:
        hp = self.hparams
        x_r, x_f = ctx.real_aug.detach(), ctx.fake_aug.detach()
        h, w = x_r.shape[-2:]
        band_map = radial_bands(h, w, self.bands)
        self.update_spectrum(x_r, x_f, band_map)
        n = max(x_r.shape[0], x_f.shape[0])
        mask, band = self.draw_masks(n, h, w)
        mask = mask.to(device=x_r.device, dtype=x_r.dtype)
        d_loss = d_loss_for(ctx)
        nr, nf = x_r.shape[0], x_f.shape[0]
        zero = x_r.new_zeros(())
        l_sp = l_fr = zero
        # Masked images keep their labels (ctx.d_real / d_fake: plain D(x) for an unconditional D).
        if hp["spatial_weight"]:
            l_sp = d_loss(ctx.d_real(x_r * mask[:nr]), ctx.d_fake(x_f * mask[:nf]))
        if hp["spectral_weight"]:
            l_fr = d_loss(ctx.d_real(spectral_mask(x_r, band_map, band[:nr])),
                          ctx.d_fake(spectral_mask(x_f, band_map, band[:nf])))
        loss = (hp["spatial_weight"] * l_sp + hp["spectral_weight"] * l_fr) * self.weight
        probs = self.band_probabilities()
        stats = {
            "maskedgan_spatial": float(l_sp.detach()),
            "maskedgan_spectral": float(l_fr.detach()),
            "maskedgan_band_p_max": float(probs.max()),
        }
        return loss, stats

    def extra_state(self) -> dict[str, Tensor]:
        if self.log_power_real is None or self.log_power_fake is None:
            return {}
        return {"log_power_real": self.log_power_real.clone(), "log_power_fake": self.log_power_fake.clone()}

    def load_extra_state(self, state: dict[str, Tensor]) -> None:
        self.log_power_real = state.get("log_power_real")
        self.log_power_fake = state.get("log_power_fake")
