"""Hostile model files (NVlabs .pkl and our .pt), as reusable builders.

Every builder returns a `HostileModel`: the file's bytes, a short name, what it attacks and a
regex the refusal message must match. `hostile_models()` lists them all. The files are written
opcode by opcode (a pure-Python pickler that can name any global without importing it, and a
zip writer that can lie in its central directory), so no builder ever runs what it builds and
none needs more than a few MiB of memory to produce.

Used by tests/unit/test_hostile_models.py (the sandboxed converter refuses each, quickly, with
the parent's memory unaffected) and bench/hostile_models.py (timings as JSON).
"""

from __future__ import annotations

import collections
import io
import pickle
import struct
import zipfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

FIXTURE_PKL = Path(__file__).resolve().parent / "fixtures" / "nvlabs" / "tiny.pkl"
_MiB = 1 << 20


@dataclass(frozen=True)
class HostileModel:
    name: str
    data: bytes
    expect: str  # regex that the PretrainedError message must match
    what: str  # the attack, in one line
    suffix: str = ".pkl"  # what a user would have called it (the converter ignores names)


# --------------------------------------------------------------------------- pickle writing


class Global:
    """A global pickled by name (GLOBAL opcode), whether or not it exists or is importable here."""

    def __init__(self, module: str, name: str) -> None:
        self.module, self.name = module, name

    def __call__(self, *args: Any) -> Any:  # pickle only accepts callables as REDUCE functions
        raise AssertionError("never called")


class Call:
    """Pickles as REDUCE: fn(*args)."""

    def __init__(self, fn: Global, *args: Any) -> None:
        self.fn, self.args = fn, args

    def __reduce__(self) -> tuple[Any, ...]:
        return (self.fn, self.args)


class PersistentId:
    """Pickles as BINPERSID of `pid` (torch.save names storages this way)."""

    def __init__(self, *pid: Any) -> None:
        self.pid = pid


class _Writer(pickle._Pickler):  # the pure-Python pickler: its dispatch table can be extended
    dispatch = pickle._Pickler.dispatch.copy()

    def _save_global_marker(self, obj: Global) -> None:
        self.write(pickle.GLOBAL + f"{obj.module}\n{obj.name}\n".encode())
        self.memoize(obj)

    dispatch[Global] = _save_global_marker

    def persistent_id(self, obj: Any) -> Any:
        return obj.pid if isinstance(obj, PersistentId) else None


def dumps(obj: Any, protocol: int = 4) -> bytes:
    buf = io.BytesIO()
    _Writer(buf, protocol=protocol).dump(obj)
    return buf.getvalue()


# torch.serialization's legacy format, which TypedStorage.__reduce__ writes for each storage.
LEGACY_MAGIC, LEGACY_PROTOCOL = 0x1950A86A20F9469CFC6C, 1001


def storage_blob(raw: bytes, storage: str = "FloatStorage", numel: int | None = None,
                 stored_count: int | None = None) -> bytes:
    """A legacy torch.save of one storage: five protocol-2 pickles, an int64 count, the raw elements.
    `numel`/`stored_count` override what the record and the count declare (to lie)."""
    itemsize = {"FloatStorage": 4, "ByteStorage": 1, "LongStorage": 8}[storage]
    n = len(raw) // itemsize if numel is None else numel
    sys_info = {"protocol_version": LEGACY_PROTOCOL, "little_endian": True,
                "type_sizes": {"short": 2, "int": 4, "long": 4}}
    head = b"".join(pickle.dumps(x, protocol=2) for x in (LEGACY_MAGIC, LEGACY_PROTOCOL, sys_info))
    main = dumps(PersistentId("storage", Global("torch", storage), "0", "cpu", n, None), protocol=2)
    return head + main + pickle.dumps(["0"], protocol=2) + struct.pack("<q", n if stored_count is None else stored_count) + raw


def storage(raw: bytes, **kw: Any) -> Call:
    return Call(Global("torch.storage", "_load_from_bytes"), storage_blob(raw, **kw))


