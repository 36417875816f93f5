"""Kernels, torch path: masking against a bit-by-bit reference and xgrammar, the sampler's
semantics and distribution, the device FSM against a pure-Python walk of its tables.

(The Triton kernels are compared with this path in test_kernels_triton.py.)
"""

from __future__ import annotations

import math
import os
import random
import shutil

import numpy as np
import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from octogram.common import native_build
from octogram.common.layouts import fsm_tables
from octogram.kernels import (ConstrainedSamplingError, DeviceFSM, KernelInputError,
                              apply_token_bitmask_, bitmask_words, sample_constrained)
from octogram.kernels import bitmask as bitmask_module
from octogram.kernels import native
from octogram.kernels.bitmask import apply_native, apply_torch, unpack_bitmask
from octogram.kernels.sampling import argmax_rows, greedy_torch, sample_torch, sampling_params, thresholds_torch

NEG = float("-inf")


# ----------------------------------------------------------------------------- helpers

def random_bitmask(gen: torch.Generator, rows: int, words: int, density: float = 0.5) -> torch.Tensor:
    bits = torch.rand(rows, words * 32, generator=gen) < density
    return pack(bits)


def pack(bits: torch.Tensor) -> torch.Tensor:
    """(rows, 32 * W) bool -> (rows, W) int32, bit t % 32 of word t // 32."""
    packed = np.packbits(bits.numpy(), axis=1, bitorder="little")
    return torch.from_numpy(packed.copy()).view(torch.int32)


def bit(bitmask_row: list[int], token: int) -> bool:
    """Pure-Python reading of the layout: bit (t % 32) of word (t // 32)."""
    word = token // 32
    return word < len(bitmask_row) and (bitmask_row[word] >> (token % 32)) & 1 == 1


def reference_apply(logits: torch.Tensor, bitmask: torch.Tensor, indices=None) -> torch.Tensor:
    out = logits.clone()
    targets = range(logits.shape[0]) if indices is None else indices
    for i, row in enumerate(targets):
        words = bitmask[i].tolist()
        for t in range(logits.shape[1]):
            if not bit(words, t):
                out[row, t] = NEG
    return out


def same(a: torch.Tensor, b: torch.Tensor) -> bool:
    """Bitwise equality (-0.0 differs from +0.0), where any NaN equals any NaN: torch's
    vectorised min() may return a NaN with another payload, which no consumer can tell apart."""
    if a.dtype != b.dtype or a.shape != b.shape:
        return False
    bits = {2: torch.int16, 4: torch.int32}[a.element_size()]
    equal = (a.contiguous().view(bits) == b.contiguous().view(bits)) | (a.isnan() & b.isnan())
    return bool(equal.all())


# ----------------------------------------------------------------------------- bitmask_words

def test_bitmask_words():
    assert [bitmask_words(v) for v in (0, 1, 31, 32, 33, 128256, 262144)] == \
        [0, 1, 1, 1, 2, 4008, 8192]
    for bad in (-1, 1.5, True):
        with pytest.raises(ValueError, match="vocab_size"):
            bitmask_words(bad)


# ----------------------------------------------------------------------------- apply

@pytest.fixture(params=["native", "torch"])
def backend(request, monkeypatch):
    """Runs a test through the native C kernel (the CPU default) and through the torch reference
    (what runs without a C compiler, or with OCTOGRAM_NATIVE=0)."""
    if request.param == "torch":
        monkeypatch.setenv("OCTOGRAM_NATIVE", "0")
    else:
        monkeypatch.delenv("OCTOGRAM_NATIVE", raising=False)
        if shutil.which((os.environ.get("CC") or "cc").split()[0]) is None:
            pytest.skip("no C compiler: the native kernel cannot be built here")
        assert native.load("bitmask_cpu") is not None, "the native kernel failed to build"

        def fallback(*args):
            raise AssertionError("apply_token_bitmask_ fell back to the torch reference")

        monkeypatch.setattr(bitmask_module, "apply_torch", fallback)
    return request.param


@pytest.mark.parametrize("vocab", [1, 31, 32, 33, 1000])
@pytest.mark.parametrize("extra_words", [-1, 0, 2])  # mask narrower than, equal to, wider than V
@pytest.mark.parametrize("dtype", [torch.float32, torch.float16, torch.bfloat16])
def test_apply_matches_bit_reference(vocab, extra_words, dtype, backend):
    gen = torch.Generator().manual_seed(vocab * 7 + extra_words)
    words = max(1, bitmask_words(vocab) + extra_words)
    logits = torch.randn(4, vocab, generator=gen).to(dtype)
    bitmask = random_bitmask(gen, 4, words)
    bitmask[1] = -1  # all allowed
    bitmask[2] = 0   # all masked
    bitmask[3] = 0
    bitmask[3, 0] = 1 << min(vocab - 1, 29)  # exactly one allowed
    expected = reference_apply(logits, bitmask)
    apply_token_bitmask_(logits, bitmask)
    assert same(logits, expected)


