"""One GPU check (bench/gpu_check.sh): CUDA tests, s/kimg per precision, peak memory, a short run.

    bench/gpu_check.sh [--out bench/results/gpu_check.json]     # one H100/H200: under 8 minutes
    bench/gpu_check.sh --cpu-smoke --out /tmp/smoke.json        # the same steps, CI-sized, on CPU

Steps, each written to one JSON:
1. the `cuda`-marked tests (pytest -m cuda on the files that have them);
2. seconds per kimg and peak GPU memory of `low-shot-256` and `paper256` (preset batch sizes) under
   each precision setting: float32 (TF32 off, NVlabs' default), tf32, bf16 (autocast off the
   regularizer passes, TF32 on), with ADA at p = 0.2 so the augment pipe runs;
3. a 2-minute `low-shot-256` run on synthetic images whose ticks must be sane: finite losses, DIG
   logged every tick, ADA's p moving (ada_kimg 20 here so it moves within 2 minutes);
4. NVlabs' published 256x256 one-GPU figures beside ours (their README; a V100, not this GPU);
5. with `--nvlabs PATH` (your stylegan2-ada-pytorch checkout), NVlabs' own code timed side by side with
   ours on this machine (bench/train_step.py --nvlabs, `low-shot-256`): float32 against their --fp32, and
   our bf16 against their fp16 in the 4 highest resolutions (their 'auto'), plus DigGAN's overhead.
Needs only torch, numpy and this repository (the GPU image has no registry access).
"""

from __future__ import annotations

import argparse
import json
import math
import platform
import re
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import torch  # noqa: E402

from gan_core.config import PerfConfig, TrainConfig, get_preset  # noqa: E402
from gan_core.data import PreparedDataset  # noqa: E402
from gan_core.training import Trainer, TrainingCallbacks  # noqa: E402
from gan_core.training.stats import TickAccumulator  # noqa: E402

# NVlabs stylegan2-ada-pytorch README.md, "Expected training time" table, row 256x256 / 1 GPU, measured on
# one Tesla V100 with --cfg=auto (at 256: batch 16, channel_base 16384, 2 mapping layers, fp16 in the 4
# highest resolutions) --aug=ada --metrics=fid50k_full; our low-shot-256 preset is that configuration.
NVLABS_PUBLISHED = {
    "source": "NVlabs/stylegan2-ada-pytorch README.md, table 'Expected training time', 256x256, 1 GPU",
    "gpu": "Tesla V100", "config": "--cfg=auto (batch 16, fmaps 0.5, map 2, fp16 in 4 highest res) --aug=ada",
    "sec_per_kimg": [21.6, 24.2], "gpu_mem_gb": 5.0, "cpu_mem_gb": 4.5, "hours_per_1000_kimg": 6.6,
    "comparable_preset": "low-shot-256",
}
PRECISIONS = {  # name -> PerfConfig fields
    "float32": {"precision": "float32", "allow_tf32": False},
    "tf32": {"precision": "float32", "allow_tf32": True},
    "bf16": {"precision": "bf16", "allow_tf32": True},
}


def synthetic(resolution: int, n: int = 100, seed: int = 0) -> PreparedDataset:
    """Smooth random images (low-frequency noise, upsampled): cheap, and D cannot memorise them at once."""
    g = torch.Generator().manual_seed(seed)
    low = torch.rand(n, 3, 8, 8, generator=g)
    img = torch.nn.functional.interpolate(low, size=resolution, mode="bicubic", align_corners=False)
    images = (img.clamp(0, 1) * 255).round().to(torch.uint8)
    return PreparedDataset(images=images, names=[f"{i}.png" for i in range(n)], warnings=[], resolution=resolution)


def shrink(cfg: TrainConfig) -> TrainConfig:
    """The CI-sized stand-in of a preset: same structure (regularizers, ADA, path length, mixing), 32x32."""
    net = cfg.network
    net.resolution, net.channel_base, net.channel_max, net.z_dim, net.w_dim = 32, 512, 32, 32, 32
    cfg.batch_size = 4
    return cfg


