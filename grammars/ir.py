"""The value types a grammar can express, as a small tree (a DAG where schemas are shared).

JSON Schema is lowered into these nodes once (`lower.py`); the Lark generator, the call
validator and the call sampler all read the same nodes, so they agree on what a value may be.
Recursion never appears here: recursive schemas are unrolled to `max_depth` while lowering.
"""

from __future__ import annotations

from typing import Any


class Node:
    __slots__ = ()


class Str(Node):
    """A string; `regex` (a full-match AST over the value, see regex.py) or length bounds."""
    __slots__ = ("regex", "min_len", "max_len")

    def __init__(self, regex: tuple | None = None, min_len: int = 0, max_len: int | None = None):
        self.regex, self.min_len, self.max_len = regex, min_len, max_len


class Int(Node):
    """An integer in [lo, hi] (None = unbounded), written canonically (no leading zeros, no -0)."""
    __slots__ = ("lo", "hi")

    def __init__(self, lo: int | None = None, hi: int | None = None):
        self.lo, self.hi = lo, hi


class Num(Node):
    """A number in JSON number syntax. With bounds (integers; None = unbounded; `*_ex` = exclusive)
    it is written as a plain decimal (no exponent, no negative zero) between them."""
    __slots__ = ("lo", "lo_ex", "hi", "hi_ex")

    def __init__(self, lo: int | None = None, lo_ex: bool = False, hi: int | None = None, hi_ex: bool = False):
        self.lo, self.lo_ex, self.hi, self.hi_ex = lo, lo_ex, hi, hi_ex

    @property
    def bounded(self) -> bool:
        return self.lo is not None or self.hi is not None


class Bool(Node):
    __slots__ = ()


class Null(Node):
    __slots__ = ()


class Lit(Node):
    """One of the given JSON values (enum, const)."""
    __slots__ = ("values",)

    def __init__(self, values: tuple):
        self.values = values


class Arr(Node):
    """A list: element i follows `prefix[i]`, later ones `items` (None: no more elements);
    the length is in [min_items, max_items]."""
    __slots__ = ("prefix", "items", "min_items", "max_items")

    def __init__(self, prefix: tuple, items: Node | None, min_items: int = 0, max_items: int | None = None):
        self.prefix, self.items, self.min_items, self.max_items = prefix, items, min_items, max_items


class Obj(Node):
    """An object with exactly the declared keys, in declaration order: (key, node, required)."""
    __slots__ = ("props",)

    def __init__(self, props: tuple):
        self.props = props


class Map(Node):
    """An object with any string keys, each value a `value`; [min_size, max_size] keys."""
    __slots__ = ("value", "min_size", "max_size")

    def __init__(self, value: Node | None, min_size: int = 0, max_size: int | None = None):
        self.value, self.min_size, self.max_size = value, min_size, max_size


class AnyV(Node):
    """Any JSON value whose containers nest at most `depth` levels."""
    __slots__ = ("depth",)

    def __init__(self, depth: int):
        self.depth = depth


class Union(Node):
    __slots__ = ("alts",)

    def __init__(self, alts: tuple):
        self.alts = alts


class Def(Node):
    """A named schema (`$ref` target) at one recursion budget; carries the warnings raised while
    lowering it, so a cached lowering can report them again."""
    __slots__ = ("ref", "node", "warnings", "budget")

    def __init__(self, ref: str, node: Node, warnings: tuple, budget: int):
        self.ref, self.node, self.warnings, self.budget = ref, node, warnings, budget


def union(nodes: "list[Node | None]") -> Node | None:
    """Union of the non-empty alternatives (None: no value at all)."""
    flat: list[Node] = []
    seen: set[int] = set()  # nodes compare by identity; a set keeps many branches linear
    for n in nodes:
        if n is None:
            continue
        for m in (n.alts if isinstance(n, Union) else (n,)):
            if id(m) not in seen:
                seen.add(id(m))
                flat.append(m)
    if not flat:
        return None
    return flat[0] if len(flat) == 1 else Union(tuple(flat))


def walk(node: Node) -> "list[Node]":
    """Every node reachable from `node`, each once (iterative: unrolled schemas can be deep)."""
    seen: set[int] = set()
    out: list[Node] = []
    stack: list[Any] = [node]
    while stack:
        n = stack.pop()
        if n is None or id(n) in seen:
            continue
        seen.add(id(n))
        out.append(n)
        if isinstance(n, Def):
            stack.append(n.node)
        elif isinstance(n, Union):
            stack.extend(n.alts)
        elif isinstance(n, Arr):
            stack.extend(n.prefix)
            stack.append(n.items)
        elif isinstance(n, Obj):
            stack.extend(p[1] for p in n.props)
        elif isinstance(n, Map):
            stack.append(n.value)
    return out