@pytest.mark.parametrize("vocab", [8, 31, 33, 1000, 4099])
@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16, torch.float16])
def test_apply_matches_xgrammar(vocab, dtype, backend):
    """Differential against xgrammar.apply_token_bitmask_inplace on CPU (its 'cpu' and
    'torch_native' backends). xgrammar 0.2.8's 'cpu' backend writes outside the row for
    vocabularies of 1-3 ids (wrong masks, then heap corruption), so sizes start at 8 here;
    the bit reference above covers the small ones."""
    xgrammar = pytest.importorskip("xgrammar")
    gen = torch.Generator().manual_seed(vocab)
    words = bitmask_words(vocab)
    logits = torch.randn(6, vocab, generator=gen).to(dtype)
    for density in (0.5, 0.01, 1.0):
        bitmask = random_bitmask(gen, 6, words, density)
        ours = logits.clone()
        apply_token_bitmask_(ours, bitmask)
        for backend in ("cpu", "torch_native"):
            theirs = logits.clone()
            xgrammar.apply_token_bitmask_inplace(theirs, bitmask, vocab_size=vocab, backend=backend)
            assert same(ours, theirs), backend
        # a subset of rows: xgrammar takes the full bitmask, we take its selected rows
        rows = [4, 0, 2]
        ours, theirs = logits.clone(), logits.clone()
        apply_token_bitmask_(ours, bitmask[rows], indices=rows)
        xgrammar.apply_token_bitmask_inplace(theirs, bitmask, vocab_size=vocab, indices=rows,
                                             backend="torch_native")
        assert same(ours, theirs)


def test_apply_padded_vocabulary_and_indices(backend):
    gen = torch.Generator().manual_seed(1)
    logits = torch.randn(5, 100, generator=gen)  # the model's head is wider than the mask
    bitmask = random_bitmask(gen, 2, 2)  # 64 ids covered
    rows = torch.tensor([3, 1])
    out = logits.clone()
    apply_token_bitmask_(out, bitmask, indices=rows)
    assert same(out, reference_apply(logits, bitmask, [3, 1]))
    assert torch.isneginf(out[[3, 1], 64:]).all()
    assert same(out[[0, 2, 4]], logits[[0, 2, 4]])  # other rows untouched
    out2 = logits.clone()
    apply_token_bitmask_(out2, bitmask, indices=[3, 1])  # a list works the same
    assert same(out, out2)


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_apply_takes_both_index_conventions(dtype, backend):
    """With indices, a bitmask of len(indices) rows is the compact form (row i -> logits[indices[i]]);
    any other height is xgrammar's full-batch form (row indices[i] -> logits[indices[i]])."""
    gen = torch.Generator().manual_seed(2)
    logits = torch.randn(6, 200, generator=gen).to(dtype)
    full = random_bitmask(gen, 6, bitmask_words(200))
    for rows in ([4, 0, 2], [5], [0, 1, 2, 3, 4, 5], [1, 3]):
        expected = reference_apply(logits, full[rows], rows)
        compact = logits.clone()
        apply_token_bitmask_(compact, full[rows], indices=rows)
        assert same(compact, expected)
        for index in (rows, torch.tensor(rows)):
            batch = logits.clone()
            apply_token_bitmask_(batch, full, indices=index)  # 6 rows for fewer indices
            assert same(batch, expected), rows
    # a taller bitmask than the logits (xgrammar lets the two batch sizes differ)
    tall = torch.cat([full, random_bitmask(gen, 2, bitmask_words(200))])
    batch = logits.clone()
    apply_token_bitmask_(batch, tall, indices=[5, 1])
    assert same(batch, reference_apply(logits, full[[5, 1]], [5, 1]))


@pytest.mark.parametrize("vocab", [8, 1000])
def test_full_batch_indices_match_xgrammar(vocab, backend):
    """xgrammar's own call, unchanged, gives xgrammar's result (its 'cpu' and 'torch_native'
    backends); the compact call agrees."""
    xgrammar = pytest.importorskip("xgrammar")
    gen = torch.Generator().manual_seed(vocab + 1)
    logits = torch.randn(5, vocab, generator=gen)
    bitmask = random_bitmask(gen, 5, bitmask_words(vocab), 0.3)
    for rows in ([0, 3], [4, 1, 2], [2]):
        for xgr_backend in ("cpu", "torch_native"):
            ours, theirs = logits.clone(), logits.clone()
            apply_token_bitmask_(ours, bitmask, indices=rows)
            xgrammar.apply_token_bitmask_inplace(theirs, bitmask, vocab_size=vocab, indices=rows,
                                                 backend=xgr_backend)
            assert same(ours, theirs), (rows, xgr_backend)


def test_apply_inside_and_then_outside_inference_mode(backend):
    """Cached tables and scratch buffers made under torch.inference_mode (as in a decode loop)
    must not leak into calls outside it, where inference tensors cannot be written."""
    bitmask = torch.tensor([[0b1010]], dtype=torch.int32)
    for mode in (True, False, True):
        with torch.inference_mode(mode):
            for dtype in (torch.float32, torch.bfloat16):
                logits = torch.zeros(1, 4, dtype=dtype)
                apply_token_bitmask_(logits, bitmask)
                assert torch.isinf(logits[0, [0, 2]]).all() and (logits[0, [1, 3]] == 0).all()


