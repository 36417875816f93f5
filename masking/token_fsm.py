"""The token FSM: a byte DFA crossed with a vocabulary.

For every DFA state: which tokens may come next (an int32 bitmask row, bit 1 = allowed) and the
state each allowed token leads to. The next-state table is stored as a default per state plus
the exceptions, sorted by token: a string body sends nearly every token back to itself, so a
262k vocabulary costs a few entries per state rather than a dense row. Where the next state
follows the token's byte length (a bounded repeat), a state keeps one per length instead of the
default. Rows are stored once each (`RowStore`), sparse ones as the words that differ from
all-zero or all-one.

How one state is computed (`cross_state`): if the state loops on many bytes (a string body, a
run of digits), every token made only of those bytes is allowed and returns to the state — one
cached lookup per distinct byte set — and only tokens that leave the loop are walked. If it
starts a run of alike states (`Chain`: a bounded repeat, a counter), the run's states share one
walk of the tokens that leave the run's byte class. Otherwise the tokens whose first two bytes
the DFA allows are found as contiguous ranges of the sorted vocabulary and walked byte by byte,
all at once with numpy.
"""

from __future__ import annotations

import weakref
from bisect import bisect_left

import numpy as np
import torch

from .automaton import DEAD, DFA
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


def _walk(index: VocabIndex, dfa: DFA, pos_sorted: np.ndarray, depth: np.ndarray,
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
        trans = dfa.ensure(states)
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
    row = dfa.row(s)
    first = np.flatnonzero(row != DEAD)
    if first.size == 0:
        return np.zeros(0, np.int64), np.zeros(0, np.int64), None
    bounds = index.pair_bounds
    candidates = int((bounds[(first + 1) * 257] - bounds[first * 257]).sum())
    members, rel = loop_component(dfa, s) if candidates >= _COMPONENT_MIN_CANDIDATES else (None, None)
    if rel is not None and int((rel[0] >= 0).sum()) >= _COMPONENT_MIN_BYTES:
        end_rel, exit_pos, exit_rel, loop_mask = index.component_walk(rel)
        ends_inside = np.flatnonzero(end_rel > 0)   # inside the component but not back at s
        leaving = np.flatnonzero(exit_rel >= 0)
        if leaving.size:
            before = members[exit_rel[leaving]]
            states = dfa.ensure(before)[before, index.buf[index.start[leaving] + exit_pos[leaving]]]
            alive = states != DEAD
            pos, st = _walk(index, dfa, leaving[alive], exit_pos[leaving][alive] + 1, states[alive])
        else:
            pos, st = leaving, leaving
        pos = np.concatenate([ends_inside, pos])
        st = np.concatenate([members[end_rel[ends_inside]], st])
        return index.order[pos], st, (loop_mask if loop_mask.any() else None)
    if candidates >= _COMPONENT_MIN_CANDIDATES:
        chain = chain_of(dfa, s, index.max_length + 1)
        if chain is not None:
            return cross_chain(dfa, index, chain)
    return _descend(index, dfa, s, first)


# a state sends at least this many bytes to one next state for it to start a run (below)
_CHAIN_MIN_BYTES = 8


class Chain:
    """A run of states that behave alike: `states[j]` sends every byte of `in_class` to
    `states[j + 1]` (the last one to `after`, which may be DEAD) and every other byte where
    `states[0]` sends it. A bounded repeat (`[0-9A-Za-z_-]{1,64}`) is such a run, one state per
    position. Where a token leaves the class, and where the rest of it leads from there, do not
    depend on the position: that walk is shared by all the run's states (`exits`)."""

    __slots__ = ("states", "in_class", "row", "after")

    def __init__(self, states: list[int], in_class: np.ndarray, row: np.ndarray, after: int):
        self.states, self.in_class, self.row, self.after = states, in_class, row, after


def chain_of(dfa: DFA, s: int, max_states: int) -> Chain | None:
    """The run that starts at `s`, at most `max_states` long (one more than the longest token:
    no token reaches further, and a longer run would cost each of its states a longer scan).
    The class is the bytes that lead to one next state; every such set of at least
    `_CHAIN_MIN_BYTES` bytes is tried, most bytes first (in a counter such as `.*[0-9a-z]{32}`
    the run goes on with the 36 class bytes while the more numerous others reset it)."""
    row = dfa.row(s)
    live = row[row != DEAD]
    if live.size < _CHAIN_MIN_BYTES:
        return None
    values, counts = np.unique(live, return_counts=True)
    for i in np.argsort(-counts, kind="stable").tolist():
        q = int(values[i])
        if counts[i] < _CHAIN_MIN_BYTES:
            break
        if q == s:
            continue
        chain = _run_from(dfa, s, row, row == q, max_states)
        if chain is not None:
            return chain
    return None


def _run_from(dfa: DFA, s: int, row: np.ndarray, in_class: np.ndarray, max_states: int) -> Chain | None:
    outside = row[~in_class]
    states, seen, nxt = [s], {s}, int(row[in_class][0])
    while nxt != DEAD and nxt not in seen and len(states) < max_states:
        r = dfa.row(nxt)
        inside = r[in_class]
        if not ((inside == inside[0]).all() and np.array_equal(r[~in_class], outside)):
            break
        states.append(nxt)
        seen.add(nxt)
        nxt = int(inside[0])
    if len(states) < 2:
        return None
    return Chain(states, in_class, row, nxt)


_exits: "weakref.WeakKeyDictionary[DFA, dict]" = weakref.WeakKeyDictionary()


def chain_exits(dfa: DFA, index: VocabIndex, chain: Chain):
    """For the tokens that leave the run's byte class: the first byte outside it goes where the
    run's states send it, and the rest of the token is walked from there. Returns the sorted
    positions of the tokens that survive, how many class bytes each starts with, and the state
    each ends in. Computed once per DFA, vocabulary, class and row."""
    memo = _exits.setdefault(dfa, {})
    # the walk reads the row only outside the class, where every state of the run agrees
    key = (id(index), chain.in_class.tobytes(), chain.row[~chain.in_class].tobytes())
    got = memo.get(key)
    if got is None:
        run = index.class_run(chain.in_class)
        pos = np.flatnonzero(run < index.length)
        nxt = chain.row[index.buf[index.start[pos] + run[pos]]]
        alive = nxt != DEAD
        pos, nxt = pos[alive], nxt[alive]
        done, state = _walk(index, dfa, pos, run[pos].astype(np.int64) + 1, nxt)
        got = memo[key] = (done, run[done], state)
    return got


def cross_chain(dfa: DFA, index: VocabIndex, chain: Chain) -> tuple[np.ndarray, np.ndarray, None]:
    """`cross_state` of `chain.states[0]`, from the class runs of the tokens and the shared exits."""
    m = len(chain.states) - 1
    run = index.class_run(chain.in_class)          # leading bytes of each token in the class
    length = index.length
    inside = np.flatnonzero((run == length) & (length <= m))   # ends inside the run
    st_inside = np.asarray(chain.states, np.int64)[length[inside]]
    exit_pos, exit_run, exit_state = chain_exits(dfa, index, chain)
    leaves = exit_run <= m                          # leaves the class at a state of the run
    pos, st = [inside, exit_pos[leaves]], [st_inside, exit_state[leaves]]
    if chain.after != DEAD:                         # tokens that run past the last state
        past = np.flatnonzero(run > m)
        p2, s2 = _walk(index, dfa, past, np.full(past.size, m + 1, np.int64),
                       np.full(past.size, chain.after, np.int64))
        pos.append(p2)
        st.append(s2)
    pos, st = np.concatenate(pos), np.concatenate(st)
    return index.order[pos], st, None


# below this many tokens, or past this many allowed bytes, a range is walked rather than split
_WALK_RANGE = 48
_DESCEND_MAX_BRANCH = 4


def _descend(index: VocabIndex, dfa: DFA, s: int, first: np.ndarray):
    """Split the sorted vocabulary by the bytes the DFA allows, as a trie descent by binary
    search, while few bytes are allowed (literal text: names, punctuation); walk the ranges left."""
    toks, lengths = index.sorted_tokens, index.length_list
    bounds = index.pair_bounds
    done_pos: list[int] = []
    done_state: list[int] = []
    walk_lo, walk_hi, walk_depth, walk_state = [], [], [], []
    row = dfa.row(s)
    stack = [(int(row[b]), bytes((b,)), int(bounds[b * 257]), int(bounds[(b + 1) * 257]))
             for b in first.tolist()]
    while stack:
        q, prefix, lo, hi = stack.pop()
        if lo >= hi:
            continue
        d = len(prefix)
        while lo < hi and lengths[lo] == d:  # the tokens spelling exactly the prefix sort first
            done_pos.append(lo)
            done_state.append(q)
            lo += 1
        if lo >= hi:
            continue
        nxt_bytes = dfa.allowed_bytes_of(q)
        if hi - lo <= _WALK_RANGE or len(nxt_bytes) > _DESCEND_MAX_BRANCH:
            walk_lo.append(lo)
            walk_hi.append(hi)
            walk_depth.append(d)
            walk_state.append(q)
            continue
        row = dfa.row(q)
        for b in nxt_bytes:
            p2 = prefix + bytes((b,))
            l2 = bisect_left(toks, p2, lo, hi)
            h2 = bisect_left(toks, prefix + bytes((b + 1,)), l2, hi) if b < 255 else hi
            if h2 > l2:
                stack.append((int(row[b]), p2, l2, h2))
    pos_w = np.zeros(0, np.int64)
    st_w = np.zeros(0, np.int64)
    if walk_lo:
        lo_a, hi_a = np.asarray(walk_lo, np.int64), np.asarray(walk_hi, np.int64)
        pos, which = _ranges_to_positions(lo_a, hi_a)
        pos_w, st_w = _walk(index, dfa, pos, np.asarray(walk_depth, np.int64)[which],
                            np.asarray(walk_state, np.int64)[which])
    pos = np.concatenate([np.asarray(done_pos, np.int64), pos_w])
    st = np.concatenate([np.asarray(done_state, np.int64), st_w])
    return index.order[pos], st, None


# states within this many bytes of each other, both ways, form a loop component: enough for a
# string body with its escapes and multi-byte UTF-8 characters, while the long cycles of a
# repeated call (`[f(...), g(...)]`) stay out, so every string body gets the same shape
_LOOP_RADIUS = 4
# a state takes the component path when this many tokens start with a byte it allows
_COMPONENT_MIN_CANDIDATES = 20_000
_COMPONENT_MIN_BYTES = 8  # ... and this many of its bytes stay in its loop component


def _near(dfa: DFA, s: int, radius: int) -> set[int]:
    """States within `radius` bytes of `s` both ways. A path of length <= radius from x back to s
    only visits states within 2 * radius - 1 of s, so the backward search needs no more of the
    DFA than that forward ball (a `StackDFA` computes only those rows)."""
    dist, frontier, edges = {s: 0}, [s], {}
    for d in range(1, 2 * radius):
        nxt = []
        for x in frontier:
            targets = dfa.successors_of(x)
            edges[x] = targets
            for t in targets:
                if t not in dist:
                    dist[t] = d
                    nxt.append(t)
        frontier = nxt
    preds: dict[int, list[int]] = {}
    for x, targets in edges.items():
        for t in targets:
            preds.setdefault(t, []).append(x)
    back, frontier = {s}, [s]
    for _ in range(radius):
        nxt = []
        for x in frontier:
            for p in preds.get(x, ()):
                if p not in back:
                    back.add(p)
                    nxt.append(p)
        frontier = nxt
    return {x for x in back if dist.get(x, radius + 1) <= radius}


def loop_component(dfa: DFA, s: int) -> tuple[np.ndarray, np.ndarray]:
    """The states on short cycles through `s`, numbered breadth-first from `s` by byte order, and
    the component's own table: `rel[i, b]` is the component index of the next state, or -1 where
    byte b leaves the component. Components of the same shape (the string bodies of different
    arguments) get byte-identical tables, so their token walks are computed once."""
    near = _near(dfa, s, _LOOP_RADIUS)
    order, seen, qi = [s], {s}, 0
    while qi < len(order):
        row = dfa.row(order[qi])
        qi += 1
        for t in row.tolist():
            if t in near and t not in seen:
                seen.add(t)
                order.append(t)
    members = np.asarray(order, np.int64)
    table = dfa.ensure(members)[members]
    # component index of every target (-1 outside it), without a table as large as the DFA
    sorter = np.argsort(members)
    pos = np.minimum(np.searchsorted(members, table, sorter=sorter), len(members) - 1)
    rel = np.where(members[sorter[pos]] == table, sorter[pos], -1).astype(np.int64)
    return members, np.ascontiguousarray(rel)


# a row with at most this many words that are not all-zero (or not all-one) is kept sparse: it is
# filled by a memset of the destination plus a scatter of those words (most literal states allow
# a handful of tokens, and their dense rows would be read whole from memory on every visit), and
# stored and cached in that form
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
