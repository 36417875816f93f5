"""Native CPU kernels: C sources in this folder, compiled on first use and loaded with ctypes.

torch.compile's CPU backend needs the same C compiler but traces for seconds in every new process;
a plain C file compiles once in a fraction of a second and then loads in well under a
millisecond. Libraries are cached under `$OCTOGRAM_CACHE_DIR/kernels` (default: the user cache
directory's `octogram/kernels`), keyed by the source, the compiler and the flags. Without a
working compiler, or with `OCTOGRAM_NATIVE=0`, `load` returns None and callers run the torch
implementation, which gives the same results.
"""

from __future__ import annotations

import ctypes
import hashlib
import logging
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import threading
import warnings
from pathlib import Path

log = logging.getLogger(__name__)

_FLAGS = ("-O3", "-std=c11", "-shared", "-fPIC")
_SOURCES = Path(__file__).resolve().parent
_loaded: dict[str, ctypes.CDLL | None] = {}
_lock = threading.Lock()


def enabled() -> bool:
    """False when OCTOGRAM_NATIVE=0: every kernel then runs its torch implementation."""
    return os.environ.get("OCTOGRAM_NATIVE", "1") != "0"


def cache_dir() -> Path:
    """`$OCTOGRAM_CACHE_DIR/kernels`, else the user cache directory's `octogram/kernels`."""
    root = os.environ.get("OCTOGRAM_CACHE_DIR")
    if not root:
        import platformdirs

        root = platformdirs.user_cache_dir("octogram")
    return Path(root) / "kernels"


def load(name: str) -> ctypes.CDLL | None:
    """The compiled library of `<name>.c` in this folder, built on first use; None when it
    cannot be built here (the reason is warned once)."""
    if not enabled():
        return None
    if name in _loaded:
        return _loaded[name]
    with _lock:
        if name not in _loaded:
            try:
                _loaded[name] = ctypes.CDLL(str(_build(name)))
            except (OSError, RuntimeError) as error:
                _loaded[name] = None  # recorded first: a warning turned into an error still ends here
                warnings.warn(f"octogram.kernels: native {name} kernel unavailable, using the "
                              f"torch implementation (same results, slower): {error}",
                              RuntimeWarning, stacklevel=3)
    return _loaded[name]


def _compiler() -> tuple[str, bytes]:
    """The C compiler to use ($CC, else cc) and a fingerprint of its binary for the cache key."""
    command = os.environ.get("CC") or "cc"
    path = shutil.which(command.split()[0])
    if path is None:
        raise RuntimeError(f"no C compiler found (tried {command!r}; set CC to use another)")
    stat = os.stat(path)
    return command, f"{path}:{stat.st_size}:{stat.st_mtime_ns}".encode()


def _build(name: str) -> Path:
    source = _SOURCES / f"{name}.c"
    text = source.read_bytes()
    command, fingerprint = _compiler()
    key = hashlib.sha256(b"\0".join([text, fingerprint, " ".join(_FLAGS).encode(),
                                     platform.machine().encode(), sys.platform.encode()]))
    target = cache_dir() / f"{name}-{key.hexdigest()[:16]}.so"
    if target.exists():
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    # Build beside the target and rename, so concurrent first uses never load a partial file.
    fd, partial = tempfile.mkstemp(suffix=".so", dir=target.parent)
    os.close(fd)
    try:
        argv = command.split() + list(_FLAGS) + ["-o", partial, str(source)]
        done = subprocess.run(argv, capture_output=True, text=True)
        if done.returncode != 0:  # a compiler without per-CPU clones: the portable build
            argv.insert(len(command.split()), "-DOCTOGRAM_PORTABLE")
            retry = subprocess.run(argv, capture_output=True, text=True)
            if retry.returncode != 0:
                raise RuntimeError(f"{' '.join(argv)} failed: {retry.stderr.strip()[-500:]}")
            log.info("per-CPU build failed, built portably: %s", done.stderr.strip()[-300:])
        os.replace(partial, target)
        log.info("built %s", target)
    finally:
        if os.path.exists(partial):
            os.unlink(partial)
    return target
