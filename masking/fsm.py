"""`TokenFSM`: the compiled, per-state masks and next states of one grammar for one vocabulary.

States are computed on first use (`lazy=True`) or all at once; `tables()` computes every state
and returns the flat tensors the kernels layer loads onto a device. A state from which no
sequence of tokens can finish the grammar (possible only when the vocabulary cannot spell some
byte the grammar needs) is removed when all states are computed; lazily compiled FSMs check up
front that the vocabulary spells every byte the grammar uses, and compile eagerly otherwise.
"""

from __future__ import annotations

from collections import deque
from typing import Callable, NamedTuple

import numpy as np
import torch

from ..common.layouts import FSMTables, bitmask_words, fsm_tables
from . import matcher_step
from .automaton import DFA
from .compile_errors import GrammarCompileError
from .matcher import Matcher
from .crossing import cross_state
from .state_table import RowStore, StateResult, state_result
from .vocab_index import VocabIndex


class StepInputs(NamedTuple):
    """What a decode-step cursor (masking/matcher_step.py) reads from its `TokenFSM`, besides
    the attributes `words`, `start_state`, `eos_token_ids` and the methods `step`,
    `fill_row`, `mask_row`, `finished_row`, `finished_row_numpy` and `finished_row_bytes`."""

    records: list  # each state's record, None until made; grows in place as the FSM does
    make_record: Callable[[int], bytes | tuple]  # a state's record, making the state first
    next_state: Callable[[int, int], int]  # an allowed token's next state (by-length states)


