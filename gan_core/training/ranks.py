"""A job whose rank 0 is this process: start ranks 1..N-1 beside it.

The CLI starts all N ranks as children (gan_core.training.distributed.launch). A service worker keeps
rank 0 in its own process instead, because rank 0 owns what only the worker has (its database
session, lease heartbeat, uploads and stop requests), and runs the other ranks as `follower_rank`s:
plain Trainers on the same config, dataset file and resume checkpoint, which write nothing.
"""

from __future__ import annotations

import multiprocessing as mp
import tempfile
from pathlib import Path
from typing import Any

import torch

from .distributed import DistInfo, _entry, init_process_group, rank_device, shutdown


class HelperRanks:
    """Ranks 1..n-1 in spawned processes; this process joins as rank 0 (`info`). Use as a context manager."""

    def __init__(self, n: int, fn: Any, args: tuple[Any, ...], device: str) -> None:
        if n < 2:
            raise ValueError(f"helper ranks are for jobs of 2 or more processes, got {n}")
        self._tmp = tempfile.TemporaryDirectory(prefix="gan_core-rdzv-")
        init_method = Path(self._tmp.name, "rendezvous").as_uri()
        ctx = mp.get_context("spawn")  # never fork a process that holds CUDA, threads or sockets
        self.procs = [ctx.Process(target=_entry, args=(r, n, init_method, device, fn, args), daemon=True,
                                  name=f"rank{r}") for r in range(1, n)]
        for p in self.procs:
            p.start()
        self.device = rank_device(device, 0)
        self.info: DistInfo = init_process_group(0, n, init_method, self.device)

    def close(self, timeout_s: float = 60.0) -> list[int | None]:
        """Leave the group and wait for the helpers (a helper still running after `timeout_s`, e.g. stuck in a
        collective after rank 0 failed, is terminated). Returns their exit codes."""
        shutdown(self.info)
        for p in self.procs:
            p.join(timeout_s)
            if p.is_alive():
                p.terminate()
                p.join(5)
        self._tmp.cleanup()
        return [p.exitcode for p in self.procs]

    def __enter__(self) -> HelperRanks:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def follower_rank(info: DistInfo, device: torch.device, cfg_dict: dict[str, Any], dataset_path: str, run_dir: str,
                  resume_from: str | None) -> None:
    """A rank other than 0: the same Trainer on the same inputs, driven by rank 0's collectives."""
    from ..config import config_from_dict
    from ..data import load_prepared
    from .trainer import Trainer

    trainer = Trainer(config_from_dict(cfg_dict), load_prepared(Path(dataset_path)), Path(run_dir), device=device,
                      resume_from=Path(resume_from) if resume_from else None, dist=info)
    assert trainer.shard is not None
    trainer.shard.broadcast_weights()  # rank 0 may have loaded pretrained weights after building its Trainer
    trainer.run()
