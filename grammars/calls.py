"""Calls as text: parse and validate a model's output, and draw random well-typed calls.

`parse_call` is lenient about formatting (spaces, quote style, key order) and strict about
meaning: the function must be offered, every argument known and well-typed, every required one
present — the same value types the grammar enforces, so a call the grammar accepts always
parses, and a call with a wrong name, argument, type or enum value never does.
"""

from __future__ import annotations

import ast
import json
import random
from collections.abc import Sequence
from typing import Any

from .errors import GrammarError
from .generate import STYLES, deep_recursion
from .ir import Node
from .lower import Lowering, lower_function
from .spec import NO_RELEVANT_FUNCTION, FunctionCall, FunctionSpec
from .values import check, render, sample


def _lowered(spec: FunctionSpec, max_depth: int, max_repeat: int) -> dict[str, tuple[Any, Node]]:
    # reports are to_lark's job: they are collected here (so the shared cache stays complete)
    # and not emitted
    lowering = Lowering(spec.defs, max_depth=max_depth, max_repeat=max_repeat, strict=False)
    with deep_recursion():
        return {p.name: (p, node) for p, node in lower_function(spec, lowering)}


def _offered(functions: Sequence[FunctionSpec]) -> dict[str, FunctionSpec]:
    if isinstance(functions, FunctionSpec):
        functions = [functions]
    offered = {f.name: f for f in functions}
    offered.setdefault(NO_RELEVANT_FUNCTION.name, NO_RELEVANT_FUNCTION)
    return offered


def parse_call(text: str, functions: Sequence[FunctionSpec], style: str = "python", *,
               max_depth: int = 3, max_repeat: int = 64) -> list[FunctionCall]:
    """Parse a model's output into calls and validate them against `functions` (plus
    `no_relevant_function`). Raises GrammarError naming what is wrong and where."""
    if style not in STYLES:
        raise GrammarError(f"unknown style {style!r}: expected 'python' or 'json'")
    if not isinstance(text, str):
        raise GrammarError(f"expected call text, got {type(text).__name__}")
    offered = _offered(functions)
    raw = _parse_python(text) if style == "python" else _parse_json(text)
    if not raw:
        raise GrammarError("an empty list of calls", "call text")
    calls = []
    for index, (name, arguments, where) in enumerate(raw):
        if name not in offered:
            choices = ", ".join(sorted(offered))
            raise GrammarError(f"unknown function {name!r} (offered: {choices})", where)
        if name == NO_RELEVANT_FUNCTION.name and len(raw) > 1:
            raise GrammarError(f"{name} must be the only call", where)
        spec = offered[name]
        params = _lowered(spec, max_depth, max_repeat)
        for key in arguments:
            if key not in params:
                known = ", ".join(params) or "none"
                hint = "" if key not in {p.name for p in spec.parameters} else " (it admits no value within the grammar's bounds)"
                raise GrammarError(f"unknown argument {key!r} for {name} (arguments: {known}){hint}", f"{name}.{key}")
        for key, (param, node) in params.items():
            if key not in arguments:
                if param.required:
                    raise GrammarError(f"missing required argument {key!r}", f"{name}.{key}")
                continue
            check(node, arguments[key], f"{name}.{key}")
        ordered = {p.name: arguments[p.name] for p in spec.parameters if p.name in arguments}
        calls.append(FunctionCall(name, ordered))
    return calls


def _parse_python(text: str) -> list[tuple[str, dict, str]]:
    try:
        tree = ast.parse(text.strip(), mode="eval")
    except SyntaxError as e:
        raise GrammarError(f"not a Python call: {e.msg}", f"line {e.lineno}, column {e.offset}") from None
    body = tree.body
    nodes = body.elts if isinstance(body, ast.List) else [body]
    out = []
    for i, node in enumerate(nodes):
        where = f"call {i + 1}" if isinstance(body, ast.List) else "call"
        if not isinstance(node, ast.Call) or not isinstance(node.func, ast.Name):
            raise GrammarError("expected a call such as name(arg=value)", where)
        name = node.func.id
        if node.args:
            raise GrammarError(f"{name}: positional arguments are not allowed; write name=value", where)
        arguments: dict[str, Any] = {}
        for kw in node.keywords:
            if kw.arg is None:
                raise GrammarError(f"{name}: **kwargs are not allowed", where)
            try:
                arguments[kw.arg] = ast.literal_eval(kw.value)
            except (ValueError, SyntaxError, TypeError, MemoryError, RecursionError):
                raise GrammarError(f"the value of {kw.arg!r} is not a literal", f"{name}.{kw.arg}") from None
            arguments[kw.arg] = _plain(arguments[kw.arg], f"{name}.{kw.arg}")
        out.append((name, arguments, f"{name}(...)"))
    return out


def _plain(value: Any, where: str) -> Any:
    """Python literal -> JSON-like value (tuples and sets are not values of a call)."""
    if isinstance(value, (tuple, set, frozenset, bytes, complex)) or value is Ellipsis:
        raise GrammarError(f"a {type(value).__name__} is not allowed (use lists, dicts, str, int, float, bool, None)", where)
    if isinstance(value, list):
        return [_plain(v, f"{where}[{i}]") for i, v in enumerate(value)]
    if isinstance(value, dict):
        for k in value:
            if not isinstance(k, str):
                raise GrammarError(f"dict key {k!r} is not a string", where)
        return {k: _plain(v, f"{where}.{k}") for k, v in value.items()}
    return value


def _no_duplicates(pairs: list) -> dict:
    out: dict = {}
    for k, v in pairs:
        if k in out:
            raise GrammarError(f"duplicate key {k!r}", "call text")
        out[k] = v
    return out


def _reject_constant(name: str) -> None:
    raise GrammarError(f"{name} is not a JSON number", "call text")


def _parse_json(text: str) -> list[tuple[str, dict, str]]:
    try:
        value = json.loads(text, object_pairs_hook=_no_duplicates, parse_constant=_reject_constant)
    except json.JSONDecodeError as e:
        raise GrammarError(f"not JSON: {e.msg}", f"line {e.lineno}, column {e.colno}") from None
    items = value if isinstance(value, list) else [value]
    out = []
    for i, item in enumerate(items):
        where = f"call {i + 1}" if isinstance(value, list) else "call"
        if not isinstance(item, dict) or set(item) != {"name", "arguments"}:
            raise GrammarError('expected {"name": ..., "arguments": {...}}', where)
        if not isinstance(item["name"], str) or not isinstance(item["arguments"], dict):
            raise GrammarError('"name" must be a string and "arguments" an object', where)
        out.append((item["name"], item["arguments"], item["name"]))
    return out


def sample_arguments(spec: FunctionSpec, rng: random.Random, *, max_depth: int = 3,
                     max_repeat: int = 64) -> dict[str, Any]:
    """Random well-typed arguments: every required one, each optional one with probability 1/2."""
    return {name: sample(node, rng) for name, (p, node) in _lowered(spec, max_depth, max_repeat).items()
            if p.required or rng.random() < 0.5}


def sample_call(spec: FunctionSpec, rng: random.Random, style: str = "python", *,
                max_depth: int = 3, max_repeat: int = 64) -> str:
    """A random well-typed call of `spec` in the canonical text the grammar accepts."""
    if style not in STYLES:
        raise GrammarError(f"unknown style {style!r}: expected 'python' or 'json'")
    call = FunctionCall(spec.name, sample_arguments(spec, rng, max_depth=max_depth, max_repeat=max_repeat))
    return call.to_text(style)


__all__ = ["parse_call", "sample_call", "sample_arguments", "render"]
