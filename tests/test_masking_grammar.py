"""The grammar → DFA compiler against Lark's own parser (Earley, complete dynamic lexer)."""

import itertools
import random

import lark
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from octogram.masking import GrammarCompileError
from octogram.masking.grammar import compile_lark

from masking_helpers import lark_accepts, sample_string


def lark_parser(text):
    return lark.Lark(text, parser="earley", lexer="dynamic_complete")


# random non-recursive grammars: rule i only refers to rules j > i
ATOMS = ['"a"', '"b"', '"ab"', '"("', '")"', '","', "/[0-9]+/", "/[a-c]/", "NUM", '"x"i', "/é|ü/",
         '"q".."s"', "STR"]


@st.composite
def grammars(draw):
    n = draw(st.integers(1, 4))
    rules = []
    for i in range(n):
        def item(depth=0):
            choices = ATOMS + [f"r{j}" for j in range(i + 1, n)]
            base = draw(st.sampled_from(choices))
            if depth < 1 and draw(st.booleans()):
                inner = " ".join(item(depth + 1) for _ in range(draw(st.integers(1, 2))))
                base = f"({inner})"
            return base + draw(st.sampled_from(["", "", "?", "*", "+", " ~ 2", " ~ 0..2"]))
        alts = [" ".join(item() for _ in range(draw(st.integers(1, 3))))
                for _ in range(draw(st.integers(1, 3)))]
        rules.append(f"r{i}: " + " | ".join(alts))
    return ("start: r0\n" + "\n".join(rules) + '\nNUM: /-?[0-9]+(\\.[0-9]+)?/\n'
            "%import common.ESCAPED_STRING -> STR\n")


@settings(max_examples=60, deadline=None)
@given(grammars(), st.integers(0, 2**32 - 1))
def test_dfa_strings_parse_with_lark(text, seed):
    dfa = compile_lark(text).dfa
    parser = lark_parser(text)
    rng = random.Random(seed)
    for _ in range(15):
        sample = sample_string(dfa, rng).decode()
        assert lark_accepts(parser, sample), (text, sample)


@settings(max_examples=40, deadline=None)
@given(grammars(), st.lists(st.text(alphabet='ab(),x0123é"\\', max_size=8), min_size=30, max_size=30))
def test_dfa_and_lark_agree_on_arbitrary_strings(text, samples):
    dfa = compile_lark(text).dfa
    parser = lark_parser(text)
    for s in samples:
        assert dfa.accepts(s.encode()) == lark_accepts(parser, s), (text, s)


JSON = r"""
?start: value
?value: object | array | ESCAPED_STRING | SIGNED_NUMBER | "true" | "false" | "null"
array: "[" [value ("," value)*] "]"
object: "{" [pair ("," pair)*] "}"
pair: ESCAPED_STRING ":" value
%import common.ESCAPED_STRING
%import common.SIGNED_NUMBER
%import common.WS
%ignore WS
"""


def nesting(text: str) -> int:
    depth = best = 0
    in_str = esc = False
    for ch in text:
        if in_str:
            esc, in_str = (not esc and ch == "\\"), in_str and not (ch == '"' and not esc)
        elif ch == '"':
            in_str = True
        elif ch in "[{":
            depth += 1
            best = max(best, depth)
        elif ch in "]}":
            depth -= 1
    return best


@pytest.mark.parametrize("depth", [1, 2, 4])
def test_recursion_unrolled_to_depth(depth):
    compiled = compile_lark(JSON, max_recursion_depth=depth)
    assert compiled.recursive_rules == ("value",)
    parser = lark_parser(JSON)
    rng = random.Random(depth)
    deepest = 0
    for _ in range(200):
        s = sample_string(compiled.dfa, rng, stop=0.3).decode()
        assert lark_accepts(parser, s), s
        deepest = max(deepest, nesting(s))
    # `value` nests `depth` times below the start: depth-1 levels of brackets inside the first
    assert deepest <= depth
    ok = "[" * (depth - 1) + "1" + "]" * (depth - 1)
    too_deep = "[" * depth + "1" + "]" * depth
    assert compiled.dfa.accepts(ok.encode())
    assert not compiled.dfa.accepts(too_deep.encode())
    assert compiled.dfa.accepts(b' { "a" : [ 1 , "x\\"y" ] } ') == (depth >= 3)


def test_mandatory_recursion_past_the_depth_is_an_error():
    with pytest.raises(GrammarCompileError, match="max_recursion_depth=2.*recursive rules: a"):
        compile_lark('start: a\na: "(" a ")"\n', max_recursion_depth=2)


