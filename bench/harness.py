"""Shared machinery for the quality benchmarks: arms x seeds x groups as a resumable grid
(bench/grid.py), reported as JSON, markdown tables with per-seed values and paired differences,
and curves (bench/report.py).

`bench/quality.py` (DigGAN vs. baseline, the overfitting protocol and the paper's GPU protocol)
and `bench/compare.py` (every regularizer, every backbone) are front ends that define the arms.
"""

from __future__ import annotations

import copy
import json
import os
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from grid import Grid, RunSpec, run_grid, slug  # noqa: E402
from grid import _write_text as write_text  # noqa: E402
from report import group_markdown, groups_of, plot_group, windows_markdown  # noqa: E402

from gan_core.config import TrainConfig  # noqa: E402

DATASETS_DIR = Path(__file__).resolve().parent.parent.parent / "shared" / "datasets"
DEFAULT_DATA = DATASETS_DIR / "100-shot-obama"


@dataclass
class Arm:
    name: str
    configure: Callable[[TrainConfig], None]  # edits a copy of the base config in place


def build_specs(base: TrainConfig, arms: list[Arm], seeds: list[int], group: str, data: Path,
                class_folders: bool = False) -> list[RunSpec]:
    """One RunSpec per (seed, arm), seeds outermost: a partial grid still compares every arm."""
    specs = []
    for seed in seeds:
        for arm in arms:
            cfg = copy.deepcopy(base)
            arm.configure(cfg)
            cfg.seed = seed
            specs.append(RunSpec(group, arm.name, seed, cfg, data, class_folders))
    return specs


class Reporter:
    """Rewrites results.json, results.md and curves-<group>.png under `out` after every step."""

    def __init__(self, out: Path, title: str, pairs: list[tuple[str, str]], meta: dict[str, Any],
                 group_titles: dict[str, str] | None = None) -> None:
        self.out, self.title, self.pairs, self.meta = out, title, pairs, meta
        self.group_titles = group_titles or {}
        self.t0 = time.perf_counter()

    def __call__(self, records: list[dict[str, Any]]) -> None:
        self.out.mkdir(parents=True, exist_ok=True)
        result = {"title": self.title, **self.meta, "wall_seconds_this_sitting": round(time.perf_counter() - self.t0, 1),
                  "runs": records}
        write_text(self.out / "results.json", json.dumps(result, indent=1))
        parts = [f"## {self.title}", ""]
        for g in groups_of(records):
            parts.append(group_markdown(records, g, self.pairs, self.group_titles.get(g, g)))
            parts.append(windows_markdown(records, g))
            parts.append(f"![curves](curves-{slug(g)}.png)\n")
            try:
                png = self.out / f"curves-{slug(g)}.png"
                tmp = png.with_name(f".{os.getpid()}.{png.name}")
                plot_group(records, g, tmp, self.group_titles.get(g, g))
                if tmp.exists():
                    os.replace(tmp, png)
            except Exception as exc:  # noqa: BLE001  a figure must never stop the grid
                print(f"  plot failed: {exc}", flush=True)
        write_text(self.out / "results.md", "\n".join(parts))


def run_arm_grid(specs: list[RunSpec], out: Path, device: str, final_num_gen: int, title: str,
                 pairs: list[tuple[str, str]] | None = None, phases: tuple[str, ...] = ("train", "score"),
                 prune_checkpoints: bool = False, meta: dict[str, Any] | None = None,
                 group_titles: dict[str, str] | None = None,
                 work: Callable[[RunSpec], bool] | None = None,
                 records_dir: Path | None = None) -> list[dict[str, Any]]:
    grid = Grid(specs, out, device=device, final_num_gen=final_num_gen, prune_checkpoints=prune_checkpoints, work=work,
                records_dir=records_dir)
    reporter = Reporter(out, title, pairs or [], {"device": device, "final_num_gen": final_num_gen, **(meta or {})},
                        group_titles)
    return run_grid(grid, reporter, phases)
