"""Native code: C sources compiled on first use, loaded with ctypes (`load_library`: the CPU
kernels) or imported as CPython extensions (`load_extension`: the matcher step).

torch.compile's CPU backend needs the same C compiler but traces for seconds in every new process;
a plain C file compiles once in a fraction of a second and then loads in well under a
millisecond. Libraries are cached under `$OCTOGRAM_CACHE_DIR/kernels` (default: the user cache
directory's `octogram/kernels`), keyed by the source, the compiler and the flags, each with a
sidecar `<library>.json` of its size and sha256: a cached library is checked against it before it
is loaded (mapping a truncated one kills the process with a bus error), and one that fails the
check or fails to load is built again. Without a working compiler (or, for an extension,
Python's headers), or with `OCTOGRAM_NATIVE=0`, both return None and callers run their Python or
torch implementation, which gives the same results.
"""

from __future__ import annotations

import ctypes
import hashlib
import importlib.machinery
import importlib.util
import json
import logging
import os
import platform
import shutil
import subprocess
import sys
import sysconfig
import tempfile
import threading
import warnings
from collections.abc import Callable
from pathlib import Path
from types import ModuleType
from typing import TypeVar

from .files import cache_root, write_atomic

log = logging.getLogger(__name__)

LIBRARY_FLAGS = ("-O3", "-std=c11", "-shared", "-fPIC")
_loaded: dict[str, ctypes.CDLL | ModuleType | None] = {}
_lock = threading.Lock()
T = TypeVar("T")


def enabled() -> bool:
    """False when OCTOGRAM_NATIVE=0: every kernel then runs its torch implementation."""
    return os.environ.get("OCTOGRAM_NATIVE", "1") != "0"


def cache_dir() -> Path:
    """`cache_root()/kernels`: where built libraries and extensions are kept."""
    return cache_root() / "kernels"


def _sidecar(library: Path) -> Path:
    return library.with_name(library.name + ".json")


def _fingerprint(library: Path) -> dict[str, int | str]:
    data = library.read_bytes()
    return {"size": len(data), "sha256": hashlib.sha256(data).hexdigest()}


def verify(library: Path) -> str | None:
    """None when `library` matches the size and sha256 recorded when it was built, else why not
    (missing, no record, truncated, altered)."""
    try:
        recorded = json.loads(_sidecar(library).read_text())
        size, digest = int(recorded["size"]), str(recorded["sha256"])
    except FileNotFoundError:
        return "no build record"
    except (OSError, ValueError, KeyError, TypeError) as error:
        return f"unreadable build record ({error})"
    try:
        if library.stat().st_size != size:  # checked first: no need to read a truncated file
            return f"size {library.stat().st_size}, built as {size}"
        if _fingerprint(library)["sha256"] != digest:
            return "contents differ from the build"
    except OSError as error:
        return f"unreadable ({error})"
    return None


def load_library(source: Path, unavailable: str) -> ctypes.CDLL | None:
    """The shared library built from the C file `source` with ctypes, built on first use; None
    when it cannot be built here (warned once, as `unavailable` followed by the reason)."""
    if not enabled():
        return None
    key = str(source)
    if key in _loaded:
        return _loaded[key]
    with _lock:
        if key not in _loaded:
            try:
                _loaded[key] = _open(source, LIBRARY_FLAGS, ".so", lambda path: ctypes.CDLL(str(path)))
            except (OSError, RuntimeError) as error:
                _loaded[key] = None  # recorded first: a warning turned into an error still ends here
                warnings.warn(f"{unavailable}: {error}", RuntimeWarning, stacklevel=4)
    return _loaded[key]


def forget(source: Path) -> None:
    """Drop this process's loaded build of `source`: the next load finds it again (in the
    cache, or by building it)."""
    with _lock:
        _loaded.pop(str(source), None)