@pytest.mark.parametrize("text, message", [
    ("start: foo\n", "foo"),                                  # undefined rule
    ('start: "a"\nstart: "b"\n', "start"),                     # duplicate rule
    ('start: A\nA: /(?=x)x/\n', "lookaround"),                 # unsupported regex, named
    ('start: "a" (\n', "grammar"),                              # syntax error
    ('s: "a"\n', "start"),                                     # no start rule
    ('start: _t{"a"}\n_t{x}: x\n', "template"),
    ('start: "a" X\n%declare X\n', "terminal X: a %declare'd terminal"),
    ('start: "a"\n%declare X\n%ignore X\n', "terminal X: a %declare'd terminal"),
])
def test_bad_grammars_are_clear_errors(text, message):
    with pytest.raises(GrammarCompileError, match=message):
        compile_lark(text)


def test_unsupported_regex_names_the_terminal():
    with pytest.raises(GrammarCompileError, match="terminal WORD") as err:
        compile_lark('start: WORD\nWORD: /^[a-z]+/\n')
    assert "anchor" in str(err.value)


# random grammars whose rules may refer to any rule, themselves included, with ignored spaces
@st.composite
def recursive_grammars(draw):
    n = draw(st.integers(1, 3))
    atoms = ['"a"', '"b"', '"("', '")"', "/[0-9]+/", '"ab"']
    rules = []
    for i in range(n):
        alts = []
        for _ in range(draw(st.integers(1, 3))):
            items = [draw(st.sampled_from(atoms + [f"r{j}" for j in range(n)]))
                     + draw(st.sampled_from(["", "", "?", "*"]))
                     for _ in range(draw(st.integers(1, 3)))]
            alts.append(" ".join(items))
        alts.append(draw(st.sampled_from(atoms)))  # every rule has a way out
        rules.append(f"r{i}: " + " | ".join(alts))
    ignore = draw(st.booleans())
    return ("start: r0\n" + "\n".join(rules) + "\n"
            + ('%ignore " "\n' if ignore else ""))


def unrolled(rules: dict[str, list[list[str]]], depth: int) -> str:
    """The documented recursion bound, written out as a plain Lark grammar: a cycle head (target
    of a back edge in a DFS from `start`) may be entered `depth` times; deeper references are an
    impossible terminal. An oracle independent of the compiler's call-stack construction."""
    heads, state = set(), {}

    def dfs(name):
        state[name] = 1
        for ref in sorted({w.rstrip("?*") for alt in rules[name] for w in alt} & set(rules)):
            if state.get(ref) == 1:
                heads.add(ref)
            elif ref not in state:
                dfs(ref)
        state[name] = 2

    dfs("start")
    out = ["NEVER: /(?!a)a/"]
    for name, alts in rules.items():
        for k in range(depth + 1):
            bodies = []
            for alt in alts:
                words = []
                for w in alt:
                    base, op = (w[:-1], w[-1]) if w[-1] in "?*" else (w, "")
                    if base in rules:
                        kk = k - 1 if base in heads else k
                        base = f"{base}_{kk}" if kk >= 0 else "NEVER"
                    words.append(base + op)
                bodies.append(" ".join(words))
            out.append(f"{name}_{k}: " + " | ".join(bodies))
    return f"start: start_{depth}\n" + "\n".join(out) + "\n"


@settings(max_examples=60, deadline=None)
@given(recursive_grammars(), st.integers(0, 3), st.integers(0, 2**32 - 1))
def test_recursion_bound_matches_the_unrolled_grammar(text, depth, seed):
    """The compiled DFA (on demand and minimized) equals Lark on the grammar unrolled by hand."""
    from octogram.masking.grammar import compile_parsed, parse_lark

    lines = [ln for ln in text.splitlines() if ln and not ln.startswith("%")]
    rules = {ln.split(":")[0]: [alt.split() for alt in ln.split(":", 1)[1].split(" | ")]
             for ln in lines}
    oracle = lark_parser(unrolled(rules, depth) + "\n".join(ln for ln in text.splitlines()
                                                              if ln.startswith("%")))
    try:
        eager = compile_lark(text, max_recursion_depth=depth).dfa
    except GrammarCompileError as exc:
        assert "max_recursion_depth" in str(exc)
        return
    parsed, _ = parse_lark(text)
    lazy = compile_parsed(parsed, start="start", max_recursion_depth=depth, lazy=True).dfa
    rng = random.Random(seed)
    for _ in range(25):
        for s in (sample_string(eager, rng, stop=0.3), sample_string(lazy, rng, stop=0.3),
                  bytes(rng.choice(b"ab()0 ") for _ in range(rng.randrange(9)))):
            expected = lark_accepts(oracle, s.decode())
            assert eager.accepts(s) == expected, (text, s)
            assert lazy.accepts(s) == expected, (text, s)


