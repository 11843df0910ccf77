"""`python -m gan_core toy [--variant paper|legacy] ...` (also `python -m gan_core.toy toy ...`)."""

from __future__ import annotations

import argparse
import dataclasses
import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

__all__ = ["add_cli", "main"]


def paper_settings(overrides: Sequence[str], iterations: int | None = None) -> Any:
    """PAPER_SETTINGS with `KEY=JSON` overrides (e.g. `lam=10`, `latents=[-5, 5]`) and --iterations."""
    from .settings import PAPER_SETTINGS

    fields = {f.name: f for f in dataclasses.fields(PAPER_SETTINGS)}
    changes: dict[str, Any] = {}
    for item in overrides:
        key, sep, raw = item.partition("=")
        if not sep or key not in fields:
            raise ValueError(f"--set {item!r}: use KEY=VALUE with KEY one of {', '.join(fields)}")
        value = json.loads(raw)
        changes[key] = tuple(value) if isinstance(value, list) else value
    if iterations is not None:
        changes["iterations"] = iterations
    return dataclasses.replace(PAPER_SETTINGS, **changes)


def _cmd_toy(args: argparse.Namespace) -> int:
    if args.variant == "legacy":
        from . import legacy

        if args.set:
            raise ValueError("--set belongs to --variant paper")
        summary = legacy.run_toy(seeds=args.seeds, out_dir=args.out, iterations=args.iterations,
                                 perturb=args.perturb, progress=not args.no_progress)
        print(json.dumps(summary, indent=2))
        return 0
    from .experiments import run_paper

    if args.perturb:
        raise ValueError("--perturb belongs to --variant legacy; the paper variant always runs Experiments 1-4")
    st = paper_settings(args.set or [], iterations=args.iterations)
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
    p.add_argument("--set", action="append", metavar="KEY=JSON",
                   help="paper only: change one setting of gan_core/toy/settings.py, e.g. --set lam=10 "
                        "(the documented results use none)")
    p.add_argument("--no-progress", action="store_true", help="no progress output")
    p.set_defaults(func=_cmd_toy, handler=_cmd_toy)
    return p


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m gan_core.toy")
    sub = parser.add_subparsers(dest="command", required=True)
    add_cli(sub)
    args = parser.parse_args(argv)
    return int(args.func(args))
