"""Where octogram's caches live, and writing into them atomically.

Every cache (native builds, compiled FSMs, the converted model, test tokenizers and corpus)
sits under `cache_root()`. Writes go through a temporary name of the writer's own beside the
target and one rename, so readers never see half a file or folder and concurrent writers
(threads or processes) never share a temporary name.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path


class CacheDirError(ValueError):
    """`$OCTOGRAM_CACHE_DIR` names something that cannot hold the caches."""


def cache_root() -> Path:
    """The root of every octogram cache (kernels, FSMs, models): `$OCTOGRAM_CACHE_DIR` with `~`
    expanded (a quoted `~` reaches us unexpanded), else the platform's user cache folder."""
    env = os.environ.get("OCTOGRAM_CACHE_DIR")
    if env:
        root = Path(env).expanduser()
        if root.exists() and not root.is_dir():
            raise CacheDirError(f"OCTOGRAM_CACHE_DIR={env} is a file, not a folder")
        return root
    import platformdirs

    return Path(platformdirs.user_cache_dir("octogram"))


@contextmanager
def atomic_file(path: Path) -> Iterator[str]:
    """A temporary file name beside `path` to write; renamed to `path` when the block ends
    without an error, removed otherwise."""
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    try:
        yield tmp
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


def write_atomic(path: Path, data: bytes) -> None:
    """Write `data` to `path` through `atomic_file`."""
    with atomic_file(path) as tmp:
        with open(tmp, "wb") as f:
            f.write(data)


@contextmanager
def atomic_folder(target: Path, complete: Callable[[Path], bool]) -> Iterator[Path]:
    """A temporary folder beside `target` to fill; renamed to `target` when the block ends
    without an error. Another process that finished first (`complete(target)`) wins the race;
    the temporary folder is removed in any case. It gets the umask's permissions, not
    mkdtemp's private ones: the cache folder need not be private."""
    tmp = Path(tempfile.mkdtemp(prefix=f".{target.name}-", dir=target.parent))
    umask = os.umask(0)
    os.umask(umask)
    tmp.chmod(0o777 & ~umask)
    try:
        yield tmp
        try:
            tmp.rename(target)
        except OSError:
            if not complete(target):
                raise
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
