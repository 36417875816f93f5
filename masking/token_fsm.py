"""The token FSM: a byte DFA crossed with a vocabulary.

For every DFA state: which tokens may come next (an int32 bitmask row, bit 1 = allowed) and the
state each allowed token leads to. The next-state table is stored as a default per state plus
the exceptions, sorted by token: a string body sends nearly every token back to itself, so a
262k vocabulary costs a few entries per state rather than a dense row.

How one state is computed (`_cross_state`): if the state loops on many bytes (a string body, a
run of digits), every token made only of those bytes is allowed and returns to the state — one
cached lookup per distinct byte set — and only tokens that leave the loop are walked. Otherwise
the tokens whose first two bytes the DFA allows are found as contiguous ranges of the sorted
vocabulary and walked byte by byte, all at once with numpy.
"""

from __future__ import annotations

import numpy as np
import torch

from .automaton import DEAD, DFA
from .vocab_index import VocabIndex

# a state whose self-loop covers at least this many bytes takes the loop path
_LOOP_MIN_BYTES = 8


class StateResult:
    __slots__ = ("row", "default", "exc_tokens", "exc_next", "count", "single")

    def __init__(self, row: int, default: int, exc_tokens: np.ndarray, exc_next: np.ndarray,
                 count: int, single: int):
        self.row = row                # index of the state's bitmask row
        self.default = default        # next state of allowed tokens without an exception, or -1
        self.exc_tokens = exc_tokens  # sorted int32 token ids whose next state differs
        self.exc_next = exc_next
        self.count = count            # number of allowed tokens (EOS included)
        self.single = single          # the only allowed token, or -1


