"""Ctrl-C during `python -m gan_core train` stores a checkpoint at the end of the step and prints the command
that resumes it (exit code 130); the resumed run carries on from there. TensorBoard events are written
beside stats.jsonl."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
from PIL import Image

REPO = Path(__file__).resolve().parents[2]


def _images(folder: Path, n: int = 8) -> Path:
    folder.mkdir(parents=True)
    for i in range(n):
        arr = (np.random.default_rng(i).random((64, 64, 3)) * 255).astype("uint8")
        Image.fromarray(arr).save(folder / f"{i}.png")
    return folder


def test_ctrl_c_checkpoints_and_prints_the_resume_command(tmp_path):
    data, out = _images(tmp_path / "imgs"), tmp_path / "run"
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(REPO)}
    cmd = [sys.executable, "-m", "gan_core", "train", "--data", str(data), "--out", str(out), "--preset", "cpu-tiny",
           "--kimg", "50", "--set", "tick_kimg=0.008", "--set", "snapshot_ticks=1000"]
    proc = subprocess.Popen(cmd, env=env, cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 120
    while not (out / "stats.jsonl").exists() or len((out / "stats.jsonl").read_text().splitlines()) < 2:
        assert proc.poll() is None and time.monotonic() < deadline, proc.communicate()
        time.sleep(0.2)
    proc.send_signal(signal.SIGINT)
    stdout, stderr = proc.communicate(timeout=120)
    assert proc.returncode == 130, stderr[-2000:]
    m = re.search(r"resume with:\n\s+(python -m gan_core .*--resume (\S+))", stderr)
    assert m, stderr[-2000:]
    ckpt = Path(m.group(2))
    assert ckpt.is_file() and "Traceback" not in stderr
    stopped = float(re.search(r"stopped at ([0-9.]+) kimg", stderr).group(1))
    assert 0 < stopped < 50
    assert list((out / "tensorboard").glob("events.out.tfevents.*"))

    resume = m.group(1).split()[3:]  # after "python -m gan_core"
    resume[resume.index("--kimg") + 1] = f"{stopped + 0.016:.3f}"
    again = subprocess.run([sys.executable, "-m", "gan_core", *resume], env=env, cwd=REPO, capture_output=True,
                           text=True, timeout=300)
    assert again.returncode == 0, again.stderr[-2000:]
    assert '"kimg": ' in again.stdout and float(re.search(r'"kimg": ([0-9.]+)', again.stdout).group(1)) > stopped
