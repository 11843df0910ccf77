"""bench/gpu_check.sh in its CPU form (--cpu-smoke): every step runs and the JSON says what it saw."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


def test_gpu_check_cpu_smoke_writes_a_sane_json(tmp_path: Path) -> None:
    out = tmp_path / "gpu_check.json"
    env = {**os.environ, "PYTHON": sys.executable, "OMP_NUM_THREADS": "1"}
    proc = subprocess.run([str(ROOT / "bench" / "gpu_check.sh"), "--cpu-smoke", "--out", str(out),
                           "--train-seconds", "6"], cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]
    res = json.loads(out.read_text())
    assert res["mode"] == "cpu-smoke" and res["ok"] is True
    speed = {(r["preset"], r["precision"]): r for r in res["speed"]}
    assert set(speed) == {(p, q) for p in ("low-shot-256", "paper256") for q in ("float32", "bf16")}
    assert all(r["s_per_kimg"] > 0 and r["finite"] for r in speed.values())
    run = res["training_run"]
    assert run["checks"] == {"ticks": True, "finite_losses": True, "dig_logged_every_tick": True, "p_moving": True}
    assert len(run["ticks"]) >= 3 and all(t["dig"] is not None for t in run["ticks"])
    assert res["nvlabs_published"]["sec_per_kimg"] == [21.6, 24.2]


NVLABS = Path(os.environ.get("DIGGAN_NVLABS", ROOT.parent / "nvlabs-stylegan2-ada-pytorch"))


@pytest.mark.skipif(not (NVLABS / "training" / "training_loop.py").is_file(),
                    reason=f"no stylegan2-ada-pytorch checkout at {NVLABS} (set DIGGAN_NVLABS); nothing of NVlabs "
                           "ships with this repository")
def test_gpu_check_times_nvlabs_side_by_side_when_given_a_checkout(tmp_path: Path) -> None:
    out = tmp_path / "gpu_check.json"
    env = {**os.environ, "PYTHON": sys.executable, "OMP_NUM_THREADS": "1"}
    proc = subprocess.run([str(ROOT / "bench" / "gpu_check.sh"), "--cpu-smoke", "--out", str(out), "--train-seconds",
                           "5", "--nvlabs", str(NVLABS)], cwd=ROOT, env=env, capture_output=True, text=True,
                          timeout=400)
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]
    sbs = json.loads(out.read_text())["side_by_side"]
    assert sbs["ok"] is True, sbs
    assert {"ours/nvlabs", "ours_bf16/nvlabs", "ours_bf16/ours"} <= set(sbs["ratios"])
    assert all(r["median"] > 0 for r in sbs["ratios"].values())
    assert set(sbs["median_s_per_kimg_wall"]) == {"nvlabs", "ours", "ours_bf16"}
