"""Precision policy: float32 by default; with "bf16", autocast only in passes without double
backward, and every pass whose input gradient is taken (R1, DigGAN, DIG) in float32."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from gan_core.config import PerfConfig, validate_config
from gan_core.threads import one_thread
from gan_core.training import Trainer
from gan_core.training.perf import autocast, resolve_perf
from gan_core.training.stats import TickAccumulator
from tests.unit.test_speed_trainer import dataset, micro


@pytest.fixture(autouse=True)
def single_thread():
    with one_thread():
        yield


def test_default_policy_is_float32_everywhere() -> None:
    perf = resolve_perf(PerfConfig(), torch.device("cpu"), "stylegan2")
    assert perf.autocast_dtype is None
    with autocast(perf):
        assert torch.nn.functional.linear(torch.ones(2, 3), torch.ones(4, 3)).dtype == torch.float32
    assert resolve_perf(PerfConfig(precision="bf16"), torch.device("cpu"), "stylegan2").autocast_dtype == torch.bfloat16


def test_unknown_precision_is_refused() -> None:
    cfg = micro(precision="fp8")
    with pytest.raises(ValueError, match="perf.precision"):
        validate_config(cfg)


def test_bf16_runs_plain_passes_in_bf16_and_gradient_passes_in_float32(tmp_path: Path) -> None:
    tr = Trainer(micro(precision="bf16"), dataset(), tmp_path)
    # (D's input is a leaf that needs its gradient: an R1/DigGAN/DIG pass; dtype of D's first layer output).
    # The G step's D input also needs a gradient, but through G's graph (not a leaf): bf16 is fine there.
    seen: list[tuple[bool, torch.dtype]] = []

    def hook(module, args, out) -> None:
        seen.append((args[0].is_leaf and args[0].requires_grad, out.dtype))

    tr.D.b32.fromrgb.register_forward_hook(hook)
    acc = TickAccumulator()
    for _ in range(4):  # step 0: R1 + DigGAN + DIG; 1: plain; 2: DigGAN; 3: plain
        tr.train_step(acc)
    grad_passes = [dtype for needs_grad, dtype in seen if needs_grad]
    plain_passes = [dtype for needs_grad, dtype in seen if not needs_grad]
    assert grad_passes and all(d == torch.float32 for d in grad_passes)
    assert plain_passes and all(d == torch.bfloat16 for d in plain_passes)
    stats = acc.means(("loss_G", "loss_D", "r1", "dig"))
    assert all(v is not None and torch.isfinite(torch.tensor(v)) for v in stats.values())
    assert all(p.dtype == torch.float32 for p in tr.G.parameters())  # autocast keeps float32 weights


def test_float32_run_never_autocasts(tmp_path: Path) -> None:
    tr = Trainer(micro(), dataset(), tmp_path)
    dtypes: list[torch.dtype] = []
    tr.D.b32.fromrgb.register_forward_hook(lambda m, a, out: dtypes.append(out.dtype))
    tr.G.synthesis.b32.torgb.register_forward_hook(lambda m, a, out: dtypes.append(out.dtype))
    acc = TickAccumulator()
    for _ in range(2):
        tr.train_step(acc)
    assert dtypes and set(dtypes) == {torch.float32}
