"""The Octopus prompt format: what the model reads and what it must answer, in one place.

Fine-tuning trains on exactly these strings, so any change to them is a new
`PROMPT_FORMAT_VERSION` (a model trained on one version should be prompted with that version).

Version 1 (after the Octopus paper, arXiv 2404.01549, which offers each query five candidate
functions: the right one, three similar ones and `no_relevant_function`)::

    Below are the functions you can call. Answer the query with one call to one of them,
    written as Python.

    def get_weather(city: str):
        \"\"\"Current weather for a city.\"\"\"

    def no_relevant_function(query: str):
        \"\"\"...\"\"\"

    Query: What is the weather in Paris?
    Call:
    get_weather(city="Paris")<end token>

`render_prompt` returns everything up to and including the newline after `Call:`;
`render_target` returns the call followed by the end token (the tokenizer's EOS).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

__all__ = ["PROMPT_FORMAT_VERSION", "INSTRUCTION", "MAX_DESCRIPTION", "render_prompt",
           "render_target", "with_no_relevant_function"]

PROMPT_FORMAT_VERSION = 1

INSTRUCTION = ("Below are the functions you can call. Answer the query with one call to one of "
               "them, written as Python.")

#: The end token of Gemma tokenizers; pass `tokenizer.eos_token` for other bases.
DEFAULT_END_TOKEN = "<eos>"

#: Descriptions (of functions and of each parameter) are clipped to this many characters, so
#: that five candidates from a verbose OpenAPI document still make a short prompt.
MAX_DESCRIPTION = 300


def _no_relevant_spec() -> Any:
    from octogram.grammars import NO_RELEVANT_FUNCTION

    return NO_RELEVANT_FUNCTION


def with_no_relevant_function(functions: Sequence[Any]) -> list[Any]:
    """The candidates as offered in the prompt: `functions`, then `no_relevant_function` once."""
    fallback = _no_relevant_spec()
    return [f for f in functions if f.name != fallback.name] + [fallback]


def _stub(function: Any) -> str:
    lines = function.to_python_stub(MAX_DESCRIPTION).strip("\n").splitlines()
    return "\n".join(line.rstrip() for line in lines)


def render_prompt(query: str, functions: Sequence[Any]) -> str:
    """The prompt for `query` offering `functions` (FunctionSpecs) plus `no_relevant_function`.

    `functions` are rendered in the given order with `FunctionSpec.to_python_stub()`
    (descriptions clipped to `MAX_DESCRIPTION` characters); choosing them (retrieval,
    shuffling for training) is the caller's business.
    """
    if not isinstance(query, str) or not query.strip():
        raise ValueError("render_prompt: the query must be a non-empty string")
    stubs = "\n\n".join(_stub(f) for f in with_no_relevant_function(functions))
    return f"{INSTRUCTION}\n\n{stubs}\n\nQuery: {query.strip()}\nCall:\n"


def render_target(call_text: str, end_token: str = DEFAULT_END_TOKEN) -> str:
    """The answer the model is trained to produce: the call, then the end token."""
    call = call_text.strip()
    if not call:
        raise ValueError("render_target: the call text is empty")
    return call + end_token
