"""Does DigGAN help at equal compute? ADA vs ADA+DigGAN vs DiffAugment vs DiffAugment+DigGAN.

    python bench/quality.py                                 # CPU default: cpu-tiny 64x64, 3 seeds
    python bench/quality.py --seeds 1 --kimg 1 --num-gen 200 # smoke run
    python bench/quality.py --device cuda --preset low-shot-256 --kimg 600 --num-gen 5000   # paper protocol

Writes results.json, results.md and dig.png under --out. The CPU default
(cpu-tiny at 64x64, --kimg 4, 1000 generated images per score) is sized to
finish the 12-run grid in about an hour on 2 CPU cores.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from harness import DEFAULT_DATA, Arm, run_grid  # noqa: E402

from gan_core.config import RegularizerConfig, get_preset  # noqa: E402


def _arm(name: str, augment: str, diggan_weight: float) -> Arm:
    def configure(cfg) -> None:
        cfg.augment.kind = augment
        cfg.regularizers = [r for r in cfg.regularizers if r.name != "diggan"]
        if diggan_weight > 0:
            cfg.regularizers.append(RegularizerConfig("diggan", diggan_weight, 8, {"alpha": 0.5}))

    return Arm(name, configure)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", type=Path, default=DEFAULT_DATA)
    ap.add_argument("--preset", default="cpu-tiny")
    ap.add_argument("--kimg", type=float, default=4.0)
    ap.add_argument("--seeds", type=int, default=3)
    ap.add_argument("--diggan-weight", type=float, default=100.0)
    ap.add_argument("--num-gen", type=int, default=1000, help="generated images per score (paper: 5000)")
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--out", type=Path, default=Path("bench/results/quality"))
    args = ap.parse_args()

    base = get_preset(args.preset)
    base.kimg = args.kimg
    base.tick_kimg = max(args.kimg / 20, 0.1)
    lam = args.diggan_weight
    arms = [_arm("ada", "ada", 0), _arm("ada+diggan", "ada", lam),
            _arm("diffaugment", "diffaugment", 0), _arm("diffaugment+diggan", "diffaugment", lam)]
    title = (f"{args.preset} {base.network.resolution}x{base.network.resolution}, {args.kimg} kimg, "
             f"{args.data.name}, lambda={lam}, {args.num_gen} generated images per score")
    run_grid(base, arms, list(range(args.seeds)), args.data, args.out, args.device, args.num_gen, title)
    print((args.out / "results.md").read_text())


if __name__ == "__main__":
    main()
