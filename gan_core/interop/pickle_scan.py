"""Scan a pickle's opcodes before anything unpickles it. torch-free, executes nothing.

Two hazards survive even an allow-list `find_class`, because they live in the pickle
machine itself rather than in what it imports:

- Work and memory: each opcode is a few bytes and may create an object of ~50-100 bytes
  (an empty dict, a memo entry), so a file of N bytes can ask for ~50 N bytes of objects.
  The scan counts opcodes and refuses past `max_opcodes` (a legitimate FFHQ-1024-sized
  NVlabs pkl has ~40k; the cap is 500k).
- Hashing recursion: CPython hashes a tuple by hashing its items recursively, in C,
  without a recursion check, so a 2 MB pickle of 2 million nested 1-tuples used as a dict
  key (or set member) segfaults the unpickling process (seen on Python 3.11 here). The
  scan tracks how deeply tuples nest - tuples are immutable, so their depth is known when
  they are built - and refuses past `max_tuple_depth` before any tuple is hashed.

- Shared references: a list holding the same list twice, 40 levels deep, is 400 bytes but 2**40
  nodes to anything that walks it as a tree (repr, ==, the conversions after unpickling).
  The scan estimates each object's tree size as it is built and refuses past
  `max_tree_nodes`, so such a file is refused here, before torch is even imported.

The scan also checks the framing: PROTO first, exactly one STOP, and where it ends (the
caller compares that with the file's size to refuse trailing data). Declared lengths are
read from an in-memory buffer, so a huge declared length costs nothing.
"""

from __future__ import annotations

import pickletools
from dataclasses import dataclass

from .bounds import MAX_TREE_NODES, BoundsError


@dataclass(frozen=True)
class PickleScanLimits:
    max_opcodes: int = 500_000  # a paper1024-shaped NVlabs snapshot (G, D, G_ema, augment pipe) has 39,739
    max_tuple_depth: int = 32  # NVlabs and torch pickles nest tuples 2-3 deep
    max_tree_nodes: int = MAX_TREE_NODES  # the same budget as the walks after unpickling (bounds.py)
    protocols: tuple[int, ...] = (2, 3, 4, 5)
    allow_persistent_ids: bool = False  # torch.save's data.pkl names its storages by persistent id


@dataclass(frozen=True)
class PickleScan:
    protocol: int
    opcodes: int
    end: int  # offset just past STOP, relative to the start of the scan
    tree_nodes: int  # estimated nodes of the result walked as a tree


class PickleScanError(BoundsError):
    pass


class _Node:
    """What the scan knows about one object on the pickle stack: how deeply tuples nest in it, and
    how many nodes a tree walk of it would visit. Shared (via the memo) exactly as the object is,
    so appending to a list also grows the list as seen through its other references - except in
    containers that already counted it (a lower bound then; the walk after unpickling is exact)."""

    __slots__ = ("depth", "size")

    def __init__(self, depth: int = 0, size: int = 1) -> None:
        self.depth, self.size = depth, size


_TUPLE_N = {"TUPLE1": 1, "TUPLE2": 2, "TUPLE3": 3}
_GROW = {"APPEND", "APPENDS", "SETITEM", "SETITEMS", "ADDITEMS", "BUILD"}  # add items to the object below them
_REFUSED = {"NEXT_BUFFER": "out-of-band buffers", "READONLY_BUFFER": "out-of-band buffers",
            "EXT1": "the copyreg extension registry", "EXT2": "the copyreg extension registry",
            "EXT4": "the copyreg extension registry"}


class _Reader:
    """read/readline/tell over `data[start:]` without copying it (io.BytesIO of a slice would)."""

    def __init__(self, data: bytes | bytearray, start: int) -> None:
        self.data, self.start, self.pos = data, start, start

    def read(self, n: int = -1) -> bytes:
        end = len(self.data) if n < 0 else min(self.pos + n, len(self.data))
        out = bytes(self.data[self.pos:end])
        self.pos = end
        return out

    def readline(self) -> bytes:
        nl = self.data.find(b"\n", self.pos)
        return self.read(-1 if nl < 0 else nl + 1 - self.pos)

    def tell(self) -> int:
        return self.pos - self.start


