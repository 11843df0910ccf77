"""Read and check NVlabs stylegan2-ada-pytorch network pickles (FFHQ, AFHQ, MetFaces, your own
`network-snapshot-*.pkl`) without executing anything they contain - and without torch, so the
sandbox (gan_core.interop.sandbox) refuses a hostile file before it imports torch. Tensor values,
the check against our networks and the networks themselves are in gan_core.interop.nvlabs.

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
- `torch.storage._load_from_bytes` (each tensor's storage, a nested legacy `torch.save` blob)
  -> `_decode_storage`: its five small pickles are read by a second unpickler whose allow-list
  is torch's ten storage class names, mapped to dtype names (nothing is imported); the
  elements stay bytes of the file (a `StorageRef`).
- `torch._utils._rebuild_tensor_v2` / `_rebuild_parameter[_with_state]` -> ours: check the
  storage and the integer size/stride/offset against it, then a `TensorRef` (no hooks, no grad).
- `dnnlib.util.EasyDict` -> a dict; `collections.OrderedDict`, `builtins.set/frozenset`;
  numpy scalars, dtypes and arrays of plain numeric kinds (`biufc`) rebuilt from raw bytes.

`persistent_load` is refused too (plain pickles have no persistent ids). Anything else -
`os.system`, `builtins.eval`, `getattr`, any class - raises `NVlabsImportError` before it
is called.

Resource limits (a small file must not be able to ask for much; gan_core/interop/bounds.py)
---------------------------------------------------------------------------------------------
- The file: a size cap checked before reading; read once into memory, so declared lengths
  inside it can never make a read allocate more than the file.
- Before unpickling, `pickle_scan.scan_pickle` walks the opcodes: PROTO 2-5 first, one STOP
  exactly at the end of the file, at most 500k opcodes (bounds the objects it can create),
  tuples nested at most 32 deep (CPython hashes tuples recursively in C: a 2 MB pickle of
  nested tuples used as a dict key segfaults the loader otherwise).
- Storages: each `_load_from_bytes` blob is decoded by `_decode_storage` here, not by torch
  (torch's legacy loader allocates the storage at the size the blob declares): its five
  small pickles go through the same scan, its declared element count must equal the bytes
  that follow, and the elements are a view of those bytes - nothing is allocated from a
  declared size.
- Tensors: size, stride and offset are checked against the storage (`bounds.check_view`):
  no view past its storage, no stride-0 or overlapping view that reads an element twice (a
  773-byte file could otherwise expand to gigabytes when the tensor is copied), at most
  10k tensors, and their views may not add up to more than twice the file.
- Containers: `_plain` walks the result as a tree with a budget of 200k visits and depth 64, so
  a pickle whose shared references double at every level (a 400-byte file, 2**N nodes) is
  refused instead of walked (the opcode scan already estimates tree sizes and refuses most
  such files before unpickling); later repr/== calls then only ever see that bounded tree.
- Network shape: the generator's init kwargs must describe a network we build
  (unconditional, skip G, resnet D, ...; fp16 settings ignored) within the caps of
  `bounds.network_problems` (resolution <= 2048, channel_max <= 1024, ...), checked before
  any network exists. Then (gan_core.interop.nvlabs) every tensor name and shape must match
  our state dicts exactly (our parameter names are NVlabs', see gan_core/networks/stylegan2.py)
  - missing, unexpected or misshapen tensors, or non-finite values, are refused with a list.
Uploads are additionally parsed in a separate, resource-limited process
(`gan_core.interop.sandbox`): these checks make the parser fail fast, the process limits
bound whatever they miss.
"""

from __future__ import annotations

import collections
import hashlib
import io
import math
import os
import pickle
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, BinaryIO

import numpy as np

from ..config import NetworkConfig
from .bounds import (
    MAX_CHANNEL_BASE,
    MAX_CHANNEL_MAX,
    MAX_DEPTH,
    MAX_IMG_CHANNELS,
    MAX_LATENT_DIM,
    MAX_MAPPING_LAYERS,
    MAX_MBSTD_CHANNELS,
    MAX_MBSTD_GROUP,
    MAX_RESOLUTION,
    MAX_TENSOR_DIMS,
    MAX_TENSORS,
    MAX_TREE_NODES,
    BoundsError,
    check_view,
    network_problems,
    short_repr,
)
from .pickle_scan import PickleScanLimits, scan_pickle

