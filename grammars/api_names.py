"""What the API calls a call: grammars and parsed calls use Python identifiers (`math_gcd`,
`X_Request_Id`); what users are handed carries the names the API documents (`math.gcd`,
`X-Request-Id`), so that a dispatcher can use them as they are.

An API-named call keys each argument by its parameter's API name. Where two parameters of one
operation share an API name (a path `id` and a query `id`, which a flat mapping cannot hold
twice), both are keyed `location:name` (`path:id`, `query:id`).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from typing import Any

from .errors import GrammarError
from .spec import NO_RELEVANT_FUNCTION, FunctionCall, FunctionSpec

__all__ = ["function_api_name", "argument_keys", "to_api", "grammar_arguments", "find_function"]


def function_api_name(spec: FunctionSpec) -> str:
    """The function's name in its API (`math.gcd`), which may not be a Python identifier."""
    return spec.api_name or spec.name


def argument_keys(spec: FunctionSpec) -> dict[str, str]:
    """Parameter name -> the key of its value in an API-named call, in declaration order."""
    names = [p.api_name or p.name for p in spec.parameters]
    shared = Counter(names)
    return {p.name: f"{p.location}:{n}" if shared[n] > 1 and p.location else n
            for p, n in zip(spec.parameters, names)}


def find_function(name: str, functions: Sequence[FunctionSpec] | FunctionSpec) -> FunctionSpec:
    """The function a call names, by its grammar name first, then by its API name."""
    if isinstance(functions, FunctionSpec):
        functions = [functions]
    offered = list(functions) + [NO_RELEVANT_FUNCTION]
    for spec in offered:
        if spec.name == name:
            return spec
    for spec in offered:
        if function_api_name(spec) == name:
            return spec
    raise GrammarError(f"unknown function {name!r} (offered: "
                       f"{', '.join(sorted(function_api_name(f) for f in offered))})", "call")


def grammar_arguments(call: FunctionCall, spec: FunctionSpec) -> dict[str, Any]:
    """The call's arguments keyed by parameter name (the grammar's identifiers), whichever of
    the two namings the call uses. The function name decides the naming where it differs
    between the two; otherwise the argument keys do, and a call whose keys read as both
    namings with different meanings is refused."""
    api_name = function_api_name(spec)
    if call.name not in (spec.name, api_name):
        raise GrammarError(f"the call names {call.name!r}, not {api_name!r}", "call")
    keys = argument_keys(spec)
    from_api = {key: name for name, key in keys.items()}
    fits_grammar = all(k in keys for k in call.arguments)
    fits_api = all(k in from_api for k in call.arguments)
    if spec.name != api_name:
        use_api = call.name == api_name
    elif fits_grammar and fits_api and any(from_api[k] != k for k in call.arguments):
        raise GrammarError("the argument names read differently as the API's names and as the "
                           "grammar's: name the function as the API does, or use parse_call's "
                           "call", call.name)
    else:
        use_api = not fits_grammar
    table = from_api if use_api else {k: k for k in keys}
    out: dict[str, Any] = {}
    for key, value in call.arguments.items():
        if key not in table:
            known = ", ".join(table) or "none"
            raise GrammarError(f"unknown argument {key!r} for {call.name} (arguments: {known})",
                               f"{call.name}.{key}")
        out[table[key]] = value
    return out


def to_api(call: FunctionCall, functions: Sequence[FunctionSpec] | FunctionSpec) -> FunctionCall:
    """The call in the API's own names: function name and argument keys as documented."""
    spec = find_function(call.name, functions)
    arguments = grammar_arguments(call, spec)
    keys = argument_keys(spec)
    return FunctionCall(function_api_name(spec), {keys[name]: value for name, value in arguments.items()})
