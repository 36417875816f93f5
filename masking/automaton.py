"""Byte-level automata: an NFA builder, subset construction, minimization.

Every regex, literal and terminal becomes a minimized `DFA` over bytes; a terminal built from
others embeds their DFAs into a fresh NFA and is determinized and minimized again. The same NFA
builder, with one symbol per edge, builds the rules' symbol automata (`grammar.symbol_dfa`), and
`minimize` also reduces the whole grammar's explored DFA (`stack_dfa.StackDFA.explore`).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

import numpy as np

from .compile_errors import GrammarCompileError
from .regex import utf8_sequences

DEAD = -1


@dataclass(eq=False)
class DFA:
    """A trimmed, minimized DFA over bytes. State 0 is the start; `trans[s, b]` is DEAD (-1)
    where no accepted string continues. Every state can reach an accepting state."""

    trans: np.ndarray      # (S, 256) int32
    accepting: np.ndarray  # (S,) bool
    # memos of the methods below, computed on first use
    _edges: list | None = field(default=None, repr=False)
    _succ: list | None = field(default=None, repr=False)
    _allowed: list | None = field(default=None, repr=False)
    _pred: list | None = field(default=None, repr=False)

    @property
    def num_states(self) -> int:
        return int(self.trans.shape[0])

    @property
    def is_empty(self) -> bool:
        return self.num_states == 0

    def edges(self) -> list[tuple[int, int, int, int]]:
        """Runs of bytes with one target: (state, lo, hi, target), computed once."""
        if self._edges is None:
            edges = []
            for s in range(self.num_states):
                row = self.trans[s]
                cuts = np.flatnonzero(row[1:] != row[:-1]) + 1
                bounds = [0, *cuts.tolist(), 256]
                for lo, hi in zip(bounds[:-1], bounds[1:]):
                    t = int(row[lo])
                    if t != DEAD:
                        edges.append((s, lo, hi - 1, t))
            self._edges = edges
        return self._edges

    def successors(self) -> list[list[int]]:
        if self._succ is None:
            self._succ = [sorted(set(row[row != DEAD].tolist())) for row in self.trans]
        return self._succ

    def allowed_bytes(self) -> list[list[int]]:
        """Per state, the bytes that do not lead to DEAD."""
        if self._allowed is None:
            self._allowed = [np.flatnonzero(row != DEAD).tolist() for row in self.trans]
        return self._allowed

    def predecessors(self) -> list[list[int]]:
        if self._pred is None:
            pred: list[list[int]] = [[] for _ in range(self.num_states)]
            for s, targets in enumerate(self.successors()):
                for t in targets:
                    pred[t].append(s)
            self._pred = pred
        return self._pred

    # the reading interface shared with `StackDFA` (whose rows are computed on demand)
    def ensure(self, states) -> np.ndarray:
        return self.trans

    def row(self, s: int) -> np.ndarray:
        return self.trans[s]

    def allowed_bytes_of(self, s: int) -> list[int]:
        return self.allowed_bytes()[s]

    def successors_of(self, s: int) -> list[int]:
        return self.successors()[s]

    def used_bytes(self) -> np.ndarray:
        return (self.trans != DEAD).any(axis=0)

    def accepts(self, data: bytes) -> bool:
        if self.is_empty:
            return False
        s = 0
        for b in data:
            s = int(self.trans[s, b])
            if s == DEAD:
                return False
        return bool(self.accepting[s])


def empty_dfa() -> DFA:
    return DFA(np.zeros((0, 256), np.int32), np.zeros(0, bool))


def literal_dfa(data: bytes) -> DFA:
    """The minimal DFA of one byte string: a chain, numbered from the start. Equal to what
    determinize + minimize make of it, built directly: literals are most of a grammar's leaves."""
    n = len(data)
    trans = np.full((n + 1, 256), DEAD, np.int32)
    trans[np.arange(n), np.frombuffer(data, np.uint8)] = np.arange(1, n + 1, dtype=np.int32)
    accepting = np.zeros(n + 1, bool)
    accepting[n] = True
    return DFA(trans, accepting)