def env_info(device: str) -> dict[str, Any]:
    info: dict[str, Any] = {"torch": torch.__version__, "python": platform.python_version(), "device": device,
                            "cuda": torch.version.cuda, "threads": torch.get_num_threads()}
    if device == "cuda":
        p = torch.cuda.get_device_properties(0)
        info.update(gpu=p.name, capability=f"{p.major}.{p.minor}", gpu_mem_gb=round(p.total_memory / 2**30, 1),
                    cudnn=torch.backends.cudnn.version())
    return info


def run_cuda_tests(timeout: float) -> dict[str, Any]:
    files = sorted(str(p.relative_to(ROOT)) for p in (ROOT / "tests" / "unit").glob("test_*.py")
                   if "mark.cuda" in p.read_text())
    cmd = [sys.executable, "-m", "pytest", "-q", "-m", "cuda", "-p", "no:cacheprovider", *files]
    t0 = time.perf_counter()
    try:
        proc = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=timeout)
    except subprocess.TimeoutExpired as exc:
        return {"files": files, "ok": False, "error": f"timed out after {timeout:.0f} s",
                "output_tail": (exc.stdout or "")[-3000:] if isinstance(exc.stdout, str) else ""}
    out = proc.stdout + proc.stderr
    counts = {k: int(n) for n, k in re.findall(r"(\d+) (passed|failed|skipped|error|errors)", out)}
    return {"files": files, "returncode": proc.returncode, "counts": counts, "ok": proc.returncode == 0,
            "seconds": round(time.perf_counter() - t0, 1), "output_tail": out[-3000:]}


def sync(device: str) -> None:
    if device == "cuda":
        torch.cuda.synchronize()


def time_preset(name: str, precision: str, device: str, smoke: bool, min_seconds: float,
                min_steps: int, warmup: int) -> dict[str, Any]:
    cfg = get_preset(name)
    if smoke:
        shrink(cfg)
    cfg.perf = PerfConfig(**PRECISIONS[precision])
    cfg.augment.initial_p = 0.2  # the augment pipe does its work (p = 0 skips it)
    with tempfile.TemporaryDirectory() as tmp:
        if device == "cuda":
            torch.cuda.empty_cache()
            torch.cuda.reset_peak_memory_stats()
        tr = Trainer(cfg, synthetic(cfg.network.resolution), Path(tmp), device=device)
        acc = TickAccumulator()
        for _ in range(warmup):  # cuDNN autotuning, allocator warm-up, the first R1/DigGAN step
            tr.train_step(acc)
        sync(device)
        steps, t0 = 0, time.perf_counter()
        while steps < min_steps or time.perf_counter() - t0 < min_seconds:
            tr.train_step(acc)
            steps += 1
            if steps % 8 == 0:
                sync(device)
        sync(device)
        dt = time.perf_counter() - t0
        losses = acc.means(("loss_G", "loss_D"))
        out: dict[str, Any] = {
            "preset": name, "precision": precision, "batch": cfg.batch_size, "resolution": cfg.network.resolution,
            "steps": steps, "seconds": round(dt, 2), "s_per_kimg": round(dt / (steps * cfg.batch_size / 1000), 3),
            "finite": all(v is not None and math.isfinite(v) for v in losses.values()),
        }
        if device == "cuda":
            out["peak_mem_gb"] = round(torch.cuda.max_memory_allocated() / 2**30, 2)
            out["peak_reserved_gb"] = round(torch.cuda.max_memory_reserved() / 2**30, 2)
        else:
            out["max_rss_gb"] = round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20, 2)
        del tr
    return out


class _Watch(TrainingCallbacks):
    def __init__(self, seconds: float) -> None:
        self.deadline = time.perf_counter() + seconds
        self.ticks: list[dict[str, Any]] = []

    def on_tick(self, stats: dict[str, Any]) -> None:
        self.ticks.append(stats)

    def should_stop(self) -> bool:
        return time.perf_counter() >= self.deadline