DEFAULT_MAX_BYTES = 2 * 1024**3  # FFHQ 1024 (G, D, G_ema, augment pipe) is ~364 MB
PERSISTENCE_VERSION = 6  # torch_utils.persistence._version in stylegan2-ada-pytorch
TENSOR_BYTES_PER_FILE_BYTE = 2  # views may add up to at most 2x the file (NVlabs: each tensor has its own storage, 1x)


class NVlabsImportError(ValueError):
    """The file is not an NVlabs network pickle we can import safely; the message says why."""


def _name(value: Any, limit: int = 80) -> str:
    """An untrusted name for a message: plain text when it is a string (non-printables escaped,
    length bounded), else a bounded repr."""
    if not isinstance(value, str):
        return short_repr(value)
    s = "".join(ch if ch.isprintable() else repr(ch)[1:-1] for ch in value[: limit + 1])
    return s if len(s) <= limit else s[:limit] + "..."


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

    def tensors(self, prefix: str = "") -> dict[str, TensorRef]:
        """Parameters and persistent buffers, recursively: the keys of `module.state_dict()`."""
        out: dict[str, TensorRef] = {}
        skip = set(self.state.get("_non_persistent_buffers_set") or ())
        for kind in ("_parameters", "_buffers"):
            for name, t in (self.state.get(kind) or {}).items():
                if t is None or (kind == "_buffers" and name in skip):
                    continue
                if not isinstance(t, TensorRef):
                    raise NVlabsImportError(f"{prefix}{_name(name)} is a {type(t).__name__}, not a tensor")
                out[f"{prefix}{name}"] = t
        for name, sub in (self.state.get("_modules") or {}).items():
            if sub is None:
                continue
            if not isinstance(sub, PersistentObject):
                raise NVlabsImportError(f"submodule {prefix}{_name(name)} is a {type(sub).__name__}, "
                                        "not an NVlabs module")
            out.update(sub.tensors(f"{prefix}{name}."))
        return out


class _EasyDict(dict):
    """Stand-in for dnnlib.EasyDict during unpickling; converted to a plain dict afterwards."""


class _DTypeStub:
    """numpy.dtype(spec, align, copy) + BUILD(state), resolved without numpy's __setstate__."""

    _SIMPLE: frozenset[str] = frozenset({f"{k}{n}" for k, sizes in {"f": (2, 4, 8), "i": (1, 2, 4, 8), "u": (1, 2, 4, 8),
                                          "c": (8, 16), "b": (1,)}.items() for n in sizes})

    def __init__(self, spec: Any, align: Any = False, copy: Any = True) -> None:
        if not isinstance(spec, str) or spec not in self._SIMPLE:
            raise NVlabsImportError(f"refusing numpy dtype {short_repr(spec)}: only plain numeric dtypes are accepted")
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
        if not (isinstance(shape, tuple) and len(shape) <= MAX_TENSOR_DIMS
                and all(isinstance(s, int) and not isinstance(s, bool) and s >= 0 for s in shape)):
            raise NVlabsImportError("a numpy array with an invalid shape")
        # The bytes are in the file, so a matching shape cannot ask for more than the file holds.
        if not isinstance(raw, bytes) or len(raw) != math.prod(shape) * dt.itemsize:
            raise NVlabsImportError("a numpy array whose bytes do not match its shape and dtype")
        self.array = np.frombuffer(raw, dtype=dt).reshape(shape, order="F" if fortran else "C").copy()


def _np_reconstruct(cls: Any, shape: Any = None, typecode: Any = None) -> _NDArrayStub:
    if cls is not _NDArraySentinel:
        raise NVlabsImportError("numpy reconstruct of something other than a plain ndarray")
    return _NDArrayStub()


# --------------------------------------------------------------------------- storages