class NFA:
    """A Thompson-style NFA over bytes with epsilon moves; fragments are (start, end) pairs."""

    def __init__(self, max_states: int = 2_000_000):
        self.eps: list[list[int]] = []
        self.edges: list[list[tuple[int, int, int]]] = []
        self.max_states = max_states
        self._closures: dict[tuple[int, int], frozenset] = {}  # closure's memo

    def state(self) -> int:
        if len(self.eps) >= self.max_states:
            raise GrammarCompileError(
                f"the automaton grew past {self.max_states} states; bound the repetitions "
                "or the recursion depth of the grammar")
        self.eps.append([])
        self.edges.append([])
        return len(self.eps) - 1

    def fragment_empty_string(self) -> tuple[int, int]:
        a = self.state()
        return a, a

    def fragment_nothing(self) -> tuple[int, int]:
        """A fragment that matches no string at all."""
        return self.state(), self.state()

    def fragment_bytes(self, data: bytes) -> tuple[int, int]:
        start = cur = self.state()
        for b in data:
            nxt = self.state()
            self.edges[cur].append((b, b, nxt))
            cur = nxt
        return start, cur

    def fragment_symbol(self, symbol: int) -> tuple[int, int]:
        """One edge labelled `symbol` (automata over rule symbols rather than bytes)."""
        start, end = self.state(), self.state()
        self.edges[start].append((symbol, symbol, end))
        return start, end

    def fragment_codepoints(self, ranges) -> tuple[int, int]:
        start, end = self.state(), self.state()
        for lo, hi in ranges:
            for seq in utf8_sequences(lo, hi):
                cur = start
                for i, (blo, bhi) in enumerate(seq):
                    nxt = end if i == len(seq) - 1 else self.state()
                    self.edges[cur].append((blo, bhi, nxt))
                    cur = nxt
        return start, end

    def concat(self, frags) -> tuple[int, int]:
        frags = list(frags)
        if not frags:
            return self.fragment_empty_string()
        for (_, a_end), (b_start, _) in zip(frags[:-1], frags[1:]):
            self.eps[a_end].append(b_start)
        return frags[0][0], frags[-1][1]

    def union(self, frags) -> tuple[int, int]:
        start, end = self.state(), self.state()
        for f_start, f_end in frags:
            self.eps[start].append(f_start)
            self.eps[f_end].append(end)
        return start, end

    # Fragment ends never have outgoing moves of their own (only the continuation added later),
    # while starts may have incoming ones (a star's hub); so `optional` and `star` add fresh states.
    def optional(self, frag) -> tuple[int, int]:
        start = self.state()
        self.eps[start].extend(frag)
        return start, frag[1]

    def star(self, frag) -> tuple[int, int]:
        hub, end = self.state(), self.state()
        f_start, f_end = frag
        self.eps[hub].extend((f_start, end))
        self.eps[f_end].append(hub)
        return hub, end

    def repeat(self, make, lo: int, hi: int | None) -> tuple[int, int]:
        """`make()` builds a fresh copy of the repeated fragment each call."""
        parts = [make() for _ in range(lo)]
        if hi is None:
            parts.append(self.star(make()))
        else:
            # nested optionals: x{0,3} = (x(x(x)?)?)?
            tail = None
            for _ in range(hi - lo):
                piece = make()
                tail = self.optional(piece if tail is None else self.concat([piece, tail]))
            if tail is not None:
                parts.append(tail)
        return self.concat(parts)

    def closure(self, s: int, end: int) -> frozenset:
        """The states reachable from `s` by epsilon moves that read input (have edges) or are
        `end`: what a subset construction keeps. Memoized per NFA."""
        memo = self._closures
        got = memo.get((s, end))
        if got is None:
            seen, todo = {s}, [s]
            while todo:
                for y in self.eps[todo.pop()]:
                    if y not in seen:
                        seen.add(y)
                        todo.append(y)
            got = frozenset(x for x in seen if self.edges[x] or x == end)
            memo[(s, end)] = got
        return got

    def embed(self, dfa: DFA) -> tuple[int, int]:
        """Copy a DFA in as a fragment (its accepting states lead to the fragment's end)."""
        if dfa.is_empty:
            return self.fragment_nothing()
        base = len(self.eps)
        for _ in range(dfa.num_states):
            self.state()
        end = self.state()
        edges = self.edges
        for s, lo, hi, t in dfa.edges():
            edges[base + s].append((lo, hi, base + t))
        for s in np.flatnonzero(dfa.accepting).tolist():
            self.eps[base + s].append(end)
        return base, end

    def to_dfa(self, frag: tuple[int, int], max_states: int = 1_000_000) -> DFA:
        return minimize(*determinize(self, frag, max_states))


