"""In-place application of a token bitmask to logits: a Triton kernel for CUDA, a native C kernel
for CPU (bitmask_cpu.c, built by native.py) and the torch reference both are tested against.

Layout (`common/layouts.py`; shared with XGrammar, llguidance and outlines-core): int32 words,
`bitmask_words(V)` = `ceil(V / 32)` per row;
token t is allowed when bit `t % 32` of word `t // 32` is 1. Masked logits become -inf;
allowed logits are not touched. Logits wider than `32 * words` (a padded vocabulary) have their extra
ids masked; extra bits past the logits' width are ignored.
"""

from __future__ import annotations

import ctypes
import sys
import threading
from collections.abc import Sequence

import torch

from . import native
from .dispatch import (KernelInputError, check_bitmask, check_logits, check_rows,
                       launch_options, tl, triton, use_triton)

# Tokens per chunk of the torch path: the gathered caps (4 bytes a token) stay in L2.
_CHUNK_TOKENS = 1 << 18
# Words per Triton tile: 64 words = 2048 tokens per program.
_TILE_WORDS = 64


def apply_token_bitmask_(logits: torch.Tensor, bitmask: torch.Tensor,
                         indices: torch.Tensor | Sequence[int] | None = None) -> None:
    """Set logits of disallowed tokens to -inf, in place.

    logits: (B, V') float32/float16/bfloat16. bitmask: int32 (B, W). With `indices` (unique row
    numbers of `logits`; the other rows are untouched) the bitmask takes either of two forms,
    told apart by its number of rows:

    - (len(indices), W), this library's compact form: bitmask row i applies to logits[indices[i]];
    - any other number of rows, xgrammar's `apply_token_bitmask_inplace` form (a full-batch
      bitmask): bitmask row indices[i] applies to logits[indices[i]].

    When both readings fit and disagree (len(indices) rows, indices a reordering of 0..k-1 that
    is not in increasing order) the call is refused rather than guessed. Tensor indices on CUDA
    are not range-checked (that would need a host sync); there the compact form is assumed when
    the row counts match.

    Runs the Triton kernel on CUDA and the native C kernel on CPU, or the torch reference where
    the native kernel cannot run (see `apply_native`); all give the same values.
    """
    op = "apply_token_bitmask_"
    check_logits(op, logits)
    rows = None if indices is None else check_rows(op, indices, logits.shape[0], logits.device)
    if rows is not None:
        bitmask = _compact_bitmask(op, bitmask, rows, indices, logits.device)
    check_bitmask(op, bitmask, logits.shape[0] if rows is None else rows.numel(), logits.device)
    if use_triton(logits.device):
        apply_triton(logits, bitmask, rows)
    elif not apply_native(logits, bitmask, rows):
        apply_torch(logits, bitmask, rows)


def _compact_bitmask(op: str, bitmask: torch.Tensor, rows: torch.Tensor,
                     indices: torch.Tensor | Sequence[int], device: torch.device) -> torch.Tensor:
    """The bitmask in the compact form (one row per index): xgrammar's full-batch form is
    gathered into it, so every backend sees one convention."""
    if not isinstance(bitmask, torch.Tensor) or bitmask.dim() != 2:
        return bitmask  # check_bitmask names what is wrong
    k, height = rows.numel(), bitmask.shape[0]
    # host copies only: reading CUDA index values would sync
    host = (indices if isinstance(indices, torch.Tensor) and indices.device.type == "cpu"
            else rows if rows.device.type == "cpu" else None)
    if height == k:
        if host is not None and k and int(host.max()) < k \
                and not bool((host[1:] > host[:-1]).all()):
            raise KernelInputError(
                f"{op}: ambiguous bitmask of {k} rows for indices {host.tolist()}: row i could "
                "apply to logits[indices[i]] (compact form) or row indices[i] to "
                "logits[indices[i]] (xgrammar's form); give the indices in increasing order, "
                "where the two agree")
        return bitmask
    if host is not None and k and int(host.max()) >= height:
        raise KernelInputError(
            f"{op}: bitmask must have shape ({k}, words) (one row per index), or hold row "
            f"{int(host.max())} (xgrammar's full-batch form), got {tuple(bitmask.shape)}")
    if bitmask.device != device or bitmask.dtype != torch.int32:
        return bitmask  # check_bitmask names what is wrong
    return bitmask.index_select(0, rows)


# ----------------------------------------------------------------------------- native CPU kernel

# -inf as the bit pattern of each dtype: the native kernel writes patterns, not floats.
_NEG_INF_BITS = {torch.float32: 0xFF800000, torch.bfloat16: 0xFF80, torch.float16: 0xFC00}


_bound: tuple = (None, ())  # (library, its two entry points with their ctypes signatures)


