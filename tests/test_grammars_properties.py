"""Property tests over random JSON Schemas, and differential tests of the regex layer.

For random schemas: Lark loads the generated grammar; random calls from `sample_call` parse
(in Lark and in `parse_call`) and their values satisfy the schema per the `jsonschema`
package whenever nothing was reported as unexpressed; mutated calls are rejected by both.
"""

from __future__ import annotations

import json
import random
import re
import warnings

import lark
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from octogram.grammars import FunctionSpec, GrammarWarning, Parameter, parse_call, sample_call, to_lark
from octogram.grammars import formats, patterns
from test_grammars_support import accepts, check_function, lark_parser

PATTERNS = ["^[a-z]+$", "^[A-Z]{2,3}-[0-9]{1,4}$", "abc", "^(foo|bar)?baz$", "[^/]+", "^\\S*$",
            "^.{1,3}$", '^["\\\\]+$', "^[\\w.-]+@[\\w.-]+$", "^\\d{3}(-\\d{2})?$", "x|^y$"]
# Python's re (which jsonschema uses) reads \s \w \d and "." differently from ECMA-262 at the
# edges (e.g. \x1f is a space to Python), so the schema generator uses patterns without them.
PORTABLE_PATTERNS = [p for p in PATTERNS if not re.search(r"\\[sSwWdD]|(?<!\\)\.", p)]
FORMATS = ["date", "date-time", "time", "uuid", "ipv4", "byte", "email", "hostname", "uri"]
KEYS = ["a", "b", "name", "x-y", "from", "é", "with space", 'q"uote']

ints = st.integers(-1000, 1000)
small = st.integers(0, 5)


@st.composite
def string_schema(draw):
    s = {"type": "string"}
    kind = draw(st.sampled_from(["plain", "length", "pattern", "format"]))
    if kind == "length":
        lo = draw(small)
        s["minLength"] = lo
        if draw(st.booleans()):
            s["maxLength"] = lo + draw(small)
    elif kind == "pattern":
        s["pattern"] = draw(st.sampled_from(PORTABLE_PATTERNS))
    elif kind == "format":
        s["format"] = draw(st.sampled_from(FORMATS))
    return s


@st.composite
def integer_schema(draw):
    s = {"type": "integer"}
    if draw(st.booleans()):
        s["minimum"] = draw(ints)
    if draw(st.booleans()):
        s["maximum"] = s.get("minimum", -1000) + draw(st.integers(0, 3000))
    if draw(st.booleans()):
        s["format"] = "int32"
    return s


leaves = st.one_of(
    string_schema(),
    integer_schema(),
    st.just({"type": "number"}),
    st.just({"type": "number", "minimum": 0}),
    st.builds(lambda lo, span, ex: {"type": "number", "minimum": lo, ("exclusiveMaximum" if ex else "maximum"): lo + span},
              st.integers(-100, 100), st.integers(1, 200), st.booleans()),
    st.just({"type": "boolean"}),
    st.just({"type": "null"}),
    st.lists(st.one_of(st.text(max_size=6), ints), min_size=1, max_size=5, unique=True).map(lambda v: {"enum": v}),
    st.one_of(st.text(max_size=5), ints, st.booleans()).map(lambda v: {"const": v}),
    st.just({}),
    st.just({"type": "object"}),
)


def containers(children):
    return st.one_of(
        st.builds(lambda items, lo, extra: {"type": "array", "items": items, "minItems": lo, "maxItems": lo + extra},
                  children, small, small),
        st.builds(lambda items: {"type": "array", "items": items}, children),
        st.dictionaries(st.sampled_from(KEYS), children, min_size=1, max_size=4).flatmap(
            lambda props: st.sets(st.sampled_from(sorted(props))).map(
                lambda req: {"type": "object", "properties": props, "required": sorted(req)})),
        st.lists(children, min_size=2, max_size=3).map(lambda alts: {"anyOf": alts}),
        st.builds(lambda v: {"type": "object", "additionalProperties": v, "maxProperties": 3}, children),
        st.builds(lambda t: {"type": [t, "null"]}, st.sampled_from(["string", "integer", "boolean"])),
    )


schemas = st.recursive(leaves, containers, max_leaves=8)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(st.tuples(schemas, st.booleans()), min_size=1, max_size=3), st.sampled_from(["python", "json"]),
       st.integers(0, 2**32 - 1))
def test_random_schemas(params, style, seed):
    jsonschema = pytest.importorskip("jsonschema")
    spec = FunctionSpec("f", parameters=tuple(Parameter(f"p{i}", s, required=r) for i, (s, r) in enumerate(params)))
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", GrammarWarning)
        grammar = to_lark([spec], style)
    exact = not [w for w in caught if issubclass(w.category, GrammarWarning)]
    parser = lark_parser(grammar)
    rng = random.Random(seed)
    check_function(spec, parser, [spec], style, rng, samples=3)
    if exact:  # everything was expressed: sampled values satisfy the real schema
        for _ in range(5):
            call = parse_call(sample_call(spec, rng, style), [spec], style)[0]
            for name, value in call.arguments.items():
                jsonschema.validate(value, spec.parameter(name).schema)


