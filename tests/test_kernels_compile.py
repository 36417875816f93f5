"""Every Triton kernel compiles to a cubin for sm_90 (H100) with each combination of its
compile-time switches, and for sm_80 (A100) with one, without a GPU (Triton's bundled ptxas):
a machine without CUDA still catches code the interpreter accepts but the compiler rejects."""

from __future__ import annotations

import itertools
import os

import pytest

triton = pytest.importorskip("triton")
if os.environ.get("TRITON_INTERPRET") == "1":
    pytest.skip("kernels are interpreted in this process", allow_module_level=True)

from triton.backends.compiler import GPUTarget  # noqa: E402
from triton.compiler import ASTSource  # noqa: E402

from octogram.kernels import bitmask, fsm_step, sampling  # noqa: E402

KERNELS = {
    "apply": (bitmask._apply_kernel,
              dict(logits_ptr="*bf16", stride_row="i32", stride_col="i32", n_cols="i32",
                   mask_ptr="*i32", mask_stride="i32", n_words="i32", rows_ptr="*i64"),
              dict(HAS_ROWS=(False, True), TILE_WORDS=(64,))),
    "threshold": (sampling._threshold_kernel,
                  dict(logits_ptr="*fp16", stride_row="i32", limit="i32", mask_ptr="*i32",
                       mask_stride="i32", n_words="i32", states_ptr="*i64", state_row_ptr="*i32",
                       temp_ptr="*fp32", topk_ptr="*i64", topp_ptr="*fp32",
                       threshold_ptr="*fp32"),
                  dict(HAS_FSM=(False, True), TILE_WORDS=(128,))),
    "sample_tiles": (sampling._sample_tiles_kernel,
                     dict(logits_ptr="*fp32", stride_row="i32", limit="i32", mask_ptr="*i32",
                          mask_stride="i32", n_words="i32", states_ptr="*i64",
                          state_row_ptr="*i32", temp_ptr="*fp32", threshold_ptr="*fp32",
                          seed_ptr="*i64", best_score_ptr="*fp32", best_token_ptr="*i32",
                          flags_ptr="*i32", n_tiles="i32"),
                     dict(HAS_FSM=(False, True), HAS_THRESHOLD=(False, True), TILE_WORDS=(64,))),
    "finish": (sampling._finish_kernel,
               dict(best_score_ptr="*fp32", best_token_ptr="*i32", flags_ptr="*i32",
                    n_tiles="i32", tokens_ptr="*i64", status_ptr="*i32"),
               dict(TILES=(128,))),
    "advance": (fsm_step._advance_kernel,
                dict(states_ptr="*i64", tokens_ptr="*i64", new_states_ptr="*i64",
                     finished_ptr="*i1", batch="i32", mask_rows_ptr="*i32", n_words="i32",
                     state_row_ptr="*i32", default_ptr="*i32", offsets_ptr="*i64",
                     trans_tokens_ptr="*i32", trans_next_ptr="*i32", state_eos_ptr="*i64",
                     pad_token="i32", vocab_size="i32", search_steps="i32"),
                dict(IS_STEP=(False, True), HAS_FINISHED=(False, True), BLOCK=(128,))),
}


@pytest.mark.parametrize("name", sorted(KERNELS))
def test_kernel_compiles_for_sm80_and_sm90(name):
    kernel, types, switches = KERNELS[name]
    assert set(types) | set(switches) == set(kernel.arg_names)
    for i, values in enumerate(itertools.product(*switches.values())):
        constants = dict(zip(switches, values))
        signature = {arg: "constexpr" if arg in constants else types[arg]
                     for arg in kernel.arg_names}
        for arch in (80, 90) if i == 0 else (90,):
            compiled = triton.compile(ASTSource(fn=kernel, signature=signature,
                                                constexprs=constants),
                                      target=GPUTarget("cuda", arch, 32),
                                      options={"enable_fp_fusion": False})
            assert compiled.asm["cubin"], (name, constants, arch)
