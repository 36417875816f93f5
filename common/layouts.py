"""The data the layers hand each other, defined once: the token bitmask's width
(`bitmask_words`) and the token FSM's flat tables (`FSMTables`, built by `fsm_tables`).

Bitmask layout: int32 words, bit `t % 32` of word `t // 32` is token `t`, 1 = allowed;
a row has `bitmask_words(vocab_size)` words.

FSM tables: what the masking layer's `TokenFSM.tables()` produces and the kernels layer's
`DeviceFSM` loads (it checks them; nothing here does). S states, R distinct mask rows of W
words, E explicit transitions.
"""

from __future__ import annotations

from typing import Any, TypedDict

import torch


def bitmask_words(vocab_size: int) -> int:
    """Words per bitmask row for a vocabulary of `vocab_size` tokens: ceil(V / 32)."""
    if not isinstance(vocab_size, int) or isinstance(vocab_size, bool) or vocab_size < 0:
        raise ValueError(f"bitmask_words: vocab_size must be a non-negative int, got {vocab_size!r}")
    return (vocab_size + 31) // 32


class _RequiredTables(TypedDict):
    mask_rows: torch.Tensor      # int32 (R, W): the distinct allowed-token bitmask rows
    state_row: torch.Tensor      # int32 (S,): each state's row
    default_next: torch.Tensor   # int32 (S,): next state of an allowed token without an
    #                              explicit entry (-1: none)
    # CSR of the explicit transitions, tokens ascending within a state (a string-body state
    # sends almost every token to one state, so a 262k vocabulary costs one default plus a few
    # exceptions, not a 262k-entry row)
    trans_offsets: torch.Tensor  # int64 (S + 1,)
    trans_tokens: torch.Tensor   # int32 (E,)
    trans_next: torch.Tensor     # int32 (E,)
    accepting: torch.Tensor      # bool (S,)
    start_state: int
    vocab_size: int
    eos_token_id: int            # -1: none


class FSMTables(_RequiredTables, total=False):
    """One grammar's token FSM as flat tensors (see the module docstring)."""

    single_token: torch.Tensor   # int32 (S,): the only allowed token of a state, or -1


TABLE_KEYS = tuple(_RequiredTables.__annotations__)


def fsm_tables(*, mask_rows: Any, state_row: Any, default_next: Any, trans_offsets: Any,
               trans_tokens: Any, trans_next: Any, accepting: Any, start_state: int,
               vocab_size: int, eos_token_id: int, single_token: Any = None) -> FSMTables:
    """`FSMTables` from tensors, numpy arrays or lists, in the dtypes listed there (arrays of
    the right dtype are shared, not copied)."""
    out = FSMTables(
        mask_rows=torch.as_tensor(mask_rows, dtype=torch.int32),
        state_row=torch.as_tensor(state_row, dtype=torch.int32),
        default_next=torch.as_tensor(default_next, dtype=torch.int32),
        trans_offsets=torch.as_tensor(trans_offsets, dtype=torch.int64),
        trans_tokens=torch.as_tensor(trans_tokens, dtype=torch.int32),
        trans_next=torch.as_tensor(trans_next, dtype=torch.int32),
        accepting=torch.as_tensor(accepting, dtype=torch.bool),
        start_state=start_state, vocab_size=vocab_size, eos_token_id=eos_token_id)
    if single_token is not None:
        out["single_token"] = torch.as_tensor(single_token, dtype=torch.int32)
    return out
