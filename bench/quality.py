"""Does DigGAN help at equal compute? Protocols as one resumable command each.

    python bench/quality.py                      # cpu-overfit-32 (default): the CPU protocol, see PROTOCOLS
    python bench/quality.py --status             # what is done, partial or missing; trains nothing
    python bench/quality.py --protocol paper-gpu --device cuda            # the paper's 100-shot protocol
    python bench/quality.py --protocol paper-gpu --device cuda --dry-run  # its first minutes, as a check

Every run lives in its own folder under --out (default bench/results/quality-<protocol>); the same
command again skips finished runs and continues interrupted ones from their newest checkpoint (bench/grid.py).
Each scored run's record is also kept under --records (default bench/records/<name of --out>, in git): a
sitting on a new machine skips the runs kept there and reports them with its own.
Training of every run comes first (with a cheap KID at each snapshot), then each final checkpoint is
scored on --num-gen generated images. Writes results.json, results.md and curves-<dataset>.png.

Arms are `<augment>[+<regularizer>...]` on top of the protocol's base regularizers (R1):
`none`, `ada+diggan`, `diffaugment+diggan+lecam`, ...; DigGAN and LeCam take the settings below.
"""

from __future__ import annotations

import argparse
import copy
import os
import sys
from dataclasses import dataclass, field
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from harness import DATASETS_DIR, Arm, build_specs, run_arm_grid  # noqa: E402

from gan_core.config import (  # noqa: E402
    AugmentConfig,
    NetworkConfig,
    RegularizerConfig,
    TrainConfig,
    apply_overrides,
    get_preset,
    nvlabs_auto_r1_gamma,
)
from gan_core.regularizers.lecam import ARCH_DEFAULTS as LECAM_DEFAULTS  # noqa: E402
from gan_core.request import ConfigRequestError, RegularizerRequest, merge_regularizer  # noqa: E402
from gan_core.specs import parse_regularizer_spec  # noqa: E402

AUGMENTS = ("none", "ada", "diffaugment")


def cpu_overfit_32() -> TrainConfig:
    """The CPU protocol's base config: StyleGAN2 at 32x32 with a D large enough to overfit 100 images.

    Sources and measurements: docs/results.md, "The overfitting regime on CPU".
    """
    cfg = get_preset("cpu-tiny")
    cfg.preset = "cpu-overfit-32"
    # ours: 32x32; channels min(1024 // res, 128): 32 at 32x32, 64 at 16x16, 128 at 8x8 and 4x4. D has 0.87M
    # parameters (cpu-tiny's 0.08M never raised ADA's p, issue text); the pilot's D won from the start (logit
    # gap ~5-9) at 1.7x cpu-tiny-at-32x32's cost per kimg. Mapping 2: NVlabs 'auto'. G and D share the widths
    # (NetworkConfig has no separate D width for StyleGAN2).
    cfg.network = NetworkConfig(resolution=32, z_dim=64, w_dim=64, mapping_layers=2, channel_base=1024,
                                channel_max=128)
    # ada_kimg 20: ours, so that p can move by 1 within a 20-40 kimg run (NVlabs: 500 from scratch, 100 to fine-tune)
    cfg.augment = AugmentConfig(kind="none", ada_kimg=20.0)
    cfg.regularizers = [RegularizerConfig("r1", nvlabs_auto_r1_gamma(32, 16), 16)]  # NVlabs 'auto': 0.0128, lazy 16
    cfg.batch_size = 16  # NVlabs 'auto' gives 32 at 32x32 on one GPU; 16 halves the CPU step
    cfg.g_lr = cfg.d_lr = 0.0025  # NVlabs 'auto' (res < 1024)
    cfg.ema_kimg = 16 * 10 / 32  # NVlabs 'auto': batch * 10 / 32
    cfg.ema_rampup = 0.05  # NVlabs 'auto'
    cfg.mirror = False  # NVlabs default --mirror=0: D sees the same 100 images, not 200
    # ours: the pilot's no-aug D reached a D loss of ~0.1 (near-perfect separation) from ~55 kimg while its
    # KID stopped improving; 80 kimg reaches past that. A longer --kimg continues finished runs.
    cfg.kimg = 80.0
    cfg.tick_kimg = 0.8  # 50 minibatches of 16: kimg 40, 80, ... end on a tick, so a continued run keeps its ticks
    cfg.snapshot_ticks = 5  # a checkpoint, grid and cheap KID every 4 kimg
    cfg.metrics = ["kid"]
    cfg.metrics_num_gen = 200  # ours: ~100 s of Inception per snapshot on one loaded thread
    return cfg


