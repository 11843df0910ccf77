"""Import NVlabs stylegan2-ada-pytorch network pickles (FFHQ, AFHQ, MetFaces, your own
`network-snapshot-*.pkl`) into our StyleGAN2 without executing anything they contain.

Reading and every check of the file happen in `nvlabs_pickle` (torch-free; the safety argument
and the resource limits are documented there). This module adds what needs torch: tensor
values (`to_tensor`), the check of every tensor name and shape against our networks
(`check_tensors`, against `reference_networks` built with uninitialised weights), and the
networks themselves (`load_nvlabs_pkl`).
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass, field
from typing import Any

import torch
from torch.overrides import TorchFunctionMode

from ..config import NetworkConfig
from ..networks import Discriminator, Generator
from .bounds import short_repr
from .nvlabs_pickle import (
    DEFAULT_MAX_BYTES,
    TENSOR_BYTES_PER_FILE_BYTE,
    NVlabsImportError,
    PersistentObject,
    Source,
    TensorRef,
    ValidatedPickle,
    _name,
    check_is_pickle,
    network_config_from_kwargs,
    read_nvlabs_pickle,
    validate_nvlabs_pickle,
)

__all__ = ["DEFAULT_MAX_BYTES", "TENSOR_BYTES_PER_FILE_BYTE", "NVlabsImportError", "NVlabsNetworks", "NVlabsWeights",
           "PersistentObject", "TensorRef", "check_is_pickle", "check_tensors", "load_nvlabs_pkl", "load_tensors",
           "network_config_from_kwargs", "read_nvlabs_pickle", "read_nvlabs_weights", "reference_networks",
           "to_tensor", "validate_nvlabs_pickle", "weights_from_validated"]

_DTYPES = {"float32": torch.float32, "float64": torch.float64, "float16": torch.float16, "bfloat16": torch.bfloat16,
           "int64": torch.int64, "int32": torch.int32, "int16": torch.int16, "int8": torch.int8, "uint8": torch.uint8,
           "bool": torch.bool}


def to_tensor(ref: TensorRef) -> torch.Tensor:
    """The tensor a TensorRef describes: a read-only view of the file's bytes (copy before writing)."""
    s = ref.storage
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # a non-writable buffer: check_tensors copies before anyone writes
        flat = (torch.frombuffer(s.data, dtype=_DTYPES[s.dtype], count=s.numel, offset=s.offset) if s.numel
                else torch.empty(0, dtype=_DTYPES[s.dtype]))
    return flat.as_strided(ref.size, ref.stride, ref.offset)


def check_tensors(ours: dict[str, torch.Tensor], tensors: dict[str, Any], what: str) -> dict[str, torch.Tensor]:
    """Check that `tensors` has exactly the names and shapes of the state dict `ours` (only its
    names, shapes and dtypes are used), then return fresh, contiguous copies in our dtypes. Names and
    shapes are checked before any value is read or copied; non-finite values are refused after."""
    missing = sorted(set(ours) - set(tensors))
    unexpected = sorted(_name(k) for k in set(tensors) - set(ours))
    shapes, kinds = [], []
    for k, ref in ours.items():
        t = tensors.get(k)
        if t is None:
            continue
        if not isinstance(t, (torch.Tensor, TensorRef)):
            kinds.append(f"{k} is a {type(t).__name__}")
        elif tuple(t.shape) != tuple(ref.shape):
            shapes.append(f"{k} {short_repr(tuple(t.shape))} (ours {tuple(ref.shape)})")
        elif ref.is_floating_point() and not (t.is_floating_point() or t.dtype in (torch.bool, "bool")):
            kinds.append(f"{k} holds {t.dtype} values, not floating point")
    lines = []

    def listed(title: str, items: list[str]) -> None:
        if items:
            shown = ", ".join(items[:12]) + (f", ... ({len(items)} in all)" if len(items) > 12 else "")
            lines.append(f"{title}: {shown}")

    for title, items in (("missing", missing), ("unexpected", unexpected), ("wrong shape", shapes),
                         ("wrong type", kinds)):
        listed(title, items)
    out: dict[str, torch.Tensor] = {}
    if not lines:
        for k, ref in ours.items():
            t = tensors[k]
            out[k] = torch.empty(ref.shape, dtype=ref.dtype).copy_(to_tensor(t) if isinstance(t, TensorRef) else t)
        listed("non-finite values", [k for k, t in out.items() if t.is_floating_point() and not bool(torch.isfinite(t).all())])
    if lines:
        raise NVlabsImportError(f"{what}: the tensors do not match our network for this config:\n  - "
                                + "\n  - ".join(lines))
    return out