# -- lazily built terminals ---------------------------------------------------------------------

def _lazy(text, depth=3):
    from octogram.masking.grammar import _Compiler, parse_lark

    parsed, _ = parse_lark(text, ())
    compiler = _Compiler(parsed, "start", depth)
    return compiler.run(lazy=True).dfa, compiler.leaves


def _fresh_terminal_memos(monkeypatch):
    from octogram.masking import grammar

    monkeypatch.setattr(grammar, "_PATTERN_MEMO", {})
    monkeypatch.setattr(grammar, "_TERMINAL_MEMO", {})


@settings(max_examples=60, deadline=None)
@given(grammars())
def test_terminal_facts_are_those_of_the_built_dfa(text):
    """A lazily compiled grammar knows each terminal's emptiness and whether it holds "" before
    building its DFA; both must be what the DFA says."""
    from octogram.masking.automaton import LanguageFacts

    _, leaves = _lazy(text + 'EMPTY: /[^\\s\\S]/\nMAYBE: "x"? EMPTY?\n')
    for leaf in leaves:
        assert (leaf.is_empty, leaf.nullable) == LanguageFacts.of(leaf.dfa)


def test_a_lazy_compile_builds_only_the_terminals_it_reaches(monkeypatch):
    _fresh_terminal_memos(monkeypatch)
    text = ('start: "go(" ARG ")" | "stop"\nARG: /[a-z]{1,40}(-[0-9a-f]{8}){0,4}/\n'
            'NEVER: /[^\\s\\S]+/\nunused: NEVER\n')
    dfa, leaves = _lazy(text)
    assert len(leaves) == 4 and not any(leaf.built for leaf in leaves)
    dfa.ensure([0])                  # the first state reads only the two literals it starts with
    assert sum(leaf.built for leaf in leaves) == 2
    assert dfa.accepts(b"go(abc-0123abcd)") and not dfa.accepts(b"go()")
    assert all(leaf.built for leaf in leaves)


@pytest.mark.parametrize("text, message", [
    ('start: "a" | "b" B\nB: /(?=x)x/\n', "lookaround"),
    ('start: "a" | "b" B\nB: C\n', "used but not defined"),
    ('start: "a" | "b" B\nB: "x" B?\n', "[Rr]ecursi"),
    ('start: "a" | "b" B\nB: "x" C\nC: /x$/\n', "anchor"),
    ('start: "a" | "b" /a{20000}/\n', "too large"),
    ('start: "a" | "b" "ab".."c"\n', "single characters"),
])
def test_errors_of_unreached_terminals_are_raised_by_a_lazy_compile(monkeypatch, text, message):
    _fresh_terminal_memos(monkeypatch)
    with pytest.raises(GrammarCompileError, match=message):
        _lazy(text)
    with pytest.raises(GrammarCompileError, match=message):
        compile_lark(text)


def _moore(edges, accepting):
    """Plain Moore refinement: the reference for `refine`."""
    part = [int(a) for a in accepting]
    count = len(set(part))
    while True:
        sigs = {}
        part = [sigs.setdefault((part[q], tuple((s, part[t]) for s, t in row)), len(sigs))
                for q, row in enumerate(edges)]
        if len(sigs) == count:
            return part
        count = len(sigs)


@settings(max_examples=300, deadline=None)
@given(st.integers(1, 12).flatmap(lambda n: st.tuples(
    st.lists(st.lists(st.tuples(st.integers(0, 2), st.integers(0, n - 1)), max_size=3,
                      unique_by=lambda e: e[0]).map(sorted), min_size=n, max_size=n),
    st.lists(st.booleans(), min_size=n, max_size=n))))
def test_refine_equals_moore(automaton):
    from octogram.masking.automaton import refine

    edges, accepting = automaton
    part, count = refine(edges, accepting)
    expected = _moore(edges, accepting)
    assert count == len(set(expected)) and sorted(set(part)) == list(range(count))
    pairs = {(a, b) for a, b in zip(part, expected)}
    assert len(pairs) == count  # the same partition, up to the names of the classes


