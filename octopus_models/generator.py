"""`OctopusGenerator`: queries and API functions in, parsed calls out.

It turns each query and its API functions into the offered candidates (`retrieval`), a prompt
(`prompt.render_prompt`) and a grammar (`grammars.to_lark` of the candidates, compiled once per
candidate set), decodes them in batches with `decode` on a model runner (transformers or
llama.cpp; `backends.load_runner` picks one), and parses each output with
`grammars.parse_call`, which checks it against the FunctionSpecs.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from .decode import Runner, decode
from .prompt import render_prompt, with_no_relevant_function
from .retrieval import select_candidates

__all__ = ["CallResult", "OctopusGenerator"]


@dataclass
class CallResult:
    """A query's answer: the raw text (the grammar's identifiers), and the parsed call(s) in the
    API's own names (`math.gcd`, `X-Request-Id`) or the reason parsing failed."""

    query: str
    text: str
    calls: list[Any]  # octogram.grammars.FunctionCall in the API's names, empty when `error` is set
    error: str | None
    candidates: list[Any] = field(repr=False, default_factory=list)  # offered FunctionSpecs
    stop_reason: str = "end"
    num_tokens: int = 0
    forced_tokens: int = 0
    # the same calls as `parse_call` read them, in the grammar's identifiers (`math_gcd`)
    grammar_calls: list[Any] = field(repr=False, default_factory=list)

    @property
    def call_text(self) -> str:
        """The call(s) as text in the API's names (the model's text when it is not a call)."""
        if self.error is not None or not self.calls:
            return self.text.strip()
        texts = [c.to_text() for c in self.calls]
        return texts[0] if len(texts) == 1 else "[" + ", ".join(texts) + "]"



