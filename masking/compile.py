"""`compile_grammar`: Lark text + vocabulary → `TokenFSM`, through the on-disk cache."""

from __future__ import annotations

import hashlib
from typing import Sequence

from . import cache as fsm_cache
from .automaton import DFA
from .fsm import TokenFSM
from .grammar import DEFAULT_MAX_RECURSION_DEPTH, compile_parsed, grammar_hash, parse_lark
from .vocab_index import vocab_index


def compile_grammar(grammar: str, vocabulary, *, start: str = "start",
                    import_paths: Sequence[str] = (),
                    max_recursion_depth: int = DEFAULT_MAX_RECURSION_DEPTH,
                    cache: bool = True, lazy: bool = False) -> TokenFSM:
    """Compile Lark grammar text for a vocabulary.

    `cache=True` loads a previous compile of the same grammar (text, imports, options) for the
    same vocabulary from disk (`$OCTOGRAM_CACHE_DIR`), or saves this one. `lazy=True` computes
    each state's mask on first use instead of all up front: the first mask comes sooner, later
    masks of new states cost a crossing each. A lazy compile is not saved (it is incomplete), but
    it still loads a cached full compile when there is one.
    """
    parsed, used_files = parse_lark(grammar, import_paths)
    source_hash = grammar_hash(grammar, used_files, start, max_recursion_depth)
    eos = list(vocabulary.eos_token_ids)
    key = hashlib.sha256(f"{source_hash}|{vocabulary.fingerprint()}|{eos}".encode()).hexdigest()
    index = vocab_index(vocabulary)
    path = fsm_cache.cache_dir() / f"{key[:40]}.safetensors"
    if cache:
        hit = fsm_cache.load(path, key)
        if hit is not None:
            tables, trans, accepting = hit
            return TokenFSM.from_tables(tables, DFA(trans, accepting), index, eos, key=key)
    compiled = compile_parsed(parsed, source_hash, start=start, max_recursion_depth=max_recursion_depth,
                              lazy=lazy)
    fsm = TokenFSM(compiled.dfa, index, eos, lazy=lazy, key=key)
    fsm.recursive_rules = compiled.recursive_rules
    if cache and not lazy:
        fsm_cache.save(path, fsm.tables(), compiled.dfa.trans, compiled.dfa.accepting, key)
    return fsm
