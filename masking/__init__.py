"""Lark grammar + tokenizer in, token-level finite-state masks out.

Owns the byte vocabulary of a tokenizer, the Lark → byte-DFA compiler, the token FSM (per-state
int32 bitmask rows and next states), per-sequence matchers, the compiled-FSM cache and the
Hugging Face logits processor.
"""
