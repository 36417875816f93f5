"""Seal-Tools (github.com/fairyshine/Seal-Tools, Apache-2.0), read from its `Seal-Tools_Dataset/`.

Specs come from `tool.jsonl` (one tool a line: `api_name`, `api_description`, `field`, a map
`parameters` of `{"type": "str" | "int" | "float" | "bool", "description"}` and a separate
`required` list; some tools have an argument named `type`, so each is rewritten as a JSON
Schema object). Examples come from `dev.jsonl`, `test_in_domain.jsonl` and `test_out_domain.jsonl`
(`id`, `query`, `calling`: a list of `{api, parameters, responses}`).

Quirks handled:
- the jsonl rows name no candidates; `dataset_for_finetune/<split>.json` holds the same rows
  (by `id`) as prompts whose `api_list = [...]` (a Python literal) offers 5 candidate tools,
  so the candidates' `api_name`s are taken from there when the file is present; the gold tools are
  always offered;
- an argument written `API_call_N` is the output of an earlier call: such examples are dropped
  (the grammar has no way to say it), as are unknown tools, arguments the tool does not declare
  and gold that does not validate;
- most examples make several calls; they are kept, with `meta["calls"]`.

`api` is ``seal-tools/<field>``, the top level of the first gold tool's `field`
(`"Nursing/Community Health Nursing"` -> `Nursing`, the taxonomy of `field.jsonl`), or the tool's
name when it has none.
"""

from __future__ import annotations

import json
import re
import warnings
from pathlib import Path
from typing import Any

from octogram.grammars import FunctionCall, FunctionSpec, GrammarError, GrammarWarning, load
from octogram.octopus_models.data.record import DropError, Example, Imported, coerce_arguments, find_function

SOURCE = "seal-tools"
SPLITS = ("dev", "test_in_domain", "test_out_domain")
_API_LIST = re.compile(r"api_list = (\[.*?\])\s*\ntask_instruction", re.S)
_API_NAME = re.compile(r"""'api_name': ['"]([^'"]+)['"]""")


_TYPES = {"str": "string", "int": "integer", "float": "number", "bool": "boolean", "list": "array",
          "dict": "object"}


def _spec(tool: dict) -> FunctionSpec:
    """One tool.jsonl entry as a FunctionSpec (its `required` list marks the required arguments).
    Written as a JSON Schema object, since some tools have an argument named `type`."""
    properties = {}
    for name, p in (tool.get("parameters") or {}).items():
        kind = p.get("type", "")
        schema = {"type": _TYPES.get(kind, kind)} if kind else {}
        schema.update({k: p[k] for k in ("description", "default") if k in p})
        properties[name] = schema
    required = [r for r in tool.get("required") or () if r in properties]
    entry = {"name": tool["api_name"], "description": tool.get("api_description", ""),
             "parameters": {"type": "object", "properties": properties, "required": required}}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", GrammarWarning)
        (spec,) = load([entry])
    return spec


def _candidates(path: Path) -> dict[str, list[str]]:
    """Row id -> the candidate tool names the finetune prompt offers ({} if the file is absent)."""
    if not path.exists():
        return {}
    out = {}
    for row in json.loads(path.read_text(encoding="utf-8")):
        match = _API_LIST.search(row["conversations"][0]["value"])
        if match:  # the list is a Python literal: read only its tools' names
            out[row["id"]] = _API_NAME.findall(match.group(1))
    return out


class _Specs(dict):
    """api_name -> FunctionSpec, converted on first use; None for a tool that does not load
    (or that tool.jsonl lacks)."""

    def __init__(self, tools: dict[str, dict]) -> None:
        super().__init__()
        self.tools = tools

    def __missing__(self, name: str) -> FunctionSpec | None:
        try:
            spec = _spec(self.tools[name]) if name in self.tools else None
        except (GrammarError, ValueError, KeyError, TypeError):
            spec = None
        self[name] = spec
        return spec


def _example(row: dict, specs: _Specs, tools: dict[str, dict],
             candidates: list[str], origin: str) -> Example:
    calling = row.get("calling") or []
    if not calling:
        raise DropError("no gold calls")
    if "API_call_" in json.dumps([c.get("parameters") for c in calling]):
        raise DropError("argument refers to an earlier call's output")
    gold = []
    for call in calling:
        if call.get("api") not in tools:
            raise DropError("gold function not offered", str(call.get("api")))
        if specs[call["api"]] is None:
            raise DropError("tool schema not loadable", call["api"])
        gold.append(call["api"])
    names = list(dict.fromkeys(gold + [c for c in candidates if specs[c] is not None]))
    functions = tuple(specs[n] for n in names)
    calls = []
    for call in calling:
        spec = find_function(functions, call["api"])
        calls.append(FunctionCall(spec.name, coerce_arguments(spec, call.get("parameters") or {})))
    field = (tools[gold[0]].get("field") or "").split("/")[0].strip()
    return Example(row.get("query", ""), functions, tuple(calls), SOURCE,
                   f"{SOURCE}/{field or gold[0]}", origin, {"calls": len(calls)})


def read(root: Path) -> Imported:
    """All examples of the three splits under `root` (the `seal-tools` folder)."""
    data = Path(root) / "Seal-Tools_Dataset"
    tools: dict[str, dict] = {}
    for line in (data / "tool.jsonl").read_text(encoding="utf-8").splitlines():
        if line.strip():
            tool = json.loads(line)
            tools[tool["api_name"]] = tool
    specs = _Specs(tools)
    out = Imported()
    for split in SPLITS:
        path = data / f"{split}.jsonl"
        if not path.exists():
            continue
        offered = _candidates(data / "dataset_for_finetune" / f"{split}.json")
        for i, line in enumerate(path.read_text(encoding="utf-8").splitlines()):
            if not line.strip():
                continue
            row: Any = json.loads(line)
            out.add(lambda: _example(row, specs, tools, offered.get(row.get("id"), []),
                                     f"Seal-Tools_Dataset/{split}.jsonl:{i}"))
    return out
