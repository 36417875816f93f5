"""OpenAI-style tool JSON and plain JSON-Schema function lists -> FunctionSpecs.

Accepted shapes: ``{"type": "function", "function": {...}}``, a bare ``{"name", "description",
"parameters"}`` object, ``{"tools": [...]}`` / ``{"functions": [...]}`` and lists of any of
these. `parameters` is a JSON Schema object (`type` may be the loose `dict`), or — as some
function-calling datasets write it — a map from argument name to ``{"type": "str, optional",
"description": ..., "default": ...}`` with Python-like type strings (`List[int]`,
`Optional[str]`, `Dict[str, Any]`, `float`, `tuple`, `any`).
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

from .errors import GrammarError
from .names import NameTable, identifier
from .refs import RefTable, check_refs, escape_token
from .spec import NO_DEFAULT, FunctionSpec, Parameter

_JSON_TYPES = {"string", "integer", "number", "boolean", "null", "array", "object"}


def is_tool_list(doc: Any) -> bool:
    if isinstance(doc, list):
        return all(isinstance(d, Mapping) for d in doc)
    return isinstance(doc, Mapping) and ("tools" in doc or "functions" in doc or "function" in doc
                                          or ("name" in doc and ("parameters" in doc or "description" in doc)))


def from_tools(doc: Any, source: str = "") -> list[FunctionSpec]:
    entries: list[tuple[Any, str]]
    if isinstance(doc, list):
        entries = [(d, f"{source}#/{i}") for i, d in enumerate(doc)]
    elif isinstance(doc, Mapping) and isinstance(doc.get("tools"), list):
        entries = [(d, f"{source}#/tools/{i}") for i, d in enumerate(doc["tools"])]
    elif isinstance(doc, Mapping) and isinstance(doc.get("functions"), list):
        entries = [(d, f"{source}#/functions/{i}") for i, d in enumerate(doc["functions"])]
    elif isinstance(doc, Mapping):
        entries = [(doc, f"{source}#")]
    else:
        raise GrammarError("expected a tool object or a list of tools", f"{source}#")
    names = NameTable()
    return [_function(entry, where, names) for entry, where in entries]


def _function(entry: Any, where: str, names: NameTable) -> FunctionSpec:
    if not isinstance(entry, Mapping):
        raise GrammarError("a tool must be an object", where)
    if entry.get("type") == "function" or isinstance(entry.get("function"), Mapping):
        if not isinstance(entry.get("function"), Mapping):
            raise GrammarError("a tool of type 'function' needs a 'function' object", where, "function")
        entry, where = entry["function"], f"{where}/function"
    raw_name = entry.get("name")
    if not isinstance(raw_name, str) or not raw_name.strip():
        raise GrammarError("a function needs a 'name'", where, "name")
    name = names.take(identifier(raw_name, fallback="function"))
    description = entry.get("description") if isinstance(entry.get("description"), str) else ""
    params_schema = entry.get("parameters", entry.get("input_schema", entry.get("parameters_json_schema")))
    params_where = f"{where}/parameters"
    parameters: list[Parameter] = []
    defs: Any = {}
    if params_schema is not None:
        if not isinstance(params_schema, Mapping):
            raise GrammarError("'parameters' must be an object", params_where, "parameters")
        defs = RefTable(params_schema, params_where)
        if _is_property_map(params_schema):
            parameters = _loose_parameters(params_schema, params_where)
        else:
            parameters = _schema_parameters(params_schema, params_where, defs)
    return FunctionSpec(name=name, description=description.strip(), parameters=tuple(parameters),
                        defs=defs, api_name=raw_name if raw_name != name else None, source=where)


def _is_property_map(schema: Mapping) -> bool:
    """True for the dataset form {"arg": {"type": ...}, ...} (no JSON-Schema object keywords)."""
    if any(k in schema for k in ("properties", "type", "$ref", "allOf", "anyOf", "oneOf", "required")):
        return False
    return bool(schema) and all(isinstance(v, Mapping) and ("type" in v or "description" in v) for v in schema.values())


def _schema_parameters(schema: Mapping, where: str, defs: RefTable) -> list[Parameter]:
    kind = schema.get("type", "object")
    if not isinstance(kind, str) or kind.lower() not in ("object", "dict"):
        raise GrammarError(f"'parameters' must describe an object, got type {kind!r}", where, "type")
    props = schema.get("properties", {})
    if not isinstance(props, Mapping):
        raise GrammarError("'properties' must be an object", f"{where}/properties", "properties")
    required = schema.get("required", [])
    if not isinstance(required, list) or not all(isinstance(r, str) for r in required):
        raise GrammarError("'required' must be a list of names", f"{where}/required", "required")
    missing = [r for r in required if r not in props]
    if missing:
        raise GrammarError(f"'required' names undeclared parameters: {', '.join(missing)}", f"{where}/required", "required")
    taken = NameTable()
    out = []
    for key, sub in props.items():
        at = f"{where}/properties/{escape_token(key)}"
        sub = _normalize_loose(sub, at)
        check_refs(sub, defs, at)
        name = taken.take(identifier(key))
        desc = sub.get("description", "") if isinstance(sub, Mapping) else ""
        default = sub["default"] if isinstance(sub, Mapping) and "default" in sub else NO_DEFAULT
        out.append(Parameter(name, sub, key in required, default, desc.strip() if isinstance(desc, str) else "",
                             None, key if name != key else None, at))
    return out


def _normalize_loose(schema: Any, where: str) -> Any:
    """Rewrite Python-like type strings (`List[int]`, `str, optional`) into JSON Schema."""
    if not isinstance(schema, Mapping):
        return schema
    kind = schema.get("type")
    if isinstance(kind, str) and kind.strip().lower() not in _JSON_TYPES and not _is_simple_loose(kind):
        parsed, _ = parse_type_string(kind, f"{where}/type")
        out = {k: v for k, v in schema.items() if k != "type"}
        out.update(parsed)
        return out
    return schema


def _is_simple_loose(kind: str) -> bool:
    return kind.strip().lower() in ("str", "int", "float", "double", "bool", "dict", "list", "tuple", "any", "none", "long")


def _loose_parameters(schema: Mapping, where: str) -> list[Parameter]:
    taken = NameTable()
    out = []
    for key, spec in schema.items():
        at = f"{where}/{escape_token(key)}"
        kind = spec.get("type", "any")
        optional = False
        if isinstance(kind, str):
            parsed, optional = parse_type_string(kind, f"{at}/type")
        elif isinstance(kind, list):
            parsed = {"type": kind}
        else:
            raise GrammarError(f"'type' must be a string, got {kind!r}", f"{at}/type", "type")
        sub = {k: v for k, v in spec.items() if k not in ("type", "description", "default", "required", "optional")}
        sub.update(parsed)
        has_default = "default" in spec
        required = spec.get("required") is True or (not optional and not has_default and spec.get("optional") is not True)
        name = taken.take(identifier(key))
        description = spec.get("description", "")
        out.append(Parameter(name, sub, required, spec["default"] if has_default else NO_DEFAULT,
                             description.strip() if isinstance(description, str) else "", None,
                             key if name != key else None, at))
    return out


_ATOMS = {"str": {"type": "string"}, "string": {"type": "string"}, "int": {"type": "integer"},
          "integer": {"type": "integer"}, "float": {"type": "number"}, "number": {"type": "number"},
          "double": {"type": "number"}, "bool": {"type": "boolean"}, "boolean": {"type": "boolean"},
          "dict": {"type": "object"}, "object": {"type": "object"}, "list": {"type": "array"},
          "array": {"type": "array"}, "tuple": {"type": "array"}, "any": {}, "none": {"type": "null"},
          "nonetype": {"type": "null"}, "null": {"type": "null"}, "set": {"type": "array", "uniqueItems": True}}


def parse_type_string(text: str, where: str) -> tuple[dict, bool]:
    """A Python-like type string -> (JSON Schema, optional?). `optional` is set by a trailing
    ", optional" or a top-level Optional[...]."""
    optional = False
    body = text.strip()
    m = re.fullmatch(r"(.*?),\s*optional", body, flags=re.I)
    if m:
        optional, body = True, m.group(1).strip()
    tokens = re.findall(r"[A-Za-z_][A-Za-z_0-9.]*|\[|\]|,|\||\.\.\.", body)
    if "".join(tokens).replace(" ", "") != re.sub(r"\s+", "", body):
        raise GrammarError(f"cannot read the type {text!r}", where, "type")
    pos = 0

    def expr() -> dict:
        nonlocal pos
        alts = [atom()]
        while pos < len(tokens) and tokens[pos] == "|":
            pos += 1
            alts.append(atom())
        return alts[0] if len(alts) == 1 else {"anyOf": alts}

    def args() -> list:
        nonlocal pos
        out: list = []
        if pos < len(tokens) and tokens[pos] == "[":
            pos += 1
            while pos < len(tokens):
                if tokens[pos] == "...":
                    pos += 1
                    out.append({"...": True})
                else:
                    out.append(expr())
                if pos < len(tokens) and tokens[pos] == ",":
                    pos += 1
                    continue
                break
            if pos >= len(tokens) or tokens[pos] != "]":
                raise GrammarError(f"cannot read the type {text!r}: missing ']'", where, "type")
            pos += 1
        return out

    def atom() -> dict:
        nonlocal pos
        if pos >= len(tokens):
            raise GrammarError(f"cannot read the type {text!r}", where, "type")
        word = tokens[pos].split(".")[-1].lower()
        pos += 1
        params = args()
        if word == "optional":
            return {"anyOf": [params[0] if params else {}, {"type": "null"}]}
        if word == "union":
            return {"anyOf": params}
        if word == "literal":
            raise GrammarError(f"Literal[...] in a type string is not supported: {text!r} (use 'enum')", where, "type")
        if word in ("list", "sequence", "set", "iterable") and params:
            return {"type": "array", "items": params[0]}
        if word == "tuple" and params:
            if len(params) == 2 and params[1] == {"...": True}:
                return {"type": "array", "items": params[0]}
            return {"type": "array", "prefixItems": params, "minItems": len(params), "maxItems": len(params)}
        if word in ("dict", "mapping") and len(params) == 2:
            return {"type": "object", "additionalProperties": params[1]}
        if word in _ATOMS and not params:
            return dict(_ATOMS[word])
        raise GrammarError(f"unknown type {text!r}", where, "type")

    schema = expr()
    if pos != len(tokens):
        raise GrammarError(f"cannot read the type {text!r}", where, "type")
    if body.lower().startswith("optional["):
        optional = True
    return schema, optional