# ----------------------------------------------------------------------------- regex layer

@pytest.mark.parametrize("pattern", PATTERNS + ["^[\\]\\[^\\-]+$", "^[\\s\\S]{0,4}$", "^\\u00e9\\x41\\t$",
                                                "^(a|ab)(c|bcd)$", "^[^\"]*$", "(?:x{2}){1,2}", "^[\\d-z]$",
                                                "^[\\p{L}\\p{N}_]+$", "^\\P{Lu}{0,3}$", "^\\p{ASCII}+$",
                                                "[a-z][-0-9a-z]{1,63}", "a{2,}", "^x{0,2}", "b?c{1,3}$",
                                                "(ab){1,3}|^q{2,4}", "^(x{1,3})$"])
def test_literal_regex_agrees_with_value_regex(pattern):
    """The grammar's regex over quoted literals accepts exactly the JSON spellings of the
    strings the pattern matches (checked against Python's re on the values)."""
    ast = patterns.full_match(patterns.parse(pattern))
    parser = lark.Lark('start: S\nS: /"' + patterns.to_literal_regex(ast) + '"/', parser="earley", lexer="dynamic")
    python = re.compile(patterns.to_value_regex(ast))
    # Python's re reads these like ECMA-262 except for \s \w \d and "." (Unicode / line ends)
    comparable = not re.search(r"\\[sSwWdDpP]|(?<!\\)\.", pattern)
    ecma_like = re.compile(pattern.replace("\\u00e9", "\u00e9")) if comparable else None
    rng = random.Random(pattern)
    for i in range(300):
        if i % 2:
            value = patterns.sample(ast, rng)
        else:
            value = patterns.sample(("rep", ("set", patterns.ANY), 0, 5), rng)
        literal = json.dumps(value, ensure_ascii=False)
        expected = python.fullmatch(value) is not None
        assert accepts(parser, literal) == expected, (pattern, value)
        if ecma_like is not None:  # JSON Schema patterns are searches
            assert (ecma_like.search(value) is not None) == expected, (pattern, value)


def test_unanchored_counted_repeats_stay_small():
    """`[a-z][-0-9a-z]{1,63}` searched anywhere in a string is "a letter, then one more";
    unrolled literally, its DFA tracks every window of the last 63 characters (millions of
    states). The full-match AST trims a repeat next to "any text" to its lower bound."""
    from octogram.masking.automaton import regex_tree_to_dfa
    from octogram.masking.regex import parse_regex

    ast = patterns.full_match(patterns.parse("[A-Za-z][-0-9A-Za-z]{1,63}"))
    dfa = regex_tree_to_dfa(parse_regex('"' + patterns.to_literal_regex(ast) + '"', ""))
    assert len(dfa.trans) < 64


def test_a_pattern_whose_automaton_explodes_is_reported_when_the_grammar_is_written():
    """`[ab]*a[ab]{20}` must remember the last 21 characters (2^21 states): the masking layer
    would fail seconds and gigabytes into generation. The report names the function, the
    parameter and the document pointer; strict mode refuses; the limit is an option."""
    from octogram.grammars import GrammarError, load
    from octogram.grammars.pattern_size import exceeds_states

    tool = {"type": "function", "function": {"name": "find_code", "parameters": {
        "type": "object", "required": ["code"],
        "properties": {"code": {"type": "string", "pattern": "^[ab]*a[ab]{20}$"}}}}}
    specs = load([tool])
    with pytest.warns(GrammarWarning, match=r"properties/code: pattern .*function 'find_code', "
                                            r"parameter 'code'.*more than 10000 states") as got:
        grammar = to_lark(specs)
    assert [w.message.keyword for w in got if isinstance(w.message, GrammarWarning)] == ["pattern"]
    lark_parser(grammar).parse('find_code(code="zzz")')  # not expressed: any string
    with pytest.raises(GrammarError, match="find_code.*max_pattern_states"):
        to_lark(specs, strict=True)
    with pytest.raises(GrammarError, match="max_pattern_states must be a positive integer"):
        to_lark(specs, max_pattern_states=0)
    # a bound large enough keeps a pattern just within it; small patterns cost their own size
    ast = patterns.full_match(patterns.parse("^[ab]*a[ab]{8}$"))
    assert not exceeds_states(ast, 10_000) and exceeds_states(ast, 100)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        tool["function"]["parameters"]["properties"]["code"]["pattern"] = "^[ab]*a[ab]{8}$"
        to_lark(load([tool]))


