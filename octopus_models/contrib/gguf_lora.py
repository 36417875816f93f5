"""A PEFT LoRA adapter (the shipped one, or `octogram finetune`'s) as llama.cpp's GGUF LoRA file.

llama.cpp applies a LoRA GGUF at run time on top of the (quantized) base weights: per target
matrix it reads `blk.N.<tensor>.weight.lora_a` of shape (r, in) and `...lora_b` of (out, r), and
scales by `adapter.lora.alpha / r`, as PEFT does. The tensor names are the base GGUF's (for
Gemma 3: `attn_q`, `attn_k`, `attn_v`, `attn_output`, `ffn_gate`, `ffn_up`, `ffn_down`).
"""

from __future__ import annotations

import hashlib
import re
from pathlib import Path

import numpy as np

from ...common.files import atomic_file, cache_root
from ..base import AdapterError, adapter_tensors

__all__ = ["lora_to_gguf", "cached_lora_gguf", "GGUF_TENSOR_NAMES"]

#: Hugging Face module (after `model.layers.N.`) -> the GGUF tensor it adapts.
GGUF_TENSOR_NAMES = {
    "self_attn.q_proj": "attn_q", "self_attn.k_proj": "attn_k", "self_attn.v_proj": "attn_v",
    "self_attn.o_proj": "attn_output", "mlp.gate_proj": "ffn_gate", "mlp.up_proj": "ffn_up",
    "mlp.down_proj": "ffn_down",
}
_MODULE = re.compile(r"(?:model\.)?(?:language_model\.)?layers\.(\d+)\.(.+)")


def lora_to_gguf(adapter: str | Path, out: str | Path, *, arch: str = "gemma3") -> Path:
    """Write `adapter` (a PEFT LoRA folder) as a llama.cpp LoRA GGUF for a base of `arch`."""
    import gguf

    scale, pairs = adapter_tensors(adapter)
    rank = next(iter(pairs.values()))["lora_A"].shape[0]
    tensors = []
    for module, pair in sorted(pairs.items()):
        found = _MODULE.fullmatch(module.removeprefix("model."))
        target = GGUF_TENSOR_NAMES.get(found.group(2)) if found else None
        if target is None:
            raise AdapterError(f"adapter {adapter}: module '{module}' has no llama.cpp tensor "
                               f"(supported: layers.N.{{{', '.join(GGUF_TENSOR_NAMES)}}})")
        name = f"blk.{int(found.group(1))}.{target}.weight"
        tensors.append((name + ".lora_a", pair["lora_A"].float().numpy()))
        tensors.append((name + ".lora_b", pair["lora_B"].float().numpy()))
    out = Path(out)
    writer = gguf.GGUFWriter(str(out), arch=arch)
    writer.add_type(gguf.GGUFType.ADAPTER)
    writer.add_string(gguf.Keys.Adapter.TYPE, "lora")
    writer.add_float32(gguf.Keys.Adapter.LORA_ALPHA, float(scale * rank))  # llama.cpp: alpha / r
    for name, array in tensors:
        writer.add_tensor(name, np.ascontiguousarray(array, dtype=np.float32))
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    return out


def cached_lora_gguf(adapter: str | Path, *, arch: str = "gemma3") -> Path:
    """`lora_to_gguf` of `adapter`, written once into the cache (keyed by the weights' hash)."""
    folder = Path(adapter)
    weights = folder / "adapter_model.safetensors" if folder.is_dir() else folder
    digest = hashlib.sha256()
    for part in (weights, weights.with_name("adapter_config.json")):
        if not part.is_file():
            raise AdapterError(f"adapter {adapter}: {part.name} is missing")
        digest.update(part.read_bytes())
    target = cache_root() / "llamacpp" / f"lora-{arch}-{digest.hexdigest()[:16]}.gguf"
    if not target.is_file():
        target.parent.mkdir(parents=True, exist_ok=True)
        with atomic_file(target) as tmp:
            lora_to_gguf(adapter, tmp, arch=arch)
    return target

