"""Python callables and modules -> FunctionSpecs (signature, type hints, docstring).

Hints map to JSON Schema: str/int/float/bool/None, list[X]/Sequence[X]/set[X], tuple[X, Y] and
tuple[X, ...], dict[str, X], Any, Optional/Union/`X | Y`, Literal[...], Enum subclasses (their
values), dataclasses and TypedDicts (objects; recursive ones become `$ref`s). A parameter
without a hint takes the type of its default, or any value. Descriptions come from the
docstring: its first paragraph, and Google (`Args:`), NumPy (`Parameters`) or Sphinx
(`:param x:`) argument sections. `*args`/`**kwargs` cannot be written as keywords in a call:
they are left out with a GrammarWarning (a GrammarError in strict mode).
"""

from __future__ import annotations

import collections.abc as cabc
import dataclasses
import enum
import inspect
import re
import sys
import types
import typing
import warnings
from typing import Any

from .errors import GrammarError, GrammarWarning
from .names import NameTable
from .spec import NO_DEFAULT, FunctionSpec, Parameter

_SCALARS = {str: {"type": "string"}, int: {"type": "integer"}, float: {"type": "number"},
            bool: {"type": "boolean"}, type(None): {"type": "null"}, bytes: {"type": "string"}}


class _Converter:
    def __init__(self, where: str):
        self.where = where
        self.defs: dict[str, Any] = {}
        self.names: dict[type, str] = {}

    def schema(self, hint: Any, at: str) -> Any:
        if hint is Any or hint is inspect.Parameter.empty or hint is object:
            return {}
        if hint is None or hint is type(None):
            return {"type": "null"}
        if hint in _SCALARS:
            return dict(_SCALARS[hint])
        origin, args = typing.get_origin(hint), typing.get_args(hint)
        if origin is typing.Annotated:
            schema = self.schema(args[0], at)
            text = next((a for a in args[1:] if isinstance(a, str)), None)
            return {**schema, "description": text} if text and isinstance(schema, dict) else schema
        if origin is typing.Union or (hasattr(types, "UnionType") and origin is types.UnionType):
            return {"anyOf": [self.schema(a, at) for a in args]}
        if origin is typing.Literal:
            return {"enum": [a.value if isinstance(a, enum.Enum) else a for a in args]}
        if origin in (list, set, frozenset, cabc.Sequence, cabc.MutableSequence, cabc.Set, cabc.Iterable,
                      cabc.Collection):
            return {"type": "array", "items": self.schema(args[0], at)} if args else {"type": "array"}
        if origin is tuple:
            if len(args) == 2 and args[1] is Ellipsis:
                return {"type": "array", "items": self.schema(args[0], at)}
            if args == ((),) or not args:
                return {"type": "array", "maxItems": 0} if args else {"type": "array"}
            return {"type": "array", "prefixItems": [self.schema(a, at) for a in args],
                    "minItems": len(args), "maxItems": len(args), "items": False}
        if origin in (dict, cabc.Mapping, cabc.MutableMapping):
            if args and args[0] is not str and args[0] is not Any:
                raise GrammarError(f"dict keys must be str, got {args[0]!r}", at)
            return {"type": "object", "additionalProperties": self.schema(args[1], at)} if args else {"type": "object"}
        if hint in (list, set, frozenset, tuple):
            return {"type": "array"}
        if hint is dict:
            return {"type": "object"}
        if isinstance(hint, type) and issubclass(hint, enum.Enum):
            return {"enum": [m.value for m in hint]}
        if isinstance(hint, type) and (dataclasses.is_dataclass(hint) or _is_typeddict(hint)):
            return self.named(hint, at)
        if isinstance(hint, typing.TypeVar):
            return {}
        raise GrammarError(f"type hint {hint!r} has no JSON Schema equivalent", at)

    def named(self, cls: type, at: str) -> dict:
        if cls not in self.names:
            name = cls.__name__
            n = 1
            while f"#/$defs/{name}" in self.defs:
                n += 1
                name = f"{cls.__name__}_{n}"
            ref = f"#/$defs/{name}"
            self.names[cls] = ref
            self.defs[ref] = {}  # placeholder: recursive hints refer to it while it is built
            self.defs[ref] = self.class_schema(cls, f"{at} -> {cls.__qualname__}")
        return {"$ref": self.names[cls]}

    def class_schema(self, cls: type, at: str) -> dict:
        try:
            hints = typing.get_type_hints(cls, include_extras=True)
        except Exception as e:  # NameError for unresolvable forward references, and the like
            raise GrammarError(f"cannot resolve the type hints of {cls.__qualname__}: {e}", at) from None
        props, required = {}, []
        if dataclasses.is_dataclass(cls):
            for f in dataclasses.fields(cls):
                props[f.name] = self.schema(hints.get(f.name, Any), f"{at}.{f.name}")
                if f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING:  # type: ignore[misc]
                    required.append(f.name)
                elif f.default is not dataclasses.MISSING and _jsonable(f.default):
                    props[f.name] = {**props[f.name], "default": f.default}
        else:
            keys = getattr(cls, "__required_keys__", set(hints))
            for key, hint in hints.items():
                props[key] = self.schema(hint, f"{at}.{key}")
                if key in keys:
                    required.append(key)
        schema: dict[str, Any] = {"type": "object", "properties": props, "required": required}
        doc = _summary(inspect.getdoc(cls) or "")
        if doc and not doc.startswith(cls.__name__ + "("):
            schema["description"] = doc
        return schema


