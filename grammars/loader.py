"""`load`: any supported API description -> list[FunctionSpec].

Sources: a path (.json, .yaml/.yml, or .py — a .py file is imported, so only load code you
trust), an already parsed dict/list (OpenAPI/Swagger document, tool JSON), a Python callable,
a list of callables, or a module.
"""

from __future__ import annotations

import difflib
import importlib.util
import json
import os
import sys
import types
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import yaml

from .errors import GrammarError
from .openapi import from_openapi, is_openapi
from .pyfuncs import from_callable, from_module
from .spec import FunctionSpec
from .tools import from_tools, is_tool_list


class _YamlLoader(getattr(yaml, "CSafeLoader", yaml.SafeLoader)):  # type: ignore[misc]
    """Safe YAML without timestamp conversion: `2024-01-01` stays a string, as in JSON."""


_YamlLoader.add_constructor("tag:yaml.org,2002:timestamp", lambda loader, node: loader.construct_scalar(node))


def read_document(path: Path) -> Any:
    """Parse a JSON or YAML file; syntax errors name the file, line and column."""
    try:
        text = path.read_text(encoding="utf-8-sig")  # a byte order mark is no content
    except FileNotFoundError:
        raise GrammarError("no such file", str(path)) from None
    except (OSError, UnicodeDecodeError) as e:
        raise GrammarError(f"cannot read the file: {e}", str(path)) from None
    if not text.strip():
        raise GrammarError("the file is empty", str(path))
    suffix = path.suffix.lower()
    if suffix == ".json":
        try:
            return json.loads(text)
        except json.JSONDecodeError as e:
            raise GrammarError(f"invalid JSON: {e.msg}", f"{path}:{e.lineno}:{e.colno}") from None
        except RecursionError:
            raise GrammarError("invalid JSON: nested too deeply", str(path)) from None
        except ValueError as e:  # an integer past Python's digit limit for str -> int
            raise GrammarError(f"invalid JSON: {e}", str(path)) from None
    try:
        loader = _YamlLoader(text)
        try:
            node = loader.get_single_node()
            if node is None:
                return None
            _check_aliases(node, path)
            return loader.construct_document(node)
        finally:
            loader.dispose()
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        where = f"{path}:{mark.line + 1}:{mark.column + 1}" if mark is not None else str(path)
        problem = getattr(e, "problem", None) or str(e).splitlines()[0]
        raise GrammarError(f"invalid YAML: {problem}", where) from None


# An alias repeats a YAML node wherever it is used; nested aliases multiply (a 700-byte
# "billion laughs" document expands to hundreds of millions of values). What aliases add to a
# real API document stays far below this bound.
MAX_YAML_EXPANDED_NODES = 1_000_000


def _check_aliases(root: yaml.Node, path: Path) -> None:
    """Refuse a YAML node graph that contains itself (a recursive alias, which no JSON value can
    express) or that expands to more than MAX_YAML_EXPANDED_NODES values, naming the line."""
    size: dict[int, int] = {}  # expanded size of each finished node
    active: set[int] = set()   # nodes on the current path
    first_big: yaml.Node | None = None
    # Iterative post-order walk (documents nest deeper than Python's recursion limit allows).
    stack: list[tuple[yaml.Node, bool]] = [(root, False)]
    while stack:
        node, done = stack.pop()
        key = id(node)
        if done:
            active.discard(key)
            total = 1 + sum(size[id(c)] for c in _children(node))
            if total > MAX_YAML_EXPANDED_NODES and first_big is None:
                first_big = node  # the innermost node too big (post-order meets it first)
            size[key] = total
            continue
        if key in size:
            continue
        if key in active:
            raise GrammarError("a YAML alias refers to a node that contains it (a recursive "
                               "alias has no JSON value)", f"{path}:{node.start_mark.line + 1}")
        active.add(key)
        stack.append((node, True))
        for child in _children(node):
            if id(child) in active:
                raise GrammarError("a YAML alias refers to a node that contains it (a recursive "
                                   "alias has no JSON value)", f"{path}:{child.start_mark.line + 1}")
            if id(child) not in size:
                stack.append((child, False))
    # A large document without aliases is fine; what aliases add beyond it is bounded.
    if size[id(root)] - len(size) > MAX_YAML_EXPANDED_NODES:
        line = (first_big or root).start_mark.line + 1
        raise GrammarError(f"YAML aliases expand this document by more than "
                           f"{MAX_YAML_EXPANDED_NODES:,} values (an alias bomb?); refusing to "
                           "expand them", f"{path}:{line}")


