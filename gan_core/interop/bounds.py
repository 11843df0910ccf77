"""What an uploaded model file may declare, checked before anything is allocated. torch-free.

A model file is small compared with what it can *ask for*: a network shape (resolution,
channel counts, depth) that our code would build, tensor views far larger than their bytes,
containers shared by reference that a recursive walk visits exponentially often. Every
limit here is checked on declared numbers, before the allocation or walk they would cause,
so a hostile file fails fast with a message instead of exhausting memory or time. The
sandbox (`gan_core.interop.sandbox`) adds process limits on top; these checks are what
keep a legitimate worker process (which loads stored checkpoints) safe too.
"""

from __future__ import annotations

import dataclasses
import math
import reprlib
from collections.abc import Callable, Iterable
from typing import Any

# Network dimensions. Sources: NVlabs stylegan2-ada-pytorch train.py cfg_specs (paper1024 and
# stylegan2: channel_base 32768 (fmaps=1), channel_max 512, z_dim = w_dim = 512, map=8) and the
# largest released pkls (FFHQ/MetFaces 1024x1024). Each cap is 2x the largest of those.
MAX_RESOLUTION = 2048  # largest NVlabs release 1024
MAX_CHANNEL_BASE = 65536  # NVlabs 32768
MAX_CHANNEL_MAX = 1024  # NVlabs 512
MAX_LATENT_DIM = 1024  # z_dim, w_dim: NVlabs 512
MAX_MAPPING_LAYERS = 16  # NVlabs 8
MAX_IMG_CHANNELS = 4  # grayscale 1, RGB 3, RGBA 4 (NVlabs datasets are 1 or 3)
MAX_MBSTD_GROUP = 64  # NVlabs uses 4 (batch-sized groups when None)
MAX_MBSTD_CHANNELS = 16  # NVlabs 1
# sngan/biggan (our checkpoints only): the papers' widths are 256 (G) / 128-256 (D), shared_dim 128,
# ImageNet has 1000 classes; caps 8x / 8x / 10x of those.
MAX_ARCH_CHANNELS = 2048
MAX_SHARED_DIM = 1024
MAX_CLASSES = 10_000

# Containers and counts. Measured on a paper1024-shaped NVlabs snapshot written by NVlabs' code
# (G, D, G_ema, augment pipe; 382 MB): 449 tensors, 12,350 tree visits, 39,739 pickle opcodes; on a
# trainer checkpoint of ours (64x64, with Adam state): 533 tensors, 1,615 tree nodes, 18,016 opcodes.
# A 2048x2048 network at the caps above has ~1.2x the layers of a 1024 one. Caps are >= 7x those.
MAX_TREE_NODES = 200_000  # nodes visited when a structure is walked as a tree (shared refs count each time)
MAX_DEPTH = 64  # nesting of containers (NVlabs: module -> _modules -> module ... is < 20 deep)
MAX_TENSORS = 10_000  # tensors in one file
MAX_TENSOR_DIMS = 8  # our weights have <= 4 dimensions

_SHORT = reprlib.Repr()
_SHORT.maxstring, _SHORT.maxother, _SHORT.maxlevel = 60, 60, 3
_SHORT.maxlist = _SHORT.maxtuple = _SHORT.maxdict = _SHORT.maxset = _SHORT.maxfrozenset = 6


def short_repr(value: Any) -> str:
    """repr bounded in length and work, for messages about untrusted values."""
    try:
        return _SHORT.repr(value)
    except Exception:  # noqa: BLE001 - any repr failure (e.g. an int over sys.get_int_max_str_digits)
        return f"<{type(value).__name__}>"


class BoundsError(ValueError):
    """A declared size, shape or structure over the limits; the message says which."""


def network_problems(net: Any) -> list[str]:
    """Problems with a NetworkConfig's declared dimensions (empty when within bounds).
    Duck-typed on the fields, so it runs before any network is built (and without torch)."""
    problems: list[str] = []

    def check(field: str, lo: int, hi: int, source: str) -> None:
        v = getattr(net, field, None)
        if not isinstance(v, int) or isinstance(v, bool) or not lo <= v <= hi:
            problems.append(f"network.{field}={short_repr(v)} is outside [{lo}, {hi}] ({source})")

    arch = getattr(net, "arch", "stylegan2")
    check("resolution", 4, MAX_RESOLUTION, "the largest NVlabs networks are 1024x1024")
    res = getattr(net, "resolution", 0)
    if isinstance(res, int) and res & (res - 1):
        problems.append(f"network.resolution={res} is not a power of two")
    check("img_channels", 1, MAX_IMG_CHANNELS, "images are grayscale, RGB or RGBA")
    check("z_dim", 1, MAX_LATENT_DIM, "NVlabs uses 512")
    if arch == "stylegan2":
        check("w_dim", 1, MAX_LATENT_DIM, "NVlabs uses 512")
        check("mapping_layers", 1, MAX_MAPPING_LAYERS, "NVlabs uses 8")
        check("channel_base", 1, MAX_CHANNEL_BASE, "NVlabs uses up to 32768")
        check("channel_max", 1, MAX_CHANNEL_MAX, "NVlabs uses 512")
        check("mbstd_num_channels", 0, MAX_MBSTD_CHANNELS, "NVlabs uses 1")
        group = getattr(net, "mbstd_group_size", None)
        if group is not None and not (isinstance(group, int) and not isinstance(group, bool)
                                      and 1 <= group <= MAX_MBSTD_GROUP):
            problems.append(f"network.mbstd_group_size={short_repr(group)} is outside [1, {MAX_MBSTD_GROUP}] "
                            "(NVlabs uses 4)")
    else:
        check("g_channels", 0, MAX_ARCH_CHANNELS, "the papers use 256")
        check("d_channels", 0, MAX_ARCH_CHANNELS, "the papers use 128-256")
        check("shared_dim", 0, MAX_SHARED_DIM, "BigGAN uses 128")
        check("num_classes", 0, MAX_CLASSES, "ImageNet has 1000")
    return problems