def _is_typeddict(cls: type) -> bool:
    return isinstance(cls, type) and issubclass(cls, dict) and hasattr(cls, "__annotations__") and hasattr(cls, "__total__")


def _jsonable(value: Any) -> bool:
    if value is None or isinstance(value, (bool, int, float, str)):
        return True
    if isinstance(value, (list, tuple)):
        return all(_jsonable(v) for v in value)
    if isinstance(value, dict):
        return all(isinstance(k, str) and _jsonable(v) for k, v in value.items())
    return False


def _summary(doc: str) -> str:
    """The docstring's text before its first section heading."""
    lines = []
    for line in doc.splitlines():
        if re.match(r"^\s*(Args|Arguments|Parameters|Params|Returns|Return|Raises|Yields|Examples?|Notes?)\s*:?\s*$", line) \
                or re.match(r"^\s*:(param|type|returns?|raises?|rtype)\b", line):
            break
        lines.append(line)
    return "\n".join(lines).strip()


def parse_docstring(doc: str) -> tuple[str, dict[str, str]]:
    """(description, {argument: description}) from a Google, NumPy or Sphinx docstring."""
    doc = inspect.cleandoc(doc or "")
    described: dict[str, str] = {}
    for m in re.finditer(r"^\s*:param\s+(?:[^:\s]+\s+)?(\w+)\s*:\s*(.*(?:\n(?!\s*:)\s+.*)*)", doc, flags=re.M):
        described[m.group(1)] = " ".join(m.group(2).split())
    lines = doc.splitlines()
    i = 0
    while i < len(lines):
        heading = lines[i].strip()
        numpy = heading in ("Parameters", "Arguments", "Args", "Other Parameters") and i + 1 < len(lines) \
            and re.fullmatch(r"-{3,}", lines[i + 1].strip())
        google = re.fullmatch(r"(Args|Arguments|Parameters|Params|Keyword Args|Keyword Arguments):", heading)
        if not (numpy or google):
            i += 1
            continue
        i += 2 if numpy else 1
        base = None
        current = None
        while i < len(lines):
            line = lines[i]
            if not line.strip():
                i += 1
                continue
            indent = len(line) - len(line.lstrip())
            if base is None:
                base = indent
            if indent < base or (numpy and re.fullmatch(r"-{3,}", lines[i + 1].strip() if i + 1 < len(lines) else "")):
                break
            if indent == base:
                if numpy:
                    m = re.match(r"^\s*\*{0,2}(\w+)\s*(?::.*)?$", line)
                    current = m.group(1) if m else None
                    if current:
                        described.setdefault(current, "")
                else:
                    m = re.match(r"^\s*\*{0,2}(\w+)\s*(?:\([^)]*\))?\s*:\s*(.*)$", line)
                    current = m.group(1) if m else None
                    if current:
                        described[current] = m.group(2).strip()
            elif current:
                described[current] = (described.get(current, "") + " " + line.strip()).strip()
            i += 1
    return _summary(doc), described