def paper_gpu() -> TrainConfig:
    """low-shot-256 as the preset has it (DigGAN paper 4.4 + NVlabs 'auto'), KID on 1000 images every 40 kimg."""
    cfg = get_preset("low-shot-256")
    cfg.metrics = ["kid"]
    cfg.metrics_num_gen = 1000  # ours: a cheap curve; the final score uses --num-gen (5000, the paper's)
    return cfg


@dataclass
class Protocol:
    name: str
    base: TrainConfig
    arms: list[str]
    datasets: list[str]  # folder names under ../shared/datasets (or paths)
    seeds: int
    final_num_gen: int
    device: str
    prune_checkpoints: bool = False
    notes: list[str] = field(default_factory=list)


def _protocols() -> dict[str, Protocol]:
    core = [f"{a}{s}" for a in AUGMENTS for s in ("", "+diggan")]
    return {
        "cpu-overfit-32": Protocol(
            "cpu-overfit-32", cpu_overfit_32(),
            arms=core + [f"{a}+diggan+lecam" for a in AUGMENTS],
            datasets=["100-shot-obama", "100-shot-grumpy_cat"], seeds=3, final_num_gen=5000, device="cpu",
            prune_checkpoints=True),  # ~30 MB per checkpoint: keep the final and best of a finished run
        "paper-gpu": Protocol(
            "paper-gpu", paper_gpu(), arms=["ada", "ada+diggan"],
            datasets=["100-shot-obama", "100-shot-grumpy_cat"], seeds=3, final_num_gen=5000, device="cuda",
            prune_checkpoints=True),
    }


PROTOCOLS = _protocols()


def diggan_config(base: TrainConfig) -> RegularizerConfig:
    """The base preset's DigGAN setting if it has one, else the paper's StyleGAN2 lambda 100 (every 8, x 8)."""
    from gan_core.request import default_regularizer

    return copy.deepcopy(base.regularizer("diggan") or default_regularizer("diggan"))


def lecam_config(base: TrainConfig) -> RegularizerConfig:
    weight, decay = LECAM_DEFAULTS[base.network.arch]  # google/lecam-gan per backbone
    return RegularizerConfig("lecam", weight, 1, {"decay": decay})


