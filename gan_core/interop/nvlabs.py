"""Import NVlabs stylegan2-ada-pytorch network pickles (FFHQ, AFHQ, MetFaces, your own
`network-snapshot-*.pkl`) into our StyleGAN2 without executing anything they contain.

The safety argument
-------------------
An NVlabs pkl is a plain `pickle.dump` of `{"G", "D", "G_ema", "augment_pipe",
"training_set_kwargs"}`. Its networks are `torch_utils.persistence` objects: each is pickled
as a call `_reconstruct_persistent_obj(meta)` where `meta` holds the *source code* of the
module that defined the class, and NVlabs' loader `exec()`s that source. Loading such a file
with `pickle.load` therefore runs arbitrary code chosen by whoever made the file.

Unpickling can only run code by calling a callable it obtained from `find_class` (opcodes
GLOBAL / STACK_GLOBAL, then REDUCE / NEWOBJ / BUILD). `_SafeUnpickler.find_class` never
imports anything: it answers from a fixed table, `_ALLOWED`, and refuses every other name
with an error naming it. Every entry of the table is a function of ours (or a plain
container type) that only builds data:

- `torch_utils.persistence._reconstruct_persistent_obj` -> `_persistent_obj`, which checks
  the meta's shape and returns a `PersistentObject` holding the class *name* and the pickled
  `__dict__` (init kwargs, `_parameters`, `_buffers`, `_modules`). The embedded source is
  only measured and hashed, never compiled or executed; NVlabs' modules need not (and in
  the tests do not) exist in this process.
- `torch.storage._load_from_bytes` (each tensor's storage, a nested `torch.save` blob) ->
  `torch.load(..., weights_only=True)`, torch's own restricted unpickler.
- `torch._utils._rebuild_tensor_v2` / `_rebuild_parameter[_with_state]` -> ours: check the
  storage type and integer sizes/strides, then a plain tensor view (no hooks, no grad).
- `dnnlib.util.EasyDict` -> a dict; `collections.OrderedDict`, `builtins.set/frozenset`;
  numpy scalars, dtypes and arrays of plain numeric kinds (`biufc`) rebuilt from raw bytes.

`persistent_load` is refused too (plain pickles have no persistent ids). Anything else -
`os.system`, `builtins.eval`, `getattr`, any class - raises `NVlabsImportError` before it
is called. Resource limits: a size cap on the file (checked before reading), a check that
it is a pickle (PROTO opcode, protocol 2-5) ending exactly at STOP, and a depth cap on the
structure. The result is then checked field by field: the generator's init kwargs must
describe a network we build (unconditional, skip G, resnet D, ...; fp16 settings ignored),
and every tensor name and shape must match our networks' state dicts exactly (our
parameter names are NVlabs', see gan_core/networks/stylegan2.py) - missing, unexpected or
misshapen tensors, or non-finite values, are refused with a list of them.
"""

from __future__ import annotations

import collections
import hashlib
import io
import math
import os
import pickle
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, BinaryIO, Callable

import numpy as np
import torch

from ..config import NetworkConfig
from ..networks import Discriminator, Generator

DEFAULT_MAX_BYTES = 2 * 1024**3  # FFHQ 1024 (G, D, G_ema, augment pipe) is ~364 MB
MAX_DEPTH = 64
PERSISTENCE_VERSION = 6  # torch_utils.persistence._version in stylegan2-ada-pytorch


class NVlabsImportError(ValueError):
    """The file is not an NVlabs network pickle we can import safely; the message says why."""


# ---------------------------------------------------------------------------
# What find_class may return: data builders only.
# ---------------------------------------------------------------------------


