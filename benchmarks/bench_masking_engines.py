"""The engines the masking benchmark compares, behind one small interface.

Every engine is prepared once per vocabulary (its tokenizer preprocessing, timed apart), then
for each grammar: `compile(case)` returns its compiled object, `matcher(compiled)` a fresh
per-sequence matcher as two callables, `advance(token) -> bool` and `fill()` (writes the
allowed-token bitmask of the current position into `self.bitmask`, shape (1, ceil(V/32))
int32). Timing loops call exactly those two, so every engine is measured the same way.

The peers get the same byte vocabulary as Octogram wherever they accept one: xgrammar a RAW
vocabulary of Octogram's token bytes, outlines-core a bytes -> ids map of the same. llguidance
reads the Hugging Face tokenizer itself.
"""

from __future__ import annotations

import functools
import json
import os
import pickle
import tempfile
from collections.abc import Callable
from typing import Any

import torch

from octogram.masking import TokenFSM, Vocabulary, bitmask_words, compile_grammar
from octogram.masking import cache as fsm_cache

from .bench_masking_workload import GrammarCase

Matcher = tuple[Callable[[int], Any], Callable[[], Any]]


class Engine:
    name = ""
    needs = "lark"  # which form of a case it reads: "lark" or "regex"

    def prepare(self, tokenizer: Any, vocab: Vocabulary) -> None:
        self.vocab = vocab
        self.bitmask = torch.zeros((1, bitmask_words(vocab.size)), dtype=torch.int32)

    def supports(self, case: GrammarCase) -> bool:
        return self.needs != "regex" or case.regex is not None or case.json_schema is not None

    def compile(self, case: GrammarCase) -> Any:
        raise NotImplementedError

    def matcher(self, compiled: Any) -> Matcher:
        raise NotImplementedError

    def memory(self, compiled: Any) -> tuple[int | None, str]:
        """Bytes of the compiled object and how they were counted."""
        return None, "n/a"


class Octogram(Engine):
    """`compile_grammar`: cold (cache=False), from the on-disk cache, or lazy.

    The cache file that "cache" mode loads is written from the cold compile of the same grammar
    (`prime`), so the benchmark does not compile every grammar twice; `check_hit` then confirms
    that the timed call read that file and wrote nothing."""

    def __init__(self, mode: str):
        assert mode in ("cold", "cache", "lazy")
        self.mode = mode
        self.name = {"cold": "ours cold", "cache": "ours cache", "lazy": "ours lazy"}[mode]
        self._files: dict[str, int] = {}

    def prepare(self, tokenizer: Any, vocab: Vocabulary) -> None:
        super().prepare(tokenizer, vocab)
        self.row = self.bitmask[0]

    def prime(self, cold: TokenFSM) -> None:
        """Write the cache file of a complete FSM, as `compile_grammar(cache=True)` would."""
        fsm_cache.save_fsm(cold)
        self._files = self._listing()

    def check_hit(self) -> None:
        if self._listing() != self._files:
            raise RuntimeError("compile_grammar(cache=True) did not load the file written from the "
                               "cold compile (has the cache layout changed?)")

    @staticmethod
    def _listing() -> dict[str, int]:
        folder = fsm_cache.cache_dir()
        return {p.name: p.stat().st_mtime_ns for p in folder.iterdir()} if folder.exists() else {}

    def compile(self, case: GrammarCase) -> Any:
        return compile_grammar(case.lark, self.vocab, import_paths=case.import_paths,
                               cache=self.mode == "cache", lazy=self.mode == "lazy")

    def matcher(self, compiled: Any) -> Matcher:
        m = compiled.matcher()
        return m.advance, functools.partial(m.fill_bitmask, self.row)

    def memory(self, compiled: Any) -> tuple[int | None, str]:
        how = "memory_bytes() after the first mask" if self.mode == "lazy" else "memory_bytes()"
        return compiled.memory_bytes(), how


