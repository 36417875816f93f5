"""`%ignore` terminals as Lark's Earley scanner matches them: one match per position.

Where a terminal may start, Lark also runs each ignored terminal's regex there with `re.match`
and resumes parsing after that one match. So ignored text is not any string of the terminal's
language: with `%ignore /#[^\\n]*/` a comment runs to the end of the line, and `#ba` followed by
`ab` is one comment, never a comment and two tokens. `re` picks its match by priority
(alternatives left first, greedy repetitions longest first, lazy ones shortest first).

`IgnoreMatcher` follows that choice as RE2 runs Perl semantics: a state is the ordered list of
threads, cut after the first thread that reaches the end of the regex. A match may end at
position j only if none of the higher-priority threads still alive at j matches later; the
grammar carries those threads along as a *guard* (`Guards`), which kills the paths that assumed
the match ended at j when one of them does.
"""

from __future__ import annotations

import numpy as np

from .automaton import DEAD, coreachable
from .compile_errors import GrammarCompileError
from .regex import utf8_sequences

_BYTE, _SPLIT, _MATCH = 0, 1, 2
_MATCHED = -1  # in a matcher state: the match ends here; the threads before it rank higher
MAX_MATCHER_STATES = 20_000


class PriorityNFA:
    """Byte NFA whose epsilon moves are ordered by `re`'s preference. A `_BYTE` state reads one
    byte in [lo, hi]; a `_SPLIT` state tries its targets in order; `_MATCH` ends the regex."""

    def __init__(self, max_states: int = 200_000):
        self.kind: list[int] = []
        self.lo: list[int] = []
        self.hi: list[int] = []
        self.out: list[list[int]] = []
        self.max_states = max_states
        self._live: list[bool] | None = None

    def _add(self, kind: int, out: list[int], lo: int = 0, hi: int = 0) -> int:
        if len(self.kind) >= self.max_states:
            raise GrammarCompileError(f"an %ignore regex grew past {self.max_states} states")
        self.kind.append(kind)
        self.lo.append(lo)
        self.hi.append(hi)
        self.out.append(out)
        self._live = None
        return len(self.kind) - 1

    def add_regex(self, tree) -> int:
        """The start state of `tree` (from `parse_regex(..., keep_lazy=True)`) then the end."""
        return self._build(tree, self._add(_MATCH, []))

    def _build(self, node, nxt: int) -> int:
        kind = node[0]
        if kind == "set":
            starts = []
            for lo, hi in node[1]:
                for seq in utf8_sequences(lo, hi):
                    cur = nxt
                    for blo, bhi in reversed(seq):
                        cur = self._add(_BYTE, [cur], blo, bhi)
                    starts.append(cur)
            return starts[0] if len(starts) == 1 else self._add(_SPLIT, starts)
        if kind == "cat":
            for item in reversed(node[1]):
                nxt = self._build(item, nxt)
            return nxt
        if kind == "alt":
            return self._add(_SPLIT, [self._build(b, nxt) for b in node[1]])
        if kind == "rep":
            inner, lo, hi = node[1], node[2], node[3]
            lazy = len(node) > 4 and node[4]
            if (hi if hi is not None else lo) > 10_000:
                raise GrammarCompileError(f"repetition bound {hi or lo} is too large to unroll")
            if hi is None:
                loop = self._add(_SPLIT, [])
                body = self._build(inner, loop)
                self.out[loop] = [nxt, body] if lazy else [body, nxt]
                cur = loop
            else:
                cur = nxt  # x{0,2} = (x(x)?)?: skipping any optional copy ends the repetition
                for _ in range(hi - lo):
                    body = self._build(inner, cur)
                    cur = self._add(_SPLIT, [nxt, body] if lazy else [body, nxt])
            for _ in range(lo):
                cur = self._build(inner, cur)
            return cur
        raise AssertionError(kind)

    def live(self) -> list[bool]:
        """Per state: can it still reach the end? (Threads that cannot never decide a match.)"""
        if self._live is None:
            self._live = coreachable(self.out, [k == _MATCH for k in self.kind])
        return self._live

    def follow(self, starts, out: list[int], seen: set) -> bool:
        """Append the byte-reading states reached from `starts` by epsilon moves to `out`, in
        priority order, skipping those `seen`; True (and stop) when the end is reached."""
        live = self.live()
        stack = list(reversed(starts))
        while stack:
            s = stack.pop()
            if s in seen:
                continue
            seen.add(s)
            k = self.kind[s]
            if k == _SPLIT:
                stack.extend(reversed(self.out[s]))
            elif k == _MATCH:
                return True
            elif live[s]:
                out.append(s)
        return False

    def step(self, threads, byte: int, ordered: bool) -> tuple[list[int], bool]:
        """The threads after reading `byte` and whether one of them reached the end (then the
        list holds only the threads ranking above it, when `ordered`)."""
        out: list[int] = []
        seen: set = set()
        for t in threads:
            if self.lo[t] <= byte <= self.hi[t] and self.follow(self.out[t], out, seen):
                if ordered:
                    return out, True
                return [], True  # a guard failed: its threads no longer matter
        return out, False

    def classes(self, threads) -> list[int]:
        """The first byte of each run of bytes that `threads` do not tell apart."""
        cuts = {0}
        for t in threads:
            cuts.add(self.lo[t])
            if self.hi[t] < 255:
                cuts.add(self.hi[t] + 1)
        return sorted(cuts)


