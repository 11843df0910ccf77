"""Every method side by side: a grid of (backbone x augment x regularizer) at a
fixed budget, several seeds, KID/FID with spread and wall time, like the
DigGAN paper's comparison tables.

    python bench/compare.py                      # CPU default: StyleGAN2 + ADA on 100-shot Obama at 64x64,
                                                 #   none/R1/R2/GP-1/DRAGAN/LeCam/NICE/MaskedGAN/DigGAN/DigGAN+LeCam
    python bench/compare.py --backbones sngan,biggan --regs none,diggan,lecam   # 32x32, synthetic 10 classes
    python bench/compare.py --full --device cuda --kimg 600 --num-gen 5000      # the whole grid, on a GPU

A regularizer arm is a `+`-joined list of registry names (`diggan+lecam`);
`none` trains with no D regularizer at all. DigGAN takes the backbone preset's
own setting (cpu-tiny: lambda 100 every 8, x 8; sngan-32/biggan-32: the authors'
lambda 10000 once per G step, unscaled), LeCam its backbone's weight and decay
(gan_core.regularizers.lecam.ARCH_DEFAULTS), every other regularizer its registry
default weight, interval and parameters (GET /v1/regularizers lists them).

Resumable (bench/grid.py): the same command again skips finished runs and
continues interrupted ones from their newest checkpoint.
Backbones map to presets: stylegan2 -> cpu-tiny (or --preset), sngan ->
sngan-32, biggan -> biggan-32. SNGAN/BigGAN train on 32x32 data; with no
--data they use the synthetic 10-class set (no CIFAR is available offline).

Writes results.json, results.md (per-seed values, paired differences against the
same augmentation's `none` arm) and curves-<backbone>.png under --out; each run
in --out/<backbone>/<augment>_<regs>-seed<k>/.
"""

from __future__ import annotations

import argparse
import copy
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from harness import DEFAULT_DATA, Arm, build_specs, run_arm_grid  # noqa: E402

from gan_core.config import ARCH_PRESETS, CONDITIONAL_ARCHS, RegularizerConfig, TrainConfig, get_preset, validate_config  # noqa: E402
from gan_core.regularizers import REGISTRY, suggested_defaults  # noqa: E402
from gan_core.regularizers.lecam import ARCH_DEFAULTS as LECAM_DEFAULTS  # noqa: E402

DEFAULT_REGS = "none,r1,r2,gp1,dragan,lecam,nice,maskedgan,diggan,diggan+lecam"
FULL_REGS = DEFAULT_REGS + ",diggan+r1"


def regularizer_config(name: str, base: TrainConfig | None = None) -> RegularizerConfig:
    """`name` as this benchmark runs it on `base`'s backbone (see the module docstring)."""
    if name not in REGISTRY:
        raise SystemExit(f"unknown regularizer {name!r}; known: {', '.join(sorted(REGISTRY))}")
    own = base.regularizer(name) if base is not None else None
    if name == "diggan" and own is not None:
        return copy.deepcopy(own)  # the preset's lambda, interval and scaling
    if name == "lecam" and base is not None:
        weight, decay = LECAM_DEFAULTS[base.network.arch]
        return RegularizerConfig("lecam", weight, 1, {"decay": decay})
    weight, interval = suggested_defaults(name)
    return RegularizerConfig(name, float(weight), int(interval), dict(REGISTRY[name].params))


def make_arm(augment: str, regs: str, base: TrainConfig | None = None) -> Arm:
    names = [] if regs == "none" else regs.split("+")
    reg_cfgs = [regularizer_config(n, base) for n in names]  # validated before any training starts

    def configure(cfg: TrainConfig) -> None:
        cfg.augment.kind = augment
        cfg.regularizers = [RegularizerConfig(r.name, r.weight, r.interval, dict(r.params), r.scale_by_interval)
                            for r in reg_cfgs]

    return Arm(f"{augment}/{regs}", configure)


