"""On-disk cache of compiled token FSMs as safetensors, keyed by grammar and vocabulary hashes.

A file holds the FSM's tables and its DFA plus a CRC of every tensor; a file that fails to load
or to check is treated as absent, and the next compile overwrites it.
"""

from __future__ import annotations

import logging
import os
import zlib
from pathlib import Path

import numpy as np
import torch
from safetensors.torch import load_file, save_file

log = logging.getLogger(__name__)

FORMAT = "octogram-token-fsm-2"  # TokenFSM.tables(compact=True)
_SCALARS = ("start_state", "vocab_size", "eos_token_id")


def cache_dir() -> Path:
    """`$OCTOGRAM_CACHE_DIR/fsm`, else the user cache directory's `octogram/fsm`."""
    root = os.environ.get("OCTOGRAM_CACHE_DIR")
    if not root:
        import platformdirs
        root = platformdirs.user_cache_dir("octogram")
    return Path(root) / "fsm"


def _crc(tensors: dict[str, torch.Tensor]) -> str:
    crc = 0
    for name in sorted(tensors):
        crc = zlib.crc32(name.encode(), crc)
        crc = zlib.crc32(tensors[name].contiguous().numpy().reshape(-1).view(np.uint8), crc)
    return f"{crc:08x}"


def path_for(key: str) -> Path:
    return cache_dir() / f"{key[:40]}.safetensors"


def save_fsm(fsm) -> None:
    """Write a complete `TokenFSM` under its key (rows in the compact form)."""
    save(path_for(fsm.key), fsm.tables(compact=True), fsm.dfa.trans, fsm.dfa.accepting, fsm.key)


def save(path: Path, tables: dict, dfa_trans: np.ndarray, dfa_accepting: np.ndarray, key: str) -> None:
    tensors = {k: v.contiguous() for k, v in tables.items() if isinstance(v, torch.Tensor)}
    tensors["dfa_trans"] = torch.from_numpy(np.ascontiguousarray(dfa_trans))
    tensors["dfa_accepting"] = torch.from_numpy(np.ascontiguousarray(dfa_accepting))
    meta = {"format": FORMAT, "key": key, "crc": _crc(tensors)}
    meta.update({k: str(int(tables[k])) for k in _SCALARS})
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(f".tmp{os.getpid()}")
    save_file(tensors, str(tmp), metadata=meta)
    os.replace(tmp, path)  # atomic: readers never see half a file


def load(path: Path, key: str):
    """(tables, dfa_trans, dfa_accepting) or None when absent, stale or corrupted."""
    if not path.exists():
        return None
    try:
        from safetensors import safe_open
        with safe_open(str(path), framework="pt") as f:
            meta = f.metadata() or {}
        if meta.get("format") != FORMAT:  # written by another version: replaced, not an error
            log.info("FSM cache file %s has format %r, not %r; rebuilding", path, meta.get("format"), FORMAT)
            return None
        tensors = load_file(str(path))
        if meta.get("key") != key or meta.get("crc") != _crc(tensors):
            raise ValueError("metadata or checksum mismatch")
    except Exception as exc:  # any unreadable file is rebuilt, never trusted
        log.warning("ignoring corrupted FSM cache file %s (%s); rebuilding", path, exc)
        return None
    dfa_trans = tensors.pop("dfa_trans").numpy()
    dfa_accepting = tensors.pop("dfa_accepting").numpy()
    tables = dict(tensors)
    tables.update({k: int(meta[k]) for k in _SCALARS})
    return tables, dfa_trans, dfa_accepting