def _place(fn: Any, qualname: str) -> str:
    """Where a function comes from, as the user knows it: in a file loaded by path, the path
    (not the name it was imported under) and the line."""
    name = getattr(fn, "__module__", None) or "?"
    module = sys.modules.get(name)
    if name.startswith("_octogram_functions_") and getattr(module, "__file__", None):
        line = getattr(getattr(fn, "__code__", None), "co_firstlineno", None)
        return f"{module.__file__}:{line} ({qualname})" if line else f"{module.__file__} ({qualname})"
    return f"{name}.{qualname}"


def from_callable(fn: Any, *, strict: bool = False, names: NameTable | None = None) -> FunctionSpec:
    """The FunctionSpec of a Python function (or any callable with a signature)."""
    target = fn
    raw_name = getattr(fn, "__name__", None) or type(fn).__name__
    where = _place(fn, getattr(fn, "__qualname__", raw_name))
    try:
        sig = inspect.signature(target)
    except (TypeError, ValueError) as e:
        raise GrammarError(f"cannot read the signature: {e}", where) from None
    try:
        hints = typing.get_type_hints(target, include_extras=True)
    except Exception as e:  # unresolvable forward references and the like
        raise GrammarError(f"cannot resolve the type hints: {e}", where) from None
    description, described = parse_docstring(inspect.getdoc(target) or "")
    converter = _Converter(where)
    params = []
    for p in sig.parameters.values():
        at = f"{where}({p.name})"
        if p.kind in (p.VAR_POSITIONAL, p.VAR_KEYWORD):
            stars = "*" if p.kind == p.VAR_POSITIONAL else "**"
            message = f"{stars}{p.name} cannot be written as a keyword argument: left out of the function"
            if strict:
                raise GrammarError(message + " (strict mode)", at)
            warnings.warn(GrammarWarning(message, at), stacklevel=3)
            continue
        if p.name in ("self", "cls") and not hints.get(p.name) and p.kind == p.POSITIONAL_OR_KEYWORD and not params:
            continue  # an unbound method's receiver
        hint = hints.get(p.name, inspect.Parameter.empty)
        if hint is inspect.Parameter.empty and p.default is not p.empty and p.default is not None:
            hint = type(p.default) if type(p.default) in _SCALARS or isinstance(p.default, (list, dict)) else Any
        schema = converter.schema(hint, at)
        default = p.default if p.default is not p.empty and _jsonable(p.default) else NO_DEFAULT
        if isinstance(p.default, enum.Enum):
            default = p.default.value
        params.append(Parameter(p.name, schema, p.default is p.empty, default,
                                described.get(p.name, ""), None, None, at))
    name = raw_name if raw_name.isidentifier() else "function"
    if names is not None:
        name = names.take(name)
    return FunctionSpec(name=name, description=description, parameters=tuple(params), defs=converter.defs,
                        source=where)


def from_module(module: types.ModuleType, *, strict: bool = False) -> list[FunctionSpec]:
    """The module's public functions (`__all__` if it has one), in source order."""
    exported = getattr(module, "__all__", None)
    found = []
    for name, obj in vars(module).items():
        if not inspect.isfunction(obj):
            continue
        if exported is not None:
            if name not in exported:
                continue
        elif name.startswith("_") or obj.__module__ != module.__name__:
            continue
        found.append(obj)
    found.sort(key=lambda f: getattr(f.__code__, "co_firstlineno", 0))
    if not found:
        raise GrammarError("the module defines no public functions", getattr(module, "__file__", None) or module.__name__)
    names = NameTable()
    return [from_callable(f, strict=strict, names=names) for f in found]
