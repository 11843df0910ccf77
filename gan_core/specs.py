"""Command-line specs as people type them: seed lists ('0-3,7') and regularizers
('diggan:100:8'). Torch-free, so the `diggan` client parses them exactly as the library does."""

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


def parse_regularizer_spec(spec: str, flag: str = "--reg") -> tuple[str, float, int | None, dict[str, float]]:
    """'lecam:0.3:1:decay=0.99' -> ('lecam', 0.3, 1, {'decay': 0.99}); interval None when not given.

    The grammar only: which names exist is for the caller (the library knows its registry,
    the client leaves it to the server)."""
    parts = spec.split(":")
    if len(parts) < 2 or not parts[0]:
        raise ValueError(f"{flag} {spec!r}: use NAME:WEIGHT[:INTERVAL][:k=v,...], e.g. diggan:100")
    interval = int(parts[2]) if len(parts) > 2 and parts[2] else None
    params: dict[str, float] = {}
    for item in (parts[3].split(",") if len(parts) > 3 and parts[3] else []):
        key, _, value = item.partition("=")
        params[key] = float(value)
    return parts[0], float(parts[1]), interval, params
