"""The grammar's byte DFA, built on demand.

A grammar is a set of rules, each a small DFA over symbols (terminals and rule references), and a
set of terminals, each a byte DFA. A position in the grammar is a configuration: a terminal, the
state inside its byte DFA, and the call stack of rule positions to return to when the terminal
ends (a continuation, interned to an int). A state of the byte DFA is a set of configurations plus
whether the whole grammar may end here; its transitions are computed on first use (subset
construction), so the first mask of a large grammar only pays for the states it touches.

Recursion is bounded by counting: every continuation carries how many more times a recursive rule
(a cycle head) may be entered. Continuations whose rule position has nothing left to do are
skipped (tail calls), so the states of shared rule suffixes coincide.

`%ignore` terminals (`ignore.py`) run as configurations of their own wherever a terminal may
start or the grammar may end; where one's match may end, the configurations after it carry a
guard (the last element of a configuration; 0 = none) that kills them if `re` would have
matched on.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .automaton import DEAD, DFA, Leaf, hash_weights, minimize, refine
from .compile_errors import GrammarCompileError
from .ignore import Ignored

ROOT = -1  # the continuation after the start rule: the grammar may end
_WEIGHTS = hash_weights(4096)


@dataclass
class RuleAutomaton:
    """A rule's body as a DFA over symbols: leaf id (>= 0, a byte DFA) or ~rule index (< 0)."""

    edges: list[list[tuple[int, int]]]  # per state: (symbol, target state); start is state 0
    accepting: list[bool]


class Grammar:
    """What `StackDFA` explores: the rules joined into one minimized automaton over symbols (so
    equal suffixes of different rules are one state), leaf byte DFAs (built on first use),
    recursion bounds."""

    def __init__(self, rules: list[RuleAutomaton], rule_names: list[str], leaves: list[Leaf],
                 heads: set[int], start: int, max_depth: int, ignore: Ignored | None):
        self.rule_names = rule_names
        self.leaves = leaves
        self.heads = heads
        self.start = start
        self.max_depth = max_depth if heads else 0  # depth only changes where a head is entered
        self.ignore = ignore
        self.edges, self.accepting, self.rule_start = _join(rules)
        self._start_of: dict[int, list[int]] = {}
        for r, st in enumerate(self.rule_start):
            self._start_of.setdefault(st, []).append(r)
        self._live: dict[int, list[bool]] = {}

    def child_depth(self, rule: int, depth: int) -> int:
        return depth - 1 if rule in self.heads else depth

    def productive(self, rule: int, depth: int) -> bool:
        return depth >= 0 and self.live(depth)[self.rule_start[rule]]

    def usable(self, symbol: int, depth: int) -> bool:
        if symbol >= 0:
            return not self.leaves[symbol].is_empty
        return self.productive(~symbol, self.child_depth(~symbol, depth))

    def live(self, depth: int) -> list[bool]:
        """Per joint state: can its rule still end from there, `depth` head entries left?"""
        got = self._live.get(depth)
        if got is not None:
            return got
        if depth > 0 and self.heads and depth - 1 not in self._live:
            for d in range(depth):  # from the bottom up: each depth reads the one below
                self.live(d)
        n = len(self.edges)
        lower = self.live(depth - 1) if depth > 0 and self.heads else None
        preds: list[list[tuple[int, int]]] = [[] for _ in range(n)]
        waiting: dict[int, list[tuple[int, int]]] = {}  # rule -> edges (q, t) labelled with it
        for q, edges in enumerate(self.edges):
            for sym, t in edges:
                preds[t].append((sym, q))
        live = list(self.accepting)
        todo = [q for q in range(n) if live[q]]
        while todo:
            t = todo.pop()
            for r in self._starts_at(t):
                if r not in self.heads:  # a rule of this depth became able to end
                    for q in waiting.pop(r, ()):
                        if not live[q]:
                            live[q] = True
                            todo.append(q)
            for sym, q in preds[t]:
                if live[q]:
                    continue
                if sym >= 0:
                    ok = not self.leaves[sym].is_empty
                elif ~sym in self.heads:
                    ok = lower is not None and lower[self.rule_start[~sym]]
                else:
                    ok = live[self.rule_start[~sym]]
                    if not ok:
                        waiting.setdefault(~sym, []).append(q)
                if ok:
                    live[q] = True
                    todo.append(q)
        self._live[depth] = live
        return live

    def _starts_at(self, state: int) -> list[int]:
        """The rules whose automaton starts at joint state `state`."""
        return self._start_of.get(state, [])

    def used_bytes(self) -> np.ndarray:
        """Bytes any terminal reads (builds every terminal's DFA)."""
        used = np.zeros(256, bool)
        for dfa in [leaf.dfa for leaf in self.leaves if not leaf.is_empty]:
            if not dfa.is_empty:
                used |= (dfa.trans != DEAD).any(axis=0)
        if self.ignore is not None:
            used |= self.ignore.used_bytes()
        return used


