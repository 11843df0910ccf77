"""A job with a real, briefly trained cpu-tiny StyleGAN2 checkpoint, for the latent / projection / editing tests.

The checkpoint comes from gan_core's own Trainer (4 iterations of batch 8 on 16 synthetic 64x64 images, ~5 s
on one thread), and is registered as the job's checkpoint exactly as a worker registers one
(tests/dbstate.add_checkpoint). The job itself is canceled while queued, so no training worker is needed.
"""

from __future__ import annotations

import io
import zipfile
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from tests.dbstate import add_checkpoint
from tests.e2e.harness import images_zip

CKPT = "ckpt-00000.032.pt"
RES = 64  # cpu-tiny


def trained_checkpoint(folder: Path) -> bytes:
    """A cpu-tiny checkpoint after 4 real training iterations (deterministic: seed and one thread)."""
    import torch

    from gan_core.config import get_preset
    from gan_core.data import make_synthetic_dataset, prepare_dataset
    from gan_core.training import Trainer

    cfg = get_preset("cpu-tiny")
    cfg.kimg, cfg.tick_kimg, cfg.snapshot_ticks, cfg.metrics = 0.032, 0.032, 1, []
    data = prepare_dataset(make_synthetic_dataset(folder / "synth", n=16, resolution=RES, seed=0), resolution=RES)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        result = Trainer(cfg, data, folder / "run").run()
    finally:
        torch.set_num_threads(threads)
    return Path(result.last_checkpoint).read_bytes()


def job_with_checkpoint(client: Any, core: Any, tenant: str, ckpt: bytes, headers: dict | None = None) -> str:
    """A (canceled) cpu-tiny job of `tenant` whose latest checkpoint is `ckpt`."""
    h = headers or {}
    ds = client.post("/v1/datasets", files={"file": ("d.zip", images_zip(8), "application/zip")}, headers=h).json()["id"]
    job = client.post("/v1/jobs", json={"dataset_id": ds, "preset": "cpu-tiny", "kimg": 1}, headers=h).json()["id"]
    assert client.post(f"/v1/jobs/{job}/cancel", headers=h).json()["status"] == "canceled"
    add_checkpoint(core, tenant, job, CKPT, ckpt)
    return job


def pixels(png: bytes) -> np.ndarray:
    return np.asarray(Image.open(io.BytesIO(png)).convert("RGB"), dtype=np.int16)


def zip_images(data: bytes) -> list[np.ndarray]:
    with zipfile.ZipFile(io.BytesIO(data)) as zf:
        return [pixels(zf.read(n)) for n in sorted(zf.namelist())]


def sample(client: Any, job: str, seed: int, psi: float, headers: dict | None = None) -> np.ndarray:
    """One seed's sample from the samples endpoint (a batch of one), as int16 HxWx3."""
    r = client.post(f"/v1/jobs/{job}/samples", json={"seeds": [seed], "psi": psi, "format": "zip"}, headers=headers)
    assert r.status_code == 200, r.text
    return zip_images(r.content)[0]


def mse(a: np.ndarray, b: np.ndarray) -> float:
    return float((((a.astype(np.float64) - b.astype(np.float64)) / 255) ** 2).mean())