# torch's legacy storage classes (what torch.save(storage, _use_new_zipfile_serialization=False),
# i.e. TypedStorage.__reduce__, names in the blob) -> (dtype name, bytes per element).
_STORAGE_DTYPES: dict[str, tuple[str, int]] = {
    "FloatStorage": ("float32", 4), "DoubleStorage": ("float64", 8), "HalfStorage": ("float16", 2),
    "BFloat16Storage": ("bfloat16", 2), "LongStorage": ("int64", 8), "IntStorage": ("int32", 4),
    "ShortStorage": ("int16", 2), "CharStorage": ("int8", 1), "ByteStorage": ("uint8", 1), "BoolStorage": ("bool", 1),
}
FLOAT_DTYPES = frozenset({"float32", "float64", "float16", "bfloat16"})
_LEGACY_MAGIC = 0x1950A86A20F9469CFC6C  # torch.serialization.MAGIC_NUMBER
_LEGACY_PROTOCOL = 1001  # torch.serialization.PROTOCOL_VERSION
_BLOB_SCAN = PickleScanLimits(max_opcodes=1000, max_tuple_depth=4, max_tree_nodes=1000, protocols=(2,),
                              allow_persistent_ids=True)


@dataclass(frozen=True)
class _StorageType:
    """What `torch.FloatStorage` & co. resolve to inside a storage blob: a dtype, by name."""

    dtype: str
    itemsize: int


@dataclass(frozen=True)
class StorageRef:
    """A decoded storage: `numel` little-endian elements of `dtype` at `data[offset:]` (no copy)."""

    dtype: str
    itemsize: int
    data: bytes
    offset: int
    numel: int


@dataclass(frozen=True)
class TensorRef:
    """A checked tensor view of a StorageRef; gan_core.interop.nvlabs.to_tensor makes it a tensor.
    Its size, stride and offset passed bounds.check_view against the storage."""

    storage: StorageRef
    offset: int
    size: tuple[int, ...]
    stride: tuple[int, ...]

    @property
    def shape(self) -> tuple[int, ...]:
        return self.size

    @property
    def dtype(self) -> str:
        return self.storage.dtype

    def numel(self) -> int:
        return math.prod(self.size)

    def is_floating_point(self) -> bool:
        return self.storage.dtype in FLOAT_DTYPES


@dataclass
class _StorageRecord:
    kind: _StorageType
    key: str
    numel: int


class _BlobUnpickler(pickle.Unpickler):
    """For the small pickles inside a storage blob: storage class names and one persistent id only."""

    def __init__(self, f: BinaryIO) -> None:
        super().__init__(f)
        self.records: list[_StorageRecord] = []

    def find_class(self, module: str, name: str) -> Any:
        if module == "torch" and name in _STORAGE_DTYPES:
            return _StorageType(*_STORAGE_DTYPES[name])
        raise NVlabsImportError(f"a tensor storage blob asks for {_name(module)}.{_name(name)}: only torch "
                                "storage types are allowed there; nothing from it was executed")

    def persistent_load(self, pid: Any) -> Any:
        if not (isinstance(pid, tuple) and len(pid) == 6 and pid[0] == "storage"
                and isinstance(pid[1], _StorageType) and isinstance(pid[2], str) and len(pid[2]) <= 64
                and isinstance(pid[4], int) and not isinstance(pid[4], bool) and pid[4] >= 0 and pid[5] is None):
            raise NVlabsImportError("a tensor storage blob with an unexpected storage record")
        if self.records:
            raise NVlabsImportError("a tensor storage blob holding more than one storage")
        self.records.append(_StorageRecord(pid[1], pid[2], pid[4]))
        return self.records[-1]


