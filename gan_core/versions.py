"""What produced a run or an export: package versions, recorded in checkpoints, job records and exports.

Reproducing a run needs the same code and libraries as well as the same config and seed,
so every artefact carries this dict.
"""

from __future__ import annotations

import platform
from importlib import metadata
from typing import Any

from . import __version__


def _dist_version(name: str) -> str | None:
    try:
        return metadata.version(name)
    except metadata.PackageNotFoundError:
        return None


def runtime_versions(device: Any = None) -> dict[str, str | None]:
    """Plain strings only: the dict goes into checkpoints loaded with torch.load(weights_only=True)."""
    import numpy
    import torch

    out: dict[str, str | None] = {
        "diggan_service": _dist_version("diggan-service") or __version__,
        "gan_core": __version__,
        "torch": str(torch.__version__),
        "numpy": str(numpy.__version__),
        "python": platform.python_version(),
        "cuda": torch.version.cuda,
    }
    if device is not None:
        out["device"] = str(device)
        if str(device).startswith("cuda") and torch.cuda.is_available():
            out["gpu"] = torch.cuda.get_device_name(torch.device(str(device)))
    return out
