"""Triton kernels against the torch reference, exactly (masking, FSM) and seed for seed (sampling).

Runs natively on a CUDA machine. Without one it runs in Triton's CPU interpreter, which has to
be switched on before triton is first imported: test_kernels_interpreter.py starts this file in
a fresh process with TRITON_INTERPRET=1; in any other process it is skipped as a whole.
"""

from __future__ import annotations

import os

import pytest
import torch

INTERPRETED = os.environ.get("TRITON_INTERPRET") == "1"
if not INTERPRETED and not torch.cuda.is_available():
    pytest.skip("no CUDA device: these tests run in a TRITON_INTERPRET=1 subprocess started by "
                "test_kernels_interpreter.py", allow_module_level=True)
pytest.importorskip("triton")

from octogram.kernels import DeviceFSM, bitmask_words  # noqa: E402
from octogram.kernels import bitmask as bitmask_module  # noqa: E402
from octogram.kernels.bitmask import apply_torch, apply_triton  # noqa: E402
from octogram.kernels.sampling import (sample_torch, sample_triton, sampling_params,  # noqa: E402
                                       seed_tensor)

from test_kernels import pack, random_bitmask, random_tables, same  # noqa: E402

DEVICE = torch.device("cpu" if INTERPRETED else "cuda")


def test_the_triton_code_path_really_runs():
    """Under the interpreter the kernels are InterpretedFunction objects, and a launch on CPU
    tensors executes the kernel's Python body (counted by a pre-run hook)."""
    if not INTERPRETED:
        pytest.skip("compiled on CUDA")
    from triton.runtime.interpreter import InterpretedFunction

    kernel = bitmask_module._apply_kernel
    assert isinstance(kernel, InterpretedFunction)
    launches = []
    kernel.add_pre_run_hook(lambda *args, **kwargs: launches.append(1))
    try:
        logits = torch.zeros(2, 70)
        apply_triton(logits, torch.zeros(2, 3, dtype=torch.int32), None)
    finally:
        kernel.pre_run_hooks.clear()
    assert launches and torch.isneginf(logits).all()


# ----------------------------------------------------------------------------- masking

@pytest.mark.parametrize("vocab", [1, 31, 33, 1000, 2500])
@pytest.mark.parametrize("extra_words", [-1, 0, 3])
@pytest.mark.parametrize("dtype", [torch.float32, torch.float16, torch.bfloat16])
def test_apply_equals_torch(vocab, extra_words, dtype):
    gen = torch.Generator().manual_seed(vocab + extra_words)
    words = max(1, bitmask_words(vocab) + extra_words)
    logits = torch.randn(5, vocab, generator=gen).to(dtype)
    logits[0, 0] = float("nan")
    bitmask = random_bitmask(gen, 5, words)
    bitmask[1], bitmask[2] = -1, 0  # all allowed, all masked
    bitmask[3] = 0
    bitmask[3, -1] = 1 << 4  # one allowed id (maybe past the vocabulary)
    expected = logits.clone()
    apply_torch(expected, bitmask, None)
    ours = logits.to(DEVICE)
    apply_triton(ours, bitmask.to(DEVICE), None)
    assert same(ours.cpu(), expected)


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_apply_subset_of_rows_and_strided_logits(dtype):
    gen = torch.Generator().manual_seed(0)
    wide = torch.randn(6, 300, generator=gen).to(dtype)
    logits = wide[:, :250]  # a row stride wider than the row
    bitmask = random_bitmask(gen, 3, 7)
    rows = torch.tensor([5, 0, 3])
    expected = logits.clone()
    apply_torch(expected, bitmask, rows)
    ours_wide = wide.to(DEVICE)
    apply_triton(ours_wide[:, :250], bitmask.to(DEVICE), rows.to(DEVICE))
    assert same(ours_wide[:, :250].cpu(), expected)
    assert same(ours_wide[:, 250:].cpu(), wide[:, 250:])


