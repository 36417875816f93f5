"""A Lark grammar → one byte-level DFA of its character-level language.

Lark's own loader parses the grammar text (so `%import`, templates errors, line numbers and
the grammar syntax are exactly Lark's). Rules and terminals then compile bottom-up: every
terminal and every rule becomes a minimized DFA, memoized, and is embedded where it is used.

Semantics: the language is the set of strings that Lark's Earley parser with the complete dynamic
lexer (`lexer="dynamic_complete"`) accepts — terminals are matched as whole regular expressions,
`%ignore` terminals may appear before any terminal and at the end.

Recursion is unrolled: a rule that heads a cycle of rule references (the first rule of the cycle
met from `start`, e.g. `value` in a JSON grammar) may nest at most `max_recursion_depth` times;
deeper nesting is not part of the compiled language. If that leaves the start rule with no string
at all, compiling fails with an error naming the recursive rules.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass

from lark import Token, Tree
from lark.exceptions import GrammarError as LarkGrammarError
from lark.exceptions import LarkError
from lark.grammar import NonTerminal, Terminal
from lark.load_grammar import PatternRE, PatternStr, _literal_to_pattern, load_grammar

from .automaton import DFA, NFA, regex_tree_to_dfa
from .errors import GrammarCompileError
from .regex import literal as literal_tree
from .regex import normalize, parse_regex

DEFAULT_MAX_RECURSION_DEPTH = 5
COMPILER_VERSION = "octogram-fsm-1"

# Lark's common ESCAPED_STRING body is `.*?` followed by a lookbehind; as whole-string regexes
# the two together mean "no unescaped quote, no newline", which is this:
_LARK_STRING_INNER = ("/.*?/", "/(?<!\\\\)(\\\\\\\\)*?/")
_ESCAPED_STRING_BODY = r'(?:[^"\\\n]|\\[^\n])*'


@dataclass
class CompiledGrammar:
    dfa: DFA
    source_hash: str  # the grammar text, its imports and the options, hashed
    recursive_rules: tuple[str, ...]
    truncated: bool  # True when the depth bound removed some deeper nesting


def _wrap_lark_error(exc: Exception) -> GrammarCompileError:
    text = str(exc).strip().splitlines()
    return GrammarCompileError(" ".join(line.strip() for line in text if line.strip())[:500],
                               where="grammar")


def compile_lark(text: str, *, start: str = "start", import_paths=(),
                 max_recursion_depth: int = DEFAULT_MAX_RECURSION_DEPTH) -> CompiledGrammar:
    if max_recursion_depth < 0:
        raise GrammarCompileError("max_recursion_depth must be >= 0", where="compile_grammar")
    grammar, used_files = parse_lark(text, import_paths)
    return compile_parsed(grammar, grammar_hash(text, used_files, start, max_recursion_depth),
                          start=start, max_recursion_depth=max_recursion_depth)


def compile_parsed(grammar, source_hash: str, *, start: str, max_recursion_depth: int) -> CompiledGrammar:
    compiled = _Compiler(grammar, start, max_recursion_depth).run()
    compiled.source_hash = source_hash
    return compiled


def grammar_hash(text: str, used_files: dict, start: str, max_recursion_depth: int) -> str:
    h = hashlib.sha256()
    for part in (COMPILER_VERSION, text, start, str(max_recursion_depth),
                 *sorted(f"{k}:{v}" for k, v in used_files.items())):
        h.update(part.encode())
        h.update(b"\0")
    return h.hexdigest()


def parse_lark(text: str, import_paths=()):
    """Lark's own reading of the grammar text, with its errors turned into ours."""
    if not isinstance(text, str):
        raise GrammarCompileError(f"the grammar must be Lark text (str), not {type(text).__name__}",
                                  where="compile_grammar")
    try:
        return load_grammar(text, "<grammar>", list(import_paths), False)
    except (LarkGrammarError, LarkError) as exc:
        raise _wrap_lark_error(exc) from None
    except (IOError, ImportError) as exc:
        raise GrammarCompileError(f"cannot resolve an %import: {exc}", where="grammar") from None