def test_apply_writes_only_masked_ids(backend):
    logits = torch.tensor([[-0.0, float("inf"), float("nan"), 1.5, float("nan"), -0.0]])
    bitmask = torch.tensor([[0b000111]], dtype=torch.int32)
    apply_token_bitmask_(logits, bitmask)
    allowed, masked = logits[0, :3], logits[0, 3:]
    assert same(allowed, torch.tensor([-0.0, float("inf"), float("nan")]))  # untouched bits
    assert torch.isneginf(masked).all()  # masked NaN and -0.0 become -inf too


def test_apply_chunked_rows_match_reference():
    """Rows longer than one chunk of the torch path, and many short rows in one chunk."""
    gen = torch.Generator().manual_seed(2)
    for shape, words in (((2, 262_150), 8193), ((300, 40), 2)):
        logits = torch.randn(*shape, generator=gen)
        bitmask = random_bitmask(gen, shape[0], words, 0.3)
        out = logits.clone()
        apply_torch(out, bitmask, None)
        allowed = unpack_bitmask(bitmask, shape[1])
        assert same(out, torch.where(allowed, logits, NEG))


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16, torch.float16])
def test_native_equals_torch_reference(dtype):
    """Differential: the native kernel against the torch reference on full-size rows, special
    values, rows of a wider buffer (row stride > width) and a subset of rows."""
    if native.load("bitmask_cpu") is None:
        pytest.skip("no native kernel here")
    gen = torch.Generator().manual_seed(4)
    for shape, words, density in (((3, 262_150), 8193, 0.5), ((2, 128_256), 4008, 0.01),
                                  ((5, 97), 3, 0.9), ((4, 64), 2, 0.0), ((4, 65), 2, 1.0)):
        wide = torch.randn(shape[0], shape[1] + 7, generator=gen).to(dtype)
        wide[:, :3] = torch.tensor([float("nan"), float("inf"), float("-inf")]).to(dtype)
        bitmask = random_bitmask(gen, shape[0], words, density)
        native_out, torch_out = wide.clone(), wide.clone()
        assert apply_native(native_out[:, :shape[1]], bitmask, None)
        apply_torch(torch_out[:, :shape[1]], bitmask, None)
        assert same(native_out, torch_out), (shape, density)
        rows = torch.tensor([shape[0] - 1, 0])
        native_out, torch_out = wide.clone(), wide.clone()
        assert apply_native(native_out, bitmask[:2], rows)
        apply_torch(torch_out, bitmask[:2], rows)
        assert same(native_out, torch_out), (shape, density, "rows")
        strided = torch.stack([bitmask, ~bitmask], dim=2).flatten(1)[:, ::2]  # == bitmask
        native_out = wide.clone()
        assert not strided.is_contiguous() and apply_native(native_out, strided, None)
        apply_torch(torch_out := wide.clone(), bitmask, None)
        assert same(native_out, torch_out), (shape, density, "strided bitmask")


def test_native_declines_what_it_cannot_do():
    """Strided columns and autograd-tracked logits go to the torch reference, with the same
    result; the native write is recorded in the tensor's version counter."""
    bitmask = torch.tensor([[0b0110]], dtype=torch.int32)
    columns = torch.zeros(4, 2)[:, :1].t()  # stride (1, 2): not contiguous along the vocabulary
    assert not apply_native(columns, bitmask, None)
    apply_token_bitmask_(columns, bitmask)
    assert torch.isneginf(columns[0, [0, 3]]).all() and (columns[0, [1, 2]] == 0).all()
    tracked = torch.zeros(1, 4, requires_grad=True).clone()
    assert not apply_native(tracked, bitmask, None)
    plain = torch.zeros(1, 4)
    version = plain._version
    if apply_native(plain, bitmask, None):
        assert plain._version > version
    # what torch refuses to write in place, the reference refuses too (not written natively)
    shared = torch.zeros(1, 4).expand(3, 4)
    with pytest.raises(RuntimeError, match="memory location"):
        apply_token_bitmask_(shared, bitmask.expand(3, 1).contiguous())
    with torch.inference_mode():
        inference = torch.zeros(1, 4)
    with pytest.raises(RuntimeError, match="[Ii]nference"):
        apply_token_bitmask_(inference, bitmask)


def test_native_build_is_cached_and_failure_falls_back(tmp_path, monkeypatch):
    """The library is built once into $OCTOGRAM_CACHE_DIR/kernels and then loaded without the
    compiler; a missing compiler warns once and leaves the torch reference running."""
    if shutil.which((os.environ.get("CC") or "cc").split()[0]) is None:
        pytest.skip("no C compiler")
    monkeypatch.setenv("OCTOGRAM_CACHE_DIR", str(tmp_path))
    monkeypatch.setattr(native_build, "_loaded", {})
    assert native.load("bitmask_cpu") is not None
    built = list((tmp_path / "kernels").glob("bitmask_cpu-*.so"))
    assert len(built) == 1
    monkeypatch.setattr(native_build, "_loaded", {})
    monkeypatch.setattr(native_build.subprocess, "run", lambda *a, **k: pytest.fail("rebuilt"))
    assert native.load("bitmask_cpu") is not None  # loaded from the cache, no compiler run

    monkeypatch.setattr(native_build, "_loaded", {})
    monkeypatch.setenv("OCTOGRAM_CACHE_DIR", str(tmp_path / "empty"))
    monkeypatch.setenv("CC", str(tmp_path / "no-such-cc"))
    with pytest.warns(RuntimeWarning, match="native bitmask_cpu kernel unavailable.*no C compiler"):
        assert native.load("bitmask_cpu") is None
    logits = torch.zeros(1, 4)
    apply_token_bitmask_(logits, torch.tensor([[0b0110]], dtype=torch.int32))
    assert torch.isneginf(logits[0, [0, 3]]).all() and (logits[0, [1, 2]] == 0).all()