def tensor(store: Any, offset: int, size: tuple, stride: tuple) -> Call:
    return Call(Global("torch._utils", "_rebuild_tensor_v2"), store, offset, size, stride, False,
                collections.OrderedDict())


def module(class_name: str, init_kwargs: dict | None = None, params: dict | None = None,
           modules: dict | None = None) -> Call:
    """An NVlabs torch_utils.persistence object, as its pickle calls it."""
    state = {"_init_kwargs": init_kwargs or {}, "_parameters": collections.OrderedDict(params or {}),
             "_buffers": collections.OrderedDict(), "_modules": collections.OrderedDict(modules or {})}
    meta = {"type": "class", "version": 6, "class_name": class_name, "module_src": "", "state": state}
    return Call(Global("torch_utils.persistence", "_reconstruct_persistent_obj"), meta)


# The fixture's generator shape (tests/fixtures/nvlabs/README.md): 32x32, tiny widths.
TINY_G_KWARGS: dict[str, Any] = {
    "z_dim": 32, "w_dim": 32, "c_dim": 0, "img_resolution": 32, "img_channels": 3,
    "mapping_kwargs": {"num_layers": 2}, "synthesis_kwargs": {"channel_base": 512, "channel_max": 16},
}


def nvlabs_pkl(G_ema: Any, **extra: Any) -> bytes:
    return dumps({"G_ema": G_ema, **extra})


def _g_with_mapping_weight(weight: Any) -> Call:
    """A tiny G whose only tensor is mapping.fc0.weight (a real name of our G's state dict)."""
    fc0 = module("FullyConnectedLayer", params={"weight": weight})
    return module("Generator", TINY_G_KWARGS, modules={"mapping": module("MappingNetwork", modules={"fc0": fc0})})


# --------------------------------------------------------------------------- .pt (zip) writing


def torch_zip(entries: dict[str, bytes | Callable[[Any], None]], deflate: tuple[str, ...] = ()) -> bytes:
    """A zip laid out like torch.save's. A callable entry streams its content into the open
    member (so a large deflated entry never exists whole in memory)."""
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        for name, content in entries.items():
            info = zipfile.ZipInfo(name)
            info.compress_type = zipfile.ZIP_DEFLATED if name in deflate else zipfile.ZIP_STORED
            with zf.open(info, "w") as out:
                if callable(content):
                    content(out)
                else:
                    out.write(content)
    return buf.getvalue()


def checkpoint_pkl(G_ema: dict, network: dict | None = None, **extra: Any) -> bytes:
    """data.pkl of one of our checkpoints (format_version, config, G_ema, ...), protocol 2 as torch.save."""
    payload = {"format_version": 1, "config": {"network": network if network is not None else
                                                {"resolution": 32, "z_dim": 32, "w_dim": 32, "mapping_layers": 2,
                                                 "channel_base": 512, "channel_max": 16}},
               "G_ema": G_ema, **extra}
    return dumps(payload, protocol=2)


def pt_tensor(key: str, numel: int, offset: int, size: tuple, stride: tuple) -> Call:
    return Call(Global("torch._utils", "_rebuild_tensor_v2"),
                PersistentId("storage", Global("torch", "FloatStorage"), key, "cpu", numel),
                offset, size, stride, False, collections.OrderedDict())


def pt_file(data_pkl: bytes, records: dict[str, bytes | Callable[[Any], None]] | None = None,
            deflate: tuple[str, ...] = ()) -> bytes:
    entries: dict[str, Any] = {"archive/data.pkl": data_pkl, "archive/byteorder": b"little"}
    entries.update({f"archive/data/{k}": v for k, v in (records or {}).items()})
    entries["archive/version"] = b"3\n"
    return torch_zip(entries, deflate=tuple(f"archive/data/{k}" for k in deflate))


# --------------------------------------------------------------------------- the table


def _doubling(depth: int) -> list:
    """A list whose two items are the same list, `depth` times: 2**depth leaves, `depth` objects."""
    x: list = []
    for _ in range(depth):
        x = [x, x]
    return x


