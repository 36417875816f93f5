"""HammerBench (github.com/MadeAgents/HammerBench, Apache-2.0), its English single-turn sample.

`data/en/single-turn/<file>.json` is a list of `{messages: [{"role": "user", "content"},
{"role": "function call", "content": {name, arguments}}], multiple_tools: [JSON Schema tools]}`.
Positives come from `ST_Perfect.json` and `ST_External.json`; `ST_Imperfect.json` is skipped
(its queries give only some required values, so its gold omits required arguments). Negatives
(no call fits: `calls=()`) come from `ir_ST_{Perfect,External,Imperfect}.json`, the same rows with
the gold tool removed from `multiple_tools` (its call is still in `messages`; an ir row whose
candidates still hold it is dropped).

Quirks handled:
- tool names are dotted (`Navigation.TrafficViolations.queryViolation`), so the call name is
  `Navigation_TrafficViolations_queryViolation` with the dotted name kept as `api_name`;
- `ST_External` queries carry the text they refer to inline (`EK:<message>\\nquery:<query>`);
  the user message is kept whole, as the query cannot be answered without it.

`api` is ``hammerbench/<category.app>`` of the gold tool (its name without the last part,
`Navigation.TrafficViolations`), for positives and negatives alike, so splits never share an app.
"""

from __future__ import annotations

import json
import warnings
from pathlib import Path

from octogram.grammars import FunctionCall, FunctionSpec, GrammarError, GrammarWarning, load
from octogram.octopus_models.data.record import DropError, Example, Imported, coerce_arguments, find_function

SOURCE = "hammerbench"
POSITIVES = ("ST_Perfect.json", "ST_External.json")
NEGATIVES = ("ir_ST_Perfect.json", "ir_ST_External.json", "ir_ST_Imperfect.json")


def _spec(tool: dict) -> FunctionSpec:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", GrammarWarning)
        (spec,) = load([tool])
    return spec


def api_key(tool_name: str) -> str:
    """The split key of a gold tool: its category and app (`Navigation.TrafficViolations`)."""
    parts = tool_name.split(".")
    return f"{SOURCE}/{'.'.join(parts[:-1]) if len(parts) > 1 else tool_name}"


def _example(row: dict, negative: bool, origin: str) -> Example:
    messages = row.get("messages") or []
    users = [m for m in messages if m.get("role") == "user"]
    if len(users) != 1 or len(messages) != 2 or messages[-1].get("role") != "function call":
        raise DropError("not one user message and one call")
    gold = messages[-1].get("content") or {}
    if not isinstance(gold, dict) or not isinstance(gold.get("name"), str):
        raise DropError("no gold call")
    tools = row.get("multiple_tools") or []
    functions = []
    for tool in tools:
        try:
            functions.append(_spec(tool))
        except (GrammarError, ValueError, TypeError):
            if negative or tool.get("name") == gold["name"]:
                raise DropError("tool schema not loadable", str(tool.get("name"))) from None
    functions = tuple(functions)
    calls: tuple[FunctionCall, ...] = ()
    if negative:
        if any(t.get("name") == gold["name"] for t in tools):
            raise DropError("negative still offers the gold function", gold["name"])
    else:
        spec = find_function(functions, gold["name"])
        calls = (FunctionCall(spec.name, coerce_arguments(spec, gold.get("arguments") or {})),)
    meta = {"kind": "negative", "calls": 0} if negative else {"calls": 1}
    return Example(users[0].get("content", ""), functions, calls, SOURCE, api_key(gold["name"]),
                   origin, meta)


def read(root: Path) -> Imported:
    """Positives and negatives of the English single-turn files under `root` (the `hammerbench` folder)."""
    folder = Path(root) / "data" / "en" / "single-turn"
    out = Imported()
    for name in POSITIVES + NEGATIVES:
        path = folder / name
        if not path.exists():
            continue
        for i, row in enumerate(json.loads(path.read_text(encoding="utf-8"))):
            out.add(lambda: _example(row, name in NEGATIVES, f"data/en/single-turn/{name}:{i}"))
    return out