def test_native_build_retries_without_per_cpu_clones(tmp_path, monkeypatch):
    """A compiler that refuses the per-CPU clones (older GCC, musl) still gets the portable build."""
    cc = shutil.which((os.environ.get("CC") or "cc").split()[0])
    if cc is None or os.name != "posix":
        pytest.skip("no C compiler")
    picky = tmp_path / "picky-cc"
    picky.write_text(f'#!/bin/sh\ncase " $* " in *" -DOCTOGRAM_PORTABLE "*) exec {cc} "$@";; esac\n'
                     'echo "target_clones unsupported" >&2; exit 1\n')
    picky.chmod(0o755)
    monkeypatch.setenv("CC", str(picky))
    monkeypatch.setenv("OCTOGRAM_CACHE_DIR", str(tmp_path / "cache"))
    monkeypatch.setattr(native_build, "_loaded", {})
    assert native.load("bitmask_cpu") is not None
    logits = torch.zeros(2, 40)
    assert apply_native(logits, torch.tensor([[1, 0], [-1, 255]], dtype=torch.int32), None)
    assert (logits[0] == 0).sum() == 1 and (logits[1] == 0).sum() == 40


@pytest.mark.parametrize("call, message", [
    (lambda: apply_token_bitmask_(torch.zeros(2, 8, dtype=torch.float64),
                                  torch.zeros(2, 1, dtype=torch.int32)), "float32"),
    (lambda: apply_token_bitmask_(torch.zeros(8), torch.zeros(1, 1, dtype=torch.int32)), "shape"),
    (lambda: apply_token_bitmask_(torch.zeros(2, 8), torch.zeros(2, 1, dtype=torch.int64)), "int32"),
    (lambda: apply_token_bitmask_(torch.zeros(2, 8), torch.zeros(3, 1, dtype=torch.int32)), r"\(2, words\)"),
    (lambda: apply_token_bitmask_(torch.zeros(3, 8), torch.zeros(1, 1, dtype=torch.int32),
                                  indices=[0, 2]), r"\(2, words\).*hold row 2"),
    (lambda: apply_token_bitmask_(torch.zeros(2, 8), torch.zeros(2, 1, dtype=torch.int32),
                                  indices=[1, 0]), "ambiguous"),
    (lambda: apply_token_bitmask_(torch.zeros(2, 8), torch.zeros(1, 1, dtype=torch.int32),
                                  indices=[2]), "out of range"),
    (lambda: apply_token_bitmask_(torch.zeros(2, 8), torch.zeros(2, 1, dtype=torch.int32),
                                  indices=[1, 1]), "unique"),
    (lambda: apply_token_bitmask_(torch.zeros(2, 8), torch.zeros(1, 1, dtype=torch.int32),
                                  indices=torch.tensor([0.5])), "integer"),
])
def test_apply_rejects_bad_input(call, message):
    with pytest.raises(KernelInputError, match=message):
        call()


# ----------------------------------------------------------------------------- sampler semantics

def reference_kept(logits: list[float], allowed: list[bool], temperature: float, top_k: int,
                   top_p: float) -> tuple[set[int], float]:
    """Float64, pure Python: the truncated candidate set and how close the top-p cut came to
    a boundary (rows too close to call are skipped by the caller)."""
    keys = {t: x / temperature for t, (x, a) in enumerate(zip(logits, allowed))
            if a and math.isfinite(x)}
    order = sorted(keys.values(), reverse=True)
    kept = set(keys)
    if 0 < top_k < len(order):
        kth = order[top_k - 1]
        kept = {t for t in kept if keys[t] >= kth}
    margin = math.inf
    if top_p < 1 and kept:
        best = max(keys[t] for t in kept)
        weights = sorted(((math.exp(keys[t] - best), keys[t]) for t in kept), reverse=True)
        total = sum(w for w, _ in weights)
        cum, cut = 0.0, None
        values = sorted({v for _, v in weights}, reverse=True)
        for v in values:
            cum += sum(w for w, key in weights if key == v)
            margin = min(margin, abs(cum - top_p * total) / total)
            if cum >= top_p * total:
                cut = v
                break
        kept = {t for t in kept if keys[t] >= cut}
    return kept, margin