def _children(node: yaml.Node) -> list[yaml.Node]:
    if isinstance(node, yaml.MappingNode):
        return [n for pair in node.value for n in pair]
    if isinstance(node, yaml.SequenceNode):
        return list(node.value)
    return []


def _import_file(path: Path) -> types.ModuleType:
    name = "_octogram_functions_" + str(abs(hash(str(path.resolve()))))
    spec = importlib.util.spec_from_file_location(name, path)
    if spec is None or spec.loader is None:
        raise GrammarError("cannot import this file", str(path))
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module  # dataclasses and typing need the module registered
    try:
        spec.loader.exec_module(module)
    except Exception as e:  # the user's code failed: report it as bad input, in one line
        sys.modules.pop(name, None)
        raise GrammarError(f"importing the file failed: {type(e).__name__}: {e}", str(path)) from None
    return module


def load_document(doc: Any, source: str = "", *, strict: bool = False) -> list[FunctionSpec]:
    if is_openapi(doc):
        return from_openapi(doc, source, strict=strict)
    if is_tool_list(doc):
        return from_tools(doc, source)
    if isinstance(doc, Mapping) and ("paths" in doc or "info" in doc):
        raise GrammarError("an OpenAPI document needs an 'openapi' (3.x) or 'swagger' (2.0) field", f"{source}#")
    raise GrammarError("not an API description: expected an OpenAPI/Swagger document, a tool object "
                       "or a list of tools", f"{source}#")


def _select(specs: list[FunctionSpec], wanted: Sequence[str] | None, where: str) -> list[FunctionSpec]:
    if wanted is None:
        return specs
    if isinstance(wanted, str):
        wanted = [wanted]
    by_name: dict[str, FunctionSpec] = {}
    for s in specs:
        by_name.setdefault(s.name, s)
        if s.api_name:
            by_name.setdefault(s.api_name, s)
    out: list[FunctionSpec] = []
    for name in wanted:
        if name not in by_name:
            close = difflib.get_close_matches(name, list(by_name), n=3)
            hint = f"; did you mean {', '.join(close)}?" if close else f"; {len(specs)} functions are available"
            raise GrammarError(f"no function named {name!r}{hint}", where)
        if by_name[name] not in out:
            out.append(by_name[name])
    return out


def load(source: Any, *, functions: Sequence[str] | None = None, strict: bool = False) -> list[FunctionSpec]:
    """Read API descriptions into FunctionSpecs.

    `functions` keeps only the named functions (by call name or by the name in the document,
    e.g. an operationId), in the order given. Operations that cannot be imported are skipped with
    a GrammarWarning naming them, or raise GrammarError when `strict`.
    """
    where = ""
    if isinstance(source, FunctionSpec):
        specs = [source]
    elif isinstance(source, (str, os.PathLike)):
        path = Path(source)
        where = str(path)
        if path.suffix.lower() == ".py":
            if not path.exists():
                raise GrammarError("no such file", where)
            specs = from_module(_import_file(path), strict=strict)
        else:
            specs = load_document(read_document(path), where, strict=strict)
    elif isinstance(source, types.ModuleType):
        specs = from_module(source, strict=strict)
    elif isinstance(source, Mapping):
        specs = load_document(source, strict=strict)
    elif isinstance(source, (list, tuple)):
        if source and all(isinstance(s, FunctionSpec) for s in source):
            specs = list(source)
        elif source and all(callable(s) and not isinstance(s, Mapping) for s in source):
            from .names import NameTable
            names = NameTable()
            specs = [from_callable(f, strict=strict, names=names) for f in source]
        else:
            specs = load_document(list(source), strict=strict)
    elif callable(source):
        specs = [from_callable(source, strict=strict)]
    else:
        raise GrammarError(f"cannot load functions from a {type(source).__name__}")
    return _select(specs, functions, where)