class TokenFSM:
    """Allowed tokens and next states per state; state 0 is the start (`start_state`)."""

    def __init__(self, dfa: DFA, index: VocabIndex, eos_token_ids: list[int], *, lazy: bool,
                 key: str = ""):
        self.dfa = dfa
        self.index = index
        self.vocab_size = index.size
        self.words = bitmask_words(index.size)
        self.eos_token_ids = list(eos_token_ids)
        self.start_state = 0
        self.key = key
        self._rows = RowStore(self.words)
        self._states: list[StateResult | None] = [None] * dfa.num_states
        # each state's record for matcher_step.c (its layout is described there), made with the
        # state where the native step is built; the cursors of this FSM's matchers read it
        self._records: list[bytes | tuple | None] = [None] * dfa.num_states
        self._tables: dict | None = None  # set when loaded from the cache: states made on use
        self._complete = False
        self._init_memos()
        # a vocabulary with a token for every byte spells anything, and the check is skipped:
        # it reads every terminal's DFA, which a lazily explored grammar has not built
        self.spells_all_bytes = bool(index.single_byte.all()) or \
            bool(index.single_byte[np.flatnonzero(dfa.used_bytes())].all())
        if not lazy or not self.spells_all_bytes:
            self.compile_all()

    def _init_memos(self) -> None:
        self._finished_row: torch.Tensor | None = None  # finished_row()
        self._finished_bytes: bytes | None = None       # finished_row_bytes()
        # per state, for masking/completion.py: the fewest bytes and the tokens that finish
        self.completion_bytes_memo: dict[int, bytes | None] = {}
        self.completions_memo: dict[int, list[int] | None] = {}

    # -- construction --------------------------------------------------------------------------
    @property
    def num_states(self) -> int:
        return len(self._states)

    def state(self, s: int) -> StateResult:
        if s >= len(self._states):  # a lazily explored DFA grew
            self._grow()
            if s >= len(self._states):
                raise IndexError(f"state {s} does not exist: this FSM has {len(self._states)} states")
        got = self._states[s]
        if got is None:
            if self._tables is not None:
                got = self._state_from_tables(s)
            else:
                ids, nxt, loop_mask = cross_state(self.dfa, self.index, s)
                got = state_result(s, ids, nxt, loop_mask, bool(self.dfa.accepting[s]),
                                   self.eos_token_ids, self.vocab_size, self.words, self._rows,
                                   self.index)
            self._store(s, got)
        return got

    def _store(self, s: int, r: StateResult) -> None:
        self._states[s] = r
        # the record is made now, not in the first decode step to reach the state
        self._records[s] = (matcher_step.state_record(self._rows, r, self.vocab_size)
                            if matcher_step.load() is not None else None)

    def compile_all(self) -> "TokenFSM":
        """Compute every reachable state, then drop states that can never finish."""
        if self._complete:
            return self
        seen = {0}
        queue = deque([0])
        while queue:
            s = queue.popleft()
            r = self.state(s)
            for t in r.targets():
                if t not in seen:
                    seen.add(t)
                    queue.append(t)
        self._grow()
        self._prune_dead_ends(seen)
        for s in range(self.num_states):  # byte-reachable only: no token sequence gets there
            if self._states[s] is None:
                self._store(s, state_result(s, np.zeros(0, np.int64), np.zeros(0, np.int64), None,
                                            False, [], self.vocab_size, self.words, self._rows))
        self._complete = True
        return self

    def _prune_dead_ends(self, reachable: set[int]) -> None:
        # a state is live if it is accepting or some allowed token leads to a live state
        live = {s for s in reachable if self.dfa.accepting[s]}
        preds: dict[int, set[int]] = {}
        for s in reachable:
            r = self._states[s]
            for t in r.targets():
                preds.setdefault(t, set()).add(s)
        queue = deque(live)
        while queue:
            t = queue.popleft()
            for p in preds.get(t, ()):
                if p not in live:
                    live.add(p)
                    queue.append(p)
        if len(live) == len(reachable):
            return
        if 0 not in live:
            raise GrammarCompileError("this vocabulary cannot spell any string of the grammar",
                                      where="compile_grammar")
        # rebuild the states that can reach a dead one, without the tokens that lead there
        for s in live:
            r = self._states[s]
            nexts = r.targets()
            if nexts <= live:
                continue
            ids, nxt, loop_mask = cross_state(self.dfa, self.index, s)
            keep = np.isin(nxt, list(live))
            self._store(s, state_result(s, ids[keep], nxt[keep], loop_mask,
                                        bool(self.dfa.accepting[s]), self.eos_token_ids,
                                        self.vocab_size, self.words, self._rows, self.index))
        for s in reachable - live:
            self._store(s, state_result(s, np.zeros(0, np.int64), np.zeros(0, np.int64), None,
                                        False, [], self.vocab_size, self.words, self._rows))

    def _grow(self) -> None:
        extra = self.dfa.num_states - len(self._states)
        self._states.extend([None] * extra)
        self._records.extend([None] * extra)  # in place: cursors hold this list

    @property
    def complete(self) -> bool:
        """True once every reachable state is computed (always, unless compiled lazily)."""
        return self._complete

    # -- queries -------------------------------------------------------------------------------
    def is_accepting(self, s: int) -> bool:
        return bool(self.dfa.accepting[s])

    def is_allowed(self, s: int, token_id: int) -> bool:
        if not 0 <= token_id < self.vocab_size:
            return False
        row = self._rows.bits(self.state(s).row)
        return bool((row[token_id >> 3] >> (token_id & 7)) & 1)

    def step(self, s: int, token_id: int) -> int:
        """The state after `token_id`, or -1 if the token is not allowed in `s` (the hot path of
        a decode step: one bit test and one binary search, in C where matcher_step.c is built)."""
        step = matcher_step.load()
        if step is not None:
            record = self._records[s] if s < len(self._records) else None
            nxt = step.next_state(record or self.record(s), token_id)
            return nxt if nxt != -2 else self._states[s].next_state(token_id)
        r = self._states[s] if s < len(self._states) else None
        if r is None:
            r = self.state(s)
        if not 0 <= token_id < self.vocab_size:
            return -1
        bits = self._rows.bytes_rows[r.row]
        if bits is None:
            bits = self._rows.bits(r.row)
        if not (bits[token_id >> 3] >> (token_id & 7)) & 1:
            return -1
        return r.next_state(token_id)

    def record(self, s: int) -> bytes | tuple:
        """State `s` as matcher_step.c reads it, computing the state first if needed."""
        self.state(s)
        record = self._records[s]
        if record is None:  # made while the native step was off
            record = self._records[s] = matcher_step.state_record(self._rows, self._states[s],
                                                                   self.vocab_size)
        return record

    def step_inputs(self) -> StepInputs:
        """What a decode-step cursor needs of this FSM (see `StepInputs`)."""
        return StepInputs(self._records, self.record, self.next_state)

    def next_state(self, s: int, token_id: int) -> int:
        """The state after `token_id` (which must be allowed in `s`)."""
        return self.state(s).next_state(token_id)

    def allowed_tokens(self, s: int) -> list[int]:
        row = self._rows.dense(self.state(s).row)
        bits = np.unpackbits(row.view(np.uint8), bitorder="little")[: self.vocab_size]
        return np.flatnonzero(bits).tolist()

    def allowed_count(self, s: int) -> int:
        """How many tokens state `s` allows (EOS included)."""
        r = self.state(s)
        if r.count is None:  # loaded from tables: counted on demand
            r.count = self._rows.count(r.row)
        return r.count

    def single_token(self, s: int) -> int:
        return self.state(s).single

    def mask_row(self, s: int) -> torch.Tensor:
        return self._rows.torch_row(self.state(s).row)

    def fill_row(self, dst: np.ndarray, s: int) -> None:
        """Write state `s`'s mask into the int32 array `dst` (sparse rows by memset + scatter)."""
        r = self._states[s] if s < len(self._states) else None
        self._rows.fill(dst, (r if r is not None else self.state(s)).row)

    def fill_address(self, address: int, s: int) -> None:
        """Write state `s`'s mask to `words` int32 words at `address` (memory the caller holds,
        e.g. a contiguous CPU tensor); needs the native step (`matcher_step.load()`)."""
        record = self._records[s] if s < len(self._records) else None
        matcher_step.load().fill(address, self.words, record or self.record(s))

    def finished_row(self) -> torch.Tensor:
        """The mask after EOS was consumed: only EOS again (what padding of a finished row needs)."""
        if self._finished_row is None:
            bits = np.zeros(self.words * 32, bool)
            bits[self.eos_token_ids] = True
            self._finished_row = torch.from_numpy(np.packbits(bits, bitorder="little").view(np.int32))
        return self._finished_row

    def finished_row_numpy(self) -> np.ndarray:
        return self.finished_row().numpy()

    def finished_row_bytes(self) -> bytes:
        """The finished row as matcher_step.c reads it (made once per FSM)."""
        if self._finished_bytes is None:
            self._finished_bytes = self.finished_row_numpy().tobytes()
        return self._finished_bytes

    def matcher(self, max_rollback: int | None = None) -> Matcher:
        return Matcher(self, max_rollback)

    # -- device tables -------------------------------------------------------------------------
    def tables(self, *, compact: bool = False) -> FSMTables | dict:
        """Every state's mask and transitions as flat tensors, the `FSMTables` the kernels layer
        loads (a default next state per state plus exceptions). `compact=True` is the on-disk
        cache's form instead: rows as the `RowStore` keeps them in place of `mask_rows`, and
        states that keep a next state per token length with `length_offsets`/`length_next` and
        only their own exceptions."""
        self.compile_all()
        states = [self.state(s) for s in range(self.num_states)]
        exc = [(r.exc_tokens, r.exc_next) if compact or r.length_next is None else self._expanded(r)
               for r in states]
        counts = np.array([t.size for t, _ in exc], np.int64)
        offsets = np.zeros(len(states) + 1, np.int64)
        np.cumsum(counts, out=offsets[1:])
        cat = lambda xs: np.concatenate(xs).astype(np.int32) if xs else np.zeros(0, np.int32)  # noqa: E731
        out = fsm_tables(
            mask_rows=self._rows.tensor() if not compact else np.zeros((0, self.words), np.int32),
            state_row=[r.row for r in states],
            default_next=[r.default for r in states],
            trans_offsets=offsets,
            trans_tokens=cat([t for t, _ in exc]),
            trans_next=cat([n for _, n in exc]),
            accepting=self.dfa.accepting[:len(states)].copy(),
            single_token=[r.single for r in states],
            start_state=self.start_state,
            vocab_size=self.vocab_size,
            eos_token_id=self.eos_token_ids[0] if self.eos_token_ids else -1)
        if compact:
            del out["mask_rows"]  # the cache keeps the RowStore's compact rows instead
            out = {**self._rows.compact(), **out}
            per_length = [r.length_next or [] for r in states]
            lo = np.zeros(len(states) + 1, np.int64)
            np.cumsum([len(x) for x in per_length], out=lo[1:])
            out["length_offsets"] = torch.from_numpy(lo)
            out["length_next"] = torch.tensor([v for x in per_length for v in x], dtype=torch.int32)
        return out

    def _expanded(self, r: StateResult) -> tuple[np.ndarray, np.ndarray]:
        """A per-length state's transitions as a default plus exceptions."""
        bits = np.unpackbits(self._rows.dense(r.row).view(np.uint8), bitorder="little")
        ids = np.flatnonzero(bits[:self.vocab_size])
        nxt = r.next_states(ids, self.index.id_length)
        keep = nxt != r.default
        keep[np.isin(ids, self.eos_token_ids)] = True  # EOS always has its own entry
        return ids[keep].astype(np.int32), nxt[keep].astype(np.int32)

    def memory_bytes(self) -> int:
        """Bytes held by the compiled masks and transitions (not the DFA). A loaded FSM holds
        its flat transition tables and makes per-state objects on use."""
        packed = {s: len(record if type(record) is bytes else record[0])
                  for s, record in enumerate(self._records) if record is not None}
        if self._tables is not None:
            # the native records copy the loaded tables' exceptions of the states made so far
            trans = sum(v.nbytes for v in self._tables.values()) + sum(packed.values())
        else:
            # a state with a native record reads its exceptions from it (counted there, with a
            # fixed part and a sparse row's words again)
            trans = sum(packed.get(s, r.exc_tokens.nbytes + r.exc_next.nbytes)
                        + 8 * len(r.length_next or ())
                        for s, r in enumerate(self._states) if r is not None)
        return self._rows.nbytes() + trans + 16 * self.num_states

    _TABLE_KEYS = ("state_row", "default_next", "trans_offsets", "trans_tokens", "trans_next",
                   "single_token", "length_offsets", "length_next")

    @classmethod
    def from_tables(cls, tables: dict, dfa: DFA, index: VocabIndex, eos_token_ids: list[int],
                    key: str = "") -> "TokenFSM":
        """Rebuild a complete FSM from `tables()` output, with dense or compact rows (the
        on-disk cache). Per-state objects are made on first use."""
        self = cls.__new__(cls)
        self.dfa, self.index = dfa, index
        self.vocab_size = index.size
        self.words = bitmask_words(index.size)
        self.eos_token_ids = list(eos_token_ids)
        self.start_state = int(tables["start_state"])
        self.key = key
        if "mask_rows" in tables:
            rows = RowStore(self.words)
            for row in tables["mask_rows"].numpy():
                rows.add(np.ascontiguousarray(row))
        else:
            rows = RowStore.from_compact(self.words, tables)
        self._rows = rows
        self._tables = {k: tables[k].numpy() for k in self._TABLE_KEYS if k in tables}
        self._state_row = tables["state_row"].tolist()
        self._default_next = tables["default_next"].tolist()
        self._single = tables["single_token"].tolist()
        self._offsets = tables["trans_offsets"].tolist()
        self._length_offsets = (tables["length_offsets"].tolist() if "length_offsets" in tables
                                else None)
        self._states = [None] * len(self._state_row)
        self._records = [None] * len(self._state_row)
        self._complete = True
        self._init_memos()
        self.spells_all_bytes = True
        return self

    def _state_from_tables(self, s: int) -> StateResult:
        t, lo, hi = self._tables, self._offsets[s], self._offsets[s + 1]
        row = self._state_row[s]
        length_next = None
        if self._length_offsets is not None:
            a, b = self._length_offsets[s], self._length_offsets[s + 1]
            length_next = t["length_next"][a:b].tolist() if b > a else None
        return StateResult(row, self._default_next[s], t["trans_tokens"][lo:hi],
                           t["trans_next"][lo:hi], None, self._single[s], length_next,
                           self.index.id_length_list if length_next is not None else None)