def test_truncation_matches_float64_reference():
    rnd = random.Random(5)
    gen = torch.Generator().manual_seed(5)
    checked = 0
    for case in range(300):
        vocab = rnd.choice([3, 17, 64, 200])
        logits = (torch.randn(1, vocab, generator=gen) * rnd.choice([0.3, 2, 8]))
        if rnd.random() < 0.3:  # ties, as in bf16 logits
            logits = logits.round()
        bits = torch.rand(1, vocab, generator=gen) < rnd.choice([0.2, 0.9])
        temperature = rnd.choice([0.5, 1.0, 1.7])
        top_k = rnd.choice([0, 1, 2, 5, 50])
        top_p = rnd.choice([1.0, 0.9, 0.5, 0.1])
        kept, margin = reference_kept(logits[0].tolist(), bits[0].tolist(), temperature, top_k, top_p)
        if margin < 1e-5:
            continue
        keys = torch.where(bits, logits / temperature, NEG)
        params = sampling_params("test", 1, logits.device, temperature, top_k, top_p)
        threshold = thresholds_torch(keys, keys.amax(1), *params)
        ours = {t for t in range(vocab) if bits[0, t] and keys[0, t] >= threshold[0]}
        assert ours == kept, (case, logits, bits, temperature, top_k, top_p)
        checked += 1
    assert checked > 250


def test_greedy_is_the_masked_argmax_lowest_id_on_ties():
    logits = torch.tensor([[5.0, 9.0, 1.0, 9.0, 9.0, 2.0]] * 3)
    bitmask = torch.tensor([[0b111111], [0b111101], [0b100101]], dtype=torch.int32)
    tokens = sample_constrained(logits, bitmask, temperature=0.0, top_k=1, top_p=0.1, seed=0)
    assert tokens.tolist() == [1, 3, 0]  # row 2: ids 0, 2, 5 allowed, 5.0 wins


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_greedy_shortcut_equals_the_reference(dtype):
    """The all-greedy path (unmasked argmax when allowed) against the reference sampler, on rows
    with ties, masked maxima, NaN and infinities, no candidate, and logits wider than the mask."""
    rng = torch.Generator().manual_seed(5)
    for case in range(300):
        batch, vocab = 1 + case % 5, 1 + (case * 7) % 70
        words = bitmask_words(vocab) + case % 2
        logits = torch.randint(-3, 4, (batch, vocab + case % 3), generator=rng).to(dtype)
        bitmask = torch.randint(-2**31, 2**31 - 1, (batch, words), dtype=torch.int32, generator=rng)
        for r in range(batch):
            kind = (case + r) % 6
            if kind == 1:
                bitmask[r] = 0  # no candidate
            elif kind == 2:
                logits[r, case % logits.shape[1]] = float("nan")
            elif kind == 3:
                logits[r, (case * 3) % logits.shape[1]] = float("inf")
            elif kind == 4:
                logits[r] = float("-inf")
        params = sampling_params("test", batch, logits.device, 0.0, 0, 1.0)
        seed = torch.tensor([case])
        ours, ours_status = greedy_torch(logits, bitmask, *params, seed)
        ref, ref_status = sample_torch(logits, bitmask, *params, seed)
        assert ours_status.tolist() == ref_status.tolist(), (case, logits, bitmask)
        ok = ref_status == 0
        assert ours[ok].tolist() == ref[ok].tolist(), (case, logits, bitmask)


def test_argmax_rows_equals_argmax():
    rng = torch.Generator().manual_seed(2)
    for case in range(200):
        rows, n = 1 + case % 4, 1 + (case * 131) % 3000
        x = torch.randint(-2, 3, (rows, n), generator=rng).float()
        if case % 5 == 1:
            x[0, (case * 7) % n] = float("nan")
        if case % 5 == 2:
            x[-1] = float("-inf")
        if case % 5 == 3:
            x[0, (case * 3) % n] = float("inf")
        assert argmax_rows(x).tolist() == x.argmax(dim=1).tolist(), (case, x)


def test_seeded_and_generator_streams():
    gen = torch.Generator().manual_seed(0)
    logits = torch.randn(64, 500, generator=gen)
    bitmask = random_bitmask(gen, 64, 16)
    a = sample_constrained(logits, bitmask, seed=7)
    assert torch.equal(a, sample_constrained(logits, bitmask, seed=7))
    assert not torch.equal(a, sample_constrained(logits, bitmask, seed=8))
    g1, g2 = torch.Generator().manual_seed(3), torch.Generator().manual_seed(3)
    first = sample_constrained(logits, bitmask, generator=g1)
    assert torch.equal(first, sample_constrained(logits, bitmask, generator=g2))
    assert not torch.equal(first, sample_constrained(logits, bitmask, generator=g1))  # advanced


