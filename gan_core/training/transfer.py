"""Transfer learning: start a fresh run from pretrained G, D and G_ema weights.

A source is one of our checkpoints (`.pt`, read with `torch.load(weights_only=True)` and its
checksum sidecar when present) or an NVlabs stylegan2-ada-pytorch `.pkl` (read by
`gan_core.interop.nvlabs`, which never executes the code embedded in it). The kind is told
from the file's first bytes (a zip is ours, a pickle is NVlabs'), not from its name.

    p = load_pretrained("ffhq.pkl")              # or "runs/x/checkpoints/best.pt"
    adopt_network(cfg, p)                        # the run takes the pretrained network shape
    trainer = Trainer(cfg, dataset, out_dir)     # images are resized to that resolution
    apply_pretrained(trainer, p)                 # before the first step; never after a resume

Optimizer state, augmentation p and the schedule are not transferred: the new run starts at
kimg 0 with its own hyperparameters. `save_pretrained` writes the weights as a checkpoint of
ours (config + G + D + G_ema), which `load_pretrained` and `gan_core.sampling` both read.
"""

from __future__ import annotations

import dataclasses
import hashlib
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

from ..config import NetworkConfig, TrainConfig, config_to_dict, network_conflicts
from ..interop.bounds import MAX_TENSORS, BoundsError, check_tree, check_view, network_config_from_plain
from ..interop.errors import PretrainedError, not_a_model_message
from ..interop.nvlabs import (
    DEFAULT_MAX_BYTES,
    TENSOR_BYTES_PER_FILE_BYTE,
    NVlabsImportError,
    check_is_pickle,
    check_tensors,
    reference_networks,
    weights_from_validated,
)
from ..interop.nvlabs_pickle import ValidatedPickle, validate_nvlabs_pickle
from ..interop.torch_zip import check_torch_zip
from .checkpoint import CheckpointError, load_checkpoint_bytes, save_checkpoint

KINDS = ("checkpoint", "nvlabs-pkl")
MAX_NOTES, MAX_NOTE_CHARS = 64, 500  # notes are a handful of short sentences

__all__ = ["KINDS", "Pretrained", "PretrainedError", "adopt_network", "apply_pretrained", "load_pretrained",
           "network_differences", "pretrained_from_nvlabs", "save_pretrained", "sniff_kind"]


@dataclass
class Pretrained:
    """Weights to start from, as CPU state dicts, and the network shape they belong to."""

    network: NetworkConfig
    G: dict[str, Tensor]
    G_ema: dict[str, Tensor]
    D: dict[str, Tensor] | None
    kind: str  # "checkpoint" | "nvlabs-pkl": what the weights were read from originally
    source: str = ""  # file name, for messages
    notes: list[str] = field(default_factory=list)  # settings of the source that are ignored

    def summary(self) -> dict[str, Any]:
        return {"kind": self.kind, "source": self.source, "resolution": self.network.resolution,
                "network": dataclasses.asdict(self.network), "has_discriminator": self.D is not None,
                "notes": list(self.notes)}


def sniff_kind(head: bytes, label: str = "the file") -> str:
    """'checkpoint' (a zip: torch.save) or 'nvlabs-pkl' (a pickle); anything else raises."""
    if head[:4] == b"PK\x03\x04":
        return "checkpoint"
    try:
        check_is_pickle(head, label)
    except NVlabsImportError:
        raise PretrainedError(not_a_model_message(label)) from None
    return "nvlabs-pkl"


def load_pretrained(source: str | os.PathLike | bytes, max_bytes: int = DEFAULT_MAX_BYTES,
                    label: str | None = None) -> Pretrained:
    """Read a .pt checkpoint of ours or an NVlabs .pkl; raises PretrainedError saying what is wrong.

    Every declared size is checked before it is allocated (gan_core.interop.bounds); names and
    shapes are checked against networks built with uninitialised weights, before any value is read. For an untrusted
    upload, call gan_core.interop.sandbox.convert_model_upload, which runs this in a
    separate, resource-limited process. `label` names the file in messages (default: its name)."""
    if isinstance(source, (bytes, bytearray)):
        label, size, head = label or "the upload", len(source), bytes(source[:4])
    else:
        path = Path(source)
        if not path.is_file():
            raise PretrainedError(f"no such file: {label or path}")
        label, size = label or path.name, path.stat().st_size
        with open(path, "rb") as f:
            head = f.read(4)
    if size > max_bytes:
        raise PretrainedError(f"{label} is {size:,} bytes, over the {max_bytes:,}-byte limit")
    kind = sniff_kind(head, label)
    if kind == "nvlabs-pkl":
        try:
            v = validate_nvlabs_pickle(source if isinstance(source, (bytes, bytearray)) else Path(source), max_bytes,
                                       label=label)
        except NVlabsImportError as exc:
            raise _labelled(exc, label) from None
        return pretrained_from_nvlabs(v, label)
    return _from_checkpoint(source, label, max_bytes)