def make_arm(spec: str, base: TrainConfig) -> Arm:
    """`<augment>[+diggan][+lecam]`: the augmentation, the base config's regularizers minus DigGAN/LeCam,
    plus the ones named, each at its default or as written after a colon in the `--reg` grammar
    (`none+diggan+lecam:0.03`, `diffaugment+diggan:10`; interval and parameters may follow)."""
    augment, *regs = spec.split("+")
    if augment not in AUGMENTS:
        raise SystemExit(f"arm {spec!r}: augmentation must be one of {AUGMENTS}")
    extra = {"diggan": diggan_config(base), "lecam": lecam_config(base)}
    chosen = []
    for reg in regs:
        name = reg.partition(":")[0]
        if name not in extra:
            raise SystemExit(f"arm {spec!r}: unknown regularizer {name!r}; this benchmark knows {sorted(extra)}")
        if ":" not in reg:
            chosen.append(extra[name])
            continue
        try:  # the --reg grammar of gan_core's CLI, merged onto this arm's default as a request would be
            _, weight, interval, params = parse_regularizer_spec(reg)
        except ValueError:
            raise SystemExit(f"arm {spec!r}: {reg!r} has a part that is not a number; "
                             "use NAME:WEIGHT[:INTERVAL][:k=v,...], e.g. lecam:0.03") from None
        if not weight > 0:
            raise SystemExit(f"arm {spec!r}: weight of {name} must be positive")
        try:
            chosen.append(merge_regularizer(RegularizerRequest(name, weight, interval, params), extra[name]))
        except ConfigRequestError as e:
            raise SystemExit(f"arm {spec!r}: {e}") from None

    def configure(cfg: TrainConfig) -> None:
        cfg.augment.kind = augment
        cfg.regularizers = [r for r in cfg.regularizers if r.name not in extra] + copy.deepcopy(chosen)

    return Arm(spec, configure)


def pairs_for(arms: list[str]) -> list[tuple[str, str]]:
    """Each DigGAN arm against the same augmentation without it."""
    out = []
    for a in arms:
        head, *regs = a.split("+")
        if regs and f"{head}" in arms:
            out.append((a, head))
    return out


def tier(arm: str) -> int:
    """0: no augmentation and ADA, each with and without DigGAN (the paper's claim and its failure mode);
    1: the other single additions (DiffAugment, +DigGAN); 2: combined arms (+diggan+lecam)."""
    augment, *regs = arm.split("+")
    if len(regs) > 1:
        return 2
    return 0 if augment in ("none", "ada") else 1


