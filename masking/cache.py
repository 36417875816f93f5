"""On-disk cache of compiled token FSMs as safetensors, keyed by grammar and vocabulary hashes.

A file holds the FSM's tables and its DFA plus a CRC of every tensor (name, dtype, shape, bytes)
and every metadata field (start state, vocabulary size, EOS id, key, format): an edited header
would otherwise load silently as another language. A file that fails to load, to check or to
parse is treated as absent, and the next compile overwrites it.
"""

from __future__ import annotations

import logging
import zlib
from pathlib import Path

import numpy as np
import torch
from safetensors.torch import load_file, save_file

from ..common.files import atomic_file, cache_root

log = logging.getLogger(__name__)

FORMAT = "octogram-token-fsm-3"  # TokenFSM.tables(compact=True); 3: the CRC covers the metadata
_SCALARS = ("start_state", "vocab_size", "eos_token_id")


def cache_dir() -> Path:
    """`cache_root()/fsm`."""
    return cache_root() / "fsm"


def _crc(tensors: dict[str, torch.Tensor], meta: dict[str, str]) -> str:
    """Over every tensor and every metadata field but the CRC itself."""
    crc = 0
    for name in sorted(tensors):
        t = tensors[name]
        crc = zlib.crc32(f"{name}\0{t.dtype}\0{tuple(t.shape)}\0".encode(), crc)
        crc = zlib.crc32(t.contiguous().numpy().reshape(-1).view(np.uint8), crc)
    for name in sorted(set(meta) - {"crc"}):
        crc = zlib.crc32(f"{name}\0{meta[name]}\0".encode(), crc)
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
    meta = {"format": FORMAT, "key": key}
    meta.update({k: str(int(tables[k])) for k in _SCALARS})
    meta["crc"] = _crc(tensors, meta)
    path.parent.mkdir(parents=True, exist_ok=True)
    # a temp file of this writer's own: threads of one process compiling the same grammar
    # would otherwise rename each other's file away
    with atomic_file(path) as tmp:
        save_file(tensors, tmp, metadata=meta)


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
        if meta.get("key") != key or meta.get("crc") != _crc(tensors, meta):
            raise ValueError("metadata or checksum mismatch")
        scalars = {k: int(meta[k]) for k in _SCALARS}  # inside: a malformed field is corruption
        dfa_trans = tensors.pop("dfa_trans").numpy()
        dfa_accepting = tensors.pop("dfa_accepting").numpy()
        if not 0 <= scalars["start_state"] < tensors["state_row"].numel():
            raise ValueError(f"start state {scalars['start_state']} out of range")
    except Exception as exc:  # any unreadable file is rebuilt, never trusted
        log.warning("ignoring corrupted FSM cache file %s (%s); rebuilding", path, exc)
        return None
    tables = dict(tensors)
    tables.update(scalars)
    return tables, dfa_trans, dfa_accepting
