"""`compile_grammar`: Lark text + vocabulary → `TokenFSM`, through the on-disk cache."""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Sequence

from . import cache as fsm_cache
from .automaton import DFA
from .fsm import TokenFSM
from .grammar import DEFAULT_MAX_RECURSION_DEPTH, check_options, compile_parsed, grammar_hash, parse_lark
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
    check_options(start, max_recursion_depth)
    eos = list(vocabulary.eos_token_ids)
    index = vocab_index(vocabulary)

    def cache_key(used_files: dict) -> tuple[str, Path]:
        source_hash = grammar_hash(grammar, used_files, start, max_recursion_depth)
        key = hashlib.sha256(f"{source_hash}|{vocabulary.fingerprint()}|{eos}".encode()).hexdigest()
        return key, fsm_cache.path_for(key)

    # text without %import hashes to the same key before Lark reads it (no imported files), so
    # a cache hit skips the parse: Lark's reading is most of the time a hit would take
    looked = cache and isinstance(grammar, str) and "%import" not in grammar
    if looked:
        key, path = cache_key({})
        hit = fsm_cache.load(path, key)
        if hit is not None:
            return _from_cache(hit, index, eos, key)
    parsed, used_files = parse_lark(grammar, import_paths)
    key, path = cache_key(used_files)
    if cache and not looked:
        hit = fsm_cache.load(path, key)
        if hit is not None:
            return _from_cache(hit, index, eos, key)
    compiled = compile_parsed(parsed, start=start, max_recursion_depth=max_recursion_depth,
                              lazy=lazy)
    fsm = TokenFSM(compiled.dfa, index, eos, lazy=lazy, key=key)
    if cache and not lazy:
        fsm_cache.save_fsm(fsm)
    return fsm


def _from_cache(hit, index, eos: list[int], key: str) -> TokenFSM:
    tables, trans, accepting = hit
    return TokenFSM.from_tables(tables, DFA(trans, accepting), index, eos, key=key)