class XGrammar(Engine):
    """xgrammar: Lark text through `Grammar.from_lark`, or a regex through `compile_regex`;
    JSON Schema through `compile_json_schema` with json.dumps separators."""

    def __init__(self, form: str = "lark"):
        self.needs = form
        self.name = "xgrammar" if form == "lark" else "xgrammar regex"

    def prepare(self, tokenizer: Any, vocab: Vocabulary) -> None:
        import xgrammar as xgr

        super().prepare(tokenizer, vocab)
        self.xgr = xgr
        info = xgr.TokenizerInfo(vocab.tokens, xgr.VocabType.RAW, vocab_size=vocab.size,
                                 stop_token_ids=vocab.eos_token_ids)
        # no compile cache: every compile in the benchmark is a first compile
        self.compiler = xgr.GrammarCompiler(info, cache_enabled=False)

    def compile(self, case: GrammarCase) -> Any:
        if case.json_schema is not None:
            return self.compiler.compile_json_schema(json.dumps(case.json_schema), any_whitespace=False,
                                                     separators=(", ", ": "))
        if self.needs == "regex":
            return self.compiler.compile_regex(case.regex)
        return self.compiler.compile_grammar(self.xgr.Grammar.from_lark(case.lark))

    def matcher(self, compiled: Any) -> Matcher:
        m = self.xgr.GrammarMatcher(compiled)
        return m.accept_token, functools.partial(m.fill_next_token_bitmask, self.bitmask, 0)

    def memory(self, compiled: Any) -> tuple[int | None, str]:
        return compiled.memory_size_bytes, "memory_size_bytes"


class LLGuidance(Engine):
    """llguidance: Lark text (`grammar_from_lark`) or JSON Schema, masks computed on demand."""

    name = "llguidance"

    def prepare(self, tokenizer: Any, vocab: Vocabulary) -> None:
        import llguidance
        import llguidance.hf
        import llguidance.torch

        super().prepare(tokenizer, vocab)
        self.llg = llguidance
        self.fill = llguidance.torch.fill_next_token_bitmask
        self.tokenizer = llguidance.hf.from_tokenizer(tokenizer, n_vocab=vocab.size,
                                                      eos_token=vocab.eos_token_ids[0])

    def compile(self, case: GrammarCase) -> Any:
        M = self.llg.LLMatcher
        if case.json_schema is not None:
            return M.grammar_from_json_schema(
                json.dumps(case.json_schema),
                overrides={"whitespace_flexible": False, "item_separator": ", ", "key_separator": ": "})
        return M.grammar_from_lark(case.lark)

    def matcher(self, compiled: Any) -> Matcher:
        # llguidance builds its parser and lexer here; masks are computed on demand
        m = self.llg.LLMatcher(self.tokenizer, compiled)
        if m.is_error():
            raise RuntimeError(f"llguidance rejected the grammar: {m.get_error()}")
        return m.consume_token, functools.partial(self.fill, m, self.bitmask, 0)


class OutlinesCore(Engine):
    """outlines-core: an `Index` of a regex (a JSON Schema becomes its regex first)."""

    name = "outlines-core"
    needs = "regex"

    def prepare(self, tokenizer: Any, vocab: Vocabulary) -> None:
        import outlines_core

        super().prepare(tokenizer, vocab)
        self.oc = outlines_core
        by_bytes: dict[bytes, list[int]] = {}
        for i, token in enumerate(vocab.tokens):
            if token:
                by_bytes.setdefault(token, []).append(i)
        self.vocabulary = outlines_core.Vocabulary(vocab.eos_token_ids[0], by_bytes)

    def compile(self, case: GrammarCase) -> Any:
        if case.json_schema is not None:
            from outlines_core.json_schema import build_regex_from_schema
            # whitespace "" would join items with "," only; this pattern admits json.dumps's spaces
            regex = build_regex_from_schema(json.dumps(case.json_schema), whitespace_pattern=r"[ ]?")
        else:
            regex = case.regex
        return self.oc.Index(regex, self.vocabulary)

    def matcher(self, compiled: Any) -> Matcher:
        g = self.oc.Guide(compiled)
        t = self.bitmask
        return (functools.partial(_outlines_advance, g),
                functools.partial(g.write_mask_into, t.data_ptr(), t.numel(), 4))

    def memory(self, compiled: Any) -> tuple[int | None, str]:
        return len(pickle.dumps(compiled)), "pickled size"


def _outlines_advance(guide: Any, token: int) -> bool:
    # outlines-core raises on a token its index does not allow; the others return False
    try:
        guide.advance(token, return_tokens=False)
        return True
    except ValueError:
        return False


def private_cache_dir() -> str:
    """A fresh OCTOGRAM_CACHE_DIR, so no earlier compile is found on disk. The tokenizers and the
    corpus live under the same variable: load them before calling this."""
    path = tempfile.mkdtemp(prefix="octogram-bench-")
    os.environ["OCTOGRAM_CACHE_DIR"] = path
    return path
