"""The vocabulary laid out for crossing with a DFA: tokens sorted by bytes, one byte buffer.

Sorting the tokens lexicographically makes every set of tokens that share a prefix a contiguous
range, so the tokens that start with any two given bytes are found by one lookup, and a walk only
touches tokens whose first two bytes the grammar allows. Built once per vocabulary.
"""

from __future__ import annotations

import threading

import numpy as np

_LOCK = threading.Lock()
_RUN_CACHE_SIZE = 64  # byte classes whose token runs are kept (4 bytes a token each)
_CACHE: dict[str, "VocabIndex"] = {}


class VocabIndex:
    def __init__(self, vocabulary):
        tokens = vocabulary.tokens
        self.size = vocabulary.size
        order = np.asarray(vocabulary.sorted_ids, np.int64)
        lengths = np.asarray(vocabulary.token_lengths, np.int64)
        self.id_length = np.zeros(self.size, np.int64)             # token id -> byte length
        self.id_length[:lengths.size] = lengths[:self.size]
        self.id_length_list = self.id_length.tolist()
        self.max_length = int(lengths.max()) if lengths.size else 0
        ids = order[lengths[order] > 0]                         # empty (special) tokens sort first
        self.order = ids                                        # sorted position -> token id
        sorted_tokens = [tokens[i] for i in ids.tolist()]
        self.sorted_tokens = sorted_tokens                      # for binary search by prefix
        self.length_list = [len(t) for t in sorted_tokens]
        self.length = np.asarray(self.length_list, np.int64)
        self.start = np.zeros(len(ids), np.int64)
        if len(ids):
            np.cumsum(self.length[:-1], out=self.start[1:])
        self.buf = np.frombuffer(b"".join(sorted_tokens), np.uint8).astype(np.int64)
        first = self.buf[self.start] if len(ids) else np.zeros(0, np.int64)
        second = np.where(self.length >= 2, self.buf[np.minimum(self.start + 1, len(self.buf) - 1)] + 1, 0)
        # key of the first two bytes; a one-byte token sorts before its extensions (second = 0)
        key = first * 257 + second
        self.pair_bounds = np.searchsorted(key, np.arange(256 * 257 + 1))
        self.single_byte = np.zeros(256, bool)
        self.single_byte[first[self.length == 1]] = True
        self._component_cache: dict[bytes, tuple] = {}
        self._run_cache: dict[bytes, np.ndarray] = {}

    def class_run(self, in_class: np.ndarray) -> np.ndarray:
        """Per sorted token: how many of its leading bytes are in the byte set `in_class`."""
        key = in_class.tobytes()
        got = self._run_cache.get(key)
        if got is None:
            got = np.zeros(len(self.order), np.int32)
            idx, depth = np.arange(len(self.order)), 0
            while idx.size:
                idx = idx[self.length[idx] > depth]
                idx = idx[in_class[self.buf[self.start[idx] + depth]]]
                got[idx] += 1
                depth += 1
            if len(self._run_cache) >= _RUN_CACHE_SIZE:
                self._run_cache.pop(next(iter(self._run_cache)))  # the oldest
            self._run_cache[key] = got
        return got

    def component_walk(self, rel: np.ndarray):
        """Walk every token through a loop component's table from its first state (index 0).

        Returns, per sorted token: the component state it ends in (-1 if it left), the position
        of the byte that left and the component state before it (-1 if it never left), and a
        bool mask over the vocabulary of tokens that end back at the first state. Cached by the
        table's bytes, since many states share one shape."""
        key = rel.tobytes()
        got = self._component_cache.get(key)
        if got is not None:
            return got
        n = len(self.order)
        end_rel = np.full(n, -1, np.int64)
        exit_pos = np.full(n, -1, np.int64)
        exit_rel = np.full(n, -1, np.int64)
        # the first byte picks whole ranges of the sorted vocabulary: skip the others at once
        first_bytes = np.arange(256)
        lo = self.pair_bounds[first_bytes * 257]
        hi = self.pair_bounds[(first_bytes + 1) * 257]
        staying = rel[0] >= 0
        leaving = ~staying
        for b in np.flatnonzero(leaving & (hi > lo)):
            exit_pos[lo[b]:hi[b]] = 0
            exit_rel[lo[b]:hi[b]] = 0
        keep = np.flatnonzero(staying & (hi > lo))
        idx = np.concatenate([np.arange(lo[b], hi[b]) for b in keep]) if keep.size else np.zeros(0, np.int64)
        state = rel[0, self.buf[self.start[idx]]]
        depth = 1
        length, start, buf = self.length, self.start, self.buf
        while idx.size:
            done = length[idx] == depth
            end_rel[idx[done]] = state[done]
            idx, state = idx[~done], state[~done]
            nxt = rel[state, buf[start[idx] + depth]]
            out = nxt < 0
            exit_pos[idx[out]] = depth
            exit_rel[idx[out]] = state[out]
            idx, state = idx[~out], nxt[~out]
            depth += 1
        home = np.zeros(self.size, bool)
        home[self.order[end_rel == 0]] = True
        got = (end_rel, exit_pos, exit_rel, home)
        self._component_cache[key] = got
        return got


def vocab_index(vocabulary) -> VocabIndex:
    key = vocabulary.fingerprint()
    with _LOCK:
        got = _CACHE.get(key)
        if got is None:
            got = VocabIndex(vocabulary)
            _CACHE[key] = got
        return got
