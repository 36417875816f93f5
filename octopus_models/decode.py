"""The decode engine: a batch of prompts, one grammar per row (or none), one model runner.

`decode` drives a `Runner` (the model side: prefill, append tokens, logits of each row's newest
position), greedy or seeded sampling, and one `Matcher` per constrained row whose bitmask is
applied to that row's logits (through `octogram.kernels`); each row stops when its matcher is
finished (EOS taken in an accepting state) or after `max_new_tokens`. Finished rows leave the
batch (and the runner's KV cache). Runners: `TransformersRunner` (a Hugging Face model; what
`decode(model, tokenizer, ...)` builds) and `contrib.llamacpp.LlamaCppRunner` (a GGUF file).

Jump-forward rule: after a row takes a token, the tokens in `Matcher.forced_tokens()` are
appended without asking the model. That list holds a token only where it is the *single* token
the grammar allows (it stops before any choice, including the choice to end), so the masked
distribution puts all its mass on that token: greedy decoding would take it too, so greedy
output is the same token for token, and sampling draws from the same distribution (a given seed
gives another sample, since forced steps draw no random numbers). Forced tokens are still fed to
the model (to fill the KV cache), but all of them in one forward pass. We never force a byte
string the grammar forces but the vocabulary spells in several ways (`get_weather(` as
`get`+`_weather`+`(` or `get_`+`weather(`...): the model may prefer a different spelling, and
choosing one for it would change its output.

Head skip: where a row's grammar allows at most `Runner.head_skip_limit` tokens, a runner that
supports it computes only those rows of the LM head (the rest are -inf, as the mask would make
them), so the sampled token is the one the full head would give.

On CUDA, when every row has a grammar, a second loop keeps all rows' FSM states on the device
(`kernels.DeviceFSM.step` masks, samples and advances with no host round trip; the end of the
batch is checked every 4 steps); it has no jump-forward and keeps finished rows in the batch.
`decode(engine="device")` runs it anywhere (on CPU through the kernels' torch reference).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from ..common.layouts import bitmask_words

__all__ = ["Decoded", "Runner", "decode", "logits_width", "eos_token_ids"]


@dataclass
class Decoded:
    """One row's output: generated ids (the final EOS left out), their text, why it stopped."""

    token_ids: list[int]
    text: str
    # "end" (EOS; for a constrained row, in an accepting state), "length", or "closed" (the
    # grammar's shortest completion was appended to fit max_new_tokens: `decode(close_at_limit)`)
    stop_reason: str
    forced_tokens: int = 0  # how many of token_ids came from jump-forward


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


class Runner:
    """The model side of `decode`, for one batch at a time.

    `start(prompts)` prefills the rows (token ids); `logits()` is then a float32 tensor of shape
    (rows, logits_width) for each row's newest position; `append(tokens)` feeds each row its new
    tokens (row r gets `tokens[r]`, at least one) and `keep(rows)` drops the other rows (finished
    ones); `finish()` ends the batch. A runner with `head_skip_limit > 0` accepts
    `logits(allowed)`: for row r with `allowed[r]` not None (a sorted int64 array of at most that
    many token ids), only those logits need be real and the rest may be -inf.
    """

    logits_width: int
    eos_token_ids: list[int]
    pad_token_id: int
    device: torch.device = torch.device("cpu")
    head_skip_limit: int = 0
    name: str = "runner"

    def start(self, prompts: list[list[int]]) -> None:
        raise NotImplementedError

    def logits(self, allowed: list[np.ndarray | None] | None = None) -> torch.Tensor:
        raise NotImplementedError

    def append(self, tokens: list[list[int]]) -> None:
        raise NotImplementedError

    def keep(self, rows: list[int]) -> None:
        raise NotImplementedError

    def finish(self) -> None:
        """Release the batch's state (KV cells, sequences); `start` may be called again."""


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


