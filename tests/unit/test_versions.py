"""What a run records about the machine that made it (gan_core/versions.py)."""

from __future__ import annotations

import platform
from pathlib import Path

import numpy
import torch

from gan_core.versions import cpu_model, cpu_simd_flags, runtime_versions


def test_runtime_versions_name_the_libraries_and_the_cpu_kernels() -> None:
    v = runtime_versions("cpu")
    assert v["torch"] == torch.__version__ and v["numpy"] == numpy.__version__
    assert v["python"] == platform.python_version() and v["device"] == "cpu"
    assert v["cpu_capability"] == str(torch.backends.cpu.get_cpu_capability())
    assert v["cpu"] == cpu_model() and v["cpu"]
    assert v["cpu_simd"] == " ".join(cpu_simd_flags())
    assert all(isinstance(x, str) or x is None for x in v.values())  # checkpoints load with weights_only=True


def test_simd_flags_come_from_cpuinfo_in_a_fixed_order() -> None:
    cpuinfo = Path("/proc/cpuinfo")
    if not cpuinfo.exists():
        assert cpu_simd_flags() == []
        return
    flags = next(line for line in cpuinfo.read_text().splitlines() if line.startswith("flags")).split(":", 1)[1].split()
    got = cpu_simd_flags()
    assert set(got) <= set(flags)
    assert ("avx2" in got) == ("avx2" in flags) and ("avx512f" in got) == ("avx512f" in flags)
