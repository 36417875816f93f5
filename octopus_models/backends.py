"""Which model runner answers: transformers or llama.cpp, and how "auto" chooses.

`load_runner(backend)` returns a `Runner` and the tokenizer for `OctopusGenerator`:

- "transformers": `load_model()` (the embedded model converted to safetensors, or `model_dir`),
  the adapter merged into the weights, in `dtype` (None: bfloat16 where the CPU has AMX or on
  CUDA, else float32), run by `TransformersRunner`.
- "llama.cpp": the embedded GGUF file as it ships (Q4_K_M), run by llama.cpp; the adapter is
  converted once to llama.cpp's LoRA GGUF and applied at run time.
- "auto": llama.cpp when llama-cpp-python is installed and the model is the embedded one
  (`model_dir` None), else transformers. llama.cpp decodes the embedded model several times
  faster on a CPU (benchmarks/RESULTS.md, bench_latency); on CUDA transformers is used.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

from . import base
from .base import DEFAULT_ADAPTER, default_adapter_dir
from .decode import Runner

__all__ = ["BACKENDS", "load_runner", "choose_backend", "default_dtype"]

BACKENDS = ("auto", "transformers", "llama.cpp")


def default_dtype(device: str | torch.device = "cpu") -> torch.dtype:
    """bfloat16 on CUDA and on CPUs with AMX (where it is about 3x faster to prefill), else
    float32 (a CPU without bf16 matmul units runs bf16 slower than fp32)."""
    if torch.device(device).type == "cuda":
        return torch.bfloat16
    try:
        flags = Path("/proc/cpuinfo").read_text()
    except OSError:
        return torch.float32
    return torch.bfloat16 if " amx_bf16" in flags else torch.float32


def choose_backend(backend: str = "auto", model_dir: str | Path | None = None,
                   device: str | torch.device = "cpu") -> str:
    """The backend "auto" stands for here (see the module docstring); others are checked."""
    if backend not in BACKENDS:
        raise ValueError(f"backend must be one of {', '.join(BACKENDS)}, got {backend!r}")
    if backend != "auto":
        if backend == "llama.cpp" and model_dir is not None:
            raise ValueError("the llama.cpp backend runs the embedded GGUF model; a model "
                             "folder (--model) needs the transformers backend")
        return backend
    from .contrib.llamacpp import llamacpp_available

    if model_dir is None and torch.device(device).type == "cpu" and llamacpp_available():
        return "llama.cpp"
    return "transformers"


def load_runner(backend: str = "auto", *, model_dir: str | Path | None = None,
                adapter: str | Path | None = DEFAULT_ADAPTER, dtype: torch.dtype | None = None,
                device: str | torch.device = "cpu", threads: int | None = None,
                quiet: bool = False) -> tuple[Runner, Any]:
    """A runner for `backend` and its tokenizer (see the module docstring)."""
    backend = choose_backend(backend, model_dir, device)
    if backend == "transformers":
        from .transformers_runner import TransformersRunner

        model, tokenizer = base.load_model(model_dir, adapter=adapter,
                                      dtype=dtype or default_dtype(device), device=device,
                                      quiet=quiet)
        return TransformersRunner(model, tokenizer), tokenizer
    from transformers import AutoTokenizer

    from .base import check_adapter, default_gguf_path, default_model_dir
    from .contrib.gguf_lora import cached_lora_gguf
    from .contrib.llamacpp import LlamaCppRunner
    from .decode import eos_token_ids

    if isinstance(adapter, str) and adapter == DEFAULT_ADAPTER:
        adapter = default_adapter_dir()
    if adapter is not None:
        check_adapter(adapter)
    # The tokenizer transformers made from the same GGUF: prompts are encoded, and grammars
    # compiled, exactly as on the transformers backend.
    tokenizer = AutoTokenizer.from_pretrained(default_model_dir(quiet=quiet))
    lora = cached_lora_gguf(adapter) if adapter is not None else None

    class _Eos:  # eos_token_ids reads a generation config; the tokenizer's is enough here
        generation_config = None

    try:
        from transformers import GenerationConfig

        _Eos.generation_config = GenerationConfig.from_pretrained(default_model_dir(quiet=True))
    except OSError:
        pass
    path = default_gguf_path(quiet=quiet)
    if not quiet:
        base._say(f"loading model from {path} (llama.cpp)")
    runner = LlamaCppRunner(path, lora=lora, threads=threads,
                            eos_token_ids=eos_token_ids(_Eos(), tokenizer))
    return runner, tokenizer
