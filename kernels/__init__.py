"""Triton kernels on CUDA and a torch implementation with identical semantics on CPU.

Owns in-place bitmask application, the fused constrained sampler and the device-resident FSM step.
"""
