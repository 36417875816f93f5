"""Values against the lowered types: validate a parsed value, draw a random one, write one out.

`check` accepts exactly what the grammar accepts, up to formatting (key order, spaces, quote
style are the parser's business); `sample` draws values the grammar accepts; `render` writes a
value in the canonical text of a call style (Python literals or JSON, `json.dumps` spacing).
"""

from __future__ import annotations

import functools
import json
import math
import random
import re
from typing import Any

from . import patterns
from .errors import GrammarError
from .ir import AnyV, Arr, Bool, Def, Int, Lit, Map, Node, Null, Num, Obj, Str, Union

# ----------------------------------------------------------------------------- rendering


def render(value: Any, style: str) -> str:
    """Canonical literal text of `value`: ``json.dumps`` spacing, strings escaped exactly as
    ``json.dumps(..., ensure_ascii=False)``; Python style writes True/False/None."""
    if style == "json":
        return json.dumps(value, ensure_ascii=False, allow_nan=False)
    if value is None:
        return "None"
    if isinstance(value, bool):
        return "True" if value else "False"
    if isinstance(value, (int, float, str)):
        return json.dumps(value, ensure_ascii=False, allow_nan=False)
    if isinstance(value, (list, tuple)):
        return "[" + ", ".join(render(v, style) for v in value) + "]"
    if isinstance(value, dict):
        return "{" + ", ".join(f"{render(str(k), style)}: {render(v, style)}" for k, v in value.items()) + "}"
    raise TypeError(f"cannot write a {type(value).__name__} as a literal")


# ----------------------------------------------------------------------------- checking

@functools.lru_cache(maxsize=4096)
def _compiled(ast: tuple) -> re.Pattern:
    return re.compile(patterns.to_value_regex(ast))


def describe(node: Node) -> str:
    """A short human name for what `node` accepts (for error messages)."""
    if isinstance(node, Def):
        return describe(node.node)
    if isinstance(node, Str):
        return "a string" + (" matching the pattern" if node.regex is not None else "")
    if isinstance(node, Int):
        bounds = "" if node.lo is None and node.hi is None else f" in [{node.lo}, {node.hi}]"
        return "an integer" + bounds
    if isinstance(node, Num):
        if not node.bounded:
            return "a number"
        return "a number in " + ("(" if node.lo_ex else "[") + f"{node.lo}, {node.hi}" + (")" if node.hi_ex else "]")
    if isinstance(node, Bool):
        return "a boolean"
    if isinstance(node, Null):
        return "null/None"
    if isinstance(node, Lit):
        shown = ", ".join(json.dumps(v, ensure_ascii=False) for v in node.values[:8])
        return f"one of [{shown}{', ...' if len(node.values) > 8 else ''}]"
    if isinstance(node, Arr):
        return "a list"
    if isinstance(node, (Obj, Map)):
        return "an object"
    if isinstance(node, AnyV):
        return "a JSON value"
    if isinstance(node, Union):
        return " or ".join(dict.fromkeys(describe(a) for a in node.alts))
    return type(node).__name__


def same_value(a: Any, b: Any) -> bool:
    """JSON equality: 1 == 1.0, but True is not 1."""
    if isinstance(a, bool) or isinstance(b, bool):
        return isinstance(a, bool) and isinstance(b, bool) and a == b
    if isinstance(a, (int, float)) and isinstance(b, (int, float)):
        return a == b
    if isinstance(a, (list, tuple)) and isinstance(b, (list, tuple)):
        return len(a) == len(b) and all(same_value(x, y) for x, y in zip(a, b))
    if isinstance(a, dict) and isinstance(b, dict):
        return a.keys() == b.keys() and all(same_value(a[k], b[k]) for k in a)
    return type(a) is type(b) and a == b


def value_key(value: Any) -> Any:
    """A hashable key with `value_key(a) == value_key(b)` exactly when `same_value(a, b)`, so
    de-duplicating or intersecting n values is linear, not n² comparisons."""
    if isinstance(value, bool):
        return ("bool", value)
    if isinstance(value, (int, float)):
        return ("number", value)  # 1 == 1.0 and hash(1) == hash(1.0)
    if isinstance(value, (list, tuple)):
        return ("list", tuple(value_key(v) for v in value))
    if isinstance(value, dict):
        return ("object", frozenset((k, value_key(v)) for k, v in value.items()))
    try:
        hash(value)
    except TypeError:
        return ("unhashable", id(value))  # not a JSON value: equal only to itself
    return (type(value).__name__, value)


