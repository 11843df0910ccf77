"""Self-describing, atomically written, checksummed checkpoints.

A checkpoint is a `torch.save`d dict of plain tensors, numbers, strings, lists
and dicts only, so it loads with `torch.load(weights_only=True)`: nothing in it
is ever unpickled as code. It carries the full TrainConfig as a dict.

Writes go to a temp file in the same directory, are fsynced, then renamed over
the target, so a crash leaves either the old file or the new one. The SHA-256
of the bytes is written next to it (`<name>.sha256`) and verified on load when
present, so a truncated or corrupted copy never loads as good.
"""

from __future__ import annotations

import hashlib
import io
import os
import tempfile
from pathlib import Path
from typing import Any

import torch

FORMAT_VERSION = 1


class CheckpointError(RuntimeError):
    """A checkpoint is missing, corrupt, or not one of ours."""


def checkpoint_bytes(payload: dict[str, Any]) -> bytes:
    buf = io.BytesIO()
    torch.save({"format_version": FORMAT_VERSION, **payload}, buf)
    return buf.getvalue()


def sha256_hex(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def atomic_write_bytes(path: Path, data: bytes) -> None:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def save_checkpoint(path: Path, payload: dict[str, Any]) -> str:
    """Write `payload` atomically; returns the SHA-256 of the written bytes."""
    data = checkpoint_bytes(payload)
    digest = sha256_hex(data)
    atomic_write_bytes(Path(path), data)
    atomic_write_bytes(Path(str(path) + ".sha256"), (digest + "\n").encode())
    return digest


def load_checkpoint_bytes(data: bytes, expected_sha256: str | None = None, source: str = "checkpoint") -> dict[str, Any]:
    if expected_sha256 is not None and sha256_hex(data) != expected_sha256.strip():
        raise CheckpointError(f"{source}: checksum mismatch (file corrupt or truncated)")
    try:
        payload = torch.load(io.BytesIO(data), map_location="cpu", weights_only=True)
    except Exception as exc:  # torch raises several types for bad zips/pickles
        raise CheckpointError(f"{source}: not a readable checkpoint ({exc.__class__.__name__}: {exc})") from exc
    if not isinstance(payload, dict) or "config" not in payload:
        raise CheckpointError(f"{source}: not a diggan-service checkpoint (no config inside)")
    return payload


def load_checkpoint(path: Path, expected_sha256: str | None = None) -> dict[str, Any]:
    """Load and verify a checkpoint; uses the `.sha256` sidecar when no checksum is given."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"checkpoint not found: {path}")
    sidecar = Path(str(path) + ".sha256")
    if expected_sha256 is None and sidecar.is_file():
        expected_sha256 = sidecar.read_text().strip()
    return load_checkpoint_bytes(path.read_bytes(), expected_sha256, source=str(path))
