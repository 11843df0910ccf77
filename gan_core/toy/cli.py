"""`python -m gan_core toy [--variant paper|legacy] ...` (also `python -m gan_core.toy toy ...`)."""

from __future__ import annotations

import argparse
import dataclasses
import json
from pathlib import Path
from typing import Any, Sequence

__all__ = ["add_cli", "main"]


def _cmd_toy(args: argparse.Namespace) -> int:
    if args.variant == "legacy":
        from . import legacy

        summary = legacy.run_toy(seeds=args.seeds, out_dir=args.out, iterations=args.iterations,
                                 perturb=args.perturb, progress=not args.no_progress)
        print(json.dumps(summary, indent=2))
        return 0
    from .experiments import run_paper
    from .settings import PAPER_SETTINGS

    if args.perturb:
        raise ValueError("--perturb belongs to --variant legacy; the paper variant always runs Experiments 1-4")
    st = PAPER_SETTINGS if args.iterations is None else dataclasses.replace(PAPER_SETTINGS, iterations=args.iterations)
    summary = run_paper(seeds=args.seeds, out_dir=args.out, settings=st, progress=not args.no_progress)
    print(json.dumps({"out": str(args.out), "summary": str(Path(args.out) / "summary.json"),
                      "figures": summary.get("figures", {}), "tests": summary["tests"]}, indent=2))
    return 0


def add_cli(subparsers: Any) -> argparse.ArgumentParser:
    """Register `toy --variant {paper,legacy} --seeds N --out DIR [--iterations N] [--perturb] [--no-progress]`.

    The handler is stored as both `func` and `handler` defaults: `args.func(args)` runs it and returns 0.
    """
    p = subparsers.add_parser(
        "toy",
        help="DigGAN paper toy experiment: two real 1-D points, vanilla GAN vs DigGAN over many seeds",
        description="The DigGAN paper's toy (section 3.3). --variant paper (default): Experiments 1-4 as the "
                    "paper writes them (gan_core/toy/settings.py); --variant legacy: the earlier sampling/SGD "
                    "variant. Writes summary.json and figures to --out.",
    )
    p.add_argument("--variant", choices=["paper", "legacy"], default="paper",
                   help="paper: the paper's toy as written (default); legacy: the earlier variant")
    p.add_argument("--seeds", type=int, default=20, help="number of seeds (0..N-1), default 20")
    p.add_argument("--out", type=Path, default=Path("runs/toy"), help="output folder (default runs/toy)")
    p.add_argument("--iterations", type=int, default=None,
                   help="training iterations per experiment (default: the variant's, 10000 for paper)")
    p.add_argument("--perturb", action="store_true",
                   help="legacy only: also run its experiments 2 and 4")
    p.add_argument("--no-progress", action="store_true", help="no progress output")
    p.set_defaults(func=_cmd_toy, handler=_cmd_toy)
    return p


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m gan_core.toy")
    sub = parser.add_subparsers(dest="command", required=True)
    add_cli(sub)
    args = parser.parse_args(argv)
    return int(args.func(args))
