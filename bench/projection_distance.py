"""Which projection distance reconstructs best? (gan_core.latents.perceptual: inception, discriminator, pixel,
inception+pixel)

    python bench/projection_distance.py --ckpt runs/obama/checkpoints/latest.pt \
        --data ../shared/datasets/100-shot-obama --steps 300 --out bench/results/projection_distance.json

Targets: the generator's own samples (seeds --gen-seeds at psi 1, so the true w is known and an exact
reconstruction exists) and --real real training images (the first in sorted order, centre-cropped
and resized like `gan_core project`). Each target is projected once with every distance, same
seed and steps; the run is resumable (finished pairs are kept in --out and skipped).

Scored with measures that none of the three losses optimises directly, plus pixel MSE:
- pixel MSE and PSNR in [0, 1] units, SSIM (Gaussian 11x11, sigma 1.5, per channel, mean);
- Inception pool3 distance: L2 between the 2048-d FID features of reconstruction and target
  (clean-fid preprocessing; the final pooled layer, not the taps the "inception" loss uses,
  but the same network, so it favours that loss somewhat: read it with that in mind);
- generated targets: w distance to the true w, relative to where projection starts
  (|w - w_true| / |w_mean - w_true|; W+ latents: mean over layers).
Per-target values, mean, std and paired Wilcoxon signed-rank tests between distances go to --out.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO_ROOT))  # run as a script from a checkout: the imports below need it first

import numpy as np  # noqa: E402
import torch  # noqa: E402
import torch.nn.functional as F  # noqa: E402

from gan_core.latents import ProjectionConfig, load_target, project, render, w_from_seeds, w_stats  # noqa: E402
from gan_core.metrics.features import FeatureExtractor, list_image_files  # noqa: E402
from gan_core.sampling import load_generator, make_grid  # noqa: E402
from gan_core.specs import parse_seeds  # noqa: E402
from gan_core.training.checkpoint import load_checkpoint  # noqa: E402


def ssim(a: torch.Tensor, b: torch.Tensor) -> float:
    """SSIM (Wang et al. 2004) of two uint8 [3, H, W] images: Gaussian 11x11 window, sigma 1.5, valid region."""
    x, y = a.double()[:, None], b.double()[:, None]  # channels as batch
    g = torch.exp(-((torch.arange(11, dtype=torch.float64) - 5) ** 2) / (2 * 1.5**2))
    g = (g / g.sum())[:, None] * (g / g.sum())[None, :]
    win = g[None, None]
    mu_x, mu_y = F.conv2d(x, win), F.conv2d(y, win)
    sxx = F.conv2d(x * x, win) - mu_x**2
    syy = F.conv2d(y * y, win) - mu_y**2
    sxy = F.conv2d(x * y, win) - mu_x * mu_y
    c1, c2 = (0.01 * 255) ** 2, (0.03 * 255) ** 2
    s = ((2 * mu_x * mu_y + c1) * (2 * sxy + c2)) / ((mu_x**2 + mu_y**2 + c1) * (sxx + syy + c2))
    return float(s.mean())


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--ckpt", required=True, type=Path)
    ap.add_argument("--data", required=True, type=Path, help="folder of real images (the training set)")
    ap.add_argument("--gen-seeds", default="100-107")
    ap.add_argument("--real", type=int, default=4, help="how many real images")
    ap.add_argument("--distances", default="inception,discriminator,pixel,inception+pixel")
    ap.add_argument("--steps", type=int, default=300)
    ap.add_argument("--w-plus", action="store_true")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--out", type=Path, default=REPO_ROOT / "bench/results/projection_distance.json")
    ap.add_argument("--grid", type=Path, help="PNG: targets, then one row of reconstructions per distance")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)

    G, _ = load_generator(args.ckpt)
    payload = load_checkpoint(args.ckpt)
    from gan_core.config import config_from_dict
    from gan_core.networks import build_discriminator

    D = build_discriminator(config_from_dict(payload["config"]).network)
    D.load_state_dict(payload["D"])
    D.eval().requires_grad_(False)
    res = G.img_resolution

    seeds = parse_seeds(args.gen_seeds)
    w_true = w_from_seeds(G, seeds, psi=1.0)
    targets = {f"gen{s}": (render(G, w_true[i : i + 1])[0], w_true[i]) for i, s in enumerate(seeds)}
    for path in list_image_files(args.data)[: args.real]:
        targets[f"real:{Path(path).name}"] = (load_target(path, res), None)
    w_mean, _ = w_stats(G)
    extractor = FeatureExtractor(num_threads=1)

    out = json.loads(args.out.read_text()) if args.out.exists() else {"runs": {}}
    out["setup"] = {"ckpt": str(args.ckpt), "steps": args.steps, "w_plus": args.w_plus, "threads": args.threads,
                    "gen_seeds": seeds, "real": [k for k in targets if k.startswith("real:")],
                    "resolution": res, "torch": torch.__version__}
    distances = [d.strip() for d in args.distances.split(",") if d.strip()]
    recon: dict[str, dict[str, torch.Tensor]] = {d: {} for d in distances}
    for name, (target, wt) in targets.items():
        feat_t = extractor.features_from_uint8(target[None])[0]
        for dist in distances:
            key = f"{dist}|{name}"
            if key in out["runs"] and not args.grid:
                continue  # resumable: finished pairs are kept (the projection is deterministic)
            cfg = ProjectionConfig(steps=args.steps, distance=dist, w_plus=args.w_plus)
            t0 = time.time()
            result = project(G, target, cfg, D=D)
            secs = time.time() - t0
            recon[dist][name] = result.image
            feat_r = extractor.features_from_uint8(result.image[None])[0]
            mse = result.pixel_mse()
            row = {"distance": dist, "target": name, "kind": "generated" if wt is not None else "real",
                   "pixel_mse": mse, "psnr": float(10 * np.log10(1 / max(mse, 1e-12))),
                   "ssim": ssim(result.image, target), "inception_pool3_l2": float(np.linalg.norm(feat_r - feat_t)),
                   "loss_final": result.distance, "seconds": secs, "seconds_per_step": secs / args.steps}
            if wt is not None:
                w = result.w.reshape(-1, result.w.shape[-1])  # [1 or num_ws, w_dim]
                row["w_dist"] = float((w - wt).norm(dim=1).mean())
                row["w_dist_rel"] = row["w_dist"] / float((w_mean - wt).norm())
            out["runs"][key] = row
            args.out.parent.mkdir(parents=True, exist_ok=True)
            args.out.write_text(json.dumps(out, indent=2))
            print(json.dumps(row), flush=True)

    # Over every distance measured so far (a later run may add one to the same file).
    out["summary"] = summarize(out["runs"], list(dict.fromkeys(r["distance"] for r in out["runs"].values())))
    args.out.write_text(json.dumps(out, indent=2))
    print(json.dumps(out["summary"], indent=2))
    if args.grid:
        names = list(targets)
        rows = [torch.stack([targets[n][0] for n in names])] + [torch.stack([recon[d][n] for n in names]) for d in distances]
        make_grid(torch.cat(rows), nrow=len(names)).save(args.grid)
    return 0


def summarize(runs: dict, distances: list[str]) -> dict:
    from scipy.stats import wilcoxon

    metrics = ["pixel_mse", "psnr", "ssim", "inception_pool3_l2", "w_dist_rel"]
    summary: dict = {}
    for kind in ("generated", "real", "all"):
        block: dict = {}
        rows = {d: sorted((r for r in runs.values() if r["distance"] == d and kind in ("all", r["kind"])),
                          key=lambda r: r["target"]) for d in distances}
        for m in metrics:
            per = {d: [r[m] for r in rows[d] if m in r] for d in distances}
            if not any(per.values()):
                continue
            block[m] = {d: {"mean": float(np.mean(v)), "std": float(np.std(v, ddof=1)) if len(v) > 1 else 0.0, "n": len(v)}
                        for d, v in per.items() if v}
            tests = {}
            for i, a in enumerate(distances):
                for b in distances[i + 1 :]:
                    if len(per[a]) == len(per[b]) >= 5:
                        tests[f"{a} vs {b}"] = float(wilcoxon(per[a], per[b]).pvalue)
            block[m]["paired_wilcoxon_p"] = tests
        summary[kind] = block
    return summary


if __name__ == "__main__":
    sys.exit(main())
