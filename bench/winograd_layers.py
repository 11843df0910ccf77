"""Where Winograd F(4x4, 3x3) pays on this CPU: one 3x3 layer, direct against Winograd, forward + backward.

    python bench/winograd_layers.py [--rounds 7] [--quick] [--out bench/results/winograd_layers.json]

For each layer shape (batch, channels in = out, side) of the StyleGAN2 networks we train (the issue-15
64x64 network: G batch 8, D's joint real + fake batch 16; the low-shot-256 widths), the two
implementations run in alternation, `--rounds` times, one thread, input and weight gradients taken as in
training. The JSON has the median seconds of each and their ratio (below 1: Winograd is faster), the
gate `gan_core.networks.winograd.eligible` applies (MIN_CHANNELS, MIN_SIDE, MIN_WORK), and the CPU.
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from collections.abc import Callable
from pathlib import Path

import torch
import torch.nn.functional as F

from gan_core.config import PerfConfig
from gan_core.networks.winograd import MIN_CHANNELS, MIN_SIDE, MIN_WORK, eligible, use_winograd, winograd_conv3x3
from gan_core.training.perf import reuse_host_memory
from gan_core.versions import runtime_versions

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


def time_pair(before: Callable[[], None], after: Callable[[], None], rounds: int) -> tuple[float, float, float, list[float]]:
    """`before` and `after` in alternation, `rounds` times after one warm-up each (allocator, oneDNN primitive
    caches): their median seconds, the median of the per-round ratios after / before, and the ratios' range."""
    seconds: tuple[list[float], list[float]] = ([], [])
    before()
    after()
    for _ in range(rounds):
        for arm, out in zip((before, after), seconds, strict=True):
            t0 = time.perf_counter()
            arm()
            out.append(time.perf_counter() - t0)
    ratios = [b / a for a, b in zip(*seconds, strict=True)]
    return (statistics.median(seconds[0]), statistics.median(seconds[1]), statistics.median(ratios),
            [min(ratios), max(ratios)])


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
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--rounds", type=int, default=7)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--quick", action="store_true", help="two small shapes, three rounds (a check of the script)")
    ap.add_argument("--out", type=Path, default=Path("bench/results/winograd_layers.json"))
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    reuse_host_memory(PerfConfig(), torch.device("cpu"))  # as in a CPU training step
    shapes, rounds = (QUICK_SHAPES, 3) if args.quick else (SHAPES, args.rounds)
    layers = []
    for batch, channels, side in shapes:
        row = time_layer(batch, channels, side, rounds)
        layers.append(row)
        print(f"N {batch:2d}  C {channels:3d}  {side:2d}x{side:<2d}  direct {row['direct_s'] * 1e3:7.2f} ms  "
              f"winograd {row['winograd_s'] * 1e3:7.2f} ms  ratio {row['ratio']:.2f}"
              f"{'  (gated on)' if row['gated_on'] else ''}", flush=True)
    result = {"benchmark": "winograd_layers", "threads": args.threads, "rounds": rounds,
              "gate": {"min_channels": MIN_CHANNELS, "min_side": MIN_SIDE, "min_work": MIN_WORK},
              "versions": runtime_versions(), "layers": layers}
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2) + "\n")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
