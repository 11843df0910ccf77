"""`python -m gan_core {project,mix,edit} ...`: projection, style mixing and SeFa edits from the command line.

    python -m gan_core project --ckpt CKPT --target face.png --steps 500 --out out/proj [--w-plus]
    python -m gan_core mix --ckpt CKPT --rows 1,2,3 --cols 10,11,12 --styles 0-3 --out mix.png
    python -m gan_core edit --ckpt CKPT --latent out/proj/projected_w.npy --direction 0 --strengths=-3,-1,0,1,3 --out strip.png
"""

from __future__ import annotations

import argparse
import json
import re
import sys
from pathlib import Path
from typing import Any


def add_cli(sub: argparse._SubParsersAction) -> None:
    _add_project(sub)
    _add_mix(sub)
    _add_edit(sub)


def _add_project(sub: argparse._SubParsersAction) -> None:
    from .perceptual import DEFAULT_DISTANCE, DISTANCES
    from .projection import ProjectionConfig

    d = ProjectionConfig()
    p = sub.add_parser("project", help="project a real image into a StyleGAN2 checkpoint's W (or W+) space")
    p.add_argument("--ckpt", required=True, type=Path)
    p.add_argument("--target", required=True, type=Path, help="image file (centre-cropped and resized to G's resolution)")
    p.add_argument("--out", required=True, type=Path,
                   help="folder: projected_w.npy, proj.png, target.png, proj.gif, projection.json")
    p.add_argument("--steps", type=int, default=d.steps)
    p.add_argument("--w-plus", action="store_true", help="one w per layer (W+) instead of one w for all (W)")
    p.add_argument("--distance", choices=DISTANCES, default=DEFAULT_DISTANCE,
                   help=f"image distance to minimise (default {DEFAULT_DISTANCE}; 'discriminator' uses the checkpoint's D)")
    p.add_argument("--seed", type=int, default=d.seed)
    p.add_argument("--no-noise-opt", action="store_true", help="keep the noise maps fixed (NVlabs optimises them)")
    p.add_argument("--device", default="cpu")
    p.set_defaults(func=_cmd_project)


def _cmd_project(args: argparse.Namespace) -> int:
    from tqdm import tqdm

    from ..sampling import save_gif
    from .projection import ProjectionConfig, load_target, project
    from .w import save_w

    G, D = _load(args.ckpt, args.device, with_d=args.distance == "discriminator")
    target = load_target(args.target, G.img_resolution)
    cfg = ProjectionConfig(steps=args.steps, w_plus=args.w_plus, distance=args.distance, seed=args.seed,
                           optimize_noise=not args.no_noise_opt)
    with tqdm(total=cfg.steps, desc="project", unit="step") as bar:
        def progress(step: int, total: int, distance: float) -> None:
            bar.update(step - bar.n)
            bar.set_postfix(dist=f"{distance:.4g}", refresh=False)

        result = project(G, target.to(args.device), cfg, D=D, progress=progress)
    out = args.out
    out.mkdir(parents=True, exist_ok=True)
    save_w(out / "projected_w.npy", result.w)
    _pil(result.image).save(out / "proj.png")
    _pil(result.target).save(out / "target.png")
    save_gif(result.frames, out / "proj.gif", duration_ms=100)
    summary = {**result.summary(), "ckpt": str(args.ckpt), "target": str(args.target), "latent": str(out / "projected_w.npy"),
               "distances": result.distances}
    (out / "projection.json").write_text(json.dumps(summary, indent=2))
    print(json.dumps({k: v for k, v in summary.items() if k != "distances"}))
    return 0


