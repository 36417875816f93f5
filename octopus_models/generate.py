"""Batched decoding where every row has its own grammar (or none), and calls parsed from it.

`decode` is the engine: left-padded prompts, one KV cache, greedy or seeded sampling, one
`Matcher` per constrained row whose bitmask is applied to that row's logits (through
`octogram.kernels`), each row stopping when its matcher is finished (EOS taken in an accepting
state) or after `max_new_tokens`. Finished rows leave the batch (and the KV cache).

Jump-forward rule: after a row takes a token, the tokens in `Matcher.forced_tokens()` are
appended without asking the model. That list holds a token only where it is the *single* token
the grammar allows (it stops before any choice, including the choice to end), so the masked
distribution puts all its mass on that token: greedy decoding and sampling would take it too,
and the output is the same token for token. Forced tokens are still fed to the model (to fill
the KV cache), but all of them in one forward pass. We never force a byte string the grammar
forces but the vocabulary spells in several ways (`get_weather(` as `get`+`_weather`+`(` or
`get_`+`weather(`...): the model may prefer a different spelling, and choosing one for it would
change its output.

`OctopusGenerator` turns queries and API functions into prompts (`prompt.render_prompt`),
grammars (`grammars.to_lark` of the offered candidates, compiled once per candidate set), and
parses each output with `grammars.parse_call`, which checks it against the FunctionSpecs.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import torch

from .prompt import render_prompt, with_no_relevant_function
from .retrieval import select_candidates

__all__ = ["Decoded", "CallResult", "decode", "OctopusGenerator", "logits_width",
           "eos_token_ids"]


@dataclass
class Decoded:
    """One row's output: generated ids (the final EOS left out), their text, why it stopped."""

    token_ids: list[int]
    text: str
    stop_reason: str  # "end" (EOS; for a constrained row, in an accepting state) or "length"
    forced_tokens: int = 0  # how many of token_ids came from jump-forward


@dataclass
class CallResult:
    """A query's answer: the raw text, and the parsed call(s) or the reason parsing failed."""

    query: str
    text: str
    calls: list[Any]  # octogram.grammars.FunctionCall, empty when `error` is set
    error: str | None
    candidates: list[Any] = field(repr=False, default_factory=list)  # offered FunctionSpecs
    stop_reason: str = "end"
    num_tokens: int = 0
    forced_tokens: int = 0

    @property
    def call_text(self) -> str:
        return self.text.strip()


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


class _Picker:
    """Chooses each row's next token from its logits and bitmask (greedy or seeded sampling)."""

    def __init__(self, temperature: float, top_k: int, top_p: float, seed: int | None,
                 device: torch.device):
        if temperature < 0:
            raise ValueError(f"temperature must be >= 0, got {temperature}")
        if not 0 < top_p <= 1:
            raise ValueError(f"top_p must be in (0, 1], got {top_p}")
        self.temperature, self.top_k, self.top_p = temperature, top_k, top_p
        self.generator = None
        if temperature > 0:
            self.generator = torch.Generator(device=device)
            self.generator.manual_seed(seed if seed is not None else torch.seed())

    def __call__(self, logits: torch.Tensor, bitmask: torch.Tensor | None) -> torch.Tensor:
        if self.temperature == 0:
            if bitmask is not None:
                from octogram.kernels import apply_token_bitmask_

                apply_token_bitmask_(logits, bitmask)
            return logits.argmax(dim=-1)
        from octogram.kernels import sample_constrained

        return sample_constrained(logits, bitmask, temperature=self.temperature, top_k=self.top_k,
                                  top_p=self.top_p, generator=self.generator)


