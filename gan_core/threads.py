"""torch's intra-op thread count, set for a block and restored after."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

import torch


@contextlib.contextmanager
def one_thread() -> Iterator[None]:
    """One intra-op thread, restored after. For tiny nets (on a busy 2-core box a second thread makes every op
    wait for the pool: ~10x slower, measured in the toy) and for runs whose float sums must run in one order
    whatever thread count the process was left with (results repeat bit for bit)."""
    old = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(old)
