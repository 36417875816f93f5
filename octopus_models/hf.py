"""The same grammar masks through Hugging Face `model.generate` (`GrammarLogitsProcessor`).

`hf_decode` takes the arguments of `decode.decode` and returns the same `Decoded` rows, so the
two paths can be compared token for token. Pass sampling options (`do_sample`, `temperature`,
`top_k`, `top_p`, `num_beams`...) through `**generate_kwargs`; the default is greedy. Extra
`logits_processor`s given there run after the grammar's.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch

from .decode import Decoded, eos_token_ids

__all__ = ["hf_decode"]


@torch.inference_mode()
def hf_decode(model: Any, tokenizer: Any, prompts: Sequence[str], grammars: Sequence[Any] | None
              = None, *, max_new_tokens: int = 128, **generate_kwargs: Any) -> list[Decoded]:
    """Decode `prompts` with `model.generate`, row i masked by `grammars[i]` when given.

    `grammars` is None (unconstrained) or one `TokenFSM` per prompt: the processor masks every
    row, so a batch cannot mix constrained and unconstrained rows here.
    """
    from octogram.masking import GrammarLogitsProcessor

    if grammars is not None:
        if len(grammars) != len(prompts):
            raise ValueError(f"hf_decode: {len(prompts)} prompts but {len(grammars)} grammars")
        if any(g is None for g in grammars):
            raise ValueError("hf_decode: every row needs a grammar (or pass grammars=None)")
    eos = eos_token_ids(model, tokenizer)
    pad_id = generate_kwargs.pop("pad_token_id", None)
    if pad_id is None:
        pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else eos[0]
    enc = tokenizer(list(prompts), return_tensors="pt", padding=True, padding_side="left")
    device = next(model.parameters()).device
    processors = [GrammarLogitsProcessor(list(grammars))] if grammars is not None else []
    processors += list(generate_kwargs.pop("logits_processor", None) or [])  # run after ours
    options: dict[str, Any] = {"do_sample": False, "top_k": None, "top_p": None,
                               "temperature": None, **generate_kwargs}
    out = model.generate(input_ids=enc.input_ids.to(device),
                         attention_mask=enc.attention_mask.to(device),
                         logits_processor=processors, max_new_tokens=max_new_tokens,
                         eos_token_id=eos, pad_token_id=pad_id, **options)
    results = []
    for row in out[:, enc.input_ids.shape[1]:].tolist():
        ended = next((k for k, t in enumerate(row) if t in eos), None)
        ids = row if ended is None else row[:ended]
        results.append(Decoded(ids, tokenizer.decode(ids, skip_special_tokens=False),
                               "length" if ended is None else "end"))
    return results