def _json_depth(value: Any) -> int:
    if isinstance(value, (list, tuple)):
        return 1 + max((_json_depth(v) for v in value), default=0)
    if isinstance(value, dict):
        return 1 + max((_json_depth(v) for v in value.values()), default=0)
    return 0


def _is_json(value: Any) -> bool:
    if value is None or isinstance(value, (bool, int, str)):
        return True
    if isinstance(value, float):
        return math.isfinite(value)
    if isinstance(value, (list, tuple)):
        return all(_is_json(v) for v in value)
    if isinstance(value, dict):
        return all(isinstance(k, str) and _is_json(v) for k, v in value.items())
    return False


def _short(value: Any) -> str:
    try:
        text = json.dumps(value, ensure_ascii=False)
    except (TypeError, ValueError):
        text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


def check(node: Node, value: Any, path: str) -> None:
    """Raise GrammarError (located at `path`) unless the grammar accepts `value` for `node`."""
    problem = _problem(node, value, path)
    if problem is not None:
        raise GrammarError(problem[1], problem[0])


def accepts(node: Node, value: Any) -> bool:
    return _problem(node, value, "") is None


def _problem(node: Node, value: Any, path: str) -> "tuple[str, str] | None":
    if isinstance(node, Def):
        return _problem(node.node, value, path)
    if isinstance(node, Union):
        problems = [_problem(alt, value, path) for alt in node.alts]
        if all(p is not None for p in problems):
            deepest = max(problems, key=lambda p: len(p[0]))  # type: ignore[arg-type,return-value]
            if deepest[0] != path:
                return deepest
            return path, f"expected {describe(node)}, got {_short(value)}"
        return None
    wrong = (path, f"expected {describe(node)}, got {_short(value)}")
    if isinstance(node, Str):
        if not isinstance(value, str):
            return wrong
        if node.regex is not None:
            return None if _compiled(node.regex).fullmatch(value) else (path, f"{_short(value)} does not match the pattern")
        if len(value) < node.min_len or (node.max_len is not None and len(value) > node.max_len):
            return path, f"length {len(value)} outside [{node.min_len}, {node.max_len}]"
        return None
    if isinstance(node, Int):
        if not isinstance(value, int) or isinstance(value, bool):
            return wrong
        if (node.lo is not None and value < node.lo) or (node.hi is not None and value > node.hi):
            return wrong
        return None
    if isinstance(node, Num):
        if not isinstance(value, (int, float)) or isinstance(value, bool) or not math.isfinite(value):
            return wrong
        if node.lo is not None and (value < node.lo or (node.lo_ex and value == node.lo)):
            return wrong
        if node.hi is not None and (value > node.hi or (node.hi_ex and value == node.hi)):
            return wrong
        return None
    if isinstance(node, Bool):
        return None if isinstance(value, bool) else wrong
    if isinstance(node, Null):
        return None if value is None else wrong
    if isinstance(node, Lit):
        return None if any(same_value(value, v) for v in node.values) else wrong
    if isinstance(node, Arr):
        if not isinstance(value, (list, tuple)):
            return wrong
        n = len(value)
        limit = node.max_items
        if node.items is None:
            limit = len(node.prefix) if limit is None else min(limit, len(node.prefix))
        if n < node.min_items or (limit is not None and n > limit):
            return path, f"{n} items, expected between {node.min_items} and {limit}"
        for i, item in enumerate(value):
            sub = node.prefix[i] if i < len(node.prefix) else node.items
            p = _problem(sub, item, f"{path}[{i}]")  # type: ignore[arg-type]
            if p:
                return p
        return None
    if isinstance(node, Obj):
        if not isinstance(value, dict):
            return wrong
        declared = {k: (sub, req) for k, sub, req in node.props}
        for key in value:
            if key not in declared:
                allowed = ", ".join(repr(k) for k in declared) or "none"
                return f"{path}.{key}", f"unknown key {key!r} (allowed: {allowed})"
        for key, (sub, req) in declared.items():
            if key not in value:
                if req:
                    return f"{path}.{key}", f"missing required key {key!r}"
                continue
            p = _problem(sub, value[key], f"{path}.{key}")
            if p:
                return p
        return None
    if isinstance(node, Map):
        if not isinstance(value, dict) or not all(isinstance(k, str) for k in value):
            return wrong
        if len(value) < node.min_size or (node.max_size is not None and len(value) > node.max_size):
            return path, f"{len(value)} keys, expected between {node.min_size} and {node.max_size}"
        if value and node.value is None:
            return path, "expected an empty object"
        for key, item in value.items():
            p = _problem(node.value, item, f"{path}.{key}")  # type: ignore[arg-type]
            if p:
                return p
        return None
    if isinstance(node, AnyV):
        if not _is_json(value):
            return path, f"{_short(value)} is not a JSON value"
        if _json_depth(value) > node.depth:
            return path, f"nested deeper than {node.depth} levels"
        return None
    raise TypeError(f"unknown node {node!r}")


