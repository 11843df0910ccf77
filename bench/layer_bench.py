"""What the per-layer benchmarks (bench/winograd_layers.py, bench/strided_layers.py) share: two implementations of one
layer timed in alternation, and the command line that runs a list of layer shapes and writes JSON."""

from __future__ import annotations

import argparse
import json
import statistics
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import torch

from gan_core.config import PerfConfig
from gan_core.training.perf import reuse_host_memory
from gan_core.versions import runtime_versions


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


def run_layer_bench(doc: str, name: str, shapes: Sequence[tuple], quick_shapes: Sequence[tuple],
                    time_layer: Callable[..., dict], describe: Callable[[dict], str], gate: dict[str, Any]) -> None:
    """Parse the shared flags, time `time_layer(*shape, rounds)` for every shape (one line each, `describe(row)`),
    and write `{"benchmark": name, ..., "gate": gate, "layers": rows}` to --out."""
    ap = argparse.ArgumentParser(description=doc, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--rounds", type=int, default=7)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--quick", action="store_true", help="two small shapes, three rounds (a check of the script)")
    ap.add_argument("--out", type=Path, default=Path(f"bench/results/{name}.json"))
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    reuse_host_memory(PerfConfig(), torch.device("cpu"))  # as in a CPU training step
    shapes, rounds = (quick_shapes, 3) if args.quick else (shapes, args.rounds)
    layers = []
    for shape in shapes:
        row = time_layer(*shape, rounds)
        layers.append(row)
        print(f"{describe(row)}  ratio {row['ratio']:.2f}{'  (gated on)' if row['gated_on'] else ''}", flush=True)
    result = {"benchmark": name, "threads": args.threads, "rounds": rounds, "gate": gate,
              "versions": runtime_versions(), "layers": layers}
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2) + "\n")
    print(f"wrote {args.out}")