class _Compiler:
    def __init__(self, grammar, start: str, max_depth: int):
        self.rules = {}
        for name, params, tree, _options in grammar.rule_defs:
            if params:
                raise GrammarCompileError("rule templates are not supported", where=f"rule {name}")
            self.rules[str(name)] = tree
        self.terms = {str(name): tree for name, (tree, _prio) in grammar.term_defs}
        self.ignore = [str(x) for x in grammar.ignore]
        self.start = start
        self.max_depth = max_depth
        if start not in self.rules:
            raise GrammarCompileError(f"no rule named {start!r} (the start rule)", where="grammar")
        self.rule_memo: dict[tuple[str, int | None], DFA] = {}
        self.term_memo: dict[str, DFA] = {}
        self.pattern_memo: dict[tuple, DFA] = {}
        self.term_stack: list[str] = []
        self.truncated = False
        self._find_cycles()
        self.ignore_dfa = None
        if self.ignore:
            for name in self.ignore:
                if name not in self.terms:
                    raise GrammarCompileError(f"%ignore names unknown terminal {name}", where="grammar")
            nfa = NFA()
            frag = nfa.union([nfa.embed(self.terminal(n)) for n in self.ignore])
            self.ignore_dfa = nfa.to_dfa(nfa.star(frag))

    # -- recursion structure -------------------------------------------------------------------
    def _refs(self, tree) -> set[str]:
        out = set()
        stack = [tree]
        while stack:
            node = stack.pop()
            if isinstance(node, Tree):
                stack.extend(node.children)
            elif isinstance(node, NonTerminal):
                if node.name not in self.rules:
                    raise GrammarCompileError(f"rule {node.name!r} is used but not defined",
                                              where="grammar")
                out.add(node.name)
        return out

    def _find_cycles(self) -> None:
        """Heads of cycles: targets of back edges in a DFS from the start rule."""
        self.refs = {name: self._refs(tree) for name, tree in self.rules.items()}
        self.heads: set[str] = set()
        state: dict[str, int] = {}  # 1 = on stack, 2 = done
        stack = [(self.start, iter(sorted(self.refs[self.start])))]
        state[self.start] = 1
        while stack:
            name, children = stack[-1]
            child = next(children, None)
            if child is None:
                state[name] = 2
                stack.pop()
                continue
            if state.get(child) == 1:
                self.heads.add(child)
            elif child not in state:
                state[child] = 1
                stack.append((child, iter(sorted(self.refs[child]))))
        # rules whose DFA depends on the remaining depth: those that reach a head
        self.depth_dependent: set[str] = set()
        changed = True
        while changed:
            changed = False
            for name, refs in self.refs.items():
                if name not in self.depth_dependent and (refs & self.heads or refs & self.depth_dependent):
                    self.depth_dependent.add(name)
                    changed = True
        self.depth_dependent |= self.heads

    # -- compile -------------------------------------------------------------------------------
    def run(self) -> CompiledGrammar:
        dfa = self.rule(self.start, self.max_depth)
        if self.ignore_dfa is not None:
            nfa = NFA()
            dfa = nfa.to_dfa(nfa.concat([nfa.embed(dfa), nfa.embed(self.ignore_dfa)]))
        if dfa.is_empty:
            if self.heads:
                raise GrammarCompileError(
                    f"no string remains within max_recursion_depth={self.max_depth} "
                    f"(recursive rules: {', '.join(sorted(self.heads))}); raise the depth",
                    where=f"rule {self.start}")
            raise GrammarCompileError("the grammar accepts no string", where=f"rule {self.start}")
        return CompiledGrammar(dfa, "", tuple(sorted(self.heads)), self.truncated)

    def rule(self, name: str, depth: int) -> DFA:
        key = (name, depth if name in self.depth_dependent else None)
        got = self.rule_memo.get(key)
        if got is None:
            nfa = NFA()
            got = nfa.to_dfa(self.fragment(nfa, self.rules[name], depth, in_rule=name))
            self.rule_memo[key] = got
        return got

    def terminal(self, name: str) -> DFA:
        got = self.term_memo.get(name)
        if got is None:
            if name not in self.terms:
                raise GrammarCompileError(f"terminal {name!r} is used but not defined", where="grammar")
            if name in self.term_stack:
                raise GrammarCompileError("terminals cannot be recursive", where=f"terminal {name}")
            self.term_stack.append(name)
            nfa = NFA()
            got = nfa.to_dfa(self.fragment(nfa, self.terms[name], 0, in_rule=None, term=name))
            self.term_stack.pop()
            self.term_memo[name] = got
        return got

    def pattern(self, token: Token, where: str) -> DFA:
        try:
            pat = _literal_to_pattern(token)
        except (LarkGrammarError, LarkError) as exc:
            raise GrammarCompileError(str(exc), where=where) from None
        key = (type(pat).__name__, pat.value, tuple(sorted(pat.flags)))
        got = self.pattern_memo.get(key)
        if got is None:
            if isinstance(pat, PatternStr):
                tree = literal_tree(pat.value, ignore_case="i" in pat.flags)
            else:
                assert isinstance(pat, PatternRE)
                tree = parse_regex(pat.value, "".join(sorted(pat.flags)), where=f"{where}, {token.value}")
            got = regex_tree_to_dfa(tree, where=where)
            self.pattern_memo[key] = got
        return got

    def _embed_token(self, nfa: NFA, dfa: DFA, in_rule: str | None):
        """A terminal occurrence inside a rule; ignored terminals may precede it."""
        frag = nfa.embed(dfa)
        if in_rule is not None and self.ignore_dfa is not None:
            frag = nfa.concat([nfa.embed(self.ignore_dfa), frag])
        return frag

    def fragment(self, nfa: NFA, node, depth: int, in_rule: str | None, term: str | None = None):
        where = f"rule {in_rule}" if in_rule else f"terminal {term}"
        if isinstance(node, NonTerminal):
            if in_rule is None:
                raise GrammarCompileError("a terminal cannot use a rule", where=where)
            child_depth = depth
            if node.name in self.heads:
                if depth == 0:
                    self.truncated = True
                    return nfa.fragment_nothing()
                child_depth = depth - 1
            return nfa.embed(self.rule(node.name, child_depth))
        if isinstance(node, Terminal):
            return self._embed_token(nfa, self.terminal(node.name), in_rule)
        if not isinstance(node, Tree):
            raise GrammarCompileError(f"unexpected grammar element {node!r}", where=where)
        kind = node.data
        kids = node.children
        if kind == "expansions":
            return nfa.union([self.fragment(nfa, k, depth, in_rule, term) for k in kids])
        if kind == "expansion":
            if self._is_lark_string_inner(kids):
                return nfa.embed(regex_tree_to_dfa(parse_regex(_ESCAPED_STRING_BODY)))
            return nfa.concat([self.fragment(nfa, k, depth, in_rule, term) for k in kids])
        if kind == "alias":
            return self.fragment(nfa, kids[0], depth, in_rule, term)
        if kind == "value":
            return self.fragment(nfa, kids[0], depth, in_rule, term)
        if kind == "maybe":
            return nfa.optional(self.fragment(nfa, kids[0], depth, in_rule, term))
        if kind == "literal":
            return self._embed_token(nfa, self.pattern(kids[0], where), in_rule)
        if kind == "range":
            lo, hi = (_literal_to_pattern(k).value for k in kids)
            if len(lo) != 1 or len(hi) != 1:
                raise GrammarCompileError("a range needs single characters", where=where)
            sub = NFA()
            dfa = sub.to_dfa(sub.fragment_codepoints(normalize([(ord(lo), ord(hi))])))
            return self._embed_token(nfa, dfa, in_rule)
        if kind == "expr":
            inner = kids[0]
            op = kids[1]
            make = lambda: self.fragment(nfa, inner, depth, in_rule, term)  # noqa: E731
            if op.type == "OP":
                lo, hi = {"?": (0, 1), "*": (0, None), "+": (1, None)}[op.value]
            elif op.type == "TILDE":
                lo = int(kids[2])
                hi = int(kids[3]) if len(kids) > 3 else lo
                if hi < lo:
                    raise GrammarCompileError(f"bad repetition ~ {lo}..{hi}", where=where)
                if hi > 10_000:
                    raise GrammarCompileError(f"repetition ~ {lo}..{hi} is too large to unroll",
                                              where=where)
            else:
                raise GrammarCompileError(f"unsupported operator {op.value!r}", where=where)
            return nfa.repeat(make, lo, hi)
        if kind == "template_usage":
            raise GrammarCompileError("rule templates are not supported", where=where)
        raise GrammarCompileError(f"unsupported grammar construct {kind!r}", where=where)

    @staticmethod
    def _single_literal(node):
        while isinstance(node, Tree) and node.data in ("value", "expansions", "expansion") \
                and len(node.children) == 1:
            node = node.children[0]
        if isinstance(node, Tree) and node.data == "literal":
            return node.children[0].value
        return None

    def _is_lark_string_inner(self, kids) -> bool:
        return len(kids) == 2 and tuple(self._single_literal(k) for k in kids) == _LARK_STRING_INNER