def _decode_storage(blob: Any) -> StorageRef:
    """One legacy torch.save'd storage, decoded without torch: five small pickles (magic, protocol,
    sys_info, the storage's persistent id, the key list), then an int64 element count and the raw
    little-endian elements. The declared count must equal the bytes present."""
    if not isinstance(blob, bytes):
        raise NVlabsImportError("a tensor storage that is not a byte string")
    pos, parts = 0, []
    for i in range(5):
        try:
            scan = scan_pickle(blob, pos, _BLOB_SCAN, label="a tensor storage blob")
        except BoundsError as exc:
            raise NVlabsImportError(str(exc)) from None
        unpickler = _BlobUnpickler(io.BytesIO(memoryview(blob)[pos:pos + scan.end]))
        try:
            parts.append(unpickler.load())
        except NVlabsImportError:
            raise
        except (pickle.UnpicklingError, EOFError, ValueError, TypeError, AttributeError, KeyError, IndexError,
                OverflowError, MemoryError) as exc:
            raise NVlabsImportError(f"a damaged tensor storage blob ({type(exc).__name__})") from None
        if i != 3 and unpickler.records:
            raise NVlabsImportError("a tensor storage blob with a storage record in the wrong place")
        pos += scan.end
    magic, proto, sys_info, record, keys = parts
    if magic != _LEGACY_MAGIC or proto != _LEGACY_PROTOCOL:
        raise NVlabsImportError("a tensor storage blob that is not a torch storage (wrong magic number or protocol)")
    if not isinstance(sys_info, dict) or sys_info.get("little_endian") is not True:
        raise NVlabsImportError("a tensor storage blob written on a big-endian machine (not supported)")
    if not isinstance(record, _StorageRecord) or keys != [record.key]:
        raise NVlabsImportError("a tensor storage blob whose storage list does not match its record")
    itemsize = record.kind.itemsize
    numel = int.from_bytes(blob[pos:pos + 8], "little", signed=True) if len(blob) >= pos + 8 else -1
    if numel != record.numel or len(blob) - pos - 8 != numel * itemsize:
        raise NVlabsImportError(f"a tensor storage declares {record.numel:,} elements of {itemsize} bytes but holds "
                                f"{max(len(blob) - pos - 8, 0):,} bytes")
    return StorageRef(record.kind.dtype, itemsize, blob, pos + 8, numel)


class _Budget:
    """Per-file counts the builders charge while the pickle loads."""

    def __init__(self, file_bytes: int) -> None:
        self.tensors = 0
        self.tensor_bytes = 0
        self.max_tensor_bytes = TENSOR_BYTES_PER_FILE_BYTE * file_bytes

    def storage(self, blob: Any) -> StorageRef:
        return _decode_storage(blob)

    def tensor(self, storage: Any, offset: Any, size: Any, stride: Any, requires_grad: Any = False,
               backward_hooks: Any = None, metadata: Any = None) -> TensorRef:
        if not isinstance(storage, StorageRef):
            raise NVlabsImportError("a tensor whose storage is not a plain torch storage")
        if backward_hooks or metadata:
            raise NVlabsImportError("a tensor carrying hooks or metadata (not plain weights)")
        if not (isinstance(size, (tuple, list)) and isinstance(stride, (tuple, list))):
            raise NVlabsImportError("a tensor with invalid size or stride")
        self.tensors += 1
        if self.tensors > MAX_TENSORS:
            raise NVlabsImportError(f"the pickle holds more than {MAX_TENSORS:,} tensors (a network has hundreds)")
        try:
            numel = check_view(size, stride, offset, storage.numel, f"tensor #{self.tensors}")
        except BoundsError as exc:
            raise NVlabsImportError(str(exc)) from None
        self.tensor_bytes += numel * storage.itemsize
        if self.tensor_bytes > self.max_tensor_bytes:
            raise NVlabsImportError(f"the pickle's tensors add up to more than {TENSOR_BYTES_PER_FILE_BYTE}x the "
                                    "file's size: they share storage (a network's tensors each have their own)")
        return TensorRef(storage, offset, tuple(size), tuple(stride))


def _rebuild_parameter(data: Any, requires_grad: Any = False, backward_hooks: Any = None,
                       state: Any = None) -> TensorRef:
    if not isinstance(data, TensorRef):
        raise NVlabsImportError("a parameter whose data is not a tensor")
    if backward_hooks:
        raise NVlabsImportError("a parameter carrying hooks")
    return data  # a plain tensor: we only want the values


def _persistent_obj(meta: Any) -> PersistentObject:
    """Our replacement for NVlabs' `_reconstruct_persistent_obj`: read the meta, exec nothing."""
    if not isinstance(meta, dict):
        raise NVlabsImportError("a persistent object whose meta is not a dict")
    if meta.get("type") != "class":
        raise NVlabsImportError(f"unsupported persistent object type {short_repr(meta.get('type'))}")
    if meta.get("version") != PERSISTENCE_VERSION:
        raise NVlabsImportError(f"unsupported torch_utils.persistence version {short_repr(meta.get('version'))} "
                                f"(stylegan2-ada-pytorch writes {PERSISTENCE_VERSION})")
    name, src, state = meta.get("class_name"), meta.get("module_src"), meta.get("state")
    if not isinstance(name, str) or not isinstance(src, str) or not isinstance(state, dict):
        raise NVlabsImportError("a persistent object without class_name, module_src and state")
    raw = src.encode("utf-8", "surrogatepass")
    return PersistentObject(name[:200], dict(state), len(raw), hashlib.sha256(raw).hexdigest())


