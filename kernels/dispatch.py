"""Which implementation runs for a tensor: Triton kernels on CUDA, the torch reference elsewhere.

Also owns the error type every kernel entry point raises for bad input, and the shared argument
checks, so that a wrong dtype or shape is reported by the public function that received it.
"""

from __future__ import annotations

import os
import warnings
from collections.abc import Sequence

import torch

try:
    import triton
    import triton.language as tl

    HAS_TRITON = True
except ImportError:  # Triton ships for Linux only; the torch path still works everywhere.
    HAS_TRITON = False

    class _NoTritonLanguage:
        constexpr = object

    class _NoTriton:
        @staticmethod
        def jit(fn=None, **_):
            return fn if fn is not None else (lambda f: f)

        @staticmethod
        def cdiv(a: int, b: int) -> int:
            return -(-a // b)

        @staticmethod
        def next_power_of_2(n: int) -> int:
            return 1 << max(0, (n - 1).bit_length())

    triton = _NoTriton()  # type: ignore[assignment]
    tl = _NoTritonLanguage()  # type: ignore[assignment]

FLOAT_DTYPES = (torch.float32, torch.float16, torch.bfloat16)
_warned_no_triton = False


class KernelInputError(ValueError):
    """Bad input to a kernel entry point: names the operation and the argument at fault."""


def interpreting() -> bool:
    """True when Triton kernels run in the CPU interpreter (TRITON_INTERPRET=1 before import)."""
    return HAS_TRITON and os.environ.get("TRITON_INTERPRET", "0") == "1"


def use_triton(device: torch.device) -> bool:
    """Triton on CUDA tensors; torch everywhere else (the CPU path is the reference)."""
    global _warned_no_triton
    if device.type != "cuda":
        return False
    if not HAS_TRITON:
        if not _warned_no_triton:
            warnings.warn("octogram.kernels: Triton is not installed, CUDA tensors use the torch "
                          "implementation (same results, more kernel launches)", stacklevel=3)
            _warned_no_triton = True
        return False
    return True


def launch_options() -> dict:
    """Compile options for every launch: no FMA contraction, so float results follow torch's."""
    return {} if interpreting() else {"enable_fp_fusion": False}


def check_logits(op: str, logits: object) -> torch.Tensor:
    if not isinstance(logits, torch.Tensor):
        raise KernelInputError(f"{op}: logits must be a torch.Tensor, got {type(logits).__name__}")
    if logits.dim() != 2:
        raise KernelInputError(f"{op}: logits must have shape (batch, vocab), got {tuple(logits.shape)}")
    if logits.dtype not in FLOAT_DTYPES:
        raise KernelInputError(f"{op}: logits must be float32, float16 or bfloat16, got {logits.dtype}")
    return logits


def check_bitmask(op: str, bitmask: object, rows: int, device: torch.device) -> torch.Tensor:
    if not isinstance(bitmask, torch.Tensor):
        raise KernelInputError(f"{op}: bitmask must be a torch.Tensor, got {type(bitmask).__name__}")
    if bitmask.dtype != torch.int32:
        raise KernelInputError(f"{op}: bitmask must be int32 (bit t % 32 of word t // 32), "
                               f"got {bitmask.dtype}")
    if bitmask.dim() != 2 or bitmask.shape[0] != rows:
        raise KernelInputError(f"{op}: bitmask must have shape ({rows}, words), got {tuple(bitmask.shape)}")
    if bitmask.shape[1] == 0:
        raise KernelInputError(f"{op}: bitmask has zero words per row")
    if bitmask.device != device:
        raise KernelInputError(f"{op}: bitmask is on {bitmask.device} but logits are on {device}")
    return bitmask


def check_rows(op: str, indices: torch.Tensor | Sequence[int], n_rows: int,
               device: torch.device) -> torch.Tensor:
    """Row indices as an int64 tensor on `device`; host-side values are range-checked here."""
    if isinstance(indices, torch.Tensor):
        if indices.dim() != 1 or indices.dtype.is_floating_point or indices.dtype == torch.bool:
            raise KernelInputError(f"{op}: indices must be a 1-D integer tensor, got "
                                   f"{indices.dtype} of shape {tuple(indices.shape)}")
        rows = indices.to(device=device, dtype=torch.int64)
        # values already on the host (or brought there for CPU logits) are checked; checking
        # CUDA values for CUDA logits would sync
        host = indices if indices.device.type == "cpu" else rows if device.type == "cpu" else None
    else:
        try:
            values = [int(i) for i in indices]
        except (TypeError, ValueError):
            raise KernelInputError(f"{op}: indices must be a sequence of ints or a tensor") from None
        host = torch.tensor(values, dtype=torch.int64)
        rows = host.to(device)
    if host is not None and host.numel():
        lo, hi = int(host.min()), int(host.max())
        if lo < 0 or hi >= n_rows:
            bad = lo if lo < 0 else hi
            raise KernelInputError(f"{op}: index {bad} is out of range for {n_rows} logits rows")
        if host.unique().numel() != host.numel():
            raise KernelInputError(f"{op}: indices must be unique")
    return rows