class OctopusGenerator:
    """Queries + API functions in, parsed calls out, with a compiled grammar per candidate set.

    `mask=False` decodes without constraints (parse errors are then reported in
    `CallResult.error`, not raised). `num_candidates` is how many functions a query is offered
    (besides `no_relevant_function`) when a document holds more (see `retrieval`). `parallel`
    allows a list of calls `[f(...), g(...)]`; `engine` is passed to `decode`. With
    `close_at_limit` (the default; host engine), a masked answer that would run past
    `max_new_tokens` is closed with the grammar's shortest completion, so it is still a call
    (`CallResult.stop_reason` "closed").
    """

    def __init__(self, model: Any, tokenizer: Any, *, mask: bool = True,
                 jump_forward: bool = True, num_candidates: int = 4, parallel: bool = False,
                 max_depth: int = 3, engine: str = "auto", close_at_limit: bool = True) -> None:
        self._runner = model if isinstance(model, Runner) else None
        self.model = getattr(model, "model", None) if isinstance(model, Runner) else model
        self.tokenizer = tokenizer
        self.close_at_limit = close_at_limit
        self.mask, self.jump_forward, self.engine = mask, jump_forward, engine
        self.num_candidates, self.parallel, self.max_depth = num_candidates, parallel, max_depth
        self._vocabulary = None
        self._fsms: dict[tuple[str, bool], Any] = {}
        self.compile_seconds = 0.0

    @property
    def runner(self) -> Runner:
        """The model runner (a transformers model is wrapped on first use, not before: inputs
        are checked first)."""
        if self._runner is None:
            from .transformers_runner import TransformersRunner

            self._runner = TransformersRunner(self.model, self.tokenizer)
        return self._runner

    @property
    def vocabulary(self) -> Any:
        if self._vocabulary is None:
            from octogram.masking import Vocabulary

            self._vocabulary = Vocabulary.from_tokenizer(
                self.tokenizer, self.runner.logits_width,
                eos_token_ids=self.runner.eos_token_ids)
        return self._vocabulary

    def grammar_text(self, candidates: Sequence[Any]) -> str:
        """The Lark grammar of a call to one of `candidates` (or `no_relevant_function`)."""
        from octogram.grammars import to_lark

        return to_lark(list(candidates), "python", max_depth=self.max_depth,
                       parallel=self.parallel, include_no_relevant=True)

    def fsm(self, candidates: Sequence[Any]) -> Any:
        """The compiled token FSM for `candidates`, memoized by grammar text.

        For the host engine a grammar not in the on-disk cache is compiled lazily: its first
        mask is ready in milliseconds and only the states a decode visits are crossed with the
        vocabulary (a full compile of a large API's grammar can take minutes). The device
        engine needs every state's tables on the device, so it compiles (and caches) in full.
        """
        from octogram.masking import compile_grammar

        text = self.grammar_text(candidates)
        lazy = self._engine() == "host"
        if (text, lazy) not in self._fsms:
            start = time.perf_counter()
            self._fsms[text, lazy] = compile_grammar(text, self.vocabulary, lazy=lazy)
            self.compile_seconds += time.perf_counter() - start
        return self._fsms[text, lazy]

    def _engine(self) -> str:
        if self.engine != "auto":
            return self.engine
        cuda = self.runner.device.type == "cuda" and hasattr(self.runner, "append_chunk")
        return "device" if cuda else "host"

    def candidates(self, query: str, functions: Sequence[Any]) -> list[Any]:
        return select_candidates(query, functions, self.num_candidates)

    def prompt(self, query: str, functions: Sequence[Any]) -> str:
        return render_prompt(query, self.candidates(query, functions))

    def call(self, query: str, functions: Sequence[Any] | str | os.PathLike[str],
             **options: Any) -> CallResult:
        """Answer one query with a call to one of `functions` (see `call_batch` for options).

        `functions` is a sequence of FunctionSpecs (`octogram.grammars.load`), one FunctionSpec,
        or the path of an API file (str or path-like), which is read with `octogram.grammars.load` as
        `octogram call --apis` reads it (a bad file is a GrammarError). Anything else is a
        TypeError.
        """
        return self.call_batch([(query, functions)], **options)[0]

    def call_batch(self, requests: Sequence[tuple[str, Sequence[Any]]], *, batch_size: int = 8,
                   max_new_tokens: int = 128, temperature: float = 0.0, top_k: int = 0,
                   top_p: float = 1.0, seed: int | None = None,
                   on_step: Callable[[int], None] | None = None) -> list[CallResult]:
        """Answer (query, functions) pairs, `batch_size` rows at a time, in order; `functions`
        as in `call` (each API file is read once)."""
        from octogram.grammars import parse_call

        if batch_size < 1:
            raise ValueError(f"call_batch: batch_size must be >= 1, got {batch_size}")
        requests = _as_requests(requests)
        results: list[CallResult] = []
        for start in range(0, len(requests), batch_size):
            part = requests[start:start + batch_size]
            offered = [self.candidates(q, fns) for q, fns in part]
            prompts = [render_prompt(q, c) for (q, _), c in zip(part, offered)]
            grammars = [self.fsm(c) if self.mask else None for c in offered]
            decoded = decode(self.runner, self.tokenizer, prompts, grammars,
                             max_new_tokens=max_new_tokens, temperature=temperature, top_k=top_k,
                             top_p=top_p, seed=None if seed is None else seed + start,
                             jump_forward=self.jump_forward, engine=self.engine,
                             close_at_limit=self.close_at_limit and self.mask
                             and self._engine() == "host", on_step=on_step)
            for (query, _), cands, d in zip(part, offered, decoded):
                calls, api_calls, error = [], [], None
                try:
                    offered_all = with_no_relevant_function(cands)
                    calls = parse_call(d.text.strip(), offered_all, "python")
                    api_calls = [c.to_api(offered_all) for c in calls]
                except Exception as exc:  # a parse or validation failure is a result, not a crash
                    calls, api_calls = [], []
                    error = f"{type(exc).__name__}: {exc}"
                    if d.stop_reason == "length":
                        error = (f"stopped after max_new_tokens={max_new_tokens} before the call "
                                 f"ended ({error})")
                results.append(CallResult(query, d.text, api_calls, error, cands, d.stop_reason,
                                          len(d.token_ids), d.forced_tokens, calls))
        return results


def _as_requests(requests: Any) -> list[tuple[str, list[Any]]]:
    """(query, FunctionSpecs) pairs, API file paths read (each once); TypeError naming what is
    expected for anything else (a str would otherwise be taken as a sequence of characters)."""
    from octogram.grammars import FunctionSpec, load

    if isinstance(requests, (str, bytes)) or not isinstance(requests, Sequence):
        raise TypeError("call_batch: requests must be a sequence of (query, functions) pairs, "
                        f"got {type(requests).__name__}")
    loaded: dict[str, list[Any]] = {}
    out = []
    for i, request in enumerate(requests):
        if not isinstance(request, (tuple, list)) or len(request) != 2:
            raise TypeError(f"call_batch: request {i} must be a (query, functions) pair, got "
                            f"{type(request).__name__}")
        query, functions = request
        if isinstance(functions, (str, os.PathLike)):
            key = os.fspath(functions)
            if key not in loaded:
                loaded[key] = load(functions)
            functions = loaded[key]
        elif isinstance(functions, FunctionSpec):
            functions = [functions]
        elif (isinstance(functions, bytes) or not isinstance(functions, Sequence)
              or not all(isinstance(f, FunctionSpec) for f in functions)):
            got = (type(functions).__name__
                   if isinstance(functions, bytes) or not isinstance(functions, Sequence) else
                   "a sequence holding " + ", ".join(sorted({type(f).__name__ for f in functions})))
            raise TypeError(f"call_batch: the functions of request {i} must be FunctionSpecs "
                            "(octogram.grammars.load reads them) or the path of an API file, "
                            f"got {got}")
        out.append((query, list(functions)))
    return out
