"""API-Bank (AlibabaResearch/DAMO-ConvAI, folder `api-bank`, Apache-2.0).

Reads `test-data/level-1-api.json`, `test-data/level-2-api.json` (rows of `instruction`,
dialogue `input`, `expected_output`) and `training-data/lv3-api-train.json` (`instruction`,
`input`, `output`; `lv3-train.json` is the same rows plus response-generation rows, so it is
not read). The gold is ``API-Request: [Name(k='v', ...)]``, parsed as a Python expression.

Tools are API-Bank's own JSON (`name`/`apiCode`, `description`, `input_parameters` or
`parameters` as ``{"arg": {"type": "str", ...}}``): level 1 lists them after "API
descriptions:" in the instruction; level 2 and level 3 offer only the `ToolSearcher` meta-tool
there and reveal each real tool as the Python-dict result of a ``ToolSearcher(...)->{...}`` step
in the dialogue. The functions of an example are the real tools its row knows; `ToolSearcher`
is never offered, and rows whose gold is a ToolSearcher call are dropped ("ToolSearcher
meta-tool").

Quirks handled: types `datetime`, `date`, `time` (read as strings) and `list(str)`;
``input_parameters: {'none'}`` (no parameters); ToolSearcher results that are a list of tools;
Python-dict tools with bare types (``'type': str``) or in-word apostrophes (``'the user's'``);
answers without the brackets, with in-word apostrophes, or with unquoted values
(``F(location=New York)``, common in lv3), which are repaired; answers still not Python (nested
quotes such as ``attendees='['John']'``) are dropped as "unparsable answer"; identical rows in a
file ("duplicate row"). API-Bank does not say which arguments are required; the loader's
default (all required) is kept, so a gold that leaves one out is dropped by `validate`.

Query: the last user utterance when it holds every string argument the gold uses (or when the
dialogue holds none of the missing ones); otherwise the dialogue so far (``User:``/``AI:`` turns
and earlier API results, ToolSearcher steps left out), since API-Bank dialogues spread the
arguments over several turns and earlier API results (tokens, ids).
"""

from __future__ import annotations

import ast
import json
import re
import warnings
from pathlib import Path
from typing import Any

from octogram.grammars import FunctionCall, FunctionSpec, load

from ..record import DropError, Example, Imported, coerce_arguments, find_function

SOURCE = "api-bank"
FILES = (("test-data/level-1-api.json", "expected_output"),
         ("test-data/level-2-api.json", "expected_output"),
         ("training-data/lv3-api-train.json", "output"))
META_TOOL = "ToolSearcher"
_TYPES = {"datetime": "str", "date": "str", "time": "str", "list(str)": "List[str]"}
_SEARCH_RESULT = re.compile(r"ToolSearcher\(.*?\)\]?->([{\[].*[}\]])\s*$")
_APOSTROPHE = re.compile(r"(?<=\w)'(?=\w)")  # user's: never a Python string delimiter
_BARE_TYPE = re.compile(r"('type': )([A-Za-z_]\w*)(?=\s*[,}])")
_MARK = "\ue000"  # a private-use character


def _literal(text: str) -> Any:
    """A Python literal, retried with bare types quoted (``'type': str``) and in-word
    apostrophes (``'the user's name'``) escaped."""
    fixed = _BARE_TYPE.sub(r"\1'\2'", text)
    for attempt in (text, fixed, _APOSTROPHE.sub(_MARK, fixed)):
        try:
            return _unmark(ast.literal_eval(attempt))
        except (ValueError, SyntaxError):
            pass
    raise ValueError("not a Python literal")


def _unmark(value: Any) -> Any:
    if isinstance(value, str):
        return value.replace(_MARK, "'")
    if isinstance(value, list):
        return [_unmark(v) for v in value]
    if isinstance(value, dict):
        return {_unmark(k): _unmark(v) for k, v in value.items()}
    return value


def _tool_dicts(row: dict) -> list[dict]:
    """API-Bank tool descriptions in the row: JSON lines, then ToolSearcher results."""
    out = []
    for line in (row.get("instruction", "") + "\n" + row.get("input", "")).splitlines():
        line = line.strip()
        if line.startswith("{"):
            try:
                out.append(json.loads(line))
            except ValueError:
                pass
        else:
            m = _SEARCH_RESULT.search(line)
            if m:
                try:
                    found = _literal(m.group(1))
                except ValueError:
                    continue
                out.extend(found if isinstance(found, list) else [found])
    return [t for t in out if isinstance(t, dict) and isinstance(t.get("name", t.get("apiCode")), str)]


