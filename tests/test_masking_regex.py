"""The regex compiler against Python's own `re`, on generated patterns and strings."""

import re

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from octogram.masking import GrammarCompileError, automaton
from octogram.masking.automaton import LanguageFacts, literal_dfa, regex_fragment, regex_tree_to_dfa
from octogram.masking.regex import literal, parse_regex, utf8_sequences

ALPHABET = "ab\"\\\n.-09éあ😀"


def _atoms():
    return st.sampled_from(["a", "b", ".", "[ab]", "[^a]", "[0-9]", r"\d", r"\w", r"\s", r"\.",
                            "é", "[à-ÿ]", "[^\"\\\\\n]", r"\\.", "(?:ab)", "(a|b)", "[a-c0-9_]"])


@st.composite
def patterns(draw, depth=0, atoms=None):
    atoms = atoms if atoms is not None else _atoms()
    if depth > 2:
        return draw(atoms)
    kind = draw(st.sampled_from(["atom", "cat", "alt", "rep"]))
    if kind == "atom":
        return draw(atoms)
    if kind == "cat":
        return "".join(draw(st.lists(patterns(depth + 1, atoms), min_size=1, max_size=3)))
    if kind == "alt":
        return "(?:" + "|".join(draw(st.lists(patterns(depth + 1, atoms), min_size=2, max_size=3))) + ")"
    q = draw(st.sampled_from(["*", "+", "?", "{2}", "{1,3}", "{0,2}", "*?", "{2,}", "{0}"]))
    return "(?:" + draw(patterns(depth + 1, atoms)) + ")" + q


@settings(max_examples=150, deadline=None)
@given(patterns(), st.lists(st.text(alphabet=ALPHABET, max_size=6), min_size=20, max_size=20))
def test_regex_dfa_agrees_with_re(pattern, texts):
    dfa = regex_tree_to_dfa(parse_regex(pattern))
    rx = re.compile(pattern)
    for text in texts:
        assert dfa.accepts(text.encode()) == bool(rx.fullmatch(text)), (pattern, text)


@settings(max_examples=100, deadline=None)
@given(st.integers(0, 0x10FFFF), st.integers(0, 0x10FFFF))
def test_utf8_sequences_cover_exactly_the_range(a, b):
    lo, hi = min(a, b), min(max(a, b), min(a, b) + 3000)
    seqs = utf8_sequences(lo, hi)
    for cp in list(range(lo, min(hi, lo + 40) + 1)) + [hi]:
        if 0xD800 <= cp <= 0xDFFF:
            continue
        enc = chr(cp).encode()
        assert any(len(s) == len(enc) and all(x <= y <= z for (x, z), y in zip(s, enc)) for s in seqs)
    for s in seqs:  # nothing outside the range
        low = bytes(x for x, _ in s).decode()
        high = bytes(z for _, z in s).decode()
        assert lo <= ord(low) <= hi and lo <= ord(high) <= hi


@pytest.mark.parametrize("pattern, what", [
    ("^ab", "anchor"), ("a$", "anchor"), (r"\bfoo", "anchor"), ("(?=a)b", "lookaround"),
    ("(?<!a)b", "lookaround"), (r"(a)\1", "backreference"), ("(?i)a", "inline flags"),
    ("a++", "possessive"), ("[ab", "unterminated"), ("(ab", "missing ')'"), ("a**", "multiple repeat"),
])
def test_unsupported_regex_is_a_clear_error(pattern, what):
    with pytest.raises(GrammarCompileError, match=re.escape(what)) as err:
        parse_regex(pattern, where="terminal NAME")
    assert "terminal NAME" in str(err.value) and "position" in str(err.value)


def test_ignore_case_flag():
    dfa = regex_tree_to_dfa(parse_regex("true|é", "i"))
    for s in ["TRUE", "True", "tRuE", "É", "é"]:
        assert dfa.accepts(s.encode())
    assert not dfa.accepts(b"tru")


# ----------------------------------------------------------------------------- fast paths

@settings(max_examples=200, deadline=None)
@given(st.text(alphabet=st.sampled_from(list("ab\"\\{}( )\n\t\x00\x7fé€😀")), max_size=12))
def test_literal_dfa_equals_the_general_path(text):
    """A plain literal is built as a chain directly; it must equal determinize + minimize."""
    direct = literal_dfa(text.encode("utf-8"))
    general = regex_tree_to_dfa(literal(text))
    assert np.array_equal(direct.trans, general.trans)
    assert np.array_equal(direct.accepting, general.accepting)