_ALLOWED: dict[tuple[str, str], Any] = {
    ("torch_utils.persistence", "_reconstruct_persistent_obj"): _persistent_obj,
    ("dnnlib.util", "EasyDict"): _EasyDict,
    ("dnnlib", "EasyDict"): _EasyDict,
    ("collections", "OrderedDict"): collections.OrderedDict,
    ("builtins", "set"): set,
    ("builtins", "frozenset"): frozenset,
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
    def __init__(self, f: BinaryIO, budget: _Budget) -> None:
        super().__init__(f)
        # Builders that count against this file's budget (storages and tensors).
        self._own = {("torch.storage", "_load_from_bytes"): budget.storage,
                     ("torch._utils", "_rebuild_tensor_v2"): budget.tensor}

    def find_class(self, module: str, name: str) -> Any:
        key = (module, name)
        found = self._own.get(key) or _ALLOWED.get(key)
        if found is None:
            raise NVlabsImportError(
                f"refusing to load {_name(module)}.{_name(name)}: the pickle asks for a callable "
                "outside the allow-list of an NVlabs network pickle (a tampered or unrelated file); nothing from it "
                "was executed"
            )
        return found

    def persistent_load(self, pid: Any) -> Any:
        raise NVlabsImportError("refusing a pickle with persistent ids (not an NVlabs network pickle)")


class _Plain:
    """Replace unpickling stand-ins by plain values (EasyDict -> dict, array stubs -> ndarray),
    walking the result as a tree: shared references are visited (and copied) each time, within
    a budget of MAX_TREE_NODES visits, so what comes out is a tree of bounded size."""

    def __init__(self, max_nodes: int = MAX_TREE_NODES, max_depth: int = MAX_DEPTH) -> None:
        self.visits, self.max_nodes, self.max_depth = 0, max_nodes, max_depth

    def __call__(self, obj: Any, depth: int = 0) -> Any:
        self.visits += 1
        if self.visits > self.max_nodes:
            raise NVlabsImportError(f"the pickle holds more than {self.max_nodes:,} values when its shared references "
                                    "are followed (a reference bomb, or not a network pickle)")
        if depth > self.max_depth:
            raise NVlabsImportError(f"the pickled structure is nested deeper than {self.max_depth} levels")
        if isinstance(obj, PersistentObject):
            return PersistentObject(obj.class_name, self(obj.state, depth + 1), obj.source_bytes, obj.source_sha256)
        if isinstance(obj, dict):
            items = [(self(k, depth + 1), self(v, depth + 1)) for k, v in obj.items()]
            return collections.OrderedDict(items) if isinstance(obj, collections.OrderedDict) else dict(items)
        if isinstance(obj, (list, tuple)):
            return type(obj)(self(v, depth + 1) for v in obj)
        if isinstance(obj, (set, frozenset)):
            return type(obj)(self(v, depth + 1) for v in obj)
        if isinstance(obj, _NDArrayStub):
            if obj.array is None:
                raise NVlabsImportError("a numpy array without data")
            return obj.array
        if isinstance(obj, (_DTypeStub, type, _StorageType, StorageRef, _StorageRecord)) or obj is _NDArraySentinel:
            raise NVlabsImportError("a bare dtype, storage or type object in the pickle")
        return obj


def _plain(obj: Any, depth: int = 0) -> Any:
    return _Plain()(obj, depth)


# ---------------------------------------------------------------------------
# Reading the file
# ---------------------------------------------------------------------------

Source = str | os.PathLike | bytes | bytearray | memoryview | BinaryIO


def _read_all(source: Source, max_bytes: int, label: str | None = None) -> tuple[bytes, str]:
    """The whole file in memory (at most max_bytes): declared lengths inside it are then read from
    a buffer, which returns what is there instead of allocating what is declared."""
    if isinstance(source, (bytes, bytearray, memoryview)):
        if len(source) > max_bytes:
            raise NVlabsImportError(f"{label or 'the file'} is {len(source):,} bytes, over the {max_bytes:,}-byte limit")
        return bytes(source), label or "upload"
    if isinstance(source, (str, os.PathLike)):
        path = Path(source)
        label = label or path.name
        if not path.is_file():
            raise NVlabsImportError(f"no such file: {path}")
        size = path.stat().st_size
        if size > max_bytes:
            raise NVlabsImportError(f"{label} is {size:,} bytes, over the {max_bytes:,}-byte limit")
        with open(path, "rb") as f:
            data = f.read(max_bytes + 1)
    else:
        data = source.read(max_bytes + 1)
        label = label or os.path.basename(str(getattr(source, "name", "upload")))
    if len(data) > max_bytes:
        raise NVlabsImportError(f"{label} is over the {max_bytes:,}-byte limit")
    return data, label


def check_is_pickle(head: bytes, label: str = "the file") -> None:
    """Raise unless `head` (the first bytes) starts a protocol 2-5 pickle."""
    if head[:4] == b"PK\x03\x04":
        raise NVlabsImportError(f"{label} is a zip archive (a PyTorch .pt checkpoint?), not an NVlabs .pkl")
    if len(head) < 2 or head[0] != 0x80 or not 2 <= head[1] <= 5:
        raise NVlabsImportError(f"{label} is not a pickle (an NVlabs network .pkl starts with the pickle "
                                "PROTO opcode, protocol 2-5)")


def read_nvlabs_pickle(source: Source, max_bytes: int = DEFAULT_MAX_BYTES, label: str | None = None) -> dict[str, Any]:
    """The pickle's content as plain data (networks as `PersistentObject`s, tensors as checked
    `TensorRef`s: gan_core.interop.nvlabs.to_tensor makes them tensors). Executes nothing; torch-free."""
    data, label = _read_all(source, max_bytes, label)
    check_is_pickle(data[:4], label)
    try:
        scan = scan_pickle(data, 0, label=label)
    except BoundsError as exc:
        raise NVlabsImportError(str(exc)) from None
    if scan.end != len(data):
        raise NVlabsImportError(f"{label} has data after the end of the pickle (damaged or not one file)")
    try:
        obj = _SafeUnpickler(io.BytesIO(data), _Budget(len(data))).load()
    except NVlabsImportError:
        raise
    except (EOFError, pickle.UnpicklingError, ValueError, TypeError, AttributeError, KeyError,
            IndexError, MemoryError, RecursionError, OverflowError, UnicodeDecodeError) as exc:
        raise NVlabsImportError(f"{label} is truncated or damaged: {type(exc).__name__}: {str(exc)[:200]}") from None
    del data
    obj = _plain(obj)
    if not isinstance(obj, dict) or not all(isinstance(k, str) for k in obj):
        raise NVlabsImportError(f"{label} does not hold a dict of networks (found {type(obj).__name__})")
    return obj


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
        self.bad: set[str] = set()  # "where.key" of values a rule refused

    def section(self, where: str, kwargs: Any, rules: dict[str, Callable[[Any], str | None]]) -> dict[str, Any]:
        if not isinstance(kwargs, dict):
            self.problems.append(f"{where} is a {type(kwargs).__name__}, expected a dict")
            return {}
        for key, value in kwargs.items():
            rule = rules.get(key)
            if rule is None:
                self.problems.append(f"{where}.{_name(key)}={short_repr(value)} is not a setting we know")
                continue
            msg = rule(value)
            if msg:
                self.problems.append(f"{where}.{key}={short_repr(value)}: {msg}")
                self.bad.add(f"{where}.{key}")
        return kwargs

    def get(self, where: str, kwargs: dict[str, Any], key: str, default: Any) -> Any:
        """kwargs[key] when present and accepted by its rule, else `default`."""
        return default if key not in kwargs or f"{where}.{key}" in self.bad else kwargs[key]

    def ignored(self, why: str) -> Callable[[Any], None]:
        def rule(value: Any) -> None:
            self.notes.append(why)

        return rule


def _ok(pred: Callable[[Any], bool], msg: str) -> Callable[[Any], str | None]:
    return lambda v: None if pred(v) else msg


def _is_int(v: Any) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


def _int_in(lo: int, hi: int, why: str) -> Callable[[Any], str | None]:
    return _ok(lambda v: _is_int(v) and lo <= v <= hi, f"must be an integer in [{lo}, {hi}] ({why})")


def _number(v: Any) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)


