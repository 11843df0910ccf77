"""Divergence is handled in the Trainer, so `gan_core train` and a job behave the same: one rollback with
halved learning rates (to the last checkpoint, or to where run() began when there is none yet), reported to
the callbacks; a second divergence ends the run with a message saying what to change."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from gan_core.cli import main
from gan_core.data import make_synthetic_dataset, prepare_dataset
from gan_core.training import Rollback, Trainer, TrainingDiverged
from tests.recorder import Recorder
from tests.unit.test_trainer import micro_config

ABSURD_LR = 1e8  # as tests/integration/test_faults.py: losses are no longer finite within a tick


@pytest.fixture(scope="module")
def folder(tmp_path_factory) -> Path:
    return make_synthetic_dataset(tmp_path_factory.mktemp("synth"), n=12, resolution=32, seed=0)


@pytest.fixture(scope="module")
def dataset(folder):
    return prepare_dataset(folder, resolution=32)


class StateAtRollback(Recorder):
    """Records G's weights as the trainer hands over control after a rollback."""

    def __init__(self) -> None:
        super().__init__()
        self.trainer: Trainer | None = None
        self.weights: list[dict[str, torch.Tensor]] = []

    def on_rollback(self, rollback: Rollback) -> None:
        super().on_rollback(rollback)
        assert self.trainer is not None
        self.weights.append({k: v.clone() for k, v in self.trainer.G.state_dict().items()})


def test_divergence_before_any_checkpoint_restarts_once_from_the_start(dataset, tmp_path: Path) -> None:
    cfg = micro_config(kimg=0.032, g_lr=ABSURD_LR, d_lr=ABSURD_LR)
    cfg.snapshot_ticks = 100  # no checkpoint before the divergence
    rec = StateAtRollback()
    trainer = Trainer(cfg, dataset, tmp_path, callbacks=rec)
    rec.trainer = trainer
    with torch.no_grad():  # weights that differ from a fresh init, as pretrained ones applied before run() do
        for p in trainer.G.parameters():
            p.add_(0.01)
    start = {k: v.clone() for k, v in trainer.G.state_dict().items()}

    with pytest.raises(TrainingDiverged) as err:
        trainer.run()

    (rb,) = rec.rollbacks
    assert rb.checkpoint is None and rb.kimg == 0.0 and "diverged" in rb.reason
    assert (rb.g_lr, rb.d_lr) == (ABSURD_LR / 2, ABSURD_LR / 2)
    assert all(torch.equal(rec.weights[0][k], v) for k, v in start.items())  # back to run()'s starting weights
    assert [g["lr"] for g in trainer.G_opt.param_groups] == [ABSURD_LR / 2]
    msg = str(err.value)
    assert "after one rollback with halved learning rates" in msg and "g_lr=5e+07" in msg and "lower g_lr" in msg
    assert not rec.snapshots


def test_divergence_after_a_checkpoint_rolls_back_to_it(dataset, tmp_path: Path) -> None:
    first = Trainer(micro_config(kimg=0.016), dataset, tmp_path / "a").run()  # one tick, one checkpoint
    cfg = micro_config(kimg=0.032)
    rec = Recorder()
    trainer = Trainer(cfg, dataset, tmp_path / "b", callbacks=rec, resume_from=first.last_checkpoint)
    for opt in (trainer.G_opt, trainer.D_opt):  # from here on, steps this large make the losses non-finite
        for group in opt.param_groups:
            group["lr"] = ABSURD_LR
    result = trainer.run()  # the rollback restores the checkpoint's optimizers (normal rates), halved

    (rb,) = rec.rollbacks
    assert rb.checkpoint == first.last_checkpoint and rb.kimg == pytest.approx(0.016)
    halved = micro_config().g_lr / 2
    assert [g["lr"] for g in trainer.G_opt.param_groups] == [pytest.approx(halved)]
    assert trainer.cfg.g_lr == pytest.approx(halved) and rb.g_lr == trainer.cfg.g_lr
    assert result.kimg == pytest.approx(0.032) and trainer.rolled_back


def test_cli_gets_the_same_rollback(folder, tmp_path: Path, capsys) -> None:
    out = tmp_path / "run"
    code = main(["train", "--data", str(folder), "--out", str(out), "--kimg", "0.032", "--batch", "4",
                 "--tick-kimg", "0.016", "--snapshot-ticks", "100", "--set", "network.resolution=32",
                 "--set", "network.channel_base=512", "--set", "network.channel_max=32", "--set", "num_grid=4",
                 "--set", f"g_lr={ABSURD_LR}", "--set", f"d_lr={ABSURD_LR}", "--device", "cpu"])
    err = capsys.readouterr().err
    assert code == 2, err[-2000:]
    assert "rolled back once to the start of training with halved learning rates (g_lr=5e+07" in err
    assert "error: training diverged" in err and "after one rollback" in err and "Traceback" not in err
