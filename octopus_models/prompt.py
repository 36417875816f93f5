"""The Octopus prompt format: what the model reads and what it must answer, in one place.

Fine-tuning trains on exactly these strings, so any change to them is a new
`PROMPT_FORMAT_VERSION` (a model trained on one version should be prompted with that version).

Version 2 (after the Octopus paper, arXiv 2404.01549, which offers each query five candidate
functions: the right one, three similar ones and `no_relevant_function`). Each candidate is its
signature and a compact docstring: the first sentence of its description (at most
`MAX_DESCRIPTION` characters) and one line per described required parameter (at most
`MAX_PARAMETER_DESCRIPTION`; optional ones are in the signature only: real API documents carry
many optional technical parameters, such as access tokens and paging, whose descriptions made up
most of a prompt). Version 1 printed whole descriptions and an ``Args:`` section;
its prompts were twice as long (a median 440-710 tokens on the training sources against
200-330), which on a CPU halves the fine-tuning rate::

    Answer the query with one call to one of these functions, written as Python.

    def get_weather(city: str):
        \"\"\"Current weather for a city.
        city: City name.\"\"\"

    def no_relevant_function(query: str):
        \"\"\"...\"\"\"

    Query: What is the weather in Paris?
    Call:
    get_weather(city="Paris")<end token>

`render_prompt` returns everything up to and including the newline after `Call:`;
`render_target` returns the call followed by the end token (the tokenizer's EOS).
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import Any

__all__ = ["PROMPT_FORMAT_VERSION", "INSTRUCTION", "MAX_DESCRIPTION", "render_prompt",
           "render_target", "with_no_relevant_function", "text_problem", "functions_text_problem"]

PROMPT_FORMAT_VERSION = 2

INSTRUCTION = "Answer the query with one call to one of these functions, written as Python."

#: The end token of Gemma tokenizers; pass `tokenizer.eos_token` for other bases.
DEFAULT_END_TOKEN = "<eos>"

#: A function's description is its first sentence, clipped to this many characters, and each
#: parameter's to `MAX_PARAMETER_DESCRIPTION`, so that five candidates from a verbose OpenAPI
#: document still make a short prompt.
MAX_DESCRIPTION = 120
MAX_PARAMETER_DESCRIPTION = 60
_SENTENCE = re.compile(r"(.+?[.!?])(?=\s+[A-Z(]|$)")


def _no_relevant_spec() -> Any:
    from octogram.grammars import NO_RELEVANT_FUNCTION

    return NO_RELEVANT_FUNCTION


def with_no_relevant_function(functions: Sequence[Any]) -> list[Any]:
    """The candidates as offered in the prompt: `functions`, then `no_relevant_function` once."""
    fallback = _no_relevant_spec()
    return [f for f in functions if f.name != fallback.name] + [fallback]


def _brief(text: str, limit: int) -> str:
    """The first sentence of `text` (whitespace collapsed), clipped to `limit` characters."""
    text = " ".join((text or "").split())
    found = _SENTENCE.match(text)
    if found:
        text = found.group(1)
    if len(text) > limit:
        text = text[: limit - 3].rstrip() + "..."
    return text


def _stub(function: Any) -> str:
    signature = function.to_python_stub().split("\n", 1)[0]
    body = [_brief(function.description, MAX_DESCRIPTION)]
    body += [f"{p.name}: {_brief(p.description, MAX_PARAMETER_DESCRIPTION)}"
             for p in function.parameters if p.required and p.description.strip()]
    text = "\n    ".join(b for b in body if b).replace("\\", "\\\\").replace('"""', '\\"\\"\\"')
    return f'{signature}\n    """{text}"""' if text else f"{signature}\n    ..."


def text_problem(value: Any, _depth: int = 0) -> str | None:
    """Why `value` (a string, or strings inside lists and mappings, keys too) cannot be encoded
    as UTF-8, or None. A JSON escape such as "\\ud800" or a command-line argument in bytes that
    are not UTF-8 gives Python a lone surrogate, which a tokenizer refuses with a TypeError."""
    if isinstance(value, str):
        try:
            value.encode("utf-8")
        except UnicodeEncodeError as exc:
            return (f"is not valid UTF-8 text (character {exc.start + 1} is "
                    f"{value[exc.start]!r}, a lone surrogate)")
        return None
    if _depth > 200:  # documents are checked for depth when read; this only bounds the walk
        return None
    if isinstance(value, dict):
        items = [x for pair in value.items() for x in pair]
    elif isinstance(value, (list, tuple)):
        items = list(value)
    else:
        return None
    for item in items:
        problem = text_problem(item, _depth + 1)
        if problem is not None:
            return problem
    return None


def functions_text_problem(functions: Sequence[Any]) -> str | None:
    """The first text of `functions` (FunctionSpecs: names, descriptions, schemas, defaults)
    that is not valid UTF-8, named by function, parameter and field, or None."""
    for f in functions:
        shown = f.api_name or f.name
        for field in ("description", "api_name", "endpoint"):
            problem = text_problem(getattr(f, field, None))
            if problem is not None:
                return f"function {shown}: its {field} {problem}"
        for p in f.parameters:
            for field in ("description", "api_name", "schema", "default"):
                problem = text_problem(getattr(p, field, None))
                if problem is not None:
                    where = f" ({p.source})" if p.source else ""
                    return f"function {shown}, parameter {p.api_name or p.name}{where}: its " \
                           f"{field} {problem}"
        problem = text_problem(dict(f.defs))
        if problem is not None:
            return f"function {shown}: a schema it refers to {problem}"
    return None


def render_prompt(query: str, functions: Sequence[Any]) -> str:
    """The prompt for `query` offering `functions` (FunctionSpecs) plus `no_relevant_function`.

    `functions` are rendered in the given order as compact stubs (see the module docstring);
    choosing them (retrieval, shuffling for training) is the caller's business.
    """
    if not isinstance(query, str) or not query.strip():
        raise ValueError("render_prompt: the query must be a non-empty string")
    problem = text_problem(query)
    if problem is not None:
        raise ValueError(f"render_prompt: the query {problem}")
    problem = functions_text_problem(functions)
    if problem is not None:
        raise ValueError(f"render_prompt: {problem}")
    stubs = "\n\n".join(_stub(f) for f in with_no_relevant_function(functions))
    return f"{INSTRUCTION}\n\n{stubs}\n\nQuery: {query.strip()}\nCall:\n"


def render_target(call_text: str, end_token: str = DEFAULT_END_TOKEN) -> str:
    """The answer the model is trained to produce: the call, then the end token."""
    call = call_text.strip()
    if not call:
        raise ValueError("render_target: the call text is empty")
    return call + end_token
