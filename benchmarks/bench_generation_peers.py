"""The peers' Hugging Face processors, fed the same grammars as Octogram's.

xgrammar reads our Lark text directly (`Grammar.from_lark`). transformers-cfg reads GBNF-style
EBNF and lm-format-enforcer a regular expression, so the Lark grammar is translated: Lark
compiles it into plain rules (`[x]` expanded into alternatives), every rule is inlined into
its users (our call grammars are not recursive; a recursive rule is an error here) and every
regex terminal is rewritten from Python's own regex parse tree. The three forms describe the
same language.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any

try:  # Python >= 3.11
    from re import _constants as sre_c
    from re import _parser as sre_parse
except ImportError:  # pragma: no cover
    import sre_constants as sre_c  # type: ignore[no-redef]
    import sre_parse  # type: ignore[no-redef]

import torch

__all__ = ["lark_to_regex", "lark_to_gbnf", "xgrammar_factory", "transformers_cfg_factory",
           "lmfe_factory"]


def _compiled_rules(lark_text: str) -> tuple[dict[str, list[list[Any]]], dict[str, Any]]:
    import lark

    parser = lark.Lark(lark_text, start="start", parser="earley", maybe_placeholders=False)
    rules: dict[str, list[list[Any]]] = {}
    for rule in parser.rules:
        rules.setdefault(rule.origin.name, []).append(list(rule.expansion))
    terminals = {t.name: t.pattern for t in parser.terminals}
    return rules, terminals


def _inline(lark_text: str, terminal: Any, join: Any, alternatives: Any) -> str:
    rules, terminals = _compiled_rules(lark_text)
    done: dict[str, str] = {}

    def rule(name: str, stack: tuple[str, ...]) -> str:
        if name in stack:
            raise ValueError(f"rule {name} is recursive; only regular grammars can be translated")
        if name not in done:
            alts = [join([symbol(s, stack + (name,)) for s in exp]) for exp in rules[name]]
            done[name] = alternatives(alts)
        return done[name]

    def symbol(sym: Any, stack: tuple[str, ...]) -> str:
        return terminal(terminals[sym.name]) if sym.is_term else rule(sym.name, stack)

    return rule("start", ())


# ---------------------------------------------------------------------------------- regex form

def lark_to_regex(lark_text: str) -> str:
    """One Python regex for the whole (non-recursive) Lark grammar."""
    def terminal(pattern: Any) -> str:
        if pattern.type == "str":
            return re.escape(pattern.value)
        return f"(?:{pattern.value})"

    return _inline(lark_text, terminal, "".join, lambda alts: "(?:" + "|".join(alts) + ")")


# ----------------------------------------------------------------------------------- GBNF form

def _gbnf_char(code: int) -> str:
    return f"\\x{code:02x}" if code < 0x100 else f"\\u{code:04x}"


def _gbnf_class(items: list[tuple[Any, Any]], negate: bool = False) -> str:
    parts = []
    for op, arg in items:
        if op is sre_c.NEGATE:
            negate = True
        elif op is sre_c.LITERAL:
            parts.append(_gbnf_char(arg))
        elif op is sre_c.RANGE:
            parts.append(f"{_gbnf_char(arg[0])}-{_gbnf_char(arg[1])}")
        elif op is sre_c.CATEGORY and arg is sre_c.CATEGORY_DIGIT:
            parts.append("0-9")
        else:
            raise ValueError(f"regex class item {op} {arg} has no GBNF form here")
    return "[" + ("^" if negate else "") + "".join(parts) + "]"


def _gbnf_regex(tree: Any) -> str:
    out = []
    for op, arg in tree:
        if op is sre_c.LITERAL:
            out.append(f'"{_gbnf_char(arg)}"')
        elif op is sre_c.NOT_LITERAL:
            out.append(_gbnf_class([(sre_c.LITERAL, arg)], negate=True))
        elif op is sre_c.IN:
            out.append(_gbnf_class(arg))
        elif op is sre_c.ANY:
            out.append("[^\\x0a]")
        elif op is sre_c.BRANCH:
            out.append("(" + " | ".join(_gbnf_regex(b) for b in arg[1]) + ")")
        elif op is sre_c.SUBPATTERN:
            out.append("(" + _gbnf_regex(arg[-1]) + ")")
        elif op in (sre_c.MAX_REPEAT, sre_c.MIN_REPEAT):
            lo, hi, body = arg
            item = "(" + _gbnf_regex(body) + ")"
            if hi is sre_c.MAXREPEAT:
                out.append(" ".join([item] * lo + [item + "*"]) if lo else item + "*")
            else:  # x{lo,hi} = x repeated lo times, then (x (x ...)?)? nested hi - lo deep
                tail = ""
                for _ in range(hi - lo):
                    tail = f"({item} {tail})?" if tail else f"{item}?"
                out.append(" ".join([item] * lo + ([tail] if tail else [])))
        else:
            raise ValueError(f"regex construct {op} has no GBNF form here")
    return " ".join(out) if out else '""'


def lark_to_gbnf(lark_text: str) -> str:
    """The grammar as GBNF-style EBNF with a single `root` rule (for transformers-cfg)."""
    def terminal(pattern: Any) -> str:
        if pattern.type == "str":
            return '"' + "".join(_gbnf_char(ord(c)) if not c.isalnum() else c
                                 for c in pattern.value) + '"'
        return "(" + _gbnf_regex(sre_parse.parse(pattern.value)) + ")"

    body = _inline(lark_text, terminal, " ".join, lambda alts: "(" + " | ".join(alts) + ")")
    return f"root ::= {body}\n"


# ---------------------------------------------------------------------------------- processors
# Each factory compiles one grammar once and returns `make(rows)`, the keyword arguments of one
# `model.generate` call over `rows` rows with that grammar (the processors keep per-generation
# state, so each call gets new ones).

def xgrammar_factory(lark_text: str, tokenizer: Any, vocab_size: int) -> Callable[[int], dict]:
    """xgrammar's HF processor."""
    import xgrammar as xgr
    from xgrammar.contrib.hf import LogitsProcessor

    info = xgr.TokenizerInfo.from_huggingface(tokenizer, vocab_size=vocab_size)
    compiled = xgr.GrammarCompiler(info).compile_grammar(xgr.Grammar.from_lark(lark_text))
    return lambda rows: {"logits_processor": [LogitsProcessor([compiled] * rows)]}


