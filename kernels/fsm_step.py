"""The token FSM on the device: gather each row's mask, sample, advance the state, no host sync.

The tables are `common.layouts.FSMTables` (what the masking layer's `TokenFSM.tables()`
produces, and `common.layouts.fsm_tables` builds): the distinct mask rows, each state's row, a
default next state per state plus a CSR of explicit transitions, the accepting states and the
start state, vocabulary size and EOS id. `from_tables` and `concat` check them.

`next_states` is a binary search in the state's CSR slice with a fixed number of steps (the
largest out-degree's bit length), so it has no data-dependent host branching; a token the state
does not allow maps to -1.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import torch

from ..common.layouts import TABLE_KEYS, FSMTables, bitmask_words
from .bitmask import byte_table, bitmask_bytes
from .dispatch import KernelInputError, check_logits, launch_options, tl, triton, use_triton
from .sampling import (sample_torch, sample_triton, sampling_params, seed_tensor,
                       wants_truncation)

_BLOCK_ROWS = 128


class DeviceFSM:
    """Device-resident token FSM tables for one or several grammars (see the module docstring)."""

    def __init__(self, mask_rows: torch.Tensor, state_row: torch.Tensor,
                 default_next: torch.Tensor, trans_offsets: torch.Tensor,
                 trans_tokens: torch.Tensor, trans_next: torch.Tensor, accepting: torch.Tensor,
                 state_eos: torch.Tensor, vocab_size: int, max_out_degree: int) -> None:
        # Use from_tables / concat, which check the tables; this stores them as given.
        self.mask_rows = mask_rows
        self.state_row = state_row
        self.default_next = default_next
        self.trans_offsets = trans_offsets
        # One sentinel entry past the end keeps gathers in bounds when E == 0.
        self.trans_tokens = torch.cat([trans_tokens, trans_tokens.new_full((1,), -1)])
        self.trans_next = torch.cat([trans_next, trans_next.new_full((1,), -1)])
        self.accepting = accepting
        self.state_eos = state_eos
        self.vocab_size = vocab_size
        self.search_steps = max(1, max_out_degree.bit_length())

    @property
    def device(self) -> torch.device:
        return self.mask_rows.device

    @property
    def num_states(self) -> int:
        return self.state_row.shape[0]

    @property
    def words(self) -> int:
        return self.mask_rows.shape[1]

    @classmethod
    def from_tables(cls, tables: FSMTables, device: torch.device | str) -> DeviceFSM:
        """Check one grammar's tables and move them to `device`."""
        fsm, _ = cls.concat([tables], device)
        return fsm

    @classmethod
    def concat(cls, tables_list: Sequence[FSMTables], device: torch.device | str
               ) -> tuple[DeviceFSM, torch.Tensor]:
        """Several grammars (one per batch row, same vocabulary) in one table set.

        Returns the FSM and each grammar's start state (int64, on `device`) in the joint
        numbering: grammar g's states are shifted by the number of states before it.
        """
        if not tables_list:
            raise KernelInputError("DeviceFSM.concat: needs at least one table set")
        checked = [_check_tables(t, f"DeviceFSM tables[{i}]") for i, t in enumerate(tables_list)]
        vocab = checked[0]["vocab_size"]
        for i, t in enumerate(checked):
            if t["vocab_size"] != vocab:
                raise KernelInputError(f"DeviceFSM.concat: tables[{i}] has vocab_size "
                                       f"{t['vocab_size']}, tables[0] has {vocab}")
        parts: dict[str, list[torch.Tensor]] = {k: [] for k in TABLE_KEYS[:7]}
        eos, starts = [], []
        n_states = n_rows = n_edges = 0
        for t in checked:
            s = t["state_row"].shape[0]
            parts["mask_rows"].append(t["mask_rows"])
            parts["state_row"].append(t["state_row"] + n_rows)
            parts["default_next"].append(torch.where(t["default_next"] >= 0,
                                                     t["default_next"] + n_states, -1))
            offsets = t["trans_offsets"] + n_edges
            parts["trans_offsets"].append(offsets if not parts["trans_offsets"] else offsets[1:])
            parts["trans_tokens"].append(t["trans_tokens"])
            parts["trans_next"].append(t["trans_next"] + n_states)
            parts["accepting"].append(t["accepting"])
            eos.append(torch.full((s,), t["eos_token_id"], dtype=torch.int64))
            starts.append(t["start_state"] + n_states)
            n_states += s
            n_rows += t["mask_rows"].shape[0]
            n_edges += t["trans_tokens"].shape[0]
        joined = {k: torch.cat(v).to(device) for k, v in parts.items()}
        degree = max(int((t["trans_offsets"][1:] - t["trans_offsets"][:-1]).max()) for t in checked)
        fsm = cls(joined["mask_rows"].to(torch.int32).contiguous(),
                  joined["state_row"].to(torch.int32), joined["default_next"].to(torch.int32),
                  joined["trans_offsets"].to(torch.int64), joined["trans_tokens"].to(torch.int32),
                  joined["trans_next"].to(torch.int32), joined["accepting"].to(torch.bool),
                  torch.cat(eos).to(device), vocab, degree)
        return fsm, torch.tensor(starts, dtype=torch.int64, device=device)

    # ------------------------------------------------------------------ lookups

    def fill_bitmask(self, states: torch.Tensor) -> torch.Tensor:
        """(B, W) int32: each state's allowed-token row (a gather; no host sync)."""
        states = self._check_states("fill_bitmask", states)
        return self.mask_rows.index_select(0, self.state_row.index_select(0, states).long())

    def is_accepting(self, states: torch.Tensor) -> torch.Tensor:
        return self.accepting.index_select(0, self._check_states("is_accepting", states))

    def next_states(self, states: torch.Tensor, tokens: torch.Tensor) -> torch.Tensor:
        """State after each (state, token) pair, int64; -1 where the state does not allow it."""
        states = self._check_states("next_states", states)
        tokens = _as_index("DeviceFSM.next_states", "tokens", tokens, states.shape[0], self.device)
        if use_triton(self.device):
            new_states = torch.empty_like(states)
            self._advance_triton(states, tokens, new_states, None, None, is_step=False)
            return new_states
        return self._next_torch(states, tokens)

    # ------------------------------------------------------------------ one decode step

    def step(self, logits: torch.Tensor, states: torch.Tensor, *,
             temperature: float | torch.Tensor = 1.0, top_k: int | torch.Tensor = 0,
             top_p: float | torch.Tensor = 1.0, generator: torch.Generator | None = None,
             finished: torch.Tensor | None = None, pad_token_id: int | None = None
             ) -> tuple[torch.Tensor, torch.Tensor]:
        """Sample each row's next token under its state's mask and advance: (tokens, new_states).

        Everything stays on the device (no `.item()`, no branch on tensor values), so a decode
        loop of steps can be captured in a CUDA graph. Rows where `finished` is True emit
        `pad_token_id` (default: their grammar's EOS) and keep their state. A row with nothing
        to sample (an empty mask row, or a NaN/+inf allowed logit) gets token -1 and keeps its
        state; tensor-valued temperature/top_k/top_p are not range-checked here (that would sync).
        """
        op = "DeviceFSM.step"
        check_logits(op, logits)
        if logits.device != self.device:
            raise KernelInputError(f"{op}: logits are on {logits.device}, the FSM on {self.device}")
        batch = logits.shape[0]
        states = self._check_states("step", states, batch)
        if finished is not None:
            if not isinstance(finished, torch.Tensor) or finished.dtype != torch.bool or \
                    finished.shape != (batch,):
                raise KernelInputError(f"{op}: finished must be a bool tensor of shape ({batch},)")
            finished = finished.to(self.device)
        if pad_token_id is not None and (not isinstance(pad_token_id, int) or pad_token_id < 0):
            raise KernelInputError(f"{op}: pad_token_id must be a non-negative int")
        params = sampling_params(op, batch, self.device, temperature, top_k, top_p)
        seed = seed_tensor(op, self.device, generator, None)
        if use_triton(self.device):
            tokens, _ = sample_triton(logits, self.mask_rows, *params, seed, states=states,
                                      state_row=self.state_row,
                                      truncate=wants_truncation(top_k, top_p))
            new_states = torch.empty_like(states)
            self._advance_triton(states, tokens, new_states, finished, pad_token_id, is_step=True)
            return tokens, new_states
        tokens, _ = sample_torch(logits, self.fill_bitmask(states), *params, seed)
        new_states = self._next_torch(states, tokens)
        new_states = torch.where(new_states < 0, states, new_states)
        if finished is not None:
            pad = self.state_eos[states] if pad_token_id is None else torch.full_like(tokens,
                                                                                      pad_token_id)
            tokens = torch.where(finished, pad, tokens)
            new_states = torch.where(finished, states, new_states)
        return tokens, new_states

    # ------------------------------------------------------------------ implementations

    def _check_states(self, name: str, states: object, batch: int | None = None) -> torch.Tensor:
        return _as_index(f"DeviceFSM.{name}", "states", states, batch, self.device)

    def _next_torch(self, states: torch.Tensor, tokens: torch.Tensor) -> torch.Tensor:
        """Reference: fixed-step lower_bound in each state's CSR slice, else the default."""
        last = self.trans_tokens.shape[0] - 1
        lo = self.trans_offsets[states]
        hi = end = self.trans_offsets[states + 1]
        for _ in range(self.search_steps):
            active = lo < hi
            mid = (lo + hi) // 2
            right = active & (self.trans_tokens[mid.clamp(max=last)] < tokens)
            lo = torch.where(right, mid + 1, lo)
            hi = torch.where(active & ~right, mid, hi)
        at = lo.clamp(max=last)
        found = (lo < end) & (self.trans_tokens[at] == tokens)
        nxt = torch.where(found, self.trans_next[at], self.default_next[states]).long()
        in_vocab = (tokens >= 0) & (tokens < self.vocab_size)
        safe = torch.where(in_vocab, tokens, 0)
        words = self.mask_rows[self.state_row[states].long(), safe // 32]
        allowed = in_vocab & (((words >> (safe % 32)) & 1) == 1)
        return torch.where(allowed, nxt, -1)

    def _advance_triton(self, states, tokens, new_states, finished, pad_token_id, *,
                        is_step: bool) -> None:
        batch = states.shape[0]
        if batch == 0:
            return
        _advance_kernel[(triton.cdiv(batch, _BLOCK_ROWS),)](
            states, tokens, new_states, finished if finished is not None else states, batch,
            self.mask_rows, self.words, self.state_row, self.default_next, self.trans_offsets,
            self.trans_tokens, self.trans_next, self.state_eos,
            -1 if pad_token_id is None else pad_token_id, self.vocab_size, self.search_steps,
            IS_STEP=is_step,
            HAS_FINISHED=finished is not None, BLOCK=_BLOCK_ROWS, **launch_options())


def _as_index(op: str, name: str, value: object, batch: int | None,
              device: torch.device) -> torch.Tensor:
    if not isinstance(value, torch.Tensor) or value.dim() != 1 or value.dtype.is_floating_point \
            or value.dtype == torch.bool:
        raise KernelInputError(f"{op}: {name} must be a 1-D integer tensor")
    if batch is not None and value.shape[0] != batch:
        raise KernelInputError(f"{op}: {name} has {value.shape[0]} rows, logits have {batch}")
    if value.device != device:
        raise KernelInputError(f"{op}: {name} is on {value.device}, the FSM on {device}")
    return value.long()


# ----------------------------------------------------------------------------- table checks

def _check_tables(tables: Mapping, where: str) -> dict:
    """Host-side, once per grammar: every index in range, CSR well formed, masks consistent."""
    if not isinstance(tables, Mapping):
        raise KernelInputError(f"{where}: expected a dict of tensors, got {type(tables).__name__}")
    missing = [k for k in TABLE_KEYS if k not in tables]
    if missing:
        raise KernelInputError(f"{where}: missing {', '.join(missing)}")

    def scalar(name: str) -> int:
        value = tables[name]
        if isinstance(value, torch.Tensor):
            if value.numel() != 1:
                raise KernelInputError(f"{where}: {name} must be a scalar")
            value = value.item()
        if isinstance(value, bool) or not isinstance(value, int):
            raise KernelInputError(f"{where}: {name} must be an int, got {value!r}")
        return value

    def tensor(name: str, dim: int, integer: bool = True) -> torch.Tensor:
        value = torch.as_tensor(tables[name]).cpu()
        if value.dim() != dim:
            raise KernelInputError(f"{where}: {name} must be {dim}-D, got shape {tuple(value.shape)}")
        if integer and (value.dtype.is_floating_point or value.dtype == torch.bool):
            raise KernelInputError(f"{where}: {name} must be an integer tensor, got {value.dtype}")
        return value.long() if integer else value

    vocab, eos, start = scalar("vocab_size"), scalar("eos_token_id"), scalar("start_state")
    mask_rows = torch.as_tensor(tables["mask_rows"]).cpu()
    if mask_rows.dtype != torch.int32 or mask_rows.dim() != 2:
        raise KernelInputError(f"{where}: mask_rows must be int32 (rows, words), got "
                               f"{mask_rows.dtype} {tuple(mask_rows.shape)}")
    state_row, default_next = tensor("state_row", 1), tensor("default_next", 1)
    offsets, tokens, nxt = tensor("trans_offsets", 1), tensor("trans_tokens", 1), tensor("trans_next", 1)
    accepting = tensor("accepting", 1, integer=False)
    n_states, n_rows, n_edges = state_row.shape[0], mask_rows.shape[0], tokens.shape[0]

    def fail(message: str) -> None:
        raise KernelInputError(f"{where}: {message}")

    if vocab <= 0:
        fail(f"vocab_size must be positive, got {vocab}")
    if mask_rows.shape[1] != bitmask_words(vocab):
        fail(f"mask_rows has {mask_rows.shape[1]} words, vocab_size {vocab} needs {bitmask_words(vocab)}")
    if n_states == 0:
        fail("has no states")
    for name, t, size in (("default_next", default_next, n_states), ("accepting", accepting, n_states),
                          ("trans_offsets", offsets, n_states + 1), ("trans_next", nxt, n_edges)):
        if t.shape[0] != size:
            fail(f"{name} has {t.shape[0]} entries, expected {size}")
    if accepting.dtype != torch.bool:
        fail(f"accepting must be bool, got {accepting.dtype}")
    if not 0 <= start < n_states:
        fail(f"start_state {start} is not a state (0..{n_states - 1})")
    if not 0 <= eos < vocab:
        fail(f"eos_token_id {eos} is outside the vocabulary (0..{vocab - 1})")
    if n_states and (state_row.min() < 0 or state_row.max() >= n_rows):
        fail(f"state_row points outside mask_rows (0..{n_rows - 1})")
    if default_next.min() < -1 or default_next.max() >= n_states:
        fail(f"default_next must be -1 or a state (0..{n_states - 1})")
    if offsets[0] != 0 or offsets[-1] != n_edges or (offsets[1:] < offsets[:-1]).any():
        fail("trans_offsets must start at 0, never decrease and end at len(trans_tokens)")
    if n_edges:
        if tokens.min() < 0 or tokens.max() >= vocab:
            fail(f"trans_tokens must be token ids (0..{vocab - 1})")
        if nxt.min() < 0 or nxt.max() >= n_states:
            fail(f"trans_next must be states (0..{n_states - 1})")
        owner = torch.repeat_interleave(torch.arange(n_states), offsets[1:] - offsets[:-1])
        same = owner[1:] == owner[:-1]
        if (same & (tokens[1:] <= tokens[:-1])).any():
            bad = int(owner[1:][same & (tokens[1:] <= tokens[:-1])][0])
            fail(f"trans_tokens of state {bad} are not strictly ascending")
    else:
        owner = torch.zeros(0, dtype=torch.long)
    if vocab % 32 and (mask_rows[:, -1].long() >> (vocab % 32) & 0xFFFFFFFF).any():
        fail(f"mask_rows allow ids past vocab_size {vocab}")
    # An allowed token needs somewhere to go: a default, or an explicit entry.
    popcount = byte_table((0.0, 1.0), torch.int32, torch.device("cpu"))
    counts = popcount.index_select(0, bitmask_bytes(mask_rows).reshape(-1)).view(n_rows, -1).sum(1)
    explicit = torch.zeros(n_states, dtype=torch.long)
    if n_edges:
        words = mask_rows[state_row[owner], tokens // 32].long()
        explicit.index_add_(0, owner, (words >> (tokens % 32)) & 1)
    closed = default_next < 0
    if (closed & (counts[state_row] != explicit)).any():
        bad = int(torch.nonzero(closed & (counts[state_row] != explicit))[0])
        fail(f"state {bad} allows tokens that have no transition (default_next is -1)")
    return {"mask_rows": mask_rows, "state_row": state_row, "default_next": default_next,
            "trans_offsets": offsets, "trans_tokens": tokens, "trans_next": nxt,
            "accepting": accepting, "start_state": start, "vocab_size": vocab,
            "eos_token_id": eos}


# ----------------------------------------------------------------------------- Triton kernel

@triton.jit
def _advance_kernel(states_ptr, tokens_ptr, new_states_ptr, finished_ptr, batch,
                    mask_rows_ptr, n_words, state_row_ptr, default_ptr, offsets_ptr,
                    trans_tokens_ptr, trans_next_ptr, state_eos_ptr, pad_token, vocab_size,
                    search_steps, IS_STEP: tl.constexpr, HAS_FINISHED: tl.constexpr,
                    BLOCK: tl.constexpr):
    """BLOCK rows per program: lower_bound in the CSR slice, else the default; -1 if disallowed.

    In a step, a row that could not sample (token -1) or is finished keeps its state, and a
    finished row's token becomes the pad id (or its grammar's EOS).
    """
    i = tl.program_id(0) * BLOCK + tl.arange(0, BLOCK)
    live = i < batch
    state = tl.load(states_ptr + i, mask=live, other=0)
    token = tl.load(tokens_ptr + i, mask=live, other=-1)
    lo = tl.load(offsets_ptr + state, mask=live, other=0)
    end = tl.load(offsets_ptr + state + 1, mask=live, other=0)
    hi = end
    for _ in range(search_steps):
        active = lo < hi
        mid = (lo + hi) // 2
        t = tl.load(trans_tokens_ptr + mid, mask=active, other=0)
        right = active & (t < token)
        lo = tl.where(right, mid + 1, lo)
        hi = tl.where(active & (t >= token), mid, hi)
    found = (lo < end) & (tl.load(trans_tokens_ptr + lo, mask=lo < end, other=-1) == token)
    nxt = tl.where(found, tl.load(trans_next_ptr + lo, mask=found, other=-1),
                   tl.load(default_ptr + state, mask=live, other=-1)).to(tl.int64)
    in_vocab = (token >= 0) & (token < vocab_size)
    row = tl.load(state_row_ptr + state, mask=live, other=0).to(tl.int64)
    word = tl.load(mask_rows_ptr + row * n_words + token // 32, mask=live & in_vocab, other=0)
    allowed = in_vocab & (((word >> (token % 32).to(tl.int32)) & 1) == 1)
    nxt = tl.where(allowed, nxt, -1)
    if IS_STEP:
        nxt = tl.where(nxt < 0, state, nxt)
        if HAS_FINISHED:
            done = tl.load(finished_ptr + i, mask=live, other=0) != 0
            if pad_token >= 0:
                pad = tl.zeros_like(token) + pad_token
            else:
                pad = tl.load(state_eos_ptr + state, mask=live, other=0)
            token = tl.where(done, pad, token)
            nxt = tl.where(done, state, nxt)
            tl.store(tokens_ptr + i, token, mask=live)
    tl.store(new_states_ptr + i, nxt, mask=live)