def load_tensors(module: torch.nn.Module, tensors: dict[str, torch.Tensor], what: str) -> None:
    """Copy `tensors` into `module` after checking every name and shape matches; else list what does not."""
    module.load_state_dict(check_tensors(module.state_dict(), tensors, what), strict=True)


class _UninitialisedFactories(TorchFunctionMode):
    """torch.randn/rand/zeros/ones/full -> torch.empty: a network's constructor allocates but never
    initialises (no RNG work, untouched pages stay unmapped)."""

    _FACTORIES = frozenset({torch.randn, torch.rand, torch.zeros, torch.ones})

    def __torch_function__(self, func: Any, types: Any, args: Any = (), kwargs: Any = None) -> Any:
        kwargs = kwargs or {}
        if func in self._FACTORIES or func is torch.full:
            size = kwargs.get("size", args[0] if func is torch.full or len(args) == 1 else args)
            return torch.empty(size, dtype=kwargs.get("dtype"), device=kwargs.get("device"))
        return func(*args, **kwargs)


def reference_networks(cfg: NetworkConfig) -> tuple[torch.nn.Module, torch.nn.Module]:
    """G and D for `cfg` whose state dicts give the expected names, shapes and dtypes; their weights
    are uninitialised memory. The caller checks `cfg` against gan_core.interop.bounds first.

    Not the "meta" device: every op on meta tensors goes through torch's Python decompositions,
    which import torch._dynamo on first use (~2-3 s and ~800 modules per fresh process here); this
    costs 0.08 s for a 1024x1024 network and 0.3 s at the bounds' largest, untouched pages aside."""
    from ..networks import build_networks

    with torch.no_grad(), _UninitialisedFactories():
        return build_networks(cfg)


@dataclass
class NVlabsWeights:
    """What an NVlabs pkl holds, as checked float32 state dicts of our networks (no modules built)."""

    config: NetworkConfig
    G_ema: dict[str, torch.Tensor]
    G: dict[str, torch.Tensor] | None
    D: dict[str, torch.Tensor] | None
    notes: list[str] = field(default_factory=list)
    training_set_kwargs: dict[str, Any] | None = None


@dataclass
class NVlabsNetworks:
    """What an NVlabs pkl holds, as our modules (eval mode, float32, on the CPU)."""

    config: NetworkConfig
    G_ema: Generator
    G: Generator | None
    D: Discriminator | None
    notes: list[str] = field(default_factory=list)
    training_set_kwargs: dict[str, Any] | None = None


def weights_from_validated(v: ValidatedPickle) -> NVlabsWeights:
    """Checked float32 state dicts of our G_ema, G, D from a validated pkl (tensor values are read
    only after every name and shape matched)."""
    G_ref, D_ref = reference_networks(v.config)
    g_sd, d_sd = G_ref.state_dict(), D_ref.state_dict()
    del G_ref, D_ref
    return NVlabsWeights(
        config=v.config,
        G_ema=check_tensors(g_sd, v.G_ema.tensors(), "G_ema"),
        G=check_tensors(g_sd, v.G.tensors(), "G") if v.G is not None else None,
        D=check_tensors(d_sd, v.D.tensors(), "D") if v.D is not None else None,
        notes=list(v.notes),
        training_set_kwargs=v.training_set_kwargs,
    )


def read_nvlabs_weights(source: Source, max_bytes: int = DEFAULT_MAX_BYTES, label: str | None = None) -> NVlabsWeights:
    """Import an NVlabs stylegan2-ada-pytorch pkl as checked state dicts of our G_ema, G, D and the
    NetworkConfig (executes nothing; the reference networks are never initialised or run)."""
    return weights_from_validated(validate_nvlabs_pickle(source, max_bytes, label))


def load_nvlabs_pkl(source: Source, max_bytes: int = DEFAULT_MAX_BYTES) -> NVlabsNetworks:
    """Import an NVlabs stylegan2-ada-pytorch pkl as our G_ema, G, D and NetworkConfig (executes nothing)."""
    w = read_nvlabs_weights(source, max_bytes)

    def build(cls: type, sd: dict[str, torch.Tensor]) -> torch.nn.Module:
        net = cls(w.config)
        net.load_state_dict(sd, strict=True)
        return net.eval().requires_grad_(False)

    return NVlabsNetworks(
        config=w.config,
        G_ema=build(Generator, w.G_ema),
        G=build(Generator, w.G) if w.G is not None else None,
        D=build(Discriminator, w.D) if w.D is not None else None,
        notes=w.notes,
        training_set_kwargs=w.training_set_kwargs,
    )