_LRELU = _ok(lambda v: v == "lrelu", "only 'lrelu' is supported")
_FIR = _ok(lambda v: _same(v, _FILTER), "only the [1, 3, 3, 1] resampling filter is supported")
_CLAMP = _ok(lambda v: v is None or (_number(v) and v > 0), "must be None or a positive number")


def network_config_from_kwargs(g_kwargs: dict[str, Any], d_kwargs: dict[str, Any] | None = None
                               ) -> tuple[NetworkConfig, list[str]]:
    """Our NetworkConfig from NVlabs Generator (and Discriminator) init kwargs, plus notes on
    settings that are ignored. Raises NVlabsImportError listing everything unsupported, including
    any dimension over the caps of gan_core.interop.bounds (checked before anything is built)."""
    c = _Checker()
    fp16 = c.ignored("mixed precision (num_fp16_res / fp16_channels_last) is ignored: we run float32")
    latent = _int_in(1, MAX_LATENT_DIM, "NVlabs uses 512")
    g = c.section("G", g_kwargs, {
        "z_dim": latent, "w_dim": latent,
        "img_channels": _int_in(1, MAX_IMG_CHANNELS, "grayscale, RGB or RGBA"),
        "c_dim": _ok(lambda v: v == 0, "conditional (class-label) generators are not supported; "
                                       "only unconditional ones (c_dim=0)"),
        "img_resolution": _ok(lambda v: _is_int(v) and 4 <= v <= MAX_RESOLUTION and not v & (v - 1),
                              f"must be a power of two in [4, {MAX_RESOLUTION}] (the largest NVlabs networks "
                              "are 1024x1024)"),
        "mapping_kwargs": lambda v: None, "synthesis_kwargs": lambda v: None,
    })
    for key in ("z_dim", "w_dim", "img_resolution", "img_channels"):
        if key not in g:
            c.problems.append(f"G.{key} is missing")
    w_dim = g.get("w_dim")
    m = c.section("G.mapping_kwargs", g.get("mapping_kwargs", {}), {
        "num_layers": _int_in(1, MAX_MAPPING_LAYERS, "NVlabs uses 8"), "activation": _LRELU,
        "lr_multiplier": _ok(lambda v: _number(v) and v > 0, "must be a positive number"),
        "layer_features": _ok(lambda v: v is None or v == w_dim, "intermediate widths other than w_dim are not supported"),
        "embed_features": lambda v: None,  # label embedding: unused without conditioning
        "w_avg_beta": _ok(lambda v: _number(v) and abs(float(v) - 0.995) < 1e-9, "only w_avg_beta=0.995 is supported"),
    })
    s = c.section("G.synthesis_kwargs", g.get("synthesis_kwargs", {}), {
        "channel_base": _int_in(1, MAX_CHANNEL_BASE, "NVlabs uses up to 32768"),
        "channel_max": _int_in(1, MAX_CHANNEL_MAX, "NVlabs uses 512"), "conv_clamp": _CLAMP,
        "architecture": _ok(lambda v: v == "skip", "only the 'skip' generator architecture is supported"),
        "resample_filter": _FIR, "activation": _LRELU,
        "use_noise": _ok(lambda v: v is True, "generators without noise inputs are not supported"),
        "kernel_size": _ok(lambda v: v == 3, "only 3x3 convolutions are supported"),
        "num_fp16_res": fp16, "fp16_channels_last": fp16,
    })
    # Refused values are replaced by defaults here (the error lists them), so that D's settings can
    # still be compared and every problem is reported at once; nothing is built from this config.
    clamp = c.get("G.synthesis_kwargs", s, "conv_clamp", None)
    cfg = NetworkConfig(
        resolution=c.get("G", g, "img_resolution", 4), img_channels=c.get("G", g, "img_channels", 3),
        z_dim=c.get("G", g, "z_dim", 1), w_dim=c.get("G", g, "w_dim", 1),
        mapping_layers=c.get("G.mapping_kwargs", m, "num_layers", 8),
        channel_base=c.get("G.synthesis_kwargs", s, "channel_base", 32768),
        channel_max=c.get("G.synthesis_kwargs", s, "channel_max", 512),
        conv_clamp=None if clamp is None else float(clamp),
        mapping_lr_mult=float(c.get("G.mapping_kwargs", m, "lr_multiplier", 0.01)),
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
            "conv_clamp": _ok(lambda v: (v is None or _number(v)) and (None if v is None else float(v)) == cfg.conv_clamp,
                              f"must equal G's conv_clamp {cfg.conv_clamp} (our G and D share it)"),
            "cmap_dim": lambda v: None, "mapping_kwargs": lambda v: None,  # label mapping: unused when c_dim=0
            "num_fp16_res": fp16, "block_kwargs": lambda v: None, "epilogue_kwargs": lambda v: None,
        })
        c.section("D.block_kwargs", d.get("block_kwargs", {}), {
            "activation": _LRELU, "resample_filter": _FIR, "fp16_channels_last": fp16,
            "freeze_layers": c.ignored("D.block_kwargs.freeze_layers is ignored: every layer trains"),
        })
        e = c.section("D.epilogue_kwargs", d.get("epilogue_kwargs", {}), {
            "mbstd_group_size": _ok(lambda v: v is None or (_is_int(v) and 0 < v <= MAX_MBSTD_GROUP),
                                    f"must be None or an integer in [1, {MAX_MBSTD_GROUP}] (NVlabs uses 4)"),
            "mbstd_num_channels": _int_in(0, MAX_MBSTD_CHANNELS, "NVlabs uses 1"),
            "activation": _LRELU,
        })
        cfg.mbstd_group_size = c.get("D.epilogue_kwargs", e, "mbstd_group_size", 4)
        cfg.mbstd_num_channels = c.get("D.epilogue_kwargs", e, "mbstd_num_channels", 1)
    c.problems += network_problems(cfg)
    if c.problems:
        raise NVlabsImportError("this network uses settings our StyleGAN2 does not support:\n  - "
                                + "\n  - ".join(c.problems))
    return cfg, sorted(set(c.notes))


