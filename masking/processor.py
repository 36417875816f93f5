"""`GrammarLogitsProcessor`: token FSM masks inside Hugging Face `model.generate`.

The processor never trusts row order: beam search reorders and duplicates rows between steps, so
each row's FSM state is looked up from the tokens it has generated so far (memoized per prefix,
so one step costs one FSM advance per row). A new `generate` call is recognised when a step does
not add exactly one token to the same prompts (shorter or longer sequences, another batch size,
other prompt tokens), so one processor can be reused across calls; `reset()` says so explicitly.
"""

from __future__ import annotations

from typing import Sequence

import torch
from transformers import LogitsProcessor

from ..common.layouts import bitmask_words
from .compile_errors import GrammarViolation
from .fsm import TokenFSM


class GrammarLogitsProcessor(LogitsProcessor):
    """Masks every row's logits to the tokens its grammar allows next.

    `fsms` is one `TokenFSM` for every row, or one per prompt (rows of a prompt's beams or
    `num_return_sequences` share its grammar; prompts are in `generate`'s batch order).
    """

    def __init__(self, fsms: TokenFSM | Sequence[TokenFSM]):
        self.fsms = [fsms] if isinstance(fsms, TokenFSM) else list(fsms)
        if not self.fsms:
            raise ValueError("GrammarLogitsProcessor needs at least one TokenFSM")
        sizes = {f.vocab_size for f in self.fsms}
        if len(sizes) != 1:
            raise ValueError(f"GrammarLogitsProcessor: the FSMs were compiled for different vocabulary "
                             f"sizes {sorted(sizes)}")
        self.vocab_size = sizes.pop()
        self.words = bitmask_words(self.vocab_size)
        self.reset()

    def reset(self) -> None:
        """Forget the current generation (done automatically when a new one starts)."""
        self._prompt_len: int | None = None
        self._last_len = -1
        self._batch = -1
        self._prompt: torch.Tensor | None = None
        # (fsm index, generated tokens) -> (state, finished)
        self._memo: dict[tuple[int, tuple[int, ...]], tuple[int, bool]] = {}

    def _fsm_index(self, row: int, batch: int) -> int:
        n = len(self.fsms)
        if n == 1:
            return 0
        if batch % n:
            raise ValueError(f"GrammarLogitsProcessor: {n} grammars but a batch of {batch} rows "
                             "(rows must be a multiple of the number of grammars)")
        return row // (batch // n)

    def _state(self, which: int, generated: tuple[int, ...], row: int) -> tuple[int, bool]:
        key = (which, generated)
        got = self._memo.get(key)
        if got is not None:
            return got
        fsm = self.fsms[which]
        if not generated:
            got = (fsm.start_state, False)
        else:
            state, finished = self._state(which, generated[:-1], row)
            token = generated[-1]
            if not finished:
                nxt = fsm.step(state, token)
                if nxt < 0:
                    raise GrammarViolation(
                        f"row {row}: token {token} is not allowed by its grammar after "
                        f"{len(generated) - 1} generated tokens (was another processor applied "
                        "after this one, or the input edited?)")
                finished = token in fsm.eos_token_ids
                state = nxt
            got = (state, finished)
        self._memo[key] = got
        return got

    def __call__(self, input_ids: torch.LongTensor, scores: torch.FloatTensor) -> torch.FloatTensor:
        from octogram.kernels import apply_token_bitmask_

        batch, length = input_ids.shape
        # Each step of one generation adds exactly one token and keeps the prompt; anything
        # else is a new generation (a longer prompt at the same batch size included).
        if self._prompt_len is None or batch != self._batch or length != self._last_len + 1 \
                or not torch.equal(input_ids[:, :self._prompt_len], self._prompt):
            self.reset()
            self._prompt_len = length
            self._batch = batch
            self._prompt = input_ids.clone()
        self._last_len = length
        if scores.shape[-1] < self.vocab_size:
            raise ValueError(f"GrammarLogitsProcessor: logits have {scores.shape[-1]} columns but the "
                             f"grammar was compiled for a vocabulary of {self.vocab_size}")
        generated = input_ids[:, self._prompt_len:].tolist()
        bitmask = torch.empty(batch, self.words, dtype=torch.int32)
        rows = bitmask.numpy()  # row copies through numpy: no torch dispatch per row
        for row in range(batch):
            which = self._fsm_index(row, batch)
            state, finished = self._state(which, tuple(generated[row]), row)
            fsm = self.fsms[which]
            if finished:
                rows[row] = fsm.finished_row_numpy()
            else:
                fsm.fill_row(rows[row], state)
        apply_token_bitmask_(scores, bitmask.to(scores.device, non_blocking=True))
        return scores