def _labelled(exc: Exception, label: str) -> PretrainedError:
    return PretrainedError(str(exc) if str(exc).startswith(label) else f"{label}: {exc}")


def pretrained_from_nvlabs(v: ValidatedPickle, label: str) -> Pretrained:
    """Pretrained weights from an NVlabs pkl that gan_core.interop.nvlabs_pickle already validated
    (the sandbox validates before it imports torch, then calls this)."""
    try:
        w = weights_from_validated(v)
    except NVlabsImportError as exc:
        raise _labelled(exc, label) from None
    return Pretrained(w.config, w.G if w.G is not None else _copy(w.G_ema), w.G_ema, w.D, "nvlabs-pkl", label, w.notes)


def _copy(sd: dict[str, Tensor]) -> dict[str, Tensor]:
    return {k: v.clone() for k, v in sd.items()}


def _read_checkpoint(source: str | os.PathLike | bytes, label: str, max_bytes: int) -> dict[str, Any]:
    """The checkpoint's payload, after the checks that must come before torch.load."""
    if isinstance(source, (bytes, bytearray)):
        data, expected = bytes(source), None
    else:
        with open(source, "rb") as f:
            data = f.read(max_bytes + 1)
        if len(data) > max_bytes:
            raise PretrainedError(f"{label} is over the {max_bytes:,}-byte limit")
        sidecar = Path(str(source) + ".sha256")  # written by save_checkpoint next to our own files
        expected = sidecar.read_text()[:100].strip() if sidecar.is_file() else None
    if expected is not None and hashlib.sha256(data).hexdigest() != expected:
        raise PretrainedError(f"{label}: checksum mismatch (file corrupt or truncated)")
    try:
        check_torch_zip(data, label)
    except BoundsError as exc:
        raise PretrainedError(str(exc)) from None
    try:
        payload = load_checkpoint_bytes(data, source=label)
    except CheckpointError as exc:
        raise PretrainedError(str(exc)) from None
    del data
    _check_payload(payload, label, size=len(source) if isinstance(source, (bytes, bytearray)) else
                   Path(source).stat().st_size)
    return payload


def _check_payload(payload: Any, label: str, size: int) -> None:
    """Bound what torch.load returned before anything walks or copies it: the container tree
    (shared references count at every visit), and each tensor's view against its storage."""
    seen = {"n": 0, "bytes": 0}

    def tensor(t: Tensor) -> None:
        seen["n"] += 1
        if seen["n"] > MAX_TENSORS:
            raise BoundsError(f"{label} holds more than {MAX_TENSORS:,} tensors")
        if type(t) not in (Tensor, torch.nn.Parameter) or t.layout != torch.strided or t.device.type != "cpu":
            raise BoundsError(f"{label} holds a {type(t).__name__} with layout {t.layout} (only plain dense tensors)")
        numel = check_view(t.shape, t.stride(), t.storage_offset(), t.untyped_storage().nbytes() // t.element_size(),
                           f"{label}: a tensor")
        seen["bytes"] += numel * t.element_size()
        if seen["bytes"] > TENSOR_BYTES_PER_FILE_BYTE * size:
            raise BoundsError(f"{label}: its tensors add up to more than {TENSOR_BYTES_PER_FILE_BYTE}x the file's size "
                              "(they share storage)")

    try:
        check_tree(payload, label=label, leaf=(Tensor,), on_leaf=tensor)
    except BoundsError as exc:
        raise PretrainedError(str(exc)) from None


