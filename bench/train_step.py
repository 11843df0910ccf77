"""Milliseconds per training phase, DigGAN's overhead per kimg, and our speed next to NVlabs'.

    python bench/train_step.py [--quick] [--device cpu|cuda] [--out bench/results/train_step.json]
    python bench/train_step.py --res 128 --cbase 8192 --cmax 256 --map 2 --batch 4   # any architecture

Side by side with NVlabs stylegan2-ada-pytorch (your own checkout; nothing of it is in this repo):

    python bench/train_step.py --nvlabs ~/stylegan2-ada-pytorch                 # cpu-tiny preset
    python bench/train_step.py --nvlabs ~/stylegan2-ada-pytorch --res 64 --cbase 4096 --cmax 256 \
        --map 2 --zdim 512 --batch 8 --augment none --r1-gamma 10 --r1-interval 16
    ... --before-root /tmp/old-checkout    # also time another checkout of ours in the same run

One worker process per arm (NVlabs; ours without DigGAN; ours with DigGAN at each of
`--diggan-intervals`; the same again from `--before-root`), rounds of `--steps` minibatches
interleaved (bench/side_by_side.py). The JSON holds every round's wall and CPU seconds per kimg
and the per-round (paired) ratios: ours / NVlabs, and with / without DigGAN for each interval.
NVlabs runs its float32 path (num_fp16_res=0) with the same conv_clamp (bench/nvlabs_runner.py
says why and what else its code needs here). With ADA both sides start at `--augment-p` and adapt.

Phases (each timed on its own, after warm-up, median of `--iters`):
  augment   ADA at p=0.5 on one real batch (forward)
  G_main    generator step: G(z) -> aug -> D -> loss -> backward -> Adam
  D_main    discriminator step with no regularizer due
  R1        extra cost of a D step when R1 is due (double backward on reals)
  DigGAN    extra cost of a D step when DigGAN is due (double backward on reals and fakes)
`diggan_overhead` is the ratio of seconds per kimg of the preset as configured
(DigGAN at its lazy interval) to the same run with DigGAN removed, measured
side by side in this process (interleaved rounds, median of each).
"""

from __future__ import annotations

import argparse
import copy
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from gan_core.config import TrainConfig, get_preset  # noqa: E402
from gan_core.data import PreparedDataset  # noqa: E402
from gan_core.regularizers import build_regularizers  # noqa: E402
from gan_core.training import Trainer  # noqa: E402
from gan_core.training.stats import TickAccumulator  # noqa: E402
from gan_core.versions import cpu_model, runtime_versions  # noqa: E402


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _median_ms(fn, iters: int, warmup: int, device: torch.device) -> float:
    for _ in range(warmup):
        fn()
    _sync(device)
    times = []
    for _ in range(iters):
        t0 = time.perf_counter()
        fn()
        _sync(device)
        times.append((time.perf_counter() - t0) * 1000)
    return statistics.median(times)


def random_dataset(resolution: int, n: int = 32) -> PreparedDataset:
    g = torch.Generator().manual_seed(0)
    images = torch.randint(0, 256, (n, 3, resolution, resolution), dtype=torch.uint8, generator=g)
    return PreparedDataset(images=images, names=[f"{i}.png" for i in range(n)], warnings=[], resolution=resolution)


def phase_times(cfg: TrainConfig, device: str, iters: int, warmup: int) -> dict[str, float]:
    with tempfile.TemporaryDirectory() as tmp:
        tr = Trainer(cfg, random_dataset(cfg.network.resolution), Path(tmp), device=device)
        dev = tr.device
        real, _ = tr.next_real_batch_and_labels()  # cpu-tiny is unconditional
        if hasattr(tr.augment, "p"):
            tr.augment.p.fill_(0.5)

        def acc() -> TickAccumulator:
            a = TickAccumulator()
            a.add("dig", 0.0)  # skip the once-per-tick DIG measurement
            return a

        def d_step_with(regs: list) -> float:
            tr.regularizers = build_regularizers(regs)
            for r in tr.regularizers:
                r.interval = 1
            return _median_ms(lambda: tr._discriminator_step(real, acc()), iters, warmup, dev)

        out = {
            "augment": _median_ms(lambda: tr.augment(real), iters, warmup, dev),
            "G_main": _median_ms(lambda: tr._generator_step(acc()), iters, warmup, dev),
        }
        d_main = d_step_with([])
        out["D_main"] = d_main
        out["R1"] = d_step_with([{"name": "r1", "weight": 1.0}]) - d_main
        out["DigGAN"] = d_step_with([{"name": "diggan", "weight": 100.0, "params": {"alpha": 0.5}}]) - d_main
        out["iteration_estimate"] = out["G_main"] + d_main
        return {k: round(v, 2) for k, v in out.items()}


