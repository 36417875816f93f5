"""A Lark grammar → the byte-level DFA of its character-level language.

Lark's own loader parses the grammar text (so `%import`, templates errors, line numbers and
the grammar syntax are exactly Lark's). Every terminal becomes a minimized byte DFA (regexes and
literals memoized across compiles); every rule becomes a small minimized DFA over symbols
(terminals and rule references). `stack_dfa.StackDFA` explores the byte DFA from these on demand;
an eager compile explores it completely and minimizes it once.

Semantics: the language is the set of strings that Lark's Earley parser with the complete dynamic
lexer (`lexer="dynamic_complete"`) accepts — terminals are matched as whole regular expressions;
before any terminal and at the end, an `%ignore` terminal is matched as Lark matches it: the one
match `re.match` finds there (`ignore.py`), not any string of its language. A grammar with
`%ignore` is always explored completely (also when compiled lazily): a prefix that only such a
match makes a dead end is found and removed there.

Recursion is bounded: a rule that heads a cycle of rule references (the first rule of the cycle
met from `start`, e.g. `value` in a JSON grammar) may nest at most `max_recursion_depth` times;
deeper nesting is not part of the compiled language. If that leaves the start rule with no string
at all, compiling fails with an error naming the recursive rules.
"""

from __future__ import annotations

import hashlib
import threading
from dataclasses import dataclass

from lark import Token, Tree
from lark.exceptions import GrammarError as LarkGrammarError
from lark.exceptions import LarkError
from lark.grammar import NonTerminal, Terminal
from lark import load_grammar as lark_loader
from lark.load_grammar import (PatternRE, PatternStr, PrepareLiterals, TerminalTreeToPattern,
                               load_grammar, nr_deepcopy_tree)

from .automaton import (DFA, NFA, Facts, LanguageFacts, Leaf, literal_dfa, refine, regex_fragment,
                        regex_tree_to_dfa)
from .stack_dfa import Grammar, RuleAutomaton, StackDFA
from .compile_errors import GrammarCompileError
from .ignore import Ignored
from .regex import literal as literal_tree
from .regex import normalize, parse_regex

DEFAULT_MAX_RECURSION_DEPTH = 5
MAX_RECURSION_DEPTH = 1000  # every level is a copy of the recursive rules' states
COMPILER_VERSION = "octogram-fsm-3"  # 3: %ignore matched as Lark matches it

# Lark's common ESCAPED_STRING body is `.*?` followed by a lookbehind; as whole-string regexes
# the two together mean "no unescaped quote, no newline", which is this:
_LARK_STRING_INNER = ("/.*?/", "/(?<!\\\\)(\\\\\\\\)*?/")
_ESCAPED_STRING_BODY = r'(?:[^"\\\n]|\\[^\n])*'


@dataclass
class CompiledGrammar:
    dfa: DFA | StackDFA
    recursive_rules: tuple[str, ...]


def lark_literal(token: Token) -> PatternStr | PatternRE:
    """A string or regex literal of the grammar as Lark reads it (flags, escapes). Lark offers
    this only as its private `_literal_to_pattern`: this is the one place that calls it."""
    return lark_loader._literal_to_pattern(token)


def _wrap_lark_error(exc: Exception) -> GrammarCompileError:
    text = str(exc).strip().splitlines()
    return GrammarCompileError(" ".join(line.strip() for line in text if line.strip())[:500],
                               where="grammar")


def check_options(start: str, max_recursion_depth: int) -> None:
    """The compile options, checked before any work (a bad one is a GrammarCompileError)."""
    if not isinstance(start, str) or not start:
        raise GrammarCompileError(f"start must be a rule name (a non-empty str), got {start!r}",
                                  where="compile_grammar")
    if isinstance(max_recursion_depth, bool) or not isinstance(max_recursion_depth, int) \
            or not 0 <= max_recursion_depth <= MAX_RECURSION_DEPTH:
        raise GrammarCompileError(f"max_recursion_depth must be an integer in [0, "
                                  f"{MAX_RECURSION_DEPTH}], got {max_recursion_depth!r}",
                                  where="compile_grammar")