def _minimize_both(trans, accepting, byte_class, monkeypatch):
    """(array version without merging equal columns, list version with it): must be equal."""
    monkeypatch.setattr(automaton, "_SMALL_MINIMIZE", 0)
    monkeypatch.setattr(automaton, "_merge_equal_columns", lambda t, b: (t, b))
    by_arrays = automaton.minimize(trans, accepting, byte_class)
    monkeypatch.undo()
    monkeypatch.setattr(automaton, "_SMALL_MINIMIZE", 10**9)
    by_lists = automaton.minimize(trans, accepting, byte_class)
    monkeypatch.undo()
    return by_arrays, by_lists


def test_small_minimize_equals_the_array_version(monkeypatch):
    """Differential on random tables (unreachable states, states that cannot accept, dead
    entries, equal columns) and on the determinized tables of real regexes: same states, same
    numbering, whether or not equal columns are merged first."""
    rng = np.random.default_rng(0)
    for _ in range(1500):
        n, k = int(rng.integers(1, 30)), int(rng.integers(1, 8))
        trans = rng.integers(-1, n, (n, k)).astype(np.int32)
        trans[rng.random((n, k)) < 0.5] = -1
        accepting = rng.random(n) < 0.3
        byte_class = np.sort(rng.integers(0, k, 256)).astype(np.int32)
        byte_class[0], byte_class[-1] = 0, k - 1
        a, b = _minimize_both(trans, accepting, byte_class, monkeypatch)
        assert np.array_equal(a.trans, b.trans) and np.array_equal(a.accepting, b.accepting)
    for pattern in (r"[a-z]{3,24}", r"(a|b)*abb", r"[0-9]+(\.[0-9]+)?", r"(ab|ac|ad)*e",
                    r"arn:aws:kms:[a-z0-9-]+:\d{12}:key/[a-f0-9-]{36}"):
        captured = {}  # the determinized table, on its way to minimize
        with monkeypatch.context() as patch:
            patch.setattr(automaton, "minimize", lambda *args: captured.setdefault("args", args))
            regex_tree_to_dfa(parse_regex(pattern, ""))
        a, b = _minimize_both(*captured["args"], monkeypatch)
        assert np.array_equal(a.trans, b.trans) and np.array_equal(a.accepting, b.accepting), pattern


# atoms whose language is empty (no character, or only surrogates, which UTF-8 cannot encode)
# or holds only "", so that emptiness and nullability reach every node kind
_FACT_ATOMS = [r"[^\s\S]", "[\ud800-\udfff]", "(?:a{0})", "(?:[^\\s\\S]|a)", "a", "(?:)"]


@settings(max_examples=300, deadline=None)
@given(st.one_of(patterns(atoms=st.sampled_from(_FACT_ATOMS + ["b", "[0-9]"])), patterns()))
def test_language_facts_match_the_built_dfa(pattern):
    """Whether a regex's language is empty or holds "" is known without building its DFA (a
    lazily compiled grammar needs it of every terminal); it must be what the DFA says."""
    tree = parse_regex(pattern)
    assert regex_fragment(LanguageFacts, tree) == LanguageFacts.of(regex_tree_to_dfa(tree)), pattern


def test_language_facts_of_edge_cases():
    for pattern, facts in [(r"[^\s\S]", (True, False)), ("[\ud800-\udfff]", (True, False)),
                           ("a{0}", (False, True)), ("(?:[^\\s\\S])*", (False, True)),
                           ("(?:[^\\s\\S])+", (True, False)), ("a?", (False, True)), ("a+", (False, False))]:
        tree = parse_regex(pattern)
        assert regex_fragment(LanguageFacts, tree) == facts == LanguageFacts.of(regex_tree_to_dfa(tree)), pattern


def test_states_that_cannot_reach_acceptance_are_trimmed():
    """After "a", "c" leads only into an empty class: it must be DEAD (no dead end in the mask),
    and a language that is empty altogether has no states."""
    dfa = regex_tree_to_dfa(parse_regex(r"a(?:b|cd[^\s\S])"))
    assert dfa.accepts(b"ab") and dfa.trans[dfa.trans[0, ord("a")], ord("c")] == automaton.DEAD
    assert dfa.num_states == 3
    assert regex_tree_to_dfa(parse_regex(r"(?:[^\s\S]|a)[^\s\S]")).is_empty
