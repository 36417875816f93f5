"""Octogram's grammar masks inside vLLM, as a logits-processor plugin (vLLM 0.32).

A request opts in through `SamplingParams.extra_args["octogram"]` (offline) or
`vllm_xargs={"octogram": <JSON string>}` (OpenAI-compatible server, whose extra args are flat):

    {"grammar": "<Lark text>"}                           # any grammar octogram compiles
    {"functions": [<OpenAI-style tool dicts>] or {<OpenAPI / JSON-Schema document>},
     "style": "python" | "json",                         # default "python" (Octopus calls)
     "parallel": false, "no_relevant_function": true, "max_depth": 3}

Each such request gets its own `Matcher` over a `TokenFSM` compiled for the model's tokenizer
at the logits width (lazily, as Octogram's own engine does: the first mask costs milliseconds;
an LRU of `OCTOGRAM_VLLM_CACHE_SIZE` grammars, default 64, keyed by the Lark text, is shared by
the requests of one engine). Before each sampling step the matcher catches up with the
request's output ids and the row's logits are masked in place by `octogram.kernels`. Requests
without the key are not touched. A matcher that has consumed EOS allows only EOS (for
`ignore_eos` or `min_tokens` runs that go on after it).

Errors: `validate_params` (vLLM calls it when a request is admitted) parses the options and
compiles the grammar against a byte vocabulary, so a bad grammar is a `ValueError` naming the
problem for that request only: `LLM.generate` raises it (`LLM.enqueue` fails just that call),
and the server answers HTTP 400. A failure only the real vocabulary can reveal, inside the
engine, ends that request with EOS and logs why; it never stops the engine.

One class serves both of vLLM's model runners, which load plugins from the same entry-point
group (`vllm.logits_processors`) but check them against different base classes: the V1 runner
(CPU, and GPU with `VLLM_USE_V2_MODEL_RUNNER=0`) constructs it as
`(vllm_config, device, is_pin_memory)` and calls `update_state` + `apply(logits)`; the V2 GPU
runner (the default on CUDA with Triton) constructs it as `(vllm_config, req_states)` and calls
`add_request` + `apply(logits, ctx)`. A V1-only plugin in that group would make every V2 engine
in the environment refuse to start. The V1 path is tested on CPU; the V2 path is written
against `vllm/v1/worker/gpu/sample/logits_processor/interface.py` and has not run on a GPU.
Neither supports speculative decoding (V1 drops custom processors then; V2 requests with a
grammar end with EOS and a logged error).

Installed octogram registers the class through the entry point, so every engine in that
environment loads it; passing it again in `logits_processors=[...]` is harmless (the second
instance stays idle). `OCTOGRAM_VLLM=off` turns it off (requests with the key are refused).
"""

from __future__ import annotations

import functools
import json
import logging
import os
import weakref
from collections import OrderedDict
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import torch

from vllm.sampling_params import SamplingParams
from vllm.v1.sample.logits_processor.interface import BatchUpdate, MoveDirectionality
from vllm.v1.sample.logits_processor.interface import LogitsProcessor as _V1LogitsProcessor

try:  # the V2 (GPU) runner's interface; absent from vLLM releases before it
    from vllm.v1.worker.gpu.sample.logits_processor.interface import (
        LogitsProcessor as _V2LogitsProcessor)
    _BASES: tuple[type, ...] = (_V1LogitsProcessor, _V2LogitsProcessor)
except ImportError:  # pragma: no cover - depends on the vLLM version
    _V2LogitsProcessor = None
    _BASES = (_V1LogitsProcessor,)

if TYPE_CHECKING:
    from vllm.config import VllmConfig

__all__ = ["OctogramLogitsProcessor", "EXTRA_ARGS_KEY", "grammar_from_options",
           "octogram_extra_args"]

logger = logging.getLogger("octogram.vllm")

EXTRA_ARGS_KEY = "octogram"
_OPTION_KEYS = {"grammar", "functions", "style", "parallel", "no_relevant_function", "max_depth"}