def check_network_bounds(net: Any, label: str = "the model") -> None:
    problems = network_problems(net)
    if problems:
        raise BoundsError(f"{label} declares a network larger than this service builds:\n  - " + "\n  - ".join(problems))


def network_config_from_plain(d: Any, label: str = "the model") -> Any:
    """A NetworkConfig from an untrusted plain dict: exact field names, plain types, bounds."""
    from ..config import NetworkConfig

    if not isinstance(d, dict):
        raise BoundsError(f"{label}: the network config is a {type(d).__name__}, not a dict")
    fields = {f.name: f for f in dataclasses.fields(NetworkConfig)}
    unknown = [k for k in d if k not in fields]
    if unknown:
        raise BoundsError(f"{label}: unknown network settings {short_repr(unknown)}")
    for key, value in d.items():
        if key == "conv_clamp":
            ok = value is None or (isinstance(value, (int, float)) and not isinstance(value, bool)
                                   and math.isfinite(value) and value > 0)
        elif key == "mapping_lr_mult":
            ok = isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value) and value > 0
        elif key == "arch":
            ok = isinstance(value, str) and value in ("stylegan2", "sngan", "biggan")
        elif key == "mbstd_group_size":
            ok = value is None or (isinstance(value, int) and not isinstance(value, bool))
        else:
            ok = isinstance(value, int) and not isinstance(value, bool)
        if not ok:
            raise BoundsError(f"{label}: network.{key}={short_repr(value)} has the wrong type or value")
    cfg = NetworkConfig(**d)
    check_network_bounds(cfg, label)
    return cfg


def check_view(size: Iterable[Any], stride: Iterable[Any], offset: Any, storage_numel: int,
               what: str = "a tensor") -> int:
    """Check a declared tensor view against the storage it reads; returns its element count.

    Refused: non-integer or negative numbers, more than MAX_TENSOR_DIMS dimensions, a view that
    reaches past its storage, and any view that reads an element twice (stride 0 over a
    dimension of size > 1, or overlapping strides): such a view is an expansion, so a few
    stored bytes could become gigabytes the moment anything copies the tensor."""
    size, stride = tuple(size), tuple(stride)
    ints = all(isinstance(v, int) and not isinstance(v, bool) and v >= 0 for v in (*size, *stride))
    if not ints or not isinstance(offset, int) or isinstance(offset, bool) or offset < 0 or len(size) != len(stride):
        raise BoundsError(f"{what} declares an invalid size {short_repr(size)}, stride {short_repr(stride)} "
                          f"or offset {short_repr(offset)}")
    if len(size) > MAX_TENSOR_DIMS:
        raise BoundsError(f"{what} has {len(size)} dimensions (at most {MAX_TENSOR_DIMS})")
    numel = math.prod(size)
    if numel == 0:
        return 0
    if numel > storage_numel - offset:
        raise BoundsError(f"{what} declares {numel:,} elements but its storage holds {storage_numel:,} "
                          f"after offset {offset:,} (an expanded or out-of-bounds view)")
    extent = 0
    for s, st in sorted(((s, st) for s, st in zip(size, stride) if s > 1), key=lambda t: t[1]):
        if st <= extent:  # this dimension's steps land inside the span of the faster ones: overlap
            raise BoundsError(f"{what} has size {size} and stride {stride}: it reads the same elements more "
                              "than once (an expanded view)")
        extent += (s - 1) * st
    if offset + extent >= storage_numel:
        raise BoundsError(f"{what} reaches element {offset + extent:,} of a storage of {storage_numel:,}")
    return numel


class TreeWalkError(BoundsError):
    pass


def check_tree(obj: Any, max_nodes: int = MAX_TREE_NODES, max_depth: int = MAX_DEPTH, label: str = "the file",
               leaf: tuple[type, ...] = (), on_leaf: Callable[[Any], None] | None = None) -> int:
    """Walk plain containers (dict, list, tuple, set) as a tree, as every later consumer
    (repr, ==, asdict, deepcopy of a config) will; refuse past `max_nodes` visits or `max_depth`.
    Shared references count at every visit, so a small file whose references double at each
    level is refused after max_nodes steps instead of being walked 2**depth times.
    Objects of the `leaf` types are not entered; `on_leaf` sees each visit of one.
    Iterative: no recursion limit to hit. Returns the number of nodes visited."""
    seen = 0
    stack: list[tuple[Any, int]] = [(obj, 0)]
    while stack:
        node, depth = stack.pop()
        seen += 1
        if seen > max_nodes:
            raise TreeWalkError(f"{label} holds more than {max_nodes:,} values when its shared references are "
                                "followed (a reference bomb, or not a model file)")
        if depth > max_depth:
            raise TreeWalkError(f"{label} is nested deeper than {max_depth} levels")
        if leaf and isinstance(node, leaf):
            if on_leaf is not None:
                on_leaf(node)
            continue
        if isinstance(node, dict):
            for k, v in node.items():
                stack.append((k, depth + 1))
                stack.append((v, depth + 1))
        elif isinstance(node, (list, tuple, set, frozenset)):
            stack.extend((v, depth + 1) for v in node)
    return seen
