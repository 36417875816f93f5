"""The normalized function model every importer produces and every generator reads.

A `FunctionSpec` is a function name (a Python identifier), a description and its parameters in
declaration order. Each `Parameter` carries a JSON Schema; `$ref`s inside it resolve through
`FunctionSpec.defs`, a mapping from the `$ref` string, as written, to the schema it names.
"""

from __future__ import annotations

import json
import keyword
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from .request import HttpRequest

__all__ = ["Parameter", "FunctionSpec", "FunctionCall", "NO_RELEVANT_FUNCTION", "NO_DEFAULT"]


class _NoDefault:
    """The `Parameter.default` of a parameter without a default (None is a real default)."""
    __slots__ = ()

    def __repr__(self) -> str:
        return "NO_DEFAULT"

    def __reduce__(self) -> str:
        return "NO_DEFAULT"


NO_DEFAULT = _NoDefault()


@dataclass(frozen=True)
class Parameter:
    """One argument. `name` is what calls use (a Python identifier); `api_name` the name in the
    API document when it differs (`X-Request-Id` -> `X_Request_Id`); `location` is OpenAPI's
    `path`, `query`, `header`, `cookie` or `body`; `default` is `NO_DEFAULT` when
    there is none; `source` is the schema's place in its document (for error messages).
    `style` and `explode` are OpenAPI's serialization of the value in a request (None: the
    location's default; Swagger 2.0's `collectionFormat` is read into them)."""

    name: str
    schema: Mapping[str, Any] | bool = field(default_factory=dict)
    required: bool = True
    default: Any = NO_DEFAULT
    description: str = ""
    location: str | None = None
    api_name: str | None = None
    source: str = ""
    style: str | None = None
    explode: bool | None = None

    def __post_init__(self) -> None:
        if not self.name.isidentifier() or keyword.iskeyword(self.name):
            raise ValueError(f"parameter name {self.name!r} is not a Python identifier")


@dataclass(frozen=True, eq=False)
class FunctionSpec:
    """One callable function. `api_name` is the API's own name when it is not `name` (a Python
    identifier). For OpenAPI operations: `endpoint` is ``"GET /pets/{petId}"``, `server` the
    document's base URL for it (None when the document names none), `media_type` the request
    body's content type, and `body_parameter` the parameter that is the whole body, when the
    body is not split into one parameter per property."""

    name: str
    description: str = ""
    parameters: tuple[Parameter, ...] = ()
    defs: Mapping[str, Any] = field(default_factory=dict)
    api_name: str | None = None
    endpoint: str | None = None
    source: str = ""
    server: str | None = None
    media_type: str | None = None
    body_parameter: str | None = None

    def __post_init__(self) -> None:
        if not self.name.isidentifier() or keyword.iskeyword(self.name):
            raise ValueError(f"function name {self.name!r} is not a Python identifier")
        object.__setattr__(self, "parameters", tuple(self.parameters))
        names = [p.name for p in self.parameters]
        if len(set(names)) != len(names):
            raise ValueError(f"function {self.name!r} has duplicate parameter names: {names}")

    def parameter(self, name: str) -> Parameter:
        for p in self.parameters:
            if p.name == name:
                return p
        raise KeyError(name)

    def to_python_stub(self, max_description: int | None = None) -> str:
        """``def name(a: str, b: int = 3):`` with a docstring holding the description and an
        ``Args:`` section — the form the Octopus prompt shows candidate functions in."""
        params = []
        ordered = True
        seen_optional = False
        for p in self.parameters:
            annotation = python_type(p.schema, self.defs)
            if p.required:
                ordered = ordered and not seen_optional
                params.append(f"{p.name}: {annotation}")
            else:
                seen_optional = True
                default = "None" if p.default is NO_DEFAULT else python_literal(p.default)
                params.append(f"{p.name}: {annotation} = {default}")
        # calls are keyword-only; `*` keeps a required-after-optional order valid Python
        head = ("*, " if params and not ordered else "") + ", ".join(params)
        lines = [f"def {self.name}({head}):"]
        doc = _clip(self.description, max_description)
        body = [doc] if doc else []
        args = [f"    {p.name}: {_clip(p.description, max_description)}"
                for p in self.parameters if p.description.strip()]
        if args:
            body += ([""] if body else []) + ["Args:"] + args
        if body:
            text = "\n".join(body).replace("\\", "\\\\").replace('"""', '\\"\\"\\"')
            if len(body) == 1 and "\n" not in text:
                lines.append(f'    """{text}"""')
            else:
                lines.append('    """' + text.replace("\n", "\n    ").rstrip() + '\n    """')
        else:
            lines.append("    ...")
        return "\n".join(line.rstrip() for line in "\n".join(lines).split("\n"))

    def to_tool(self) -> dict:
        """This function as OpenAI-style tool JSON; `$ref`s are rewritten into `$defs`."""
        from .refs import export_schema
        properties, required, defs, names = {}, [], {}, {}
        for p in self.parameters:
            schema = export_schema(p.schema, self.defs, defs, names)
            if schema is True:
                schema = {}  # the same (any value), with room for the description
            if isinstance(schema, dict):
                schema = dict(schema)
                if p.description:  # the parameter's own description is the one prompts show
                    schema["description"] = p.description
                if p.default is not NO_DEFAULT:
                    schema.setdefault("default", p.default)
            properties[p.name] = schema
            if p.required:
                required.append(p.name)
        parameters: dict[str, Any] = {"type": "object", "properties": properties, "required": required,
                                      "additionalProperties": False}
        if defs:
            parameters["$defs"] = defs
        return {"type": "function",
                "function": {"name": self.name, "description": self.description, "parameters": parameters}}