def test_per_row_parameters_equal_scalar_calls():
    gen = torch.Generator().manual_seed(4)
    logits = torch.randn(4, 300, generator=gen) * 3
    bitmask = random_bitmask(gen, 4, 10)
    temps, ks, ps = [0.0, 1.0, 0.6, 1.4], [0, 3, 0, 20], [1.0, 1.0, 0.8, 0.5]
    joint = sample_constrained(logits, bitmask, temperature=torch.tensor(temps),
                               top_k=torch.tensor(ks), top_p=torch.tensor(ps), seed=11)
    for row in range(4):
        alone = sample_constrained(logits, bitmask, temperature=temps[row], top_k=ks[row],
                                   top_p=ps[row], seed=11)
        assert joint[row] == alone[row]


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=st.data())
def test_never_a_masked_token(data):
    vocab = data.draw(st.integers(1, 90))
    width = data.draw(st.integers(max(1, vocab - 40), vocab + 40))  # padded or narrow masks
    words = bitmask_words(width)
    batch = data.draw(st.integers(1, 4))
    special = st.sampled_from([NEG, float("nan"), float("inf"), 1e30, -1e30, 0.0, -0.0])
    values = st.one_of(st.floats(-50, 50, width=32), special)
    logits = torch.tensor(data.draw(st.lists(st.lists(values, min_size=vocab, max_size=vocab),
                                             min_size=batch, max_size=batch)), dtype=torch.float32)
    dtype = data.draw(st.sampled_from([torch.float32, torch.bfloat16, torch.float16]))
    logits = logits.to(dtype)
    bits = torch.tensor(data.draw(st.lists(st.lists(st.booleans(), min_size=32 * words,
                                                    max_size=32 * words),
                                           min_size=batch, max_size=batch)))
    bitmask = pack(bits)
    kwargs = dict(temperature=data.draw(st.sampled_from([0.0, 0.3, 1.0, 5.0])),
                  top_k=data.draw(st.sampled_from([0, 1, 3])),
                  top_p=data.draw(st.sampled_from([1.0, 0.7, 0.05])),
                  seed=data.draw(st.integers(0, 2 ** 40)))
    limit = min(vocab, 32 * words)
    allowed = bits[:, :limit]
    x = logits.float()[:, :limit]
    key = x / kwargs["temperature"] if kwargs["temperature"] else x
    invalid = (allowed & (torch.isnan(key) | torch.isposinf(key))).any(1) \
        | ~(allowed & torch.isfinite(key)).any(1)
    try:
        tokens = sample_constrained(logits, bitmask, **kwargs)
    except ConstrainedSamplingError:
        assert invalid.any()
        return
    assert not invalid.any()
    for row, token in enumerate(tokens.tolist()):
        assert 0 <= token < limit and allowed[row, token] and math.isfinite(key[row, token].item())


def test_distribution_matches_truncated_softmax():
    """Empirical frequencies against the masked, tempered, top-k/top-p softmax (float64).

    Chi-square goodness of fit, rejected at p < 1e-6: with a truly random stream the test
    would fail once in a million runs; the seeds are fixed, so it is deterministic.
    """
    gen = torch.Generator().manual_seed(0)
    vocab, n = 40, 40_000
    base = torch.randn(vocab, generator=gen) * 1.5
    allowed = torch.rand(vocab, generator=gen) < 0.7
    allowed[int(base.argmax())] = True
    for temperature, top_k, top_p in ((1.0, 0, 1.0), (0.7, 8, 1.0), (1.3, 0, 0.8), (1.0, 12, 0.9)):
        kept, margin = reference_kept(base.tolist(), allowed.tolist(), temperature, top_k, top_p)
        assert margin > 1e-4
        keys = {t: base[t].item() / temperature for t in kept}
        best = max(keys.values())
        weights = {t: math.exp(v - best) for t, v in keys.items()}
        total = sum(weights.values())
        logits = base.expand(n, vocab).contiguous()
        bits = torch.zeros(n, 64, dtype=torch.bool)
        bits[:, :vocab] = allowed
        bitmask = pack(bits)
        tokens = sample_constrained(logits, bitmask, temperature=temperature, top_k=top_k,
                                    top_p=top_p, seed=1234)
        counts = torch.bincount(tokens, minlength=vocab)
        assert set(torch.nonzero(counts).flatten().tolist()) <= kept  # nothing outside the set
        ids = sorted(kept)
        expected = np.array([n * weights[t] / total for t in ids])
        observed = counts[ids].numpy()
        assert expected.min() > 5  # the chi-square approximation holds
        chi2 = float(((observed - expected) ** 2 / expected).sum())
        dof = len(ids) - 1
        p_value = float(torch.special.gammaincc(torch.tensor(dof / 2, dtype=torch.float64),
                                                torch.tensor(chi2 / 2, dtype=torch.float64)))
        assert p_value > 1e-6, (temperature, top_k, top_p, p_value)


@pytest.mark.parametrize("kwargs, message", [
    (dict(temperature=-1.0), "temperature"),
    (dict(top_k=-1), "top_k"),
    (dict(top_k=2.5), "top_k"),
    (dict(top_p=0.0), "top_p"),
    (dict(top_p=1.5), "top_p"),
    (dict(seed=1, generator=torch.Generator()), "either"),
    (dict(seed=-3), "seed"),
    (dict(temperature=torch.ones(3)), r"\(2,\)"),
    (dict(top_k=torch.ones(2)), "integer"),
    (dict(temperature=torch.tensor([1.0, -1.0])), "every row"),
    (dict(temperature=float("nan")), "temperature"),
    (dict(temperature=float("inf")), "temperature"),
    (dict(temperature=torch.tensor([1.0, float("nan")])), "every row"),
    (dict(temperature=torch.tensor([float("inf"), 1.0])), "every row"),
    (dict(top_p=torch.tensor([0.5, float("nan")])), "every row"),
    (dict(top_p=float("nan")), "top_p"),
])
def test_sampler_rejects_bad_parameters(kwargs, message):
    logits, bitmask = torch.zeros(2, 40), torch.full((2, 2), -1, dtype=torch.int32)
    with pytest.raises(KernelInputError, match=message):
        sample_constrained(logits, bitmask, **kwargs)


