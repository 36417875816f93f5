"""The shortest way to finish a grammar from a state, as tokens: what a decode appends when its
token budget is about to run out, so that the output is still a complete string of the grammar.

The path is the fewest bytes to an accepting state of the byte DFA (breadth-first; on a lazily
compiled FSM this expands only the states within that distance), spelled in the fewest tokens
(a shortest path over the byte positions, each token a piece of the path), then EOS. A spelling
never has more tokens than the path has bytes, so a caller can skip spelling while the byte
count fits its budget. The fewest bytes need not give the fewest tokens over all paths: a
caller that keeps `len(completion) <= tokens left` is safe, and may close a little early.
"""

from __future__ import annotations

from bisect import bisect_left
from collections import deque

from .automaton import DEAD


def completion_bytes(fsm, state: int) -> bytes | None:
    """The fewest bytes that finish the grammar from `state`; None if none do. Memoized."""
    memo = fsm.completion_bytes_memo
    if state not in memo:
        memo[state] = _fewest_bytes(fsm.dfa, state)
    return memo[state]


def shortest_completion(fsm, state: int) -> list[int] | None:
    """Tokens from `state` to the end of the grammar, EOS last (when the vocabulary has one);
    None if it cannot finish. `state` is a `TokenFSM` state. Memoized per state."""
    memo = fsm.completions_memo
    if state not in memo:
        path = completion_bytes(fsm, state)
        memo[state] = None if path is None else _spell(fsm, path)
    got = memo[state]
    return None if got is None else list(got)


def _fewest_bytes(dfa, state: int) -> bytes | None:
    parent: dict[int, tuple[int, int]] = {state: (-1, -1)}
    queue = deque([state])
    while queue:
        s = queue.popleft()
        if dfa.accepting[s]:
            out = bytearray()
            while parent[s][0] >= 0:
                s, b = parent[s]
                out.append(b)
            return bytes(reversed(out))
        row = dfa.row(s)
        for b in dfa.allowed_bytes_of(s):
            t = int(row[b])
            if t != DEAD and t not in parent:
                parent[t] = (s, b)
                queue.append(t)
    return None


def _spell(fsm, path: bytes) -> list[int] | None:
    """The fewest tokens whose bytes are `path`, then EOS. Every piece of a path of the byte DFA
    is allowed where it starts, so only the vocabulary decides (tokens with no bytes, the
    special ones, are not in the index)."""
    tokens, order = fsm.index.sorted_tokens, fsm.index.order
    n = len(path)
    best: list[tuple[int, int, int] | None] = [None] * (n + 1)  # (tokens, from, token id)
    best[0] = (0, -1, -1)
    for pos in range(n):
        if best[pos] is None:
            continue
        for end in range(pos + 1, n + 1):
            piece = path[pos:end]
            i = bisect_left(tokens, piece)
            if i == len(tokens) or not tokens[i].startswith(piece):
                break  # no token starts with this piece, nor with any longer one
            if tokens[i] == piece and (best[end] is None or best[pos][0] + 1 < best[end][0]):
                best[end] = (best[pos][0] + 1, pos, int(order[i]))
    if best[n] is None:
        return None
    out, pos = [], n
    while pos > 0:
        _, pos, token = best[pos]
        out.append(token)
    return out[::-1] + fsm.eos_token_ids[:1]
