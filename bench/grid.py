"""Resumable grids of training runs: train, score, collect.

A grid is a list of `RunSpec`s (group x arm x seed, each with its complete TrainConfig) in
priority order, cut into blocks (`RunSpec.block`, default one block). `run_grid` works through
each block in two phases, and can be killed at any moment and started again with the same command:

1. train: a run with `trained.json` is skipped; one with checkpoints continues from its
   newest readable checkpoint (`Trainer(resume_from=...)`, exact resume), after the tick and
   metric logs are cut back to that checkpoint; one with none starts from scratch. A run asked
   for a longer `kimg` than it was trained to continues from its final checkpoint (a
   continuation: the same in distribution as one long run, not bit-identical to it, since the
   tick boundaries, where DIG is measured, may shift).
2. score: the final checkpoint of every trained run is scored with KID/FID on
   `final_num_gen` generated images (`final.json`); a run already scored with that many is
   skipped (a run scored on another sample size is scored again; the earlier score stays in
   `final-n<N>.json`). Training a whole block first means a partial block already compares
   every arm on the cheap snapshot KID that the trainer computes at every snapshot.

Each run lives in `<out>/<group>/<arm>-seed<k>/` with the trainer's own files (stats.jsonl,
metrics.jsonl, checkpoints/, grids/) plus `config.json` (refused if a re-run asks for a
different config: use another --out), `trained.json` and `final.json`.

Run folders live on one machine (checkpoints are tens of MB). With `Grid.records_dir` set, each
scored run's record (scores, curves, its complete config, the commit that trained it) is also kept in
`<records_dir>/<group>/<arm>-seed<k>.json`, a few KB meant for git: a sitting on a new machine
skips a run kept there with the same config and reports it beside the runs trained here.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from gan_core.config import TrainConfig, config_to_dict  # noqa: E402

CKPT_RE = re.compile(r"ckpt-(\d+\.\d+)\.pt$")


class GridConfigMismatch(RuntimeError):
    """A run folder holds a run of another config; resuming it would mix two protocols."""


@dataclass
class RunSpec:
    group: str  # what runs are compared within: a dataset, a backbone
    arm: str
    seed: int
    cfg: TrainConfig  # complete: seed, kimg, snapshot schedule and metrics already set
    data: Path
    class_folders: bool = False  # BigGAN: one folder per class
    block: str = ""  # run_grid trains, then scores, one block at a time, in order of first appearance

    @property
    def name(self) -> str:
        return f"{slug(self.arm)}-seed{self.seed}"

    def run_dir(self, out: Path) -> Path:
        return out / slug(self.group) / self.name


def slug(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9.+_-]", "_", text)


# ------------------------------------------------------------------ run folders


def checkpoints_newest_first(run_dir: Path) -> list[tuple[float, Path]]:
    found = []
    for p in (run_dir / "checkpoints").glob("ckpt-*.pt"):
        m = CKPT_RE.search(p.name)
        if m:
            found.append((float(m.group(1)), p))
    return sorted(found, reverse=True)


def read_jsonl(path: Path) -> list[dict[str, Any]]:
    if not path.is_file():
        return []
    rows = []
    for line in path.read_text().splitlines():
        try:
            rows.append(json.loads(line))
        except json.JSONDecodeError:  # a line torn by a kill
            continue
    return rows


def cut_logs(run_dir: Path, kimg: float) -> None:
    """Drop log lines written after the checkpoint a run resumes from: the resumed run writes them again."""
    for name in ("stats.jsonl", "metrics.jsonl"):
        path = run_dir / name
        if path.exists():
            keep = [r for r in read_jsonl(path) if r.get("kimg", 0.0) <= kimg + 1e-9]
            _write_text(path, "".join(json.dumps(r) + "\n" for r in keep))


def _write_text(path: Path, text: str) -> None:
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_text(text)
    os.replace(tmp, path)


def write_json(path: Path, obj: Any) -> None:
    _write_text(path, json.dumps(obj, indent=2))


def check_config(run_dir: Path, cfg: TrainConfig) -> None:
    """Write the run's config the first time; refuse a different one later, except a longer `kimg`:
    then the trained run is reopened and continues from its final checkpoint (a run grows over sittings)."""
    path = run_dir / "config.json"
    want = _config_json(cfg)
    if path.exists():
        have = json.loads(path.read_text())
        if have == want:
            return
        diff = _differing_keys(have, want)
        if diff == ["kimg"] and want["kimg"] > have["kimg"]:
            _extend(run_dir, have["kimg"])
            write_json(path, want)
            return
        raise GridConfigMismatch(f"{run_dir} holds a run with another config (differs in {diff}); "
                                 "use another --out, or delete that folder to start it again")
    run_dir.mkdir(parents=True, exist_ok=True)
    write_json(path, want)


def _config_json(cfg: TrainConfig) -> dict[str, Any]:
    """The config as it reads back from JSON (tuples as lists), so it compares equal to a stored one."""
    return json.loads(json.dumps(config_to_dict(cfg)))


def _differing_keys(have: dict[str, Any], want: dict[str, Any]) -> list[str]:
    return sorted(k for k in set(have) | set(want) if have.get(k) != want.get(k))


def _extend(run_dir: Path, old_kimg: float) -> None:
    """Reopen a run trained to `old_kimg`: its scores move aside (kept, named by that length)."""
    for name in ("trained.json", "final.json"):
        src = run_dir / name
        if src.exists():
            os.replace(src, run_dir / f"{src.stem}-kimg{old_kimg:g}.json")
    for old in run_dir.glob("final-n*.json"):
        if "-kimg" not in old.name:
            os.replace(old, run_dir / f"{old.stem}-kimg{old_kimg:g}.json")


def status(run_dir: Path) -> str:
    """'scored', 'trained', 'partial' (has a checkpoint) or 'new'."""
    if (run_dir / "final.json").exists():
        return "scored"
    if (run_dir / "trained.json").exists():
        return "trained"
    return "partial" if checkpoints_newest_first(run_dir) else "new"


# ------------------------------------------------------------------ phases


def train_run(spec: RunSpec, dataset: Any, run_dir: Path, device: str, features_dir: Path,
              prune: bool = False) -> bool:
    """Train (or finish) one run. Returns True if it trained now, False if it was already trained."""
    from gan_core.training import Trainer
    from gan_core.training.checkpoint import CheckpointError
    from gan_core.versions import runtime_versions

    check_config(run_dir, spec.cfg)
    if (run_dir / "trained.json").exists():
        return False
    _share_features(run_dir, features_dir)
    resume, trainer = None, None
    for kimg, path in checkpoints_newest_first(run_dir):
        try:
            trainer = Trainer(spec.cfg, dataset, run_dir, device=device, resume_from=path)
        except CheckpointError as exc:  # torn by a kill during the write: fall back to the one before
            print(f"  {path.name} unreadable ({exc}); trying an older checkpoint", flush=True)
            continue
        resume = kimg
        cut_logs(run_dir, kimg)
        break
    if trainer is None:
        cut_logs(run_dir, -1.0)  # killed before its first checkpoint: start the logs again too
        trainer = Trainer(spec.cfg, dataset, run_dir, device=device)
    t0 = time.perf_counter()
    commit = _git_commit()  # the code that trains it, read before a long run (HEAD may move meanwhile)
    result = trainer.run()
    if result.kimg * 1000 < trainer.total_nimg:
        raise RuntimeError(f"{run_dir}: training stopped at {result.kimg} kimg")
    write_json(run_dir / "trained.json", {
        "kimg": result.kimg, "resumed_from_kimg": resume, "train_seconds": round(trainer.elapsed, 1),
        "wall_seconds_last_sitting": round(time.perf_counter() - t0, 1),
        "threads": _threads(), "commit": commit,
        "runtime": runtime_versions(device),  # with the commit, what a bit-for-bit repeat needs (CPU included)
    })
    if prune:
        prune_checkpoints(run_dir)
    return True


def prune_checkpoints(run_dir: Path) -> None:
    """Keep the final checkpoint (latest.pt) and best.pt; drop the intermediate ones (GPU runs are large)."""
    keep = {os.path.realpath(run_dir / "checkpoints" / n) for n in ("latest.pt", "best.pt")}
    newest = checkpoints_newest_first(run_dir)
    for i, (_, path) in enumerate(newest):
        if i > 0 and not any(os.path.samefile(path, k) for k in keep if os.path.exists(k)):
            path.unlink(missing_ok=True)
            Path(str(path) + ".sha256").unlink(missing_ok=True)


def score_run(run_dir: Path, real_features: Any, num_gen: int, device: str,
              metrics: tuple[str, ...] = ("kid", "fid")) -> bool:
    """KID/FID of the final checkpoint's G_ema on `num_gen` images. Returns False if already scored so."""
    from gan_core.metrics import compute_metrics
    from gan_core.sampling import load_generator

    path = run_dir / "final.json"
    if path.exists():
        have = json.loads(path.read_text())
        if have.get("num_gen") == num_gen and all(m in have for m in metrics):
            return False
    newest = checkpoints_newest_first(run_dir)
    if not (run_dir / "trained.json").exists() or not newest:
        raise RuntimeError(f"{run_dir} is not trained yet")
    kimg, ckpt = newest[0]
    G, _ = load_generator(ckpt, device=device)
    out = compute_metrics(G, real_features, metrics=metrics, num_gen=num_gen, device=device)
    result = {**out, "kimg": kimg, "checkpoint": ckpt.name, "threads": _threads()}
    write_json(run_dir / f"final-n{num_gen}.json", result)
    write_json(path, result)
    return True


