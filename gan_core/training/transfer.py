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
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

from ..config import NetworkConfig, TrainConfig, config_from_dict, config_to_dict
from ..interop.nvlabs import DEFAULT_MAX_BYTES, NVlabsImportError, check_is_pickle, load_nvlabs_pkl
from .checkpoint import CheckpointError, load_checkpoint, load_checkpoint_bytes, save_checkpoint

KINDS = ("checkpoint", "nvlabs-pkl")


class PretrainedError(ValueError):
    """A pretrained source that cannot start this run; the message says what to change."""


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
        raise PretrainedError(f"{label} is neither one of our .pt checkpoints (a zip) nor an NVlabs .pkl "
                              "(a pickle); upload a checkpoint downloaded from a job or a stylegan2-ada-pytorch "
                              "network pickle") from None
    return "nvlabs-pkl"


def load_pretrained(source: str | os.PathLike | bytes, max_bytes: int = DEFAULT_MAX_BYTES) -> Pretrained:
    """Read a .pt checkpoint of ours or an NVlabs .pkl; raises PretrainedError saying what is wrong."""
    if isinstance(source, (bytes, bytearray)):
        label, size, head = "the upload", len(source), bytes(source[:4])
    else:
        path = Path(source)
        if not path.is_file():
            raise PretrainedError(f"no such file: {path}")
        label, size = path.name, path.stat().st_size
        with open(path, "rb") as f:
            head = f.read(4)
    if size > max_bytes:
        raise PretrainedError(f"{label} is {size:,} bytes, over the {max_bytes:,}-byte limit")
    kind = sniff_kind(head, label)
    if kind == "nvlabs-pkl":
        try:
            nets = load_nvlabs_pkl(source if isinstance(source, (bytes, bytearray)) else Path(source), max_bytes)
        except NVlabsImportError as exc:
            raise PretrainedError(f"{label}: {exc}") from None
        G = nets.G if nets.G is not None else nets.G_ema
        return Pretrained(nets.config, _cpu(G.state_dict()), _cpu(nets.G_ema.state_dict()),
                          _cpu(nets.D.state_dict()) if nets.D is not None else None, kind, label, nets.notes)
    return _from_checkpoint(source, label)


def _from_checkpoint(source: str | os.PathLike | bytes, label: str) -> Pretrained:
    try:
        if isinstance(source, (bytes, bytearray)):
            payload = load_checkpoint_bytes(bytes(source), source=label)
        else:
            payload = load_checkpoint(Path(source))  # verifies the .sha256 sidecar when there is one
    except CheckpointError as exc:
        raise PretrainedError(str(exc)) from None
    try:
        network = config_from_dict(payload["config"]).network
    except (TypeError, ValueError, KeyError) as exc:
        raise PretrainedError(f"{label}: its config is not one this version understands ({exc})") from None
    if not isinstance(payload.get("G_ema"), dict):
        raise PretrainedError(f"{label}: the checkpoint holds no G_ema weights")
    G_ema = payload["G_ema"]
    G = payload["G"] if isinstance(payload.get("G"), dict) else G_ema
    D = payload["D"] if isinstance(payload.get("D"), dict) else None
    meta = payload.get("pretrained") if isinstance(payload.get("pretrained"), dict) else {}
    p = Pretrained(network, G, G_ema, D, str(meta.get("kind", "checkpoint")), str(meta.get("source") or label),
                   [str(n) for n in meta.get("notes", [])])
    if p.kind not in KINDS:
        p.kind = "checkpoint"
    _check_loads(p)
    return p


def _cpu(sd: dict[str, Tensor]) -> dict[str, Tensor]:
    return {k: v.detach().cpu().clone() for k, v in sd.items()}


def _build(network: NetworkConfig) -> tuple[torch.nn.Module, torch.nn.Module]:
    from .. import networks

    if hasattr(networks, "build_networks"):  # the (G, D) pair of network.arch
        return networks.build_networks(network)
    return networks.Generator(network), networks.Discriminator(network)


def _check_loads(p: Pretrained) -> None:
    """The weights fit networks built from `p.network` (names, shapes); else a PretrainedError listing them."""
    try:
        G, D = _build(p.network)
    except ValueError as exc:
        raise PretrainedError(f"{p.source}: its network config cannot be built ({exc})") from None
    for what, net, sd in (("G", G, p.G), ("G_ema", G, p.G_ema), ("D", D, p.D)):
        if sd is None:
            continue
        bad = []
        ours = net.state_dict()
        bad += [f"missing {k}" for k in ours if k not in sd]
        bad += [f"unexpected {k}" for k in sd if k not in ours]
        bad += [f"{k} has shape {tuple(sd[k].shape)}, expected {tuple(ours[k].shape)}"
                for k in ours if k in sd and (not isinstance(sd[k], Tensor) or sd[k].shape != ours[k].shape)]
        if bad:
            raise PretrainedError(f"{p.source}: {what} weights do not match its network config: "
                                  + "; ".join(bad[:10]) + (f" ... ({len(bad)} in all)" if len(bad) > 10 else ""))


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
    conflicts = []
    for key, value in (explicit or {}).items():
        key = key.removeprefix("network.")
        if not hasattr(p.network, key):
            raise PretrainedError(f"unknown network setting {key!r}")
        if getattr(p.network, key) != value:
            conflicts.append(f"network.{key}={value!r} (the pretrained model has {getattr(p.network, key)!r})")
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