def load_extension(source: Path) -> ModuleType | None:
    """The CPython extension module built from `source` (a C file whose module is named after
    it), built on first use; None when it cannot be built here (the reason is warned once)."""
    if not enabled():
        return None
    name, key = source.stem, str(source)
    if key in _loaded:
        return _loaded[key]
    with _lock:
        if key not in _loaded:
            try:
                include = sysconfig.get_paths()["include"]
                if not os.path.exists(os.path.join(include, "Python.h")):
                    raise RuntimeError(f"Python's headers are not installed ({include}/Python.h)")
                suffix = sysconfig.get_config_var("EXT_SUFFIX") or ".so"
                # on macOS, Python's symbols resolve when the interpreter loads the module
                link = ("-undefined", "dynamic_lookup") if sys.platform == "darwin" else ()

                def imported(path: Path) -> ModuleType:
                    spec = importlib.util.spec_from_file_location(
                        name, path, loader=importlib.machinery.ExtensionFileLoader(name, str(path)))
                    module = importlib.util.module_from_spec(spec)
                    spec.loader.exec_module(module)
                    return module

                _loaded[key] = _open(source, ("-O3", "-shared", "-fPIC", f"-I{include}", *link),
                                     suffix, imported)
            except (OSError, RuntimeError, ImportError) as error:
                _loaded[key] = None
                warnings.warn(f"octogram: native {name} unavailable, using the Python "
                              f"implementation (same results, slower): {error}",
                              RuntimeWarning, stacklevel=3)
    return _loaded[key]


def _open(source: Path, flags: tuple[str, ...], suffix: str, opener: Callable[[Path], T]) -> T:
    """`opener` on the built library; a cached one that fails to load is built once more (a file
    damaged in a way its record cannot show, or by a compiler that has since changed)."""
    path = _build(source, flags, suffix)
    try:
        return opener(path)
    except (OSError, ImportError) as error:
        log.warning("cached %s failed to load (%s); building it again", path, error)
    return opener(_build(source, flags, suffix, force=True))


def _compiler() -> tuple[str, bytes]:
    """The C compiler to use ($CC, else cc) and a fingerprint of its binary for the cache key."""
    command = os.environ.get("CC") or "cc"
    path = shutil.which(command.split()[0])
    if path is None:
        raise RuntimeError(f"no C compiler found (tried {command!r}; set CC to use another)")
    stat = os.stat(path)
    return command, f"{path}:{stat.st_size}:{stat.st_mtime_ns}".encode()


def _build(source: Path, flags: tuple[str, ...], suffix: str, *, force: bool = False) -> Path:
    text = source.read_bytes()
    command, fingerprint = _compiler()
    key = hashlib.sha256(b"\0".join([text, fingerprint, " ".join(flags).encode(),
                                     platform.machine().encode(), sys.platform.encode()]))
    # an extension's file name must start with its module name, and end with Python's suffix
    target = cache_dir() / f"{source.stem}-{key.hexdigest()[:16]}{suffix}"
    if target.exists() and not force:
        problem = verify(target)
        if problem is None:
            return target
        log.warning("cached %s fails its check (%s); building it again", target, problem)
    target.parent.mkdir(parents=True, exist_ok=True)
    # Build beside the target and rename, so concurrent first uses never load a partial file.
    fd, partial = tempfile.mkstemp(suffix=suffix, dir=target.parent)
    os.close(fd)
    try:
        argv = command.split() + list(flags) + ["-o", partial, str(source)]
        done = subprocess.run(argv, capture_output=True, text=True)
        if done.returncode != 0:  # a compiler without per-CPU clones: the portable build
            argv.insert(len(command.split()), "-DOCTOGRAM_PORTABLE")
            retry = subprocess.run(argv, capture_output=True, text=True)
            if retry.returncode != 0:
                raise RuntimeError(f"{' '.join(argv)} failed: {retry.stderr.strip()[-500:]}")
            log.info("per-CPU build failed, built portably: %s", done.stderr.strip()[-300:])
        # the record goes first: a library never sits beside no record, and a record beside
        # another writer's library fails the check and is rebuilt, never loaded unchecked
        write_atomic(_sidecar(target), json.dumps(_fingerprint(Path(partial))).encode())
        os.replace(partial, target)
        log.info("built %s", target)
    finally:
        if os.path.exists(partial):
            os.unlink(partial)
    return target
