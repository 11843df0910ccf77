"""What produced a run or an export: package versions and the CPU, recorded in checkpoints, job records and exports.

Reproducing a run needs the same code and libraries as well as the same config and seed,
so every artefact carries this dict. Bit-for-bit it also needs the same CPU kernels: PyTorch picks
its vectorised kernels by the CPU's instruction set, and a run repeated on another machine of this
project (same code, seed, thread count and versions) parted from the first within one tick
(docs/results.md), so the CPU model and torch's kernel level are recorded too.
"""

from __future__ import annotations

import functools
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
        "pillow": _dist_version("pillow"),
        "python": platform.python_version(),
        "cuda": torch.version.cuda,
        "cpu": cpu_model(),
        "cpu_simd": " ".join(cpu_simd_flags()),  # a VM may name only the vendor ("AMD EPYC")
        "cpu_capability": str(torch.backends.cpu.get_cpu_capability()),  # e.g. AVX2, AVX512: which kernels ran
    }
    if device is not None:
        out["device"] = str(device)
        if str(device).startswith("cuda") and torch.cuda.is_available():
            out["gpu"] = torch.cuda.get_device_name(torch.device(str(device)))
    return out


# The instruction-set extensions that decide which kernels PyTorch, oneDNN and NumPy run.
_SIMD_FLAGS = ("sse4_2", "avx", "avx2", "fma", "f16c", "avx512f", "avx512bw", "avx512vl", "avx512_vnni",
               "avx512_bf16", "avx512_fp16", "amx_tile", "amx_bf16")


@functools.cache
def _cpuinfo_first_cpu() -> dict[str, str]:
    """The first processor's fields of /proc/cpuinfo, read once per process (the CPU does not change, and
    every checkpoint asks); empty where the file is absent."""
    fields: dict[str, str] = {}
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as f:
            for line in f:
                if not line.strip():
                    break  # the end of the first processor's block
                key, _, value = line.partition(":")
                fields.setdefault(key.strip(), value.strip())
    except OSError:
        pass
    return fields


def _cpuinfo_field(name: str) -> str | None:
    return _cpuinfo_first_cpu().get(name)


def cpu_simd_flags() -> list[str]:
    """The CPU's SIMD extensions among _SIMD_FLAGS, in that order (empty where /proc/cpuinfo is absent)."""
    flags = set((_cpuinfo_field("flags") or "").split())
    return [f for f in _SIMD_FLAGS if f in flags]


def cpu_model() -> str:
    """The CPU's model name (Linux: /proc/cpuinfo; elsewhere what `platform` knows)."""
    return _cpuinfo_field("model name") or platform.processor() or platform.machine()
