"""What a token FSM stores per state: its mask row and its next-state table.

For every DFA state: which tokens may come next (an int32 bitmask row, bit 1 = allowed) and the
state each allowed token leads to. The next-state table is stored as a default per state plus
the exceptions, sorted by token: a string body sends nearly every token back to itself, so a
262k vocabulary costs a few entries per state rather than a dense row. Where the next state
follows the token's byte length (a bounded repeat), a state keeps one per length instead of the
default. Rows are stored once each (`RowStore`), sparse ones as the words that differ from
all-zero or all-one. `crossing` computes what goes in.
"""

from __future__ import annotations

from bisect import bisect_left

import numpy as np
import torch

from .vocab_index import VocabIndex


class StateResult:
    __slots__ = ("row", "default", "exc_tokens", "exc_next", "count", "single", "tokens_view",
                 "next_view", "length_next", "lengths")

    def __init__(self, row: int, default: int, exc_tokens: np.ndarray, exc_next: np.ndarray,
                 count: int | None, single: int, length_next: list[int] | None = None,
                 lengths: list[int] | None = None):
        self.row = row                # index of the state's bitmask row
        self.default = default        # next state of allowed tokens without an exception, or -1
        self.exc_tokens = exc_tokens  # sorted int32 token ids whose next state differs
        self.exc_next = exc_next
        self.count = count            # number of allowed tokens (EOS included), None: not counted
        self.single = single          # the only allowed token, or -1
        # or, in place of the default: the next state by the token's byte length (a bounded
        # repeat, where k more bytes lead k positions on); `lengths` is the vocabulary's
        self.length_next = length_next
        self.lengths = lengths
        # zero-copy views for the per-token lookup: bisect on a memoryview reads Python ints
        # directly (np.searchsorted with a Python int casts the whole array first), and making
        # them here keeps allocations, and so garbage collections, out of the decode step
        self.tokens_view = memoryview(np.ascontiguousarray(exc_tokens, np.int32))
        self.next_view = memoryview(np.ascontiguousarray(exc_next, np.int32))

    def share_exceptions(self, tokens: np.ndarray, nxt: np.ndarray) -> None:
        """Read the exceptions from equal int32 arrays held elsewhere (a native record)."""
        self.exc_tokens, self.exc_next = tokens, nxt
        self.tokens_view, self.next_view = memoryview(tokens), memoryview(nxt)

    def next_state(self, token_id: int) -> int:
        """The next state of an allowed token: its exception, else its length's or the default."""
        tokens = self.tokens_view
        i = bisect_left(tokens, token_id)
        if i < len(tokens) and tokens[i] == token_id:
            return self.next_view[i]
        if self.length_next is not None:
            return self.length_next[self.lengths[token_id]]
        return self.default

    def targets(self) -> set[int]:
        """Every state an allowed token may lead to."""
        nxt = self.exc_next
        # most of a large state's exceptions share a few next states: count, do not hash each
        out = set((np.flatnonzero(np.bincount(nxt)) if nxt.size > 256 else nxt).tolist())
        out.update(self.length_next if self.length_next is not None else ())
        if self.default >= 0:
            out.add(self.default)
        return out

    def next_states(self, token_ids: np.ndarray, lengths: np.ndarray) -> np.ndarray:
        """`next_state` of many allowed tokens at once (`lengths`: the vocabulary's byte lengths)."""
        if self.length_next is not None:
            out = np.asarray(self.length_next, np.int64)[lengths[token_ids]]
        else:
            out = np.full(token_ids.size, self.default, np.int64)
        if self.exc_tokens.size:
            i = np.minimum(np.searchsorted(self.exc_tokens, token_ids), self.exc_tokens.size - 1)
            hit = self.exc_tokens[i] == token_ids
            out[hit] = self.exc_next[i[hit]]
        return out



_SPARSE_FILL_WORDS = 256

Plan = tuple[int, np.ndarray, np.ndarray]  # (background word, word indices, their values)


