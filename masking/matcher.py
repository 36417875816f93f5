"""`Matcher`: one sequence's position in a `TokenFSM` — advance, masks, rollback, forced tokens."""

from __future__ import annotations

import torch

from .fsm import TokenFSM


class Matcher:
    """Tracks one sequence. Cheap to create: it shares the compiled FSM."""

    def __init__(self, fsm: TokenFSM, max_rollback: int | None = None):
        self.fsm = fsm
        self._history: list[int] = [fsm.start_state]
        self._finished: list[bool] = [False]
        self.max_rollback = max_rollback

    @property
    def state(self) -> int:
        return self._history[-1]

    def reset(self) -> None:
        self._history = [self.fsm.start_state]
        self._finished = [False]

    def is_accepting(self) -> bool:
        return self.fsm.is_accepting(self.state)

    def is_finished(self) -> bool:
        """True once an EOS token was consumed in an accepting state."""
        return self._finished[-1]

    def accepts(self, token_id: int) -> bool:
        return not self._finished[-1] and self.fsm.is_allowed(self.state, token_id)

    def advance(self, token_id: int) -> bool:
        """Consume `token_id`; False (and no change) if the grammar does not allow it here."""
        if not self.accepts(token_id):
            return False
        s = self.state
        self._history.append(self.fsm.next_state(s, token_id))
        self._finished.append(token_id in self.fsm.eos_token_ids)
        if self.max_rollback is not None and len(self._history) > self.max_rollback + 1:
            del self._history[0], self._finished[0]
        return True

    def consume(self, token_ids) -> int:
        """Advance over several tokens; returns how many were accepted (stops at the first refusal)."""
        n = 0
        for t in token_ids:
            if not self.advance(int(t)):
                break
            n += 1
        return n

    def rollback(self, n: int = 1) -> None:
        """Undo the last `n` advances (for speculative decoding)."""
        if n < 0 or n > len(self._history) - 1:
            raise ValueError(f"rollback({n}): only {len(self._history) - 1} tokens can be undone")
        if n:
            del self._history[-n:], self._finished[-n:]

    def fill_bitmask(self, bitmask: torch.Tensor, index: int | None = None) -> None:
        """Write the allowed-token mask into `bitmask` (a row of int32 words, or row `index` of a
        2-D bitmask). A finished sequence allows only EOS."""
        target = bitmask if index is None else bitmask[index]
        target.copy_(self.fsm.finished_row() if self._finished[-1] else self.fsm.mask_row(self.state))

    def allowed_tokens(self) -> list[int]:
        return [] if self._finished[-1] else self.fsm.allowed_tokens(self.state)

    def forced_tokens(self) -> list[int]:
        """The tokens that are the only possible continuation from here (jump-forward). Stops
        before any point with a choice, including the choice to end."""
        out = []
        s = self.state
        if self._finished[-1]:
            return out
        while True:
            t = self.fsm.single_token(s)
            if t < 0:
                return out
            out.append(t)
            if t in self.fsm.eos_token_ids:
                return out
            s = self.fsm.next_state(s, t)