def _net(data: dict[str, Any], key: str, class_name: str, required: bool) -> PersistentObject | None:
    obj = data.get(key)
    if obj is None:
        if required:
            names = ", ".join(_name(k) for k in sorted(data)[:20]) or "none"
            raise NVlabsImportError(f"the pickle has no {key!r} network (keys: {names})")
        return None
    if not isinstance(obj, PersistentObject) or obj.class_name != class_name:
        found = _name(obj.class_name) if isinstance(obj, PersistentObject) else type(obj).__name__
        raise NVlabsImportError(f"{key!r} is a {found}, expected an NVlabs {class_name}")
    if obj.state.get("_init_args"):
        raise NVlabsImportError(f"{key!r} was built with positional arguments; expected keyword arguments only")
    return obj


@dataclass
class ValidatedPickle:
    """An NVlabs pkl that passed every check short of reading tensor values: its networks (as data),
    our NetworkConfig for them and the notes on ignored settings. Tensor names and shapes are
    checked against our networks afterwards (gan_core.interop.nvlabs, with torch)."""

    config: NetworkConfig
    G_ema: PersistentObject
    G: PersistentObject | None
    D: PersistentObject | None
    notes: list[str]
    training_set_kwargs: dict[str, Any] | None


def validate_nvlabs_pickle(source: Source, max_bytes: int = DEFAULT_MAX_BYTES, label: str | None = None
                           ) -> ValidatedPickle:
    """Read and check an NVlabs pkl up to (not including) tensor values, without torch: the file's
    framing, opcodes, globals, storages, tensor views, structure and network settings. A hostile
    file is refused here in well under a second, before anything imports torch."""
    data = read_nvlabs_pickle(source, max_bytes, label)
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
    tsk = data.get("training_set_kwargs")
    return ValidatedPickle(cfg, g_ema, g, d, notes, tsk if isinstance(tsk, dict) else None)