class RowStore:
    """Distinct bitmask rows, deduplicated by content. A sparse row is kept as its fill plan and a
    dense row as its array, each with its bytes (for bit tests without numpy scalars: bit t is bit
    t & 7 of byte t >> 3; while compiling they are also the deduplication key); what a row lacks
    (a sparse row's dense array and torch view, a loaded row's bytes) is made on first use. A
    store loaded from the cache (`from_compact`) is complete: rows added to it later are not
    deduplicated against the loaded ones."""

    def __init__(self, words: int):
        self.words = words
        self.fill_plans: list[Plan | None] = []
        self._dense: list[np.ndarray | None] = []
        self._torch: list[torch.Tensor | None] = []
        self.bytes_rows: list[bytes | None] = []
        self.by_bytes: dict[bytes, int] = {}

    def __len__(self) -> int:
        return len(self.fill_plans)

    def add(self, row: np.ndarray) -> int:
        key = row.tobytes()
        got = self.by_bytes.get(key)
        if got is None:
            got = len(self.fill_plans)
            plan = _fill_plan(row)
            self.fill_plans.append(plan)
            self._dense.append(row if plan is None else None)
            self._torch.append(None)
            self.bytes_rows.append(key)
            self.by_bytes[key] = got
        return got

    def dense(self, i: int) -> np.ndarray:
        row = self._dense[i]
        if row is None:
            row = np.empty(self.words, np.int32)
            self.fill(row, i)
            self._dense[i] = row
        return row

    def torch_row(self, i: int) -> torch.Tensor:
        got = self._torch[i]
        if got is None:
            got = self._torch[i] = torch.from_numpy(self.dense(i))
        return got

    def bits(self, i: int) -> bytes:
        got = self.bytes_rows[i]
        if got is None:
            got = self.bytes_rows[i] = self.dense(i).tobytes()
        return got

    def fill(self, dst: np.ndarray, i: int) -> None:
        """Write row `i` into the int32 array `dst`."""
        plan = self.fill_plans[i]
        if plan is None:
            np.copyto(dst, self._dense[i])
        else:
            dst.fill(plan[0])
            dst[plan[1]] = plan[2]

    def tensor(self) -> torch.Tensor:
        """All rows as one int32 tensor (R, W)."""
        out = np.empty((len(self), self.words), np.int32)
        for i in range(len(self)):
            self.fill(out[i], i)
        return torch.from_numpy(out)

    def nbytes(self) -> int:
        """Bytes of the rows held: plans, and the dense arrays and bytes made so far."""
        total = 0
        for plan, row, key in zip(self.fill_plans, self._dense, self.bytes_rows):
            total += (plan[1].nbytes + plan[2].nbytes) if plan is not None else 0
            total += (row.nbytes if row is not None else 0) + (len(key) if key is not None else 0)
        return total

    def count(self, i: int) -> int:
        """Set bits of row `i` (its allowed tokens), from the plan when it is sparse."""
        plan = self.fill_plans[i]
        if plan is None:
            return int(np.unpackbits(self._dense[i].view(np.uint8)).sum())
        background, idx, vals = plan
        return int(np.unpackbits(vals.view(np.uint8)).sum()) + \
            (32 * (self.words - idx.size) if background == -1 else 0)

    # -- the compact form the on-disk cache stores --------------------------------------------
    def compact(self) -> dict[str, torch.Tensor]:
        """Dense rows stacked, sparse rows as concatenated plans; `row_dense[i]` is row i's
        index among the dense rows, or -1 when it is sparse."""
        dense_ids = [i for i, p in enumerate(self.fill_plans) if p is None]
        plans = [p if p is not None else (0, np.zeros(0, np.int64), np.zeros(0, np.int32))
                 for p in self.fill_plans]
        sizes = np.array([p[1].size for p in plans], np.int64)
        offsets = np.zeros(len(plans) + 1, np.int64)
        np.cumsum(sizes, out=offsets[1:])
        position = np.full(len(plans), -1, np.int64)
        position[dense_ids] = np.arange(len(dense_ids))
        cat = lambda xs, dt: np.concatenate(xs).astype(dt) if xs else np.zeros(0, dt)  # noqa: E731
        dense = (np.stack([self._dense[i] for i in dense_ids]) if dense_ids
                 else np.zeros((0, self.words), np.int32))
        return {
            "rows_dense": torch.from_numpy(dense),
            "row_dense": torch.from_numpy(position),
            "row_background": torch.tensor([p[0] for p in plans], dtype=torch.int32),
            "row_offsets": torch.from_numpy(offsets),
            "row_words": torch.from_numpy(cat([p[1] for p in plans], np.int32)),
            "row_values": torch.from_numpy(cat([p[2] for p in plans], np.int32)),
        }

    @classmethod
    def from_compact(cls, words: int, t: dict[str, torch.Tensor]) -> "RowStore":
        self = cls(words)
        dense = t["rows_dense"].numpy()
        position = t["row_dense"].tolist()
        background = t["row_background"].tolist()
        offsets = t["row_offsets"].tolist()
        idx, vals = t["row_words"].numpy().astype(np.intp), t["row_values"].numpy()
        for i, d in enumerate(position):
            if d >= 0:
                self.fill_plans.append(None)
                self._dense.append(dense[d])
            else:
                self.fill_plans.append((background[i], idx[offsets[i]:offsets[i + 1]],
                                        vals[offsets[i]:offsets[i + 1]]))
                self._dense.append(None)
        self._torch = [None] * len(position)
        self.bytes_rows = [None] * len(position)
        return self


