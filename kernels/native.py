"""The CPU kernels' C sources in this folder (`bitmask_cpu.c`), built and loaded on first use
through `common.native_build`; `load` returns None where they cannot be built, and callers
then run the torch implementation, which gives the same results."""

from __future__ import annotations

import ctypes
from pathlib import Path

from ..common import native_build

_SOURCES = Path(__file__).resolve().parent


def source(name: str) -> Path:
    """The C file of kernel `name`."""
    return _SOURCES / f"{name}.c"


def load(name: str) -> ctypes.CDLL | None:
    """The compiled library of `<name>.c` in this folder; None when it cannot be built here
    (the reason is warned once)."""
    return native_build.load_library(
        source(name), f"octogram.kernels: native {name} kernel unavailable, using the torch "
                      f"implementation (same results, slower)")
