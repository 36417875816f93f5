"""Batched decoding where every row has its own grammar (or none), and calls parsed from it.

`decode` is the engine: left-padded prompts, one KV cache, greedy or seeded sampling, one
`Matcher` per constrained row whose bitmask is applied to that row's logits (through
`octogram.kernels`), each row stopping when its matcher is finished (EOS taken in an accepting
state) or after `max_new_tokens`. Finished rows leave the batch (and the KV cache).

Jump-forward rule: after a row takes a token, the tokens in `Matcher.forced_tokens()` are
appended without asking the model. That list holds a token only where it is the *single* token
the grammar allows (it stops before any choice, including the choice to end), so the masked
distribution puts all its mass on that token: greedy decoding would take it too, so greedy
output is the same token for token, and sampling draws from the same distribution (a given seed
gives another sample, since forced steps draw no random numbers). Forced tokens are still fed to
the model (to fill the KV cache), but all of them in one forward pass. We never force a byte string the grammar
forces but the vocabulary spells in several ways (`get_weather(` as `get`+`_weather`+`(` or
`get_`+`weather(`...): the model may prefer a different spelling, and choosing one for it would
change its output.

On CUDA, when every row has a grammar, a second loop keeps all rows' FSM states on the device
(`kernels.DeviceFSM.step` masks, samples and advances with no host round trip; the end of the
batch is checked every 4 steps); it has no jump-forward and keeps finished rows in the batch.
`decode(engine="device")` runs it anywhere (on CPU through the kernels' torch reference).

`OctopusGenerator` turns queries and API functions into prompts (`prompt.render_prompt`),
grammars (`grammars.to_lark` of the offered candidates, compiled once per candidate set), and
parses each output with `grammars.parse_call`, which checks it against the FunctionSpecs.
"""

from __future__ import annotations

import inspect
import os
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import torch

from ..common.layouts import bitmask_words
from .prompt import render_prompt, with_no_relevant_function
from .retrieval import select_candidates

__all__ = ["Decoded", "CallResult", "decode", "OctopusGenerator", "logits_width",
           "eos_token_ids"]


@dataclass
class Decoded:
    """One row's output: generated ids (the final EOS left out), their text, why it stopped."""

    token_ids: list[int]
    text: str
    # "end" (EOS; for a constrained row, in an accepting state), "length", or "closed" (the
    # grammar's shortest completion was appended to fit max_new_tokens: `decode(close_at_limit)`)
    stop_reason: str
    forced_tokens: int = 0  # how many of token_ids came from jump-forward


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


def logits_width(model: Any) -> int:
    """The width of the model's logits (may exceed the tokenizer's vocabulary)."""
    head = model.get_output_embeddings()
    if head is not None and getattr(head, "weight", None) is not None:
        return int(head.weight.shape[0])
    return int(model.config.get_text_config().vocab_size)


def eos_token_ids(model: Any, tokenizer: Any) -> list[int]:
    """EOS ids from the generation config and the tokenizer, generation config first."""
    ids: list[int] = []
    configured = getattr(getattr(model, "generation_config", None), "eos_token_id", None)
    for value in (configured, tokenizer.eos_token_id):
        for i in ([value] if isinstance(value, int) else list(value or [])):
            if i not in ids:
                ids.append(int(i))
    if not ids:
        raise ValueError("the model and tokenizer name no EOS token")
    return ids


def _encode(tokenizer: Any, prompts: Sequence[str | Sequence[int]], pad_id: int
            ) -> tuple[torch.Tensor, torch.Tensor]:
    rows = [tokenizer(p).input_ids if isinstance(p, str) else list(p) for p in prompts]
    if any(len(r) == 0 for r in rows):
        raise ValueError("decode: empty prompt")
    width = max(map(len, rows))
    ids = torch.full((len(rows), width), pad_id, dtype=torch.long)
    mask = torch.zeros((len(rows), width), dtype=torch.long)
    for i, r in enumerate(rows):  # left padding: every row's last token is in the last column
        ids[i, width - len(r):] = torch.tensor(r)
        mask[i, width - len(r):] = 1
    return ids, mask