def prioritise(runs_by_dataset: list[list]) -> list:
    """The order runs are trained in, so that a grid cut short is still worth reading: tier by tier
    (see `tier`), dataset by dataset, all seeds of a dataset before the next. Each (tier, dataset)
    is a block: trained, then scored, before the next block starts."""
    order = []
    for t in (0, 1, 2):
        for runs in runs_by_dataset:
            block = [s for s in runs if tier(s.arm) == t]
            for s in block:
                s.block = f"tier{t}:{s.group}"
            order += block
    return order


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--protocol", default="cpu-overfit-32", choices=sorted(PROTOCOLS))
    ap.add_argument("--datasets", default=None, help="comma list of folder names under --data-root, or paths")
    ap.add_argument("--data-root", type=Path, default=Path(os.environ.get("DIGGAN_DATASETS", DATASETS_DIR)),
                    help="folder holding 100-shot-obama/ and 100-shot-grumpy_cat/ (default: $DIGGAN_DATASETS or "
                         "../shared/datasets)")
    ap.add_argument("--arms", default=None, help="comma list, e.g. none,none+diggan,ada,ada+diggan; a weight after a "
                    "colon overrides a regularizer's default, e.g. none+diggan+lecam:0.03")
    ap.add_argument("--seeds", type=int, default=None)
    ap.add_argument("--kimg", type=float, default=None, help="training length of every run (protocol default)")
    ap.add_argument("--max-kimg", type=float, default=None,
                    help="stop every run here (a check of the command; its own --out folder)")
    ap.add_argument("--dry-run", action="store_true",
                    help="the first minutes: 1 seed, the first dataset, --max-kimg 2, 200 images per score")
    ap.add_argument("--num-gen", type=int, default=None, help="generated images for the final KID/FID (paper: 5000)")
    ap.add_argument("--snapshot-num-gen", type=int, default=None, help="generated images for each snapshot KID")
    ap.add_argument("--phase", default="all", choices=("all", "train", "score"))
    ap.add_argument("--only-seeds", default=None,
                    help="comma list: this process trains and scores only these seeds (several processes can "
                         "share one --out, one per seed); the reports cover every run")
    ap.add_argument("--device", default=None)
    ap.add_argument("--out", type=Path, default=None)
    ap.add_argument("--records", default=None,
                    help="folder for scored runs' records, kept in git (default bench/records/<name of --out>; "
                         "'none': keep nothing; never kept for --dry-run or --max-kimg)")
    ap.add_argument("--set", action="append", default=[], metavar="KEY=JSON",
                    help="override a field of every arm's config, e.g. --set perf.precision=bf16 (use its own --out)")
    ap.add_argument("--threads", type=int, default=1, help="torch CPU threads (the CPU protocol is sized for 1)")
    ap.add_argument("--status", action="store_true", help="print each run's state and exit")
    args = ap.parse_args(argv)
    import torch

    torch.set_num_threads(args.threads)  # CPU results are reproducible for a fixed seed and thread count

    proto = PROTOCOLS[args.protocol]
    base = copy.deepcopy(proto.base)
    if args.set:
        from gan_core.cli import parse_set

        try:
            base = apply_overrides(base, parse_set(args.set))
        except KeyError as exc:
            raise SystemExit(f"--set: {exc.args[0]}") from None
    datasets = args.datasets.split(",") if args.datasets else list(proto.datasets)
    arms = args.arms.split(",") if args.arms else list(proto.arms)
    seeds = args.seeds or proto.seeds
    num_gen = args.num_gen or proto.final_num_gen
    out = args.out or Path(f"bench/results/quality-{proto.name}")
    if args.kimg:
        base.kimg = args.kimg
    max_kimg = args.max_kimg
    if args.dry_run:
        max_kimg = max_kimg or 2.0
        seeds, datasets = 1, datasets[:1]
        num_gen = args.num_gen or 200
        base.metrics_num_gen = 200
    if args.snapshot_num_gen:
        base.metrics_num_gen = args.snapshot_num_gen
    if max_kimg is not None and max_kimg < base.kimg:
        base.kimg = max_kimg
        base.tick_kimg = min(base.tick_kimg, max_kimg / 4)
        base.snapshot_ticks = 2  # a checkpoint (and a resume point) every half of the cut run
        out = args.out or out.with_name(out.name + f"-first-{max_kimg:g}kimg")
    device = args.device or proto.device
    records_dir = None if args.records == "none" or max_kimg is not None else (
        Path(args.records) if args.records else Path("bench/records") / out.name)

    runs_by_dataset = []
    for ds in datasets:
        path = Path(ds) if ("/" in ds or Path(ds).exists()) else args.data_root / ds
        if not path.exists():
            raise SystemExit(f"dataset {path} not found")
        group = path.name.removeprefix("100-shot-")
        runs_by_dataset.append(build_specs(base, [make_arm(a, base) for a in arms], list(range(seeds)), group, path))
    specs = prioritise(runs_by_dataset)

    if args.status:
        from grid import kept_record, status

        for s in specs:
            state = status(s.run_dir(out))
            if state == "new" and records_dir is not None and kept_record(records_dir, s):
                state = "kept (scored in an earlier sitting)"
            print(f"{s.group:12s} {s.arm:26s} seed {s.seed}: {state}")
        return
    res = base.network.resolution
    title = (f"{proto.name}: {base.preset} {res}x{res}, {base.kimg:g} kimg, {seeds} seeds, "
             f"final KID/FID on {num_gen} images, snapshot KID on {base.metrics_num_gen}, device {device}")
    phases = ("train", "score") if args.phase == "all" else (args.phase,)
    only = {int(x) for x in args.only_seeds.split(",")} if args.only_seeds else None
    run_arm_grid(specs, out, device, num_gen, title, pairs_for(arms), phases, proto.prune_checkpoints,
                 meta={"protocol": proto.name, "kimg": base.kimg, "seeds": seeds, "arms": arms, "datasets": datasets},
                 work=(lambda s: s.seed in only) if only else None, records_dir=records_dir)
    print((out / "results.md").read_text())


if __name__ == "__main__":
    main()
