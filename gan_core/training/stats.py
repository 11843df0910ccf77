"""Per-tick averaging of training statistics without a device sync per step."""

from __future__ import annotations

from collections import defaultdict
from typing import Iterable

import torch


class TickAccumulator:
    """Collects scalars (tensors or floats) and averages them at the end of a tick."""

    def __init__(self) -> None:
        self._values: dict[str, list[torch.Tensor | float]] = defaultdict(list)

    def add(self, key: str, value: torch.Tensor | float) -> None:
        self._values[key].append(value.detach() if isinstance(value, torch.Tensor) else float(value))

    def count(self, key: str) -> int:
        return len(self._values.get(key, ()))

    def keys(self) -> list[str]:
        return list(self._values)

    def mean(self, key: str) -> float | None:
        vals = self._values.get(key)
        if not vals:
            return None
        return float(sum(float(v) for v in vals) / len(vals))

    def means(self, keys: Iterable[str]) -> dict[str, float | None]:
        return {k: self.mean(k) for k in keys}