def _from_checkpoint(source: str | os.PathLike | bytes, label: str, max_bytes: int = DEFAULT_MAX_BYTES) -> Pretrained:
    payload = _read_checkpoint(source, label, max_bytes)
    config = payload.get("config")
    try:
        if not isinstance(config, dict):
            raise BoundsError(f"{label}: its config is a {type(config).__name__}, not a dict")
        network = network_config_from_plain(config.get("network", {}), label)
    except BoundsError as exc:
        raise PretrainedError(f"{label}: its config is not one this version understands ({exc})") from None
    if not isinstance(payload.get("G_ema"), dict):
        raise PretrainedError(f"{label}: the checkpoint holds no G_ema weights")
    G_ema = payload["G_ema"]
    G = payload["G"] if isinstance(payload.get("G"), dict) else G_ema
    D = payload["D"] if isinstance(payload.get("D"), dict) else None
    meta = payload.get("pretrained") if isinstance(payload.get("pretrained"), dict) else {}
    notes = meta.get("notes") if isinstance(meta.get("notes"), list) else []
    kind = meta.get("kind") if meta.get("kind") in KINDS else "checkpoint"
    src = meta.get("source") if isinstance(meta.get("source"), str) and meta.get("source") else label
    p = Pretrained(network, G, G_ema, D, kind, src[:200],
                   [n[:MAX_NOTE_CHARS] for n in notes[:MAX_NOTES] if isinstance(n, str)])
    _check_loads(p)
    return p


def _check_loads(p: Pretrained) -> None:
    """The weights fit networks built from `p.network` (names, shapes); else a PretrainedError listing
    them. The state dicts are replaced by fresh copies in our dtypes. The reference networks are
    never initialised (p.network is within gan_core.interop.bounds)."""
    try:
        G, D = reference_networks(p.network)
    except ValueError as exc:
        raise PretrainedError(f"{p.source}: its network config cannot be built ({exc})") from None
    g_sd, d_sd = G.state_dict(), D.state_dict()
    del G, D
    try:
        p.G_ema = check_tensors(g_sd, p.G_ema, "G_ema")
        p.G = check_tensors(g_sd, p.G, "G")
        if p.D is not None:
            p.D = check_tensors(d_sd, p.D, "D")
    except NVlabsImportError as exc:
        raise PretrainedError(f"{p.source}: weights do not match its network config: {exc}") from None


def save_pretrained(p: Pretrained, path: str | os.PathLike) -> str:
    """Write `p` as a checkpoint of ours (atomic, with a .sha256 sidecar); returns the SHA-256."""
    payload = {
        "config": config_to_dict(TrainConfig(network=p.network)),
        "G": p.G, "G_ema": p.G_ema, **({"D": p.D} if p.D is not None else {}),
        "pretrained": {"kind": p.kind, "source": p.source, "notes": list(p.notes)},
    }
    return save_checkpoint(Path(path), payload)


def network_differences(a: NetworkConfig, b: NetworkConfig) -> list[str]:
    return [f"{f.name}: {getattr(a, f.name)!r} vs {getattr(b, f.name)!r}"
            for f in dataclasses.fields(a) if getattr(a, f.name) != getattr(b, f.name)]


def adopt_network(cfg: TrainConfig, p: Pretrained, explicit: dict[str, Any] | None = None) -> TrainConfig:
    """Give `cfg` the pretrained network shape. `explicit`: network settings the user asked for
    (e.g. {"resolution": 64}); any that differ from the pretrained network raise PretrainedError."""
    unknown = [k for k in (explicit or {}) if not hasattr(p.network, k.removeprefix("network."))]
    if unknown:
        raise PretrainedError(f"unknown network setting {unknown[0].removeprefix('network.')!r}")
    conflicts = network_conflicts(p.network, explicit or {})
    if conflicts:
        raise PretrainedError(f"these settings conflict with the pretrained model {p.source}: {'; '.join(conflicts)}. "
                              "A run started from pretrained weights keeps their network shape (your images are "
                              "resized to its resolution); drop these settings")
    cfg.network = dataclasses.replace(p.network)
    return cfg


def apply_pretrained(trainer: Any, source: Pretrained | str | os.PathLike) -> Pretrained:
    """Load pretrained G, D (when the source has one) and G_ema into a fresh Trainer, in place.

    Call it before the first step and only when not resuming: a run resumed from its own
    checkpoint has its own weights, which must win."""
    p = source if isinstance(source, Pretrained) else load_pretrained(source)
    if trainer.cur_nimg > 0 or trainer.last_checkpoint is not None:
        raise PretrainedError("this run has already trained or resumed from a checkpoint; pretrained weights "
                              "only start a fresh run")
    diff = network_differences(trainer.cfg.network, p.network)
    if diff:
        raise PretrainedError(f"the run's network differs from the pretrained model {p.source} ({'; '.join(diff)}); "
                              "build the run config with adopt_network() first")
    with torch.no_grad():  # load_state_dict copies in place, so the optimizers keep their parameters
        trainer.G.load_state_dict(p.G)
        trainer.G_ema.load_state_dict(p.G_ema)
        if p.D is not None:
            trainer.D.load_state_dict(p.D)
    return p