def test_rows_without_a_candidate_raise():
    logits = torch.zeros(3, 40)
    bitmask = torch.full((3, 2), -1, dtype=torch.int32)
    bitmask[1] = 0
    with pytest.raises(ConstrainedSamplingError, match=r"no allowed token .* rows \[1\]"):
        sample_constrained(logits, bitmask, seed=0)
    logits[2, 3] = float("nan")
    bitmask[1] = -1
    with pytest.raises(ConstrainedSamplingError, match=r"NaN or \+inf .* rows \[2\]"):
        sample_constrained(logits, bitmask, seed=0)
    logits[2, 3] = NEG  # an allowed id with -inf logit is simply never chosen
    logits[0] = NEG
    logits[0, 39] = 0.0
    bitmask[2] = 0
    bitmask[2, 0] = 1 << 3
    with pytest.raises(ConstrainedSamplingError, match=r"rows \[2\]"):
        sample_constrained(logits, bitmask, seed=0)
    bitmask[2] = -1
    assert sample_constrained(logits, bitmask, seed=0)[0] == 39


def test_reference_sampler_status_codes():
    logits = torch.zeros(3, 10)
    logits[2, 0] = float("inf")
    bitmask = torch.tensor([[1023], [0], [1]], dtype=torch.int32)
    params = sampling_params("test", 3, logits.device, 1.0, 0, 1.0)
    tokens, status = sample_torch(logits, bitmask, *params, torch.tensor([0]))
    assert status.tolist() == [0, 1, 2] and tokens.tolist()[1:] == [-1, -1]


# ----------------------------------------------------------------------------- device FSM