def _byte_classes(nfa: NFA, states) -> np.ndarray:
    """Bytes that no edge tells apart share a class; returns class id per byte."""
    cuts = np.zeros(257, bool)
    for s in states:
        for lo, hi, _ in nfa.edges[s]:
            cuts[lo] = True
            cuts[hi + 1] = True
    cuts[0] = False
    return np.cumsum(cuts[:256]).astype(np.int32)


def determinize(nfa: NFA, frag: tuple[int, int], max_states: int):
    start, end = frag
    eps = nfa.eps

    # only the part reachable from `start` matters
    reach, stack = {start}, [start]
    while stack:
        s = stack.pop()
        for t in eps[s]:
            if t not in reach:
                reach.add(t)
                stack.append(t)
        for _, _, t in nfa.edges[s]:
            if t not in reach:
                reach.add(t)
                stack.append(t)
    byte_class = _byte_classes(nfa, reach)
    num_classes = int(byte_class[-1]) + 1
    class_edges = {s: [(int(byte_class[lo]), int(byte_class[hi]), t) for lo, hi, t in nfa.edges[s]]
                   for s in reach}

    def closure(states) -> frozenset:
        out = set()
        for s in states:
            out |= nfa.closure(s, end)
        return frozenset(out)

    first = closure((start,))
    index = {first: 0}
    sets = [first]
    rows: list[list[int]] = []
    i = 0
    while i < len(sets):
        current = sets[i]
        i += 1
        moves: dict[int, set] = {}
        for s in current:
            for clo, chi, t in class_edges[s]:
                for c in range(clo, chi + 1):
                    got = moves.get(c)
                    if got is None:
                        moves[c] = {t}
                    else:
                        got.add(t)
        row = [DEAD] * num_classes
        by_targets: dict[frozenset, int] = {}
        for c, targets in moves.items():
            key = frozenset(targets)
            d = by_targets.get(key)
            if d is None:
                target_set = closure(key)
                d = index.get(target_set)
                if d is None:
                    if len(sets) >= max_states:
                        raise GrammarCompileError(
                            f"the DFA grew past {max_states} states; bound the repetitions or "
                            "the recursion depth of the grammar")
                    d = len(sets)
                    index[target_set] = d
                    sets.append(target_set)
                by_targets[key] = d
            row[c] = d
        rows.append(row)
    accepting = [end in s for s in sets]
    # trim: a state from which nothing can be accepted (an empty class such as [^\s\S] ahead)
    # is not told apart from DEAD by minimize, which compares the entries rows have
    live = _coreachable(rows, accepting)
    if not all(live):
        rows = [[t if t != DEAD and live[t] else DEAD for t in row] for row in rows]
    trans = np.array(rows, dtype=np.int32).reshape(len(rows), num_classes)
    return trans, np.array(accepting, dtype=bool), byte_class


def _coreachable(rows: list[list[int]], accepting: list[bool]) -> list[bool]:
    """Per state: can an accepting state be reached from it?"""
    return coreachable([[t for t in set(row) if t != DEAD] for row in rows], accepting)


def coreachable(successors: Sequence[Iterable[int]], goal: Sequence[bool]) -> list[bool]:
    """Per state of a graph given by its successor lists: can a `goal` state be reached from it
    (a goal state reaches itself)?"""
    preds: list[list[int]] = [[] for _ in successors]
    for q, targets in enumerate(successors):
        for t in targets:
            preds[t].append(q)
    live = list(goal)
    todo = [q for q, g in enumerate(goal) if g]
    while todo:
        for q in preds[todo.pop()]:
            if not live[q]:
                live[q] = True
                todo.append(q)
    return live


