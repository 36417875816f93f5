"""`Matcher`: one sequence's position in a `TokenFSM` — advance, masks, rollback, forced tokens.

The position itself lives in a cursor (masking/matcher_step.py): the C one where the native
step is built, so that a decode step (`advance` + `fill_bitmask`) is two C calls, or its
Python twin `PyCursor` with the same methods and results.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import torch

from .matcher_step import new_cursor

if TYPE_CHECKING:
    from .fsm import TokenFSM


class Matcher:
    """Tracks one sequence. Cheap to create: it shares the compiled FSM.

    `max_rollback` bounds how many tokens `rollback` can undo (None: all), and so the history
    kept."""

    def __init__(self, fsm: TokenFSM, max_rollback: int | None = None):
        self.fsm = fsm
        self._use(new_cursor(fsm, max_rollback))

    def _use(self, cursor) -> None:
        self._cursor = cursor
        # the decode step calls the cursor's methods directly: a Python frame per call is a
        # good part of a step (the class methods below say what they do)
        self.advance = cursor.advance
        self.fill_bitmask = cursor.fill_bitmask

    def copy(self) -> "Matcher":
        """An independent matcher at the same position, with the same history (e.g. one per
        beam); the compiled FSM is shared, not copied. `copy.copy` and `copy.deepcopy` do the
        same."""
        out = object.__new__(type(self))
        out.fsm = self.fsm
        out._use(self._cursor.copy())
        return out

    __copy__ = copy

    def __deepcopy__(self, memo: dict) -> "Matcher":
        return self.copy()

    @property
    def state(self) -> int:
        return self._cursor.state

    @property
    def max_rollback(self) -> int | None:
        return self._cursor.max_rollback

    @max_rollback.setter
    def max_rollback(self, limit: int | None) -> None:
        self._cursor.max_rollback = limit

    def reset(self) -> None:
        self._cursor.reset()

    def is_accepting(self) -> bool:
        return self.fsm.is_accepting(self._cursor.state)

    def is_finished(self) -> bool:
        """True once an EOS token was consumed in an accepting state."""
        return self._cursor.finished

    def accepts(self, token_id: int) -> bool:
        return not self._cursor.finished and self.fsm.is_allowed(self._cursor.state, token_id)

    def advance(self, token_id: int) -> bool:
        """Consume `token_id`; False (and no change) if the grammar does not allow it here."""
        return self._cursor.advance(token_id)

    def consume(self, token_ids) -> int:
        """Advance over several tokens; returns how many were accepted (stops at the first refusal)."""
        n = 0
        for t in token_ids:
            if not self._cursor.advance(int(t)):
                break
            n += 1
        return n

    def rollback(self, n: int = 1) -> None:
        """Undo the last `n` advances (for speculative decoding)."""
        self._cursor.rollback(n)

    def fill_bitmask(self, bitmask: torch.Tensor, index: int | None = None) -> None:
        """Write the allowed-token mask into `bitmask` (a row of int32 words, or row `index` of a
        2-D bitmask). A finished sequence allows only EOS. The last CPU target is written by
        its address while it stays the same tensor, index and data pointer (a tensor moved by
        set_(), `.data =` or a growing resize_() is looked up again)."""
        self._cursor.fill_bitmask(bitmask, index)

    def allowed_tokens(self) -> list[int]:
        return [] if self._cursor.finished else self.fsm.allowed_tokens(self._cursor.state)

    def forced_tokens(self) -> list[int]:
        """The tokens that are the only possible continuation from here (jump-forward). Stops
        before any point with a choice, including the choice to end."""
        out = []
        s = self._cursor.state
        if self._cursor.finished:
            return out
        while True:
            t = self.fsm.single_token(s)
            if t < 0:
                return out
            out.append(t)
            if t in self.fsm.eos_token_ids:
                return out
            s = self.fsm.next_state(s, t)