def compile_lark(text: str, *, start: str = "start", import_paths=(),
                 max_recursion_depth: int = DEFAULT_MAX_RECURSION_DEPTH) -> CompiledGrammar:
    check_options(start, max_recursion_depth)
    grammar, _ = parse_lark(text, import_paths)
    return compile_parsed(grammar, start=start, max_recursion_depth=max_recursion_depth)


def compile_parsed(grammar, *, start: str, max_recursion_depth: int,
                   lazy: bool = False) -> CompiledGrammar:
    """`lazy=True` returns a `StackDFA` whose states are computed on use (a grammar with `%ignore`
    excepted); otherwise the complete minimized `DFA`."""
    return _Compiler(grammar, start, max_recursion_depth).run(lazy)


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
        self.term_memo: dict[str, DFA] = {}
        self.term_facts: dict[str, Facts] = {}
        self.term_stack: list[str] = []
        self._find_cycles()
        self.ignored = None
        if self.ignore:
            for name in self.ignore:
                if name not in self.terms:
                    raise GrammarCompileError(f"%ignore names unknown terminal {name}", where="grammar")
            self.ignored = Ignored([(n, self.ignore_tree(n)) for n in dict.fromkeys(self.ignore)])
        self.rule_ids: dict[str, int] = {}
        self.leaves: list[Leaf] = []
        self.leaf_ids: dict[tuple, int] = {}

    # -- recursion structure -------------------------------------------------------------------
    def _refs(self, tree) -> set[str]:
        out = set()
        stack = [tree]
        while stack:
            node = stack.pop()
            if isinstance(node, Tree):
                # `a -> name` names the tree Lark builds; `name` is no rule
                stack.extend(node.children[:1] if node.data == "alias" else node.children)
            elif isinstance(node, NonTerminal):
                if node.name not in self.rules:
                    raise GrammarCompileError(f"rule {node.name!r} is used but not defined",
                                              where="grammar")
                out.add(node.name)
        return out

    def _find_cycles(self) -> None:
        """Heads of cycles: targets of back edges in a DFS from the start rule. Every cycle of
        rule references enters a head, so bounding how often heads nest bounds the recursion."""
        self.refs = {name: self._refs(tree) for name, tree in self.rules.items()}
        self.heads: set[str] = set()
        state: dict[str, int] = {}  # 1 = on stack, 2 = done
        stack = [(self.start, iter(sorted(self.refs[self.start])))]
        state[self.start] = 1
        self.reachable = [self.start]
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
                self.reachable.append(child)
                stack.append((child, iter(sorted(self.refs[child]))))

    # -- compile -------------------------------------------------------------------------------
    def run(self, lazy: bool = False) -> CompiledGrammar:
        self.rule_ids = {name: i for i, name in enumerate(self.reachable)}
        automata = [self.rule_automaton(name) for name in self.reachable]
        grammar = Grammar(automata, list(self.reachable), self.leaves,
                          {self.rule_ids[h] for h in self.heads}, 0, self.max_depth, self.ignored)
        if not grammar.productive(0, grammar.max_depth):
            if self.heads:
                raise GrammarCompileError(
                    f"no string remains within max_recursion_depth={self.max_depth} "
                    f"(recursive rules: {', '.join(sorted(self.heads))}); raise the depth",
                    where=f"rule {self.start}")
            raise GrammarCompileError("the grammar accepts no string", where=f"rule {self.start}")
        dfa = StackDFA(grammar)
        if not lazy or self.ignored is not None:
            dfa = dfa.explore()
        return CompiledGrammar(dfa, tuple(sorted(self.heads)))

    def rule_automaton(self, name: str) -> RuleAutomaton:
        nfa = NFA()
        return symbol_dfa(nfa, self.rule_fragment(nfa, self.rules[name], name))

    def leaf(self, key: tuple, make, facts) -> int:
        """The id of a terminal occurrence's byte DFA. The DFA is made on first use; `facts()`
        checks the terminal and says what its language is like."""
        got = self.leaf_ids.get(key)
        if got is None:
            got = len(self.leaves)
            self.leaves.append(Leaf(make, facts()))
            self.leaf_ids[key] = got
        return got

    def ignore_tree(self, name: str):
        """An ignored terminal's regex as Lark joins it (the order of alternatives is Lark's, and
        decides which match `re` picks), parsed with its lazy repetitions marked."""
        where = f"terminal {name}"
        self._check_terminal(name)
        try:
            pat = (PrepareLiterals() * TerminalTreeToPattern()).transform(nr_deepcopy_tree(self.terms[name]))
        except (LarkGrammarError, LarkError) as exc:
            raise GrammarCompileError(str(exc), where=where) from None
        if isinstance(pat, PatternStr):
            return literal_tree(pat.value, ignore_case="i" in pat.flags)
        return parse_regex(pat.value, "".join(sorted(pat.flags)), where=where, keep_lazy=True)

    def rule_fragment(self, nfa: NFA, node, rule: str):
        """A rule body as an NFA over symbols: leaf ids (terminal occurrences) and ~rule ids."""
        return self._fragment(
            nfa, node, f"rule {rule}",
            atom=lambda key, make, facts: nfa.fragment_symbol(self.leaf(key, make, facts)),
            rule_ref=lambda name: nfa.fragment_symbol(~self.rule_ids[name]))

    def _fragment(self, nfa, node, where: str, atom, rule_ref):
        """The walk of Lark's tree shared by rules and terminals, built with `nfa` (an `NFA`, or
        `LanguageFacts`): `atom(key, make, facts)` is the fragment of a terminal piece (`make()`
        builds its byte DFA, `facts()` says what its language is like), `rule_ref(name)` of a
        rule."""
        if isinstance(node, NonTerminal):
            return rule_ref(node.name)
        if isinstance(node, Terminal):
            return atom(("terminal", node.name), lambda: self.terminal(node.name),
                        lambda: self.terminal_facts(node.name))
        if not isinstance(node, Tree):
            raise GrammarCompileError(f"unexpected grammar element {node!r}", where=where)
        kind = node.data
        kids = node.children
        walk = lambda k: self._fragment(nfa, k, where, atom, rule_ref)  # noqa: E731
        if kind == "expansions":
            return nfa.union([walk(k) for k in kids])
        if kind == "expansion":
            if self._is_lark_string_inner(kids):
                return atom(("escaped-string-body",), _escaped_string_body, lambda: (False, True))
            return nfa.concat([walk(k) for k in kids])
        if kind in ("alias", "value"):
            return walk(kids[0])
        if kind == "maybe":
            return nfa.optional(walk(kids[0]))
        if kind == "literal":
            token = kids[0]
            return atom(("literal", token.type, token.value), lambda: self.pattern(token, where),
                        lambda: self.pattern_facts(token, where))
        if kind == "range":
            lo, hi = (lark_literal(k).value for k in kids)
            return atom(("range", lo, hi), lambda: _range_dfa(lo, hi, where),
                        lambda: LanguageFacts.fragment_codepoints(_range_of(lo, hi, where)))
        if kind == "expr":
            lo, hi = self._repetition(kids, where)
            return nfa.repeat(lambda: walk(kids[0]), lo, hi)
        if kind == "template_usage":
            raise GrammarCompileError("rule templates are not supported", where=where)
        raise GrammarCompileError(f"unsupported grammar construct {kind!r}", where=where)

    @staticmethod
    def _repetition(kids, where: str) -> tuple[int, int | None]:
        op = kids[1]
        if op.type == "OP":
            return {"?": (0, 1), "*": (0, None), "+": (1, None)}[op.value]
        if op.type == "TILDE":
            lo = int(kids[2])
            hi = int(kids[3]) if len(kids) > 3 else lo
            if hi < lo:
                raise GrammarCompileError(f"bad repetition ~ {lo}..{hi}", where=where)
            if hi > 10_000:
                raise GrammarCompileError(f"repetition ~ {lo}..{hi} is too large to unroll",
                                          where=where)
            return lo, hi
        raise GrammarCompileError(f"unsupported operator {op.value!r}", where=where)

    def _check_terminal(self, name: str) -> None:
        if name not in self.terms:
            raise GrammarCompileError(f"terminal {name!r} is used but not defined", where="grammar")
        if self.terms[name] is None:
            raise GrammarCompileError("a %declare'd terminal has no pattern to match (a custom "
                                      "lexer makes its tokens); define it to use it here",
                                      where=f"terminal {name}")
        if name in self.term_stack:
            raise GrammarCompileError("terminals cannot be recursive", where=f"terminal {name}")

    def terminal(self, name: str) -> DFA:
        got = self.term_memo.get(name)
        if got is None:
            self._check_terminal(name)
            key = self._terminal_key(name)
            got = _TERMINAL_MEMO.get(key)
            if got is None:
                self.term_stack.append(name)
                try:
                    nfa = NFA()
                    got = nfa.to_dfa(self.fragment(nfa, self.terms[name], name))
                finally:
                    self.term_stack.pop()
                _remember(_TERMINAL_MEMO, key, got)
            self.term_memo[name] = got
        return got

    def terminal_facts(self, name: str) -> Facts:
        """`LanguageFacts` of a terminal, checking its definition as `terminal` would, without
        building its DFA (unless it is already built)."""
        got = self.term_facts.get(name)
        if got is None:
            self._check_terminal(name)
            dfa = self.term_memo.get(name) or _TERMINAL_MEMO.get(self._terminal_key(name))
            if dfa is not None:
                got = LanguageFacts.of(dfa)
            else:
                self.term_stack.append(name)
                try:
                    got = self.fragment(LanguageFacts, self.terms[name], name)
                finally:
                    self.term_stack.pop()
            self.term_facts[name] = got
        return got

    def _terminal_key(self, name: str) -> str:
        """The terminal's definition with the definitions of the terminals it uses: equal keys
        mean equal languages, in any grammar (the cross-compile memo's key)."""
        parts, todo, seen = [], [name], set()
        while todo:
            n = todo.pop()
            if n in seen:
                continue
            if n not in self.terms:
                raise GrammarCompileError(f"terminal {n!r} is used but not defined", where="grammar")
            seen.add(n)
            tree = self.terms[n]
            parts.append(f"{n}={tree!r}")
            todo.extend(sorted({t.name for t in tree.scan_values(lambda v: isinstance(v, Terminal))}))
        return hashlib.sha256("\n".join(parts).encode()).hexdigest()

    def pattern(self, token: Token, where: str) -> DFA:
        pat, key = self._pattern_key(token, where)
        got = _PATTERN_MEMO.get(key)
        if got is None:
            got = _plain_literal(pat)
            if got is None:
                got = regex_tree_to_dfa(self._pattern_tree(pat, token, where), where=where)
            _remember(_PATTERN_MEMO, key, got)
        return got

    def pattern_facts(self, token: Token, where: str) -> Facts:
        """`LanguageFacts` of a literal or regex, checking it as `pattern` would."""
        pat, key = self._pattern_key(token, where)
        got = _PATTERN_MEMO.get(key)
        if got is not None:
            return LanguageFacts.of(got)
        if _plain_literal_bytes(pat) is not None:
            return False, pat.value == ""
        return regex_fragment(LanguageFacts, self._pattern_tree(pat, token, where), where)

    @staticmethod
    def _pattern_key(token: Token, where: str) -> tuple:
        try:
            pat = lark_literal(token)
        except (LarkGrammarError, LarkError) as exc:
            raise GrammarCompileError(str(exc), where=where) from None
        return pat, (type(pat).__name__, pat.value, tuple(sorted(pat.flags)))

    @staticmethod
    def _pattern_tree(pat, token: Token, where: str):
        if isinstance(pat, PatternStr):
            return literal_tree(pat.value, ignore_case="i" in pat.flags)
        assert isinstance(pat, PatternRE)
        return parse_regex(pat.value, "".join(sorted(pat.flags)), where=f"{where}, {token.value}")

    def fragment(self, nfa, node, term: str):
        """A terminal's definition as a byte NFA, or as its `LanguageFacts` when `nfa` is that
        class (terminals are regular: no rules inside)."""
        def no_rules(name: str):
            raise GrammarCompileError("a terminal cannot use a rule", where=f"terminal {term}")

        if nfa is LanguageFacts:
            atom = lambda key, make, facts: facts()  # noqa: E731
        else:
            atom = lambda key, make, facts: nfa.embed(make())  # noqa: E731
        return self._fragment(nfa, node, f"terminal {term}", atom=atom, rule_ref=no_rules)

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