class IgnoreMatcher:
    """One ignored terminal as a DFA over `re`'s ordered thread lists (built whole: ignore
    regexes are small). `trans[s, b]` is DEAD where every thread dies; `ends[s]`: a match ends
    here; `ahead[s]`: the threads ranking above that match (they may still move it later)."""

    def __init__(self, nfa: PriorityNFA, start: int, name: str):
        first: list[int] = []
        if nfa.follow([start], first, set()):
            raise GrammarCompileError("an %ignore terminal must not match the empty string "
                                      "(Lark's Earley parser refuses zero-width terminals)",
                                      where=f"terminal {name}")
        index = {tuple(first): 0}
        states = [tuple(first)]
        rows: list[np.ndarray] = []
        i = 0
        while i < len(states):
            threads = [t for t in states[i] if t != _MATCHED]
            i += 1
            row = np.full(256, DEAD, np.int32)
            cuts = nfa.classes(threads) + [256]
            for a, b in zip(cuts[:-1], cuts[1:]):
                out, matched = nfa.step(threads, a, ordered=True)
                if not out and not matched:
                    continue
                key = tuple(out) + ((_MATCHED,) if matched else ())
                d = index.get(key)
                if d is None:
                    if len(states) >= MAX_MATCHER_STATES:
                        raise GrammarCompileError(
                            f"the %ignore regex needs more than {MAX_MATCHER_STATES} matcher states",
                            where=f"terminal {name}")
                    d = index[key] = len(states)
                    states.append(key)
                row[a:b] = d
            rows.append(row)
        self.trans = np.stack(rows)
        self.ends = np.array([_MATCHED in st for st in states], bool)
        self.ahead = [frozenset(t for t in st if t != _MATCHED) for st in states]
        self.goes_on = (self.trans != DEAD).any(axis=1)


class Guards:
    """Sets of threads that must never reach the end of their regex on the rest of the text.
    Guard 0 is the empty set (nothing to check); a row entry DEAD means the guard failed."""

    def __init__(self, nfa: PriorityNFA):
        self.nfa = nfa
        self._sets: list[frozenset] = [frozenset()]
        self._ids: dict[frozenset, int] = {frozenset(): 0}
        self._rows: dict[int, np.ndarray] = {0: np.zeros(256, np.int32)}

    def id_of(self, threads: frozenset) -> int:
        got = self._ids.get(threads)
        if got is None:
            got = self._ids[threads] = len(self._sets)
            self._sets.append(threads)
        return got

    def union(self, g: int, threads: frozenset) -> int:
        return g if not threads else self.id_of(self._sets[g] | threads)

    def row(self, g: int) -> np.ndarray:
        got = self._rows.get(g)
        if got is None:
            threads = sorted(self._sets[g])
            got = np.zeros(256, np.int32)
            cuts = self.nfa.classes(threads) + [256]
            for a, b in zip(cuts[:-1], cuts[1:]):
                out, hit = self.nfa.step(threads, a, ordered=False)
                got[a:b] = DEAD if hit else self.id_of(frozenset(out))
            self._rows[g] = got
        return got


class Ignored:
    """The grammar's ignored terminals: a matcher each, and the guards they leave behind."""

    def __init__(self, trees: list[tuple[str, object]]):
        self.nfa = PriorityNFA()
        starts = [(name, self.nfa.add_regex(tree)) for name, tree in trees]
        self.matchers = [IgnoreMatcher(self.nfa, start, name) for name, start in starts]
        self.guards = Guards(self.nfa)

    def used_bytes(self) -> np.ndarray:
        used = np.zeros(256, bool)
        for m in self.matchers:
            used |= (m.trans != DEAD).any(axis=0)
        return used