def seconds_per_kimg(cfg: TrainConfig, device: str, kimg: float) -> float:
    cfg.kimg = kimg
    cfg.tick_kimg = kimg
    cfg.snapshot_ticks = 10**9  # no snapshots inside the timed span
    with tempfile.TemporaryDirectory() as tmp:
        tr = Trainer(cfg, random_dataset(cfg.network.resolution), Path(tmp), device=device)
        tr.snapshot = lambda final=False: None  # the final snapshot is I/O, not training
        t0 = time.perf_counter()
        tr.run()
        _sync(tr.device)
        return (time.perf_counter() - t0) / kimg


def diggan_overhead(cfg: TrainConfig, device: str, kimg: float, rounds: int) -> dict[str, float]:
    without = copy.deepcopy(cfg)
    without.regularizers = [r for r in cfg.regularizers if r.name != "diggan"]
    seconds_per_kimg(copy.deepcopy(cfg), device, kimg / 4)  # warm-up
    a, b = [], []
    for _ in range(rounds):  # interleaved, so machine noise hits both alike
        a.append(seconds_per_kimg(copy.deepcopy(cfg), device, kimg))
        b.append(seconds_per_kimg(copy.deepcopy(without), device, kimg))
    with_s, without_s = statistics.median(a), statistics.median(b)
    return {"with_diggan_s_per_kimg": round(with_s, 3), "without_diggan_s_per_kimg": round(without_s, 3),
            "ratio": round(with_s / without_s, 4), "rounds": rounds, "kimg_per_round": kimg}


def add_spec_arguments(ap: argparse.ArgumentParser, preset_help: str = "the preset the settings start from "
                       "(default cpu-tiny)") -> None:
    """The flags `spec_for` reads: an architecture and training settings on top of a preset."""
    g = ap.add_argument_group("architecture and settings (default: the preset's)")
    g.add_argument("--preset", action="append", help=preset_help)
    g.add_argument("--res", type=int, help="custom architecture: resolution")
    g.add_argument("--cbase", type=int, help="channel base")
    g.add_argument("--cmax", type=int, help="channel max")
    g.add_argument("--map", type=int, help="mapping layers")
    g.add_argument("--batch", type=int)
    g.add_argument("--zdim", type=int, help="z_dim = w_dim")
    g.add_argument("--augment", choices=["ada", "none"], help="default: the preset's")
    g.add_argument("--augment-p", type=float, default=0.2, help="ADA's starting p (default 0.2)")
    g.add_argument("--r1-gamma", type=float, help="default: the preset's R1 weight")
    g.add_argument("--r1-interval", type=int, help="default: the preset's R1 interval")


def spec_for(args: argparse.Namespace) -> tuple[str, dict]:
    """The settings both sides of a side-by-side run share: a preset, changed by the flags."""
    name = (args.preset or ["cpu-tiny"])[0]
    cfg = get_preset(name)
    net = cfg.network
    r1 = cfg.regularizer("r1")
    dig = cfg.regularizer("diggan")
    spec = {
        "resolution": args.res or net.resolution, "z_dim": args.zdim or net.z_dim, "w_dim": args.zdim or net.w_dim,
        "mapping_layers": args.map or net.mapping_layers, "channel_base": args.cbase or net.channel_base,
        "channel_max": args.cmax or net.channel_max, "mbstd_group_size": net.mbstd_group_size,
        "conv_clamp": net.conv_clamp, "batch_size": args.batch or cfg.batch_size, "g_lr": cfg.g_lr, "d_lr": cfg.d_lr,
        "betas": list(cfg.adam_betas), "ema_kimg": cfg.ema_kimg, "ema_rampup": cfg.ema_rampup,
        "r1_gamma": args.r1_gamma if args.r1_gamma is not None else (r1.weight if r1 else 0.0),
        "r1_interval": args.r1_interval or (r1.interval if r1 else 16),
        "diggan_weight": dig.weight if dig else 100.0,
        "pl_weight": 0.0, "style_mixing_prob": 0.0,  # off on both sides unless a study needs them
        "augment": args.augment or ("ada" if cfg.augment.kind == "ada" else "none"),
        "augment_p": args.augment_p, "ada_target": cfg.augment.ada_target,
        "ada_interval": cfg.augment.ada_interval, "ada_kimg": cfg.augment.ada_kimg,
        "seed": 0, "num_images": 100,
    }
    return name, spec