def _check(runner: Runner, prompts: Sequence[Any], grammars: Sequence[Any | None],
           max_new_tokens: int) -> None:
    if len(grammars) != len(prompts):
        raise ValueError(f"decode: {len(prompts)} prompts but {len(grammars)} grammars")
    if max_new_tokens < 1:
        raise ValueError(f"decode: max_new_tokens must be >= 1, got {max_new_tokens}")
    for i, g in enumerate(grammars):
        if g is not None and g.vocab_size != runner.logits_width:
            raise ValueError(f"decode: grammar {i} was compiled for {g.vocab_size} tokens but the "
                             f"model's logits have {runner.logits_width}")


def _token_rows(tokenizer: Any, prompts: Sequence[str | Sequence[int]]) -> list[list[int]]:
    rows = [tokenizer(p).input_ids if isinstance(p, str) else [int(t) for t in p]
            for p in prompts]
    if any(len(r) == 0 for r in rows):
        raise ValueError("decode: empty prompt")
    return rows


@torch.inference_mode()
def decode(model: Any, tokenizer: Any, prompts: Sequence[str | Sequence[int]],
           grammars: Sequence[Any | None] | None = None, *, max_new_tokens: int = 128,
           temperature: float = 0.0, top_k: int = 0, top_p: float = 1.0,
           seed: int | None = None, jump_forward: bool = True, engine: str = "auto",
           close_at_limit: bool = False,
           on_step: Callable[[int], None] | None = None) -> list[Decoded]:
    """Decode a batch of prompts (text, or token ids); row i follows `grammars[i]` if not None.

    `model` is a Hugging Face causal LM (run through a `TransformersRunner` made for this call)
    or a `Runner` (`TransformersRunner`, `contrib.llamacpp.LlamaCppRunner`; a runner keeps its
    prompt-prefix cache between calls). `tokenizer` encodes text prompts and decodes outputs.
    `grammars[i]` is a `TokenFSM` compiled for this tokenizer at the model's logits width.
    `temperature=0` is greedy; otherwise sampling (top-k/top-p) seeded by `seed` (a seed
    reproduces a run with the same prompts, batch composition and options).
    `engine`: "host" keeps one `Matcher` per row on the CPU (jump-forward, finished rows leave
    the batch); "device" keeps every row's FSM state on the model's device (`DeviceFSM.step`:
    mask, sample and advance without a host round trip; checks for the end every 4 steps; no
    jump-forward; every row needs a grammar; transformers models only); "auto" is "device" on
    CUDA when every row has a grammar, else "host". `on_step(n)` is called with the number of
    tokens the rows took.
    `close_at_limit` (host engine): a constrained row whose next token (with its forced tokens)
    would leave too few of the `max_new_tokens` to finish the grammar gets the grammar's
    shortest completion instead (`masking.shortest_completion`; stop_reason "closed"), so its
    output is complete whenever the start state's completion fits; rows that finish in time on
    their own are unchanged.

    An empty batch (`prompts == []`) is answered with an empty list, after the options are
    checked, as `call_batch([])` is: a batch built by filtering may well be empty.
    """
    if isinstance(model, Runner):
        runner = model
    else:
        from .transformers_runner import TransformersRunner

        runner = TransformersRunner(model, tokenizer, prefix_cache=0)
    grammars = [None] * len(prompts) if grammars is None else list(grammars)
    _check(runner, prompts, grammars, max_new_tokens)
    if engine == "auto":
        on_cuda = runner.device.type == "cuda"
        engine = "device" if on_cuda and all(g is not None for g in grammars) else "host"
    if engine not in ("host", "device"):
        raise ValueError(f"decode: engine must be 'auto', 'host' or 'device', got {engine!r}")
    if engine == "device" and any(g is None for g in grammars):
        raise ValueError("decode: the device engine needs a grammar for every row")
    if engine == "device" and close_at_limit:
        raise ValueError("decode: close_at_limit needs the host engine (the device loop does not "
                         "stop to look at each row's state)")
    if engine == "device" and not hasattr(runner, "append_chunk"):
        raise ValueError(f"decode: the device engine needs a transformers model, not the "
                         f"{runner.name} runner")
    if not prompts:
        return []
    rows = _token_rows(tokenizer, prompts)
    sampler = _Sampler(temperature, top_k, top_p, seed, runner.device)
    runner.start(rows)
    try:
        if engine == "device":
            out = _decode_device(runner, grammars, sampler, set(runner.eos_token_ids),
                                 max_new_tokens, on_step)
        else:
            out = _decode_host(runner, grammars, sampler, set(runner.eos_token_ids),
                               max_new_tokens, jump_forward, on_step, close_at_limit)
    finally:
        runner.finish()
    for o in out:
        o.text = tokenizer.decode(o.token_ids, skip_special_tokens=False)
    return out