@dataclass
class PersistentObject:
    """An NVlabs persistent object, as data: class name and pickled `__dict__`, never instantiated."""

    class_name: str
    state: dict[str, Any]
    source_bytes: int  # size of the embedded module source (not executed)
    source_sha256: str

    @property
    def init_kwargs(self) -> dict[str, Any]:
        return dict(self.state.get("_init_kwargs") or {})

    def tensors(self, prefix: str = "") -> dict[str, torch.Tensor]:
        """Parameters and persistent buffers, recursively: the keys of `module.state_dict()`."""
        out: dict[str, torch.Tensor] = {}
        skip = set(self.state.get("_non_persistent_buffers_set") or ())
        for kind in ("_parameters", "_buffers"):
            for name, t in (self.state.get(kind) or {}).items():
                if t is None or (kind == "_buffers" and name in skip):
                    continue
                if not isinstance(t, torch.Tensor):
                    raise NVlabsImportError(f"{prefix}{name} is a {type(t).__name__}, not a tensor")
                out[prefix + name] = t
        for name, sub in (self.state.get("_modules") or {}).items():
            if sub is None:
                continue
            if not isinstance(sub, PersistentObject):
                raise NVlabsImportError(f"submodule {prefix}{name} is a {type(sub).__name__}, not an NVlabs module")
            out.update(sub.tensors(f"{prefix}{name}."))
        return out


class _EasyDict(dict):
    """Stand-in for dnnlib.EasyDict during unpickling; converted to a plain dict afterwards."""


class _DTypeStub:
    """numpy.dtype(spec, align, copy) + BUILD(state), resolved without numpy's __setstate__."""

    _SIMPLE = {f"{k}{n}" for k, sizes in {"f": (2, 4, 8), "i": (1, 2, 4, 8), "u": (1, 2, 4, 8),
                                          "c": (8, 16), "b": (1,)}.items() for n in sizes}

    def __init__(self, spec: Any, align: Any = False, copy: Any = True) -> None:
        if not isinstance(spec, str) or spec not in self._SIMPLE:
            raise NVlabsImportError(f"refusing numpy dtype {spec!r}: only plain numeric dtypes are accepted")
        self.spec, self.order = spec, "="

    def __setstate__(self, state: Any) -> None:
        if isinstance(state, tuple) and len(state) >= 2 and state[1] in ("<", ">", "|", "="):
            self.order = state[1]
        else:
            raise NVlabsImportError("refusing a numpy dtype with an unexpected pickled state")

    def resolve(self) -> np.dtype:
        dt = np.dtype(self.spec)
        return dt.newbyteorder(self.order) if self.order in "<>" else dt


def _np_dtype(obj: Any) -> np.dtype:
    if not isinstance(obj, _DTypeStub):
        raise NVlabsImportError("numpy data without a plain numeric dtype")
    return obj.resolve()


def _np_scalar(dtype: Any, data: Any = None) -> float | int | complex | bool:
    dt = _np_dtype(dtype)
    if not isinstance(data, bytes) or len(data) != dt.itemsize:
        raise NVlabsImportError("a numpy scalar whose bytes do not match its dtype")
    return np.frombuffer(data, dtype=dt)[0].item()


class _NDArraySentinel:
    """What `numpy.ndarray` resolves to: only usable as the first argument of `_np_reconstruct`."""


class _NDArrayStub:
    def __init__(self) -> None:
        self.array: np.ndarray | None = None

    def __setstate__(self, state: Any) -> None:
        if not (isinstance(state, tuple) and len(state) == 5):
            raise NVlabsImportError("refusing a numpy array with an unexpected pickled state")
        _, shape, dtype, fortran, raw = state
        dt = _np_dtype(dtype)
        if not (isinstance(shape, tuple) and all(isinstance(s, int) and s >= 0 for s in shape)):
            raise NVlabsImportError("a numpy array with an invalid shape")
        if not isinstance(raw, bytes) or len(raw) != math.prod(shape) * dt.itemsize:
            raise NVlabsImportError("a numpy array whose bytes do not match its shape and dtype")
        self.array = np.frombuffer(raw, dtype=dt).reshape(shape, order="F" if fortran else "C").copy()


def _np_reconstruct(cls: Any, shape: Any = None, typecode: Any = None) -> _NDArrayStub:
    if cls is not _NDArraySentinel:
        raise NVlabsImportError("numpy reconstruct of something other than a plain ndarray")
    return _NDArrayStub()


