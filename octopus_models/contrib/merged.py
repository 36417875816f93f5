"""A base model with a LoRA adapter merged in, written once as a plain safetensors folder.

Engines that load a model folder (vLLM, `vllm serve`) get the fine-tuned Octopus model from
this folder: the same weights `load_model()` builds in memory (the adapter merged in float32
into the float32 base), so an engine that casts to bf16 on load sees exactly what
`load_model(folder, adapter=None, dtype=torch.bfloat16)` sees. Importable without vLLM.

    from octogram.octopus_models.contrib.merged import merged_model_dir
    path = merged_model_dir()        # the embedded Gemma 3 270M + the shipped adapter
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import torch

from ..base import (DEFAULT_ADAPTER, _adapter_files, _say, cache_dir, default_adapter_dir,
                    default_model_dir, load_model)

__all__ = ["merged_model_dir"]

_MARKER = "octogram-merged.json"


def _fingerprint(base: Path, adapter: Path) -> str:
    """Names the merged folder: the base folder's name and the adapter's bytes (a retrained
    adapter gets a new folder, never a stale merge)."""
    weights, config = _adapter_files(adapter)
    h = hashlib.sha256()
    for path in (weights, config):
        h.update(path.read_bytes())
    return f"{base.name}-merged-{h.hexdigest()[:12]}"


def merged_model_dir(model_dir: str | Path | None = None,
                     adapter: str | Path | None = DEFAULT_ADAPTER, *,
                     quiet: bool = False) -> Path:
    """The folder of `model_dir` (None: the embedded Gemma 3 270M) with `adapter` merged in
    (the default: the shipped adapter on the embedded base), written into the model cache on
    first use (about 10 s and 1 GB; atomically, so a killed run leaves nothing half-written).
    With no adapter to merge the base folder itself is returned."""
    base = default_model_dir(quiet=quiet) if model_dir is None else Path(model_dir)
    if isinstance(adapter, str) and adapter == DEFAULT_ADAPTER:
        adapter = default_adapter_dir() if model_dir is None else None
    if adapter is None:
        return base
    adapter = Path(adapter)
    target = cache_dir() / "models" / _fingerprint(base, adapter)
    marker = target / _MARKER
    if marker.is_file() and model_cache_problem_merged(target) is None:
        return target
    from octogram.common.files import atomic_folder

    if not quiet:
        _say(f"merging {adapter} into {base} once, into {target}")
    target.parent.mkdir(parents=True, exist_ok=True)
    model, tokenizer = load_model(base, adapter=adapter, dtype=torch.float32, quiet=True)
    with atomic_folder(target, lambda t: (t / _MARKER).is_file()) as tmp:
        model.save_pretrained(tmp)
        tokenizer.save_pretrained(tmp)
        files = {p.name: p.stat().st_size for p in sorted(tmp.iterdir()) if p.is_file()}
        (tmp / _MARKER).write_text(json.dumps({
            "base": str(base), "adapter": str(adapter), "dtype": "float32", "files": files,
        }, indent=2) + "\n")
    return target


def model_cache_problem_merged(folder: Path) -> str | None:
    """Why a merged folder cannot be used (a file missing or of another size than written, a
    safetensors file cut short), or None."""
    try:
        files = json.loads((folder / _MARKER).read_text())["files"]
    except (OSError, ValueError, KeyError, TypeError) as exc:
        return f"unreadable marker ({exc})"
    for name, size in files.items():
        path = folder / name
        if not path.is_file() or path.stat().st_size != size:
            return f"{name} is missing or changed"
    return None
