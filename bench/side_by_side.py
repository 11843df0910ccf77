"""Time several training set-ups side by side: one worker process per arm, rounds interleaved.

Each arm (our trainer from some checkout, with some regularizers; or NVlabs' minibatch from the
user's checkout, bench/nvlabs_runner.py) lives in its own spawned process, so process-wide state
(torch flags, imported modules, allocator) stays its own. The parent runs one round of every arm in
turn (a different starting arm each round, so no arm always follows the same neighbour), so machine
noise lands on all arms alike; it reports wall and process-CPU seconds per kimg for every round.

Used by `bench/train_step.py --nvlabs PATH` (and `--before-root`).
"""

from __future__ import annotations

import multiprocessing as mp
import statistics
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any


@dataclass
class Arm:
    name: str
    kind: str  # "ours" | "nvlabs"
    root: str  # ours: the checkout whose gan_core is imported; nvlabs: their checkout
    spec: dict[str, Any]  # the shared architecture/settings (see bench/train_step.py spec_for)
    diggan_interval: int = 0  # ours: 0 = no DigGAN; k = DigGAN every k minibatches
    antialias: bool | None = None  # ours: AdaAugment resampling (None = its CPU default, bilinear)
    extra: dict[str, Any] = field(default_factory=dict)
    perf: dict[str, Any] = field(default_factory=dict)  # ours: TrainConfig.perf fields to set, e.g. precision


def _import_root(root: str) -> str:
    """Make `gan_core` come from `root`. A spawned child has already run the parent's main script
    (as __mp_main__), which imported gan_core from this checkout: when `root` is another checkout, drop
    it, then import afresh. When it is already `root`'s, keep it: dropping it would give every class a
    second identity in this process (pickling and isinstance would break for code that imported the first)."""
    loaded = sys.modules.get("gan_core")
    if loaded is not None and Path(loaded.__file__ or "").resolve().parent.parent == Path(root).resolve():
        return str(Path(root).resolve())
    for name in [m for m in sys.modules if m == "gan_core" or m.startswith("gan_core.")]:
        del sys.modules[name]
    sys.path.insert(0, root)
    import gan_core

    return str(Path(gan_core.__file__).resolve().parent.parent)


def _build_ours(arm: Arm, tmp: str, device: str) -> Any:
    imported_from = _import_root(arm.root)
    if Path(imported_from) != Path(arm.root).resolve():
        raise RuntimeError(f"arm {arm.name}: gan_core came from {imported_from}, not {arm.root}")
    import torch

    from gan_core.config import RegularizerConfig, get_preset
    from gan_core.data import PreparedDataset
    from gan_core.training import Trainer
    from gan_core.training.stats import TickAccumulator

    s = arm.spec
    cfg = get_preset("cpu-tiny")
    net = cfg.network
    for k in ("resolution", "z_dim", "w_dim", "mapping_layers", "channel_base", "channel_max", "mbstd_group_size",
              "conv_clamp"):
        setattr(net, k, s[k])
    cfg.batch_size, cfg.g_lr, cfg.d_lr = s["batch_size"], s["g_lr"], s["d_lr"]
    cfg.adam_betas = tuple(float(b) for b in s["betas"])
    cfg.ema_kimg, cfg.ema_rampup = s["ema_kimg"], s["ema_rampup"]
    cfg.pl_weight = s["pl_weight"]
    if hasattr(cfg, "style_mixing_prob"):
        cfg.style_mixing_prob = s["style_mixing_prob"]
    cfg.augment.kind = s["augment"]
    cfg.augment.initial_p = s["augment_p"]
    cfg.augment.ada_target, cfg.augment.ada_interval, cfg.augment.ada_kimg = (
        s["ada_target"], s["ada_interval"], s["ada_kimg"])
    regs = [RegularizerConfig("r1", s["r1_gamma"], s["r1_interval"])] if s["r1_gamma"] else []
    if arm.diggan_interval:
        regs.insert(0, RegularizerConfig("diggan", s["diggan_weight"], arm.diggan_interval, {"alpha": 0.5}))
    cfg.regularizers = regs
    for key, value in arm.perf.items():
        setattr(cfg.perf, key, value)
    cfg.seed = s["seed"]
    cfg.kimg = 1e6
    g = torch.Generator().manual_seed(s["seed"])
    r = s["resolution"]
    images = torch.randint(0, 256, (s["num_images"], 3, r, r), dtype=torch.uint8, generator=g)
    ds = PreparedDataset(images=images, names=[f"{i}.png" for i in range(len(images))], warnings=[], resolution=r)
    tr = Trainer(cfg, ds, Path(tmp), device=device)
    if arm.antialias is not None and hasattr(tr.augment, "antialias"):
        tr.augment.antialias = arm.antialias

    class Ours:
        source = imported_from

        def __init__(self) -> None:
            self.acc = TickAccumulator()

        def step(self) -> None:
            tr.train_step(self.acc)

        def tick(self) -> dict[str, float]:
            out = {k: v for k, v in self.acc.means(("loss_G", "loss_D", "dig")).items() if v is not None}
            self.acc = TickAccumulator()  # a round is a tick: DIG is measured once per round, as in training
            return out

    return Ours()