class _Sampler:
    """Greedy (`temperature == 0`) or seeded sampling, always through the kernels' sampler."""

    def __init__(self, temperature: float, top_k: int, top_p: float, seed: int | None,
                 device: torch.device):
        if temperature < 0:
            raise ValueError(f"temperature must be >= 0, got {temperature}")
        if top_k < 0:
            raise ValueError(f"top_k must be >= 0, got {top_k}")
        if not 0 < top_p <= 1:
            raise ValueError(f"top_p must be in (0, 1], got {top_p}")
        self.options = {"temperature": float(temperature), "top_k": int(top_k),
                        "top_p": float(top_p)}
        # A private generator, so that decoding never draws from torch's global one.
        self.generator = torch.Generator(device=device)
        self.generator.manual_seed(0 if seed is None and temperature == 0 else
                                   seed if seed is not None else torch.seed())

    def __call__(self, logits: torch.Tensor, bitmask: torch.Tensor | None) -> torch.Tensor:
        if bitmask is None:
            if self.options["temperature"] == 0:  # nothing to mask, nothing to draw
                from octogram.kernels.sampling import argmax_rows

                return argmax_rows(logits)
            bitmask = torch.full((logits.shape[0], bitmask_words(logits.shape[1])), -1,
                                 dtype=torch.int32, device=logits.device)
        from octogram.kernels import sample_constrained

        return sample_constrained(logits, bitmask, generator=self.generator, **self.options)


def cache_keyword(model: Any) -> str:
    """The keyword by which `model`'s forward takes the KV cache: `cache` (transformers 5.x;
    `past_key_values` is deprecated there, with a FutureWarning) or `past_key_values` (4.x).

    Read from the forward's signature, through wrappers that take `**kwargs` only (a PEFT
    model, whose `get_base_model()` has the real forward); `past_key_values` when none says.
    """
    seen: set[int] = set()
    while model is not None and id(model) not in seen:
        seen.add(id(model))
        try:
            params = inspect.signature(model.forward).parameters
        except (AttributeError, TypeError, ValueError):
            params = {}
        for name in ("cache", "past_key_values"):
            if name in params and params[name].kind in (inspect.Parameter.POSITIONAL_OR_KEYWORD,
                                                       inspect.Parameter.KEYWORD_ONLY):
                return name
        base = getattr(model, "get_base_model", None)
        model = base() if callable(base) else None
    return "past_key_values"


class _Batch:
    """The model side of decoding: left-padded prefill, then chunks appended to one KV cache."""

    def __init__(self, model: Any, tokenizer: Any, prompts: Sequence[str | Sequence[int]],
                 pad_id: int):
        from transformers import DynamicCache

        self.model, self.pad_id = model, pad_id
        self.device = next(model.parameters()).device
        ids, attn = _encode(tokenizer, prompts, pad_id)
        self.attn = attn.to(self.device)
        positions = (self.attn.cumsum(-1) - 1).clamp(min=0)
        self.cache = DynamicCache(config=model.config)
        self.cache_keyword = cache_keyword(model)
        self.logits = self._forward(ids.to(self.device), positions)
        self.next_pos = positions[:, -1] + 1

    def _forward(self, ids: torch.Tensor, positions: torch.Tensor) -> torch.Tensor:
        out = self.model(input_ids=ids, attention_mask=self.attn, position_ids=positions,
                         use_cache=True, logits_to_keep=1, **{self.cache_keyword: self.cache})
        return out.logits[:, -1].float()

    def keep(self, rows: list[int]) -> None:
        """Drop every batch row not in `rows` (finished ones) from the batch and the cache."""
        index = torch.tensor(rows, device=self.device)
        self.cache.batch_select_indices(index)
        self.attn, self.next_pos = self.attn[index], self.next_pos[index]

    def append(self, chunk: torch.Tensor, chunk_mask: torch.Tensor) -> None:
        """Feed (B, L) tokens right-aligned per row, padding masked; logits of the last column."""
        positions = (self.next_pos[:, None] + chunk_mask.cumsum(-1) - 1).clamp(min=0)
        self.attn = torch.cat([self.attn, chunk_mask], dim=1)
        self.next_pos = self.next_pos + chunk_mask.sum(-1)
        self.logits = self._forward(chunk, positions)


def _check(model: Any, prompts: Sequence[Any], grammars: Sequence[Any | None],
           max_new_tokens: int) -> None:
    if len(grammars) != len(prompts):
        raise ValueError(f"decode: {len(prompts)} prompts but {len(grammars)} grammars")
    if max_new_tokens < 1:
        raise ValueError(f"decode: max_new_tokens must be >= 1, got {max_new_tokens}")
    width = logits_width(model)
    for i, g in enumerate(grammars):
        if g is not None and g.vocab_size != width:
            raise ValueError(f"decode: grammar {i} was compiled for {g.vocab_size} tokens but the "
                             f"model's logits have {width}")


