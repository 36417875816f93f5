"""CallNavi (github.com/Etamin/CallNavi, MIT), read from its `Dataset/`.

`Questions/<domain>.json` is a list of `{id, question: [{"role": "user", "content"}],
ground_truth: {API: [names], parameters: [one argument object per name]}, difficulty}`;
`APISchema/<domain>.json` lists the domain's APIs as `{name, description, parameters: JSON
Schema, returnParameter}`. Every example offers all APIs of its domain (the candidate pool) and
`api` is ``callnavi/<domain>``.

Quirks handled:
- `APISchema/telecommunications.json` describes every API's parameters as `{"type": "array"}`
  (a schema inferred from a list of names); such APIs are rebuilt from `Dataset/APIs/<domain>.json`
  (`{"api_ports": [{name, parameters: [argument names]}]}`) as required string arguments, which
  is what the other domains' generated schemas hold;
- `"$$$"` in a gold value is the benchmark's wildcard (any value is accepted: a date to be
  reformatted, a name, an earlier call's output); it is no usable label, so the example is dropped;
- gold arguments the schema does not declare (the labels often use another API's parameter
  names), API names that differ from the schema in case only (`updatepassengerName`), API and
  parameter lists of different lengths;
- several calls per question are kept, with `meta["calls"]`.
"""

from __future__ import annotations

import json
import warnings
from pathlib import Path

from octogram.grammars import FunctionCall, FunctionSpec, GrammarError, GrammarWarning, load
from octogram.octopus_models.data.record import DropError, Example, Imported, coerce_arguments, find_function

SOURCE = "callnavi"
WILDCARD = "$$$"


def _repair(schema: list, ports: list) -> list:
    """APIs whose `parameters` is not an object schema get one built from the `Dataset/APIs`
    list of their argument names: strings, all required, as the generated schemas have them."""
    names = {p.get("name"): p.get("parameters") for p in ports if isinstance(p, dict)}
    out = []
    for api in schema:
        params = api.get("parameters") if isinstance(api, dict) else None
        listed = names.get(api.get("name")) if isinstance(api, dict) else None
        if (isinstance(params, dict) and params.get("type") == "array" and isinstance(listed, list)
                and all(isinstance(n, str) for n in listed)):
            api = {**api, "parameters": {"type": "object", "required": listed,
                                         "properties": {n: {"type": "string"} for n in listed}}}
        out.append(api)
    return out


def _specs(schema: list) -> tuple[list[FunctionSpec], list[str]]:
    """The domain's APIs that load, and the names of those that do not."""
    specs, broken = [], []
    for api in schema:
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", GrammarWarning)
                specs.extend(load([api]))
        except (GrammarError, ValueError, TypeError):
            broken.append(str(api.get("name")) if isinstance(api, dict) else "")
    return specs, broken


def _example(row: dict, functions: tuple[FunctionSpec, ...], broken: list[str], domain: str,
             origin: str) -> Example:
    messages = row.get("question") or []
    if len(messages) != 1 or messages[0].get("role") != "user":
        raise DropError("not a single user message")
    truth = row.get("ground_truth") or {}
    names, arguments = truth.get("API") or [], truth.get("parameters") or []
    if not names:
        raise DropError("no gold calls")
    if len(names) != len(arguments):
        raise DropError("gold API and parameter lists differ in length")
    calls = []
    for name, args in zip(names, arguments):
        if name in broken:
            raise DropError("tool schema not loadable", name)
        spec = find_function(functions, name)
        if not isinstance(args, dict):
            raise DropError("gold arguments not an object")
        calls.append(FunctionCall(spec.name, coerce_arguments(spec, args)))
    if WILDCARD in json.dumps(arguments):
        raise DropError("wildcard value ($$$) in gold")
    return Example(messages[0].get("content", ""), functions, tuple(calls), SOURCE,
                   f"{SOURCE}/{domain}", origin, {"calls": len(calls), "difficulty": row.get("difficulty")})


def read(root: Path) -> Imported:
    """All questions of all domains under `root` (the `callnavi` folder)."""
    data = Path(root) / "Dataset"
    out = Imported()
    for path in sorted((data / "Questions").glob("*.json")):
        domain = path.stem
        schema_path = data / "APISchema" / path.name
        rows = json.loads(path.read_text(encoding="utf-8"))
        if not schema_path.exists():
            out.dropped["no API schema for the domain"] += len(rows)
            continue
        schema = json.loads(schema_path.read_text(encoding="utf-8"))
        ports_path = data / "APIs" / path.name
        if ports_path.exists():
            ports = json.loads(ports_path.read_text(encoding="utf-8"))
            schema = _repair(schema, ports.get("api_ports", []) if isinstance(ports, dict) else ports)
        specs, broken = _specs(schema)
        functions = tuple(specs)
        for i, row in enumerate(rows):
            out.add(lambda: _example(row, functions, broken, domain, f"Dataset/Questions/{path.name}:{i}"))
    return out