def _load_storage(data: Any) -> Any:
    if not isinstance(data, (bytes, bytearray)):
        raise NVlabsImportError("a tensor storage that is not a byte string")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # TypedStorage deprecation chatter
        try:
            storage = torch.load(io.BytesIO(bytes(data)), map_location="cpu", weights_only=True)
        except Exception as exc:
            raise NVlabsImportError(f"a tensor storage did not pass torch's weights-only loader: {exc}") from exc
    if not isinstance(storage, (torch.storage.TypedStorage, torch.UntypedStorage)):
        raise NVlabsImportError(f"a tensor storage decoded to a {type(storage).__name__}")
    return storage


def _is_int_tuple(x: Any) -> bool:
    return isinstance(x, (tuple, list, torch.Size)) and all(isinstance(v, int) and v >= 0 for v in x)


def _rebuild_tensor(storage: Any, offset: Any, size: Any, stride: Any, requires_grad: Any = False,
                    backward_hooks: Any = None, metadata: Any = None) -> torch.Tensor:
    if not isinstance(storage, torch.storage.TypedStorage):
        raise NVlabsImportError("a tensor whose storage is not a plain torch storage")
    if not (isinstance(offset, int) and offset >= 0 and _is_int_tuple(size) and _is_int_tuple(stride)
            and len(size) == len(stride)):
        raise NVlabsImportError("a tensor with invalid offset, size or stride")
    if backward_hooks or metadata:
        raise NVlabsImportError("a tensor carrying hooks or metadata (not plain weights)")
    try:
        t = torch._utils._rebuild_tensor(storage, offset, tuple(size), tuple(stride))
    except RuntimeError as exc:  # out of the storage's bounds
        raise NVlabsImportError(f"a tensor that does not fit its storage: {exc}") from exc
    return t


def _rebuild_parameter(data: Any, requires_grad: Any = False, backward_hooks: Any = None,
                       state: Any = None) -> torch.Tensor:
    if not isinstance(data, torch.Tensor):
        raise NVlabsImportError("a parameter whose data is not a tensor")
    if backward_hooks:
        raise NVlabsImportError("a parameter carrying hooks")
    return data  # a plain tensor: we only want the values


def _persistent_obj(meta: Any) -> PersistentObject:
    """Our replacement for NVlabs' `_reconstruct_persistent_obj`: read the meta, exec nothing."""
    if not isinstance(meta, dict):
        raise NVlabsImportError("a persistent object whose meta is not a dict")
    if meta.get("type") != "class":
        raise NVlabsImportError(f"unsupported persistent object type {meta.get('type')!r}")
    if meta.get("version") != PERSISTENCE_VERSION:
        raise NVlabsImportError(f"unsupported torch_utils.persistence version {meta.get('version')!r} "
                                f"(stylegan2-ada-pytorch writes {PERSISTENCE_VERSION})")
    name, src, state = meta.get("class_name"), meta.get("module_src"), meta.get("state")
    if not isinstance(name, str) or not isinstance(src, str) or not isinstance(state, dict):
        raise NVlabsImportError("a persistent object without class_name, module_src and state")
    raw = src.encode("utf-8", "surrogatepass")
    return PersistentObject(name, dict(state), len(raw), hashlib.sha256(raw).hexdigest())


_ALLOWED: dict[tuple[str, str], Any] = {
    ("torch_utils.persistence", "_reconstruct_persistent_obj"): _persistent_obj,
    ("dnnlib.util", "EasyDict"): _EasyDict,
    ("dnnlib", "EasyDict"): _EasyDict,
    ("collections", "OrderedDict"): collections.OrderedDict,
    ("builtins", "set"): set,
    ("builtins", "frozenset"): frozenset,
    ("torch.storage", "_load_from_bytes"): _load_storage,
    ("torch._utils", "_rebuild_tensor_v2"): _rebuild_tensor,
    ("torch._utils", "_rebuild_parameter"): _rebuild_parameter,
    ("torch._utils", "_rebuild_parameter_with_state"): _rebuild_parameter,
    ("numpy", "dtype"): _DTypeStub,
    ("numpy", "ndarray"): _NDArraySentinel,
    ("numpy.core.multiarray", "scalar"): _np_scalar,
    ("numpy._core.multiarray", "scalar"): _np_scalar,
    ("numpy.core.multiarray", "_reconstruct"): _np_reconstruct,
    ("numpy._core.multiarray", "_reconstruct"): _np_reconstruct,
}