def test_a_terminal_that_fails_to_build_while_decoding_can_be_retried(monkeypatch):
    """A lazily built terminal may fail when first reached (a size limit); the state is not left
    looking like a dead end, and trying again gives the same error, then the DFA once it builds."""
    from octogram.masking import automaton

    _fresh_terminal_memos(monkeypatch)
    dfa, leaves = _lazy('start: "go(" ARG ")"\nARG: /[a-z]+/\n')
    real = automaton.NFA.to_dfa
    failures = []

    def flaky(self, frag, *args, **kwargs):
        if not failures:
            failures.append(1)
            raise GrammarCompileError("the DFA grew past 1 states")
        return real(self, frag, *args, **kwargs)

    monkeypatch.setattr(automaton.NFA, "to_dfa", flaky)
    for _ in range(2):
        try:
            assert dfa.accepts(b"go(abc)")
            break
        except GrammarCompileError as exc:
            assert "grew past" in str(exc)
    assert failures == [1] and dfa.accepts(b"go(xyz)") and not dfa.accepts(b"go()")


# %ignore: Lark matches an ignored terminal once where a terminal may start (the match
# `re.match` finds there), so `#ba` then `ab` is one comment, never a comment and two tokens
@pytest.mark.parametrize("text, alphabet", [
    ('start: "a" "b"\n%ignore /#[^\\n]*/\n', "ab#\n"),
    ('start: "a" "b"\n%ignore /#[^\\n]*/\n%ignore /\\n/\n', "ab#\n"),
    ('start: "a" "b"\n%ignore /x(ab)*/\n', "abx "),
    ('start: "a" "b"\n%ignore /a(b*c)?/\n', "abc"),
    ('start: "a"+ "b"\n%ignore /ba|b/\n', "ab"),      # alternatives in order
    ('start: "a"+ "b"\n%ignore /b+?/\n', "ab"),       # a lazy repetition: the shortest match
    ('start: "a" "b"*\nC: "/*" /(.|\\n)*?/ "*/"\n%ignore C\n', "ab/*"),
    ('start: "a" "b"\nWS: " " | "\\n"\nC: "#" /[^\\n]/*\n%ignore WS\n%ignore C\n', "ab#\n"),
])
def test_ignored_terminals_match_as_lark_matches_them(text, alphabet):
    parser = lark_parser(text)
    dfa = compile_lark(text).dfa
    for n in range(6):
        for chars in itertools.product(alphabet, repeat=n):
            s = "".join(chars)
            assert dfa.accepts(s.encode()) == lark_accepts(parser, s), (text, s)
    # no dead ends: a prefix that only an ignored match blocks is not offered
    reach = dfa.accepting.copy()
    for _ in range(dfa.num_states):
        reach |= ((dfa.trans >= 0) & reach[np.maximum(dfa.trans, 0)]).any(axis=1)
    assert reach.all()


def test_an_ignored_terminal_that_matches_nothing_is_an_error():
    with pytest.raises(GrammarCompileError, match="terminal E.*empty string"):
        compile_lark('start: "a"\nE: /x*/\n%ignore E\n')


def test_a_lark_alias_names_the_tree_not_a_rule():
    dfa = compile_lark('start: "a" b -> foo\n  | "b" -> bar\nb: "c" -> baz\n').dfa
    assert dfa.accepts(b"ac") and dfa.accepts(b"b") and not dfa.accepts(b"a")


@pytest.mark.parametrize("options, message", [
    ({"start": None}, "start must be a rule name"),
    ({"start": ""}, "start must be a rule name"),
    ({"max_recursion_depth": "3"}, "max_recursion_depth must be an integer"),
    ({"max_recursion_depth": -1}, "max_recursion_depth must be an integer"),
    ({"max_recursion_depth": 10**6}, "max_recursion_depth must be an integer in \\[0, 1000\\]"),
])
def test_bad_compile_options_are_clear_errors(options, message):
    from octogram.masking import compile_grammar

    with pytest.raises(GrammarCompileError, match=message):
        compile_lark('start: "a"\n', **options)
    with pytest.raises(GrammarCompileError, match=message):  # before the vocabulary is read
        compile_grammar('start: "a"\n', None, **options)


def test_the_deepest_recursion_bound_compiles():
    dfa = compile_lark('start: a\na: "(" a ")" | "x"\n', max_recursion_depth=1000).dfa
    assert dfa.accepts(b"(" * 999 + b"x" + b")" * 999)
    assert not dfa.accepts(b"(" * 1000 + b"x" + b")" * 1000)
