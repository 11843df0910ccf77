"""Where a training minibatch spends its time: torch.profiler over our minibatches, by op and input shape.

    python bench/profile_step.py --res 64 --cbase 4096 --cmax 256 --map 2 --zdim 512 --batch 8 \\
        --augment none --r1-gamma 10 --r1-interval 16 [--precision bf16] [--out bench/results/profile.json]

Profiles one lazy-regularization cycle (`--r1-interval` minibatches, after warm-up) on one thread and
writes the ops with the most self CPU time, each with its count, its input shapes and, where torch
knows its FLOPs, the GFLOP/s it ran at (compare with bench/roofline.py's peak). Read the elementwise rows
with care: on some CPUs the profiler inflates their self time many times over (docs/speed.md);
bench/ablate_activations.py measures what the activation passes cost by taking them away.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from pathlib import Path

import torch
from torch.profiler import ProfilerActivity, profile

sys.path.insert(0, str(Path(__file__).resolve().parent))

from side_by_side import Arm, _build_ours  # noqa: E402
from train_step import add_spec_arguments, spec_for  # noqa: E402


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_spec_arguments(ap)
    ap.add_argument("--precision", choices=["float32", "bf16"], default="float32")
    ap.add_argument("--warmup", type=int, default=4)
    ap.add_argument("--top", type=int, default=25)
    ap.add_argument("--by-shape", action="store_true", help="one row per (op, input shapes)")
    ap.add_argument("--out", type=Path, default=Path("bench/results/profile.json"))
    args = ap.parse_args()
    torch.set_num_threads(1)

    _, spec = spec_for(args)
    root = str(Path(__file__).resolve().parent.parent)
    with tempfile.TemporaryDirectory() as tmp:
        runner = _build_ours(Arm("ours", "ours", root, spec, perf={"precision": args.precision}), tmp, "cpu")
        for _ in range(args.warmup):
            runner.step()
        with profile(activities=[ProfilerActivity.CPU], record_shapes=args.by_shape, with_flops=True) as prof:
            for _ in range(spec["r1_interval"]):
                runner.step()
    events = prof.key_averages(group_by_input_shape=args.by_shape)
    total_us = sum(e.self_cpu_time_total for e in events)
    rows = []
    for e in sorted(events, key=lambda e: e.self_cpu_time_total, reverse=True)[: args.top]:
        ms = e.self_cpu_time_total / 1000
        rows.append({"op": e.key, "shapes": str(e.input_shapes) if args.by_shape else None, "count": e.count,
                     "self_ms": round(ms, 1), "share": round(e.self_cpu_time_total / total_us, 4),
                     "gflops_per_s": round(e.flops / 1e9 / (ms / 1000), 1) if e.flops and ms else None})
    kimg = spec["r1_interval"] * spec["batch_size"] / 1000
    result = {"spec": spec, "precision": args.precision, "minibatches": spec["r1_interval"],
              "self_cpu_s_per_kimg": round(total_us / 1e6 / kimg, 1), "top": rows}
    for r in rows:
        print(f"{r['share'] * 100:5.1f}%  {r['self_ms']:9.1f} ms  x{r['count']:<5} "
              f"{(str(r['gflops_per_s']) + ' GF/s') if r['gflops_per_s'] else '':>12}  {r['op']} {r['shapes'] or ''}")
    print(f"self CPU s per kimg: {result['self_cpu_s_per_kimg']}")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