class _SafeUnpickler(pickle.Unpickler):
    def find_class(self, module: str, name: str) -> Any:
        try:
            return _ALLOWED[(module, name)]
        except KeyError:
            raise NVlabsImportError(
                f"refusing to load {module}.{name}: the pickle asks for a callable outside the allow-list of "
                "an NVlabs network pickle (a tampered or unrelated file); nothing from it was executed"
            ) from None

    def persistent_load(self, pid: Any) -> Any:
        raise NVlabsImportError("refusing a pickle with persistent ids (not an NVlabs network pickle)")


def _plain(obj: Any, depth: int = 0) -> Any:
    """Replace unpickling stand-ins by plain values (EasyDict -> dict, array stubs -> ndarray)."""
    if depth > MAX_DEPTH:
        raise NVlabsImportError(f"the pickled structure is nested deeper than {MAX_DEPTH} levels")
    if isinstance(obj, PersistentObject):
        obj.state = _plain(obj.state, depth + 1)
        return obj
    if isinstance(obj, dict):
        items = ((k, _plain(v, depth + 1)) for k, v in obj.items())
        return collections.OrderedDict(items) if isinstance(obj, collections.OrderedDict) else dict(items)
    if isinstance(obj, (list, tuple)):
        return type(obj)(_plain(v, depth + 1) for v in obj)
    if isinstance(obj, _NDArrayStub):
        if obj.array is None:
            raise NVlabsImportError("a numpy array without data")
        return obj.array
    if isinstance(obj, (_DTypeStub, type)) or obj is _NDArraySentinel:
        raise NVlabsImportError("a bare numpy dtype or type object in the pickle")
    return obj


# ---------------------------------------------------------------------------
# Reading the file
# ---------------------------------------------------------------------------

Source = str | os.PathLike | bytes | bytearray | memoryview | BinaryIO


def _open(source: Source, max_bytes: int) -> tuple[BinaryIO, str, bool]:
    if isinstance(source, (bytes, bytearray, memoryview)):
        if len(source) > max_bytes:
            raise NVlabsImportError(f"the file is {len(source):,} bytes, over the {max_bytes:,}-byte limit")
        return io.BytesIO(bytes(source)), "upload", True
    if isinstance(source, (str, os.PathLike)):
        path = Path(source)
        if not path.is_file():
            raise NVlabsImportError(f"no such file: {path}")
        size = path.stat().st_size
        if size > max_bytes:
            raise NVlabsImportError(f"{path.name} is {size:,} bytes, over the {max_bytes:,}-byte limit")
        return open(path, "rb"), path.name, True
    pos = source.tell()
    source.seek(0, io.SEEK_END)
    size = source.tell() - pos
    source.seek(pos)
    if size > max_bytes:
        raise NVlabsImportError(f"the file is {size:,} bytes, over the {max_bytes:,}-byte limit")
    return source, getattr(source, "name", "upload"), False


def check_is_pickle(head: bytes, label: str = "the file") -> None:
    """Raise unless `head` (the first bytes) starts a protocol 2-5 pickle."""
    if head[:4] == b"PK\x03\x04":
        raise NVlabsImportError(f"{label} is a zip archive (a PyTorch .pt checkpoint?), not an NVlabs .pkl")
    if len(head) < 2 or head[0] != 0x80 or not 2 <= head[1] <= 5:
        raise NVlabsImportError(f"{label} is not a pickle (an NVlabs network .pkl starts with the pickle "
                                "PROTO opcode, protocol 2-5)")