def _fill_plan(row: np.ndarray) -> Plan | None:
    """(background word, word indices, their values) for a sparse row, or None: copy it whole."""
    for background in (0, -1):
        idx = np.flatnonzero(row != background)
        if idx.size <= _SPARSE_FILL_WORDS:
            return background, idx, row[idx].copy()
    return None


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


# past this many exceptions, a state whose next states follow the tokens' byte lengths keeps a
# next state per length instead of one default, when that halves the exceptions
_LENGTH_MIN_EXCEPTIONS = 1024


def _next_by_length(lengths: np.ndarray, next_states: np.ndarray, default: int) -> np.ndarray:
    """The most common next state of each token length (`default` for lengths not present).
    Counted in a (length, next state) grid over the few distinct next states: no sort."""
    present = np.zeros(int(next_states.max()) + 1, bool)
    present[next_states] = True
    states = np.flatnonzero(present)
    rank = np.zeros(present.size, np.int64)
    rank[states] = np.arange(states.size)
    width = int(lengths.max()) + 1
    grid = np.bincount(lengths * states.size + rank[next_states],
                       minlength=width * states.size).reshape(width, states.size)
    return np.where(grid.any(axis=1), states[grid.argmax(axis=1)], default)


def _sorted_by_token(tokens: np.ndarray, next_states: np.ndarray, size: int) -> tuple[np.ndarray, np.ndarray]:
    """Exceptions sorted by token id, as int32 (tokens are distinct). Many are placed through a
    vocabulary-sized scratch row instead of an argsort."""
    if tokens.size <= 4096:
        order = np.argsort(tokens, kind="stable")
        return tokens[order].astype(np.int32), next_states[order].astype(np.int32)
    by_id = np.full(size, -1, np.int32)
    by_id[tokens] = next_states
    ids = np.flatnonzero(by_id >= 0)
    return ids.astype(np.int32), by_id[ids]


def state_result(s: int, token_ids: np.ndarray, next_states: np.ndarray, loop_mask: np.ndarray | None,
                 accepting: bool, eos_ids: list[int], size: int, words: int,
                 rows: RowStore, index: VocabIndex | None = None) -> StateResult:
    if accepting and eos_ids:
        eos = np.asarray(eos_ids, np.int64)
        token_ids = np.concatenate([token_ids, eos])
        next_states = np.concatenate([next_states, np.full(eos.size, s, np.int64)])
    if loop_mask is not None and next_states.size:
        # the loop back to `s` is the default only if it is the most common next state
        n_loop = int(loop_mask.sum())
        counts = np.bincount(next_states)
        if counts.max() > n_loop:
            loop_ids = np.flatnonzero(loop_mask)
            token_ids = np.concatenate([token_ids, loop_ids])
            next_states = np.concatenate([next_states, np.full(loop_ids.size, s, np.int64)])
            loop_mask = None
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
    length_next = None
    if index is not None and loop_mask is None and int(is_exc.sum()) > _LENGTH_MIN_EXCEPTIONS:
        lengths = index.id_length[token_ids]
        table = _next_by_length(lengths, next_states, default)
        by_length = next_states != table[lengths]
        if accepting and eos_ids:
            by_length[-len(eos_ids):] = True
        if 2 * int(by_length.sum()) <= int(is_exc.sum()):
            is_exc, length_next = by_length, table.tolist()
    exc_tokens, exc_next = _sorted_by_token(token_ids[is_exc], next_states[is_exc], size)
    row = rows.add(bitmask_row(size, words, token_ids, loop_mask))
    single = -1
    if count == 1:
        single = int(token_ids[0]) if token_ids.size else int(np.flatnonzero(loop_mask)[0])
    return StateResult(row, default, exc_tokens, exc_next, count, single, length_next,
                       index.id_length_list if length_next is not None else None)
