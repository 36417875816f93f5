"""ToolAlpaca evaluation sets (tangqiaoyu/ToolAlpaca, `data/eval_simulated.json` and
`data/eval_real.json`, Apache-2.0): 21 APIs, each with an LLM-written OpenAPI 3 document
(`Documentation`, a JSON string), `Instructions` and, aligned with them, `Golden_Answers`: a
list of steps ``{"Action": operationId, "Action_Input": "<JSON object>"}``.

One example per instruction whose gold is a single step; multi-step golds are dropped
("multi-step": later steps need earlier results). The functions are all operations of the API's
document (`octogram.grammars.load`; an operation it cannot import is skipped with a warning, a
document it cannot read drops its instructions as "tool schema not loadable"). `Action` is the
operationId, which `find_function` maps to the function's call name; documents without
operationIds (most real APIs) name actions `<path>_<method>` (``/charts/afd`` GET ->
`charts_afd_get`, braces dropped), also listed in `Function_Projection` (incompletely), which are
mapped through the function's endpoint.

Quirks handled: `Action_Input` that is not JSON (placeholders such as ``${id from search}``:
"unparsable Action_Input"); optional arguments given as ``""`` (ToolAlpaca's way to say "not
set", e.g. ``"gender": ""`` for an enum) are left out.
"""

from __future__ import annotations

import json
import re
import warnings
from pathlib import Path

from octogram.grammars import FunctionCall, load

from ..record import DropError, Example, Imported, coerce_arguments, find_function

SOURCE = "toolalpaca"
FILES = ("data/eval_simulated.json", "data/eval_real.json")


def _functions(api: dict) -> tuple:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:
            return tuple(load(json.loads(api["Documentation"])))
        except Exception as exc:
            raise DropError("tool schema not loadable", str(exc)) from exc


def _find(api: dict, functions, action: str):
    """The function `action` names: by operationId, else by ToolAlpaca's `<path>_<method>`."""
    try:
        return find_function(functions, action)
    except DropError:
        by_endpoint = {f.endpoint: f for f in functions if f.endpoint}
        projection = api.get("Function_Projection") or {}
        if isinstance(projection.get(action), list) and len(projection[action]) == 2:
            path, method = projection[action]
            if f"{str(method).upper()} {path}" in by_endpoint:
                return by_endpoint[f"{str(method).upper()} {path}"]
        for endpoint, f in by_endpoint.items():
            method, _, path = endpoint.partition(" ")
            if re.sub(r"[{}]", "", path).strip("/").replace("/", "_") + "_" + method.lower() == action:
                return f
        raise


def _example(api: dict, functions, instruction: str, gold: list, origin: str) -> Example:
    if not functions:
        raise DropError("tool schema not loadable", api.get("Name", ""))
    if not isinstance(gold, list) or not gold:
        raise DropError("no gold answer")
    if len(gold) > 1:
        raise DropError("multi-step")
    step = gold[0]
    try:
        arguments = json.loads(step.get("Action_Input") or "{}")
    except ValueError as exc:
        raise DropError("unparsable Action_Input", str(step.get("Action_Input"))[:80]) from exc
    if not isinstance(arguments, dict):
        raise DropError("unparsable Action_Input", str(arguments)[:80])
    spec = _find(api, functions, step.get("Action", ""))
    arguments = coerce_arguments(spec, arguments)
    optional = {p.name for p in spec.parameters if not p.required}
    arguments = {k: v for k, v in arguments.items() if not (v == "" and k in optional)}
    return Example(instruction, functions, (FunctionCall(spec.name, arguments),), SOURCE,
                   f"{SOURCE}/{api.get('Name', '')}", origin)


def read(root: Path) -> Imported:
    """ToolAlpaca examples from the `toolalpaca` folder."""
    out = Imported()
    for name in FILES:
        path = Path(root) / name
        if not path.exists():
            continue
        for a, api in enumerate(json.loads(path.read_text(encoding="utf-8"))):
            try:
                functions = _functions(api)
            except DropError:
                functions = ()
            golds = api.get("Golden_Answers") or []
            for i, instruction in enumerate(api.get("Instructions") or []):
                gold = golds[i] if i < len(golds) else None
                out.add(lambda api=api, f=functions, q=instruction, g=gold, o=f"{name}:{a}/{i}":
                        _example(api, f, q, g, o))
    return out