def test_apply_both_index_conventions_on_the_triton_path(monkeypatch):
    """The public entry point on the Triton path: a compact bitmask (row i -> logits[indices[i]])
    and xgrammar's full-batch one (row indices[i] -> logits[indices[i]]) give the reference."""
    from octogram.kernels import apply_token_bitmask_

    monkeypatch.setattr(bitmask_module, "use_triton", lambda device: True)
    monkeypatch.setattr(bitmask_module, "apply_native", None)  # must not be reached
    gen = torch.Generator().manual_seed(3)
    logits = torch.randn(6, 300, generator=gen)
    full = random_bitmask(gen, 6, 10)
    for rows in ([4, 0, 2], [5]):
        expected = logits.clone()
        apply_torch(expected, full[rows], torch.tensor(rows))
        for bitmask in (full[rows], full):
            ours = logits.to(DEVICE)
            apply_token_bitmask_(ours, bitmask.to(DEVICE), indices=torch.tensor(rows, device=DEVICE))
            assert same(ours.cpu(), expected), (rows, bitmask.shape)


# ----------------------------------------------------------------------------- sampling

CASES = [  # temperature, top_k, top_p
    (0.0, 0, 1.0), (1.0, 0, 1.0), (0.7, 5, 1.0), (1.3, 0, 0.9), (1.0, 10, 0.5), (2.0, 3, 0.95),
    (0.5, 1, 1.0), (1.0, 0, 0.01),
]


def both(logits, bitmask, temperature, top_k, top_p, seed, **fsm):
    batch = logits.shape[0]
    ref = sample_torch(logits, bitmask if not fsm else fsm["rows"], *sampling_params(
        "test", batch, logits.device, temperature, top_k, top_p), torch.tensor([seed]))
    params = sampling_params("test", batch, DEVICE, temperature, top_k, top_p)
    extra = {} if not fsm else {"states": fsm["states"].to(DEVICE),
                                "state_row": fsm["state_row"].to(DEVICE)}
    got = sample_triton(logits.to(DEVICE), bitmask.to(DEVICE), *params,
                        seed_tensor("test", DEVICE, None, seed),
                        truncate=top_k > 0 or top_p < 1, **extra)
    return ref, tuple(t.cpu() for t in got)


@pytest.mark.parametrize("vocab, words", [(1, 1), (31, 1), (33, 2), (1000, 20), (1000, 40)])
@pytest.mark.parametrize("case", CASES)
def test_sampling_equals_torch_seed_for_seed(vocab, words, case):
    gen = torch.Generator().manual_seed(vocab * 31 + words)
    logits = torch.randn(6, vocab, generator=gen) * 3
    logits[4] = logits[4].round()  # ties
    bitmask = random_bitmask(gen, 6, words, 0.4)
    bitmask[0] = -1
    bitmask[1] = 0
    bitmask[1, 0] = 1 << 3  # a single allowed id (a row in error if vocab <= 3)
    bitmask[5] = 0  # nothing allowed: token -1, status 1
    seed = CASES.index(case) * 2 ** 37 + vocab
    (ref_tokens, ref_status), (tokens, status) = both(logits, bitmask, *case, seed)
    assert torch.equal(tokens, ref_tokens) and torch.equal(status, ref_status)


@pytest.mark.parametrize("case", [CASES[1], CASES[4]])
def test_sampling_several_tiles(case):
    """A row spanning several 2048-id tiles of the sampling pass and 4096-id steps of the
    threshold loop; the winner and the ties between tiles must be resolved like torch."""
    gen = torch.Generator().manual_seed(8)
    logits = (torch.randn(2, 9000, generator=gen) * 2).round()
    bitmask = random_bitmask(gen, 2, 282, 0.7)
    (ref_tokens, ref_status), (tokens, status) = both(logits, bitmask, *case, 4)
    assert torch.equal(tokens, ref_tokens) and torch.equal(status, ref_status)
    greedy = both(logits, bitmask, 0.0, 0, 1.0, 4)
    assert torch.equal(greedy[0][0], greedy[1][0])


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
def test_sampling_half_precision_and_bad_values(dtype):
    gen = torch.Generator().manual_seed(3)
    logits = (torch.randn(5, 700, generator=gen) * 4).to(dtype)
    logits[1, :] = float("-inf")
    logits[2, 5] = float("nan")
    logits[3, 7] = float("inf")
    bitmask = random_bitmask(gen, 5, 22, 0.6)
    bitmask[2:4, 0] = -1  # ids 5 and 7 allowed in rows 2 and 3
    for case in CASES[:3] + CASES[4:5]:
        (ref_tokens, ref_status), (tokens, status) = both(logits, bitmask, *case, 5)
        assert ref_status.tolist() == [0, 1, 2, 2, 0]
        assert torch.equal(tokens, ref_tokens) and torch.equal(status, ref_status)


