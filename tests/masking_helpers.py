"""Shared helpers for the masking tests: random walks, segmentations, Lark acceptance."""

from __future__ import annotations

import random

import lark
import numpy as np


def lark_accepts(parser: lark.Lark, text: str) -> bool:
    try:
        parser.parse(text)
        return True
    except lark.exceptions.LarkError:
        return False


def random_walk(fsm, rng: random.Random, max_tokens: int = 120, stop: float = 0.15,
                prefer=None) -> list[int] | None:
    """Tokens chosen uniformly (or by `prefer`) among the allowed ones, ending with EOS;
    None if it ran past `max_tokens` without finishing."""
    m = fsm.matcher()
    out = []
    eos = fsm.eos_token_ids[0]
    for step in range(max_tokens):
        allowed = m.allowed_tokens()
        assert allowed, f"dead end after {out}"
        non_eos = [t for t in allowed if t not in fsm.eos_token_ids]
        if m.is_accepting() and (not non_eos or rng.random() < stop or step > max_tokens * 0.7):
            assert m.advance(eos)
            assert m.is_finished()
            return out
        t = prefer(non_eos, rng) if prefer else rng.choice(non_eos)
        assert m.advance(t)
        out.append(t)
    return None


def fast_walk(fsm, rng: random.Random, max_tokens: int = 80, stop: float = 0.2) -> list[int] | None:
    """A random walk for large vocabularies: half the time a token that leaves the current
    state's usual successor (so strings get closed), otherwise a uniformly drawn allowed token
    (by rejection), then EOS when accepting."""
    m = fsm.matcher()
    out = []
    eos = fsm.eos_token_ids[0]
    for step in range(max_tokens):
        s = m.state
        r = fsm.state(s)
        leaving = [t for t in r.exc_tokens.tolist() if t not in fsm.eos_token_ids]
        if m.is_accepting() and (rng.random() < stop or step > max_tokens * 0.7 or fsm.allowed_count(s) == 1):
            assert m.advance(eos)
            return out
        t = None
        if leaving and rng.random() < 0.5:
            t = rng.choice(leaving)
        else:
            for _ in range(200):
                c = rng.randrange(fsm.vocab_size)
                if c not in fsm.eos_token_ids and fsm.is_allowed(s, c):
                    t = c
                    break
            if t is None:
                allowed = [a for a in fsm.allowed_tokens(s) if a not in fsm.eos_token_ids]
                if not allowed:
                    return None
                t = rng.choice(allowed)
        assert m.advance(t), t
        out.append(t)
    return None


def sample_string(dfa, rng: random.Random, stop: float = 0.2, max_len: int = 80) -> bytes:
    """A random string of a DFA's language, preferring ASCII."""
    s, out = 0, bytearray()
    while True:
        row = dfa.row(s)
        allowed = np.flatnonzero(row != -1)
        if dfa.accepting[s] and (not allowed.size or rng.random() < stop or len(out) > max_len):
            return bytes(out)
        ascii_ = allowed[allowed < 128]
        b = int(rng.choice(ascii_ if ascii_.size and rng.random() < 0.9 else allowed))
        out.append(b)
        s = int(row[b])


def random_segmentation(data: bytes, vocab_tokens: dict[bytes, int], rng: random.Random,
                        max_piece: int = 8) -> list[int] | None:
    """Split `data` into tokens of the vocabulary at random (a non-canonical tokenization)."""
    out, i = [], 0
    while i < len(data):
        choices = [k for k in range(1, min(max_piece, len(data) - i) + 1) if data[i:i + k] in vocab_tokens]
        if not choices:
            return None
        k = rng.choice(choices)
        out.append(vocab_tokens[data[i:i + k]])
        i += k
    return out


def bitmask_to_ids(row, vocab_size: int) -> list[int]:
    bits = np.unpackbits(row.numpy().view(np.uint8), bitorder="little")[:vocab_size]
    return np.flatnonzero(bits).tolist()


def row_layout_cases(store, rng: np.random.Generator, sparse_limit: int) -> list[tuple[int, np.ndarray]]:
    """Rows at, just past and far past the sparse limit, on either background (all-zero or
    all-one), with random words; added to `store`: (row id, row)."""
    words = store.words
    cases = []
    for background in (0, -1):
        for changed in (0, 1, sparse_limit, sparse_limit + 1, words):
            row = np.full(words, background, np.int32)
            where = rng.choice(words, changed, replace=False)
            row[where] = rng.integers(-2**31, 2**31 - 1, changed, dtype=np.int32)
            cases.append((store.add(row), row))
    return cases