# ----------------------------------------------------------------------------- sampling

def sample(node: Node, rng: random.Random) -> Any:
    """A random value the grammar accepts for `node`."""
    if isinstance(node, Def):
        return sample(node.node, rng)
    if isinstance(node, Union):
        return sample(rng.choice(node.alts), rng)
    if isinstance(node, Str):
        if node.regex is not None:
            return patterns.sample(node.regex, rng)
        hi = node.min_len + 8 if node.max_len is None else min(node.max_len, node.min_len + 8)
        return "".join(patterns.sample_char(patterns.ANY, rng) for _ in range(rng.randint(node.min_len, hi)))
    if isinstance(node, Int):
        lo = node.lo if node.lo is not None else (node.hi - 1000 if node.hi is not None else -1000)
        hi = node.hi if node.hi is not None else lo + 2000
        if rng.random() < 0.2:
            return rng.choice([lo, hi])
        return rng.randint(lo, hi)
    if isinstance(node, Num):
        if not node.bounded:
            return rng.choice([rng.randint(-50, 50), round(rng.uniform(-1e3, 1e3), rng.randint(0, 6)),
                               rng.uniform(-1e-6, 1e-6), rng.uniform(-1e20, 1e20)])
        return _bounded_number(node, rng)
    if isinstance(node, Bool):
        return rng.random() < 0.5
    if isinstance(node, Null):
        return None
    if isinstance(node, Lit):
        return rng.choice(node.values)
    if isinstance(node, Arr):
        cap = len(node.prefix) if node.items is None else None
        hi = node.max_items if node.max_items is not None else node.min_items + 3
        if cap is not None:
            hi = min(hi, cap)
        n = rng.randint(node.min_items, max(node.min_items, min(hi, node.min_items + 3)))
        return [sample(node.prefix[i] if i < len(node.prefix) else node.items, rng) for i in range(n)]  # type: ignore[arg-type]
    if isinstance(node, Obj):
        return {k: sample(sub, rng) for k, sub, req in node.props if req or rng.random() < 0.5}
    if isinstance(node, Map):
        if node.value is None:
            return {}
        hi = node.max_size if node.max_size is not None else node.min_size + 3
        n = rng.randint(node.min_size, max(node.min_size, min(hi, node.min_size + 3)))
        out: dict[str, Any] = {}
        while len(out) < n:
            out[patterns.sample(("rep", ("set", patterns.ANY), 0, 6), rng) + str(len(out))] = sample(node.value, rng)
        return out
    if isinstance(node, AnyV):
        return _sample_json(node.depth, rng)
    raise TypeError(f"unknown node {node!r}")


def _bounded_number(node: Num, rng: random.Random) -> Any:
    """A value in the range whose repr needs no exponent (1e-4 <= |x| < 1e15, or 0)."""
    lo = node.lo if node.lo is not None else (node.hi - 1000 if node.hi is not None else -1000)
    hi = node.hi if node.hi is not None else lo + 1000
    for _ in range(100):
        if rng.random() < 0.3:
            value: Any = rng.randint(lo, hi)
        else:
            value = round(rng.uniform(lo, hi), rng.randint(1, 4))
        if value != 0 and not 1e-4 <= abs(value) < 1e15:
            continue
        if (value == lo and node.lo_ex) or (value == hi and node.hi_ex) or not lo <= value <= hi:
            continue
        return value
    return (lo + hi) / 2


def _sample_json(depth: int, rng: random.Random) -> Any:
    kind = rng.randrange(7 if depth > 0 else 5)
    if kind == 0:
        return patterns.sample(("rep", ("set", patterns.ANY), 0, 8), rng)
    if kind == 1:
        return rng.randint(-10**6, 10**6)
    if kind == 2:
        return round(rng.uniform(-100, 100), 3)
    if kind == 3:
        return rng.random() < 0.5
    if kind == 4:
        return None
    if kind == 5:
        return [_sample_json(depth - 1, rng) for _ in range(rng.randint(0, 3))]
    return {f"k{i}": _sample_json(depth - 1, rng) for i in range(rng.randint(0, 3))}