def _walk(index: VocabIndex, trans: np.ndarray, pos_sorted: np.ndarray, depth: np.ndarray,
          states: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Advance tokens (by sorted position) from `depth` bytes in, at DFA `states`, to their ends.
    Returns the sorted positions that survive and their final states."""
    done_pos, done_state = [], []
    length, start, buf = index.length, index.start, index.buf
    while pos_sorted.size:
        finished = depth == length[pos_sorted]
        if finished.any():
            done_pos.append(pos_sorted[finished])
            done_state.append(states[finished])
            keep = ~finished
            pos_sorted, depth, states = pos_sorted[keep], depth[keep], states[keep]
            if not pos_sorted.size:
                break
        states = trans[states, buf[start[pos_sorted] + depth]]
        alive = states != DEAD
        pos_sorted, depth, states = pos_sorted[alive], depth[alive] + 1, states[alive]
    if not done_pos:
        return np.zeros(0, np.int64), np.zeros(0, np.int64)
    return np.concatenate(done_pos), np.concatenate(done_state)


def _ranges_to_positions(lo: np.ndarray, hi: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Concatenate the ranges [lo, hi); also return which range each position came from."""
    sizes = hi - lo
    keep = sizes > 0
    lo, sizes = lo[keep], sizes[keep]
    which = np.flatnonzero(keep)
    total = int(sizes.sum())
    if total == 0:
        return np.zeros(0, np.int64), np.zeros(0, np.int64)
    owner = np.repeat(np.arange(len(lo)), sizes)
    offsets = np.arange(total) - np.repeat(np.cumsum(sizes) - sizes, sizes)
    return lo[owner] + offsets, which[owner]


def cross_state(dfa: DFA, index: VocabIndex, s: int) -> tuple[np.ndarray, np.ndarray, np.ndarray | None]:
    """The allowed tokens of DFA state `s`: (token ids, next states) for walked tokens, and a
    bool mask over the vocabulary of tokens that loop back to `s` (or None)."""
    trans = dfa.trans
    row = trans[s]
    in_loop = row == s
    loop_mask = None
    if int(in_loop.sum()) >= _LOOP_MIN_BYTES:
        prefix, loop_mask = index.loop_prefix(in_loop)
        leaving = np.flatnonzero(prefix < index.length)
        if leaving.size:
            depth = prefix[leaving]
            states = trans[s, index.buf[index.start[leaving] + depth]]
            alive = states != DEAD
            pos, st = _walk(index, trans, leaving[alive], depth[alive] + 1, states[alive])
        else:
            pos, st = leaving, leaving
        if not loop_mask.any():
            loop_mask = None
        return index.order[pos], st, loop_mask

    first = np.flatnonzero(row != DEAD)
    if first.size == 0:
        return np.zeros(0, np.int64), np.zeros(0, np.int64), None
    q1 = row[first].astype(np.int64)
    bounds = index.pair_bounds
    # one-byte tokens
    base = first * 257
    one_lo, one_hi = bounds[base], bounds[base + 1]
    pos1, which1 = _ranges_to_positions(one_lo, one_hi)
    st1 = q1[which1]
    # two-byte prefixes the DFA allows
    nxt = trans[q1]                                   # (n1, 256)
    a, b = np.nonzero(nxt != DEAD)
    keys = base[a] + b + 1
    pos2, which2 = _ranges_to_positions(bounds[keys], bounds[keys + 1])
    st2 = nxt[a, b][which2].astype(np.int64)
    pos_w, st_w = _walk(index, trans, pos2, np.full(pos2.size, 2, np.int64), st2)
    pos = np.concatenate([pos1, pos_w])
    st = np.concatenate([st1, st_w])
    return index.order[pos], st, None


class RowStore:
    """Distinct bitmask rows, deduplicated by content."""

    def __init__(self, words: int):
        self.words = words
        self.rows: list[np.ndarray] = []
        self.by_bytes: dict[bytes, int] = {}
        self._tensor: torch.Tensor | None = None
        self._tensor_rows = 0

    def add(self, row: np.ndarray) -> int:
        key = row.tobytes()
        got = self.by_bytes.get(key)
        if got is None:
            got = len(self.rows)
            self.rows.append(row)
            self.by_bytes[key] = got
        return got

    def tensor(self) -> torch.Tensor:
        """All rows as one int32 tensor (R, W), rebuilt only when rows were added."""
        if self._tensor is None or self._tensor_rows != len(self.rows):
            stacked = np.stack(self.rows) if self.rows else np.zeros((0, self.words), np.int32)
            self._tensor = torch.from_numpy(stacked.view(np.int32))
            self._tensor_rows = len(self.rows)
        return self._tensor


def bitmask_row(size: int, words: int, token_ids: np.ndarray, base_mask: np.ndarray | None) -> np.ndarray:
    if base_mask is not None or token_ids.size > 4096:
        allowed = base_mask.copy() if base_mask is not None else np.zeros(size, bool)
        allowed[token_ids] = True
        padded = np.zeros(words * 32, bool)
        padded[:size] = allowed
        return np.packbits(padded, bitorder="little").view(np.int32)
    row = np.zeros(words, np.uint32)
    np.bitwise_or.at(row, token_ids >> 5, np.left_shift(np.uint32(1), (token_ids & 31).astype(np.uint32)))
    return row.view(np.int32)


def state_result(s: int, token_ids: np.ndarray, next_states: np.ndarray, loop_mask: np.ndarray | None,
                 accepting: bool, eos_ids: list[int], size: int, words: int,
                 rows: RowStore) -> StateResult:
    if accepting and eos_ids:
        eos = np.asarray(eos_ids, np.int64)
        token_ids = np.concatenate([token_ids, eos])
        next_states = np.concatenate([next_states, np.full(eos.size, s, np.int64)])
    count = int(token_ids.size) + (int(loop_mask.sum()) if loop_mask is not None else 0)
    if loop_mask is not None:
        default = s
    elif next_states.size:
        default = int(np.bincount(next_states).argmax())
    else:
        default = -1
    is_exc = next_states != default
    if accepting and eos_ids:
        is_exc[-len(eos_ids):] = True  # EOS always has its own entry
    order = np.argsort(token_ids[is_exc], kind="stable")
    exc_tokens = token_ids[is_exc][order].astype(np.int32)
    exc_next = next_states[is_exc][order].astype(np.int32)
    row = rows.add(bitmask_row(size, words, token_ids, loop_mask))
    single = -1
    if count == 1:
        single = int(token_ids[0]) if token_ids.size else int(np.flatnonzero(loop_mask)[0])
    return StateResult(row, default, exc_tokens, exc_next, count, single)