def _disabled() -> bool:
    return os.environ.get("OCTOGRAM_VLLM", "").strip().lower() in ("0", "off", "false", "no")


def octogram_extra_args(grammar: str | None = None, *, functions: Any = None,
                        style: str = "python", **options: Any) -> dict[str, Any]:
    """`SamplingParams.extra_args` for one request: a Lark grammar, or API functions (tool
    dicts or an API document) with the call style and `to_lark` options."""
    if (grammar is None) == (functions is None):
        raise ValueError("octogram_extra_args: give exactly one of grammar= and functions=")
    body: dict[str, Any] = ({"grammar": grammar} if grammar is not None
                            else {"functions": functions, "style": style, **options})
    return {EXTRA_ARGS_KEY: body}


def _options(params: SamplingParams) -> dict[str, Any] | None:
    extra = params.extra_args or {}
    if EXTRA_ARGS_KEY not in extra:
        return None
    value = extra[EXTRA_ARGS_KEY]
    if isinstance(value, str):  # the server's vllm_xargs are flat: the options as JSON text
        try:
            value = json.loads(value)
        except ValueError as exc:
            raise ValueError(f"extra_args[{EXTRA_ARGS_KEY!r}] is a string but not JSON: {exc}")
    if not isinstance(value, Mapping):
        raise ValueError(f"extra_args[{EXTRA_ARGS_KEY!r}] must be a dict (or its JSON text) "
                         f"with 'grammar' or 'functions', got {type(value).__name__}")
    return dict(value)


def grammar_from_options(options: Mapping[str, Any]) -> str:
    """The Lark text a request's options stand for; ValueError for anything malformed."""
    unknown = sorted(set(options) - _OPTION_KEYS)
    if unknown:
        raise ValueError(f"octogram: unknown option(s) {unknown}; expected some of "
                         f"{sorted(_OPTION_KEYS)}")
    if ("grammar" in options) == ("functions" in options):
        raise ValueError("octogram: give exactly one of 'grammar' (Lark text) and 'functions' "
                         "(tool dicts or an API document)")
    if "grammar" in options:
        text = options["grammar"]
        if not isinstance(text, str) or not text.strip():
            raise ValueError("octogram: 'grammar' must be non-empty Lark text")
        extra = sorted(set(options) - {"grammar"})
        if extra:
            raise ValueError(f"octogram: {extra} apply to 'functions' only")
        return text
    # Memoized on the canonical JSON: the worker derives the text again for every request.
    try:
        key = json.dumps(options)  # not sort_keys: parameter order is the call's order
    except (TypeError, ValueError) as exc:
        raise ValueError(f"octogram: the options are not JSON-serializable: {exc}")
    return _functions_grammar(key)


@functools.lru_cache(maxsize=256)
def _functions_grammar(key: str) -> str:
    from octogram.grammars import GrammarError, load, to_lark

    options = json.loads(key)
    functions = options["functions"]
    # A string would be read as a file path by `load`: never from a request.
    if not isinstance(functions, (list, dict)):
        raise ValueError("octogram: 'functions' must be a list of tool dicts or an API "
                         f"document (a dict), got {type(functions).__name__}")
    style = options.get("style", "python")
    if style not in ("python", "json"):
        raise ValueError(f"octogram: 'style' must be 'python' or 'json', got {style!r}")
    try:
        specs = load(functions, strict=False)
        if not specs:
            raise ValueError("octogram: 'functions' holds no function")
        return to_lark(specs, style, max_depth=int(options.get("max_depth", 3)),
                       parallel=bool(options.get("parallel", False)),
                       include_no_relevant=bool(options.get("no_relevant_function", True)))
    except GrammarError as exc:
        raise ValueError(f"octogram: cannot build a grammar from 'functions': {exc}") from exc


@functools.lru_cache(maxsize=1)
def _byte_vocabulary() -> Any:
    from octogram.masking import Vocabulary

    return Vocabulary([bytes([b]) for b in range(256)] + [b""], eos_token_ids=[256])