def _worker(arm: Arm, threads: int, device: str, conn: Any) -> None:
    import torch

    torch.set_num_threads(threads)
    with tempfile.TemporaryDirectory() as tmp:
        if arm.kind == "ours":
            runner = _build_ours(arm, tmp, device)
        else:
            sys.path.insert(0, str(Path(__file__).resolve().parent))
            from nvlabs_runner import NVlabsRunner

            runner = NVlabsRunner(Path(arm.root), arm.spec, device=device,
                                  use_plugins=bool(arm.extra.get("use_plugins", True)))
        conn.send(("ready", getattr(runner, "source", None)))
        while True:
            cmd, n = conn.recv()
            if cmd == "stop":
                break
            if device == "cuda":
                torch.cuda.synchronize()
            w0, c0 = time.perf_counter(), time.process_time()
            for _ in range(n):
                runner.step()
            if device == "cuda":
                torch.cuda.synchronize()
            wall, cpu = time.perf_counter() - w0, time.process_time() - c0
            conn.send(("done", {"wall": wall, "cpu": cpu, "stats": runner.tick()}))


def run_side_by_side(arms: list[Arm], steps: int, rounds: int, warmup_steps: int, threads: int,
                     device: str = "cpu", log=print) -> dict[str, Any]:
    """Rounds of `steps` minibatches per arm, interleaved; returns per-arm rounds and medians."""
    ctx = mp.get_context("spawn")
    procs, conns = [], []
    for arm in arms:
        parent, child = ctx.Pipe()
        p = ctx.Process(target=_worker, args=(arm, threads, device, child), daemon=True)
        p.start()
        procs.append(p)
        conns.append(parent)
    try:
        sources = {}
        for arm, conn in zip(arms, conns):
            kind, source = conn.recv()
            if kind != "ready":
                raise RuntimeError(f"arm {arm.name} failed to start")
            sources[arm.name] = source or arm.root
        for conn in conns:  # warm-up, one arm at a time
            conn.send(("round", warmup_steps))
            conn.recv()
        results: dict[str, list[dict[str, Any]]] = {a.name: [] for a in arms}
        n = len(arms)
        for r in range(rounds):
            order = [(r + i) % n for i in range(n)]
            for i in order:
                conns[i].send(("round", steps))
                _, out = conns[i].recv()
                results[arms[i].name].append(out)
            log(f"round {r + 1}/{rounds}: " + ", ".join(
                f"{a.name} {results[a.name][-1]['wall']:.2f}s" for a in arms))
    finally:
        for conn in conns:
            try:
                conn.send(("stop", 0))
            except (BrokenPipeError, OSError):
                pass
        for p in procs:
            p.join(timeout=60)
    batch = arms[0].spec["batch_size"]
    kimg = steps * batch / 1000
    out: dict[str, Any] = {}
    for arm in arms:
        rs = results[arm.name]
        out[arm.name] = {
            "s_per_kimg_wall": [round(x["wall"] / kimg, 3) for x in rs],
            "s_per_kimg_cpu": [round(x["cpu"] / kimg, 3) for x in rs],
            "median_s_per_kimg_wall": round(statistics.median(x["wall"] for x in rs) / kimg, 3),
            "median_s_per_kimg_cpu": round(statistics.median(x["cpu"] for x in rs) / kimg, 3),
            "last_stats": rs[-1]["stats"],
            "code_from": sources[arm.name],
        }
    return out


def paired_ratio(results: dict[str, Any], a: str, b: str) -> dict[str, Any]:
    """Per-round ratios a / b (the same round: the same machine noise) and their median and range."""
    out: dict[str, Any] = {}
    for key in ("wall", "cpu"):
        ra, rb = results[a][f"s_per_kimg_{key}"], results[b][f"s_per_kimg_{key}"]
        ratios = [x / y for x, y in zip(ra, rb)]
        out[key] = {"median": round(statistics.median(ratios), 4), "min": round(min(ratios), 4),
                    "max": round(max(ratios), 4), "per_round": [round(x, 4) for x in ratios]}
    return out