def _threads() -> int:
    import torch

    return torch.get_num_threads()


def _share_features(run_dir: Path, features_dir: Path) -> None:
    """The trainer caches the real images' Inception features under run_dir/features: point every
    run of a group at one folder, so the 100 real images go through Inception once per group."""
    link = run_dir / "features"
    features_dir.mkdir(parents=True, exist_ok=True)
    if not link.exists() and not link.is_symlink():
        link.symlink_to(os.path.relpath(features_dir, run_dir), target_is_directory=True)


# ------------------------------------------------------------------ collect


def collect(spec: RunSpec, run_dir: Path) -> dict[str, Any]:
    """Everything the reports need from one run folder (whatever stage it reached)."""
    ticks = read_jsonl(run_dir / "stats.jsonl")
    snaps = read_jsonl(run_dir / "metrics.jsonl")
    trained = _read(run_dir / "trained.json")
    final = _read(run_dir / "final.json")
    kids = [(s["kimg"], s["kid"]) for s in snaps if s.get("kid") is not None]
    best = min(kids, key=lambda kv: kv[1]) if kids else (None, None)
    last = ticks[-1] if ticks else {}
    return {
        "group": spec.group, "arm": spec.arm, "seed": spec.seed, "status": status(run_dir),
        "kimg": last.get("kimg"), "total_kimg": spec.cfg.kimg,
        "train_seconds": trained.get("train_seconds", last.get("time")),
        "final_kid": final.get("kid"), "final_kid_std_err": final.get("kid_std_err"), "final_fid": final.get("fid"),
        "final_num_gen": final.get("num_gen"), "final_metric_seconds": final.get("seconds"),
        "end_kid": kids[-1][1] if kids and trained else None,  # the cheap KID of the final snapshot
        "min_kid": best[1], "min_kid_kimg": best[0], "snapshot_num_gen": spec.cfg.metrics_num_gen,
        "final_augment_p": last.get("augment_p"), "final_dig": last.get("dig"),
        "final_logit_gap": _gap(last), "commit": trained.get("commit"), "runtime": trained.get("runtime"),
        "curves": {
            "kimg": [t["kimg"] for t in ticks],
            "dig": [t.get("dig") for t in ticks],
            "augment_p": [t.get("augment_p") for t in ticks],
            "ada_rt": [t.get("ada_rt") for t in ticks],
            "D_real": [t.get("D_real") for t in ticks],
            "D_fake": [t.get("D_fake") for t in ticks],
            "sec_per_kimg": [t.get("sec_per_kimg") for t in ticks],
            "kid_kimg": [k for k, _ in kids],
            "kid": [v for _, v in kids],
        },
        "run_dir": str(run_dir),
    }


