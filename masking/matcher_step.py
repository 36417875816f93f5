"""The decode step of a `TokenFSM`: the Python side of matcher_step.c.

Owns everything the native step needs and its Python twin: building and loading the
extension (`load`), packing a state into the record the C code reads (`pack_record`,
`state_record`; the layout is described in matcher_step.c), and the cursors that hold one
sequence's position (`new_cursor`: the C `Cursor` where the extension is built, else
`PyCursor`, with the same methods and results).

A cursor reads its FSM through `TokenFSM.step_inputs()` and the attributes listed there; the
FSM never reaches into this module's cursors.
"""

from __future__ import annotations

import ctypes
import operator
import sys
from pathlib import Path
from types import ModuleType
from typing import TYPE_CHECKING

import numpy as np
import torch

from ..common import native_build

if TYPE_CHECKING:
    from .fsm import TokenFSM
    from .state_table import RowStore, StateResult

SOURCE = Path(__file__).with_name("matcher_step.c")
_module: ModuleType | bool | None = None  # False: it cannot be built here


def load() -> ModuleType | None:
    """matcher_step.c, built on first use; None where it cannot be (the Python step then runs)."""
    global _module
    if _module is None:
        _module = native_build.load_extension(SOURCE) or False
    return _module or None


def pack_record(rows: RowStore, row: int, exc_tokens: np.ndarray, exc_next: np.ndarray,
                default: int, vocab_size: int) -> bytes | tuple[bytes, bytes]:
    """One state as matcher_step.c reads it: its fixed fields, its row when sparse, and its
    exceptions in one bytes object; beside it, the shared row when dense."""
    plan = rows.fill_plans[row]
    tokens = np.ascontiguousarray(exc_tokens, np.int32)
    nxt = np.ascontiguousarray(exc_next, np.int32)
    if plan is None:
        head, sparse = (default, vocab_size, 0, 0, 0, tokens.size), ()
    else:
        head = (default, vocab_size, 1, int(plan[0]), plan[1].size, tokens.size)
        sparse = (np.ascontiguousarray(plan[1], np.int32).tobytes(),
                  np.ascontiguousarray(plan[2], np.int32).tobytes())
    packed = b"".join((np.array(head, np.int64).tobytes(), *sparse, tokens.tobytes(), nxt.tobytes()))
    return packed if plan is not None else (packed, rows.bits(row))


def state_record(rows: RowStore, r: StateResult, vocab_size: int) -> bytes | tuple:
    """State `r` as matcher_step.c reads it. The state's exceptions are then read from the
    record, so that they are not held twice."""
    record = pack_record(rows, r.row, r.exc_tokens, r.exc_next,
                         r.default if r.length_next is None else -2, vocab_size)
    packed = record if type(record) is bytes else record[0]
    n = r.exc_tokens.size
    r.share_exceptions(np.frombuffer(packed, np.int32, n, len(packed) - 8 * n),
                       np.frombuffer(packed, np.int32, n, len(packed) - 4 * n))
    return record


def row_index(index) -> int:
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
        # errors and values as the C cursor's (a limit past sys.maxsize is sys.maxsize there)
        if limit is not None:
            try:
                limit = operator.index(limit)
            except TypeError:
                raise TypeError(f"max_rollback must be None or an integer, got "
                                f"{type(limit).__name__}") from None
            if limit < 0:
                raise ValueError("max_rollback must be None or >= 0")
            limit = min(limit, sys.maxsize)
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
        try:
            n = operator.index(n)  # as the C cursor: numpy integers are taken, floats are not
        except TypeError:
            raise TypeError(f"rollback(n): n must be an integer, got {type(n).__name__}") \
                from None
        if n < 0 or n > len(self._states) - 1:
            raise ValueError(f"rollback({n}): only {len(self._states) - 1} tokens can be undone")
        if n:
            del self._states[-n:], self._finished[-n:]

    def fill_bitmask(self, bitmask: torch.Tensor, index: int | None = None) -> None:
        t = self._target
        if t is not None and t[0] is bitmask and t[1] == row_index(index) \
                and t[2] == bitmask.data_ptr() and t[4].nbytes() >= t[5]:
            self._write(t[3])
        else:
            self._fallback(self, bitmask, index)

    def fill_at(self, bitmask: torch.Tensor, index: int | None, data_ptr: int, storage,
                address: int, needed: int) -> None:
        # an array over the address, not tensor.numpy(): that would make the storage unresizable
        row = np.ctypeslib.as_array((ctypes.c_int32 * self.fsm.words).from_address(address))
        self._target = (bitmask, row_index(index), data_ptr, row, storage, needed)
        self._write(row)

    def _write(self, row: np.ndarray) -> None:
        if self._finished[-1]:
            np.copyto(row, self.fsm.finished_row_numpy())
        else:
            self.fsm.fill_row(row, self._states[-1])


def fill_new_target(cursor, bitmask: torch.Tensor, index: int | None) -> None:
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
    if index is not None:  # torch's own errors for a bad row name neither the call nor the row
        try:
            index = operator.index(index)  # ints, numpy integers, one-element integer tensors
        except TypeError:
            raise TypeError(f"fill_bitmask: index must be None or an integer (a row of the "
                            f"bitmask), got {type(index).__name__}") from None
        rows = bitmask.shape[0] if bitmask.dim() else 0
        if not -rows <= index < rows:
            raise IndexError(f"fill_bitmask: row {index} is outside a bitmask of {rows} rows")
    view = bitmask if index is None else bitmask[index]
    fsm = cursor.fsm
    if tuple(view.shape) != (fsm.words,):
        raise ValueError(f"fill_bitmask: the target row must have shape ({fsm.words},), got "
                         f"{tuple(view.shape)}" + ("" if index is None else f" (row {index})"))
    if view.device.type == "cpu" and view.dtype == torch.int32 and not view.requires_grad \
            and tuple(view.shape) == (fsm.words,) and view.is_contiguous() \
            and row_index(index) != -2:
        storage = view.untyped_storage()
        needed = view.data_ptr() - storage.data_ptr() + 4 * fsm.words
        cursor.fill_at(bitmask, index, bitmask.data_ptr(), storage, view.data_ptr(), needed)
    else:
        view.copy_(fsm.finished_row() if cursor.finished else fsm.mask_row(cursor.state))


def new_cursor(fsm: TokenFSM, max_rollback: int | None):
    """A cursor at `fsm`'s start state: the C one where matcher_step.c is built, else `PyCursor`."""
    step = load()
    make = step.Cursor if step is not None else PyCursor
    inputs = fsm.step_inputs()
    return make(fsm, inputs.records, inputs.make_record, inputs.next_state, fill_new_target,
                max_rollback)