def random_tables(seed: int, n_states: int = 6, vocab: int = 100):
    """Synthetic token-FSM tables in the masking layer's format, and the same FSM as Python
    dicts: per state (allowed ids, explicit {token: next}, default next)."""
    rnd = random.Random(seed)
    eos = vocab - 1
    words = bitmask_words(vocab)
    rows, state_row, default, offsets, tokens, nxt, accepting, reference = [], [], [], [0], [], [], [], []
    for s in range(n_states):
        is_accepting = rnd.random() < 0.3
        kind = rnd.random()
        if kind < 0.2:
            allowed = {rnd.randrange(vocab - 1)}
        elif kind < 0.45:  # a string body: almost everything, to one state
            allowed = set(range(vocab - 1)) - set(rnd.sample(range(vocab - 1), 3))
        else:
            allowed = set(rnd.sample(range(vocab - 1), rnd.randint(1, vocab // 2)))
        if is_accepting:
            allowed.add(eos)
        closed = rnd.random() < 0.3  # every allowed token has an explicit entry
        explicit = {t: rnd.randrange(n_states) for t in allowed if closed or rnd.random() < 0.2}
        if is_accepting:
            explicit[eos] = s
        d = -1 if closed else rnd.randrange(n_states)
        bits = torch.zeros(1, 32 * words, dtype=torch.bool)
        bits[0, sorted(allowed)] = True
        row = pack(bits)[0].tolist()
        if row not in rows:
            rows.append(row)
        state_row.append(rows.index(row))
        default.append(d)
        for t in sorted(explicit):
            tokens.append(t)
            nxt.append(explicit[t])
        offsets.append(len(tokens))
        accepting.append(is_accepting)
        reference.append((allowed, explicit, d))
    tables = fsm_tables(mask_rows=rows, state_row=state_row, default_next=default,
                        trans_offsets=offsets, trans_tokens=tokens, trans_next=nxt,
                        accepting=accepting, start_state=0, vocab_size=vocab, eos_token_id=eos)
    return tables, reference


def reference_next(reference, state: int, token: int) -> int:
    allowed, explicit, default = reference[state]
    if token not in allowed:
        return -1
    return explicit.get(token, default)


def test_next_states_match_python_walk():
    for seed in range(4):
        tables, reference = random_tables(seed, n_states=9, vocab=77)
        fsm = DeviceFSM.from_tables(tables, "cpu")
        gen = torch.Generator().manual_seed(seed)
        states = torch.randint(0, 9, (400,), generator=gen)
        tokens = torch.randint(-2, 80, (400,), generator=gen)
        expected = [reference_next(reference, s, t) for s, t in zip(states.tolist(), tokens.tolist())]
        assert fsm.next_states(states, tokens).tolist() == expected
        assert torch.equal(fsm.fill_bitmask(states), tables["mask_rows"][tables["state_row"][states].long()])
        assert torch.equal(fsm.is_accepting(states), tables["accepting"][states])


def test_concat_and_decode_loop_follow_each_grammar():
    parts = [random_tables(seed, n_states=5 + seed, vocab=70) for seed in range(3)]
    fsm, starts = DeviceFSM.concat([t for t, _ in parts], "cpu")
    assert fsm.num_states == sum(5 + seed for seed in range(3))
    assert starts.tolist() == [0, 5, 11]
    grammar = torch.tensor([0, 1, 2, 1, 0, 2])
    states = starts[grammar]
    finished = torch.zeros(6, dtype=torch.bool)
    gen = torch.Generator().manual_seed(9)
    for step in range(25):
        logits = torch.randn(6, 70, generator=gen) * 2
        tokens, new_states = fsm.step(logits, states, temperature=0.8, top_k=20, generator=gen,
                                      finished=finished)
        for row in range(6):
            g = int(grammar[row])
            local = int(states[row]) - int(starts[g])
            token = int(tokens[row])
            if finished[row]:
                assert token == 69 and new_states[row] == states[row]
                continue
            _, reference = parts[g]
            assert token in reference[local][0]
            assert int(new_states[row]) - int(starts[g]) == reference_next(reference, local, token)
        finished = finished | (tokens == 69)
        states = new_states


def test_step_greedy_and_pad_override():
    tables, reference = random_tables(3, n_states=4, vocab=40)
    fsm = DeviceFSM.from_tables(tables, "cpu")
    logits = torch.randn(4, 40, generator=torch.Generator().manual_seed(0))
    states = torch.arange(4)
    tokens, new_states = fsm.step(logits, states, temperature=0.0,
                                  finished=torch.tensor([False, True, False, False]),
                                  pad_token_id=7)
    for row in (0, 2, 3):
        allowed = sorted(reference[row][0])
        best = max(allowed, key=lambda t: (logits[row, t].item(), -t))
        assert tokens[row] == best
        assert new_states[row] == reference_next(reference, row, best)
    assert tokens[1] == 7 and new_states[1] == 1


def corrupt(name: str):
    tables, _ = random_tables(1, n_states=5, vocab=70)
    t = {k: (v.clone() if isinstance(v, torch.Tensor) else v) for k, v in tables.items()}
    if name == "unsorted":
        s = int(torch.nonzero(t["trans_offsets"][1:] - t["trans_offsets"][:-1] >= 2)[0])
        i = int(t["trans_offsets"][s])
        t["trans_tokens"][[i, i + 1]] = t["trans_tokens"][[i + 1, i]].clone()
    elif name == "state_row":
        t["state_row"][2] = 99
    elif name == "closed":
        s = int(torch.nonzero(t["default_next"] >= 0)[0])
        t["default_next"][s] = -1
    elif name == "words":
        t["mask_rows"] = t["mask_rows"][:, :2]
    elif name == "past_vocab":
        t["mask_rows"][0, -1] = -1
    elif name == "offsets":
        t["trans_offsets"][-1] += 1
    elif name == "missing":
        del t["accepting"]
    elif name == "eos":
        t["eos_token_id"] = 70
    return t


@pytest.mark.parametrize("name, message", [
    ("unsorted", "not strictly ascending"), ("state_row", "state_row"),
    ("closed", "no transition"), ("words", "words"), ("past_vocab", "past vocab_size"),
    ("offsets", "trans_offsets"), ("missing", "missing accepting"), ("eos", "eos_token_id"),
])
def test_bad_tables_are_rejected(name, message):
    with pytest.raises(KernelInputError, match=message):
        DeviceFSM.from_tables(corrupt(name), "cpu")


def test_concat_rejects_mixed_vocabularies():
    a, _ = random_tables(0, vocab=70)
    b, _ = random_tables(1, vocab=71)
    with pytest.raises(KernelInputError, match="vocab_size"):
        DeviceFSM.concat([a, b], "cpu")


def test_tables_from_the_masking_layer():
    """A compiled TokenFSM's tables() drive the device FSM exactly like its own matcher."""
    from octogram.masking import Vocabulary, compile_grammar

    grammar = r'''
start: "get(" "n=" INT ("," " flag=" BOOL)? ")"
INT: /[0-9]+/
BOOL: "True" | "False"
'''
    pieces = [bytes([b]) for b in range(32, 127)] + [b"get(", b"n=", b", flag=", b"True", b"12"]
    vocabulary = Vocabulary(pieces + [b""], eos_token_ids=[len(pieces)], size=len(pieces) + 7)
    token_fsm = compile_grammar(grammar, vocabulary, cache=False)
    fsm = DeviceFSM.from_tables(token_fsm.tables(), "cpu")
    gen = torch.Generator().manual_seed(0)
    for _ in range(5):
        matcher = token_fsm.matcher()
        state = torch.tensor([token_fsm.tables()["start_state"]])
        for _ in range(30):
            row = torch.zeros(1, bitmask_words(vocabulary.size), dtype=torch.int32)
            matcher.fill_bitmask(row, 0)
            assert torch.equal(fsm.fill_bitmask(state), row)
            logits = torch.randn(1, vocabulary.size, generator=gen)
            token, state = fsm.step(logits, state, generator=gen)
            assert matcher.advance(int(token))
            if int(token) == len(pieces):
                break
        assert matcher.is_accepting() or matcher.is_finished()
