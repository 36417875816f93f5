"""Fused constrained sampling: mask + temperature + top-k/top-p + Gumbel-max (or argmax) per row.

Semantics, identical on both paths:
- candidates of row b: tokens allowed by the bitmask (ids past 32 * W or past the logits' width
  are never allowed) whose tempered logit `key = logit / T` is finite;
- T == 0 selects greedily: the candidate with the largest logit, ties to the lowest id;
- top-k keeps the candidates with `key >= ` the k-th largest key (ties at the boundary are kept);
  top-p then keeps `key >= v`, v the largest key value whose kept mass reaches p of the (top-k)
  mass (the smallest nucleus closed under ties);
- sampling is Gumbel-max over the kept candidates: argmax of key + G(seed, row, token), ties to
  the lowest id, G from the counter-based stream in `rng`, which is exact sampling from the
  tempered, truncated softmax and needs no normalised copy of the row.

Triton path: a threshold kernel (only when top-k/top-p are asked for: a bisection on the key's
bits, reading the row a few times and writing nothing but one float per row), one pass over the
logits that leaves the best (score, token) of each 2048-token tile, and a tiny finishing kernel.
Nothing is synchronised with the host; rows without a candidate come back as token -1 with a
status code, which `sample_constrained` turns into an error.
"""

from __future__ import annotations

import math

import torch

from . import rng
from .bitmask import apply_token_bitmask_, bitmask_bytes, byte_table, expand_bytes
from .dispatch import (KernelInputError, check_bitmask, check_logits, launch_options, tl,
                       triton, use_triton)

OK, NO_CANDIDATE, NOT_FINITE = 0, 1, 2
_TILE_WORDS = 64  # 2048 tokens per program of the sampling pass
_THRESHOLD_TILE_WORDS = 128  # 4096 tokens per step of the per-row threshold loop


class ConstrainedSamplingError(RuntimeError):
    """A row had nothing valid to sample: no allowed token, or a NaN/+inf allowed logit."""


def sample_constrained(logits: torch.Tensor, bitmask: torch.Tensor, *,
                       temperature: float | torch.Tensor = 1.0,
                       top_k: int | torch.Tensor = 0,
                       top_p: float | torch.Tensor = 1.0,
                       generator: torch.Generator | None = None,
                       seed: int | None = None) -> torch.Tensor:
    """Sample one allowed token per row; the logits are not modified (the CUDA kernel writes no
    masked copy either; on CPU, an all-greedy batch masks a copy of the rows whose maximum is
    not allowed).

    logits (B, V'), bitmask int32 (B, W). temperature/top_k/top_p: a number or a (B,) tensor;
    temperature 0 is greedy, top_k 0 and top_p 1 disable truncation. The random stream is a hash
    of (seed, row, token id): `seed` fixes it; otherwise one seed is drawn from `generator` (or
    torch's default generator for the device). Returns int64 (B,). Raises
    ConstrainedSamplingError if a row has no allowed token or a non-finite allowed logit (this
    check is the call's one host synchronisation).
    """
    op = "sample_constrained"
    check_logits(op, logits)
    batch, device = logits.shape[0], logits.device
    check_bitmask(op, bitmask, batch, device)
    params = sampling_params(op, batch, device, temperature, top_k, top_p)
    seeds = seed_tensor(op, device, generator, seed)
    if use_triton(device):
        tokens, status = sample_triton(logits, bitmask, *params, seeds,
                                       truncate=wants_truncation(top_k, top_p))
    elif bool((params[0] == 0).all()):
        tokens, status = greedy_torch(logits, bitmask, *params, seeds)
    else:
        tokens, status = sample_torch(logits, bitmask, *params, seeds)
    _raise_on_bad(op, status, params, temperature, top_k, top_p)
    return tokens


