"""Every method side by side: a grid of (backbone x augment x regularizer) at a
fixed budget, several seeds, KID/FID with spread and wall time, like the
DigGAN paper's comparison tables.

    python bench/compare.py                      # CPU default: StyleGAN2 + ADA on 100-shot Obama at 64x64,
                                                 #   none/R1/R2/GP-1/DRAGAN/LeCam/NICE/MaskedGAN/DigGAN/DigGAN+LeCam
    python bench/compare.py --backbones sngan,biggan --regs none,diggan,lecam   # 32x32, synthetic 10 classes
    python bench/compare.py --full --device cuda --kimg 600 --num-gen 5000      # the whole grid, on a GPU

A regularizer arm is a `+`-joined list of registry names (`diggan+lecam`);
`none` trains with no D regularizer at all. Each regularizer runs with its
registry default weight, interval and parameters (GET /v1/regularizers lists
them; DigGAN: weight 100 every 8 minibatches, as in the presets).
Backbones map to presets: stylegan2 -> cpu-tiny (or --preset), sngan ->
sngan-32, biggan -> biggan-32. SNGAN/BigGAN train on 32x32 data; with no
--data they use the synthetic 10-class set (no CIFAR is available offline).

Writes results.json and results.md per backbone under --out/<backbone>/, and
one combined results.md under --out.
"""

from __future__ import annotations

import argparse
import copy
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from harness import DEFAULT_DATA, Arm, markdown_table, run_grid  # noqa: E402

from gan_core.config import ARCH_PRESETS, RegularizerConfig, TrainConfig, get_preset, validate_config  # noqa: E402
from gan_core.regularizers import REGISTRY, suggested_defaults  # noqa: E402

DEFAULT_REGS = "none,r1,r2,gp1,dragan,lecam,nice,maskedgan,diggan,diggan+lecam"
FULL_REGS = DEFAULT_REGS + ",diggan+r1"


def regularizer_config(name: str) -> RegularizerConfig:
    if name not in REGISTRY:
        raise SystemExit(f"unknown regularizer {name!r}; known: {', '.join(sorted(REGISTRY))}")
    weight, interval = suggested_defaults(name)
    return RegularizerConfig(name, float(weight), int(interval), dict(REGISTRY[name].params))


def make_arm(augment: str, regs: str) -> Arm:
    names = [] if regs == "none" else regs.split("+")
    reg_cfgs = [regularizer_config(n) for n in names]  # validated before any training starts

    def configure(cfg: TrainConfig) -> None:
        cfg.augment.kind = augment
        cfg.regularizers = [RegularizerConfig(r.name, r.weight, r.interval, dict(r.params)) for r in reg_cfgs]

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


def main() -> None:
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
    ap.add_argument("--num-gen", type=int, default=500, help="generated images per score (paper: 5000)")
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--out", type=Path, default=Path("bench/results/compare"))
    args = ap.parse_args()

    backbones = list(ARCH_PRESETS) if args.full else args.backbones.split(",")
    augments = ["ada", "diffaugment", "none"] if args.full else args.augments.split(",")
    regs = (FULL_REGS if args.full else args.regs).split(",")
    unknown = [b for b in backbones if b not in ARCH_PRESETS]
    if unknown:
        raise SystemExit(f"unknown backbone(s) {unknown}; known: {', '.join(ARCH_PRESETS)}")
    all_arms = [make_arm(a, r) for a in augments for r in regs]

    combined = []
    for backbone in backbones:
        preset = args.preset if (backbone == "stylegan2" and args.preset) else ARCH_PRESETS[backbone]
        base = get_preset(preset)
        base.kimg = args.kimg
        base.tick_kimg = max(args.kimg / 20, 0.1)
        arms = [arm for arm in all_arms if fits(base, arm)]
        data = args.data or (DEFAULT_DATA if backbone == "stylegan2" else synthetic_data(args.out))
        res = base.network.resolution
        title = (f"{backbone} ({preset}) {res}x{res}, {args.kimg} kimg, {data.name}, {len(range(args.seeds))} seeds, "
                 f"{args.num_gen} generated images per score, device {args.device}")
        result = run_grid(base, arms, list(range(args.seeds)), data, args.out / backbone, args.device,
                          args.num_gen, title)
        combined.append(markdown_table(result["summary"], f"## {title}"))
    (args.out / "results.md").write_text("\n".join(combined))
    print((args.out / "results.md").read_text())


if __name__ == "__main__":
    main()
