"""`Matcher`: one sequence's position in a `TokenFSM` — advance, masks, rollback, forced tokens."""

from __future__ import annotations

import numpy as np
import torch

from .fsm import TokenFSM, native_step


class Matcher:
    """Tracks one sequence. Cheap to create: it shares the compiled FSM."""

    def __init__(self, fsm: TokenFSM, max_rollback: int | None = None):
        self.fsm = fsm
        self._history: list[int] = [fsm.start_state]
        self._finished: list[bool] = [False]
        self.max_rollback = max_rollback
        self._eos = frozenset(fsm.eos_token_ids)
        # fill_bitmask's last target: (bitmask, index, its data pointer, the row view written),
        # and how to write it
        self._fill_key: tuple | None = None
        self._fill_dst: int | np.ndarray | torch.Tensor | None = None

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
        if self._finished[-1]:
            return False
        nxt = self.fsm.step(self._history[-1], token_id)
        if nxt < 0:
            return False
        self._history.append(nxt)
        self._finished.append(token_id in self._eos)
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
        key = self._fill_key
        # the key holds the written view, so the memory at a cached address stays allocated
        # and a tensor moved elsewhere (set_(), `.data =`, a growing resize_()) has a new data
        # pointer; only that is checked per call (torch's calls cost, on a cold cache, a good
        # part of a step)
        if key is None or key[0] is not bitmask or key[1] != index or key[2] != bitmask.data_ptr():
            view = bitmask if index is None else bitmask[index]
            self._fill_dst = self._fill_target(view)
            self._fill_key = (bitmask, index, bitmask.data_ptr(), view)
        dst = self._fill_dst
        fsm = self.fsm
        if self._finished[-1]:
            if type(dst) is int:
                native_step().fill(dst, fsm.words, memoryview(fsm.finished_row_numpy()))
            elif isinstance(dst, np.ndarray):
                np.copyto(dst, fsm.finished_row_numpy())
            else:
                dst.copy_(fsm.finished_row())
        elif type(dst) is int:  # a contiguous CPU row: written by matcher_step.c
            fsm.fill_address(dst, self._history[-1])
        elif isinstance(dst, np.ndarray):
            fsm.fill_row(dst, self._history[-1])
        else:
            dst.copy_(fsm.mask_row(self._history[-1]))

    def _fill_target(self, target: torch.Tensor) -> int | np.ndarray | torch.Tensor:
        """How fill_bitmask writes this row: a CPU int32 row by its address (native step) or a
        numpy view (a torch copy_ costs more in dispatch than in copying); anything else by
        torch."""
        if target.device.type != "cpu" or target.dtype != torch.int32 or target.requires_grad \
                or tuple(target.shape) != (self.fsm.words,):
            return target
        if target.is_contiguous() and native_step() is not None:
            return target.data_ptr()
        return target.numpy()

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