def read_nvlabs_pickle(source: Source, max_bytes: int = DEFAULT_MAX_BYTES) -> dict[str, Any]:
    """The pickle's content as plain data (networks as `PersistentObject`s). Executes nothing."""
    f, label, close = _open(source, max_bytes)
    try:
        start = f.tell()
        check_is_pickle(f.read(4), label)
        f.seek(start)
        try:
            data = _SafeUnpickler(f).load()
        except NVlabsImportError:
            raise
        except (EOFError, pickle.UnpicklingError, ValueError, TypeError, AttributeError, KeyError,
                IndexError, MemoryError, RecursionError, OverflowError, UnicodeDecodeError) as exc:
            raise NVlabsImportError(f"{label} is truncated or damaged: {type(exc).__name__}: {exc}") from None
        if f.read(1):
            raise NVlabsImportError(f"{label} has data after the end of the pickle (damaged or not one file)")
    finally:
        if close:
            f.close()
    data = _plain(data)
    if not isinstance(data, dict) or not all(isinstance(k, str) for k in data):
        raise NVlabsImportError(f"{label} does not hold a dict of networks (found {type(data).__name__})")
    return data


# ---------------------------------------------------------------------------
# init kwargs -> NetworkConfig
# ---------------------------------------------------------------------------

_FILTER = [1, 3, 3, 1]


def _same(a: Any, b: Any) -> bool:
    if isinstance(a, (list, tuple)) and isinstance(b, (list, tuple)):
        return len(a) == len(b) and all(_same(x, y) for x, y in zip(a, b))
    return a == b


class _Checker:
    """Collects every problem of a kwargs tree, so one error lists them all."""

    def __init__(self) -> None:
        self.problems: list[str] = []
        self.notes: list[str] = []

    def section(self, where: str, kwargs: Any, rules: dict[str, Callable[[Any], str | None]]) -> dict[str, Any]:
        if not isinstance(kwargs, dict):
            self.problems.append(f"{where} is a {type(kwargs).__name__}, expected a dict")
            return {}
        for key, value in kwargs.items():
            rule = rules.get(key)
            if rule is None:
                self.problems.append(f"{where}.{key}={value!r} is not a setting we know")
                continue
            msg = rule(value)
            if msg:
                self.problems.append(f"{where}.{key}={value!r}: {msg}")
        return kwargs

    def ignored(self, why: str) -> Callable[[Any], None]:
        def rule(value: Any) -> None:
            self.notes.append(why)

        return rule


def _ok(pred: Callable[[Any], bool], msg: str) -> Callable[[Any], str | None]:
    return lambda v: None if pred(v) else msg


def _is_int(v: Any) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


_POS_INT = _ok(lambda v: _is_int(v) and v > 0, "must be a positive integer")
_LRELU = _ok(lambda v: v == "lrelu", "only 'lrelu' is supported")
_FIR = _ok(lambda v: _same(v, _FILTER), "only the [1, 3, 3, 1] resampling filter is supported")
_CLAMP = _ok(lambda v: v is None or (isinstance(v, (int, float)) and v > 0), "must be None or a positive number")


