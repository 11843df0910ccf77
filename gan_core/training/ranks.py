"""A job whose rank 0 is this process: start ranks 1..N-1 beside it.

The one way a job runs on several devices, for the CLI (`gan_core train --gpus N`) and a service
worker alike: the process that drives the job stays rank 0, because rank 0 owns what only it has
(the CLI's progress bar and Ctrl-C; the worker's database session, lease heartbeat, uploads and stop
requests), and the other ranks run as `follower_rank`s: plain Trainers on the same config, dataset
file and resume checkpoint, which write nothing and take rank 0's weights.

The helpers are plain subprocesses (`python -m gan_core.training.ranks SPEC RANK`), not
multiprocessing children: Celery's prefork pool runs tasks in daemonic processes, which
multiprocessing forbids to have children. A helper exits when the process that started it is gone,
so a killed worker leaves no rank waiting on its GPU.
"""

from __future__ import annotations

import os
import pickle
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import torch

from .distributed import DistInfo, _entry, cpu_threads_per_rank, init_process_group, rank_device, shutdown


class HelperRanks:
    """Ranks 1..n-1 in subprocesses; this process joins as rank 0 (`info`). Use as a context manager.

    `fn(info, device, *args)` runs on each helper; `fn` must be a module-level function and `args` must
    pickle (they go through a file in a private temp folder)."""

    def __init__(self, n: int, fn: Any, args: tuple[Any, ...], device: str) -> None:
        if n < 2:
            raise ValueError(f"helper ranks are for jobs of 2 or more processes, got {n}")
        self._tmp = tempfile.TemporaryDirectory(prefix="gan_core-ranks-")
        tmp = Path(self._tmp.name)
        spec = tmp / "spec.pkl"
        init_method = (tmp / "rendezvous").as_uri()
        spec.write_bytes(pickle.dumps({"world": n, "init_method": init_method, "device": device, "fn": fn,
                                       "args": args, "parent": os.getpid()}))
        env = dict(os.environ)
        # The helper imports `fn` by name, as this process would: same module search path.
        env["PYTHONPATH"] = os.pathsep.join(p for p in sys.path if p)
        self.procs = [subprocess.Popen([sys.executable, "-m", "gan_core.training.ranks", str(spec), str(r)], env=env)
                      for r in range(1, n)]
        self.device = rank_device(device, 0)
        # N CPU ranks share the cores, this one too (restored on close: this process lives on after the job)
        self._threads_before = torch.get_num_threads()
        threads = cpu_threads_per_rank(self.device, n)
        if threads is not None:
            torch.set_num_threads(threads)
        try:
            self._wait_started(tmp)
            self.info: DistInfo = init_process_group(0, n, init_method, self.device)
        except BaseException:
            self._stop_helpers(0)
            raise

    def _wait_started(self, tmp: Path, timeout_s: float = 600.0) -> None:
        """Until every helper has imported its code: one that dies first (a broken install, no such GPU) is an
        error now, not a rendezvous that waits out the collective timeout."""
        deadline = time.monotonic() + timeout_s
        for rank, p in enumerate(self.procs, start=1):
            while not (tmp / f"started-{rank}").exists():
                if p.poll() is not None:
                    raise RuntimeError(f"rank {rank} of the job exited with code {p.returncode} before it started")
                if time.monotonic() > deadline:
                    raise RuntimeError(f"rank {rank} of the job did not start within {timeout_s:.0f} s")
                time.sleep(0.05)

    def _stop_helpers(self, timeout_s: float) -> list[int | None]:
        for p in self.procs:
            try:
                p.wait(timeout_s)
            except subprocess.TimeoutExpired:
                p.terminate()
                try:
                    p.wait(10)
                except subprocess.TimeoutExpired:
                    p.kill()
                    p.wait()
        self._tmp.cleanup()
        torch.set_num_threads(self._threads_before)
        return [p.returncode for p in self.procs]

    def close(self, timeout_s: float = 60.0) -> list[int | None]:
        """Leave the group and wait for the helpers (one still running after `timeout_s`, e.g. stuck in a
        collective after rank 0 failed, is terminated). Returns their exit codes."""
        shutdown(self.info)
        return self._stop_helpers(timeout_s)

    @property
    def exit_codes(self) -> list[int | None]:
        return [p.returncode for p in self.procs]

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
    trainer.run()  # takes rank 0's weights first (pretrained ones it loaded included)


def _exit_with_parent(parent: int) -> None:
    while os.getppid() == parent:
        time.sleep(1.0)
    os._exit(1)  # rank 0 is gone: nothing will ever answer this rank's collectives


def main(argv: list[str]) -> None:
    spec_path, rank = Path(argv[0]), int(argv[1])
    spec = pickle.loads(spec_path.read_bytes())  # written by HelperRanks in its private temp folder
    threading.Thread(target=_exit_with_parent, args=(spec["parent"],), daemon=True).start()
    (spec_path.parent / f"started-{rank}").touch()  # its code imported (unpickling `fn` did): HelperRanks waits for it
    _entry(rank, spec["world"], spec["init_method"], spec["device"], spec["fn"], spec["args"])


if __name__ == "__main__":
    main(sys.argv[1:])