def _spec(tool: dict) -> FunctionSpec:
    params = tool.get("input_parameters", tool.get("parameters")) or {}
    if not isinstance(params, dict):  # {'none'}: a Python set meaning "no parameters"
        params = {}
    params = {k: {**v, "type": _TYPES.get(v.get("type"), v.get("type", "any"))} if isinstance(v, dict) else v
              for k, v in params.items()}
    raw = {"name": tool.get("name", tool.get("apiCode")), "description": tool.get("description", ""),
           "parameters": params}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:
            return load(raw)[0]
        except Exception as exc:
            raise DropError("tool schema not loadable", str(exc)) from exc


def _calls(text: str) -> list[tuple[str, dict[str, Any]]]:
    tree = ast.parse(text, mode="eval").body
    nodes = tree.elts if isinstance(tree, ast.List) else [tree]
    calls = []
    for node in nodes:
        if not (isinstance(node, ast.Call) and isinstance(node.func, ast.Name)) or node.args:
            raise ValueError("not a call with keyword arguments")
        calls.append((node.func.id, {k.arg: _unmark(ast.literal_eval(k.value)) for k in node.keywords}))
    return calls


def _quote_bare(text: str) -> str:
    """``[F(a=New York, b=2)]`` (unquoted strings, as lv3 often writes) -> ``F(a='New York', b=2)``."""
    m = re.fullmatch(r"\[?(\w+)\((.*)\)\]?", text, re.S)
    if not m or "'" in text or '"' in text:
        return text
    args = []
    for part in re.split(r",\s*(?=\w+\s*=)", m.group(2).strip()) if m.group(2).strip() else []:
        key, _, value = part.partition("=")
        try:
            ast.literal_eval(value.strip())
        except (ValueError, SyntaxError):
            value = repr(value.strip())
        args.append(f"{key.strip()}={value.strip()}")
    return f"{m.group(1)}({', '.join(args)})"


def parse_answer(text: str) -> list[tuple[str, dict[str, Any]]]:
    """``API-Request: [A(k='v'), ...]`` -> [(name, arguments)]; DropError if not Python even
    after escaping in-word apostrophes and quoting bare values."""
    text = text.strip()
    text = text[len("API-Request:"):].strip() if text.startswith("API-Request:") else text
    for attempt in (text, _APOSTROPHE.sub(_MARK, text), _quote_bare(text)):
        try:
            calls = _calls(attempt)
        except (SyntaxError, ValueError, TypeError):
            continue
        if calls:
            return calls
    raise DropError("unparsable answer", text[:80])


def _query(row: dict, arguments: list[dict]) -> str:
    lines = [ln.strip() for ln in row["input"].splitlines()]
    lines = [ln for ln in lines if ln and not ln.startswith("{") and not ln.startswith("Generate API Request")
             and not ln.startswith(f"API-Request: [{META_TOOL}") and not ln.startswith(f"API-Request: {META_TOOL}")]
    users = [ln[len("User:"):].strip() for ln in lines if ln.startswith("User:")]
    if not users:
        raise DropError("empty query")
    last, dialogue = users[-1].lower(), "\n".join(lines)
    values = [str(v).lower() for args in arguments for v in args.values() if isinstance(v, str) and v.strip()]
    if all(v in last or v not in dialogue.lower() for v in values):
        return users[-1]
    return dialogue


def _example(row: dict, key: str, origin: str) -> Example:
    raw_calls = parse_answer(row.get(key, ""))
    if any(name == META_TOOL for name, _ in raw_calls):
        raise DropError("ToolSearcher meta-tool")
    tools, seen = [], set()
    for tool in _tool_dicts(row):
        name = tool.get("name", tool.get("apiCode"))
        if name != META_TOOL and name not in seen:
            seen.add(name)
            tools.append(tool)
    functions = tuple(_spec(t) for t in tools)
    calls = []
    for name, arguments in raw_calls:
        spec = find_function(functions, name)
        calls.append(FunctionCall(spec.name, coerce_arguments(spec, arguments)))
    return Example(_query(row, [a for _, a in raw_calls]), functions, tuple(calls), SOURCE,
                   f"{SOURCE}/{raw_calls[0][0]}", origin)


def read(root: Path) -> Imported:
    """API-Bank examples from the `api-bank` folder (the repository's `api-bank` directory, or
    the folder holding it)."""
    root = Path(root)
    if not (root / "test-data").is_dir() and (root / "api-bank" / "test-data").is_dir():
        root = root / "api-bank"
    out = Imported()
    for name, key in FILES:
        path = root / name
        if not path.exists():
            continue
        seen = set()
        for i, row in enumerate(json.loads(path.read_text(encoding="utf-8"))):
            ident = (row.get("instruction"), row.get("input"), row.get(key))
            if ident in seen:
                out.dropped["duplicate row"] += 1
                continue
            seen.add(ident)
            out.add(lambda row=row, i=i: _example(row, key, f"{name}:{i}"))
    return out