def _native_functions() -> tuple | None:
    """The 32- and 16-bit entry points, typed once per loaded library."""
    global _bound
    lib = native.load("bitmask_cpu")
    if lib is None:
        return None
    if _bound[0] is not lib:
        functions = []
        for name, pattern in (("octogram_apply_bitmask_32", ctypes.c_uint32),
                              ("octogram_apply_bitmask_16", ctypes.c_uint16)):
            fn = getattr(lib, name)
            fn.argtypes = [ctypes.c_void_p, ctypes.c_int64, ctypes.c_int64, ctypes.c_void_p,
                           ctypes.c_int64, ctypes.c_void_p, ctypes.c_int64, pattern]
            fn.restype = None
            functions.append(fn)
        _bound = (lib, tuple(functions))
    return _bound[1]


def apply_native(logits: torch.Tensor, bitmask: torch.Tensor, rows: torch.Tensor | None) -> bool:
    """Run bitmask_cpu.c on CPU tensors; False (nothing done) where it does not apply: another
    device, logits that autograd tracks, columns that are not contiguous, rows that share memory,
    inference tensors outside inference mode, or no C compiler."""
    if (logits.device.type != "cpu" or logits.requires_grad
            or logits.stride(1) != 1 and logits.shape[1] > 1
            # rows sharing memory (an expanded tensor), and inference tensors outside inference
            # mode: torch refuses to write these, so the reference raises its own error
            or logits.shape[0] > 1 and logits.stride(0) < logits.shape[1]
            or logits.is_inference() and not torch.is_inference_mode_enabled()):
        return False
    functions = _native_functions()
    if functions is None:
        return False
    if bitmask.shape[0] == 0 or logits.shape[1] == 0:
        return True
    bitmask = bitmask.contiguous()
    if rows is not None:
        rows = rows.to(device="cpu", dtype=torch.int64).contiguous()
    fn = functions[0] if logits.element_size() == 4 else functions[1]
    fn(logits.data_ptr(), logits.stride(0), logits.shape[1], bitmask.data_ptr(),
       bitmask.shape[1], None if rows is None else rows.data_ptr(), bitmask.shape[0],
       _NEG_INF_BITS[logits.dtype])
    if not logits.is_inference():  # written behind autograd's back: tell its version counter
        torch.autograd.graph.increment_version(logits)
    return True


# ----------------------------------------------------------------------------- torch reference

def _byte_table(values: tuple[float, float], dtype: torch.dtype, device: torch.device) -> torch.Tensor:
    """(256, 8) table: entry [b, j] is values[1] when bit j of byte b is set, else values[0]."""
    bits = (torch.arange(256, device=device)[:, None] >> torch.arange(8, device=device)) & 1
    return torch.where(bits.bool(), values[1], values[0]).to(dtype)


_tables: dict[tuple, torch.Tensor] = {}


def byte_table(values: tuple[float, float], dtype: torch.dtype, device: torch.device) -> torch.Tensor:
    # a tensor made under torch.inference_mode cannot be used everywhere outside it: one per mode
    key = (values, dtype, device, torch.is_inference_mode_enabled())
    if key not in _tables:
        _tables[key] = _byte_table(values, dtype, device)
    return _tables[key]


def bitmask_bytes(bitmask: torch.Tensor) -> torch.Tensor:
    """(R, 4W) int32 byte values of each row, byte k of a row covering tokens 8k .. 8k+7."""
    if sys.byteorder == "little":
        return bitmask.contiguous().view(torch.uint8).to(torch.int32)
    shifts = torch.tensor([0, 8, 16, 24], dtype=torch.int32, device=bitmask.device)
    return ((bitmask[..., None] >> shifts) & 0xFF).reshape(bitmask.shape[0], -1)


def expand_bytes(table: torch.Tensor, index: torch.Tensor,
                 out: torch.Tensor | None = None) -> torch.Tensor:
    """table[index] for a (256, 8) table and byte values `index` (int32, 1-D): (N, 8).

    Gathers whole rows as 8- or 16-byte words, one 1-D gather per word column, the fastest
    gather torch has on CPU (row-wise index_select copies each small row separately).
    """
    row_bytes = 8 * table.element_size()
    word = torch.int64 if row_bytes == 8 else torch.complex128
    columns = table.view(word).unbind(1)
    if out is None:
        out = torch.empty(index.shape[0], len(columns), dtype=word, device=table.device)
    for j, column in enumerate(columns):
        torch.index_select(column.contiguous(), 0, index, out=out[:, j])
    return out.view(table.dtype).view(index.shape[0], 8)


def unpack_bitmask(bitmask: torch.Tensor, width: int) -> torch.Tensor:
    """(R, width) bool: token allowed. Bits past 32 * W are False."""
    table = byte_table((0.0, 1.0), torch.bool, bitmask.device)
    rows = bitmask.shape[0]
    allowed = expand_bytes(table, bitmask_bytes(bitmask).reshape(-1)).view(rows, -1)
    if allowed.shape[1] >= width:
        return allowed[:, :width]
    pad = torch.zeros(rows, width - allowed.shape[1], dtype=torch.bool, device=bitmask.device)
    return torch.cat([allowed, pad], dim=1)