def training_run(device: str, smoke: bool, seconds: float) -> dict[str, Any]:
    cfg = get_preset("low-shot-256")
    if smoke:
        shrink(cfg)
    cfg.augment.ada_kimg = 20.0  # p moves 0.05 per kimg of one-sided evidence: visible within the run
    cfg.kimg = 1e5
    cfg.tick_kimg = 0.016 if smoke else 0.32
    cfg.snapshot_ticks = 10**6  # the final snapshot only
    cfg.num_grid = 4
    with tempfile.TemporaryDirectory() as tmp:
        watch = _Watch(seconds)
        t0 = time.perf_counter()
        result = Trainer(cfg, synthetic(cfg.network.resolution), Path(tmp), device=device, callbacks=watch).run()
        dt = time.perf_counter() - t0
    ticks = watch.ticks
    keep = ("tick", "kimg", "loss_G", "loss_D", "r1", "dig", "grad_norm_real", "grad_norm_fake", "augment_p",
            "ada_rt", "sec_per_kimg")
    ps = [t["augment_p"] for t in ticks]
    checks = {
        "ticks": len(ticks) >= 3,
        "finite_losses": all(all(t[k] is None or math.isfinite(t[k]) for k in ("loss_G", "loss_D")) for t in ticks),
        "dig_logged_every_tick": all(t["dig"] is not None and math.isfinite(t["dig"]) for t in ticks),
        "p_moving": len(set(ps)) > 1,
    }
    return {"preset": "low-shot-256" + (" (shrunk to 32x32)" if smoke else ""), "ada_kimg": cfg.augment.ada_kimg,
            "seconds": round(dt, 1), "kimg": result.kimg, "checks": checks, "ok": all(checks.values()),
            "ticks": [{k: t.get(k) for k in keep} for t in ticks]}