def network_config_from_kwargs(g_kwargs: dict[str, Any], d_kwargs: dict[str, Any] | None = None
                               ) -> tuple[NetworkConfig, list[str]]:
    """Our NetworkConfig from NVlabs Generator (and Discriminator) init kwargs, plus notes on
    settings that are ignored. Raises NVlabsImportError listing everything unsupported."""
    c = _Checker()
    fp16 = c.ignored("mixed precision (num_fp16_res / fp16_channels_last) is ignored: we run float32")
    g = c.section("G", g_kwargs, {
        "z_dim": _POS_INT, "w_dim": _POS_INT, "img_channels": _POS_INT,
        "c_dim": _ok(lambda v: v == 0, "conditional (class-label) generators are not supported; "
                                       "only unconditional ones (c_dim=0)"),
        "img_resolution": _ok(lambda v: _is_int(v) and v >= 4 and not v & (v - 1), "must be a power of two >= 4"),
        "mapping_kwargs": lambda v: None, "synthesis_kwargs": lambda v: None,
    })
    for key in ("z_dim", "w_dim", "img_resolution", "img_channels"):
        if key not in g:
            c.problems.append(f"G.{key} is missing")
    w_dim = g.get("w_dim")
    m = c.section("G.mapping_kwargs", g.get("mapping_kwargs", {}), {
        "num_layers": _POS_INT, "activation": _LRELU,
        "lr_multiplier": _ok(lambda v: isinstance(v, (int, float)) and v > 0, "must be a positive number"),
        "layer_features": _ok(lambda v: v is None or v == w_dim, "intermediate widths other than w_dim are not supported"),
        "embed_features": lambda v: None,  # label embedding: unused without conditioning
        "w_avg_beta": _ok(lambda v: v is not None and abs(float(v) - 0.995) < 1e-9, "only w_avg_beta=0.995 is supported"),
    })
    s = c.section("G.synthesis_kwargs", g.get("synthesis_kwargs", {}), {
        "channel_base": _POS_INT, "channel_max": _POS_INT, "conv_clamp": _CLAMP,
        "architecture": _ok(lambda v: v == "skip", "only the 'skip' generator architecture is supported"),
        "resample_filter": _FIR, "activation": _LRELU,
        "use_noise": _ok(lambda v: v is True, "generators without noise inputs are not supported"),
        "kernel_size": _ok(lambda v: v == 3, "only 3x3 convolutions are supported"),
        "num_fp16_res": fp16, "fp16_channels_last": fp16,
    })
    cfg = NetworkConfig(
        resolution=int(g.get("img_resolution", 0) or 0), img_channels=int(g.get("img_channels", 3) or 3),
        z_dim=int(g.get("z_dim", 0) or 0), w_dim=int(g.get("w_dim", 0) or 0),
        mapping_layers=int(m.get("num_layers", 8)),
        channel_base=int(s.get("channel_base", 32768)), channel_max=int(s.get("channel_max", 512)),
        conv_clamp=None if s.get("conv_clamp") is None else float(s["conv_clamp"]),
        mapping_lr_mult=float(m.get("lr_multiplier", 0.01)),
    )
    if d_kwargs is not None:
        d = c.section("D", d_kwargs, {
            "c_dim": _ok(lambda v: v == 0, "conditional discriminators are not supported (c_dim must be 0)"),
            "img_resolution": _ok(lambda v: v == cfg.resolution, f"must equal G's img_resolution {cfg.resolution}"),
            "img_channels": _ok(lambda v: v == cfg.img_channels, f"must equal G's img_channels {cfg.img_channels}"),
            "architecture": _ok(lambda v: v == "resnet", "only the 'resnet' discriminator architecture is supported"),
            "channel_base": _ok(lambda v: v == cfg.channel_base, f"must equal G's channel_base {cfg.channel_base} "
                                                                 "(our G and D share it)"),
            "channel_max": _ok(lambda v: v == cfg.channel_max, f"must equal G's channel_max {cfg.channel_max}"),
            "conv_clamp": _ok(lambda v: (None if v is None else float(v)) == cfg.conv_clamp,
                              f"must equal G's conv_clamp {cfg.conv_clamp} (our G and D share it)"),
            "cmap_dim": lambda v: None, "mapping_kwargs": lambda v: None,  # label mapping: unused when c_dim=0
            "num_fp16_res": fp16, "block_kwargs": lambda v: None, "epilogue_kwargs": lambda v: None,
        })
        c.section("D.block_kwargs", d.get("block_kwargs", {}), {
            "activation": _LRELU, "resample_filter": _FIR, "fp16_channels_last": fp16,
            "freeze_layers": c.ignored("D.block_kwargs.freeze_layers is ignored: every layer trains"),
        })
        e = c.section("D.epilogue_kwargs", d.get("epilogue_kwargs", {}), {
            "mbstd_group_size": _ok(lambda v: v is None or (_is_int(v) and v > 0), "must be None or a positive integer"),
            "mbstd_num_channels": _ok(lambda v: _is_int(v) and v >= 0, "must be a non-negative integer"),
            "activation": _LRELU,
        })
        cfg.mbstd_group_size = e.get("mbstd_group_size", 4)
        cfg.mbstd_num_channels = int(e.get("mbstd_num_channels", 1))
    if c.problems:
        raise NVlabsImportError("this network uses settings our StyleGAN2 does not support:\n  - "
                                + "\n  - ".join(c.problems))
    return cfg, sorted(set(c.notes))


