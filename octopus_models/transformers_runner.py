"""A Hugging Face causal LM as `decode`'s model runner: left-padded batches, one KV cache, a
prompt-prefix cache, and the LM head computed only for the allowed tokens where they are few.

Prefix reuse: a runner keeps the KV state of the prompts it prefilled (the last
`prefix_cache` of them, at batch 1; for a batch, the prefix its rows share). A later batch whose
rows all start with the same `min_prefix` or more tokens as a kept prompt copies that state and
prefills only the rest. Queries against one API document share the instruction and candidate
block, so on-device use (many queries, one API family) prefills only the query. Attention is
causal, so the state of a prefix does not depend on what follows it. On a model with
sliding-window layers a state is kept only while it fits the window.

Head skip: for the model types in `HEAD_SKIP_MODEL_TYPES` (whose `forward` is the decoder, then
`lm_head`, then an optional final soft-capping) the runner calls the decoder itself, and for a
row whose grammar allows at most `head_skip_limit` tokens it multiplies the last hidden state by
those rows of the head only; the other logits are -inf, as the mask makes them. Exact up to the
matmul's summation order (tested: the same tokens as the full head).
"""

from __future__ import annotations

import inspect
from collections import OrderedDict
from typing import Any

import numpy as np
import torch

from .decode import Runner, eos_token_ids, logits_width

__all__ = ["TransformersRunner", "cache_keyword", "HEAD_SKIP_MODEL_TYPES"]

#: Model types whose causal-LM forward is `lm_head(decoder(...))` with at most a final
#: `tanh` soft-capping (`config.final_logit_softcapping`): the head may be split off exactly.
HEAD_SKIP_MODEL_TYPES = frozenset({"gemma3_text", "gemma2", "gemma", "llama", "mistral", "qwen2",
                                   "qwen3"})


def cache_keyword(model: Any) -> str:
    """The keyword by which `model`'s forward takes the KV cache: `cache` (transformers 5.x;
    `past_key_values` is deprecated there, with a FutureWarning) or `past_key_values` (4.x).

    Read from the forward's signature, through wrappers that take `**kwargs` only (a PEFT
    model, whose `get_base_model()` has the real forward); `past_key_values` when none says.
    """
    seen: set[int] = set()
    while model is not None and id(model) not in seen:
        seen.add(id(model))
        try:
            params = inspect.signature(model.forward).parameters
        except (AttributeError, TypeError, ValueError):
            params = {}
        for name in ("cache", "past_key_values"):
            if name in params and params[name].kind in (inspect.Parameter.POSITIONAL_OR_KEYWORD,
                                                       inspect.Parameter.KEYWORD_ONLY):
                return name
        base = getattr(model, "get_base_model", None)
        model = base() if callable(base) else None
    return "past_key_values"


def _common_prefix(a: tuple[int, ...] | list[int], b: list[int]) -> int:
    n = min(len(a), len(b))
    i = 0
    while i < n and a[i] == b[i]:
        i += 1
    return i


