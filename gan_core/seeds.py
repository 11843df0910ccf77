"""Seed lists as people type them ('0-3,7'). Torch-free, so the `diggan` client can use it."""

from __future__ import annotations


def parse_seeds(spec: str) -> list[int]:
    """'0-3,7,10-11' -> [0, 1, 2, 3, 7, 10, 11]."""
    seeds: list[int] = []
    for part in spec.split(","):
        part = part.strip()
        if not part:
            continue
        if "-" in part:
            lo, hi = part.split("-", 1)
            a, b = int(lo), int(hi)
            if b < a:
                raise ValueError(f"seed range {part!r} runs backwards")
            seeds.extend(range(a, b + 1))
        else:
            seeds.append(int(part))
    if not seeds:
        raise ValueError(f"no seeds in {spec!r}; use e.g. 0-15 or 1,5,9")
    return seeds