@functools.lru_cache(maxsize=256)
def _check_grammar(text: str) -> None:
    """Compile `text` against single bytes: Lark's parse, every terminal, productivity. What
    this accepts, a tokenizer that spells every byte (byte fallback, byte-level BPE) compiles."""
    from octogram.masking import compile_grammar

    try:
        compile_grammar(text, _byte_vocabulary(), lazy=True, cache=False)
    except Exception as exc:  # any compile failure is the request's, reported by name
        raise ValueError(f"octogram: the grammar does not compile: {type(exc).__name__}: "
                         f"{exc}") from exc


def _request_grammar(params: SamplingParams) -> str | None:
    options = _options(params)
    return None if options is None else grammar_from_options(options)


@dataclass
class _Row:
    """One constrained request: its matcher (None: failed, allows only EOS), the live list of
    its output ids (V1) and how many of them the matcher has consumed."""

    matcher: Any
    output_ids: list[int] | None = None
    consumed: int = 0
    error: str | None = None
    request: str = ""


@dataclass
class _Engine:
    """What one engine's rows share: the vocabulary, the compiled grammars (LRU), buffers."""

    vllm_config: Any
    device: torch.device
    cache_size: int = 64
    fsms: OrderedDict = field(default_factory=OrderedDict)
    _vocab: Any = None
    _eos_row: torch.Tensor | None = None
    _bitmask: torch.Tensor | None = None

    @property
    def vocabulary(self) -> Any:
        if self._vocab is None:
            from transformers import AutoTokenizer

            from octogram.masking import Vocabulary

            mc = self.vllm_config.model_config
            tok = AutoTokenizer.from_pretrained(mc.tokenizer, revision=mc.tokenizer_revision,
                                                trust_remote_code=mc.trust_remote_code)
            eos = [tok.eos_token_id] if isinstance(tok.eos_token_id, int) else []
            configured = mc.try_get_generation_config().get("eos_token_id")
            for i in [configured] if isinstance(configured, int) else list(configured or []):
                if i not in eos:
                    eos.append(int(i))  # vLLM stops on the generation config's EOS ids too
            self._vocab = Vocabulary.from_tokenizer(tok, mc.get_vocab_size(), eos_token_ids=eos)
        return self._vocab

    def fsm(self, text: str) -> Any:
        from octogram.masking import compile_grammar

        fsm = self.fsms.pop(text, None)
        if fsm is None:
            fsm = compile_grammar(text, self.vocabulary, lazy=True)
        self.fsms[text] = fsm  # most recently used last
        while len(self.fsms) > self.cache_size:
            self.fsms.popitem(last=False)
        return fsm

    def new_row(self, params: SamplingParams, output_ids: list[int] | None) -> _Row | None:
        try:
            text = _request_grammar(params)
        except ValueError as exc:  # validate_params refused it already; defensive
            return self.failed(str(exc), output_ids)
        if text is None:
            return None
        try:
            return _Row(self.fsm(text).matcher(), output_ids)
        except Exception as exc:  # a request's grammar must never stop the engine
            return self.failed(f"{type(exc).__name__}: {exc}", output_ids)

    def failed(self, error: str, output_ids: list[int] | None) -> _Row:
        logger.error("octogram: ending a request with EOS: %s", error)
        return _Row(None, output_ids, error=error)

    def catch_up(self, row: _Row, ids: Sequence[int]) -> None:
        """Advance `row` to the output `ids` (rolling back what vLLM discarded)."""
        n = len(ids)
        if n < row.consumed and row.matcher is not None:
            row.matcher.rollback(row.consumed - n)
            row.consumed = n
        while row.consumed < n:
            t = int(ids[row.consumed])
            if t < 0:
                break  # an async-scheduling placeholder: its real id comes later
            if row.matcher is not None and not row.matcher.advance(t):
                # Only possible when something after the mask chose the token (another
                # processor's edits, all-masked rows); the request cannot stay valid.
                self.failed(f"token {t} is not allowed by the grammar here", None)
                row.matcher, row.error = None, "a disallowed token was sampled"
            row.consumed += 1

    def fill(self, rows: list[_Row]) -> torch.Tensor:
        """The int32 bitmask of `rows`, one row each (on the host)."""
        vocab = self.vocabulary
        words = (vocab.size + 31) // 32
        if self._bitmask is None or self._bitmask.shape[0] < len(rows):
            self._bitmask = torch.empty((max(len(rows), 8), words), dtype=torch.int32,
                                        pin_memory=self.device.type == "cuda")
        bm = self._bitmask
        for i, row in enumerate(rows):
            if row.matcher is not None:
                try:
                    row.matcher.fill_bitmask(bm, i)
                    continue
                except Exception as exc:  # a lazy state too large to build, reached now
                    self.failed(f"{type(exc).__name__}: {exc}", None)
                    row.matcher, row.error = None, str(exc)
            bm[i] = self.eos_row()
        return bm[:len(rows)]

    def eos_row(self) -> torch.Tensor:
        if self._eos_row is None:
            vocab = self.vocabulary
            row = torch.zeros((vocab.size + 31) // 32, dtype=torch.int32)
            for t in vocab.eos_token_ids:
                row[t // 32] |= (1 << (t % 32)) if t % 32 < 31 else -(1 << 31)
            self._eos_row = row
        return self._eos_row

    def apply(self, logits: torch.Tensor, positions: list[int], rows: list[_Row]) -> None:
        from octogram.kernels import apply_token_bitmask_

        bm = self.fill(rows)
        index = torch.tensor(positions, dtype=torch.int64)
        if logits.device.type != "cpu":
            bm = bm.to(logits.device, non_blocking=True)
            index = index.to(logits.device, non_blocking=True)
        apply_token_bitmask_(logits, bm, index)


# Engines (by their config object) that already have an active instance: a class loaded from
# the entry point and passed again in `logits_processors` must not mask twice.
_ACTIVE: "weakref.WeakValueDictionary[int, OctogramLogitsProcessor]" = weakref.WeakValueDictionary()


class OctogramLogitsProcessor(*_BASES):  # type: ignore[misc]
    """Per-request Octogram grammars for vLLM's V1 runner (and, untested, the V2 GPU runner).

    See the module docstring for the request options. V1: rows are the persistent batch's
    indices, kept in step with `update_state`'s removed / added / moved (one-way moves and
    swaps); each row holds a reference to its request's live output list and catches up with
    it in `apply` (not in `update_state`: under async scheduling the newest ids are
    placeholders until just before sampling). V2: rows are request slots, set in
    `add_request`; `apply` reads each constrained row's newest tokens from the context.
    """

    def __init__(self, vllm_config: "VllmConfig", *args: Any) -> None:
        self._v2 = len(args) == 1
        device = (args[0].device if self._v2 else args[0]) if args else torch.device("cpu")
        self._engine = _Engine(vllm_config, torch.device(device),
                               int(os.environ.get("OCTOGRAM_VLLM_CACHE_SIZE", "64")))
        self._rows: dict[int, _Row] = {}
        self._req_states = args[0] if self._v2 else None
        self._spec = getattr(vllm_config, "speculative_config", None) is not None
        self._idle = _disabled() or id(vllm_config) in _ACTIVE
        if not self._idle:
            _ACTIVE[id(vllm_config)] = self
        if (not self._v2 and not self._idle
                and getattr(vllm_config.scheduler_config, "async_scheduling", False)
                and not any(p is type(self) or (isinstance(p, str) and p.endswith(
                    ":" + type(self).__name__))
                            for p in vllm_config.model_config.logits_processors or ())):
            # vLLM fills in a request's newest ids before sampling only when processors are
            # named in `logits_processors`; an entry-point-only load would see placeholders.
            logger.warning("octogram: async scheduling is on and OctogramLogitsProcessor is "
                           "loaded only from its entry point; pass it in logits_processors "
                           "(or --logits-processors) too, or turn async scheduling off")

    # -- both runners ------------------------------------------------------------------------

    @classmethod
    def validate_params(cls, sampling_params: SamplingParams) -> None:
        """Raise ValueError (HTTP 400 on the server) for malformed octogram options or a grammar
        that does not compile."""
        text = _request_grammar(sampling_params)
        if text is None:
            return
        if _disabled():
            raise ValueError("octogram: the vLLM plugin is turned off (OCTOGRAM_VLLM=off)")
        _check_grammar(text)

    def is_argmax_invariant(self) -> bool:
        return False  # masking changes which token is the largest

    def apply(self, logits: torch.Tensor, ctx: Any = None) -> torch.Tensor:
        if self._idle or not self._rows:
            return logits
        if self._v2:
            return self._apply_v2(logits, ctx)
        positions = sorted(self._rows)
        rows = [self._rows[i] for i in positions]
        for row in rows:
            self._engine.catch_up(row, row.output_ids)
        self._engine.apply(logits, positions, rows)
        return logits

    # -- V1 runner ---------------------------------------------------------------------------

    def update_state(self, batch_update: BatchUpdate | None) -> None:
        if batch_update is None or self._idle:
            return
        for index in batch_update.removed:
            self._rows.pop(index, None)
        for index, params, _prompt_ids, output_ids in batch_update.added:
            row = self._engine.new_row(params, output_ids)
            if row is None:
                self._rows.pop(index, None)  # a new request without a grammar took the slot
            else:
                self._rows[index] = row
        for a, b, direction in batch_update.moved:
            row_a, row_b = self._rows.pop(a, None), self._rows.pop(b, None)
            if row_a is not None:
                self._rows[b] = row_a
            if row_b is not None and direction == MoveDirectionality.SWAP:
                self._rows[a] = row_b

    # -- V2 runner (GPU; not run here) -------------------------------------------------------

    def add_request(self, req_idx: int, sampling_params: SamplingParams) -> bool:
        self._rows.pop(req_idx, None)  # the slot's previous occupant
        if self._idle:
            return False
        row = self._engine.new_row(sampling_params, None)
        if row is None:
            return False
        if self._spec and row.matcher is not None:
            row = self._engine.failed("octogram grammars do not support speculative decoding",
                                      None)
        self._rows[req_idx] = row
        return True

    def apply_staged_writes(self) -> None:
        return None

    def _apply_v2(self, logits: torch.Tensor, ctx: Any) -> torch.Tensor:
        slots = ctx.idx_mapping_np
        if logits.shape[0] != len(slots):
            raise RuntimeError("octogram: one logits row per request expected (speculative "
                               "decoding is not supported)")
        positions = [b for b, s in enumerate(slots.tolist()) if s in self._rows]
        if not positions:
            return logits
        # One host copy for all rows: each row's position and the token fed there (its
        # newest token); older tokens are read from the slot's history only after a gap.
        index = torch.tensor(positions, device=ctx.pos.device)
        pos_tok = torch.stack([ctx.pos[index].long(), ctx.input_ids[index].long()]).tolist()
        rows = []
        for b, pos, last in zip(positions, *pos_tok):
            slot = int(slots[b])
            row = self._rows[slot]
            prompt_len = int(self._req_states.prompt_len.np[slot])
            n_out = pos + 1 - prompt_len  # output tokens before the one sampled now
            if n_out <= 0:
                ids: list[int] = []
            elif n_out == row.consumed + 1:
                ids = [0] * row.consumed + [last]  # only the newest is read (the rest consumed)
            else:  # a gap (resumed after preemption): the committed history, then the newest
                hist = self._req_states.all_token_ids.gpu[slot, prompt_len:pos]
                ids = hist.tolist() + [last]
            self._engine.catch_up(row, ids)
            rows.append(row)
        self._engine.apply(logits, positions, rows)
        return logits
