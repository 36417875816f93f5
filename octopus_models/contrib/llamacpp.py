"""llama.cpp as `decode`'s model runner: a GGUF file computes the logits, Octogram masks and
samples them.

`LlamaCppRunner` drives llama.cpp's batch API through `llama-cpp-python`'s C bindings (the
`llamacpp` extra): every row of a batch is a llama.cpp sequence in one unified KV cache, a
step decodes each row's new tokens in one `llama_decode` call with logits for each row's last
token only, and `logits()` is a float32 tensor viewing llama.cpp's own output buffer (no copy;
the kernels mask it in place). Rows need no padding: each sequence has its own positions.

Prefix reuse: the prompts a runner prefilled stay in the cache as sequences of their own (the
last `prefix_cache` of them); a batch whose rows share `min_prefix` or more tokens with one
copies those cells into each row (`llama_memory_seq_cp`, which shares cells and computes
nothing) and prefills only the rest. On a model with sliding-window layers a prompt is kept
only while it fits the window: llama.cpp hands a cell that one sequence alone holds to new
tokens once that sequence's window has passed it (`swa_full` or not), so a longer kept
prompt loses the cells a shorter reuse of it still needs.

Build: llama.cpp's AMX matmul path crashes in `llama_decode` on some Intel CPUs with AMX
(ggml-org/llama.cpp#20824), and a default build (`GGML_NATIVE=ON`) turns it on wherever the
build machine has AMX. Build `llama-cpp-python` with `LLAMACPP_CMAKE_ARGS` (README); 
`llamacpp_crash_check()` runs one decode in a child process to tell a crashing build apart.
"""

from __future__ import annotations

import ctypes
import subprocess
import sys
from collections import OrderedDict
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ..decode import Runner

__all__ = ["LlamaCppRunner", "LlamaCppError", "LLAMACPP_CMAKE_ARGS", "llamacpp_available",
           "llamacpp_crash_check"]

#: The CMake flags the README's install line passes: AVX-512 (with VNNI and BF16) but not
#: AMX, and not -march=native, so that the wheel runs on any AVX-512 CPU.
LLAMACPP_CMAKE_ARGS = ("-DGGML_NATIVE=OFF -DGGML_AVX2=ON -DGGML_FMA=ON -DGGML_F16C=ON "
                       "-DGGML_AVX512=ON -DGGML_AVX512_VNNI=ON -DGGML_AVX512_BF16=ON "
                       "-DGGML_AMX_TILE=OFF -DGGML_AMX_INT8=OFF -DGGML_AMX_BF16=OFF")

_INSTALL = (f'install it with: CMAKE_ARGS="{LLAMACPP_CMAKE_ARGS}" '
            "pip install 'octogram[llamacpp]' (builds llama.cpp from source, 4-9 minutes)")


class LlamaCppError(RuntimeError):
    """llama.cpp is missing, or refused a model, an adapter or a batch."""


def _bindings() -> Any:
    try:
        import llama_cpp
    except ImportError:
        raise LlamaCppError(f"the llama.cpp backend needs llama-cpp-python; {_INSTALL}") from None
    return llama_cpp


def llamacpp_available() -> bool:
    """Whether llama-cpp-python imports (it is an optional extra)."""
    try:
        _bindings()
    except LlamaCppError:
        return False
    return True


_quiet_log = None  # the ctypes callback must outlive every llama.cpp call


def _silence(ll: Any) -> None:
    global _quiet_log
    if _quiet_log is None:
        _quiet_log = ll.llama_log_callback(lambda level, text, data: None)
        ll.llama_log_set(_quiet_log, ctypes.c_void_p(0))
        ll.llama_backend_init()


def llamacpp_crash_check(model_path: str | Path, timeout: float = 120.0) -> str | None:
    """Load `model_path` and decode a few tokens in a child process; None if that works, else
    what went wrong (a crashing build dies by a signal, which this reports with the fix)."""
    code = ("import sys; from octogram.octopus_models.contrib.llamacpp import LlamaCppRunner; "
            "r = LlamaCppRunner(sys.argv[1], threads=1, n_ctx=256); r.start([[2, 651, 6037]]); "
            "r.logits(); r.finish(); print('ok')")
    try:
        done = subprocess.run([sys.executable, "-c", code, str(model_path)], capture_output=True,
                              text=True, timeout=timeout)
    except subprocess.TimeoutExpired:
        return f"llama.cpp did not answer within {timeout:.0f} s"
    if done.returncode == 0 and done.stdout.strip().endswith("ok"):
        return None
    if done.returncode < 0:
        return (f"llama.cpp crashed (signal {-done.returncode}) on its first decode; a build "
                f"with AMX (GGML_NATIVE=ON on an AMX CPU) does this; rebuild: "
                f'CMAKE_ARGS="{LLAMACPP_CMAKE_ARGS}" pip install --force-reinstall '
                "--no-cache-dir llama-cpp-python")
    return (done.stderr.strip().splitlines() or ["llama.cpp failed"])[-1]