@torch.inference_mode()
def decode(model: Any, tokenizer: Any, prompts: Sequence[str | Sequence[int]],
           grammars: Sequence[Any | None] | None = None, *, max_new_tokens: int = 128,
           temperature: float = 0.0, top_k: int = 0, top_p: float = 1.0,
           seed: int | None = None, jump_forward: bool = True,
           on_step: Callable[[int], None] | None = None) -> list[Decoded]:
    """Decode a batch of prompts (text, or token ids); row i follows `grammars[i]` if not None.

    `grammars[i]` is a `TokenFSM` compiled for this tokenizer at the model's logits width.
    `temperature=0` is greedy; otherwise sampling (top-k/top-p) from a generator seeded by
    `seed`. `on_step(n)` is called after each step with the number of tokens the rows took (EOS
    and forced tokens included).
    """
    n = len(prompts)
    if grammars is None:
        grammars = [None] * n
    if len(grammars) != n:
        raise ValueError(f"decode: {n} prompts but {len(grammars)} grammars")
    if max_new_tokens < 1:
        raise ValueError(f"decode: max_new_tokens must be >= 1, got {max_new_tokens}")
    device = next(model.parameters()).device
    width = logits_width(model)
    for i, g in enumerate(grammars):
        if g is not None and g.vocab_size != width:
            raise ValueError(f"decode: grammar {i} was compiled for {g.vocab_size} tokens but the "
                             f"model's logits have {width}")
    eos = set(eos_token_ids(model, tokenizer))
    pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else min(eos)
    pick = _Picker(temperature, top_k, top_p, seed, device)
    matchers = [g.matcher() if g is not None else None for g in grammars]
    out = [Decoded([], "", "length") for _ in range(n)]

    from transformers import DynamicCache

    ids, attn = _encode(tokenizer, prompts, pad_id)
    ids, attn = ids.to(device), attn.to(device)
    positions = (attn.cumsum(-1) - 1).clamp(min=0)
    cache = DynamicCache(config=model.config)
    logits = model(input_ids=ids, attention_mask=attn, position_ids=positions,
                   past_key_values=cache, use_cache=True, logits_to_keep=1).logits[:, -1]
    next_pos = positions[:, -1] + 1
    rows = list(range(n))  # batch row -> request index, for the rows still decoding
    words = (width + 31) // 32
    while True:
        constrained = [r for r, i in enumerate(rows) if matchers[i] is not None]
        bitmask = None
        if constrained:
            bitmask = torch.full((len(rows), words), -1, dtype=torch.int32)
            for r in constrained:
                matchers[rows[r]].fill_bitmask(bitmask[r])
            bitmask = bitmask.to(device)
        chosen = pick(logits.float(), bitmask).tolist()

        pending: list[list[int]] = []
        produced = 0
        for r, i in enumerate(rows):
            token, m, o = int(chosen[r]), matchers[i], out[i]
            if m is not None and not m.advance(token):
                raise RuntimeError(f"decode: row {i} sampled token {token}, which its grammar "
                                   "forbids; the mask was not applied")
            new = [token]
            if m is not None and jump_forward and not m.is_finished():
                forced = m.forced_tokens()[: max_new_tokens - len(o.token_ids) - 1]
                for t in forced:
                    m.advance(t)
                new += forced
                o.forced_tokens += len(forced)
            ended = m.is_finished() if m is not None else token in eos
            o.token_ids += new[:-1] if ended else new
            if ended:
                o.stop_reason = "end"
            pending.append([] if ended or len(o.token_ids) >= max_new_tokens else new)
            produced += len(new)
        if on_step is not None:
            on_step(produced)

        keep = [r for r, p in enumerate(pending) if p]
        if not keep:
            break
        if len(keep) < len(rows):  # drop finished rows from the batch and the cache
            index = torch.tensor(keep, device=device)
            cache.batch_select_indices(index)
            attn, next_pos = attn[index], next_pos[index]
            rows = [rows[r] for r in keep]
            pending = [pending[r] for r in keep]
        # Rows append different numbers of tokens (jump-forward): right-align them in one chunk,
        # masking the padding, so that the last column is every row's newest token.
        span = max(map(len, pending))
        chunk = torch.full((len(rows), span), pad_id, dtype=torch.long)
        chunk_mask = torch.zeros((len(rows), span), dtype=torch.long)
        for r, p in enumerate(pending):
            chunk[r, span - len(p):] = torch.tensor(p)
            chunk_mask[r, span - len(p):] = 1
        chunk, chunk_mask = chunk.to(device), chunk_mask.to(device)
        chunk_pos = (next_pos[:, None] + chunk_mask.cumsum(-1) - 1).clamp(min=0)
        attn = torch.cat([attn, chunk_mask], dim=1)
        next_pos = next_pos + chunk_mask.sum(-1)
        logits = model(input_ids=chunk, attention_mask=attn, position_ids=chunk_pos,
                       past_key_values=cache, use_cache=True, logits_to_keep=1).logits[:, -1]

    for o in out:
        o.text = tokenizer.decode(o.token_ids, skip_special_tokens=False)
    return out


