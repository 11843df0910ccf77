"""Command line: ``fid DIR_A DIR_B`` and ``metrics --ckpt FILE --data PATH``.

Registered into the main CLI with :func:`add_cli`; also runnable alone as
``python -m gan_core.metrics fid DIR_A DIR_B``. Each sub-command sets ``func`` (args ->
exit code) and prints one JSON object on stdout.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from typing import Any


def _print(obj: dict[str, Any]) -> None:
    print(json.dumps(obj, indent=None, sort_keys=False))


def _cmd_fid(args: argparse.Namespace) -> int:
    from .api import folder_metrics
    from .features import FeatureExtractor

    ext = FeatureExtractor(device=args.device, batch_size=args.batch_size, progress=args.progress)
    res = folder_metrics(
        args.dir_a,
        args.dir_b,
        extractor=ext,
        num_subsets=args.kid_subsets,
        max_subset_size=args.kid_subset_size,
        seed=args.seed,
        fid_method=args.fid_method,
        progress=args.progress,
    )
    _print(res)
    return 0


def _cmd_metrics(args: argparse.Namespace) -> int:
    # Written by other modules; imported lazily so `fid` works without them.
    from gan_core.data import prepare_dataset
    from gan_core.sampling import load_generator

    from .api import FeatureCache, compute_metrics, dataset_features
    from .features import FeatureExtractor

    metrics = [m for m in args.metrics.split(",") if m.strip()]
    G, _cfg = load_generator(args.ckpt, device=args.device)
    ds = prepare_dataset(args.data, resolution=int(G.img_resolution))
    ext = FeatureExtractor(device=args.device, batch_size=args.batch_size, progress=args.progress)
    cache = FeatureCache(args.cache_dir, extractor=ext) if args.cache_dir else None
    real = dataset_features(ds.images, extractor=ext, cache=cache, progress=args.progress)
    res = compute_metrics(
        G,
        real,
        metrics=metrics,
        num_gen=args.num_gen,
        psi=args.psi,
        batch_size=args.gen_batch_size,
        device=args.device,
        seed=args.seed,
        extractor=ext,
        num_subsets=args.kid_subsets,
        max_subset_size=args.kid_subset_size,
        fid_method=args.fid_method,
        progress=args.progress,
    )
    res.update(ckpt=str(args.ckpt), data=str(args.data), resolution=int(G.img_resolution))
    _print(res)
    return 0


def _common(p: argparse.ArgumentParser) -> None:
    p.add_argument("--device", default="cpu", help="cpu | cuda | cuda:N (default: cpu)")
    p.add_argument("--batch-size", type=int, default=None, help="Inception batch size (default: 16 CPU, 64 GPU)")
    p.add_argument("--seed", type=int, default=0, help="seed for KID subsets (and latents)")
    p.add_argument("--kid-subsets", type=int, default=100)
    p.add_argument("--kid-subset-size", type=int, default=1000)
    p.add_argument(
        "--fid-method",
        choices=("fast", "cleanfid"),
        default="fast",
        help="fast: exact nuclear-norm trace (ms); cleanfid: clean-fid's own sqrtm (minutes on CPU)",
    )
    p.add_argument("--progress", action="store_true", help="tqdm progress bars on stderr")


def add_cli(subparsers: Any) -> None:
    """Register `fid` and `metrics` on an argparse sub-parsers object."""
    p = subparsers.add_parser(
        "fid",
        help="FID/KID between two image folders (or zips), clean-fid 'clean' mode, offline",
        description="Prints JSON: fid, kid, kid_std_err, n_a, n_b.",
    )
    p.add_argument("dir_a")
    p.add_argument("dir_b")
    _common(p)
    p.set_defaults(func=_cmd_fid)

    p = subparsers.add_parser(
        "metrics",
        help="KID/FID of a checkpoint's generator against a dataset",
        description="Prints JSON with the requested metrics, num_gen, num_real, seconds.",
    )
    p.add_argument("--ckpt", required=True, help="checkpoint file (EMA generator is used)")
    p.add_argument("--data", required=True, help="image folder or zip (prepared at the generator's resolution)")
    p.add_argument("--metrics", default="kid,fid", help="comma-separated: kid, fid (default: kid,fid)")
    p.add_argument("--num-gen", type=int, default=1000, help="number of generated images (default 1000)")
    p.add_argument("--psi", type=float, default=1.0, help="truncation psi (default 1.0: none)")
    p.add_argument("--gen-batch-size", type=int, default=32)
    p.add_argument("--cache-dir", default=None, help="directory for cached real-image features (.npz)")
    _common(p)
    p.set_defaults(func=_cmd_metrics)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m gan_core.metrics", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    add_cli(sub)
    args = parser.parse_args(argv)
    try:
        return int(args.func(args) or 0)
    except (ValueError, FileNotFoundError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
