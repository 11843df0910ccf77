"""Where the window-matmul weight gradient pays on this CPU: one stride-2 layer, oneDNN against
`gan_core.networks.strided_conv`, forward + input and weight gradients as in training.

    python bench/strided_layers.py [--rounds 7] [--quick] [--out bench/results/strided_layers.json]

The layers are StyleGAN2's resampling convolutions: D's 3x3 stride-2 down-convolutions (after the 4x4
blur, so the input side is 2 * out + 1) at D's joint real + fake batch and at G's batch (the D pass of a G
step), and G's 3x3 stride-2 transposed up-convolutions, for the issue-15 64x64 network, `low-shot-256`'s
widths and the CPU presets' narrow ones. Both arms compute the same function; the JSON has each one's median
seconds, their ratio (below 1: the matmul is faster), the gate `gan_core.networks.strided_conv.eligible` applies
(MIN_CHANNELS, MIN_WORK), and the CPU.
"""

from __future__ import annotations

import sys
from pathlib import Path

import torch
import torch.nn.functional as F

sys.path.insert(0, str(Path(__file__).resolve().parent))

from layer_bench import run_layer_bench, time_pair  # noqa: E402

from gan_core.networks import strided_conv  # noqa: E402

# (kind, batch, in channels, out channels, input side): "down" = D's conv (input side 2 * out + 1),
# "up" = G's transposed conv (output side 2 * in + 1).
SHAPES = [
    # the issue-15 network: D joint (16) and G-step (8) batches, G at 8
    ("down", 16, 64, 128, 65), ("down", 16, 128, 256, 33), ("down", 16, 256, 256, 17), ("down", 16, 256, 256, 9),
    ("down", 8, 64, 128, 65), ("down", 8, 128, 256, 33),
    ("up", 8, 256, 256, 4), ("up", 8, 256, 256, 8), ("up", 8, 256, 128, 16), ("up", 8, 128, 64, 32),
    # low-shot-256 (batch 16; D joint 32), the widest and the largest layers
    ("down", 32, 128, 256, 129), ("down", 32, 512, 512, 33), ("up", 16, 512, 512, 16), ("up", 16, 256, 128, 64),
    # cpu-tiny (16-32 channels) and cpu-faces (32-128) around their sizes
    ("down", 16, 16, 32, 65), ("down", 16, 32, 32, 33), ("up", 8, 32, 32, 16), ("up", 8, 32, 16, 32),
    ("down", 32, 32, 64, 33), ("down", 32, 64, 128, 17), ("down", 32, 128, 128, 9),
    ("up", 16, 128, 128, 4), ("up", 16, 128, 64, 8), ("up", 16, 64, 32, 16),
]
QUICK_SHAPES = [("down", 4, 32, 32, 17), ("up", 4, 256, 256, 16)]


def _fwd_bwd(x: torch.Tensor, w: torch.Tensor, grad: torch.Tensor, kind: str, window: bool) -> None:
    if window:
        y = strided_conv.conv2d(x, w, None, 2) if kind == "down" else strided_conv.conv_transpose2d(x, w, 2)
    else:
        y = F.conv2d(x, w, stride=2) if kind == "down" else F.conv_transpose2d(x, w, stride=2)
    torch.autograd.grad(y, [x, w], grad)


def time_layer(kind: str, batch: int, cin: int, cout: int, side: int, rounds: int) -> dict:
    gen = torch.Generator().manual_seed(0)
    cl = torch.channels_last
    x = torch.randn(batch, cin, side, side, generator=gen).to(memory_format=cl).requires_grad_(True)
    wshape = (cout, cin, 3, 3) if kind == "down" else (cin, cout, 3, 3)
    w = torch.randn(wshape, generator=gen).to(memory_format=cl).requires_grad_(True)
    out_side = (side - 3) // 2 + 1 if kind == "down" else 2 * side + 1
    grad = torch.randn(batch, cout, out_side, out_side, generator=gen).to(memory_format=cl)
    with strided_conv.use_window_matmul():
        gated_on = strided_conv.eligible(x, w, 2, 0, 1, transpose=kind == "up")  # what training would run
    onednn, window, ratio, ratio_range = time_pair(lambda: _fwd_bwd(x, w, grad, kind, False),
                                                   lambda: _fwd_bwd(x, w, grad, kind, True), rounds)
    pixels = out_side**2 if kind == "down" else side**2
    return {"kind": kind, "batch": batch, "in_channels": cin, "out_channels": cout, "side": side,
            "onednn_s": onednn, "window_matmul_s": window, "ratio": ratio, "ratio_range": ratio_range,
            "gflop_fwd_bwd": 3 * 2 * batch * cin * cout * 9 * pixels / 1e9, "gated_on": gated_on}


def main() -> None:
    run_layer_bench(__doc__ or "", "strided_layers", SHAPES, QUICK_SHAPES, time_layer,
                    lambda r: f"{r['kind']:4s} N {r['batch']:2d}  {r['in_channels']:3d} -> {r['out_channels']:3d}  "
                              f"{r['side']:3d}x{r['side']:<3d}  onednn {r['onednn_s'] * 1e3:7.2f} ms  "
                              f"window matmul {r['window_matmul_s'] * 1e3:7.2f} ms",
                    {"min_channels": strided_conv.MIN_CHANNELS, "min_work": strided_conv.MIN_WORK})


if __name__ == "__main__":
    main()