def hash_weights(n: int) -> np.ndarray:
    """Odd random 64-bit multipliers (fixed seed) for hashing rows of integers."""
    return np.random.default_rng(12345).integers(1, 2**63, n, dtype=np.uint64) | np.uint64(1)


def _sparse_rows(table: np.ndarray, dead: int):
    """The non-dead entries of each row, as flat arrays (owner row, column, target), with one
    zero-weight placeholder per row so that every row has at least one entry."""
    n, k = table.shape
    owner, col = np.nonzero(table != dead)
    target = table[owner, col]
    # placeholders: column k (weight 0 below), target = dead
    owner = np.concatenate([owner, np.arange(n)])
    col = np.concatenate([col, np.full(n, k)])
    target = np.concatenate([target, np.full(n, dead)])
    order = np.lexsort((col, owner))
    owner, col, target = owner[order], col[order], target[order]
    starts = np.searchsorted(owner, np.arange(n))
    return owner, col, target, starts


def _merge_equal_columns(trans: np.ndarray, byte_class: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """One column per distinct column of the table, in order of first use: byte classes the
    NFA tells apart somewhere (the letters of a literal prefix, say) often lead to the same
    states everywhere in the DFA. Keeping the first-use order keeps the numbering below."""
    _, first, inverse = np.unique(trans.T, axis=0, return_index=True, return_inverse=True)
    if len(first) == trans.shape[1]:
        return trans, byte_class
    rank = np.empty(len(first), np.int64)
    rank[np.argsort(first)] = np.arange(len(first))
    keep = np.sort(first)
    return trans[:, keep], rank[inverse.reshape(-1)][byte_class].astype(np.int32)


def minimize(trans: np.ndarray, accepting: np.ndarray, byte_class: np.ndarray) -> DFA:
    """Moore partition refinement on the class-compressed table, then trim and renumber BFS-first.

    Each round numbers states by (own class, classes of their successors). Rows are sparse (a
    state continues on a few byte classes), so a round costs O(transitions): a 64-bit hash of each
    row, summed per row, then an exact check of every state against its class's first state."""
    n, k = trans.shape
    if n == 0:
        return empty_dfa()
    trans, byte_class = _merge_equal_columns(trans, byte_class)
    n, k = trans.shape
    dead = n
    table = np.vstack([np.where(trans < 0, dead, trans), np.full((1, k), dead, np.int32)])
    if n * k <= _SMALL_MINIMIZE:
        return _minimize_small(trans, table, accepting, byte_class)
    owner, col, target, starts = _sparse_rows(table, dead)
    lengths = np.diff(np.append(starts, len(owner)))
    col_w = hash_weights(k + 2)
    col_w[k] = 0  # the placeholder column
    wcol = col_w[col]
    own_w = col_w[k + 1]
    part = np.append(accepting, False).astype(np.int64)
    count = len(np.unique(part))
    offset = np.arange(len(owner)) - starts[owner]
    while True:
        with np.errstate(over="ignore"):
            h = np.add.reduceat(wcol * (part[target].astype(np.uint64) + np.uint64(1)), starts)
            h += own_w * part.astype(np.uint64)
        _, first, new = np.unique(h, return_index=True, return_inverse=True)
        new = new.reshape(-1)
        rep = first[new]
        # exact check: same class, same row length, same (column, successor class) entries
        same = (part == part[rep]) & (lengths == lengths[rep])
        partner = starts[rep[owner]] + offset
        partner = np.minimum(partner, len(owner) - 1)
        entry_ok = (col == col[partner]) & (part[target] == part[target[partner]])
        same &= np.logical_and.reduceat(entry_ok, starts)
        if not same.all():  # a hash collision (never seen, but possible): exact row keys
            new, new_count = _exact_classes(part, table)
        else:
            new_count = len(first)
        part = new
        if new_count == count:
            break
        count = new_count
    return _renumber(part, count, table, accepting, byte_class)


def _renumber(part: np.ndarray, count: int, table: np.ndarray, accepting: np.ndarray,
              byte_class: np.ndarray) -> DFA:
    """The DFA of the classes `part` (ids below `count`; `table` has the dead state as its last
    row): one representative per class (the lowest state), the dead class dropped, numbered
    breadth-first from the start's class in column order, columns expanded to the 256 bytes."""
    dead_class = int(part[-1])
    if int(part[0]) == dead_class:
        return empty_dfa()
    rep = np.full(count, -1, np.int64)
    rep[part[::-1]] = np.arange(len(part) - 1, -1, -1)  # lowest index wins
    order = {int(part[0]): 0}
    queue = [int(part[0])]
    qi = 0
    while qi < len(queue):
        c = queue[qi]
        qi += 1
        for t in part[table[rep[c]]].tolist():
            if t != dead_class and t not in order:
                order[t] = len(queue)
                queue.append(t)
    lookup = np.full(count, DEAD, np.int32)
    lookup[queue] = np.arange(len(queue), dtype=np.int32)
    reps = rep[np.array(queue)]
    new_trans = lookup[part[table[reps]]]          # (S', K)
    new_acc = accepting[reps]
    full = new_trans[:, byte_class]                # expand classes to 256 bytes
    return DFA(np.ascontiguousarray(full, dtype=np.int32), np.asarray(new_acc, bool))


# Below this many table entries the refinement runs on Python lists: a round of the numpy version
# costs some 30 array calls, which on the small DFAs of most terminals is nearly all of the work.
_SMALL_MINIMIZE = 4096


def _minimize_small(trans: np.ndarray, table: np.ndarray, accepting: np.ndarray,
                    byte_class: np.ndarray) -> DFA:
    """`minimize` for small tables, on Python lists (`refine`), with the same result and
    numbering: states of a class must agree on the classes behind their non-dead entries (a
    missing entry is not the dead class)."""
    n = trans.shape[0]
    owner, cols = np.nonzero(trans >= 0)  # row-major: each state's entries in column order
    sparse: list[list[tuple[int, int]]] = [[] for _ in range(n + 1)]  # + dead, which has none
    for q, c, t in zip(owner.tolist(), cols.tolist(), trans[owner, cols].tolist()):
        sparse[q].append((c, t))
    part, count = refine(sparse, accepting.tolist() + [False])
    return _renumber(np.asarray(part, np.int64), count, table, accepting, byte_class)


def refine(edges: list[list[tuple[int, int]]], accepting: list[bool]) -> tuple[list[int], int]:
    """The coarsest partition of an automaton (per state, its (symbol, target) entries) whose
    classes have equal futures: (class per state, number of classes), classes numbered from 0.
    Partition refinement with a worklist: only a class holding a predecessor of a state that just
    moved is looked at again, and a split class keeps its largest part, so each state moves
    O(log n) times (Moore's rounds over every state cost as many rounds as the longest chain of
    alike states: tens in an API grammar, n in a chain of n states)."""
    n = len(edges)
    preds: list[list[int]] = [[] for _ in range(n)]
    for q, row in enumerate(edges):
        for _, t in row:
            preds[t].append(q)
    first: dict[bool, int] = {}
    part = [first.setdefault(bool(a), len(first)) for a in accepting]
    members: list[list[int]] = [[] for _ in first]
    for q, c in enumerate(part):
        members[c].append(q)
    todo = list(range(len(members)))
    queued = [True] * len(members)
    while todo:
        c = todo.pop()
        queued[c] = False
        group = members[c]
        if len(group) < 2:
            continue
        by_future: dict[tuple, list[int]] = {}
        for q in group:
            by_future.setdefault(tuple([(sym, part[t]) for sym, t in edges[q]]), []).append(q)
        if len(by_future) == 1:
            continue
        parts = sorted(by_future.values(), key=len, reverse=True)  # stable: ties in first-seen order
        members[c] = parts[0]
        for moved in parts[1:]:
            new = len(members)
            members.append(moved)
            queued.append(False)
            for q in moved:
                part[q] = new
        for moved in parts[1:]:
            for q in moved:
                for p in preds[q]:
                    d = part[p]
                    if not queued[d]:
                        queued[d] = True
                        todo.append(d)
    return part, len(members)


def _exact_classes(part: np.ndarray, table: np.ndarray) -> tuple[np.ndarray, int]:
    sig = np.ascontiguousarray(np.concatenate([part[:, None], part[table]], axis=1))
    raw, width = sig.tobytes(), sig.shape[1] * sig.itemsize
    ids: dict[bytes, int] = {}
    exact = np.fromiter((ids.setdefault(raw[i:i + width], len(ids)) for i in range(0, len(raw), width)),
                        np.int64, sig.shape[0])
    return exact, len(ids)


def regex_fragment(builder, tree, where: str = "regex"):
    """Build a syntax tree from `regex.parse_regex` / `regex.literal` with `builder`: an `NFA`
    (a fragment), or `LanguageFacts` (whether the language is empty or holds "")."""
    def build(node):
        kind = node[0]
        if kind == "set":
            return builder.fragment_codepoints(node[1])
        if kind == "cat":
            return builder.concat([build(x) for x in node[1]])
        if kind == "alt":
            return builder.union([build(x) for x in node[1]])
        if kind == "rep":
            _, inner, lo, hi = node
            if (hi if hi is not None else lo) > 10_000:
                raise GrammarCompileError(f"repetition bound {hi or lo} is too large to unroll",
                                          where=where)
            return builder.repeat(lambda: build(inner), lo, hi)
        raise AssertionError(kind)

    return build(tree)


def regex_tree_to_dfa(tree, where: str = "regex") -> DFA:
    """Compile a syntax tree from `regex.parse_regex` / `regex.literal`."""
    nfa = NFA()
    try:
        return nfa.to_dfa(regex_fragment(nfa, tree, where))
    except GrammarCompileError as exc:
        if exc.where is not None:
            raise
        raise GrammarCompileError(str(exc), where=where) from None


Facts = tuple[bool, bool]  # (the language is empty, the language holds the empty string)


class LanguageFacts:
    """The `NFA` builder's interface over `Facts` instead of fragments: what a terminal's
    language is like, known without determinizing it."""

    @staticmethod
    def of(dfa: DFA) -> Facts:
        return dfa.is_empty, (not dfa.is_empty) and bool(dfa.accepting[0])

    @staticmethod
    def fragment_codepoints(ranges) -> Facts:
        return not any(utf8_sequences(lo, hi) for lo, hi in ranges), False

    @staticmethod
    def concat(parts) -> Facts:
        parts = list(parts)
        return any(e for e, _ in parts), all(n for _, n in parts)

    @staticmethod
    def union(parts) -> Facts:
        parts = list(parts)
        return all(e for e, _ in parts), any(n for _, n in parts)

    @staticmethod
    def optional(part: Facts) -> Facts:
        return False, True

    @staticmethod
    def repeat(make, lo: int, hi: int | None) -> Facts:
        empty, nullable = make()
        return (lo > 0 and empty), (lo == 0 or nullable)

    @staticmethod
    def embed(dfa: DFA) -> Facts:
        return LanguageFacts.of(dfa)


class Leaf:
    """A terminal occurrence's byte DFA, built on first use of `dfa`: a grammar explored lazily
    never determinizes the terminals it does not reach. Whether the language is empty and
    whether it holds "" are known up front (productivity needs them for every terminal)."""

    __slots__ = ("_make", "_dfa", "is_empty", "nullable")

    def __init__(self, make, facts: Facts):
        self._make = make
        self._dfa: DFA | None = None
        self.is_empty, self.nullable = facts

    @classmethod
    def of(cls, dfa: DFA) -> "Leaf":
        leaf = cls(None, LanguageFacts.of(dfa))
        leaf._dfa = dfa
        return leaf

    @property
    def built(self) -> bool:
        return self._dfa is not None

    @property
    def dfa(self) -> DFA:
        got = self._dfa
        if got is None:  # two threads may both build it: the same DFA, one is kept
            got = self._dfa = self._make()
        return got
