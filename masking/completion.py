"""The shortest way to finish a grammar from a state, as tokens: what a decode appends when its
token budget is about to run out, so that the output is still a complete string of the grammar.

The path is the fewest bytes to an accepting state of the byte DFA (breadth-first; on a lazily
compiled FSM this expands only the states within that distance), spelled with the longest
allowed token at each point, then EOS. Greedy spelling is not always the fewest tokens, but never
more tokens than bytes, so a row that keeps `len(completion) <= tokens left` can always finish.
"""

from __future__ import annotations

from bisect import bisect_left
from collections import deque

from .automaton import DEAD


def shortest_completion(fsm, state: int) -> list[int] | None:
    """Tokens from `state` to the end of the grammar, EOS last; None if it cannot finish.

    Memoized per state on the FSM. `state` is a `TokenFSM` state (a state of its byte DFA).
    """
    memo = fsm.__dict__.setdefault("_completions", {})
    got = memo.get(state, False)
    if got is False:
        path = _fewest_bytes(fsm.dfa, state)
        got = None if path is None else _spell(fsm, state, path)
        memo[state] = got
    return got


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


def _spell(fsm, state: int, path: bytes) -> list[int] | None:
    index = fsm.index
    tokens, out, pos = index.sorted_tokens, [], 0
    longest = max(index.length_list, default=0)
    while pos < len(path):
        for end in range(min(len(path), pos + longest), pos, -1):
            piece = path[pos:end]
            i = bisect_left(tokens, piece)
            nxt = -1
            while i < len(tokens) and tokens[i] == piece:  # equal spellings: the first allowed
                token = int(index.order[i])
                nxt = fsm.step(state, token)
                if nxt >= 0:
                    break
                i += 1
            if nxt >= 0:
                out.append(token)
                state, pos = nxt, end
                break
        else:
            return None  # the vocabulary cannot spell this byte here
    if not fsm.eos_token_ids:
        return out
    eos = next((t for t in fsm.eos_token_ids if fsm.step(state, t) >= 0), None)
    return None if eos is None else out + [eos]
