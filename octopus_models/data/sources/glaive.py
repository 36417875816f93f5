"""Glaive function calling, as sampled by LLaMA-Factory (hiyouga/LLaMA-Factory,
`data/glaive_toolcall_en_demo.json`, Apache-2.0; 300 conversations from glaive-function-calling-v2).

Each row is ``{"conversations": [{"from": "human"|"gpt"|"function_call"|"observation", "value"}],
"tools": "<JSON list of {name, description, parameters}>"}``. The gold is the first
`function_call` turn (``{"name", "arguments"}`` as JSON; several calls in a row before the next
user turn become a list). The query is the user turns up to that call, one per line: glaive's
assistant often asks for the arguments first ("Please tell me what ingredients you have"), so
the first turn alone rarely holds them. A conversation that offers tools and never calls one is
a negative (calls == ()), its query the first user turn; one that offers no tools is skipped
("no tools offered").

Quirks handled: `tools` is a JSON string (empty or "[]" when none); `arguments` may itself be a
JSON string; numbers written as strings (`coerce_arguments`).
"""

from __future__ import annotations

import json
import warnings
from pathlib import Path

from octogram.grammars import FunctionCall, load

from ..record import DropError, Example, Imported, coerce_arguments, find_function

SOURCE = "glaive"
FILE = "data/glaive_toolcall_en_demo.json"


def _functions(tools_text: str) -> tuple:
    try:
        tools = json.loads(tools_text) if tools_text and tools_text.strip() else []
    except ValueError as exc:
        raise DropError("tool schema not loadable", str(exc)) from exc
    if not tools:
        raise DropError("no tools offered")
    specs = []
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for tool in tools:
            try:
                specs.extend(load(tool))
            except Exception as exc:
                raise DropError("tool schema not loadable", str(exc)) from exc
    return tools, tuple(specs)


def _call(value: str, functions) -> FunctionCall:
    try:
        raw = json.loads(value)
        arguments = raw.get("arguments") or {}
        if isinstance(arguments, str):
            arguments = json.loads(arguments) if arguments.strip() else {}
        name = raw["name"]
    except (ValueError, KeyError, AttributeError, TypeError) as exc:
        raise DropError("unparsable function_call", str(value)[:80]) from exc
    if not isinstance(arguments, dict):
        raise DropError("unparsable function_call", str(value)[:80])
    spec = find_function(functions, name)
    return FunctionCall(spec.name, coerce_arguments(spec, arguments))


def _example(row: dict, origin: str) -> Example:
    tools, functions = _functions(row.get("tools", ""))
    turns = row.get("conversations") or []
    api = f"{SOURCE}/" + "+".join(sorted(str(t.get("name", "")) for t in tools if isinstance(t, dict)))
    kinds = [t.get("from") for t in turns]
    users = [t["value"] for t in turns if t.get("from") == "human"]
    if "function_call" not in kinds:
        return Example(users[0] if users else "", functions, (), SOURCE, api, origin, {"kind": "negative"})
    first = kinds.index("function_call")
    calls, i = [], first
    while i < len(turns) and kinds[i] in ("function_call", "observation"):
        if kinds[i] == "function_call":
            calls.append(_call(turns[i]["value"], functions))
        i += 1
    query = "\n".join(t["value"].strip() for t in turns[:first] if t.get("from") == "human")
    return Example(query, functions, tuple(calls), SOURCE, api, origin)


def read(root: Path) -> Imported:
    """Glaive examples from the `llamafactory-glaive-demo` folder."""
    rows = json.loads((Path(root) / FILE).read_text(encoding="utf-8"))
    out = Imported()
    for i, row in enumerate(rows):
        out.add(lambda row=row, i=i: _example(row, f"{FILE}:{i}"))
    return out
