"""A non-recursive Lark grammar as one regular expression, for the peers that take a regex.

xgrammar's `compile_regex` and outlines-core's `Index` read a regex, not Lark. The call grammars
are regular (no recursion), so the grammar is written out as one regex by expanding every rule
where it is used, reading Lark's own parse of the text (`lark.load_grammar`), so `[x]`, `x?`,
`x*`, `x+` and `x ~ n..m` keep their meaning. The regex uses only what both peers read:
non-capturing groups, classes, `\\xNN` escapes and the usual quantifiers.
"""

from __future__ import annotations

import ast

from lark.lexer import Token
from lark.load_grammar import load_grammar
from lark.tree import Tree

__all__ = ["lark_to_regex", "RegexTooLarge"]

# characters with a meaning in a regex; everything else outside printable ASCII is \xNN
_META = set("\\.^$|?*+()[]{}")


class RegexTooLarge(ValueError):
    """The expanded regex is longer than the limit (rules are copied wherever they are used)."""


def _escape(text: str) -> str:
    out = []
    for ch in text:
        if ch in _META:
            out.append("\\" + ch)
        elif " " <= ch <= "~":
            out.append(ch)
        elif ord(ch) < 0x100:
            out.append(f"\\x{ord(ch):02x}")
        else:
            out.append(ch)  # both peers match non-ASCII characters by their UTF-8 bytes
    return "".join(out)


def _group(body: str) -> str:
    return f"(?:{body})"


class _Writer:
    def __init__(self, lark_text: str, limit: int):
        grammar, _ = load_grammar(lark_text, "<grammar>", [], False)
        self.rules = {str(name): tree for name, params, tree, _ in grammar.rule_defs}
        self.terms = {str(name): tree for name, (tree, _prio) in grammar.term_defs}
        self.done: dict[str, str] = {}
        self.limit = limit

    def symbol(self, name: str, stack: tuple[str, ...]) -> str:
        if name in stack:
            raise ValueError(f"rule {name} is recursive: the grammar is not regular as written")
        if name not in self.done:
            table = self.terms if name.isupper() else self.rules
            body = self.tree(table[name], stack + (name,))
            if len(body) > self.limit:
                raise RegexTooLarge(f"rule {name} alone expands to {len(body):,} regex characters")
            self.done[name] = body
        return self.done[name]

    def tree(self, node, stack: tuple[str, ...]) -> str:
        if isinstance(node, Token):  # a reference to a rule or terminal, or a literal
            if node.type in ("RULE", "TERMINAL"):
                return self.symbol(str(node), stack)
            if node.type == "STRING":
                return self.string(str(node))
            if node.type == "REGEXP":
                return self.pattern(str(node))
            raise ValueError(f"unexpected token {node.type} {node!r}")
        if not isinstance(node, Tree):  # NonTerminal / Terminal symbols
            return self.symbol(node.name, stack)
        kind = node.data
        if kind == "expansions":
            alts = [self.tree(c, stack) for c in node.children]
            return alts[0] if len(alts) == 1 else _group("|".join(alts))
        if kind == "expansion":
            return "".join(self.tree(c, stack) for c in node.children)
        if kind in ("value", "literal"):
            return self.tree(node.children[0], stack)
        if kind == "maybe":
            return _group(self.tree(node.children[0], stack)) + "?"
        if kind == "expr":
            body = _group(self.tree(node.children[0], stack))
            op = str(node.children[1])
            if op in ("*", "+", "?"):
                return body + op
            if op == "~":
                lo = int(node.children[2])
                hi = int(node.children[3]) if len(node.children) > 3 else lo
                return body + (f"{{{lo}}}" if lo == hi else f"{{{lo},{hi}}}")
            raise ValueError(f"unexpected operator {op!r}")
        raise ValueError(f"unexpected Lark construct {kind!r}")

    @staticmethod
    def string(literal: str) -> str:
        flags = ""
        while literal and literal[-1] != '"':
            flags, literal = literal[-1] + flags, literal[:-1]
        text = _escape(ast.literal_eval(literal))
        return _group(f"(?{flags}:{text})") if flags else text

    @staticmethod
    def pattern(literal: str) -> str:
        end = literal.rindex("/")
        body, flags = literal[1:end], literal[end + 1:]
        body = body.replace("\\/", "/")
        return _group(f"(?{flags}:{body})") if flags else _group(body)


def lark_to_regex(lark_text: str, *, start: str = "start", limit: int = 2_000_000) -> str:
    """The language of `start` in a non-recursive Lark grammar, as one regex (fully anchored use:
    the peers match the whole output). Raises RegexTooLarge past `limit` characters."""
    writer = _Writer(lark_text, limit)
    return writer.symbol(start, ())
