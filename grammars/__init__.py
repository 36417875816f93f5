"""API signatures in, Lark grammar text out.

Owns the normalized `FunctionSpec` model, the importers (OpenAPI 2.0/3.x, OpenAI-style tool
JSON / JSON Schema, Python callables) and the grammar generators for the call syntaxes.

    specs = load("api.yaml")                    # or a dict, a tool list, a function, a module
    grammar = to_lark(specs, style="python")    # Lark text, start rule `start`
    calls = parse_call(model_output, specs)     # validated FunctionCall list
"""

from .calls import parse_call, sample_arguments, sample_call
from .errors import GrammarError, GrammarWarning
from .generate import COMMON_LARK_DIR, to_lark
from .loader import load
from .spec import NO_DEFAULT, NO_RELEVANT_FUNCTION, FunctionCall, FunctionSpec, Parameter

__all__ = [
    "FunctionSpec", "Parameter", "FunctionCall", "NO_RELEVANT_FUNCTION", "NO_DEFAULT",
    "load", "to_lark", "parse_call", "sample_call", "sample_arguments",
    "GrammarError", "GrammarWarning", "COMMON_LARK_DIR",
]
