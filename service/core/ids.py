"""Server-generated, time-sortable ids: `<prefix>_<16 hex ns timestamp><10 hex random>`.

Sorting ids sorts by creation time, so listing keys newest-first needs no index.
A strict pattern also makes ids safe to embed in object keys.
"""

from __future__ import annotations

import re
import secrets
import time

_PATTERN = re.compile(r"^(?P<prefix>[a-z]+)_[0-9a-f]{26}$")


def new_id(prefix: str) -> str:
    return f"{prefix}_{time.time_ns():016x}{secrets.token_hex(5)}"


def is_valid_id(value: str, prefix: str) -> bool:
    m = _PATTERN.match(value or "")
    return m is not None and m.group("prefix") == prefix