def _plain_literal_bytes(pat) -> bytes | None:
    """A case-sensitive string literal's bytes; None for anything else (and for text UTF-8
    cannot encode, which the general path reports)."""
    if not isinstance(pat, PatternStr) or "i" in pat.flags:
        return None
    try:
        return pat.value.encode("utf-8")
    except UnicodeEncodeError:
        return None


def _plain_literal(pat) -> DFA | None:
    """A case-sensitive string literal's DFA, built directly; None for anything else."""
    data = _plain_literal_bytes(pat)
    return None if data is None else literal_dfa(data)


# compiled regexes, literals and terminals, shared by every compile in the process (STRING, INT,
# function names...); DFAs are never modified after they are built
_PATTERN_MEMO: dict[tuple, DFA] = {}
_TERMINAL_MEMO: dict[str, DFA] = {}
_MEMO_SIZE = 4096


_MEMO_LOCK = threading.Lock()  # lazily compiled FSMs build terminals while decoding, in any thread


def _remember(memo: dict, key, value) -> None:
    with _MEMO_LOCK:
        if len(memo) >= _MEMO_SIZE:
            memo.pop(next(iter(memo)))  # the oldest
        memo[key] = value


def _escaped_string_body() -> DFA:
    return regex_tree_to_dfa(parse_regex(_ESCAPED_STRING_BODY))