def _gap(tick: dict[str, Any]) -> float | None:
    if tick.get("D_real") is None or tick.get("D_fake") is None:
        return None
    return tick["D_real"] - tick["D_fake"]


def _read(path: Path) -> dict[str, Any]:
    return json.loads(path.read_text()) if path.exists() else {}


# ------------------------------------------------------------------ records kept in git


_NOTED: set[Path] = set()


def record_path(records_dir: Path, spec: RunSpec) -> Path:
    return records_dir / slug(spec.group) / f"{spec.name}.json"


def keep_record(records_dir: Path, spec: RunSpec, record: dict[str, Any]) -> Path:
    """Write a scored run's record where git can keep it: everything the reports read (with `commit`, the
    code that trained it, from trained.json), the run's complete config (what `kept_record` matches on) and
    the commit at the time it was kept."""
    path = record_path(records_dir, spec)
    path.parent.mkdir(parents=True, exist_ok=True)
    kept = {k: v for k, v in record.items() if k != "run_dir"}
    write_json(path, {**kept, "config": _config_json(spec.cfg), "kept_at_commit": _git_commit(),
                      "kept_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())})
    return path


def kept_record(records_dir: Path, spec: RunSpec) -> dict[str, Any] | None:
    """The kept record of this run, if there is one for exactly this config (else None, with a note:
    a changed protocol trains its runs again)."""
    path = record_path(records_dir, spec)
    if not path.is_file():
        return None
    rec = json.loads(path.read_text())
    want = _config_json(spec.cfg)
    if rec.get("config") != want:
        if path not in _NOTED:  # once per process: reports call this after every step
            _NOTED.add(path)
            diff = _differing_keys(rec.get("config") or {}, want)
            print(f"  {path}: kept for another config (differs in {diff}); not used", flush=True)
        return None
    rec.pop("config")
    return {**rec, "run_dir": None, "kept_record": str(path)}


def _git_commit() -> str | None:
    try:
        out = subprocess.run(["git", "rev-parse", "HEAD"], capture_output=True, text=True, timeout=10,
                             cwd=Path(__file__).resolve().parent)
    except (OSError, subprocess.SubprocessError):
        return None
    return out.stdout.strip() or None


# ------------------------------------------------------------------ the grid


@dataclass
class Grid:
    runs: list[RunSpec]  # priority order: what should finish first comes first
    out: Path
    device: str = "cpu"
    final_num_gen: int = 5000
    final_metrics: tuple[str, ...] = ("kid", "fid")
    prune_checkpoints: bool = False
    # Which runs this process trains and scores (all when None); reports always cover every run, so
    # several processes can share one grid, e.g. one per seed.
    work: Callable[[RunSpec], bool] | None = None
    records_dir: Path | None = None  # where scored runs' records are kept for git (see the module doc)

    def kept(self, spec: RunSpec) -> dict[str, Any] | None:
        """The kept record standing in for a run that has no folder here."""
        if self.records_dir is None or status(spec.run_dir(self.out)) != "new":
            return None
        return kept_record(self.records_dir, spec)


def run_grid(grid: Grid, report: Callable[[list[dict[str, Any]]], None] | None = None,
             phases: Iterable[str] = ("train", "score")) -> list[dict[str, Any]]:
    """Train, then score, every run not yet done; call `report(records)` after each step."""
    from gan_core.data import prepare_dataset
    from gan_core.metrics import dataset_features

    grid.out.mkdir(parents=True, exist_ok=True)
    datasets: dict[tuple[str, int, bool], Any] = {}

    def dataset_of(spec: RunSpec) -> Any:
        key = (str(spec.data), spec.cfg.network.resolution, spec.class_folders)
        if key not in datasets:
            datasets[key] = prepare_dataset(spec.data, resolution=key[1], class_folders=key[2])
        return datasets[key]

    def features_dir(spec: RunSpec) -> Path:
        return grid.out / slug(spec.group) / "_features"

    def records() -> list[dict[str, Any]]:
        return [grid.kept(s) or collect(s, s.run_dir(grid.out)) for s in grid.runs]

    total = len(grid.runs)
    phases = tuple(phases)
    index = {id(spec): i for i, spec in enumerate(grid.runs, 1)}
    for block in dict.fromkeys(s.block for s in grid.runs):
        runs = [s for s in grid.runs if s.block == block and (grid.work is None or grid.work(s))]
        if "train" in phases:
            for spec in runs:
                run_dir = spec.run_dir(grid.out)
                if (run_dir / "config.json").exists():
                    check_config(run_dir, spec.cfg)  # refuses another config; reopens a run asked to go longer
                before = status(run_dir)
                if before in ("trained", "scored") or grid.kept(spec):
                    continue
                print(f"[train {index[id(spec)]}/{total}] {spec.group} {spec.arm} seed {spec.seed} ({before})",
                      flush=True)
                train_run(spec, dataset_of(spec), run_dir, grid.device, features_dir(spec), grid.prune_checkpoints)
                if report:
                    report(records())
        if "score" in phases:
            for spec in runs:
                run_dir = spec.run_dir(grid.out)
                if not (run_dir / "trained.json").exists():
                    continue
                real = dataset_features(dataset_of(spec).images, cache_dir=features_dir(spec), device=grid.device)
                t0 = time.perf_counter()
                scored_now = score_run(run_dir, real, grid.final_num_gen, grid.device, grid.final_metrics)
                if scored_now:
                    print(f"[score {index[id(spec)]}/{total}] {spec.group} {spec.arm} seed {spec.seed}: "
                          f"{time.perf_counter() - t0:.0f} s", flush=True)
                if grid.records_dir is not None and (scored_now or not record_path(grid.records_dir, spec).exists()):
                    print(f"  kept {keep_record(grid.records_dir, spec, collect(spec, run_dir))}", flush=True)
                if scored_now and report:
                    report(records())
    result = records()
    if report:
        report(result)
    return result
