"""The native library cache: damaged libraries are rebuilt before they are loaded, concurrent
builds share nothing, and one cache root (`OCTOGRAM_CACHE_DIR`, `~` expanded) for every cache."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import sysconfig
import threading
from pathlib import Path

import pytest

from octogram.common import files, native_build
from octogram.kernels import native
from octogram.masking import cache as fsm_cache
from octogram.octopus_models import base

needs_cc = pytest.mark.skipif(shutil.which((os.environ.get("CC") or "cc").split()[0]) is None,
                              reason="no C compiler")

# each in a fresh interpreter: a damaged library mapped into this one could kill the test run
_LOAD = {
    "bitmask_cpu": "from octogram.kernels import native\n"
                   "assert native.load('bitmask_cpu') is not None\n",
    "matcher_step": "from octogram.masking import matcher_step\n"
                    "assert matcher_step.load() is not None\n",
}


def _suffix(name: str) -> str:
    return ".so" if name == "bitmask_cpu" else (sysconfig.get_config_var("EXT_SUFFIX") or ".so")


def _load_in_subprocess(name: str, cache: Path) -> subprocess.CompletedProcess:
    env = {**os.environ, "OCTOGRAM_CACHE_DIR": str(cache), "OMP_NUM_THREADS": "1"}
    env.pop("OCTOGRAM_NATIVE", None)
    # a fallback warning is an error here: the point is that the library is rebuilt
    return subprocess.run([sys.executable, "-W", "error::RuntimeWarning", "-c", _LOAD[name]],
                          cwd=cache, env=env, capture_output=True, text=True, timeout=300)


def _library(name: str, cache: Path) -> Path:
    (found,) = (cache / "kernels").glob(f"{name}-*{_suffix(name)}")
    return found


@needs_cc
@pytest.mark.parametrize("name", ["bitmask_cpu", "matcher_step"])
@pytest.mark.parametrize("damage", ["truncated", "garbage of the same size"])
def test_damaged_cached_library_is_rebuilt_not_loaded(tmp_path, name, damage):
    if name == "matcher_step" and not os.path.exists(
            os.path.join(sysconfig.get_paths()["include"], "Python.h")):
        pytest.skip("no Python headers")
    first = _load_in_subprocess(name, tmp_path)
    assert first.returncode == 0, first.stderr
    library = _library(name, tmp_path)
    whole = library.read_bytes()
    assert native_build.verify(library) is None
    if damage == "truncated":
        library.write_bytes(whole[: len(whole) // 2])
    else:
        library.write_bytes(os.urandom(len(whole)))
    assert native_build.verify(library) is not None
    again = _load_in_subprocess(name, tmp_path)
    assert again.returncode == 0, (again.returncode, again.stderr)  # no bus error, no fallback
    assert _library(name, tmp_path) == library and native_build.verify(library) is None
    assert library.stat().st_size == len(whole)


@needs_cc
def test_library_without_a_build_record_is_rebuilt(tmp_path, monkeypatch):
    """A library cached by a version that wrote no record is not trusted either."""
    monkeypatch.setenv("OCTOGRAM_CACHE_DIR", str(tmp_path))
    monkeypatch.setattr(native_build, "_loaded", {})
    assert native.load("bitmask_cpu") is not None
    library = _library("bitmask_cpu", tmp_path)
    record = library.with_name(library.name + ".json")
    assert record.is_file()
    record.unlink()
    assert native_build.verify(library) == "no build record"
    record.write_text("{not json")
    assert "unreadable build record" in native_build.verify(library)
    runs = []
    real = native_build.subprocess.run
    monkeypatch.setattr(native_build.subprocess, "run", lambda *a, **k: runs.append(1) or real(*a, **k))
    monkeypatch.setattr(native_build, "_loaded", {})
    assert native.load("bitmask_cpu") is not None
    assert runs and native_build.verify(library) is None


@needs_cc
def test_library_that_fails_to_load_is_rebuilt_once(tmp_path, monkeypatch):
    monkeypatch.setenv("OCTOGRAM_CACHE_DIR", str(tmp_path))
    calls = []

    def opener(path: Path) -> Path:
        calls.append(path)
        if len(calls) == 1:
            raise OSError("cannot load")
        return path

    source = native.source("bitmask_cpu")
    built = native_build._open(source, native_build.LIBRARY_FLAGS, ".so", opener)
    assert calls == [built, built] and native_build.verify(built) is None


@needs_cc
def test_concurrent_builds_of_one_library_all_succeed(tmp_path, monkeypatch):
    monkeypatch.setenv("OCTOGRAM_CACHE_DIR", str(tmp_path))
    source = native.source("bitmask_cpu")
    start = threading.Barrier(8)
    results, errors = [], []

    def build() -> None:
        try:
            start.wait(timeout=60)
            results.append(native_build._build(source, native_build.LIBRARY_FLAGS, ".so", force=True))
        except BaseException as error:  # noqa: BLE001 (reported below)
            errors.append(error)

    threads = [threading.Thread(target=build) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == [] and len(set(results)) == 1
    assert native_build.verify(results[0]) is None
    leftovers = [p.name for p in (tmp_path / "kernels").iterdir()
                 if p.name not in (results[0].name, results[0].name + ".json")]
    assert leftovers == []


def test_quoted_tilde_is_expanded_for_every_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("HOME", str(tmp_path))
    monkeypatch.setenv("OCTOGRAM_CACHE_DIR", "~/c")
    root = tmp_path / "c"
    assert files.cache_root() == root
    assert native_build.cache_dir() == root / "kernels"
    assert fsm_cache.cache_dir() == root / "fsm"
    assert fsm_cache.path_for("ab" * 20).parent == root / "fsm"
    assert base.cache_dir() == root


def test_cache_root_that_is_a_file_is_a_clear_error(tmp_path, monkeypatch):
    afile = tmp_path / "not-a-folder"
    afile.write_text("")
    monkeypatch.setenv("OCTOGRAM_CACHE_DIR", str(afile))
    for where in (native_build.cache_dir, fsm_cache.cache_dir, base.cache_dir):
        with pytest.raises(files.CacheDirError, match=r"OCTOGRAM_CACHE_DIR=.*not-a-folder is a "
                                                r"file, not a folder"):
            where()


def test_unset_or_empty_cache_root_is_the_user_cache(monkeypatch):
    import platformdirs

    for value in (None, ""):
        if value is None:
            monkeypatch.delenv("OCTOGRAM_CACHE_DIR", raising=False)
        else:
            monkeypatch.setenv("OCTOGRAM_CACHE_DIR", value)
        assert files.cache_root() == Path(platformdirs.user_cache_dir("octogram"))