def _allowed_sets(runner: Runner, matchers: list[Any], rows: list[int]
                  ) -> list[np.ndarray | None] | None:
    """Each row's allowed token ids where there are at most `runner.head_skip_limit` of them."""
    if runner.head_skip_limit <= 0:
        return None
    out: list[np.ndarray | None] = []
    for i in rows:
        m = matchers[i]
        if m is None or m.is_finished():
            out.append(None)
            continue
        n = m.fsm.allowed_count(m.state)
        out.append(np.asarray(m.allowed_tokens(), dtype=np.int64)
                   if n <= runner.head_skip_limit else None)
    return out if any(a is not None for a in out) else None


def _decode_host(runner: Runner, grammars: list[Any | None], sampler: _Sampler, eos: set[int],
                 max_new_tokens: int, jump_forward: bool,
                 on_step: Callable[[int], None] | None, close_at_limit: bool) -> list[Decoded]:
    matchers = [g.matcher() if g is not None else None for g in grammars]
    out = [Decoded([], "", "length") for _ in grammars]
    rows = list(range(len(grammars)))  # batch row -> request index, for the rows still decoding
    words = bitmask_words(runner.logits_width)
    while True:
        bitmask = None
        if any(matchers[i] is not None for i in rows):
            bitmask = torch.full((len(rows), words), -1, dtype=torch.int32)
            for r, i in enumerate(rows):
                if matchers[i] is not None:
                    matchers[i].fill_bitmask(bitmask[r])
            bitmask = bitmask.to(runner.device)
        logits = runner.logits(_allowed_sets(runner, matchers, rows))
        chosen = sampler(logits, bitmask).tolist()

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
            runner.keep(keep)
            rows = [rows[r] for r in keep]
            pending = [pending[r] for r in keep]
        runner.append(pending)


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


def _decode_device(runner: Any, grammars: list[Any], sampler: _Sampler, eos: set[int],
                   max_new_tokens: int, on_step: Callable[[int], None] | None) -> list[Decoded]:
    from octogram.kernels import DeviceFSM

    device = runner.device
    fsm, states = DeviceFSM.concat([g.tables() for g in grammars], device)
    n = len(grammars)
    tokens_out = torch.full((n, max_new_tokens), runner.pad_token_id, dtype=torch.long, device=device)
    finished = torch.zeros(n, dtype=torch.bool, device=device)
    eos_ids = torch.tensor(sorted(eos), device=device)
    steps, produced = 0, torch.zeros((), dtype=torch.long, device=device)
    for step in range(max_new_tokens):
        tokens, states = fsm.step(runner.logits(), states, finished=finished,
                                  pad_token_id=runner.pad_token_id, generator=sampler.generator,
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
        runner.append_chunk(tokens[:, None], live.long()[:, None])

    out = []
    for i, row in enumerate(tokens_out[:, :steps].tolist()):
        if -1 in row:
            raise RuntimeError(f"decode: row {i} had no allowed token with a finite logit after "
                               f"{row.index(-1)} tokens")
        end = next((k for k, t in enumerate(row) if t in eos), None)
        out.append(Decoded(row if end is None else row[:end], "", "length" if end is None
                           else "end"))
    return out