def sampling_params(op: str, batch: int, device: torch.device, temperature, top_k, top_p
                    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(temperature f32, top_k i64, top_p f32), each (B,) on `device`; numbers are checked here."""
    def per_row(value, dtype, name, ok, rule):
        if isinstance(value, torch.Tensor):
            if value.dim() > 1 or (value.dim() == 1 and value.shape[0] != batch):
                raise KernelInputError(f"{op}: {name} must be a number or a ({batch},) tensor, "
                                       f"got shape {tuple(value.shape)}")
            if dtype == torch.int64 and value.dtype.is_floating_point:
                raise KernelInputError(f"{op}: {name} must be an integer tensor, got {value.dtype}")
            return value.to(device=device, dtype=dtype).expand(batch).contiguous()
        if isinstance(value, bool) or not isinstance(value, (int, float)) or \
                (dtype == torch.int64 and not isinstance(value, int)) or not ok(value):
            raise KernelInputError(f"{op}: {name} must be {rule}, got {value!r}")
        return torch.full((batch,), value, dtype=dtype, device=device)

    return (per_row(temperature, torch.float32, "temperature", lambda t: 0 <= t < math.inf,
                    "finite and >= 0"),
            per_row(top_k, torch.int64, "top_k", lambda k: k >= 0, "an int >= 0 (0: no top-k)"),
            per_row(top_p, torch.float32, "top_p", lambda p: 0 < p <= 1, "in (0, 1]"))


def wants_truncation(top_k: int | torch.Tensor, top_p: float | torch.Tensor) -> bool:
    """Whether the threshold kernel must run, decided from the arguments' types (no sync)."""
    return isinstance(top_k, torch.Tensor) or isinstance(top_p, torch.Tensor) \
        or top_k > 0 or top_p < 1


def seed_tensor(op: str, device: torch.device, generator: torch.Generator | None,
                seed: int | None) -> torch.Tensor:
    """A 1-element int64 seed on `device`, drawn on the device when not given (no host sync)."""
    if seed is not None:
        if generator is not None:
            raise KernelInputError(f"{op}: pass either seed or generator, not both")
        if isinstance(seed, bool) or not isinstance(seed, int) or not 0 <= seed < 2 ** 63:
            raise KernelInputError(f"{op}: seed must be an int in [0, 2**63), got {seed!r}")
        return torch.full((1,), seed, dtype=torch.int64, device=device)
    return torch.randint(0, 2 ** 62, (1,), dtype=torch.int64, device=device, generator=generator)


def _raise_on_bad(op, status, params, temperature, top_k, top_p) -> None:
    """Turn status codes (and out-of-range tensor parameters) into errors: the call's one sync."""
    temps, ks, ps = params
    flags = [(status != OK).any()]
    # written so that NaN is bad too (every comparison with NaN is False)
    for value, bad in ((temperature, ~((temps >= 0) & (temps < math.inf))), (top_k, ks < 0),
                       (top_p, ~((ps > 0) & (ps <= 1)))):
        if isinstance(value, torch.Tensor):
            flags.append(bad.any())
    bad_status, *bad_params = torch.stack(flags).tolist()
    if any(bad_params):
        raise KernelInputError(f"{op}: temperature must be finite and >= 0, top_k >= 0 and "
                               "top_p in (0, 1] in every row (NaN is none of these)")
    if bad_status:
        codes = status.tolist()
        empty = [b for b, c in enumerate(codes) if c == NO_CANDIDATE]
        bad = [b for b, c in enumerate(codes) if c == NOT_FINITE]
        parts = []
        if empty:
            parts.append(f"no allowed token with a finite logit in rows {empty[:10]}")
        if bad:
            parts.append(f"a NaN or +inf logit (after temperature) among the allowed tokens of rows "
                         f"{bad[:10]}")
        raise ConstrainedSamplingError(f"{op}: " + "; ".join(parts))


# ----------------------------------------------------------------------------- torch reference

def greedy_torch(logits: torch.Tensor, bitmask: torch.Tensor, temperature: torch.Tensor,
                 top_k: torch.Tensor, top_p: torch.Tensor, seed: torch.Tensor
                 ) -> tuple[torch.Tensor, torch.Tensor]:
    """`sample_torch` for all-greedy batches: the same tokens and status, at a fraction of the
    cost. A row whose unmasked maximum is finite and allowed has its answer already (the first
    maximum of all ids is then the first maximum of the allowed ones); the other rows are
    masked in a copy. Maxima are found with vectorized `amax` over blocks (argmax is a scalar
    loop on CPU, 20x slower)."""
    limit = min(logits.shape[1], 32 * bitmask.shape[1])
    if limit == 0:
        return sample_torch(logits, bitmask, temperature, top_k, top_p, seed)
    view = logits[:, :limit]
    best, first = _first_max(view)
    word = bitmask.gather(1, (first >> 5)[:, None]).squeeze(1)
    hit = (((word >> (first & 31).to(word.dtype)) & 1) == 1) & torch.isfinite(best)
    status = torch.full((logits.shape[0],), OK, dtype=torch.int32, device=logits.device)
    if bool(hit.all()):
        return first, status
    miss = torch.nonzero(~hit).squeeze(1)
    masked = view[miss]  # a copy (advanced indexing)
    apply_token_bitmask_(masked, bitmask[miss])  # masked NaNs become -inf; allowed ones stay
    best, index = _first_max(masked)
    bad = torch.where(torch.isnan(best) | (best == float("inf")), NOT_FINITE,
                      torch.where(best == float("-inf"), NO_CANDIDATE, OK)).to(torch.int32)
    index = torch.where(bad == OK, index, -1)
    return first.index_put((miss,), index), status.index_put((miss,), bad)


def argmax_rows(logits: torch.Tensor) -> torch.Tensor:
    """`logits.argmax(dim=1)` (the first maximum; NaN counts as the maximum), through `amax`."""
    best, first = _first_max(logits)
    nan = torch.isnan(best)
    if bool(nan.any()):
        first = torch.where(nan, logits.argmax(dim=1), first)
    return first


def _first_max(x: torch.Tensor, block: int = 1024) -> tuple[torch.Tensor, torch.Tensor]:
    """Per row of a 2-D float tensor: the maximum (NaN if any) and the first index holding it."""
    rows, n = x.shape
    whole = n // block * block
    parts = [x[:, :whole].view(rows, -1, block).amax(2)] if whole else []
    if whole < n:
        parts.append(x[:, whole:].amax(1, keepdim=True))
    block_max = torch.cat(parts, 1) if len(parts) > 1 else parts[0]
    best = block_max.amax(1)
    b = (block_max == best[:, None]).to(torch.uint8).argmax(1)  # the first block holding it
    cols = (b[:, None] * block + torch.arange(block, device=x.device)).clamp_(max=n - 1)
    at = (x.gather(1, cols) == best[:, None]).to(torch.uint8).argmax(1)
    return best, cols.gather(1, at[:, None]).squeeze(1)


def sample_torch(logits: torch.Tensor, bitmask: torch.Tensor, temperature: torch.Tensor,
                 top_k: torch.Tensor, top_p: torch.Tensor, seed: torch.Tensor
                 ) -> tuple[torch.Tensor, torch.Tensor]:
    """Reference sampler: (tokens int64 (B,), status int32 (B,)); token -1 where status != OK."""
    batch, n_cols = logits.shape
    device = logits.device
    limit = min(n_cols, 32 * bitmask.shape[1])
    temps = temperature[:, None]
    x = logits[:, :limit].float()
    key = x / torch.where(temps > 0, temps, 1.0)  # dividing by 1 leaves greedy rows exact
    # caps: +inf where allowed, -inf where masked, so min() keeps allowed keys and masks the rest
    caps = byte_table((float("-inf"), float("inf")), torch.float32, device)
    caps = expand_bytes(caps, bitmask_bytes(bitmask).reshape(-1)).view(batch, -1)[:, :limit]
    keys = torch.minimum(key, caps)
    best = keys.amax(dim=1) if limit else torch.full((batch,), float("-inf"), device=device)
    if torch.isnan(best).any():  # rare: NaN becomes +inf first, so masked NaNs end at -inf
        keys = torch.minimum(torch.nan_to_num(key, nan=float("inf"), posinf=float("inf"),
                                              neginf=float("-inf")), caps)
        best = keys.amax(dim=1)
    status = torch.where(best == float("inf"), NOT_FINITE,
                         torch.where(best == float("-inf"), NO_CANDIDATE, OK)).to(torch.int32)
    ok = status == OK
    # rows in error are treated as greedy here (no truncation work) and return -1 below
    threshold = thresholds_torch(keys, best, torch.where(ok, temperature, 0.0), top_k, top_p)

    tokens = torch.full((batch,), -1, dtype=torch.int64, device=device)
    greedy = ok & (temperature == 0)
    if greedy.any():  # the first maximum: the lowest id (argmax's scalar loop is slower)
        r, c = torch.nonzero(greedy[:, None] & (keys == best[:, None]), as_tuple=True)
        first = torch.full((batch,), n_cols, dtype=torch.int64, device=device)
        tokens = torch.where(greedy, first.scatter_reduce(0, r, c, reduce="amin"), tokens)
    rows = ok & (temperature > 0)
    if rows.any():
        # Noise only for keys that can still win: a first score from the keys near the top,
        # then every key within the noise's maximum of that score (exact: no token below can
        # reach it). Few keys are left when the distribution is peaked.
        near = torch.where(rows, torch.maximum(best - 2.0, threshold), float("inf"))
        r, c = torch.nonzero(keys >= near[:, None], as_tuple=True)
        first_score = _row_max(keys[r, c] + rng.gumbel(seed, r, c), r, batch)
        lower = first_score - rng.GUMBEL_MAX - first_score.abs() * 2.0 ** -20 - 1e-3
        lower = torch.where(rows, torch.maximum(lower, threshold), float("inf"))
        r, c = torch.nonzero(keys >= lower[:, None], as_tuple=True)
        score = keys[r, c] + rng.gumbel(seed, r, c)
        top = _row_max(score, r, batch)
        first = torch.full((batch,), n_cols, dtype=torch.int64, device=device).scatter_reduce(
            0, r, torch.where(score == top[r], c, n_cols), reduce="amin")
        tokens = torch.where(rows, first, tokens)
    return tokens, status


def _row_max(values: torch.Tensor, rows: torch.Tensor, batch: int) -> torch.Tensor:
    out = torch.full((batch,), float("-inf"), device=values.device)
    return out.scatter_reduce(0, rows, values, reduce="amax")


def thresholds_torch(keys: torch.Tensor, best: torch.Tensor, temperature: torch.Tensor,
                     top_k: torch.Tensor, top_p: torch.Tensor) -> torch.Tensor:
    """Per-row key threshold of the top-k / top-p truncation (-inf: keep every candidate).

    keys: (B, L) float32, -inf outside the candidates. Sorting is limited to the few keys that
    can matter: the top k, and for top-p the keys whose weight exceeds (1 - p) / n of the mass,
    since every lighter token has at least p of the mass strictly above it.
    """
    batch = keys.shape[0]
    threshold = torch.full((batch,), float("-inf"), device=keys.device)
    if not ((temperature > 0) & ((top_k > 0) | (top_p < 1))).any():
        return threshold
    n = (keys > float("-inf")).sum(dim=1)
    sampling = (temperature > 0) & (n > 0)
    k_rows = sampling & (top_k > 0) & (top_k < n)
    if k_rows.any():
        depth = int(top_k[k_rows].max())
        top = keys.topk(depth, dim=1).values
        kth = top.gather(1, (top_k.clamp(1, depth) - 1)[:, None]).squeeze(1)
        threshold = torch.where(k_rows, kth, threshold)
    p_rows = sampling & (top_p < 1)
    if p_rows.any():
        kept = keys >= threshold[:, None]
        weight = torch.where(kept, torch.exp(keys - best[:, None]), 0.0)
        mass = weight.sum(dim=1)
        n_kept = (kept & (keys > float("-inf"))).sum(dim=1).clamp(min=1)
        light = (1 - top_p) * mass / n_kept
        depth_rows = (weight > light[:, None]).sum(dim=1).clamp(min=1)
        depth = int(depth_rows[p_rows].max())
        top = keys.topk(depth, dim=1).values
        cum = torch.exp(top - best[:, None]).cumsum(dim=1)
        last = depth_rows.clamp(max=depth) - 1  # rounding can leave cum just short of the target
        first = torch.minimum((cum < (top_p * mass)[:, None]).sum(dim=1), last)
        nucleus = top.gather(1, first[:, None]).squeeze(1)
        threshold = torch.where(p_rows, torch.maximum(threshold, nucleus), threshold)
    return threshold


# ----------------------------------------------------------------------------- Triton kernels

@triton.jit
def _mix32(x):
    x ^= x >> 16
    x *= 0x7FEB352D
    x ^= x >> 15
    x *= 0x846CA68B
    return x ^ (x >> 16)


@triton.jit
def _to_ordered(x):
    """float32 -> int64 with the same order (-0.0 just below +0.0)."""
    bits = x.to(tl.int32, bitcast=True)
    return tl.where(bits < 0, bits ^ 0x7FFFFFFF, bits).to(tl.int64)


@triton.jit
def _from_ordered(o):
    bits = o.to(tl.int32)
    return tl.where(bits < 0, bits ^ 0x7FFFFFFF, bits).to(tl.float32, bitcast=True)


@triton.jit
def _mask_row(b, states_ptr, state_row_ptr, HAS_FSM: tl.constexpr):
    """Which bitmask row applies to batch row b: its own, or its FSM state's."""
    if HAS_FSM:
        mrow = tl.load(state_row_ptr + tl.load(states_ptr + b)).to(tl.int64)
    else:
        mrow = b.to(tl.int64)
    return mrow


@triton.jit
def _tile_keys(logits_ptr, stride_row, limit, mask_ptr, mask_stride, n_words, b, mrow, w0,
               temp, TILE_WORDS: tl.constexpr):
    """One (TILE_WORDS, 32) tile of a row: token ids, allowed bits, tempered keys, candidates."""
    lane = tl.arange(0, 32)
    word = w0 + tl.arange(0, TILE_WORDS)
    bits = tl.load(mask_ptr + mrow * mask_stride + word, mask=word < n_words, other=0)
    token = word[:, None] * 32 + lane[None, :]
    allowed = (((bits[:, None] >> lane[None, :]) & 1) != 0) & (token < limit)
    # Masked ids are not read at all: a sparse mask costs less bandwidth.
    x = tl.load(logits_ptr + b.to(tl.int64) * stride_row + token, mask=allowed,
                other=0.0).to(tl.float32)
    key = tl.where(temp > 0, tl.math.div_rn(x, tl.where(temp > 0, temp, 1.0)), x)
    cand = allowed & (key > float("-inf")) & (key < float("inf"))
    bad = allowed & ((key != key) | (key == float("inf")))
    return token, key, cand, bad


@triton.jit
def _threshold_kernel(logits_ptr, stride_row, limit, mask_ptr, mask_stride, n_words,
                      states_ptr, state_row_ptr, temp_ptr, topk_ptr, topp_ptr, threshold_ptr,
                      HAS_FSM: tl.constexpr, TILE_WORDS: tl.constexpr):
    """One program per row: the top-k/top-p threshold by bisection on the key's ordered bits.

    Phases: 0 max key and candidate count; 1 top-k search; 2 mass of the top-k set; 3 top-p
    search; 4 done. Each round of the loop reads the row once (and writes nothing).
    """
    b = tl.program_id(0)
    mrow = _mask_row(b, states_ptr, state_row_ptr, HAS_FSM)
    temp = tl.load(temp_ptr + b)
    k = tl.load(topk_ptr + b).to(tl.int32)
    p = tl.load(topp_ptr + b)
    phase = tl.where((temp > 0) & ((k > 0) | (p < 1.0)), 0, 4)
    v = float("-inf")  # each round counts the candidates with key >= v, and their mass
    m = float("-inf")  # the row's max key, known after phase 0
    lo = tl.full((), 0, tl.int64)
    hi = tl.full((), 0, tl.int64)
    mid = tl.full((), 0, tl.int64)
    cnt_lo = tl.full((), 0, tl.int32)
    cnt_hi = tl.full((), 0, tl.int32)
    target = 0.0
    threshold = float("-inf")
    while phase < 4:
        cnt = tl.full((), 0, tl.int32)
        mass = 0.0
        mx = float("-inf")
        for w0 in range(0, n_words, TILE_WORDS):
            token, key, cand, bad = _tile_keys(logits_ptr, stride_row, limit, mask_ptr,
                                               mask_stride, n_words, b, mrow, w0, temp,
                                               TILE_WORDS)
            sel = cand & (key >= v)
            cnt += tl.sum(tl.sum(sel.to(tl.int32), axis=1), axis=0)
            mass += tl.sum(tl.sum(tl.where(sel, tl.exp(key - m), 0.0), axis=1), axis=0)
            mx = tl.maximum(mx, tl.max(tl.max(tl.where(cand, key, float("-inf")), axis=1), axis=0))
        if phase == 0:
            m = mx
            if cnt == 0:
                phase = 4
            elif (k > 0) & (k < cnt):  # invariant: count(>= lo) >= k > count(>= hi)
                phase = 1
                lo = _to_ordered(tl.full((), -3.4028234663852886e38, tl.float32))
                hi = _to_ordered(m) + 1
            else:
                phase = 2
        elif phase == 1:
            if cnt >= k:
                lo = mid
            else:
                hi = mid
            if (cnt == k) | (hi - lo <= 1):
                threshold = _from_ordered(lo)
                v = threshold
                phase = 2
        elif phase == 2:  # cnt and mass now describe the top-k set
            if (p < 1.0) & (cnt > 1):  # invariant: mass(>= lo) >= target > mass(>= hi)
                phase = 3
                target = p * mass
                lo = _to_ordered(v)
                hi = _to_ordered(m) + 1
                cnt_lo = cnt
                cnt_hi = 0
            else:
                phase = 4
        else:
            if mass >= target:
                lo = mid
                cnt_lo = cnt
            else:
                hi = mid
                cnt_hi = cnt
            if (cnt_lo - cnt_hi == 1) | (hi - lo <= 1):  # one key value left in [lo, hi)
                threshold = _from_ordered(lo)
                phase = 4
        if (phase == 1) | (phase == 3):
            mid = lo + (hi - lo) // 2
            v = _from_ordered(mid)
    tl.store(threshold_ptr + b, threshold)


@triton.jit
def _sample_tiles_kernel(logits_ptr, stride_row, limit, mask_ptr, mask_stride, n_words,
                         states_ptr, state_row_ptr, temp_ptr, threshold_ptr, seed_ptr,
                         best_score_ptr, best_token_ptr, flags_ptr, n_tiles,
                         HAS_FSM: tl.constexpr, HAS_THRESHOLD: tl.constexpr,
                         TILE_WORDS: tl.constexpr):
    """Grid (B, tiles): best Gumbel score (or key, when greedy) and its token in one tile."""
    b = tl.program_id(0)
    tile = tl.program_id(1)
    mrow = _mask_row(b, states_ptr, state_row_ptr, HAS_FSM)
    temp = tl.load(temp_ptr + b)
    token, key, cand, bad = _tile_keys(logits_ptr, stride_row, limit, mask_ptr, mask_stride,
                                       n_words, b, mrow, tile * TILE_WORDS, temp, TILE_WORDS)
    if HAS_THRESHOLD:
        cand = cand & (key >= tl.load(threshold_ptr + b))
    # The counter-based stream of rng.py: u = f(seed, row, token), identical on every device.
    seed = tl.load(seed_ptr)
    s0 = (seed & 0xFFFFFFFF).to(tl.uint32)
    s1 = (seed >> 32).to(tl.uint32)
    row_key = _mix32(_mix32(s0 ^ _mix32(b.to(tl.uint32))) ^ s1)
    h = _mix32((token.to(tl.uint32) * 0x9E3779B9) ^ row_key)
    u = ((h >> 9).to(tl.int32) * 2 + 1).to(tl.float32) * 5.9604644775390625e-08
    noise = -tl.log(-tl.log(u))
    score = tl.where(cand, tl.where(temp > 0, key + noise, key), float("-inf"))
    flat = tl.reshape(score, (TILE_WORDS * 32,))
    best = tl.argmax(flat, axis=0, tie_break_left=True)
    out = b.to(tl.int64) * n_tiles + tile
    tl.store(best_score_ptr + out, tl.max(flat, axis=0))
    tl.store(best_token_ptr + out, tile * TILE_WORDS * 32 + best)
    any_cand = tl.max(tl.max(cand.to(tl.int32), axis=1), axis=0)
    any_bad = tl.max(tl.max(bad.to(tl.int32), axis=1), axis=0)
    tl.store(flags_ptr + out, any_cand | (any_bad << 1))


@triton.jit
def _finish_kernel(best_score_ptr, best_token_ptr, flags_ptr, n_tiles, tokens_ptr, status_ptr,
                   TILES: tl.constexpr):
    """One program per row: the best tile wins (first on ties: the lowest ids); status codes."""
    b = tl.program_id(0)
    t = tl.arange(0, TILES)
    base = b.to(tl.int64) * n_tiles
    score = tl.load(best_score_ptr + base + t, mask=t < n_tiles, other=float("-inf"))
    flags = tl.load(flags_ptr + base + t, mask=t < n_tiles, other=0)
    win = tl.argmax(score, axis=0, tie_break_left=True)
    token = tl.load(best_token_ptr + base + win).to(tl.int64)
    has_cand = tl.max(flags & 1, axis=0)
    has_bad = tl.max(flags >> 1, axis=0)
    status = tl.where(has_bad != 0, 2, tl.where(has_cand != 0, 0, 1))
    tl.store(tokens_ptr + b, tl.where(status == 0, token, -1))
    tl.store(status_ptr + b, status)


def sample_triton(logits: torch.Tensor, bitmask: torch.Tensor, temperature: torch.Tensor,
                  top_k: torch.Tensor, top_p: torch.Tensor, seed: torch.Tensor,
                  states: torch.Tensor | None = None, state_row: torch.Tensor | None = None,
                  truncate: bool | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """Triton sampler: (tokens int64 (B,), status int32 (B,)), no host synchronisation.

    With `states`/`state_row`, row b reads bitmask row state_row[states[b]] (the FSM step).
    `truncate` says whether to run the threshold kernel; None runs it (it exits at once for
    rows that ask for no truncation).
    """
    batch, n_cols = logits.shape
    device = logits.device
    if logits.stride(1) != 1:
        logits = logits.contiguous()
    n_words = bitmask.shape[1]
    limit = min(n_cols, 32 * n_words)
    has_fsm = states is not None
    states_arg = states if has_fsm else temperature
    state_row_arg = state_row if has_fsm else temperature
    tokens = torch.empty(batch, dtype=torch.int64, device=device)
    status = torch.empty(batch, dtype=torch.int32, device=device)
    if batch == 0:
        return tokens, status
    opts = launch_options()
    truncate = truncate is None or truncate
    threshold = temperature  # placeholder pointer when there is no truncation
    if truncate:
        threshold = torch.empty(batch, dtype=torch.float32, device=device)
        _threshold_kernel[(batch,)](logits, logits.stride(0), limit, bitmask, bitmask.stride(0),
                                    n_words, states_arg, state_row_arg, temperature, top_k,
                                    top_p, threshold, HAS_FSM=has_fsm,
                                    TILE_WORDS=_THRESHOLD_TILE_WORDS, **opts)
    n_tiles = max(1, triton.cdiv(limit, 32 * _TILE_WORDS))
    best_score = torch.empty(batch, n_tiles, dtype=torch.float32, device=device)
    best_token = torch.empty(batch, n_tiles, dtype=torch.int32, device=device)
    flags = torch.empty(batch, n_tiles, dtype=torch.int32, device=device)
    _sample_tiles_kernel[(batch, n_tiles)](
        logits, logits.stride(0), limit, bitmask, bitmask.stride(0), n_words, states_arg,
        state_row_arg, temperature, threshold, seed, best_score, best_token, flags, n_tiles,
        HAS_FSM=has_fsm, HAS_THRESHOLD=truncate,
        TILE_WORDS=_TILE_WORDS, **opts)
    _finish_kernel[(batch,)](best_score, best_token, flags, n_tiles, tokens, status,
                             TILES=triton.next_power_of_2(n_tiles), **opts)
    return tokens, status
