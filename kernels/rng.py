"""The counter-based random stream both samplers draw from, so Triton and torch agree seed for seed.

Each (seed, batch row, token id) maps to one uniform in (0, 1) through a 32-bit integer hash
(Wellons' "lowbias32" finaliser), with no state between calls. The Triton sampler inlines the
same arithmetic on uint32 lanes; here it runs on int64 tensors holding 32-bit values. A constant
c >= 2**31 is used as c - 2**32, which leaves the product's low 32 bits unchanged and keeps it
within int64 (|x * c| < 2**63), so no operation relies on overflow.
"""

from __future__ import annotations

import torch

MASK32 = 0xFFFFFFFF
GOLDEN = 0x9E3779B9  # spreads consecutive token ids before mixing
MIX1, MIX2 = 0x7FEB352D, 0x846CA68B
# u = (2 * (h >> 9) + 1) / 2**24: 23 random bits, exactly representable, never 0 or 1.
UNIFORM_SCALE = 2.0 ** -24


def mul32(x: torch.Tensor, c: int) -> torch.Tensor:
    """(x * c) mod 2**32 for 0 <= x < 2**32 and a 32-bit constant c, without int64 overflow."""
    return (x * (c - (1 << 32) if c >= 1 << 31 else c)) & MASK32


def mix32(x: torch.Tensor) -> torch.Tensor:
    x = x ^ (x >> 16)
    x = mul32(x, MIX1)
    x = x ^ (x >> 15)
    x = mul32(x, MIX2)
    return x ^ (x >> 16)


def row_keys(seed: torch.Tensor, rows: torch.Tensor) -> torch.Tensor:
    """Per-row stream key from a non-negative int64 seed (1-element tensor) and row numbers."""
    s0, s1 = seed & MASK32, (seed >> 32) & MASK32
    return mix32(mix32(s0 ^ mix32(rows)) ^ s1)


def uniforms(seed: torch.Tensor, rows: torch.Tensor, tokens: torch.Tensor) -> torch.Tensor:
    """float32 uniforms in (0, 1) for each (row, token) pair; same values as the Triton kernel."""
    rows = rows.to(torch.int64)
    keys = row_keys(seed, torch.arange(int(rows.max()) + 1 if rows.numel() else 0,
                                       device=rows.device))
    h = mix32(mul32(tokens.to(torch.int64), GOLDEN) ^ keys[rows])
    return ((h >> 9) * 2 + 1).to(torch.float32) * UNIFORM_SCALE


def gumbel(seed: torch.Tensor, rows: torch.Tensor, tokens: torch.Tensor) -> torch.Tensor:
    """Standard Gumbel noise -log(-log(u)), float32."""
    return -torch.log(-torch.log(uniforms(seed, rows, tokens)))


# The noise never exceeds -log(-log(1 - 2**-24)) = 16.6355: a token whose key is more than this
# below some candidate's score can never win the Gumbel-max race.
GUMBEL_MAX = 16.64