@torch.inference_mode()
def decode(model: Any, tokenizer: Any, prompts: Sequence[str | Sequence[int]],
           grammars: Sequence[Any | None] | None = None, *, max_new_tokens: int = 128,
           temperature: float = 0.0, top_k: int = 0, top_p: float = 1.0,
           seed: int | None = None, jump_forward: bool = True, engine: str = "auto",
           close_at_limit: bool = False,
           on_step: Callable[[int], None] | None = None) -> list[Decoded]:
    """Decode a batch of prompts (text, or token ids); row i follows `grammars[i]` if not None.

    `grammars[i]` is a `TokenFSM` compiled for this tokenizer at the model's logits width.
    `temperature=0` is greedy; otherwise sampling (top-k/top-p) seeded by `seed` (a seed
    reproduces a run with the same prompts, batch composition and options).
    `engine`: "host" keeps one `Matcher` per row on the CPU (jump-forward, finished rows leave
    the batch); "device" keeps every row's FSM state on the model's device (`DeviceFSM.step`:
    mask, sample and advance without a host round trip; checks for the end every 4 steps; no
    jump-forward; every row needs a grammar); "auto" is "device" on CUDA when every row has a
    grammar, else "host". `on_step(n)` is called with the number of tokens the rows took.
    `close_at_limit` (host engine): a constrained row whose next token (with its forced tokens)
    would leave too few of the `max_new_tokens` to finish the grammar gets the grammar's
    shortest completion instead (`masking.shortest_completion`; stop_reason "closed"), so its
    output is complete whenever the start state's completion fits; rows that finish in time on
    their own are unchanged.

    An empty batch (`prompts == []`) is answered with an empty list, after the options are
    checked, as `call_batch([])` is: a batch built by filtering may well be empty.
    """
    grammars = [None] * len(prompts) if grammars is None else list(grammars)
    _check(model, prompts, grammars, max_new_tokens)
    if engine == "auto":
        on_cuda = next(model.parameters()).device.type == "cuda"
        engine = "device" if on_cuda and all(g is not None for g in grammars) else "host"
    if engine not in ("host", "device"):
        raise ValueError(f"decode: engine must be 'auto', 'host' or 'device', got {engine!r}")
    if engine == "device" and any(g is None for g in grammars):
        raise ValueError("decode: the device engine needs a grammar for every row")
    if engine == "device" and close_at_limit:
        raise ValueError("decode: close_at_limit needs the host engine (the device loop does not "
                         "stop to look at each row's state)")
    if not prompts:
        return []
    eos = eos_token_ids(model, tokenizer)
    pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else eos[0]
    batch = _Batch(model, tokenizer, prompts, pad_id)
    sampler = _Sampler(temperature, top_k, top_p, seed, batch.device)
    if engine == "device":
        out = _decode_device(batch, grammars, sampler, set(eos), max_new_tokens, jump_forward,
                             on_step)
    else:
        out = _decode_host(batch, grammars, sampler, set(eos), max_new_tokens, jump_forward,
                           on_step, close_at_limit)
    for o in out:
        o.text = tokenizer.decode(o.token_ids, skip_special_tokens=False)
    return out


def _decode_host(batch: _Batch, grammars: list[Any | None], sampler: _Sampler, eos: set[int],
                 max_new_tokens: int, jump_forward: bool,
                 on_step: Callable[[int], None] | None, close_at_limit: bool) -> list[Decoded]:
    matchers = [g.matcher() if g is not None else None for g in grammars]
    out = [Decoded([], "", "length") for _ in grammars]
    rows = list(range(len(grammars)))  # batch row -> request index, for the rows still decoding
    words = bitmask_words(batch.logits.shape[-1])
    while True:
        bitmask = None
        if any(matchers[i] is not None for i in rows):
            bitmask = torch.full((len(rows), words), -1, dtype=torch.int32)
            for r, i in enumerate(rows):
                if matchers[i] is not None:
                    matchers[i].fill_bitmask(bitmask[r])
            bitmask = bitmask.to(batch.device)
        chosen = sampler(batch.logits, bitmask).tolist()

        pending: list[list[int]] = []
        produced = 0
        for r, i in enumerate(rows):
            token, m, o = int(chosen[r]), matchers[i], out[i]
            if m is not None and not m.advance(token):
                raise RuntimeError(f"decode: row {i} got token {token}, which its grammar "
                                   "forbids; the mask was not applied")
            new, forced = [token], []
            if m is not None and jump_forward and not m.is_finished():
                forced = m.forced_tokens()[: max_new_tokens - len(o.token_ids) - 1]
                m.consume(forced)
                new += forced
            closed = False
            if close_at_limit and m is not None and not m.is_finished():
                closing = _closing(m, max_new_tokens - len(o.token_ids), new)
                if closing is not None:
                    new, forced, closed = closing, [], True
                elif (len(o.token_ids) + len(new) >= max_new_tokens and m.is_accepting()
                      and m.fsm.eos_token_ids and m.advance(m.fsm.eos_token_ids[0])):
                    new.append(m.fsm.eos_token_ids[0])  # complete at the limit: end it here
                    closed = True
            o.forced_tokens += len(forced)
            ended = m.is_finished() if m is not None else token in eos
            o.token_ids += new[:-1] if ended else new
            if ended:
                o.stop_reason = "closed" if closed else "end"
            pending.append([] if ended or len(o.token_ids) >= max_new_tokens else new)
            produced += len(new)
        if on_step is not None:
            on_step(produced)

        keep = [r for r, p in enumerate(pending) if p]
        if not keep:
            return out
        if len(keep) < len(rows):
            batch.keep(keep)
            rows = [rows[r] for r in keep]
            pending = [pending[r] for r in keep]
        # Rows append different numbers of tokens (jump-forward): right-align them in one chunk,
        # masking the padding, so that the last column is every row's newest token.
        span = max(map(len, pending))
        chunk = torch.full((len(rows), span), batch.pad_id, dtype=torch.long)
        chunk_mask = torch.zeros((len(rows), span), dtype=torch.long)
        for r, p in enumerate(pending):
            chunk[r, span - len(p):] = torch.tensor(p)
            chunk_mask[r, span - len(p):] = 1
        batch.append(chunk.to(batch.device), chunk_mask.to(batch.device))