def stride0_expansion() -> HostileModel:
    t = tensor(storage(b"\0\0\0\0"), 0, (86_000, 86_000), (0, 0))
    return HostileModel("stride0-expansion", nvlabs_pkl(_g_with_mapping_weight(t)), r"an expanded",
                        "one stored float viewed as 86000x86000 with stride 0: 7.4e9 elements (GiBs once copied)")


def reference_bomb() -> HostileModel:
    data = nvlabs_pkl(module("Generator", TINY_G_KWARGS), training_set_kwargs={"x": _doubling(40)})
    return HostileModel("reference-bomb", data, r"reference bomb",
                        "a list of the same list, 40 levels: 2**40 nodes to anything that walks it as a tree")


def huge_network() -> HostileModel:
    kwargs = {"z_dim": 1 << 20, "w_dim": 1 << 20, "c_dim": 0, "img_resolution": 1 << 16, "img_channels": 3,
              "mapping_kwargs": {"num_layers": 1_000_000},
              "synthesis_kwargs": {"channel_base": 1 << 30, "channel_max": 1 << 20}}
    return HostileModel("huge-network", nvlabs_pkl(module("Generator", kwargs)),
                        r"img_resolution=65536.*must be a power of two in \[4, 2048\]",
                        "declares a 65536x65536 generator with 1M mapping layers and 2**20 channels")