def fits(base: TrainConfig, arm: Arm) -> bool:
    """Skip (and say so) an arm the backbone refuses, e.g. GP-1 on BigGAN (interpolates have no class)."""
    cfg = copy.deepcopy(base)
    arm.configure(cfg)
    try:
        validate_config(cfg)
    except ValueError as exc:
        print(f"skipping {arm.name} on {cfg.network.arch}: {exc}", flush=True)
        return False
    return True


def synthetic_data(out_dir: Path) -> Path:
    """The synthetic 10-class 32x32 set, written once as class folders."""
    from gan_core.data import write_synthetic_classes

    target = out_dir / "synthetic10"
    if not target.exists():
        write_synthetic_classes(target, num_classes=10, per_class=50, resolution=32, seed=0)
    return target


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--backbones", default="stylegan2", help="comma list of stylegan2,sngan,biggan")
    ap.add_argument("--augments", default="ada", help="comma list of ada,diffaugment,none")
    ap.add_argument("--regs", default=DEFAULT_REGS, help="comma list of arms; '+' combines regularizers")
    ap.add_argument("--full", action="store_true",
                    help="every backbone x {ada, diffaugment, none} x every regularizer arm (for a GPU)")
    ap.add_argument("--data", type=Path, default=None,
                    help="dataset folder/zip (default: 100-shot Obama for stylegan2, synthetic 10-class for sngan/biggan)")
    ap.add_argument("--preset", default=None, help="override the StyleGAN2 preset (default cpu-tiny)")
    ap.add_argument("--kimg", type=float, default=3.0)
    ap.add_argument("--seeds", type=int, default=2)
    ap.add_argument("--num-gen", type=int, default=500, help="generated images for the final score (paper: 5000)")
    ap.add_argument("--snapshot-num-gen", type=int, default=200, help="generated images for each snapshot KID")
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--out", type=Path, default=Path("bench/results/compare"))
    args = ap.parse_args(argv)

    backbones = list(ARCH_PRESETS) if args.full else args.backbones.split(",")
    augments = ["ada", "diffaugment", "none"] if args.full else args.augments.split(",")
    regs = (FULL_REGS if args.full else args.regs).split(",")
    unknown = [b for b in backbones if b not in ARCH_PRESETS]
    if unknown:
        raise SystemExit(f"unknown backbone(s) {unknown}; known: {', '.join(ARCH_PRESETS)}")
    out: Path = args.out
    specs, titles = [], {}
    for backbone in backbones:
        preset = args.preset if (backbone == "stylegan2" and args.preset) else ARCH_PRESETS[backbone]
        base = get_preset(preset)
        base.kimg = args.kimg
        base.tick_kimg = max(args.kimg / 20, 0.1)
        base.snapshot_ticks = 5  # a checkpoint, grid and cheap KID every quarter of the run
        base.metrics, base.metrics_num_gen = ["kid"], args.snapshot_num_gen
        arms = [arm for arm in (make_arm(a, r, base) for a in augments for r in regs) if fits(base, arm)]
        data = args.data or (DEFAULT_DATA if backbone == "stylegan2" else synthetic_data(out))
        res = base.network.resolution
        titles[backbone] = f"{backbone} ({preset}) {res}x{res}, {args.kimg:g} kimg, {data.name}"
        specs += build_specs(base, arms, list(range(args.seeds)), backbone, data,
                             class_folders=base.network.arch in CONDITIONAL_ARCHS)
    pairs = [(f"{a}/{r}", f"{a}/none") for a in augments for r in regs if r != "none" and "none" in regs]
    title = (f"compare: {', '.join(backbones)}; {args.seeds} seeds, {args.kimg:g} kimg, final KID/FID on "
             f"{args.num_gen} images, snapshot KID on {args.snapshot_num_gen}, device {args.device}")
    run_arm_grid(specs, out, args.device, args.num_gen, title, pairs, group_titles=titles,
                 meta={"kimg": args.kimg, "seeds": args.seeds, "backbones": backbones, "augments": augments,
                       "regs": regs})
    print((out / "results.md").read_text())


if __name__ == "__main__":
    main()
