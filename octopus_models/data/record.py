"""One training/evaluation record for every source, and its validation against the grammars layer.

An `Example` is a query, the functions its source offers with it (`functions`, FunctionSpecs
from `octogram.grammars.load`), the gold answer as `FunctionCall`s (an empty tuple means no
offered function fits: the answer is `no_relevant_function`), and where it came from:
`source` (e.g. ``"seal-tools"``), `api` (the split key: the OpenAPI document, dataset domain or
tool the example belongs to; no `api` is in two splits) and `origin` (file and row, for humans).

Importers return an `Imported`: the examples that passed `validate`, and a `Counter` of what
was dropped, by cause, so a build can report it.
"""

from __future__ import annotations

import json
import re
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from octogram.grammars import NO_RELEVANT_FUNCTION, FunctionCall, FunctionSpec, GrammarError, parse_call

__all__ = ["Example", "Imported", "DropError", "validate", "coerce_arguments", "answer_text",
           "find_function"]


class DropError(ValueError):
    """An upstream row that cannot become an example; `cause` is its short, countable reason."""

    def __init__(self, cause: str, detail: str = "") -> None:
        super().__init__(f"{cause}: {detail}" if detail else cause)
        self.cause = cause


@dataclass(frozen=True, eq=False)
class Example:
    query: str
    functions: tuple[FunctionSpec, ...]
    calls: tuple[FunctionCall, ...]
    source: str
    api: str
    origin: str = ""
    #: free-form facts a source wants kept (e.g. ``{"kind": "negative"}``)
    meta: Mapping[str, Any] = field(default_factory=dict)

    @property
    def is_negative(self) -> bool:
        return not self.calls


@dataclass
class Imported:
    examples: list[Example] = field(default_factory=list)
    dropped: Counter = field(default_factory=Counter)

    def add(self, make: Any) -> None:
        """Run `make()` (which builds one Example) and keep it if it validates; count drops."""
        try:
            example = validate(make())
        except DropError as exc:
            self.dropped[exc.cause] += 1
            return
        self.examples.append(example)

    def extend(self, other: "Imported") -> None:
        self.examples.extend(other.examples)
        self.dropped.update(other.dropped)


def answer_text(calls: Sequence[FunctionCall], query: str) -> str:
    """The canonical answer: one call, ``[a(...), b(...)]`` for several, or
    ``no_relevant_function(query="...")`` when there is none."""
    if not calls:
        return FunctionCall(NO_RELEVANT_FUNCTION.name, {"query": query.strip()}).to_text()
    if len(calls) == 1:
        return calls[0].to_text()
    return "[" + ", ".join(c.to_text() for c in calls) + "]"


def validate(example: Example) -> Example:
    """Check that the gold answer parses under the offered functions' grammar and means the
    same calls; raises DropError otherwise. Returns the example with calls in canonical order."""
    if not isinstance(example.query, str) or not example.query.strip():
        raise DropError("empty query")
    if not example.functions:
        raise DropError("no functions")
    names = [f.name for f in example.functions]
    if len(set(names)) != len(names):
        raise DropError("duplicate function names")
    if NO_RELEVANT_FUNCTION.name in names:
        raise DropError("offers no_relevant_function itself")
    text = answer_text(example.calls, example.query)
    try:
        parsed = parse_call(text, example.functions)
    except GrammarError as exc:
        raise DropError("gold call does not validate", str(exc)) from exc
    except (RecursionError, ValueError) as exc:
        raise DropError("gold call does not validate", str(exc)) from exc
    if not example.calls:
        return example
    if [(c.name, c.arguments) for c in parsed] != [(c.name, dict(c.arguments)) for c in example.calls]:
        raise DropError("gold call changes meaning when parsed")
    return Example(example.query.strip(), tuple(example.functions), tuple(parsed), example.source,
                   example.api, example.origin, example.meta)


def find_function(functions: Sequence[FunctionSpec], name: str) -> FunctionSpec:
    """The function a dataset calls `name`: by call name, then by the API's own name
    (`math.gcd` -> `math_gcd`), then ignoring case; DropError("gold function not offered")."""
    for f in functions:
        if f.name == name:
            return f
    for f in functions:
        if f.api_name == name:
            return f
    folded = re.sub(r"\W", "_", name).lower()
    for f in functions:
        if f.name.lower() == folded or (f.api_name or "").lower() == name.lower():
            return f
    raise DropError("gold function not offered", name)


def _schema_type(schema: Any) -> str | None:
    if not isinstance(schema, Mapping):
        return None
    kind = schema.get("type")
    if isinstance(kind, list):
        kinds = [k for k in kind if k != "null"]
        kind = kinds[0] if len(kinds) == 1 else None
    return kind if isinstance(kind, str) else None


_INT = re.compile(r"[+-]?\d+")
_FLOAT = re.compile(r"[+-]?(\d+\.?\d*|\.\d+)([eE][+-]?\d+)?")


def _coerce(value: Any, schema: Any) -> Any:
    """Upstream labels often write numbers and booleans as strings (or the reverse)."""
    kind = _schema_type(schema)
    if kind == "integer":
        if isinstance(value, str) and _INT.fullmatch(value.strip()):
            return int(value.strip())
        if isinstance(value, float) and value.is_integer():
            return int(value)
    elif kind == "number":
        if isinstance(value, str) and _FLOAT.fullmatch(value.strip()):
            number = float(value.strip())
            return int(number) if number.is_integer() and "." not in value else number
    elif kind == "boolean":
        if isinstance(value, str) and value.strip().lower() in ("true", "false"):
            return value.strip().lower() == "true"
    elif kind == "string":
        if isinstance(value, bool):
            return "true" if value else "false"
        if isinstance(value, (int, float)):
            return str(value)
    elif kind == "array":
        value = _json_text(value, list)
        if isinstance(value, list) and isinstance(schema, Mapping):
            return [_coerce(v, schema.get("items")) for v in value]
    elif kind == "object":
        return _json_text(value, dict)
    return value


def _json_text(value: Any, kind: type) -> Any:
    """A list or dict that a label wrote as JSON text, decoded; anything else unchanged."""
    if isinstance(value, str):
        try:
            loaded = json.loads(value)
        except ValueError:
            return value
        if isinstance(loaded, kind):
            return loaded
    return value


def coerce_arguments(spec: FunctionSpec, arguments: Mapping[str, Any]) -> dict[str, Any]:
    """`arguments` keyed by the spec's call names (the API's own names are mapped too), with
    string-typed numbers/booleans converted where the schema asks for them; an argument the
    spec does not have raises DropError("unknown argument")."""
    by_api = {(p.api_name or p.name): p for p in spec.parameters}
    by_name = {p.name: p for p in spec.parameters}
    out: dict[str, Any] = {}
    for key, value in arguments.items():
        param = by_name.get(key) or by_api.get(key)
        if param is None:
            raise DropError("unknown argument", f"{spec.name}.{key}")
        out[param.name] = _coerce(value, param.schema)
    return out
