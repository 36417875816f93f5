"""API signatures in, Lark grammar text out.

Owns the normalized `FunctionSpec` model, the importers (OpenAPI 2.0/3.x, OpenAI-style tool
JSON / JSON Schema, Python callables) and the grammar generators for the call syntaxes.

    specs = load("api.yaml")                    # or a dict, a tool list, a function, a module
    grammar = to_lark(specs, style="python")    # Lark text, start rule `start`
    calls = parse_call(model_output, specs)     # validated FunctionCall list
    calls[0].to_api(specs), calls[0].to_request(spec, base_url=...)   # API names, HTTP request
"""

from .calls import parse_call, sample_arguments, sample_call
from .errors import GrammarError, GrammarWarning
from .generate import COMMON_LARK_DIR, to_lark
from .loader import load
from .request import HttpRequest
from .spec import NO_DEFAULT, NO_RELEVANT_FUNCTION, FunctionCall, FunctionSpec, Parameter

__all__ = [
    "FunctionSpec", "Parameter", "FunctionCall", "NO_RELEVANT_FUNCTION", "NO_DEFAULT",
    "load", "to_lark", "parse_call", "sample_call", "sample_arguments",
    "GrammarError", "GrammarWarning", "COMMON_LARK_DIR", "HttpRequest",
]