def side_by_side(nvlabs: Path, device: str, smoke: bool, timeout: float) -> dict[str, Any]:
    """bench/train_step.py's side-by-side run against NVlabs' code, in a subprocess (its own arms' processes)."""
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "side_by_side.json"
        cmd = [sys.executable, str(ROOT / "bench" / "train_step.py"), "--device", device, "--nvlabs", str(nvlabs),
               "--preset", "low-shot-256", "--bf16-arm", "--no-antialias-arm", "--out", str(out)]
        if smoke:  # shrink()'s stand-in, one round: checks the plumbing, times nothing worth reading
            small = shrink(get_preset("low-shot-256"))
            net = small.network
            cmd += ["--res", str(net.resolution), "--cbase", str(net.channel_base), "--cmax", str(net.channel_max),
                    "--zdim", str(net.z_dim), "--batch", str(small.batch_size), "--steps", "1", "--rounds", "1",
                    "--warmup-steps", "1", "--diggan-intervals", ""]
        else:
            cmd += ["--steps", "16", "--rounds", "4", "--warmup-steps", "4", "--diggan-intervals", "1,8"]
        t0 = time.perf_counter()
        try:
            proc = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=timeout)
        except subprocess.TimeoutExpired:
            return {"ok": False, "error": f"timed out after {timeout:.0f} s", "command": cmd}
        if proc.returncode != 0 or not out.is_file():
            return {"ok": False, "returncode": proc.returncode, "output_tail": (proc.stdout + proc.stderr)[-3000:]}
        res = json.loads(out.read_text())
    return {"ok": True, "seconds": round(time.perf_counter() - t0, 1), "spec": res["spec"],
            "ratios": {k: v["wall"] for k, v in res["ratios"].items()},
            "median_s_per_kimg_wall": {name: a["median_s_per_kimg_wall"] for name, a in res["arms"].items()},
            "note": "ratios: median over interleaved rounds of (arm / reference) wall s per kimg; <1 means ours is faster"}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", type=Path, default=ROOT / "bench" / "results" / "gpu_check.json")
    ap.add_argument("--cpu-smoke", action="store_true", help="CI-sized, on CPU: 32x32 stand-ins, seconds not minutes")
    ap.add_argument("--train-seconds", type=float, help="length of the training run (default 120; smoke 8)")
    ap.add_argument("--skip-tests", action="store_true")
    ap.add_argument("--budget", type=float, default=460.0, help="seconds for steps 1-4; later steps are cut")
    ap.add_argument("--nvlabs", type=Path, help="your stylegan2-ada-pytorch checkout: also time it side by side "
                    "with ours on this machine (step 5, up to --nvlabs-seconds more)")
    ap.add_argument("--nvlabs-seconds", type=float, default=200.0)
    args = ap.parse_args()
    t_start = time.perf_counter()
    smoke = args.cpu_smoke
    if not smoke and not torch.cuda.is_available():
        sys.exit("no CUDA GPU here: run with --cpu-smoke for the CPU form")
    device = "cpu" if smoke else "cuda"
    if smoke:
        torch.set_num_threads(1)
    result: dict[str, Any] = {"mode": "cpu-smoke" if smoke else "gpu", "env": env_info(device),
                              "nvlabs_published": NVLABS_PUBLISHED}

    def left() -> float:
        """Seconds left for steps 1-4 (step 5 has its own --nvlabs-seconds after them)."""
        return args.budget - (time.perf_counter() - t_start)

    def save() -> None:
        result["elapsed_s"] = round(time.perf_counter() - t_start, 1)
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(result, indent=2))

    if smoke or args.skip_tests:
        result["tests"] = {"skipped": "cpu smoke (no GPU)" if smoke else "--skip-tests"}
    else:
        result["tests"] = run_cuda_tests(timeout=min(150.0, left() - 300))
        print("tests:", result["tests"].get("counts"), flush=True)
    save()

    train_seconds = args.train_seconds or (8.0 if smoke else 120.0)
    speed: list[dict[str, Any]] = []
    precisions = ["float32", "bf16"] if smoke else list(PRECISIONS)  # TF32 is a CUDA switch
    for preset in ("low-shot-256", "paper256"):
        for precision in precisions:
            if left() < train_seconds + 30:
                speed.append({"preset": preset, "precision": precision, "skipped": "time budget"})
                continue
            kw = dict(min_seconds=0.0, min_steps=2, warmup=1) if smoke else dict(min_seconds=8.0, min_steps=17,
                                                                                  warmup=6)
            r = time_preset(preset, precision, device, smoke, **kw)
            speed.append(r)
            print("speed:", json.dumps(r), flush=True)
            result["speed"] = speed
            save()
    result["speed"] = speed
    ls = [r for r in speed if r.get("preset") == "low-shot-256" and "s_per_kimg" in r]
    result["comparison"] = [
        {"ours": f"low-shot-256 {r['precision']}", "s_per_kimg": r["s_per_kimg"],
         "nvlabs_v100_s_per_kimg": NVLABS_PUBLISHED["sec_per_kimg"],
         "speedup_vs_nvlabs_v100": round(sum(NVLABS_PUBLISHED["sec_per_kimg"]) / 2 / r["s_per_kimg"], 2),
         "peak_mem_gb": r.get("peak_mem_gb"), "nvlabs_gpu_mem_gb": NVLABS_PUBLISHED["gpu_mem_gb"]}
        for r in ls] if not smoke else "not comparable on CPU (smoke)"
    result["note"] = ("NVlabs' figures are from a V100 with fp16 in the top layers; this GPU and precision "
                      "differ, so the speed-up mixes hardware and code")
    save()

    result["training_run"] = training_run(device, smoke, max(5.0, min(train_seconds, left() - 10)))
    print("training run:", json.dumps(result["training_run"]["checks"]), flush=True)
    save()
    if args.nvlabs:
        result["side_by_side"] = side_by_side(args.nvlabs, device, smoke, timeout=max(30.0, left() + args.nvlabs_seconds))
        print("side by side:", json.dumps(result["side_by_side"].get("ratios", result["side_by_side"])), flush=True)
    tests_ok = result["tests"].get("ok", True)
    result["ok"] = bool(tests_ok and result["training_run"]["ok"]
                        and all(r.get("finite", True) for r in speed)
                        and result.get("side_by_side", {}).get("ok", True))
    save()
    print(f"wrote {args.out} (ok={result['ok']}, {result['elapsed_s']} s)")


if __name__ == "__main__":
    main()