class LlamaCppRunner(Runner):
    """Runs a GGUF model with llama.cpp for `decode` (see the module docstring).

    `model_path`: the GGUF (the embedded model: `base.default_gguf_path()`). `lora`: a LoRA
    GGUF (`gguf_lora.cached_lora_gguf`) applied at `lora_scale`. `threads`: llama.cpp's thread
    count (default: torch's). `n_ctx`: KV cells shared by every row and kept prefix (grows when
    a batch needs more). `max_batch`: rows per batch before the context is rebuilt larger.
    `eos_token_ids`: the ids that end a row (default: the GGUF's EOS and EOT); pass the
    tokenizer's when grammars are compiled from it, so that both agree.
    """

    name = "llama.cpp"

    def __init__(self, model_path: str | Path, *, lora: str | Path | None = None,
                 lora_scale: float = 1.0, threads: int | None = None, n_ctx: int = 8192,
                 max_batch: int = 8, prefix_cache: int = 4, min_prefix: int = 16,
                 eos_token_ids: list[int] | None = None) -> None:
        ll = self._ll = _bindings()
        _silence(ll)
        path = Path(model_path)
        if not path.is_file():
            raise LlamaCppError(f"no GGUF file at {path}")
        params = ll.llama_model_default_params()
        params.n_gpu_layers = 0
        self._model = ll.llama_model_load_from_file(str(path).encode(), params)
        if not self._model:
            raise LlamaCppError(f"llama.cpp could not load {path} (not a GGUF model it knows)")
        self._vocab = ll.llama_model_get_vocab(self._model)
        self.logits_width = int(ll.llama_vocab_n_tokens(self._vocab))
        if eos_token_ids is None:  # the GGUF's own: end of sequence and end of turn
            found = [int(ll.llama_vocab_eos(self._vocab)), int(ll.llama_vocab_eot(self._vocab))]
            eos_token_ids = [t for t in dict.fromkeys(found) if t >= 0]
        self.eos_token_ids = [int(t) for t in eos_token_ids]
        pad = int(ll.llama_vocab_pad(self._vocab))
        self.pad_token_id = pad if pad >= 0 else self.eos_token_ids[0]
        self._lora = None
        if lora is not None:
            if not Path(lora).is_file():
                raise LlamaCppError(f"no LoRA GGUF file at {lora}")
            self._lora = ll.llama_adapter_lora_init(self._model, str(lora).encode())
            if not self._lora:
                raise LlamaCppError(f"llama.cpp could not load the LoRA {lora} for {path.name}")
        self._lora_scale = float(lora_scale)
        self.threads = int(threads or torch.get_num_threads())
        self.prefix_cache, self.min_prefix = int(prefix_cache), int(min_prefix)
        self._window = int(ll.llama_model_n_swa(self._model))  # 0: no sliding-window layers
        self._ctx = None
        self._n_ctx, self._max_batch = int(n_ctx), int(max_batch)
        self._kept: OrderedDict[tuple[int, ...], int] = OrderedDict()  # prompt -> its sequence
        self._rows: list[int] = []  # batch row -> sequence id
        self._next: list[int] = []  # batch row -> its next position
        self._out: torch.Tensor | None = None
        self.reused_tokens = 0
        self._make_context()

    # -- context and sequences ---------------------------------------------------------------
    def _make_context(self) -> None:
        ll = self._ll
        if self._ctx:
            ll.llama_free(self._ctx)
        params = ll.llama_context_default_params()
        params.n_ctx = self._n_ctx
        params.n_batch = self._n_ctx  # one llama_decode takes a whole prefill; it splits it
        params.n_ubatch = min(self._n_ctx, 512)
        params.n_seq_max = self._max_batch + self.prefix_cache
        params.n_threads = params.n_threads_batch = self.threads
        params.kv_unified = True  # sequences share cells: a copied prefix costs nothing
        params.swa_full = True  # sliding layers get as many cells as the others, never fewer
        params.no_perf = True
        self._ctx = ll.llama_init_from_model(self._model, params)
        if not self._ctx:
            raise LlamaCppError("llama.cpp could not create a context "
                                f"(n_ctx={self._n_ctx}, sequences={params.n_seq_max})")
        if self._lora is not None:
            adapters = (ll.llama_adapter_lora_p_ctypes * 1)(self._lora)
            scales = (ctypes.c_float * 1)(self._lora_scale)
            if ll.llama_set_adapters_lora(self._ctx, adapters, 1, scales) != 0:
                raise LlamaCppError("llama.cpp refused the LoRA adapter for this model")
        self._memory = ll.llama_get_memory(self._ctx)
        self._kept.clear()
        self._batch_cap = 0
        self._batch = None

    def _free_sequences(self) -> list[int]:
        used = set(self._kept.values()) | set(self._rows)
        return [s for s in range(self._max_batch + self.prefix_cache) if s not in used]

    def _drop(self, seq: int) -> None:
        self._ll.llama_memory_seq_rm(self._memory, seq, -1, -1)

    # -- the batch ---------------------------------------------------------------------------
    def start(self, prompts: list[list[int]]) -> None:
        self.finish()
        need = sum(map(len, prompts)) + sum(len(k) for k in self._kept)
        if len(prompts) > self._max_batch or need > self._n_ctx // 2:
            self._max_batch = max(self._max_batch, len(prompts))
            self._n_ctx = max(self._n_ctx, 4 * sum(map(len, prompts)))
            self._make_context()
        shared = prompts[0]
        for p in prompts[1:]:
            n = 0
            while n < min(len(shared), len(p)) and shared[n] == p[n]:
                n += 1
            shared = shared[:n]
        limit = min(min(map(len, prompts)) - 1, len(shared))
        key, reuse = None, 0
        for k in self._kept:
            n = 0
            while n < min(len(k), limit) and k[n] == shared[n]:
                n += 1
            if n > reuse:
                key, reuse = k, n
        if reuse < self.min_prefix:
            key, reuse = None, 0
        free = self._free_sequences()
        self._rows = free[:len(prompts)]
        if key is not None:
            self._kept.move_to_end(key)
            for seq in self._rows:
                self._ll.llama_memory_seq_cp(self._memory, self._kept[key], seq, 0, reuse)
        self.reused_tokens = reuse
        self._next = [reuse] * len(prompts)
        self._decode([p[reuse:] for p in prompts])
        self._keep_prefix(prompts[0] if len(prompts) == 1 else shared, len(prompts[0]))

    def _keep_prefix(self, tokens: list[int], span: int) -> None:
        """Keep row 0's cells of `tokens` (a prefix of its `span`-token prompt) as a sequence."""
        if self.prefix_cache <= 0 or len(tokens) < self.min_prefix:
            return
        if self._window and span >= self._window:
            return  # its oldest cells may be overwritten (module docstring)
        key = tuple(tokens)
        if any(k[:len(key)] == key for k in self._kept):
            return
        for shorter in [k for k in self._kept if key[:len(k)] == k]:
            self._drop(self._kept.pop(shorter))
        while len(self._kept) >= self.prefix_cache:
            self._drop(self._kept.popitem(last=False)[1])
        seq = self._free_sequences()[0]
        self._ll.llama_memory_seq_cp(self._memory, self._rows[0], seq, 0, len(tokens))
        self._kept[key] = seq

    def _decode(self, tokens: list[list[int]]) -> None:
        """One step: row r's `tokens[r]` at its next positions; logits of each row's last."""
        ll = self._ll
        total = sum(map(len, tokens))
        if total > self._batch_cap:
            if self._batch is not None:
                ll.llama_batch_free(self._batch)
            self._batch_cap = max(total, 512)
            self._batch = ll.llama_batch_init(self._batch_cap, 0, 1)
        batch, n = self._batch, 0
        for r, row in enumerate(tokens):
            seq, pos = self._rows[r], self._next[r]
            for j, t in enumerate(row):
                batch.token[n] = t
                batch.pos[n] = pos + j
                batch.n_seq_id[n] = 1
                batch.seq_id[n][0] = seq
                batch.logits[n] = j == len(row) - 1
                n += 1
            self._next[r] = pos + len(row)
        batch.n_tokens = n
        status = ll.llama_decode(self._ctx, batch)
        if status != 0:
            raise LlamaCppError(f"llama_decode failed with status {status} "
                                f"({n} tokens over {len(tokens)} rows; n_ctx={self._n_ctx})")
        pointer = ll.llama_get_logits(self._ctx)
        array = np.ctypeslib.as_array(pointer, shape=(len(tokens), self.logits_width))
        self._out = torch.from_numpy(array)  # a view of llama.cpp's buffer, valid until the next

    def logits(self, allowed: list[np.ndarray | None] | None = None) -> torch.Tensor:
        if self._out is None:
            raise LlamaCppError("logits(): no batch was started")
        return self._out

    def append(self, tokens: list[list[int]]) -> None:
        self._decode(tokens)

    def keep(self, rows: list[int]) -> None:
        for r, seq in enumerate(self._rows):
            if r not in rows:
                self._drop(seq)
        self._rows = [self._rows[r] for r in rows]
        self._next = [self._next[r] for r in rows]
        self._out = None

    def finish(self) -> None:
        for seq in self._rows:
            self._drop(seq)
        self._rows, self._next, self._out = [], [], None

    def clear_prefix_cache(self) -> None:
        for seq in self._kept.values():
            self._drop(seq)
        self._kept.clear()

    def close(self) -> None:
        """Free the context and the model (also done when the runner is collected)."""
        ll = getattr(self, "_ll", None)
        if ll is None:
            return
        if getattr(self, "_batch", None) is not None:
            ll.llama_batch_free(self._batch)
            self._batch = None
        if getattr(self, "_ctx", None):
            ll.llama_free(self._ctx)
            self._ctx = None
        if getattr(self, "_lora", None):
            ll.llama_adapter_lora_free(self._lora)
            self._lora = None
        if getattr(self, "_model", None):
            ll.llama_model_free(self._model)
            self._model = None

    def __del__(self) -> None:
        try:
            self.close()
        except Exception:  # interpreter shutdown: the bindings may be gone already
            pass