def test_sampled_frequencies_on_the_triton_path():
    """Smaller than the torch path's chi-square test (the interpreter is slow), same idea:
    only allowed ids, and the top id's frequency within 5 standard deviations."""
    n, vocab = 256, 40
    base = torch.linspace(-2, 2, vocab)
    bits = torch.zeros(n, 64, dtype=torch.bool)
    bits[:, :vocab:2] = True
    (_, _), (tokens, status) = both(base.expand(n, vocab).contiguous(), pack(bits), 1.0, 0, 1.0, 17)
    assert (status == 0).all() and (tokens % 2 == 0).all()
    probs = torch.softmax(base[::2].double(), 0)
    p_top = probs[-1].item()
    freq = (tokens == vocab - 2).double().mean().item()
    assert abs(freq - p_top) < 5 * (p_top * (1 - p_top) / n) ** 0.5


# ----------------------------------------------------------------------------- FSM step

def test_next_states_and_step_equal_torch():
    parts = [random_tables(seed, n_states=6, vocab=90)[0] for seed in range(3)]
    cpu_fsm, starts = DeviceFSM.concat(parts, "cpu")
    fsm, _ = DeviceFSM.concat(parts, DEVICE)
    gen = torch.Generator().manual_seed(1)
    states = torch.randint(0, cpu_fsm.num_states, (16,), generator=gen)
    tokens = torch.randint(-1, 92, (16,), generator=gen)
    assert torch.equal(fsm.next_states(states.to(DEVICE), tokens.to(DEVICE)).cpu(),
                       cpu_fsm.next_states(states, tokens))
    finished = torch.rand(16, generator=gen) < 0.25
    for temperature, top_k, top_p in CASES[:5]:
        logits = torch.randn(16, 90, generator=gen) * 2
        ref_tokens, ref_states = cpu_fsm.step(logits, states, temperature=temperature,
                                              top_k=top_k, top_p=top_p, finished=finished,
                                              generator=torch.Generator().manual_seed(5))
        # the seed that generator gave the reference step, handed to the Triton pieces
        seed = seed_tensor("test", torch.device("cpu"), torch.Generator().manual_seed(5), None)
        dev_states = states.to(DEVICE)
        tokens, _ = sample_triton(logits.to(DEVICE), fsm.mask_rows,
                                  *sampling_params("test", 16, DEVICE, temperature, top_k, top_p),
                                  seed.to(DEVICE), states=dev_states, state_row=fsm.state_row,
                                  truncate=True)
        new_states = torch.empty_like(dev_states)
        fsm._advance_triton(dev_states, tokens, new_states, finished.to(DEVICE), None,
                            is_step=True)
        assert torch.equal(tokens.cpu(), ref_tokens) and torch.equal(new_states.cpu(), ref_states)


def test_cuda_step_never_syncs_with_the_host():
    if DEVICE.type != "cuda":
        pytest.skip("needs CUDA")
    parts = [random_tables(seed, n_states=6, vocab=5000)[0] for seed in range(2)]
    fsm, starts = DeviceFSM.concat(parts, DEVICE)
    states = starts.repeat(4)
    logits = torch.randn(8, 5000, device=DEVICE)
    finished = torch.zeros(8, dtype=torch.bool, device=DEVICE)
    fsm.step(logits, states, top_k=20, top_p=0.9, finished=finished)  # compile first
    torch.cuda.synchronize()
    torch.cuda.set_sync_debug_mode("error")
    try:
        for _ in range(5):
            tokens, states = fsm.step(logits, states, top_k=20, top_p=0.9, finished=finished)
            finished = finished | (tokens == 4999)
    finally:
        torch.cuda.set_sync_debug_mode("default")
    assert (states >= 0).all()
