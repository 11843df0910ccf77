"""Shared fixtures. Server processes (S3, Redis) live in tests/servers.py."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import torch

pytest_plugins = ["tests.servers"]

REPO_ROOT = Path(__file__).resolve().parent.parent
SHARED_DATASETS = Path(os.environ.get("DIGGAN_SHARED_DATASETS", REPO_ROOT.parent / "shared" / "datasets"))

# Two cores on CI: one intra-op thread per test process keeps timings predictable.
torch.set_num_threads(max(1, min(2, os.cpu_count() or 1)))


@pytest.fixture(scope="session")
def shared_datasets() -> Path:
    """`../shared/datasets`, or skip with a message saying where it was looked for."""
    if not (SHARED_DATASETS / "100-shot-obama").is_dir():
        pytest.skip(f"shared datasets not found at {SHARED_DATASETS} (set DIGGAN_SHARED_DATASETS)")
    return SHARED_DATASETS


def pytest_collection_modifyitems(config, items) -> None:
    """Tests marked `cuda` skip on machines without a CUDA GPU (bench/gpu_check.sh runs them on one)."""
    if torch.cuda.is_available():
        return
    skip = pytest.mark.skip(reason="needs a CUDA GPU (marker 'cuda')")
    for item in items:
        if item.get_closest_marker("cuda") is not None:
            item.add_marker(skip)