def _join(rules: list[RuleAutomaton]):
    """All rule automata as one minimized automaton over symbols: (edges, accepting, the state
    each rule starts at)."""
    offsets, edges, accepting = [], [], []
    for ra in rules:
        offsets.append(len(edges))
        base = offsets[-1]
        edges.extend([(sym, base + t) for sym, t in row] for row in ra.edges)
        accepting.extend(ra.accepting)
    part, count = refine(edges, accepting)
    rep: dict[int, int] = {}
    for q in range(len(edges)):
        rep.setdefault(part[q], q)
    joint_edges = [[(sym, part[t]) for sym, t in edges[rep[c]]] for c in range(count)]
    joint_acc = [accepting[rep[c]] for c in range(count)]
    return joint_edges, joint_acc, [part[o] for o in offsets]


class StackDFA:
    """A DFA over bytes whose states are computed as they are reached.

    Same reading interface as `DFA` for the token crossing: `ensure(states)` returns the
    transition table with those rows filled in, `accepting[s]` is known for every created state.
    State 0 is the start; every state can reach an accepting state."""

    def __init__(self, grammar: Grammar, max_states: int = 1_000_000):
        self.g = grammar
        self.max_states = max_states
        self._conts: list[tuple[int, int, int]] = []  # (joint rule state, depth, parent)
        self._cont_ids: dict[tuple[int, int, int], int] = {}
        self._closures: dict[int, tuple[frozenset, bool]] = {}
        self._sets: list[tuple] = []
        self._set_ids: dict[tuple, int] = {}
        self._trans = np.full((64, 256), DEAD, np.int32)
        self._acc = np.zeros(64, bool)
        self._expanded = np.zeros(64, bool)
        self._leaves: list[Leaf] = list(grammar.leaves)
        # a leaf's tables, filled when a state holding it is first expanded; ignored terminals'
        # matchers follow the leaves
        self._leaf_trans: list[np.ndarray | None] = [None] * len(self._leaves)
        self._leaf_acc: list[np.ndarray | None] = [None] * len(self._leaves)
        self._ignore = grammar.ignore
        self._ignore_leaves: list[int] = []
        if self._ignore is not None:
            for m in self._ignore.matchers:
                self._ignore_leaves.append(len(self._leaf_trans))
                self._leaf_trans.append(m.trans)
                self._leaf_acc.append(m.ends)
        self._allowed: dict[int, list[int]] = {}
        self._class_memo: dict[tuple, tuple] = {}
        self._succ: dict[int, list[int]] = {}
        start = self._cont(grammar.rule_start[grammar.start], grammar.max_depth, ROOT)
        leaves, accept = self._closure(start)
        self._state_of(frozenset((leaf, q, c, 0) for leaf, q, c in leaves), accept)

    # -- configurations ------------------------------------------------------------------------
    def _cont(self, q: int, depth: int, parent: int) -> int:
        g = self.g
        if not g.edges[q] and g.accepting[q]:
            return parent  # nothing left to do in this rule: return straight to the caller
        key = (q, depth, parent)
        got = self._cont_ids.get(key)
        if got is None:
            got = len(self._conts)
            self._conts.append(key)
            self._cont_ids[key] = got
        return got

    def _closure(self, cont: int) -> tuple[frozenset, bool]:
        """The configurations reachable from a continuation without reading a byte."""
        got = self._closures.get(cont)
        if got is not None:
            return got
        g = self.g
        leaves: set = set()
        accept = False
        seen, todo = {cont}, [cont]
        while todo:
            c = todo.pop()
            if c == ROOT:
                accept = True
                continue
            q, depth, parent = self._conts[c]
            nxt = []
            if g.accepting[q]:
                nxt.append(parent)
            live = g.live(depth)
            for sym, q2 in g.edges[q]:
                if not live[q2] or not g.usable(sym, depth):
                    continue
                c2 = self._cont(q2, depth, parent)
                if sym >= 0:
                    leaves.add((sym, 0, c2))
                    if self._leaves[sym].nullable:
                        nxt.append(c2)
                else:
                    sub = ~sym
                    nxt.append(self._cont(g.rule_start[sub], g.child_depth(sub, depth), c2))
            for n in nxt:
                if n not in seen:
                    seen.add(n)
                    todo.append(n)
        if leaves or accept:  # Lark tries the ignored terminals where it may scan or end
            leaves.update((leaf, 0, cont) for leaf in self._ignore_leaves)
        got = (frozenset(leaves), accept)
        self._closures[cont] = got
        return got

    def _state_of(self, leaves: frozenset, accept: bool) -> int:
        key = (leaves, accept)
        got = self._set_ids.get(key)
        if got is None:
            got = len(self._sets)
            if got >= self.max_states:
                raise GrammarCompileError(
                    f"the DFA grew past {self.max_states} states; bound the repetitions or the "
                    "recursion depth of the grammar")
            if got >= self._trans.shape[0]:
                grow = self._trans.shape[0]
                self._trans = np.vstack([self._trans, np.full((grow, 256), DEAD, np.int32)])
                self._acc = np.concatenate([self._acc, np.zeros(grow, bool)])
                self._expanded = np.concatenate([self._expanded, np.zeros(grow, bool)])
            self._sets.append(tuple(leaves))
            self._set_ids[key] = got
            self._acc[got] = accept
        return got

    def _byte_classes(self, leaves: tuple) -> tuple[np.ndarray, list[list[int]]]:
        """For the configurations' leaf states and guards: which bytes move them alike (class per
        byte) and, per class, each leaf's next state (then each guard's, when there are guards).
        Memoized: many sets differ only in continuations."""
        key = tuple((leaf, q, g) for leaf, q, _, g in leaves)
        got = self._class_memo.get(key)
        if got is None:
            for leaf, _, _ in key:
                if self._leaf_trans[leaf] is None:
                    dfa = self._leaves[leaf].dfa
                    self._leaf_trans[leaf], self._leaf_acc[leaf] = dfa.trans, dfa.accepting
            rows = [self._leaf_trans[leaf][q] for leaf, q, _ in key]
            if self._ignore is not None:
                rows += [self._ignore.guards.row(g) for _, _, g in key]
            rows = np.stack(rows)  # (n, 256)
            n = rows.shape[0]
            if n == 1:
                keys = rows[0]
            else:
                w = (_WEIGHTS[:n] if n <= len(_WEIGHTS) else hash_weights(n))[:, None]
                with np.errstate(over="ignore"):
                    keys = ((rows.astype(np.int64) + 1).astype(np.uint64) * w).sum(axis=0, dtype=np.uint64)
            _, first, inverse = np.unique(keys, return_index=True, return_inverse=True)
            if n > 1 and not (rows[:, first[inverse]] == rows).all():  # a hash collision
                _, first, inverse = np.unique(rows, axis=1, return_index=True, return_inverse=True)
            got = (inverse.reshape(-1), [rows[:, b].tolist() for b in first.tolist()])
            self._class_memo[key] = got
        return got

    def _expand(self, s: int) -> None:
        leaves = self._sets[s]
        if not leaves:
            self._expanded[s] = True
            return
        inverse, columns = self._byte_classes(leaves)  # may build a terminal, and fail
        targets = np.full(len(columns), DEAD, np.int32)
        leaf_acc = self._leaf_acc
        n = len(leaves)
        ignore = self._ignore
        first_ignore = self._ignore_leaves[0] if self._ignore_leaves else len(leaf_acc)
        for k, col in enumerate(columns):
            out: set = set()
            accept = False
            guards = col[n:] if ignore is not None else [0] * n
            for (leaf, _, cont, _), q2, g2 in zip(leaves, col, guards):
                if q2 == DEAD or g2 == DEAD:
                    continue
                if leaf < first_ignore:
                    out.add((leaf, q2, cont, g2))
                    after = g2
                else:  # an ignored terminal: its match may end here, and may go on
                    m = ignore.matchers[leaf - first_ignore]
                    if m.goes_on[q2]:
                        out.add((leaf, q2, cont, g2))
                    after = ignore.guards.union(g2, m.ahead[q2])
                if leaf_acc[leaf][q2]:
                    more, acc = self._closure(cont)
                    out.update((l2, q3, c2, after) for l2, q3, c2 in more)
                    accept = accept or acc
            if out or accept:
                targets[k] = self._state_of(frozenset(out), accept)
        self._trans[s] = targets[inverse]
        self._expanded[s] = True

    # -- the DFA reading interface -------------------------------------------------------------
    @property
    def num_states(self) -> int:
        return len(self._sets)

    @property
    def accepting(self) -> np.ndarray:
        return self._acc[: len(self._sets)]

    @property
    def is_empty(self) -> bool:
        return False

    def ensure(self, states) -> np.ndarray:
        """The transition table, with the rows of `states` computed."""
        states = np.asarray(states)
        todo = states[~self._expanded[states]]
        if todo.size:
            for s in np.unique(todo).tolist():
                self._expand(s)
        return self._trans

    def row(self, s: int) -> np.ndarray:
        if not self._expanded[s]:
            self._expand(s)
        return self._trans[s]

    def allowed_bytes_of(self, s: int) -> list[int]:
        got = self._allowed.get(s)
        if got is None:
            got = np.flatnonzero(self.row(s) != DEAD).tolist()
            self._allowed[s] = got
        return got

    def successors_of(self, s: int) -> list[int]:
        got = self._succ.get(s)
        if got is None:
            row = self.row(s)
            got = sorted(set(row[row != DEAD].tolist()))
            self._succ[s] = got
        return got

    def used_bytes(self) -> np.ndarray:
        return self.g.used_bytes()

    def accepts(self, data: bytes) -> bool:
        s = 0
        for b in data:
            s = int(self.row(s)[b])
            if s == DEAD:
                return False
        return bool(self._acc[s])

    def explore(self) -> DFA:
        """Every reachable state, then minimized: the grammar's complete minimal DFA."""
        s = 0
        while s < len(self._sets):
            if not self._expanded[s]:
                self._expand(s)
            s += 1
        n = len(self._sets)
        trans = self._trans[:n]
        if self._ignore is not None:
            trans = _trim(trans, self._acc[:n])
        _, first, byte_class = np.unique(trans, axis=1, return_index=True, return_inverse=True)
        compact = np.ascontiguousarray(trans[:, np.sort(first)])
        # np.unique numbers classes by sorted column content; renumber by first byte
        order = np.argsort(first)
        rank = np.empty_like(order)
        rank[order] = np.arange(len(order))
        return minimize(compact, self._acc[:n].copy(), rank[byte_class.reshape(-1)].astype(np.int32))


def _trim(trans: np.ndarray, accepting: np.ndarray) -> np.ndarray:
    """`trans` without the moves into states that cannot reach an accepting one. Only ignored
    text makes such states: a guard may kill every way on (`#` in `start: "a"` with
    `%ignore /#[^\\n]*/`: the comment would swallow the `a`)."""
    src, byte = np.nonzero(trans != DEAD)
    dst = trans[src, byte]
    order = np.argsort(dst, kind="stable")
    src_by_dst, dst_sorted = src[order], dst[order]
    bounds = np.searchsorted(dst_sorted, np.arange(len(trans) + 1))
    live = accepting.copy()
    todo = np.flatnonzero(live).tolist()
    while todo:
        t = todo.pop()
        for p in src_by_dst[bounds[t]:bounds[t + 1]].tolist():
            if not live[p]:
                live[p] = True
                todo.append(p)
    if live.all():
        return trans
    return np.where((trans != DEAD) & live[np.maximum(trans, 0)], trans, DEAD).astype(np.int32)
