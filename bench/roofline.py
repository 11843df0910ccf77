"""How close a training step runs to what this CPU can do: FLOPs per kimg against measured peak.

    python bench/roofline.py --res 64 --cbase 4096 --cmax 256 --map 2 --zdim 512 --batch 8 \\
        --augment none --r1-gamma 10 --r1-interval 16 --side-by-side bench/results/side_by_side_nv64.json

Counts the floating-point operations of our training minibatches (torch.utils.flop_counter:
convolutions, matmuls and their backward and double backward) over one lazy-regularization cycle
(`--r1-interval` minibatches, so R1 is counted at its real rate), and measures this core's peak with
one thread: a large matmul and 3x3 convolutions shaped like the network's, in float32 and bf16.
With a side-by-side JSON (bench/train_step.py --nvlabs) it turns each arm's CPU seconds per kimg
into achieved GFLOP/s and a fraction of the best float32 rate measured here, and says what a target ratio to NVlabs would require.

NVlabs' minibatch does at least these FLOPs: the same passes, plus a second forward of D on the
reals at each R1 step (their Dmain and Dreg phases run separately under lazy regularization).
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

import torch
import torch.nn.functional as F
from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils.flop_counter import flop_registry

sys.path.insert(0, str(Path(__file__).resolve().parent))  # train_step adds the repository root

from side_by_side import Arm, _build_ours  # noqa: E402
from train_step import add_spec_arguments, spec_for  # noqa: E402

from gan_core.versions import cpu_model, runtime_versions  # noqa: E402


def _best_seconds(fn, repeats: int) -> float:
    fn()  # warm-up: oneDNN picks and caches its kernel on the first call
    best = float("inf")
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - t0)
    return best


def matmul_gflops(dtype: torch.dtype, n: int = 2048, repeats: int = 5) -> float:
    a = torch.randn(n, n).to(dtype)
    b = torch.randn(n, n).to(dtype)
    return 2 * n**3 / _best_seconds(lambda: torch.mm(a, b), repeats) / 1e9


def conv_gflops(batch: int, channels: int, size: int, dtype: torch.dtype = torch.float32,
                repeats: int = 5) -> dict[str, float]:
    """A 3x3 convolution as the network runs it (channels-last): forward, and forward + backward."""
    x = torch.randn(batch, channels, size, size).to(dtype).contiguous(memory_format=torch.channels_last)
    w = torch.randn(channels, channels, 3, 3).to(dtype).contiguous(memory_format=torch.channels_last)
    x.requires_grad_(True)
    w.requires_grad_(True)
    flops = 2 * batch * channels * channels * 9 * size * size

    def fwd_bwd() -> None:
        y = F.conv2d(x, w, padding=1)
        y.backward(torch.ones_like(y))

    with torch.no_grad():
        fwd = flops / _best_seconds(lambda: F.conv2d(x, w, padding=1), repeats) / 1e9
    both = 3 * flops / _best_seconds(fwd_bwd, repeats) / 1e9
    return {"forward": round(fwd, 1), "forward_backward": round(both, 1)}


class FlopCount(TorchDispatchMode):
    """Adds up torch's own per-op FLOP formulas (torch.utils.flop_counter) for every op dispatched.
    FlopCounterMode itself cannot be used here: its module tracker fails on our G's hooks."""

    def __init__(self) -> None:
        super().__init__()
        self.total = 0

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):  # type: ignore[no-untyped-def]
        kwargs = kwargs or {}
        out = func(*args, **kwargs)
        count = flop_registry.get(func._overloadpacket)
        if count is not None:
            self.total += count(*args, **kwargs, out_val=out)
        return out


def flops_per_kimg(spec: dict, minibatches: int) -> dict[str, float]:
    """FLOPs per kimg of our minibatches 1..`minibatches` (after an uncounted minibatch 0): with
    `minibatches` = the R1 interval that is one whole lazy cycle, R1 falling on its last minibatch."""
    with tempfile.TemporaryDirectory() as tmp:
        runner = _build_ours(Arm("ours", "ours", str(Path(__file__).resolve().parent.parent), spec), tmp, "cpu")
        runner.step()  # outside the count: the first step builds caches (and measures DIG, once per tick)
        with FlopCount() as counter:
            for _ in range(minibatches):
                runner.step()
        total = counter.total
    kimg = minibatches * spec["batch_size"] / 1000
    return {"flops_per_kimg": total / kimg, "minibatches_counted": minibatches}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_spec_arguments(ap)
    ap.add_argument("--side-by-side", type=Path, help="a bench/train_step.py --nvlabs JSON to read CPU s/kimg from")
    ap.add_argument("--target-ratio", type=float, default=0.6, help="ours / NVlabs the issue asks for")
    ap.add_argument("--out", type=Path, default=Path("bench/results/roofline.json"))
    args = ap.parse_args()
    torch.set_num_threads(1)  # the side-by-side runs one thread per arm

    _, spec = spec_for(args)
    counted = flops_per_kimg(spec, spec["r1_interval"])
    tflop = counted["flops_per_kimg"] / 1e12
    batch = spec["batch_size"]
    peak: dict = {}
    for label, dtype in (("fp32", torch.float32), ("bf16", torch.bfloat16)):
        peak[f"matmul_{label}"] = round(matmul_gflops(dtype), 1)
        peak[f"conv3x3_{label}_256ch_16x16"] = conv_gflops(batch, 256, 16, dtype)
        peak[f"conv3x3_{label}_64ch_64x64"] = conv_gflops(batch, 64, 64, dtype)
    # The best float32 rate measured here stands for the core's peak (a matmul or a conv, whichever is faster).
    best = max([peak["matmul_fp32"]] + [v for k, d in peak.items() if k.startswith("conv3x3_fp32") for v in d.values()])
    peak["best_fp32"] = best
    result: dict = {"spec": spec, "torch": torch.__version__, "threads": 1,
                    "machine": cpu_model(), "versions": runtime_versions("cpu"),
                    "tflop_per_kimg": round(tflop, 3), **counted, "peak_gflops": peak,
                    "seconds_per_kimg_at_fp32_peak": round(tflop * 1e3 / best, 1)}
    if args.side_by_side:
        sbs = json.loads(args.side_by_side.read_text())
        arms = {}
        for name, arm in sbs["arms"].items():
            s = arm["median_s_per_kimg_cpu"]
            gflops = tflop * 1e3 / s
            arms[name] = {"cpu_s_per_kimg": s, "gflops": round(gflops, 1),
                          "fraction_of_fp32_peak": round(gflops / best, 3)}
        result["arms"] = arms
        if "nvlabs" in arms:
            target = args.target_ratio * arms["nvlabs"]["cpu_s_per_kimg"]
            needed = tflop * 1e3 / target
            result["target"] = {"ratio": args.target_ratio, "cpu_s_per_kimg": round(target, 1),
                                "gflops_needed": round(needed, 1),
                                "fraction_of_fp32_peak_needed": round(needed / best, 3)}
    print(json.dumps(result, indent=2))
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
