"""Per-tick averaging of training statistics without a device sync per step."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable, Iterable

import torch


class TickAccumulator:
    """Collects scalars (tensors or floats) and averages them at the end of a tick.

    Tensors stay where they were computed (no `.item()` per step); the first `mean`/`means`
    call copies all of them to the host in one transfer. Across ranks, `all_reduce_means` sums one
    stacked vector of per-key sums and counts (gan_core.training.sharded).
    """

    def __init__(self) -> None:
        self._values: dict[str, list[torch.Tensor | float]] = defaultdict(list)
        self._host: dict[str, list[float]] | None = None

    def add(self, key: str, value: torch.Tensor | float) -> None:
        self._values[key].append(value.detach() if isinstance(value, torch.Tensor) else float(value))
        self._host = None

    def count(self, key: str) -> int:
        return len(self._values.get(key, ()))

    def keys(self) -> list[str]:
        return list(self._values)

    def _host_values(self) -> dict[str, list[float]]:
        if self._host is None:
            tensors = [v for vals in self._values.values() for v in vals if isinstance(v, torch.Tensor)]
            by_device: dict[torch.device, list[int]] = defaultdict(list)
            for i, t in enumerate(tensors):
                by_device[t.device].append(i)
            flat: list[float] = [0.0] * len(tensors)
            for idx in by_device.values():
                # float64 holds every float32 exactly: the same floats as one float(v) per value.
                got = torch.stack([tensors[i].reshape(()).to(torch.float64) for i in idx]).cpu().tolist()
                for i, v in zip(idx, got):
                    flat[i] = v
            it = iter(flat)
            self._host = {k: [next(it) if isinstance(v, torch.Tensor) else v for v in vals]
                          for k, vals in self._values.items()}
        return self._host

    def mean(self, key: str) -> float | None:
        vals = self._host_values().get(key)
        if not vals:
            return None
        return float(sum(vals) / len(vals))

    def means(self, keys: Iterable[str]) -> dict[str, float | None]:
        return {k: self.mean(k) for k in keys}

    def all_reduce_means(self, reduce_sum: Callable[[torch.Tensor], torch.Tensor]) -> None:
        """Make every key's mean the mean over all processes (one collective: `reduce_sum` sums a
        [keys, 2] float64 tensor of per-key sums and counts over the ranks). Every rank must hold the
        same keys (they run the same code on equal shares); a mismatch raises."""
        host = self._host_values()
        keys = sorted(host)
        local = torch.tensor([[float(sum(host[k])), float(len(host[k]))] for k in keys] + [[float(len(keys)), 1.0]],
                             dtype=torch.float64)
        total = reduce_sum(local)
        ranks = int(total[-1, 1])
        if int(total[-1, 0]) != len(keys) * ranks or any(int(n) != len(host[k]) * ranks
                                                         for k, n in zip(keys, total[:-1, 1].tolist())):
            raise RuntimeError("tick statistics differ between ranks (keys or counts); cannot average them")
        self._host = {k: [s / n] for k, (s, n) in zip(keys, total[:-1].tolist())}


def record_dig(acc: TickAccumulator, real_norms: torch.Tensor, fake_norms: torch.Tensor) -> None:
    """The tick's DIG measurement: the gap between D's per-sample gradient norms on reals and on fakes paired at
    random (the pairing drawn on the CPU, so no host sync), and the mean norm on each side."""
    r, f = real_norms.detach(), fake_norms.detach()
    perm = torch.randperm(f.shape[0], device="cpu").to(f.device, non_blocking=True)
    acc.add("dig", (r - f[perm]).square().mean())
    acc.add("grad_norm_real", r.mean())
    acc.add("grad_norm_fake", f.mean())