def _add_mix(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("mix", help="style-mixing grid (StyleGAN Fig. 3): rows take the column sources' --styles layers")
    p.add_argument("--ckpt", required=True, type=Path)
    p.add_argument("--rows", required=True, help="row source seeds, e.g. 85,100,75 or 0-4")
    p.add_argument("--cols", required=True, help="column source seeds")
    p.add_argument("--styles", default="0-6", help="layers taken from the column source (NVlabs default 0-6)")
    p.add_argument("--psi", type=float, default=1.0, help="truncation psi (NVlabs style_mixing.py default 1)")
    p.add_argument("--noise-mode", choices=["const", "random", "none"], default="const")
    p.add_argument("--out", required=True, type=Path, help="grid .png")
    p.add_argument("--device", default="cpu")
    p.set_defaults(func=_cmd_mix)


def _cmd_mix(args: argparse.Namespace) -> int:
    from ..specs import parse_seeds
    from .mixing import mixing_grid, parse_styles

    G, _ = _load(args.ckpt, args.device)
    rows, cols = parse_seeds(args.rows), parse_seeds(args.cols)
    styles = parse_styles(args.styles, G.num_ws)
    grid, _ = mixing_grid(G, rows, cols, styles, psi=args.psi, noise_mode=args.noise_mode)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    grid.save(args.out)
    print(json.dumps({"out": str(args.out), "rows": rows, "cols": cols, "styles": styles, "num_ws": G.num_ws}))
    return 0


def _add_edit(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("edit", help="SeFa: render a latent along a closed-form direction at several strengths")
    p.add_argument("--ckpt", required=True, type=Path)
    src = p.add_mutually_exclusive_group(required=True)
    src.add_argument("--seed", type=int, help="edit this seed's latent")
    src.add_argument("--latent", type=Path, help="edit a saved latent (.npy from `project`, or NVlabs' .npz)")
    p.add_argument("--psi", type=float, default=1.0, help="truncation of --seed's latent")
    p.add_argument("--direction", type=int, default=0, help="SeFa direction index (0 = largest eigenvalue)")
    p.add_argument("--strengths", default="-3,-1.5,0,1.5,3", help="comma-separated, e.g. --strengths=-3,-1,0,1,3")
    p.add_argument("--layers", help="style layers to factorise and edit, e.g. 0-3 (default: all but the last ToRGB)")
    p.add_argument("--out", required=True, type=Path, help="strip .png")
    p.add_argument("--save-latents", type=Path, metavar="DIR", help="also write each edited latent as .npy")
    p.add_argument("--device", default="cpu")
    # Let "--strengths -3,-1,0" through: argparse otherwise takes "-3,..." for an option.
    p._negative_number_matcher = re.compile(r"^-\d[\d.,\-eE]*$")
    p.set_defaults(func=_cmd_edit)


def _cmd_edit(args: argparse.Namespace) -> int:
    from .sefa import apply_direction, edit_strip, sefa_directions
    from .w import load_w, save_w, w_from_seeds

    G, _ = _load(args.ckpt, args.device)
    try:
        strengths = [float(s) for s in args.strengths.split(",") if s.strip()]
    except ValueError:
        raise ValueError(f"--strengths {args.strengths!r}: give numbers separated by commas") from None
    if not strengths:
        raise ValueError("--strengths needs at least one value")
    w = w_from_seeds(G, [args.seed], args.psi) if args.latent is None else load_w(args.latent, G)
    sefa = sefa_directions(G, num=args.direction + 1, layers=args.layers)
    strip, _ = edit_strip(G, w, sefa, index=args.direction, strengths=strengths)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    strip.save(args.out)
    if args.save_latents:
        for s in strengths:
            save_w(args.save_latents / f"edit_d{args.direction}_{s:+g}.npy",
                   apply_direction(G, w, sefa.directions[args.direction], s, sefa.layers))
    print(json.dumps({"out": str(args.out), "direction": args.direction, "strengths": strengths,
                      "eigenvalue": float(sefa.eigenvalues[args.direction]), "layers": sefa.layers}))
    return 0


def _load(ckpt: Path, device: str, with_d: bool = False) -> tuple[Any, Any]:
    """The checkpoint's EMA generator (and its D when asked), refusing non-StyleGAN2 checkpoints."""
    from ..sampling import generator_from_payload
    from ..training.checkpoint import CheckpointError, load_checkpoint
    from .w import require_stylegan2

    try:
        payload = load_checkpoint(Path(ckpt))
    except CheckpointError as exc:  # missing, corrupt, or not ours: main() prints it, no traceback
        raise ValueError(str(exc)) from None
    G, cfg = generator_from_payload(payload, device)
    require_stylegan2(G)
    D = None
    if with_d:
        from ..networks import build_discriminator

        D = build_discriminator(cfg.network)
        D.load_state_dict(payload["D"])
        D = D.to(device).eval().requires_grad_(False)
    return G, D


def _pil(image: Any) -> Any:
    from PIL import Image

    return Image.fromarray(image.permute(1, 2, 0).cpu().numpy())


if __name__ == "__main__":  # pragma: no cover
    parser = argparse.ArgumentParser()
    add_cli(parser.add_subparsers(dest="command", required=True))
    a = parser.parse_args()
    sys.exit(a.func(a))