def pt_deflate_bomb() -> HostileModel:
    numel = 64 * _MiB  # 256 MiB of float zeros, deflated to ~260 KiB

    def zeros(out: Any) -> None:
        chunk = bytes(_MiB)
        for _ in range(numel * 4 // _MiB):
            out.write(chunk)

    data = pt_file(checkpoint_pkl({"x": pt_tensor("0", numel, 0, (numel,), (1,))}), {"0": zeros}, deflate=("0",))
    return HostileModel("pt-deflate-bomb", data, r"is compressed", "a .pt whose storage record is deflated: "
                        f"{len(data) // 1024} KiB that torch.load inflates to 256 MiB", ".pt")


def deep_tuple_key() -> HostileModel:
    data = b"\x80\x04}" + b")" + b"\x85" * 2_000_000 + b"K\x01s."
    return HostileModel("deep-tuple-key", data, r"nests tuples more than 32 deep",
                        "2M nested 1-tuples used as a dict key: hashing recurses in C and segfaults the loader")


def deep_list() -> HostileModel:
    n = 100_000
    return HostileModel("deep-list", b"\x80\x02" + b"(" * n + b"]" + b"l" * n + b".", r"nested deeper than 64",
                        "a list nested 100k levels deep")


def not_a_pickle() -> HostileModel:
    return HostileModel("not-a-pickle", b"\x89PNG\r\n\x1a\n" + bytes(200), r"neither one of our \.pt checkpoints",
                        "a PNG named .pkl")


def truncated() -> HostileModel:
    data = FIXTURE_PKL.read_bytes()
    return HostileModel("truncated", data[: len(data) // 2], r"truncated", "the fixture pkl cut in half")


def trailing_data() -> HostileModel:
    return HostileModel("trailing-data", FIXTURE_PKL.read_bytes() + b"#!/bin/sh\nrm -rf /\n", r"data after the end",
                        "a valid pkl followed by a script")


def offset_past_storage() -> HostileModel:
    t = tensor(storage(bytes(16)), 3, (2,), (1,))
    return HostileModel("offset-past-storage", nvlabs_pkl(_g_with_mapping_weight(t)), r"storage holds",
                        "a 2-element view at offset 3 of a 4-element storage")


def negative_shape() -> HostileModel:
    t = tensor(storage(bytes(16)), 0, (-1, 4), (4, 1))
    return HostileModel("negative-shape", nvlabs_pkl(_g_with_mapping_weight(t)), r"invalid size",
                        "a tensor of size (-1, 4)")


def enormous_shape() -> HostileModel:
    t = tensor(storage(bytes(16)), 0, (1 << 31, 1 << 31), (1 << 31, 1))
    return HostileModel("enormous-shape", nvlabs_pkl(_g_with_mapping_weight(t)), r"declares [\d,]+ elements but",
                        "a contiguous 2**31 x 2**31 tensor over 16 bytes")


def storage_overdeclared() -> HostileModel:
    t = tensor(storage(bytes(16), numel=1 << 34, stored_count=1 << 34), 0, (4,), (1,))
    return HostileModel("storage-overdeclared", nvlabs_pkl(_g_with_mapping_weight(t)),
                        r"declares 17,179,869,184 elements of 4 bytes but holds 16 bytes",
                        "a storage blob declaring 2**34 floats (64 GiB) that holds 16 bytes")


def unsafe_global(module_name: str, name: str, arg: str) -> HostileModel:
    data = dumps({"G_ema": Call(Global(module_name, name), arg)})
    return HostileModel(f"global-{module_name}.{name}", data, rf"refusing to load {module_name}\.{name}",
                        f"calls {module_name}.{name}({arg!r}) while unpickling")


def blob_global() -> HostileModel:
    blob = dumps(Call(Global("posix", "system"), "touch /tmp/pwned"), protocol=2)
    data = nvlabs_pkl(_g_with_mapping_weight(tensor(Call(Global("torch.storage", "_load_from_bytes"), blob), 0, (1,), (1,))))
    return HostileModel("storage-blob-global", data, r"tensor storage blob asks for posix\.system",
                        "a storage blob whose first pickle calls os.system")


def many_tiny_tensors() -> HostileModel:
    s = storage(bytes(4))
    data = nvlabs_pkl(module("Generator", TINY_G_KWARGS), training_set_kwargs=[tensor(s, 0, (1,), (1,)) for _ in range(10_100)])
    return HostileModel("many-tiny-tensors", data, r"more than 10,000 tensors",
                        "10,100 tensors over one 4-byte storage")


def opcode_flood() -> HostileModel:
    return HostileModel("opcode-flood", b"\x80\x04N" + b"0N" * 1_000_000 + b".", r"more than 500,000 pickle operations",
                        "2M opcodes (each could allocate an object) in 2 MB")


def huge_declared_length() -> HostileModel:
    data = b"\x80\x04\x8e" + struct.pack("<Q", 1 << 40) + b"x" * 16 + b"."
    return HostileModel("huge-declared-length", data, r"truncated or damaged",
                        "BINBYTES8 declaring 1 TiB in a 30-byte file")


def long_decimal_int() -> HostileModel:
    return HostileModel("long-decimal-int", b"\x80\x02L" + b"9" * 200_000 + b"L\n.", r"truncated or damaged",
                        "a 200k-digit decimal int (quadratic to parse)")


def persistent_ids_pkl() -> HostileModel:
    return HostileModel("pkl-persistent-id", dumps({"G_ema": PersistentId("x")}), r"persistent ids",
                        "a .pkl that asks for persistent objects")


def pt_huge_network() -> HostileModel:
    net = {"resolution": 1 << 16, "z_dim": 1 << 20, "w_dim": 1 << 20, "mapping_layers": 1_000_000,
           "channel_base": 1 << 30, "channel_max": 1 << 20}
    return HostileModel("pt-huge-network", pt_file(checkpoint_pkl({}, network=net)),
                        r"network\.resolution=65536 is outside \[4, 2048\]",
                        "a .pt whose config declares a 65536x65536 network", ".pt")


def pt_reference_bomb() -> HostileModel:
    data = pt_file(checkpoint_pkl({}, pretrained={"kind": "checkpoint", "notes": _doubling(40)}))
    return HostileModel("pt-reference-bomb", data, r"reference bomb",
                        "a .pt whose notes are a list of the same list, 40 levels", ".pt")


def pt_deep_tuple_key() -> HostileModel:
    return HostileModel("pt-deep-tuple-key", pt_file(b"\x80\x02}" + b")" + b"\x85" * 2_000_000 + b"K\x01s."),
                        r"nests tuples more than 32 deep", "a .pt whose data.pkl has a 2M-deep tuple key", ".pt")


def pt_stride0() -> HostileModel:
    data = pt_file(checkpoint_pkl({"mapping.fc0.weight": pt_tensor("0", 1, 0, (86_000, 86_000), (0, 0))}),
                   {"0": bytes(4)})
    return HostileModel("pt-stride0", data, r"an expanded", "a .pt tensor: one float viewed as 86000x86000", ".pt")


def pt_declared_size_lie() -> HostileModel:
    """A stored entry whose central-directory sizes claim 2 GiB (patched after writing)."""
    data = bytearray(pt_file(checkpoint_pkl({}), {"0": bytes(16)}))
    name = b"archive/data/0"
    at = data.rfind(b"PK\x01\x02", 0, data.rfind(name))  # that entry's central-directory header
    struct.pack_into("<II", data, at + 20, 1 << 31, 1 << 31)  # compressed and uncompressed size
    return HostileModel("pt-declared-size-lie", bytes(data), r"past the end of the file",
                        "a .pt whose central directory declares a 2 GiB record in a tiny file", ".pt")


def pt_many_entries() -> HostileModel:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        for i in range(60_000):
            zf.writestr(f"a/{i}", b"")
    return HostileModel("pt-many-entries", buf.getvalue(), r"zip entries, over the limit",
                        "a .pt zip with 60k entries (one object each before anything is read)", ".pt")


def pt_unsafe_global() -> HostileModel:
    return HostileModel("pt-unsafe-global", pt_file(dumps({"config": Call(Global("posix", "system"), "id")}, protocol=2)),
                        r"not a readable checkpoint", "a .pt whose data.pkl calls os.system", ".pt")


def caps_max_network() -> HostileModel:
    """Not hostile by its dimensions - every one at the bounds' maximum - but with no weights: the
    converter builds reference networks of ~257M parameters (uninitialised) before finding that.
    Under a small memory limit this is the file that shows the memory-limit refusal."""
    kwargs = {"z_dim": 1024, "w_dim": 1024, "c_dim": 0, "img_resolution": 2048, "img_channels": 3,
              "mapping_kwargs": {"num_layers": 16}, "synthesis_kwargs": {"channel_base": 65536, "channel_max": 1024}}
    return HostileModel("caps-max-network", nvlabs_pkl(module("Generator", kwargs)), r"missing: ",
                        "a 2048x2048 generator at every cap, without its weights")


# name -> builder, the four bombs first. Builders are cheap to list and build on demand.
BUILDERS: dict[str, Callable[[], HostileModel]] = {
    "stride0-expansion": stride0_expansion,
    "reference-bomb": reference_bomb,
    "huge-network": huge_network,
    "pt-deflate-bomb": pt_deflate_bomb,
    "deep-tuple-key": deep_tuple_key,
    "deep-list": deep_list,
    "not-a-pickle": not_a_pickle,
    "truncated": truncated,
    "trailing-data": trailing_data,
    "offset-past-storage": offset_past_storage,
    "negative-shape": negative_shape,
    "enormous-shape": enormous_shape,
    "storage-overdeclared": storage_overdeclared,
    "global-posix.system": lambda: unsafe_global("posix", "system", "touch /tmp/pwned"),
    "global-builtins.eval": lambda: unsafe_global("builtins", "eval", "__import__('os').system('id')"),
    "global-builtins.getattr": lambda: unsafe_global("builtins", "getattr", "x"),
    "storage-blob-global": blob_global,
    "many-tiny-tensors": many_tiny_tensors,
    "opcode-flood": opcode_flood,
    "huge-declared-length": huge_declared_length,
    "long-decimal-int": long_decimal_int,
    "pkl-persistent-id": persistent_ids_pkl,
    "pt-huge-network": pt_huge_network,
    "pt-reference-bomb": pt_reference_bomb,
    "pt-deep-tuple-key": pt_deep_tuple_key,
    "pt-stride0": pt_stride0,
    "pt-declared-size-lie": pt_declared_size_lie,
    "pt-many-entries": pt_many_entries,
    "pt-unsafe-global": pt_unsafe_global,
    "caps-max-network": caps_max_network,
}


def hostile_models() -> list[HostileModel]:
    """The whole table, built."""
    return [build() for build in BUILDERS.values()]