class OctopusGenerator:
    """Queries + API functions in, parsed calls out, with a compiled grammar per candidate set.

    `mask=False` decodes without constraints (parse errors are then reported in
    `CallResult.error`, not raised). `num_candidates` is how many functions a query is offered
    (besides `no_relevant_function`) when a document holds more (see `retrieval`).
    """

    def __init__(self, model: Any, tokenizer: Any, *, mask: bool = True,
                 jump_forward: bool = True, num_candidates: int = 4, parallel: bool = False,
                 max_depth: int = 3) -> None:
        self.model, self.tokenizer = model, tokenizer
        self.mask, self.jump_forward = mask, jump_forward
        self.num_candidates, self.parallel, self.max_depth = num_candidates, parallel, max_depth
        self._vocabulary = None
        self._fsms: dict[str, Any] = {}
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
        """The compiled token FSM for `candidates`, memoized by grammar text."""
        from octogram.masking import compile_grammar

        text = self.grammar_text(candidates)
        if text not in self._fsms:
            start = time.perf_counter()
            self._fsms[text] = compile_grammar(text, self.vocabulary)
            self.compile_seconds += time.perf_counter() - start
        return self._fsms[text]

    def candidates(self, query: str, functions: Sequence[Any]) -> list[Any]:
        return select_candidates(query, functions, self.num_candidates)

    def prompt(self, query: str, functions: Sequence[Any]) -> str:
        return render_prompt(query, self.candidates(query, functions))

    def call(self, query: str, functions: Sequence[Any], **options: Any) -> CallResult:
        """Answer one query with a call to one of `functions` (see `call_batch` for options)."""
        return self.call_batch([(query, functions)], **options)[0]

    def call_batch(self, requests: Sequence[tuple[str, Sequence[Any]]], *, batch_size: int = 8,
                   max_new_tokens: int = 128, temperature: float = 0.0, top_k: int = 0,
                   top_p: float = 1.0, seed: int | None = None,
                   on_step: Callable[[int], None] | None = None) -> list[CallResult]:
        """Answer (query, functions) pairs, `batch_size` rows at a time, in order."""
        from octogram.grammars import parse_call

        if batch_size < 1:
            raise ValueError(f"call_batch: batch_size must be >= 1, got {batch_size}")
        results: list[CallResult] = []
        for start in range(0, len(requests), batch_size):
            part = requests[start:start + batch_size]
            offered = [self.candidates(q, fns) for q, fns in part]
            prompts = [render_prompt(q, c) for (q, _), c in zip(part, offered)]
            grammars = [self.fsm(c) if self.mask else None for c in offered]
            decoded = decode(self.model, self.tokenizer, prompts, grammars,
                             max_new_tokens=max_new_tokens, temperature=temperature, top_k=top_k,
                             top_p=top_p, seed=None if seed is None else seed + start,
                             jump_forward=self.jump_forward, on_step=on_step)
            for (query, _), cands, d in zip(part, offered, decoded):
                calls, error = [], None
                try:
                    calls = parse_call(d.text.strip(), with_no_relevant_function(cands), "python")
                except Exception as exc:  # a parse or validation failure is a result, not a crash
                    error = f"{type(exc).__name__}: {exc}"
                    if d.stop_reason != "end":
                        error = (f"stopped after max_new_tokens={max_new_tokens} before the call "
                                 f"ended ({error})")
                results.append(CallResult(query, d.text, calls, error, cands, d.stop_reason,
                                          len(d.token_ids), d.forced_tokens))
        return results
