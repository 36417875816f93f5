"""Shared helpers for the grammar property tests: Lark parsers and mutated (invalid) calls."""

from __future__ import annotations

import random

import lark

from octogram.grammars import FunctionCall, FunctionSpec, GrammarError, Parameter, parse_call, sample_call
from octogram.grammars.calls import _lowered
from octogram.grammars.ir import Def, Lit, Union

WRONG_VALUES = [12345, "zzz", True, None, [], {}, 1.5, [[["deep"]]], {"k": {"k": {"k": {"k": 1}}}}]


def lark_parser(grammar: str) -> lark.Lark:
    return lark.Lark(grammar, start="start", parser="earley", lexer="dynamic")


def accepts(parser: lark.Lark, text: str) -> bool:
    try:
        parser.parse(text)
    except lark.exceptions.LarkError:
        return False
    return True


def _strings_enum(node) -> "tuple[str, ...] | None":
    while isinstance(node, Def):
        node = node.node
    if isinstance(node, Lit) and node.values and all(isinstance(v, str) for v in node.values):
        return node.values
    return None


def mutations(spec: FunctionSpec, offered: list[FunctionSpec], call_text: str, style: str,
              rng: random.Random) -> list[tuple[str, str]]:
    """(kind, text) for each applicable mutation of a valid call: wrong name, unknown argument,
    missing required argument, wrong type, bad enum value. Each text is invalid by construction
    (checked against parse_call's validator where that is the definition of 'wrong')."""
    call = parse_call(call_text, offered, style)[0]
    out = []
    names = {f.name for f in offered} | {"no_relevant_function"}
    wrong_name = spec.name + "_x"
    while wrong_name in names:
        wrong_name += "x"
    out.append(("wrong name", FunctionCall(wrong_name, call.arguments).to_text(style)))
    unknown = "zz_unknown"
    while unknown in {p.name for p in spec.parameters}:
        unknown += "z"
    out.append(("unknown argument", FunctionCall(spec.name, {**call.arguments, unknown: 1}).to_text(style)))
    required = [p.name for p in spec.parameters if p.required and p.name in call.arguments]
    if required:
        drop = rng.choice(required)
        args = {k: v for k, v in call.arguments.items() if k != drop}
        out.append(("missing required argument", FunctionCall(spec.name, args).to_text(style)))
    lowered = _lowered(spec, 3, 64)
    present = [k for k in call.arguments if k in lowered]
    rng.shuffle(present)
    for key in present:
        candidates = WRONG_VALUES[:]
        rng.shuffle(candidates)
        for value in candidates:
            args = dict(call.arguments)
            args[key] = value
            text = FunctionCall(spec.name, args).to_text(style)
            try:
                parse_call(text, offered, style)
            except GrammarError:
                out.append(("wrong type", text))
                break
        else:
            continue
        break
    for key in present:
        values = _strings_enum(lowered[key][1])
        if values:
            args = dict(call.arguments)
            args[key] = "not-" + "-".join(values)[:40]
            out.append(("bad enum value", FunctionCall(spec.name, args).to_text(style)))
            break
    return out


def check_function(spec: FunctionSpec, parser: lark.Lark, offered: list[FunctionSpec], style: str,
                   rng: random.Random, samples: int = 3) -> dict[str, int]:
    """Samples parse (Lark and parse_call); every mutation is rejected by both. Returns counts."""
    counts: dict[str, int] = {}
    for _ in range(samples):
        text = sample_call(spec, rng, style)
        assert accepts(parser, text), f"grammar rejects a sampled call: {text[:300]}"
        parsed = parse_call(text, offered, style)
        assert parsed[0].name == spec.name
        assert parsed[0].to_text(style) == text, "canonical rendering is not stable"
        for kind, bad in mutations(spec, offered, text, style, rng):
            assert not accepts(parser, bad), f"grammar accepts a call with a {kind}: {bad[:300]}"
            try:
                parse_call(bad, offered, style)
            except GrammarError:
                pass
            else:
                raise AssertionError(f"parse_call accepts a call with a {kind}: {bad[:300]}")
            counts[kind] = counts.get(kind, 0) + 1
    return counts


def test_mutations_cover_every_kind():
    spec = FunctionSpec("f", parameters=(
        Parameter("mode", {"enum": ["a", "b"]}),
    ))
    text = sample_call(spec, random.Random(0))
    kinds = {k for k, _ in mutations(spec, [spec], text, "python", random.Random(0))}
    assert kinds == {"wrong name", "unknown argument", "missing required argument", "wrong type", "bad enum value"}


def test_union_nodes_are_checked_as_alternatives():
    # a value that fits one branch of a union is not "wrong"
    spec = FunctionSpec("g", parameters=(
        Parameter("x", {"type": ["integer", "string"]}),
    ))
    assert isinstance(_lowered(spec, 3, 64)["x"][1], Union)
    parse_call('g(x=3)', [spec])
    parse_call('g(x="3")', [spec])
