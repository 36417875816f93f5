"""Triton kernels on CUDA and a torch implementation with identical semantics on CPU.

Owns in-place bitmask application, the fused constrained sampler and the device-resident FSM step.
"""

from ..common.layouts import bitmask_words
from .bitmask import apply_token_bitmask_
from .dispatch import KernelInputError
from .fsm_step import DeviceFSM
from .sampling import ConstrainedSamplingError, sample_constrained

__all__ = ["apply_token_bitmask_", "bitmask_words", "sample_constrained", "DeviceFSM",
           "KernelInputError", "ConstrainedSamplingError"]
