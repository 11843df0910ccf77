"""Shared machinery for quality benchmarks: train a grid of arms x seeds at a
fixed budget, score each run with KID/FID against the training set, and write
JSON plus a markdown table (mean, spread, wall time, DIG over time).

`bench/quality.py` (DigGAN vs. baseline) and `bench/compare.py` (every
regularizer) are thin front ends that define the arms.
"""

from __future__ import annotations

import copy
import json
import statistics
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from gan_core.config import CONDITIONAL_ARCHS, TrainConfig, config_to_dict  # noqa: E402
from gan_core.data import PreparedDataset  # noqa: E402
from gan_core.training import Trainer, TrainingCallbacks  # noqa: E402

DEFAULT_DATA = Path(__file__).resolve().parent.parent.parent / "shared" / "datasets" / "100-shot-obama"


@dataclass
class Arm:
    name: str
    configure: Callable[[TrainConfig], None]  # edits a copy of the base config in place


class _TickLog(TrainingCallbacks):
    def __init__(self) -> None:
        self.ticks: list[dict[str, Any]] = []

    def on_tick(self, stats: dict[str, Any]) -> None:
        self.ticks.append(stats)


def run_one(base: TrainConfig, arm: Arm, seed: int, dataset: PreparedDataset, out_dir: Path, device: str,
            num_gen: int, real_features: Any) -> dict[str, Any]:
    from gan_core.metrics import compute_metrics

    cfg = copy.deepcopy(base)
    arm.configure(cfg)
    cfg.seed = seed
    cfg.snapshot_ticks = 10**9  # only the final snapshot
    run_dir = out_dir / f"{arm.name}-seed{seed}"
    log = _TickLog()
    t0 = time.perf_counter()
    trainer = Trainer(cfg, dataset, run_dir, device=device, callbacks=log)
    trainer.run()
    train_s = time.perf_counter() - t0
    t1 = time.perf_counter()
    metrics = compute_metrics(trainer.G_ema, real_features, metrics=("kid", "fid"), num_gen=num_gen, device=trainer.device)
    return {
        "arm": arm.name,
        "seed": seed,
        "kid": metrics.get("kid"),
        "kid_std_err": metrics.get("kid_std_err"),
        "fid": metrics.get("fid"),
        "train_seconds": round(train_s, 1),
        "metric_seconds": round(time.perf_counter() - t1, 1),
        "final_augment_p": log.ticks[-1]["augment_p"] if log.ticks else None,
        "dig_over_kimg": [[t["kimg"], t["dig"]] for t in log.ticks],
        "grad_norms_over_kimg": [[t["kimg"], t["grad_norm_real"], t["grad_norm_fake"]] for t in log.ticks],
        "config": config_to_dict(cfg),
        "grid": str(run_dir / "grids"),
    }


def summarise(runs: list[dict[str, Any]], arms: list[Arm]) -> list[dict[str, Any]]:
    rows = []
    for arm in arms:
        rs = [r for r in runs if r["arm"] == arm.name]
        if not rs:
            continue
        row: dict[str, Any] = {"arm": arm.name, "runs": len(rs)}
        for key in ("kid", "fid", "train_seconds"):
            vals = [r[key] for r in rs if r[key] is not None]
            row[f"{key}_mean"] = statistics.fmean(vals) if vals else None
            row[f"{key}_std"] = statistics.stdev(vals) if len(vals) > 1 else 0.0
        row["final_dig_mean"] = statistics.fmean(
            [r["dig_over_kimg"][-1][1] for r in rs if r["dig_over_kimg"] and r["dig_over_kimg"][-1][1] is not None]
            or [float("nan")]
        )
        rows.append(row)
    return rows


def markdown_table(rows: list[dict[str, Any]], header: str) -> str:
    lines = [header, "", "| arm | runs | KID x1e3 (mean ± sd) | FID (mean ± sd) | final DIG | train s/run |",
             "| --- | --- | --- | --- | --- | --- |"]
    for r in rows:
        kid = f"{r['kid_mean'] * 1e3:.2f} ± {r['kid_std'] * 1e3:.2f}" if r["kid_mean"] is not None else "-"
        fid = f"{r['fid_mean']:.1f} ± {r['fid_std']:.1f}" if r["fid_mean"] is not None else "-"
        lines.append(f"| {r['arm']} | {r['runs']} | {kid} | {fid} | {r['final_dig_mean']:.3g} | "
                     f"{r['train_seconds_mean']:.0f} |")
    return "\n".join(lines) + "\n"


def plot_dig(runs: list[dict[str, Any]], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(9, 4))
    arms = sorted({r["arm"] for r in runs})
    colors = dict(zip(arms, plt.rcParams["axes.prop_cycle"].by_key()["color"] * 4))
    for r in runs:
        pts = [(k, d) for k, d in r["dig_over_kimg"] if d is not None]
        if pts:
            ax.plot(*zip(*pts), color=colors[r["arm"]], alpha=0.7,
                    label=r["arm"] if r["seed"] == min(x["seed"] for x in runs if x["arm"] == r["arm"]) else None)
    ax.set_xlabel("kimg")
    ax.set_ylabel("DIG (mean squared gradient-norm gap)")
    ax.set_yscale("log")
    ax.legend(loc="upper left", bbox_to_anchor=(1.01, 1.0), fontsize="small")  # outside: ten arms hide the curves
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def run_grid(base: TrainConfig, arms: list[Arm], seeds: list[int], data: Path, out_dir: Path, device: str,
             num_gen: int, title: str) -> dict[str, Any]:
    from gan_core.data import prepare_dataset
    from gan_core.metrics import FeatureExtractor

    out_dir.mkdir(parents=True, exist_ok=True)
    # A conditional backbone (BigGAN) reads one folder per class as labels.
    conditional = base.network.arch in CONDITIONAL_ARCHS
    dataset = prepare_dataset(data, resolution=base.network.resolution, class_folders=conditional)
    extractor = FeatureExtractor(device=device)
    real_features = extractor.features_from_uint8(dataset.images)
    runs: list[dict[str, Any]] = []
    t0 = time.perf_counter()
    total = len(arms) * len(seeds)
    for seed in seeds:  # seeds outermost: a partial grid still compares every arm
        for arm in arms:
            r = run_one(base, arm, seed, dataset, out_dir, device, num_gen, real_features)
            runs.append(r)
            print(f"[{len(runs)}/{total}] {arm.name} seed={seed} kid={r['kid']:.4f} fid={r['fid']:.1f} "
                  f"train={r['train_seconds']:.0f}s", flush=True)
            rows = summarise(runs, arms)
            result = {"title": title, "data": str(data), "device": device, "num_gen": num_gen,
                      "kimg": base.kimg, "resolution": base.network.resolution, "seeds": seeds,
                      "wall_seconds": round(time.perf_counter() - t0, 1), "summary": rows, "runs": runs}
            (out_dir / "results.json").write_text(json.dumps(result, indent=2))
            (out_dir / "results.md").write_text(markdown_table(rows, f"## {title}"))
    plot_dig(runs, out_dir / "dig.png")
    return result