# ---------------------------------------------------------------------------
# Tensors -> our modules
# ---------------------------------------------------------------------------


def load_tensors(module: torch.nn.Module, tensors: dict[str, torch.Tensor], what: str) -> None:
    """Copy `tensors` into `module` after checking every name and shape matches; else list what does not."""
    ours = module.state_dict()
    missing = sorted(set(ours) - set(tensors))
    unexpected = sorted(set(tensors) - set(ours))
    shapes = [f"{k} {tuple(tensors[k].shape)} (ours {tuple(ours[k].shape)})"
              for k in ours if k in tensors and tuple(tensors[k].shape) != tuple(ours[k].shape)]
    bad = [k for k in ours if k in tensors and tensors[k].is_floating_point() and not bool(torch.isfinite(tensors[k]).all())]
    lines = []
    for title, items in (("missing", missing), ("unexpected", unexpected), ("wrong shape", shapes),
                         ("non-finite values", bad)):
        if items:
            shown = ", ".join(items[:12]) + (f", ... ({len(items)} in all)" if len(items) > 12 else "")
            lines.append(f"{title}: {shown}")
    if lines:
        raise NVlabsImportError(f"{what}: the tensors do not match our network for this config:\n  - "
                                + "\n  - ".join(lines))
    module.load_state_dict({k: tensors[k].to(torch.float32) for k in ours}, strict=True)


@dataclass
class NVlabsNetworks:
    """What an NVlabs pkl holds, as our modules (eval mode, float32, on the CPU)."""

    config: NetworkConfig
    G_ema: Generator
    G: Generator | None
    D: Discriminator | None
    notes: list[str] = field(default_factory=list)
    training_set_kwargs: dict[str, Any] | None = None


def _net(data: dict[str, Any], key: str, class_name: str, required: bool) -> PersistentObject | None:
    obj = data.get(key)
    if obj is None:
        if required:
            raise NVlabsImportError(f"the pickle has no {key!r} network (keys: {', '.join(sorted(data)) or 'none'})")
        return None
    if not isinstance(obj, PersistentObject) or obj.class_name != class_name:
        found = obj.class_name if isinstance(obj, PersistentObject) else type(obj).__name__
        raise NVlabsImportError(f"{key!r} is a {found}, expected an NVlabs {class_name}")
    if obj.state.get("_init_args"):
        raise NVlabsImportError(f"{key!r} was built with positional arguments; expected keyword arguments only")
    return obj


def load_nvlabs_pkl(source: Source, max_bytes: int = DEFAULT_MAX_BYTES) -> NVlabsNetworks:
    """Import an NVlabs stylegan2-ada-pytorch pkl as our G_ema, G, D and NetworkConfig (executes nothing)."""
    data = read_nvlabs_pickle(source, max_bytes)
    g_ema = _net(data, "G_ema", "Generator", required=True)
    g = _net(data, "G", "Generator", required=False)
    d = _net(data, "D", "Discriminator", required=False)
    if g is not None and g.init_kwargs != g_ema.init_kwargs:
        raise NVlabsImportError("'G' and 'G_ema' were built with different settings")
    cfg, notes = network_config_from_kwargs(g_ema.init_kwargs, d.init_kwargs if d is not None else None)
    if d is None:
        notes.append("the pickle has no discriminator: a fresh one is used")
    if data.get("augment_pipe") is not None:
        notes.append("the augmentation pipeline in the pickle is not used (ours is configured per job)")

    def build(cls: type, obj: PersistentObject, what: str) -> torch.nn.Module:
        net = cls(cfg)
        load_tensors(net, obj.tensors(), what)
        return net.eval().requires_grad_(False)

    tsk = data.get("training_set_kwargs")
    return NVlabsNetworks(
        config=cfg,
        G_ema=build(Generator, g_ema, "G_ema"),
        G=build(Generator, g, "G") if g is not None else None,
        D=build(Discriminator, d, "D") if d is not None else None,
        notes=notes,
        training_set_kwargs=tsk if isinstance(tsk, dict) else None,
    )