def apply_torch(logits: torch.Tensor, bitmask: torch.Tensor, rows: torch.Tensor | None) -> None:
    """Reference implementation, vectorized: per-token values gathered from 256-entry tables
    indexed by the mask's bytes, then one or a few elementwise ops in place. It runs where the
    native kernel does not (no C compiler, OCTOGRAM_NATIVE=0, autograd-tracked logits).

    float32: min(logit, cap), cap = +inf (allowed) or -inf (masked), which leaves allowed values
    unchanged; masked NaNs (min keeps NaN) are fixed afterwards. 16-bit floats: on the bit
    patterns, x ^= (x ^ -inf) & m with m all ones where masked (bf16/fp16 min is slow on CPU).
    Rows go in chunks whose gathered values stay in L2, into a reused buffer (a fresh 1 MB
    allocation per chunk costs more in page faults than the work).
    """
    n_cols, n_words = logits.shape[1], bitmask.shape[1]
    covered = min(n_cols, 32 * n_words)
    wide = logits.element_size() == 4
    bits_dtype = torch.int32 if wide else torch.int16
    if wide:
        values = byte_table((float("-inf"), float("inf")), logits.dtype, logits.device)
    else:
        values = byte_table((-1, 0), bits_dtype, logits.device)
        neg_inf = torch.tensor(float("-inf"), dtype=logits.dtype).view(bits_dtype).item()
    words = logits.element_size() // 2  # 16-byte words per table row: 2 (fp32) or 1
    targets = None if rows is None else rows.tolist()
    per_chunk = max(1, _CHUNK_TOKENS // max(32 * n_words, 1))
    chunk_bytes = min(per_chunk, bitmask.shape[0]) * 4 * n_words
    buffer = _scratch(torch.complex128, logits.device, chunk_bytes * words)
    buffer = buffer.view(chunk_bytes, words)
    for start in range(0, bitmask.shape[0], per_chunk):
        stop = min(start + per_chunk, bitmask.shape[0])
        index = bitmask_bytes(bitmask[start:stop]).reshape(-1)
        per_token = expand_bytes(values, index, buffer[:index.shape[0]])
        per_token = per_token.view(stop - start, -1)[:, :covered]
        if targets is None:  # consecutive rows: one view, one op
            views = [(logits[start:stop, :covered], per_token)]
        else:
            views = [(logits[targets[i], :covered], per_token[i - start])
                     for i in range(start, stop)]
        for view, value in views:
            if wide:
                torch.minimum(view, value, out=view)
                if torch.isnan(view.sum()):  # min(NaN, -inf) is NaN: masked NaNs become -inf
                    view.masked_fill_(view.isnan() & (value < 0), float("-inf"))
            else:
                bits = view.view(bits_dtype)
                bits ^= (bits ^ neg_inf) & value
    if covered < n_cols:  # padded vocabulary: ids past the mask are never allowed
        if rows is None:
            logits[:, covered:] = float("-inf")
        else:
            logits[rows, covered:] = float("-inf")


_buffers = threading.local()


def _scratch(dtype: torch.dtype, device: torch.device, numel: int) -> torch.Tensor:
    """A per-thread buffer of at least `numel` elements, kept between calls."""
    key = (dtype, device, torch.is_inference_mode_enabled())  # written in place: one per mode
    cache = _buffers.__dict__.setdefault("cache", {})
    if key not in cache or cache[key].numel() < numel:
        cache[key] = torch.empty(numel, dtype=dtype, device=device)
    return cache[key][:numel]


# ----------------------------------------------------------------------------- Triton kernel

@triton.jit
def _apply_kernel(logits_ptr, stride_row, stride_col, n_cols,
                  mask_ptr, mask_stride, n_words, rows_ptr,
                  HAS_ROWS: tl.constexpr, TILE_WORDS: tl.constexpr):
    i = tl.program_id(0)
    tile = tl.program_id(1)
    if HAS_ROWS:
        row = tl.load(rows_ptr + i).to(tl.int64)
    else:
        row = i.to(tl.int64)
    word = tile * TILE_WORDS + tl.arange(0, TILE_WORDS)
    bits = tl.load(mask_ptr + i.to(tl.int64) * mask_stride + word, mask=word < n_words, other=0)
    lane = tl.arange(0, 32)
    token = word[:, None] * 32 + lane[None, :]
    masked = ((bits[:, None] >> lane[None, :]) & 1) == 0
    ptrs = logits_ptr + row * stride_row + token.to(tl.int64) * stride_col
    # Only masked ids are written; the logits themselves are never read.
    tl.store(ptrs, float("-inf"), mask=masked & (token < n_cols))


def apply_triton(logits: torch.Tensor, bitmask: torch.Tensor, rows: torch.Tensor | None) -> None:
    """Launch the Triton kernel (compiled on CUDA, interpreted on CPU under TRITON_INTERPRET=1)."""
    n_rows = bitmask.shape[0]
    if n_rows == 0 or logits.shape[1] == 0:
        return
    grid = (n_rows, triton.cdiv(logits.shape[1], 32 * _TILE_WORDS))
    _apply_kernel[grid](logits, logits.stride(0), logits.stride(1), logits.shape[1],
                        bitmask, bitmask.stride(0), bitmask.shape[1],
                        rows if rows is not None else bitmask,
                        HAS_ROWS=rows is not None, TILE_WORDS=_TILE_WORDS, **launch_options())