class TransformersRunner(Runner):
    """Runs a Hugging Face causal LM for `decode` (see the module docstring).

    `prefix_cache`: how many prompt states to keep (0: none). `min_prefix`: the fewest shared
    tokens worth reusing. `head_skip_limit`: the largest allowed set whose head rows are
    gathered (None: 4096 for the model types in `HEAD_SKIP_MODEL_TYPES`, else 0; 0: off).
    """

    name = "transformers"

    def __init__(self, model: Any, tokenizer: Any, *, prefix_cache: int = 4,
                 min_prefix: int = 16, head_skip_limit: int | None = None) -> None:
        self.model = model
        self.logits_width = logits_width(model)
        self.eos_token_ids = eos_token_ids(model, tokenizer)
        pad = tokenizer.pad_token_id
        self.pad_token_id = int(pad) if pad is not None else self.eos_token_ids[0]
        self.device = next(model.parameters()).device
        self.prefix_cache, self.min_prefix = int(prefix_cache), int(min_prefix)
        config = model.config.get_text_config()
        self._window = (getattr(config, "sliding_window", None)
                        if any(t == "sliding_attention" for t in getattr(config, "layer_types", None)
                               or ()) else None)
        self._softcap = getattr(config, "final_logit_softcapping", None)
        head = model.get_output_embeddings()
        splittable = (getattr(config, "model_type", None) in HEAD_SKIP_MODEL_TYPES
                      and head is not None and callable(getattr(model, "get_decoder", None)))
        if head_skip_limit is None:
            head_skip_limit = 4096 if splittable else 0
        if head_skip_limit and not splittable:
            raise ValueError(f"TransformersRunner: head skip needs a model type in "
                             f"{sorted(HEAD_SKIP_MODEL_TYPES)}, got "
                             f"{getattr(config, 'model_type', None)!r}")
        self.head_skip_limit = int(head_skip_limit)
        self._head = head
        self._decoder = model.get_decoder() if self.head_skip_limit else None
        self._keyword = cache_keyword(self._decoder if self._decoder is not None else model)
        self._kept: OrderedDict[tuple[int, ...], list[tuple[torch.Tensor, torch.Tensor]]] = \
            OrderedDict()
        self.reused_tokens = 0  # prefill tokens taken from the prefix cache (last batch)
        self._cache = None

    # -- the batch ---------------------------------------------------------------------------
    def start(self, prompts: list[list[int]]) -> None:
        from transformers import DynamicCache

        self.finish()
        self._cache = DynamicCache(config=self.model.config)
        shared = prompts[0]
        for p in prompts[1:]:
            shared = shared[:_common_prefix(shared, p)]
        # At least one token of every row is prefilled, for its logits.
        limit = min(min(map(len, prompts)) - 1, len(shared))
        key, reuse = self._match(shared, limit)
        self.reused_tokens = reuse
        if reuse:
            states = self._kept[key]
            self._kept.move_to_end(key)
            for layer, (k, v) in enumerate(states):
                self._cache.update(k[:, :, :reuse].expand(len(prompts), -1, -1, -1).contiguous(),
                                   v[:, :, :reuse].expand(len(prompts), -1, -1, -1).contiguous(),
                                   layer)
            self._attn = torch.ones((len(prompts), reuse), dtype=torch.long, device=self.device)
            self._next_pos = torch.full((len(prompts),), reuse, dtype=torch.long,
                                        device=self.device)
            self.append([p[reuse:] for p in prompts])
            width = max(len(p) - reuse for p in prompts)
            columns = [(0, reuse, reuse + width - (len(p) - reuse)) for p in prompts]
        else:
            width = max(map(len, prompts))
            ids = torch.full((len(prompts), width), self.pad_token_id, dtype=torch.long)
            attn = torch.zeros((len(prompts), width), dtype=torch.long)
            for i, r in enumerate(prompts):  # left padding: every row's last token is last
                ids[i, width - len(r):] = torch.tensor(r)
                attn[i, width - len(r):] = 1
            self._attn = attn.to(self.device)
            positions = (self._attn.cumsum(-1) - 1).clamp(min=0)
            self._forward(ids.to(self.device), positions)
            self._next_pos = positions[:, -1] + 1
            columns = [(width - len(p), width - len(p), width - len(p)) for p in prompts]
        self._keep_prefix(prompts[0] if len(prompts) == 1 else shared, columns[0], reuse)

    def _match(self, shared: list[int], limit: int) -> tuple[tuple[int, ...] | None, int]:
        best, length = None, 0
        for key in self._kept:
            n = min(_common_prefix(key, shared), limit)
            if n > length:
                best, length = key, n
        return (best, length) if length >= self.min_prefix else (None, 0)

    def _keep_prefix(self, tokens: list[int], columns: tuple[int, int, int], reused: int) -> None:
        """Keep row 0's state of `tokens` (its first `reused` at columns[0:], the rest from
        columns[2]), unless a kept prompt already covers them or they do not fit the window."""
        if self.prefix_cache <= 0 or len(tokens) < self.min_prefix:
            return
        if self._window is not None and self._attn.shape[1] >= self._window:
            return  # a sliding layer has already dropped the oldest columns
        key = tuple(tokens)
        if any(k[:len(key)] == key for k in self._kept):
            return
        for shorter in [k for k in self._kept if key[:len(k)] == k]:
            del self._kept[shorter]  # the new state covers it
        start, _, rest = columns
        states = []
        for layer in self._cache.layers:
            parts = []
            for t in (layer.keys, layer.values):
                head = t[:1, :, start:start + reused]
                tail = t[:1, :, rest:rest + len(tokens) - reused]
                parts.append(torch.cat([head, tail], dim=2).clone())
            states.append((parts[0], parts[1]))
        self._kept[key] = states
        while len(self._kept) > self.prefix_cache:
            self._kept.popitem(last=False)

    def clear_prefix_cache(self) -> None:
        self._kept.clear()

    def _forward(self, ids: torch.Tensor, positions: torch.Tensor) -> None:
        kwargs = {"input_ids": ids, "attention_mask": self._attn, "position_ids": positions,
                  "use_cache": True, self._keyword: self._cache}
        if self._decoder is not None:
            self._hidden = self._decoder(**kwargs).last_hidden_state[:, -1]
            self._logits = None
        else:
            self._logits = self.model(**kwargs, logits_to_keep=1).logits[:, -1].float()

    def logits(self, allowed: list[np.ndarray | None] | None = None) -> torch.Tensor:
        if self._logits is not None:
            return self._logits
        weight, bias = self._head.weight, getattr(self._head, "bias", None)
        if allowed is None:
            out = self._head(self._hidden)
        else:
            out = torch.full((self._hidden.shape[0], self.logits_width), float("-inf"),
                             dtype=self._hidden.dtype, device=self.device)
            full = [r for r, a in enumerate(allowed) if a is None]
            if full:
                out[full] = self._head(self._hidden[full])
            for r, ids in enumerate(allowed):
                if ids is not None:
                    index = torch.from_numpy(ids).to(self.device)
                    row = self._hidden[r] @ weight[index].T
                    out[r, index] = row if bias is None else row + bias[index]
        if self._softcap is not None:
            out = torch.tanh(out / self._softcap) * self._softcap
        return out.float()

    def append(self, tokens: list[list[int]]) -> None:
        """Feed each row its tokens, right-aligned in one chunk with the padding masked, so that
        the last column is every row's newest token (rows take different numbers of tokens
        under jump-forward)."""
        span = max(map(len, tokens))
        chunk = torch.full((len(tokens), span), self.pad_token_id, dtype=torch.long)
        mask = torch.zeros((len(tokens), span), dtype=torch.long)
        for r, p in enumerate(tokens):
            chunk[r, span - len(p):] = torch.tensor(p)
            mask[r, span - len(p):] = 1
        self.append_chunk(chunk.to(self.device), mask.to(self.device))

    def append_chunk(self, chunk: torch.Tensor, chunk_mask: torch.Tensor) -> None:
        """Feed (B, L) tokens right-aligned per row, the padding masked by `chunk_mask`."""
        positions = (self._next_pos[:, None] + chunk_mask.cumsum(-1) - 1).clamp(min=0)
        self._attn = torch.cat([self._attn, chunk_mask], dim=1)
        self._next_pos = self._next_pos + chunk_mask.sum(-1)
        self._forward(chunk, positions)

    def keep(self, rows: list[int]) -> None:
        index = torch.tensor(rows, device=self.device)
        self._cache.batch_select_indices(index)
        self._attn, self._next_pos = self._attn[index], self._next_pos[index]
        if self._logits is not None:
            self._logits = self._logits[index]
        else:
            self._hidden = self._hidden[index]

    def finish(self) -> None:
        self._cache = None
        self._logits = self._hidden = None
