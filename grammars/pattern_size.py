"""Whether a pattern's automaton stays small enough to mask with.

Some short patterns have huge deterministic automata: `^[ab]*a[ab]{20}$` must remember the last
21 characters, 2^21 states. The masking layer would find out only while generating, after
seconds and gigabytes. `exceeds_states` runs the same subset construction on the pattern's AST
(over code points) when the grammar is written, stopping at the limit: a small automaton costs
its own size, a huge one costs the limit.
"""

from __future__ import annotations

import functools

from .patterns import Node

MAX_PATTERN_STATES = 10_000  # the default bound; `to_lark(max_pattern_states=...)` changes it
_MAX_NFA_STATES = 200_000


class _TooLarge(Exception):
    pass


class _NFA:
    """Thompson NFA over code point ranges: `edges[s]` = [(ranges, target)], `eps[s]` = [targets]."""

    def __init__(self) -> None:
        self.edges: list[list[tuple[tuple, int]]] = []
        self.eps: list[list[int]] = []

    def state(self) -> int:
        if len(self.eps) >= _MAX_NFA_STATES:
            raise _TooLarge
        self.edges.append([])
        self.eps.append([])
        return len(self.eps) - 1

    def build(self, node: Node, nxt: int) -> int:
        """The start of `node` followed by state `nxt`."""
        kind = node[0]
        if kind == "set":
            s = self.state()
            self.edges[s].append((node[1], nxt))
            return s
        if kind == "seq":
            for item in reversed(node[1]):
                nxt = self.build(item, nxt)
            return nxt
        if kind == "alt":
            s = self.state()
            self.eps[s] = [self.build(b, nxt) for b in node[1]]
            return s
        if kind == "rep":
            inner, lo, hi = node[1], node[2], node[3]
            if hi is None:
                loop = self.state()
                self.eps[loop] = [self.build(inner, loop), nxt]
                cur = loop
            else:
                cur = nxt
                for _ in range(hi - lo):
                    skip = self.state()
                    self.eps[skip] = [self.build(inner, cur), nxt]
                    cur = skip
            for _ in range(lo):
                cur = self.build(inner, cur)
            return cur
        raise ValueError(f"anchor left in the AST: {node!r}")

    def closure(self, states) -> frozenset:
        seen, todo = set(states), list(states)
        while todo:
            for t in self.eps[todo.pop()]:
                if t not in seen:
                    seen.add(t)
                    todo.append(t)
        return frozenset(s for s in seen if self.edges[s] or not self.eps[s])


@functools.lru_cache(maxsize=4096)
def exceeds_states(node: Node, limit: int) -> bool:
    """True when determinizing the full-match AST `node` makes more than `limit` states."""
    nfa = _NFA()
    try:
        start = nfa.build(node, nfa.state())
    except _TooLarge:
        return True
    first = nfa.closure([start])
    seen = {first}
    todo = [first]
    while todo:
        current = todo.pop()
        moves = [(lo, hi, t) for s in current for ranges, t in nfa.edges[s] for lo, hi in ranges]
        cuts = sorted({lo for lo, _, _ in moves} | {hi + 1 for _, hi, _ in moves})
        for a in cuts:
            targets = [t for lo, hi, t in moves if lo <= a <= hi]
            if not targets:
                continue
            nxt = nfa.closure(targets)
            if nxt not in seen:
                if len(seen) >= limit:
                    return True
                seen.add(nxt)
                todo.append(nxt)
    return False
