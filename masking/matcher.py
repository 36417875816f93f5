"""`Matcher`: one sequence's position in a `TokenFSM` — advance, masks, rollback, forced tokens.

The position itself lives in a cursor: `matcher_step.Cursor` (C) where the native step is
built, so that a decode step (`advance` + `fill_bitmask`) is two C calls, or its Python twin
`PyCursor` with the same methods and results.
"""

from __future__ import annotations

import ctypes
import operator

import numpy as np
import torch

from .fsm import TokenFSM, native_step


def _row_index(index) -> int:
    """A fill target's row as the cursors cache it: -1 for None, -2 (never cached) for a
    negative index or one that is not an integer."""
    if index is None:
        return -1
    try:
        i = operator.index(index)
    except TypeError:
        return -2
    return i if i >= 0 else -2


class PyCursor:
    """The Python twin of matcher_step.Cursor (see there): the history of states and finished
    flags, advance, rollback, copy, and fill_bitmask with its last target cached."""

    def __init__(self, fsm: TokenFSM, records: list, make_record, length_next, fill_fallback,
                 max_rollback: int | None):
        self.fsm = fsm
        self._args = (fsm, records, make_record, length_next, fill_fallback)
        self._fallback = fill_fallback
        self._eos = frozenset(fsm.eos_token_ids)
        # fill_bitmask's last target: (bitmask, row index, its data pointer, row array,
        # storage, bytes the storage must hold)
        self._target: tuple | None = None
        self._max_rollback: int | None = None
        self.reset()
        self.max_rollback = max_rollback

    @property
    def state(self) -> int:
        return self._states[-1]

    @property
    def finished(self) -> bool:
        return self._finished[-1]

    @property
    def max_rollback(self) -> int | None:
        return self._max_rollback

    @max_rollback.setter
    def max_rollback(self, limit: int | None) -> None:
        if limit is not None:
            limit = operator.index(limit)
            if limit < 0:
                raise ValueError("max_rollback must be None or >= 0")
        self._max_rollback = limit
        if limit is not None and len(self._states) > limit + 1:
            del self._states[:-limit - 1], self._finished[:-limit - 1]

    def reset(self) -> None:
        self._states = [self.fsm.start_state]
        self._finished = [False]

    def copy(self) -> "PyCursor":
        out = PyCursor(*self._args, self._max_rollback)
        out._states, out._finished = list(self._states), list(self._finished)
        return out

    def advance(self, token_id: int) -> bool:
        if self._finished[-1]:
            return False
        nxt = self.fsm.step(self._states[-1], token_id)
        if nxt < 0:
            return False
        self._states.append(nxt)
        self._finished.append(token_id in self._eos)
        if self._max_rollback is not None and len(self._states) > self._max_rollback + 1:
            del self._states[0], self._finished[0]
        return True

    def rollback(self, n: int) -> None:
        if n < 0 or n > len(self._states) - 1:
            raise ValueError(f"rollback({n}): only {len(self._states) - 1} tokens can be undone")
        if n:
            del self._states[-n:], self._finished[-n:]

    def fill_bitmask(self, bitmask: torch.Tensor, index: int | None = None) -> None:
        t = self._target
        if t is not None and t[0] is bitmask and t[1] == _row_index(index) \
                and t[2] == bitmask.data_ptr() and t[4].nbytes() >= t[5]:
            self._write(t[3])
        else:
            self._fallback(self, bitmask, index)

    def fill_at(self, bitmask: torch.Tensor, index: int | None, data_ptr: int, storage,
                address: int, needed: int) -> None:
        # an array over the address, not tensor.numpy(): that would make the storage unresizable
        row = np.ctypeslib.as_array((ctypes.c_int32 * self.fsm.words).from_address(address))
        self._target = (bitmask, _row_index(index), data_ptr, row, storage, needed)
        self._write(row)

    def _write(self, row: np.ndarray) -> None:
        if self._finished[-1]:
            np.copyto(row, self.fsm.finished_row_numpy())
        else:
            self.fsm.fill_row(row, self._states[-1])


def _fill_new_target(cursor, bitmask: torch.Tensor, index: int | None) -> None:
    """fill_bitmask for a target the cursor has not cached: a contiguous CPU int32 row (given
    by no index or one >= 0) is remembered and written by address; anything else (a GPU
    tensor, a strided row, a negative index) is written by torch on every call. Only int32
    targets of the mask's width are accepted.
    The cursor keeps the row's storage, so the memory at the address stays allocated; not a
    view of the bitmask, which would stop the garbage collector from seeing through the bitmask
    (torch does not traverse a tensor that has views), nor a numpy array, which would make the
    storage unresizable."""
    if not isinstance(bitmask, torch.Tensor):
        raise ValueError(f"fill_bitmask: the bitmask must be a torch.Tensor, got "
                         f"{type(bitmask).__name__}")
    if bitmask.dtype != torch.int32:  # a conversion would mangle words (0x80000080 -> 128)
        raise ValueError(f"fill_bitmask: the bitmask must be int32 (bit t % 32 of word t // 32), "
                         f"got {bitmask.dtype}")
    view = bitmask if index is None else bitmask[index]
    fsm = cursor.fsm
    if tuple(view.shape) != (fsm.words,):
        raise ValueError(f"fill_bitmask: the target row must have shape ({fsm.words},), got "
                         f"{tuple(view.shape)}" + ("" if index is None else f" (row {index})"))
    if view.device.type == "cpu" and view.dtype == torch.int32 and not view.requires_grad \
            and tuple(view.shape) == (fsm.words,) and view.is_contiguous() \
            and _row_index(index) != -2:
        storage = view.untyped_storage()
        needed = view.data_ptr() - storage.data_ptr() + 4 * fsm.words
        cursor.fill_at(bitmask, index, bitmask.data_ptr(), storage, view.data_ptr(), needed)
    else:
        view.copy_(fsm.finished_row() if cursor.finished else fsm.mask_row(cursor.state))


class Matcher:
    """Tracks one sequence. Cheap to create: it shares the compiled FSM.

    `max_rollback` bounds how many tokens `rollback` can undo (None: all), and so the history
    kept."""

    def __init__(self, fsm: TokenFSM, max_rollback: int | None = None):
        self.fsm = fsm
        native = native_step()
        make = native.Cursor if native is not None else PyCursor
        self._use(make(fsm, fsm._records, fsm._record, fsm.next_state, _fill_new_target,
                       max_rollback))

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