@pytest.mark.parametrize("pattern, why", [
    ("(?=a)b", "lookaround"), ("\\bword", "boundary"), ("(a)\\1", "backreference"), ("\\p{Graph}+", "property"),
    ("a^b", "anchor"), ("(?i)abc", "flags"), ("a++", "repeat"), ("[z-a]", "order"),
])
def test_unsupported_patterns_are_refused(pattern, why):
    with pytest.raises(patterns.RegexUnsupported, match=why):
        patterns.full_match(patterns.parse(pattern))


def test_integer_ranges_exhaustively():
    rng = random.Random(7)
    bounds = [(None, None), (0, None), (1, None), (None, 0), (-5, 5), (7, 123), (-2**31, 2**31 - 1), (99, 1001)]
    bounds += [(a, a + rng.randint(0, 3000)) for a in (rng.randint(-3000, 3000) for _ in range(40))]
    for lo, hi in bounds:
        rx = re.compile(formats.int_range_regex(lo, hi))
        start = -5000 if lo is None else lo - 30
        stop = 5000 if hi is None else hi + 30
        for v in list(range(max(start, -6000), min(stop, 6000))) + [10**12, -10**12]:
            assert (rx.fullmatch(str(v)) is not None) == ((lo is None or v >= lo) and (hi is None or v <= hi)), (lo, hi, v)
        for bad in ("-0", "01", "+1", "1.0", ""):
            assert not rx.fullmatch(bad)
        if lo is not None and hi is not None:  # Lark's leftmost-first regex matching still takes whole numbers
            parser = lark.Lark("start: N \";\"\nN: /" + formats.int_range_regex(lo, hi) + "/", parser="earley", lexer="dynamic")
            for v in {lo, hi, (lo + hi) // 2}:
                parser.parse(f"{v};")


@pytest.mark.parametrize("name", sorted(formats.EXACT_FORMATS) + sorted(formats.APPROXIMATE_FORMATS))
def test_format_samples_are_well_formed(name):
    ast, _ = formats.string_format(name)
    rng = random.Random(name)
    checks = {"date": r"\d{4}-\d\d-\d\d", "uuid": r"[0-9a-fA-F-]{36}", "ipv4": r"(\d{1,3}\.){3}\d{1,3}",
              "email": r"[^@\s]+@[^@\s]+\.[^@\s]+", "date-time": r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d+)?(Z|[+-]\d\d:\d\d)"}
    for _ in range(50):
        value = patterns.sample(ast, rng)
        if name in checks:
            assert re.fullmatch(checks[name], value), (name, value)
        if name == "byte":
            import base64
            base64.b64decode(value, validate=True)


def test_unicode_general_categories():
    import unicodedata
    rng = random.Random(5)
    for name, short in (("Lu", "Lu"), ("Letter", "L"), ("gc=Nd", "Nd"), ("Z", "Z")):
        ranges = patterns.unicode_property(name)
        for _ in range(2000):
            cp = rng.randrange(0x30000)
            assert patterns.contains(ranges, cp) == unicodedata.category(chr(cp)).startswith(short), (name, hex(cp))
    assert patterns.unicode_property("Script=Latin") is None


def test_number_ranges_against_exact_arithmetic():
    from fractions import Fraction
    rng = random.Random(11)
    cases = [(-90, False, 90, False), (0, False, None, False), (0, True, None, False), (-180, False, 180, True),
             (None, False, 0, True), (1, False, 1, False), (-5, True, -2, True), (None, False, -3, False),
             (3, True, 10, False), (0, True, 1, True)]
    cases += [(a, rng.random() < 0.5, a + rng.randint(1, 300), rng.random() < 0.5)
              for a in (rng.randint(-300, 300) for _ in range(20))]
    for lo, lo_ex, hi, hi_ex in cases:
        alts = formats.number_range_alternatives(lo, lo_ex, hi, hi_ex)
        grammar = "start: N \";\"\nN: " + " | ".join(f"/{a}/" for a in alts)
        parser = lark.Lark(grammar, parser="earley", lexer="dynamic")
        texts = {"0", "0.0", "-0", "-0.0"} | {f"{b}{f}" for b in (lo, hi) if b is not None for f in ("", ".0", ".5", ".000")}
        for _ in range(400):
            whole = rng.randint(-400, 400)
            texts.add(f"{whole}" if rng.random() < 0.3 else f"{whole}.{rng.choice(['0', '00', '5', '25', '001', '9'])}")
        for text in texts:
            value = Fraction(text)
            want = ((lo is None or (value > lo if lo_ex else value >= lo)) and
                    (hi is None or (value < hi if hi_ex else value <= hi)) and not (text.startswith("-") and value == 0))
            assert accepts(parser, text + ";") == want, (lo, lo_ex, hi, hi_ex, text)
