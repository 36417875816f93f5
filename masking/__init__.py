"""Lark grammar + tokenizer in, token-level finite-state masks out.

Owns the byte vocabulary of a tokenizer (`Vocabulary`), the Lark → byte-DFA compiler, the token
FSM (per-state int32 bitmask rows and next states, `TokenFSM`), per-sequence matchers
(`Matcher`), the shortest way to finish from a state, the compiled-FSM cache and the Hugging
Face logits processor.

    vocab = Vocabulary.from_tokenizer(tokenizer)
    fsm = compile_grammar(lark_text, vocab)
    m = fsm.matcher(); m.fill_bitmask(row); m.advance(token_id)
"""

from .compile import compile_grammar
from .completion import shortest_completion
from .compile_errors import GrammarCompileError, GrammarViolation
from ..common.layouts import FSMTables, bitmask_words
from .fsm import TokenFSM
from .grammar import DEFAULT_MAX_RECURSION_DEPTH
from .matcher import Matcher
from .vocabulary import Vocabulary, VocabularyError

__all__ = [
    "Vocabulary", "VocabularyError", "compile_grammar", "TokenFSM", "Matcher",
    "GrammarCompileError", "GrammarViolation", "bitmask_words", "FSMTables", "DEFAULT_MAX_RECURSION_DEPTH",
    "GrammarLogitsProcessor", "shortest_completion",
]


def __getattr__(name):
    # the processor imports transformers; load it only when asked for
    if name == "GrammarLogitsProcessor":
        from .processor import GrammarLogitsProcessor
        return GrammarLogitsProcessor
    raise AttributeError(name)