def _range_of(lo: str, hi: str, where: str):
    if len(lo) != 1 or len(hi) != 1:
        raise GrammarCompileError("a range needs single characters", where=where)
    return normalize([(ord(lo), ord(hi))])


def _range_dfa(lo: str, hi: str, where: str) -> DFA:
    nfa = NFA()
    return nfa.to_dfa(nfa.fragment_codepoints(_range_of(lo, hi, where)))


def symbol_dfa(nfa: NFA, frag: tuple[int, int]) -> RuleAutomaton:
    """Determinize and minimize an NFA whose edges carry one symbol each (lo == hi)."""
    start, end = frag
    first = nfa.closure(start, end)
    index, sets, edges = {first: 0}, [first], []
    i = 0
    while i < len(sets):
        moves: dict[int, set] = {}
        for s in sets[i]:
            for sym, _, t in nfa.edges[s]:
                moves.setdefault(sym, set()).add(t)
        i += 1
        row = []
        for sym in sorted(moves):
            target = frozenset().union(*(nfa.closure(t, end) for t in moves[sym]))
            d = index.get(target)
            if d is None:
                d = index[target] = len(sets)
                sets.append(target)
            row.append((sym, d))
        edges.append(row)
    accepting = [end in s for s in sets]
    part, _ = refine(edges, accepting)  # states with equal futures merge (shared suffixes)
    order = {part[0]: 0}
    queue = [0]
    rep: dict[int, int] = {}
    for s in range(len(sets)):
        rep.setdefault(part[s], s)
    qi = 0
    while qi < len(queue):
        s = queue[qi]
        qi += 1
        for _, t in edges[s]:
            if part[t] not in order:
                order[part[t]] = len(queue)
                queue.append(rep[part[t]])
    return RuleAutomaton([[(sym, order[part[t]]) for sym, t in edges[s]] for s in queue],
                         [accepting[s] for s in queue])