def _fits(fsm: Any, state: int, budget: int) -> bool:
    """Whether the grammar's shortest completion from `state` fits in `budget` tokens (EOS not
    counted). A spelling has at most one token per byte, so the bytes decide most calls."""
    from octogram.masking.completion import completion_bytes, shortest_completion

    path = completion_bytes(fsm, state)
    if path is None:
        return False
    if len(path) <= budget:
        return True
    tokens = shortest_completion(fsm, state)
    return tokens is not None and len(tokens) - (tokens[-1] in fsm.eos_token_ids) <= budget


def _closing(m: Any, left: int, new: list[int]) -> list[int] | None:
    """The tokens to append instead of the model's `new` ones (already advanced) when they leave
    too few of the `left` tokens to finish the grammar; None when the model's choice fits."""
    from octogram.masking.completion import shortest_completion

    if _fits(m.fsm, m.state, left - len(new)):
        return None
    m.rollback(len(new))
    if _fits(m.fsm, m.state, left):
        closing = shortest_completion(m.fsm, m.state)
        done = m.consume(closing)
        if done == len(closing):
            return closing
        m.rollback(done)
    m.consume(new)  # it cannot finish from before them either: keep the model's choice
    return None


def _decode_device(batch: _Batch, grammars: list[Any], sampler: _Sampler, eos: set[int],
                   max_new_tokens: int, jump_forward: bool,
                   on_step: Callable[[int], None] | None) -> list[Decoded]:
    from octogram.kernels import DeviceFSM

    device = batch.device
    fsm, states = DeviceFSM.concat([g.tables() for g in grammars], device)
    n = len(grammars)
    tokens_out = torch.full((n, max_new_tokens), batch.pad_id, dtype=torch.long, device=device)
    finished = torch.zeros(n, dtype=torch.bool, device=device)
    eos_ids = torch.tensor(sorted(eos), device=device)
    steps, produced = 0, torch.zeros((), dtype=torch.long, device=device)
    for step in range(max_new_tokens):
        tokens, states = fsm.step(batch.logits, states, finished=finished,
                                  pad_token_id=batch.pad_id, generator=sampler.generator,
                                  **sampler.options)
        tokens_out[:, step] = tokens
        live = ~finished
        produced += live.sum()
        finished = finished | torch.isin(tokens, eos_ids) | (tokens < 0)
        steps = step + 1
        if steps % 4 == 0 or steps == max_new_tokens:  # the loop's only host synchronisation
            if on_step is not None:
                on_step(int(produced))
                produced.zero_()
            if bool(finished.all()) or steps == max_new_tokens:
                break
        batch.append(tokens[:, None], live.long()[:, None])

    out = []
    for i, row in enumerate(tokens_out[:, :steps].tolist()):
        if -1 in row:
            raise RuntimeError(f"decode: row {i} had no allowed token with a finite logit after "
                               f"{row.index(-1)} tokens")
        end = next((k for k, t in enumerate(row) if t in eos), None)
        out.append(Decoded(row if end is None else row[:end], "", "length" if end is None
                           else "end"))
    return out


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
        self.model, self.tokenizer = model, tokenizer
        self.close_at_limit = close_at_limit
        self.mask, self.jump_forward, self.engine = mask, jump_forward, engine
        self.num_candidates, self.parallel, self.max_depth = num_candidates, parallel, max_depth
        self._vocabulary = None
        self._fsms: dict[tuple[str, bool], Any] = {}
        self.compile_seconds = 0.0

    @property
    def vocabulary(self) -> Any:
        if self._vocabulary is None:
            from octogram.masking import Vocabulary

            self._vocabulary = Vocabulary.from_tokenizer(
                self.tokenizer, logits_width(self.model),
                eos_token_ids=eos_token_ids(self.model, self.tokenizer))
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
        return "device" if next(self.model.parameters()).device.type == "cuda" else "host"

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
            decoded = decode(self.model, self.tokenizer, prompts, grammars,
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