def side_by_side_main(args: argparse.Namespace) -> None:
    from side_by_side import Arm, paired_ratio, run_side_by_side

    preset, spec = spec_for(args)
    here = str(Path(__file__).resolve().parent.parent)
    intervals = [int(x) for x in args.diggan_intervals.split(",") if x.strip()] if args.diggan_intervals else []
    roots = [("", here)] + ([("before_", str(Path(args.before_root).resolve()))] if args.before_root else [])
    arms = [Arm("nvlabs", "nvlabs", str(Path(args.nvlabs).resolve()), spec,
                extra={"use_plugins": args.device == "cuda"})]
    if args.device == "cuda":  # NVlabs' own fast path: fp16 in the 4 highest resolutions (train.py --cfg auto)
        arms.append(Arm("nvlabs_fp16", "nvlabs", arms[0].root, {**spec, "num_fp16_res": 4}, extra=arms[0].extra))
    for prefix, root in roots:
        arms.append(Arm(f"{prefix}ours", "ours", root, spec))
        if spec["augment"] == "ada" and args.antialias_arm:
            arms.append(Arm(f"{prefix}ours_antialias", "ours", root, spec, antialias=True))
        arms += [Arm(f"{prefix}ours_diggan{k}", "ours", root, spec, diggan_interval=k) for k in intervals]
        if args.bf16_arm and not prefix:
            arms.append(Arm("ours_bf16", "ours", root, spec, perf={"precision": "bf16"}))
    print("arms:", [a.name for a in arms], "spec:", json.dumps(spec), flush=True)
    res = run_side_by_side(arms, steps=args.steps, rounds=args.rounds, warmup_steps=args.warmup_steps,
                           threads=args.threads or 1, device=args.device)
    ratios: dict = {}
    for prefix, _ in roots:
        ratios[f"{prefix}ours/nvlabs"] = paired_ratio(res, f"{prefix}ours", "nvlabs")
        if f"{prefix}ours_antialias" in res:
            ratios[f"{prefix}ours_antialias/nvlabs"] = paired_ratio(res, f"{prefix}ours_antialias", "nvlabs")
        for k in intervals:
            ratios[f"{prefix}diggan_overhead_interval{k}"] = paired_ratio(res, f"{prefix}ours_diggan{k}", f"{prefix}ours")
    if args.bf16_arm:
        ratios["ours_bf16/nvlabs"] = paired_ratio(res, "ours_bf16", "nvlabs")
        ratios["ours_bf16/ours"] = paired_ratio(res, "ours_bf16", "ours")
        if "nvlabs_fp16" in res:
            ratios["ours_bf16/nvlabs_fp16"] = paired_ratio(res, "ours_bf16", "nvlabs_fp16")
    if args.before_root:
        ratios["ours/before_ours"] = paired_ratio(res, "ours", "before_ours")
    result = {
        "mode": "side_by_side", "preset": preset, "spec": spec, "device": args.device, "torch": torch.__version__,
        "threads": args.threads or 1, "machine": cpu_model(), "versions": runtime_versions(args.device),
        "steps_per_round": args.steps, "rounds": args.rounds, "ours_root": here, "before_root": args.before_root,
        "nvlabs_root": str(Path(args.nvlabs).resolve()),
        "notes": ["ratios: median over rounds of (arm / reference) seconds per kimg in the same round",
                  "NVlabs: their training_loop.py minibatch (phases, lazy-reg Adam, nan_to_num, EMA, ADA) "
                  "through their own classes, float32 path (num_fp16_res=0), conv_clamp as ours: bench/nvlabs_runner.py",
                  "ours: one tick per round (DIG measured once per round, as once per tick in training)"],
        "arms": res, "ratios": ratios,
    }
    for key, r in ratios.items():
        print(f"{key}: wall {r['wall']['median']} (range {r['wall']['min']}-{r['wall']['max']}), "
              f"cpu {r['cpu']['median']}", flush=True)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2))
    print(f"wrote {args.out}")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true", help="fewer iterations; finishes in under a minute on 2 cores")
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--out", type=Path, default=Path("bench/results/train_step.json"))
    ap.add_argument("--threads", type=int, default=0, help="torch intra-op threads (0 = torch default; "
                    "side by side: 1)")
    add_spec_arguments(ap, preset_help="presets to time (default: cpu-tiny and low-shot-256)")
    sbs = ap.add_argument_group("side by side with NVlabs")
    sbs.add_argument("--nvlabs", type=Path, help="your stylegan2-ada-pytorch checkout: time it next to ours")
    sbs.add_argument("--before-root", help="another checkout of this repo to time in the same run (arms before_*)")
    sbs.add_argument("--diggan-intervals", default="1,4,8", help="ours with DigGAN at these intervals ('' = none)")
    sbs.add_argument("--no-antialias-arm", dest="antialias_arm", action="store_false",
                     help="with ADA, skip the arm of ours with NVlabs' anti-aliased resampling")
    sbs.add_argument("--bf16-arm", action="store_true",
                     help="also time ours with precision bf16 (autocast in the passes without double backward)")
    sbs.add_argument("--steps", type=int, default=32, help="minibatches per arm per round")
    sbs.add_argument("--rounds", type=int, default=5)
    sbs.add_argument("--warmup-steps", type=int, default=4)
    args = ap.parse_args()
    if args.nvlabs:
        side_by_side_main(args)
        return
    if args.threads:
        torch.set_num_threads(args.threads)

    iters, warmup = (3, 1) if args.quick else (10, 2)
    configs: dict[str, TrainConfig] = {}
    if args.res:
        cfg = get_preset((args.preset or ["cpu-tiny"])[0])
        cfg.network.resolution = args.res
        for field, val in (("channel_base", args.cbase), ("channel_max", args.cmax), ("mapping_layers", args.map)):
            if val:
                setattr(cfg.network, field, val)
        if args.batch:
            cfg.batch_size = args.batch
        configs[f"custom-{args.res}"] = cfg
    else:
        for name in args.preset or ["cpu-tiny", "low-shot-256"]:
            cfg = get_preset(name)
            if name != "cpu-tiny" and args.device == "cpu":
                cfg.batch_size = args.batch or 2  # "a small batch on CPU"
            elif args.batch:
                cfg.batch_size = args.batch
            configs[name] = cfg

    result: dict = {
        "device": args.device,
        "torch": torch.__version__,
        "threads": torch.get_num_threads(),
        "machine": cpu_model(),
        "versions": runtime_versions(args.device),
        "quick": args.quick,
        "phases_ms": {},
    }
    for name, cfg in configs.items():
        big = cfg.network.resolution >= 256 and args.device == "cpu"
        n_it, n_wu = (1, 0) if (big and args.quick) else (iters, warmup)
        result["phases_ms"][name] = {"batch": cfg.batch_size, **phase_times(cfg, args.device, n_it, n_wu)}
        print(name, json.dumps(result["phases_ms"][name]), flush=True)

    # Overhead on the first configuration (cpu-tiny by default): whole runs, side by side.
    first_name, first_cfg = next(iter(configs.items()))
    big = first_cfg.network.resolution >= 256 and args.device == "cpu"
    kimg = 0.064 if (args.quick or big) else 0.4
    rounds = 2 if args.quick else 5
    overhead = diggan_overhead(first_cfg, args.device, kimg, rounds)
    result["diggan_overhead"] = overhead["ratio"]
    result["diggan_overhead_detail"] = {"config": first_name, **overhead}
    print("diggan_overhead", json.dumps(overhead), flush=True)

    # The same ratio at other lazy intervals (1 = every minibatch, as the authors' code; 16 = with R1).
    by_interval = {}
    for interval in ([1, 8, 16] if args.quick else [1, 2, 4, 8, 16]):
        cfg = copy.deepcopy(first_cfg)
        for r in cfg.regularizers:
            if r.name == "diggan":
                r.interval = interval
        by_interval[str(interval)] = diggan_overhead(cfg, args.device, kimg, rounds)["ratio"]
    result["diggan_overhead_by_interval"] = by_interval
    print("diggan_overhead_by_interval", json.dumps(by_interval), flush=True)

    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2))
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