def transformers_cfg_factory(lark_text: str, tokenizer: Any, vocab_size: int
                             ) -> Callable[[int], dict]:
    """transformers-cfg's processor (it applies one grammar to every row of a batch)."""
    from transformers_cfg.generation.logits_process import GrammarConstrainedLogitsProcessor
    from transformers_cfg.grammar_utils import IncrementalGrammarConstraint

    # The constraint (parsed grammar, vocabulary trie) takes long to build and is reused;
    # `reset()` clears its per-generation state.
    constraint = IncrementalGrammarConstraint(lark_to_gbnf(lark_text), "root", tokenizer)

    def make(rows: int) -> dict:
        processor = GrammarConstrainedLogitsProcessor(constraint)
        processor.reset()
        # once a row has ended it accepts only EOS again, so finished rows are padded with EOS
        return {"logits_processor": [processor], "pad_token_id": tokenizer.eos_token_id}

    return make


def _lmfe_tokenizer_data(tokenizer: Any, vocab_size: int) -> Any:
    """lm-format-enforcer's tokenizer data, built from Octogram's exact byte vocabulary.

    (Its own builder imports a module transformers 5 no longer has.) Tokens that are not whole
    UTF-8 text (byte-fallback pieces) are left out: its parsers work on characters.
    """
    from lmformatenforcer import TokenEnforcerTokenizerData

    from octogram.masking import Vocabulary

    vocab = Vocabulary.from_tokenizer(tokenizer, vocab_size)
    regular = []
    for token_id, raw in enumerate(vocab.tokens):
        try:
            text = raw.decode("utf-8")
        except UnicodeDecodeError:
            continue
        if text:
            regular.append((token_id, text, text.startswith(" ")))

    def decode(ids: list[int]) -> str:
        return tokenizer.decode(ids).rstrip("\ufffd")

    return TokenEnforcerTokenizerData(regular, decode, tokenizer.eos_token_id, False, vocab_size)


def lmfe_factory(lark_text: str, tokenizer: Any, vocab_size: int) -> Callable[[int], dict]:
    """lm-format-enforcer's `prefix_allowed_tokens_fn` over a regex parser."""
    from lmformatenforcer import RegexParser, TokenEnforcer

    data = _lmfe_tokenizer_data(tokenizer, vocab_size)
    parser = RegexParser(lark_to_regex(lark_text))

    def make(rows: int) -> dict:
        enforcer = TokenEnforcer(data, parser)  # it tells rows apart by their token prefixes

        def allowed(batch_id: int, sent: torch.Tensor) -> list[int]:
            return enforcer.get_allowed_tokens(sent.tolist()).allowed_tokens

        return {"prefix_allowed_tokens_fn": allowed}

    return make