def scan_pickle(data: bytes | bytearray | memoryview, start: int = 0, limits: PickleScanLimits = PickleScanLimits(),
                label: str = "the pickle") -> PickleScan:
    """Check the pickle starting at `data[start]`; raise PickleScanError saying what is wrong."""
    f = _Reader(data if isinstance(data, (bytes, bytearray)) else bytes(data), start)
    stack: list[_Node] = []
    marks: list[int] = []
    memo: dict[int, _Node] = {}
    protocol, count = -1, 0
    cap = limits.max_tree_nodes

    def pop(n: int) -> list[_Node]:
        if n > len(stack) - (marks[-1] if marks else 0):
            raise PickleScanError(f"{label} is damaged (stack underflow)")
        items = stack[len(stack) - n:] if n else []
        del stack[len(stack) - n:]
        return items

    def pop_mark() -> list[_Node]:
        if not marks:
            raise PickleScanError(f"{label} is damaged (no MARK)")
        at = marks.pop()
        items = stack[at:]
        del stack[at:]
        return items

    def grown(node: _Node, items: list[_Node]) -> _Node:
        node.size = min(node.size + sum(i.size for i in items), cap + 1)
        if node.size > cap:
            raise PickleScanError(f"{label} holds more than {cap:,} values when its shared references are followed "
                                  "(a reference bomb, or not a model file); refused before unpickling")
        return node

    try:
        for op, arg, pos in pickletools.genops(f):
            count += 1
            if count > limits.max_opcodes:
                raise PickleScanError(f"{label} has more than {limits.max_opcodes:,} pickle operations (a model "
                                      "pickle has tens of thousands); refused before unpickling")
            name = op.name
            if count == 1:
                if name != "PROTO" or arg not in limits.protocols:
                    raise PickleScanError(f"{label} is not a pickle of protocol {'-'.join(map(str, limits.protocols))}")
                protocol = arg
                continue
            if name in _REFUSED:
                raise PickleScanError(f"{label} uses {_REFUSED[name]}, which model pickles never do")
            if name in ("PERSID", "BINPERSID") and not limits.allow_persistent_ids:
                raise PickleScanError(f"{label} has persistent ids (not an NVlabs network pickle)")
            if name == "STOP":
                root = pop(1)[0]
                return PickleScan(protocol, count, pos + 1, root.size)
            if name in ("EMPTY_TUPLE", "TUPLE", "TUPLE1", "TUPLE2", "TUPLE3"):
                items = [] if name == "EMPTY_TUPLE" else pop_mark() if name == "TUPLE" else pop(_TUPLE_N[name])
                depth = 1 + max((i.depth for i in items), default=0)
                if depth > limits.max_tuple_depth:
                    raise PickleScanError(f"{label} nests tuples more than {limits.max_tuple_depth} deep (hashing "
                                          "such a tuple overflows the C stack); refused before unpickling")
                stack.append(grown(_Node(depth), items))
            elif name == "MARK":
                marks.append(len(stack))
            elif name in ("PUT", "BINPUT", "LONG_BINPUT", "MEMOIZE"):
                if not stack or (marks and marks[-1] == len(stack)):
                    raise PickleScanError(f"{label} is damaged (memo of an empty stack)")
                memo[len(memo) if name == "MEMOIZE" else arg] = stack[-1]
            elif name in ("GET", "BINGET", "LONG_BINGET"):
                if arg not in memo:
                    raise PickleScanError(f"{label} is damaged (memo entry {arg} used before it is set)")
                stack.append(memo[arg])
            elif name == "DUP":
                stack.append(pop(1)[0])
                stack.append(stack[-1])
            elif name in ("PROTO", "FRAME"):
                continue
            else:
                before = [s.name for s in op.stack_before]
                items = pop_mark() if "mark" in before else []
                items = pop(before.index("mark") if "mark" in before else len(before)) + items
                if name in _GROW:
                    stack.append(grown(items[0], items[1:]))
                elif op.stack_after:
                    stack.append(grown(_Node(), items))
    except PickleScanError:
        raise
    except (ValueError, EOFError, KeyError, OverflowError, UnicodeDecodeError) as exc:
        raise PickleScanError(f"{label} is truncated or damaged ({type(exc).__name__}: {str(exc)[:200]})") from None
    raise PickleScanError(f"{label} is truncated (no STOP)")
