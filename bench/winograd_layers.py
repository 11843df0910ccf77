"""Where Winograd F(4x4, 3x3) pays on this CPU: one 3x3 layer, direct against Winograd, forward + backward.

    python bench/winograd_layers.py [--rounds 7] [--quick] [--out bench/results/winograd_layers.json]

For each layer shape (batch, channels in = out, side) of the StyleGAN2 networks we train (the issue-15
64x64 network: G batch 8, D's joint real + fake batch 16; the low-shot-256 widths), the two
implementations run in alternation, `--rounds` times, one thread, input and weight gradients taken as in
training. The JSON has the median seconds of each and their ratio (below 1: Winograd is faster), the
gate `gan_core.networks.winograd.eligible` applies (MIN_CHANNELS, MIN_SIDE, MIN_WORK), and the CPU.
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from pathlib import Path

import torch
import torch.nn.functional as F

sys.path.insert(0, str(Path(__file__).resolve().parent))

from layer_bench import run_layer_bench, time_pair  # noqa: E402

from gan_core.networks.winograd import (  # noqa: E402
    MIN_CHANNELS,
    MIN_SIDE,
    MIN_WORK,
    eligible,
    use_winograd,
    winograd_conv3x3,
)

# (batch, channels, side): 64x64 net (cbase 4096, cmax 256) at G's batch 8 and D's joint 16, low-shot-256's
# wider layers, then the narrow layers of the CPU presets around the gate.
SHAPES = [(8, 256, 8), (16, 256, 8), (8, 256, 16), (16, 256, 16), (8, 128, 32), (16, 128, 32),
          (8, 64, 64), (16, 64, 64), (8, 512, 16), (8, 512, 32), (8, 256, 64),
          (8, 128, 16), (16, 128, 16), (8, 64, 32), (16, 64, 16), (16, 32, 32), (8, 32, 64), (8, 128, 64),
          (8, 512, 8), (4, 128, 128), (4, 64, 256), (16, 64, 32)]
QUICK_SHAPES = [(4, 64, 64), (4, 32, 16)]


def _fwd_bwd(conv: Callable[[torch.Tensor, torch.Tensor], torch.Tensor], x: torch.Tensor, w: torch.Tensor,
             grad: torch.Tensor) -> None:
    torch.autograd.grad(conv(x, w), [x, w], grad)


def _direct(x: torch.Tensor, w: torch.Tensor) -> torch.Tensor:
    return F.conv2d(x, w, padding=1)


def time_layer(batch: int, channels: int, side: int, rounds: int) -> dict:
    gen = torch.Generator().manual_seed(0)
    x = torch.randn(batch, channels, side, side, generator=gen).to(memory_format=torch.channels_last)
    w = torch.randn(channels, channels, 3, 3, generator=gen).to(memory_format=torch.channels_last)
    x.requires_grad_(True)
    w.requires_grad_(True)
    grad = torch.randn(batch, channels, side, side, generator=gen).to(memory_format=torch.channels_last)
    with use_winograd():
        gated_on = eligible(x, w, padding=1, groups=1)  # what training would run for this layer
    direct, wino, ratio, ratio_range = time_pair(lambda: _fwd_bwd(_direct, x, w, grad),
                                                 lambda: _fwd_bwd(winograd_conv3x3, x, w, grad), rounds)
    return {"batch": batch, "channels": channels, "side": side, "direct_s": direct, "winograd_s": wino,
            "ratio": ratio, "ratio_range": ratio_range,
            "gflop_fwd_bwd": 3 * 2 * batch * channels * channels * 9 * side * side / 1e9,
            "gated_on": gated_on}


def main() -> None:
    run_layer_bench(__doc__ or "", "winograd_layers", SHAPES, QUICK_SHAPES, time_layer,
                    lambda r: f"N {r['batch']:2d}  C {r['channels']:3d}  {r['side']:2d}x{r['side']:<2d}  direct "
                              f"{r['direct_s'] * 1e3:7.2f} ms  winograd {r['winograd_s'] * 1e3:7.2f} ms",
                    {"min_channels": MIN_CHANNELS, "min_side": MIN_SIDE, "min_work": MIN_WORK})


if __name__ == "__main__":
    main()
