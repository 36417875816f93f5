"""Crossing one DFA state with the vocabulary: which tokens it allows and where each leads.

How one state is computed (`cross_state`): if the state loops on many bytes (a string body, a
run of digits), every token made only of those bytes is allowed and returns to the state — one
cached lookup per distinct byte set — and only tokens that leave the loop are walked. If it
starts a run of alike states (`Chain`: a bounded repeat, a counter), the run's states share one
walk of the tokens that leave the run's byte class. Otherwise the tokens whose first two bytes
the DFA allows are found as contiguous ranges of the sorted vocabulary and walked byte by byte,
all at once with numpy. What is stored of the result is `state_table`'s business.
"""

from __future__ import annotations

import weakref
from bisect import bisect_left

import numpy as np

from .automaton import DEAD, DFA
from .vocab_index import VocabIndex


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