@dataclass(frozen=True)
class FunctionCall:
    """A parsed call: the function name and its arguments as Python values."""

    name: str
    arguments: dict[str, object] = field(default_factory=dict)

    def to_text(self, style: str = "python") -> str:
        """The call in the canonical form of `style` (arguments in their dict order)."""
        from .values import render
        if style == "python":
            args = ", ".join(f"{k}={render(v, 'python')}" for k, v in self.arguments.items())
            return f"{self.name}({args})"
        if style == "json":
            return render({"name": self.name, "arguments": self.arguments}, "json")
        raise ValueError(f"unknown style {style!r}: expected 'python' or 'json'")

    def to_api(self, functions: "Sequence[FunctionSpec] | FunctionSpec") -> "FunctionCall":
        """This call in the API's own names (`math.gcd`, `X-Request-Id`), found in `functions`
        (see `grammars.api_names`)."""
        from .api_names import to_api
        return to_api(self, functions)

    def to_request(self, spec: FunctionSpec, base_url: str | None = None) -> "HttpRequest":
        """The HTTP request this call of the OpenAPI operation `spec` stands for, sent to
        `base_url` (default: the document's server); see `grammars.request`."""
        from .request import build_request
        return build_request(self, spec, base_url)


NO_RELEVANT_FUNCTION = FunctionSpec(
    name="no_relevant_function",
    description="Call this when none of the offered functions can answer the query.",
    parameters=(Parameter("query", {"type": "string"}, required=True,
                          description="The user's query, repeated."),),
)


# ----------------------------------------------------------------------------- Python stubs

def _clip(text: str, limit: int | None) -> str:
    text = (text or "").strip()
    if limit is not None and len(text) > limit:
        text = text[: max(0, limit - 3)].rstrip() + "..."
    return text


def python_literal(value: Any) -> str:
    """A JSON value written as a Python literal (True/False/None, double-quoted strings)."""
    if value is None or isinstance(value, bool):
        return repr(value)
    if isinstance(value, (int, float)):
        return repr(value)
    if isinstance(value, str):
        return json.dumps(value, ensure_ascii=False)
    if isinstance(value, (list, tuple)):
        return "[" + ", ".join(python_literal(v) for v in value) + "]"
    if isinstance(value, dict):
        return "{" + ", ".join(f"{python_literal(str(k))}: {python_literal(v)}" for k, v in value.items()) + "}"
    return repr(value)


_SIMPLE = {"string": "str", "integer": "int", "number": "float", "boolean": "bool", "null": "None",
           "object": "dict", "array": "list"}


def python_type(schema: Any, defs: Mapping[str, Any], depth: int = 0) -> str:
    """A readable Python annotation for a JSON Schema (for prompts, not for checking)."""
    if depth > 4 or not isinstance(schema, Mapping):
        return "Any"
    if "$ref" in schema:
        target = defs.get(schema["$ref"]) if isinstance(schema["$ref"], str) else None
        return python_type(target, defs, depth + 1) if target is not None else "Any"
    if "const" in schema:
        return f"Literal[{python_literal(schema['const'])}]"
    if isinstance(schema.get("enum"), list) and schema["enum"]:
        inner = ", ".join(python_literal(v) for v in schema["enum"])
        text = f"Literal[{inner}]"
        return f"{text} | None" if schema.get("nullable") and None not in schema["enum"] else text
    for key in ("anyOf", "oneOf"):
        if isinstance(schema.get(key), list) and schema[key]:
            parts = []
            for alt in schema[key]:
                t = python_type(alt, defs, depth + 1)
                if t not in parts:
                    parts.append(t)
            return " | ".join(parts)
    if isinstance(schema.get("allOf"), list) and len(schema["allOf"]) == 1:
        return python_type(schema["allOf"][0], defs, depth + 1)
    kind = schema.get("type")
    kinds = kind if isinstance(kind, list) else [kind] if kind else []
    parts = []
    for k in kinds:
        k = str(k).lower()
        if k in ("array", "list", "tuple"):
            items = schema.get("items")
            parts.append(f"list[{python_type(items, defs, depth + 1)}]" if isinstance(items, Mapping) and items else "list")
        elif k in ("object", "dict"):
            extra = schema.get("additionalProperties")
            if isinstance(extra, Mapping) and extra and not schema.get("properties"):
                parts.append(f"dict[str, {python_type(extra, defs, depth + 1)}]")
            else:
                parts.append("dict")
        else:
            parts.append(_SIMPLE.get(k, {"float": "float", "str": "str", "int": "int", "bool": "bool"}.get(k, "Any")))
    if not parts:
        parts = ["dict"] if "properties" in schema else ["list"] if "items" in schema else ["Any"]
    if schema.get("nullable") and "None" not in parts:
        parts.append("None")
    return " | ".join(parts)

