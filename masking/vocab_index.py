"""The vocabulary laid out for crossing with a DFA: tokens sorted by bytes, one byte buffer.

Sorting the tokens lexicographically makes every set of tokens that share a prefix a contiguous
range, so the tokens that start with any two given bytes are found by one lookup, and a walk only
touches tokens whose first two bytes the grammar allows. Built once per vocabulary.
"""

from __future__ import annotations

import threading

import numpy as np

_LOCK = threading.Lock()
_CACHE: dict[str, "VocabIndex"] = {}


class VocabIndex:
    def __init__(self, tokens: list[bytes], size: int):
        self.size = size
        ids = [i for i, t in enumerate(tokens) if t]
        ids.sort(key=tokens.__getitem__)
        self.order = np.asarray(ids, dtype=np.int64)           # sorted position -> token id
        sorted_tokens = [tokens[i] for i in ids]
        self.length = np.fromiter((len(t) for t in sorted_tokens), np.int64, len(ids))
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
        self._loop_cache: dict[bytes, tuple[np.ndarray, np.ndarray]] = {}

    def loop_prefix(self, in_loop: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """For a set of bytes L: the length of each sorted token's longest prefix inside L, and
        the ids of tokens made only of L bytes as a bool mask over the vocabulary. Cached per L."""
        key = np.packbits(in_loop).tobytes()
        got = self._loop_cache.get(key)
        if got is None:
            n = len(self.order)
            outside = ~in_loop[self.buf]
            pos = np.where(outside, np.arange(len(self.buf)), len(self.buf) + 1)
            first_out = np.minimum.reduceat(pos, self.start) if n else np.zeros(0, np.int64)
            prefix = np.minimum(first_out - self.start, self.length)
            whole = np.zeros(self.size, bool)
            whole[self.order[prefix == self.length]] = True
            got = (prefix, whole)
            self._loop_cache[key] = got
        return got


def vocab_index(vocabulary) -> VocabIndex:
    key = vocabulary.fingerprint()
    with _LOCK:
        got = _CACHE.get(key)
        if got is None:
            got = VocabIndex(list(vocabulary.tokens), vocabulary.size)
            _CACHE[key] = got
        return got
