"""Execution policy of the trainer: memory format, precision, backend flags, optimizer kernels.

`resolve_perf(cfg.perf, device, arch)` turns the config's `None` (auto) fields into decisions
for one device; `apply_backend_flags` sets the process-wide CUDA switches; `autocast(perf)` is
the context the trainer wraps around passes that may run in reduced precision.

Precision rules (docs/speed.md):
- "float32": everything float32 (on CUDA with TF32 off unless `allow_tf32`).
- "bf16": bf16 autocast in the passes that need no double backward (G forward/backward, D
  main passes); a D pass whose input gradient is taken (R1, DigGAN, DIG measurement, path length)
  runs in float32, as does everything a regularizer computes. Losses are computed in float32.
  bf16 keeps float32's exponent range, so no loss scaling is needed.
"""

from __future__ import annotations

import contextlib
import ctypes
import functools
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from ..config import PerfConfig


@dataclass(frozen=True)
class Perf:
    """The resolved policy for one run on one device."""

    channels_last: bool
    autocast_dtype: torch.dtype | None  # None: no autocast
    joint_d_pass: bool
    fused_adam: bool
    device_type: str
    winograd: bool  # Winograd F(4x4, 3x3) for the wide 3x3 convolutions of a training step
    window_matmul: bool  # strided convolutions' weight gradient as one matmul (gan_core.networks.strided_conv)

    @property
    def memory_format(self) -> torch.memory_format:
        return torch.channels_last if self.channels_last else torch.contiguous_format


def fused_adam_available(device: torch.device) -> bool:
    """torch builds a fused Adam for CUDA (>= 2.0) and CPU (>= 2.4); probe rather than parse versions
    (once per device type: the first fused step imports torch's compile machinery, ~2 s)."""
    return _fused_adam_probe(torch.device(device).type)


@functools.cache
def _fused_adam_probe(device_type: str) -> bool:
    device = torch.device(device_type)
    p = nn.Parameter(torch.zeros(1, device=device))
    p.grad = torch.zeros(1, device=device)
    try:
        torch.optim.Adam([p], lr=0.1, betas=(0.0, 0.99), fused=True).step()
    except (RuntimeError, TypeError, ValueError):
        return False
    return True


def resolve_perf(cfg: PerfConfig, device: torch.device, arch: str) -> Perf:
    stylegan = arch == "stylegan2"
    # channels_last: measured on CPU for StyleGAN2 (bench/train_step.py); the SNGAN/BigGAN nets
    # were not measured, so they keep NCHW unless asked.
    channels_last = stylegan if cfg.channels_last is None else bool(cfg.channels_last)
    # One D call for both sides is exact only without per-call state in D: spectral norm's power
    # iteration (SNGAN/BigGAN) advances once per call, so those keep two calls.
    joint = stylegan if cfg.joint_d_pass is None else bool(cfg.joint_d_pass) and stylegan
    fused = fused_adam_available(device) if cfg.fused_adam is None else bool(cfg.fused_adam)
    dtype = torch.bfloat16 if cfg.precision == "bf16" else None
    # Winograd and the window-matmul weight gradient: measured for float32 channels-last StyleGAN2 layers on CPU
    # (bench/winograd_layers.py, bench/strided_layers.py).
    auto_cpu_kernels = stylegan and channels_last and dtype is None and device.type == "cpu"
    winograd = auto_cpu_kernels if cfg.winograd is None else bool(cfg.winograd)
    # The window matmul was measured to pay on a CPU where torch runs its AVX2 kernels (no AVX-512); on the AVX-512
    # machines of earlier sessions oneDNN's stride-2 weight gradient ran at 70-82 GFLOP/s, about MKL's matmul rate
    # there, so it is left off until measured (docs/speed.md, "Strided convolutions").
    auto_window = auto_cpu_kernels and torch.backends.cpu.get_cpu_capability() == "AVX2"
    window_matmul = auto_window if cfg.window_matmul is None else bool(cfg.window_matmul)
    return Perf(channels_last, dtype, joint, fused, device.type, winograd, window_matmul)


def apply_backend_flags(cfg: PerfConfig, device: torch.device) -> None:
    """Process-wide CUDA switches, set explicitly: torch's own default leaves cuDNN convs in TF32."""
    if device.type != "cuda":
        return
    torch.backends.cuda.matmul.allow_tf32 = bool(cfg.allow_tf32)
    torch.backends.cudnn.allow_tf32 = bool(cfg.allow_tf32)
    torch.backends.cudnn.benchmark = bool(cfg.cudnn_benchmark)


# glibc mallopt parameters (malloc.h): M_TRIM_THRESHOLD, M_MMAP_THRESHOLD.
_M_TRIM_THRESHOLD, _M_MMAP_THRESHOLD = -1, -3


def reuse_host_memory(cfg: PerfConfig, device: torch.device) -> bool:
    """Keep freed host memory in glibc's heap (process-wide): a CPU training step frees and
    re-allocates its activation buffers (MBs each); by default glibc returns them to the OS and
    every page faults back in on the next step. True if applied."""
    if not (cfg.host_memory_reuse if cfg.host_memory_reuse is not None else device.type == "cpu"):
        return False
    try:
        libc = ctypes.CDLL("libc.so.6")
        # Setting either switches off glibc's dynamic thresholds, so set both.
        ok = libc.mallopt(_M_MMAP_THRESHOLD, 512 << 20) and libc.mallopt(_M_TRIM_THRESHOLD, 1 << 30)
    except (OSError, AttributeError):  # not glibc (musl, macOS, Windows): nothing to tune
        return False
    return bool(ok)


def autocast(perf: Perf, enabled: bool = True) -> contextlib.AbstractContextManager[Any]:
    """bf16 autocast for a pass that may use reduced precision, else a no-op context."""
    if perf.autocast_dtype is None or not enabled:
        return contextlib.nullcontext()
    return torch.autocast(device_type=perf.device_type, dtype=perf.autocast_dtype)


def adam_kwargs(perf: Perf) -> dict[str, Any]:
    return {"fused": True} if perf.fused_adam else {}


def to_memory_format(perf: Perf, *modules: nn.Module) -> None:
    if perf.channels_last:
        for m in modules:
            m.to(memory_format=torch.channels_last)


def foreach_lerp_copy(targets: list[torch.Tensor], sources: list[torch.Tensor], beta: float) -> None:
    """targets <- sources.lerp(targets, beta), element for element: NVlabs' EMA update
    (`p_ema.copy_(p.lerp(p_ema, beta))`) in two multi-tensor kernels instead of two per tensor."""
    if not targets:
        return
    torch._foreach_copy_(targets, torch._foreach_lerp(sources, targets, beta))

