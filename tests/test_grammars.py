"""Importers, grammar generation, call parsing, errors and warnings of octogram.grammars."""

from __future__ import annotations

import dataclasses
import enum
import json
import random
import re
import textwrap
import warnings
from typing import Literal, Optional, TypedDict

import lark
import pytest
from hypothesis import given
from hypothesis import strategies as st

from octogram.grammars import (COMMON_LARK_DIR, NO_DEFAULT, NO_RELEVANT_FUNCTION, FunctionCall,
                               FunctionSpec, GrammarError, GrammarWarning, Parameter, load,
                               parse_call, sample_call, to_lark)
from octogram.grammars.grammar_command import grammar_command
from test_grammars_support import accepts, check_function, lark_parser

PETSTORE = {
    "openapi": "3.0.3",
    "info": {"title": "Pets", "version": "1"},
    "paths": {
        "/pets": {
            "get": {
                "operationId": "listPets",
                "summary": "List pets",
                "parameters": [
                    {"name": "limit", "in": "query", "schema": {"type": "integer", "minimum": 1, "maximum": 100}},
                    {"name": "status", "in": "query", "required": True,
                     "schema": {"type": "string", "enum": ["available", "sold"]}},
                    {"name": "X-Request-Id", "in": "header", "schema": {"type": "string", "format": "uuid"}},
                    {"name": "Accept", "in": "header", "schema": {"type": "string"}},
                ],
            },
            "post": {
                "operationId": "create-pet",
                "requestBody": {"required": True, "content": {"application/json": {
                    "schema": {"$ref": "#/components/schemas/NewPet"}}}},
            },
        },
        "/pets/{petId}": {
            "parameters": [{"name": "petId", "in": "path", "required": True, "schema": {"type": "integer"}}],
            "get": {"summary": "Get a pet"},
            "delete": {"operationId": "listPets"},
        },
    },
    "components": {"schemas": {
        "NewPet": {"type": "object", "required": ["name"], "properties": {
            "id": {"type": "integer", "readOnly": True},
            "name": {"type": "string", "minLength": 1, "maxLength": 20},
            "tag": {"type": "string", "nullable": True},
            "born": {"type": "string", "format": "date"},
            "owner": {"$ref": "#/components/schemas/Person"},
        }},
        "Person": {"type": "object", "required": ["name"], "properties": {
            "name": {"type": "string"},
            "friends": {"type": "array", "items": {"$ref": "#/components/schemas/Person"}},
        }},
    }},
}


def _quiet(fn, *args, **kwargs):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", GrammarWarning)
        return fn(*args, **kwargs)


# ----------------------------------------------------------------------------- OpenAPI

def test_openapi_operations_names_and_arguments():
    specs = load(PETSTORE)
    assert [s.name for s in specs] == ["listPets", "create_pet", "get_pets_by_petId", "listPets_2"]
    list_pets = specs[0]
    assert [p.name for p in list_pets.parameters] == ["limit", "status", "X_Request_Id"]  # Accept is left out
    assert [p.location for p in list_pets.parameters] == ["query", "query", "header"]
    assert list_pets.parameter("X_Request_Id").api_name == "X-Request-Id"
    create = specs[1]
    assert create.api_name == "create-pet" and create.endpoint == "POST /pets"
    assert [(p.name, p.required) for p in create.parameters] == [
        ("name", True), ("tag", False), ("born", False), ("owner", False)]  # readOnly id left out
    assert specs[2].parameters[0].name == "petId" and specs[2].parameters[0].required


def test_renamed_parameters_keep_their_api_name():
    """A collision renames a parameter (`id` -> `id_2`); the request must still send `id`."""
    doc = {"openapi": "3.0.0", "info": {"title": "t", "version": "1"}, "paths": {"/items/{id}": {"get": {
        "operationId": "getItem", "parameters": [
            {"name": "id", "in": "path", "required": True, "schema": {"type": "string"}},
            {"name": "id", "in": "query", "schema": {"type": "string"}},
            {"name": "X-Id", "in": "header", "schema": {"type": "string"}},
            {"name": "X_Id", "in": "header", "schema": {"type": "string"}}]}}}}
    (spec,) = load(doc)
    got = [(p.name, p.api_name, p.location) for p in spec.parameters]
    assert got == [("id", None, "path"), ("id_2", "id", "query"), ("X_Id", "X-Id", "header"),
                   ("X_Id_2", "X_Id", "header")]


def test_swagger2_parameters_and_body():
    doc = {"swagger": "2.0", "info": {}, "paths": {"/u/{id}": {"put": {
        "operationId": "putU",
        "parameters": [
            {"name": "id", "in": "path", "required": True, "type": "integer", "format": "int32"},
            {"name": "tags", "in": "query", "type": "array", "items": {"type": "string"}, "maxItems": 3},
            {"name": "upload", "in": "formData", "type": "file"},
            {"name": "body", "in": "body", "required": True, "schema": {"$ref": "#/definitions/U"}},
        ]}}},
        "definitions": {"U": {"type": "object", "properties": {"email": {"type": "string", "format": "email"}}}}}
    (spec,) = load(doc)
    assert [p.name for p in spec.parameters] == ["id", "tags", "upload", "email"]
    grammar = _quiet(to_lark, [spec])
    parser = lark_parser(grammar)
    assert accepts(parser, 'putU(id=2147483647, tags=["a", "b"], email="a@b.co")')
    assert not accepts(parser, 'putU(id=2147483648)')  # int32
    assert not accepts(parser, 'putU(id=1, tags=["a", "b", "c", "d"])')  # maxItems


def test_grammar_accepts_canonical_calls_and_nothing_else():
    specs = load(PETSTORE)
    grammar = to_lark(specs)
    parser = lark_parser(grammar)
    good = [
        'listPets(status="sold")',
        'listPets(limit=100, status="available")',
        'create_pet(name="Rex", tag=None, owner={"name": "Ann", "friends": [{"name": "Bo"}]})',
        '[get_pets_by_petId(petId=-3), listPets_2(petId=7)]',
        'no_relevant_function(query="what time is it?")',
    ]
    bad = [
        'listPets(limit=1)',  # status is required
        'listPets(status="sold", limit=1)',  # declaration order
        'listPets(limit=0, status="sold")',  # minimum
        'listPets(limit=101, status="sold")',  # maximum
        'listPets(limit=1,status="sold")',  # separators are exactly ", "
        'listPets(status="lost")',  # enum
        'create_pet(name="")',  # minLength
        'create_pet(name="Rex", id=1)',  # readOnly id is not sent
        'create_pet(name="Rex", born="2024-13-01")',  # date format
        "listPets(status='sold')",  # one quote style
        '[listPets(status="sold"), no_relevant_function(query="x")]',  # no_relevant stands alone
        'deletePet(petId=1)',
    ]
    for text in good:
        assert accepts(parser, text), text
        parse_call(text, specs)
    for text in bad:
        assert not accepts(parser, text), text


def test_json_style():
    specs = load(PETSTORE)
    parser = lark_parser(to_lark(specs, "json"))
    text = '{"name": "listPets", "arguments": {"limit": 5, "status": "sold"}}'
    assert accepts(parser, text)
    assert accepts(parser, "[" + text + ", " + text + "]")
    assert accepts(parser, '{"name": "create_pet", "arguments": {"name": "R", "tag": null}}')
    assert not accepts(parser, '{"name": "create_pet", "arguments": {"name": "R", "tag": None}}')
    assert not accepts(parser, '{"name":"listPets","arguments":{"status":"sold"}}')  # json.dumps spacing
    calls = parse_call(text, specs, "json")
    assert calls == [FunctionCall("listPets", {"limit": 5, "status": "sold"})]
    assert calls[0].to_text("json") == text


def test_recursion_is_unrolled_to_max_depth():
    (spec,) = load(PETSTORE, functions=["create-pet"])
    for depth in (1, 2, 3):
        grammar = _quiet(to_lark, [spec], max_depth=depth, include_no_relevant=False)
        parser = lark_parser(grammar)
        nested = '{"name": "a"}'
        for _ in range(depth - 1):
            nested = '{"name": "a", "friends": [' + nested + ']}'
        assert accepts(parser, f'create_pet(name="x", owner={nested})')
        deeper = '{"name": "a", "friends": [' + nested + ']}'
        assert not accepts(parser, f'create_pet(name="x", owner={deeper})')
        assert "%import" not in grammar and "%ignore" not in grammar


def test_required_recursion_past_the_depth_is_an_error():
    spec = FunctionSpec("f", parameters=(Parameter("node", {"$ref": "#/$defs/N"}),),
                        defs={"#/$defs/N": {"type": "object", "required": ["next"],
                                            "properties": {"next": {"$ref": "#/$defs/N"}}}})
    with pytest.raises(GrammarError, match="admits no value"):
        to_lark([spec])


def test_parse_call_errors_name_the_problem():
    specs = load(PETSTORE)
    cases = {
        'lisPets(status="sold")': "unknown function 'lisPets'",
        'listPets(status="sold", color=1)': "unknown argument 'color'",
        'listPets(limit=3)': "missing required argument 'status'",
        'listPets(status=3)': "expected one of",
        'listPets(status="sold", limit=500)': "integer in [1, 100]",
        'listPets("sold")': "positional arguments",
        'listPets(status="sold"': "not a Python call",
        'create_pet(name="R", owner={"name": 1})': "create_pet.owner.name",
    }
    for text, needle in cases.items():
        with pytest.raises(GrammarError) as info:
            parse_call(text, specs)
        assert needle in str(info.value), (text, str(info.value))
    with pytest.raises(GrammarError, match="line 1"):
        parse_call('{"name": "listPets", "arguments": {', specs, "json")


def test_parse_call_is_lenient_on_formatting_only():
    specs = load(PETSTORE)
    (call,) = parse_call("listPets( status = 'sold' , limit=2 )", specs)
    assert call == FunctionCall("listPets", {"limit": 2, "status": "sold"})  # declaration order
    assert call.to_text() == 'listPets(limit=2, status="sold")'


# ----------------------------------------------------------------------------- keywords

@pytest.mark.parametrize("schema, keyword", [
    ({"type": "number", "maximum": 3.5}, "maximum"),
    ({"type": "integer", "multipleOf": 5}, "multipleOf"),
    ({"type": "array", "items": {"type": "string"}, "uniqueItems": True}, "uniqueItems"),
    ({"type": "string", "pattern": "^(?=a)b$"}, "pattern"),
    ({"type": "string", "pattern": "[a-z][a-z0-9\\-]{0,48}[a-z0-9]"}, "pattern"),
    ({"type": "string", "format": "x-custom"}, "format"),
    ({"type": "string", "format": "email"}, "format"),
    ({"type": "string", "maxLength": 1000}, "maxLength"),
    ({"not": {"type": "string"}}, "not"),
    ({"type": "object", "patternProperties": {"^a": {}}}, "patternProperties"),
    ({"oneOf": [{"type": "string"}, {"type": "string", "maxLength": 3}]}, "oneOf"),
])
def test_unexpressed_keywords_warn_and_strict_raises(schema, keyword):
    spec = FunctionSpec("f", parameters=(Parameter("x", schema),))
    with pytest.warns(GrammarWarning) as record:
        to_lark([spec])
    assert any(w.message.keyword == keyword for w in record), [str(w.message) for w in record]
    with pytest.raises(GrammarError) as info:
        to_lark([spec], strict=True)
    assert info.value.keyword == keyword and "strict" in str(info.value)


def test_expressed_keywords_do_not_warn():
    schema = {"type": "object", "required": ["a"], "properties": {
        "a": {"type": "integer", "minimum": -5, "exclusiveMaximum": 10},
        "b": {"type": "string", "pattern": "^[a-z]+$", "maxLength": 8},
        "c": {"type": "number", "minimum": 0},
        "d": {"anyOf": [{"const": "x"}, {"type": "null"}]},
        "e": {"oneOf": [{"type": "object", "required": ["kind"], "properties": {"kind": {"const": "cat"}}},
                        {"type": "object", "required": ["kind"], "properties": {"kind": {"const": "dog"}}}]},
        "f": {"type": "array", "prefixItems": [{"type": "integer"}], "items": False},
        "g": {"type": "string", "format": "date-time"},
        "i": {"type": "string", "pattern": "[0-9]{12}|x{2,9}"},
        "h": {"type": "number", "minimum": -90, "maximum": 90},
    }}
    spec = FunctionSpec("f", parameters=(Parameter("x", schema),))
    with warnings.catch_warnings():
        warnings.simplefilter("error", GrammarWarning)
        grammar = to_lark([spec], strict=True)
    parser = lark_parser(grammar)
    assert accepts(parser, 'f(x={"a": -5, "b": "abc", "c": 0.5, "d": None, "e": {"kind": "dog"}, "f": [1], "g": "2024-02-29T10:00:00Z"})')
    assert not accepts(parser, 'f(x={"a": 10})')
    assert not accepts(parser, 'f(x={"a": 1, "b": "abcdefghi"})')  # pattern + maxLength folded
    assert not accepts(parser, 'f(x={"a": 1, "c": -1})')
    assert not accepts(parser, 'f(x={"a": 1, "f": [1, 2]})')
    assert accepts(parser, 'f(x={"a": 1, "h": -90.0})') and accepts(parser, 'f(x={"a": 1, "h": 89.75})')
    assert not accepts(parser, 'f(x={"a": 1, "h": 90.25})') and not accepts(parser, 'f(x={"a": 1, "h": 1e1})')


def test_enum_values_of_every_json_type_and_escapes():
    values = ["a \"quoted\" \\ back\nslash", 3, 2.5, True, None, "日本", {"k": [1]}]
    spec = FunctionSpec("f", parameters=(Parameter("x", {"enum": values}),))
    for style in ("python", "json"):
        parser = lark_parser(to_lark([spec], style))
        for v in values:
            text = FunctionCall("f", {"x": v}).to_text(style)
            assert accepts(parser, text), text
            assert parse_call(text, [spec], style)[0].arguments["x"] == v
        assert not accepts(parser, FunctionCall("f", {"x": "a"}).to_text(style))


def test_large_enums_and_const_branches_are_lowered_whole():
    """50,000 enum values (or oneOf const branches) lower with duplicates merged, as JSON equality
    says: 1 == 1.0 but true != 1; a repeated const makes the oneOf branches overlap."""
    from octogram.grammars.calls import _lowered
    from octogram.grammars.ir import Lit

    values = [f"v{i}" for i in range(50_000)]
    many = FunctionSpec("f", parameters=(Parameter("x", {"enum": values + values[:10]}, required=True),))
    node = _lowered(many, 3, 64)["x"][1]
    assert isinstance(node, Lit) and node.values == tuple(values)
    branches = FunctionSpec("g", parameters=(Parameter("x", {"oneOf": [{"const": v} for v in values]},
                                                       required=True),))
    with warnings.catch_warnings():
        warnings.simplefilter("error", GrammarWarning)  # disjoint consts: no overlap warning
        assert parse_call('g(x="v49999")', [branches])[0].arguments == {"x": "v49999"}
    repeated = FunctionSpec("h", parameters=(Parameter("x", {"oneOf": [{"const": 1}, {"const": 1.0}]}),))
    with pytest.warns(GrammarWarning, match="oneOf branches can overlap"):
        to_lark([repeated])
    mixed = FunctionSpec("k", parameters=(Parameter("x", {"enum": [1, 1.0, True, 1, "1", None, [1], [1.0]]}),))
    assert _lowered(mixed, 3, 64)["x"][1].values == (1, 1.0, True, "1", None, [1])


@given(st.recursive(st.none() | st.booleans() | st.integers(-3, 3) | st.sampled_from([0.0, 1.0, 2.5]) |
                    st.sampled_from(["", "a", "1"]),
                    lambda kids: st.lists(kids, max_size=3) | st.dictionaries(st.sampled_from("ab"), kids, max_size=2),
                    max_leaves=6), st.data())
def test_value_key_agrees_with_same_value(a, data):
    from octogram.grammars.values import same_value, value_key

    b = data.draw(st.sampled_from([a, json.loads(json.dumps(a)), 1, 1.0, True, [a], {"a": a}]))
    assert (value_key(a) == value_key(b)) == same_value(a, b)


# ----------------------------------------------------------------------------- tools and Python

def test_openai_tools_and_loose_types():
    tools = [
        {"type": "function", "function": {"name": "get_weather", "description": "Weather.", "parameters": {
            "type": "object", "properties": {"city": {"type": "string"}, "days": {"type": "integer", "default": 1}},
            "required": ["city"]}}},
        {"name": "calc", "parameters": {"type": "dict", "properties": {
            "x": {"type": "float"}, "pair": {"type": "tuple", "items": {"type": "integer"}}, "extra": {"type": "any"}},
            "required": ["x"]}},
        {"name": "set.volume", "parameters": {"level": {"type": "int", "description": "0-10"},
                                              "mute": {"type": "bool, optional"},
                                              "ids": {"type": "List[int]", "default": []}}},
    ]
    specs = load(tools)
    assert [s.name for s in specs] == ["get_weather", "calc", "set_volume"]
    assert specs[2].api_name == "set.volume"
    assert [(p.name, p.required) for p in specs[2].parameters] == [("level", True), ("mute", False), ("ids", False)]
    assert specs[0].parameter("days").default == 1
    rng = random.Random(1)
    parser = lark_parser(to_lark(specs))
    for spec in specs:
        check_function(spec, parser, specs, "python", rng)
    assert load({"tools": tools}, functions=["calc"])[0].name == "calc"


def test_sloppy_array_enum_is_read_as_an_enum_of_the_items():
    """BFCL-style tool JSON puts the items' enum beside `"type": "array"`: as written no array
    matches, so it is read as an enum of the items, with a GrammarWarning; strict mode refuses."""
    tool = {"type": "function", "function": {"name": "get_stats", "description": "Stats.", "parameters": {
        "type": "object", "required": ["metrics"], "properties": {
            "metrics": {"type": "array", "items": {"type": "string"}, "enum": ["views", "likes"]},
            "tags": {"type": ["array", "null"], "enum": ["a", "b", None]},
            "pairs": {"type": "array", "enum": [[1, 2], [3]]}}}}}  # an enum of arrays: as written
    specs = load(tool)
    with pytest.warns(GrammarWarning, match="read as an enum of the items") as record:
        grammar = to_lark(specs)
    sloppy = [w for w in record if "enum of the items" in str(w.message)]
    assert sorted(w.message.location.rsplit("/", 1)[-1] for w in sloppy) == ["metrics", "tags"]
    parser = lark_parser(grammar)
    assert accepts(parser, 'get_stats(metrics=["views", "likes"])')
    assert accepts(parser, 'get_stats(metrics=[], tags=["b"])')
    assert accepts(parser, 'get_stats(metrics=["likes"], tags=None, pairs=[3])')
    assert not accepts(parser, 'get_stats(metrics=["other"])')
    assert not accepts(parser, 'get_stats(metrics="views")')
    assert not accepts(parser, 'get_stats(metrics=["views"], pairs=[1])')
    check_function(specs[0], parser, specs, "python", random.Random(2))
    with pytest.raises(GrammarError, match="enum of the items.*strict mode"):
        to_lark(specs, strict=True)


def test_enum_of_another_type_than_declared_is_read_as_listed():
    """API documents declare `"type": "integer"` beside an enum of strings ("1".."10"): as
    written no value matches, so the values are read as listed, with a GrammarWarning naming the
    parameter; a partly fitting enum keeps its fitting values; strict mode refuses."""
    tool = {"type": "function", "function": {"name": "get_ratings", "parameters": {
        "type": "object", "required": ["rating"], "properties": {
            "rating": {"type": "integer", "enum": ["1", "2", "10"]},
            "kind": {"type": "string", "enum": [1, "movies"]},  # partly fitting: as before
            "short": {"type": "integer", "enum": ["a", "long"], "maxLength": 2}}}}}
    specs = load(tool)
    with pytest.warns(GrammarWarning, match="declared type") as record:
        grammar = to_lark(specs)
    sloppy = [w for w in record if "declared type" in str(w.message)]
    assert sorted(w.message.location.rsplit("/", 1)[-1] for w in sloppy) == ["rating", "short"]
    assert '"integer"' in str(sloppy[0].message) and '"1", "2", "10"' in str(sloppy[0].message)
    parser = lark_parser(grammar)
    assert accepts(parser, 'get_ratings(rating="10")')
    assert not accepts(parser, 'get_ratings(rating=10)')
    assert accepts(parser, 'get_ratings(rating="1", kind="movies", short="a")')
    assert not accepts(parser, 'get_ratings(rating="1", kind=1)')
    assert not accepts(parser, 'get_ratings(rating="1", short="long")')  # maxLength still applies
    check_function(specs[0], parser, specs, "python", random.Random(3))
    with pytest.raises(GrammarError, match="declared type.*strict mode"):
        to_lark(specs, strict=True)


class Color(enum.Enum):
    RED = "red"
    BLUE = "blue"


@dataclasses.dataclass
class Tree:
    label: str
    children: "list[Tree]" = dataclasses.field(default_factory=list)


class Options(TypedDict, total=False):
    verbose: bool


def paint(color: Color, shade: Literal[1, 2, 3], tree: Tree, note: Optional[str] = None,
          weights: dict[str, float] | None = None, opts: Options | None = None, count=2, *rest, **kw) -> None:
    """Paint a tree.

    Args:
        color: Which color.
        shade (int): How dark,
            from 1 to 3.
    """


def test_python_callable_with_hints_and_docstring():
    with pytest.warns(GrammarWarning) as warned:
        (spec,) = load(paint)
    messages = [str(w.message) for w in warned]  # *rest and **kw cannot be keyword arguments
    assert len(messages) == 2 and any("**kw" in m for m in messages) \
        and any("*rest" in m and "**" not in m for m in messages), messages
    assert spec.description == "Paint a tree."
    assert [p.name for p in spec.parameters] == ["color", "shade", "tree", "note", "weights", "opts", "count"]
    assert spec.parameter("shade").description == "How dark, from 1 to 3."
    assert spec.parameter("count").default == 2 and spec.parameter("note").default is None
    assert spec.parameter("color").default is NO_DEFAULT
    stub = spec.to_python_stub()
    assert stub.startswith('def paint(color: Literal["red", "blue"], shade: Literal[1, 2, 3], tree: dict,')
    compile(stub + "\n", "<stub>", "exec")
    parser = lark_parser(to_lark([spec]))
    assert accepts(parser, 'paint(color="red", shade=2, tree={"label": "a", "children": [{"label": "b", "children": []}]}, count=5)')
    assert not accepts(parser, 'paint(color="green", shade=2, tree={"label": "a"})')
    assert not accepts(parser, 'paint(color="red", shade=2, tree={"label": "a"}, count=1.5)')
    with pytest.raises(GrammarError, match=r"\*rest"):
        load(paint, strict=True)


def test_stub_orders_keyword_only_and_escapes():
    spec = FunctionSpec("f", 'Says """hi""".', (Parameter("a", {"type": "integer"}, required=False, default=1),
                                               Parameter("b", {"type": "string"})))
    stub = spec.to_python_stub()
    assert stub.splitlines()[0] == "def f(*, a: int = 1, b: str):"
    compile(stub + "\n", "<stub>", "exec")


# ----------------------------------------------------------------------------- malformed input

@pytest.mark.parametrize("name, text, needle", [
    ("trunc.json", '{"openapi": "3.0.0", "paths": {', "invalid JSON"),
    ("bad.yaml", "openapi: 3.0.0\npaths:\n  /a: [\n", "invalid YAML"),
    ("nopaths.json", '{"openapi": "3.0.0", "info": {}}', "missing 'paths'"),
    ("empty.yaml", "", "empty"),
    ("other.json", '{"hello": 1}', "not an API description"),
])
def test_malformed_documents_name_the_location(tmp_path, name, text, needle):
    path = tmp_path / name
    path.write_text(text)
    with pytest.raises(GrammarError) as info:
        load(path)
    assert needle in str(info.value)
    assert str(path) in str(info.value)


def test_yaml_error_has_line_and_column(tmp_path):
    path = tmp_path / "api.yaml"
    path.write_text("openapi: 3.0.0\npaths:\n  /a:\n    get: {operationId: x\n")
    with pytest.raises(GrammarError) as info:
        load(path)
    assert info.value.location.startswith(f"{path}:")
    assert info.value.location.count(":") >= 2


_YAML_OP = ('openapi: 3.0.0\ninfo: {{title: t, version: "1"}}\n{extra}paths:\n  /a:\n    get:\n'
            '      operationId: getA\n      parameters:\n        - name: q\n          in: query\n'
            '          schema: {schema}\n')


@pytest.mark.parametrize("schema", [
    "&s0 {type: object, properties: {a: *s0}}",    # a schema that contains itself
    "{type: array, default: &d [*d]}",              # a default that contains itself
])
def test_recursive_yaml_aliases_are_refused_with_the_line(tmp_path, schema):
    path = tmp_path / "api.yaml"
    path.write_text(_YAML_OP.format(extra="", schema=schema))
    with pytest.raises(GrammarError, match="recursive alias") as info:
        load(path)
    assert info.value.location == f"{path}:10"


def test_yaml_alias_bombs_are_refused_before_expanding(tmp_path):
    levels = ['  l0: &l0 ["lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol"]']
    levels += [f"  l{i}: &l{i} [{', '.join([f'*l{i - 1}'] * 9)}]" for i in range(1, 9)]
    path = tmp_path / "bomb.yaml"
    path.write_text(_YAML_OP.format(extra="x:\n" + "\n".join(levels) + "\n",
                                    schema="{type: array, default: *l8}"))
    with pytest.raises(GrammarError, match="alias bomb") as info:
        load(path)  # 9**9 values once expanded: refused from the node graph, at once
    assert info.value.location == f"{path}:{3 + 7}"  # l6, the first level past a million values
    # Aliases that add little are read as before.
    path.write_text(_YAML_OP.format(extra="x:\n" + "\n".join(levels[:3]) + "\n",
                                    schema="{type: array, default: *l2}"))
    (spec,) = load(path)
    assert spec.parameter("q").default == [[["lol"] * 9] * 9] * 9


def test_deeply_nested_json_is_one_error(tmp_path):
    path = tmp_path / "deep.json"
    path.write_text("[" * 100_000 + "]" * 100_000)
    with pytest.raises(GrammarError, match="nested too deeply"):
        load(path)


def test_a_byte_order_mark_is_read_and_huge_integers_are_one_error(tmp_path):
    tool = [{"type": "function", "function": {"name": "f", "parameters": {
        "type": "object", "properties": {"n": {"type": "integer", "default": 1}}}}}]
    bom = tmp_path / "bom.json"
    bom.write_bytes(b"\xef\xbb\xbf" + json.dumps(tool).encode())
    assert [s.name for s in load(bom)] == ["f"]
    big = tmp_path / "big.json"
    big.write_text(json.dumps(tool).replace('"default": 1', '"default": ' + "9" * 5000))
    with pytest.raises(GrammarError, match="big.json: invalid JSON: .*4300 digits"):
        load(big)


def test_errors_in_a_python_api_file_name_the_file(tmp_path):
    path = tmp_path / "api.py"
    path.write_text('def f(x: "Undefined[int]"):\n    """Doc."""\n')
    with pytest.raises(GrammarError, match=f"{re.escape(str(path))}:1 \\(f\\): cannot resolve the type hints"):
        load(path)


def test_operation_errors_are_located_and_skipped_with_a_warning():
    doc = {"openapi": "3.0.0", "paths": {
        "/a": {"get": {"operationId": "a", "parameters": [{"name": "q", "in": "query"}]}},
        "/b": {"get": {"operationId": "b", "parameters": [{"name": "r", "in": "query",
                                                              "schema": {"$ref": "#/components/schemas/Nope"}}]}},
        "/c": {"get": {"operationId": "c"}},
    }}
    with pytest.warns(GrammarWarning) as record:
        specs = load(doc)
    assert [s.name for s in specs] == ["c"]
    messages = [str(w.message) for w in record]
    assert any("#/paths/~1a/get/parameters/0" in m and "no schema" in m for m in messages), messages
    assert any("#/paths/~1b/get/parameters/0/schema" in m and "does not resolve" in m for m in messages), messages
    with pytest.raises(GrammarError, match="no schema"):
        load(doc, strict=True)


def test_function_selection_errors_suggest_names():
    with pytest.raises(GrammarError, match="did you mean listPets"):
        load(PETSTORE, functions=["listPet"])
    assert [s.name for s in load(PETSTORE, functions=["create-pet", "listPets"])] == ["create_pet", "listPets"]


def test_reserved_and_duplicate_names():
    spec = FunctionSpec("no_relevant_function")
    with pytest.raises(GrammarError, match="reserved"):
        to_lark([spec])
    assert "no_relevant_function" in to_lark([spec], include_no_relevant=False)
    with pytest.raises(GrammarError, match="duplicate"):
        to_lark([FunctionSpec("f"), FunctionSpec("f")])
    with pytest.raises(ValueError):
        FunctionSpec("not valid")


# ----------------------------------------------------------------------------- CLI

def test_cli_prints_grammar(tmp_path, capsys):
    path = tmp_path / "pets.json"
    path.write_text(json.dumps(PETSTORE))
    assert grammar_command([str(path), "--style", "json", "--functions", "listPets"]) == 0
    out = capsys.readouterr().out
    lark_parser(out).parse('{"name": "listPets", "arguments": {"status": "sold"}}')


@pytest.mark.parametrize("argv, needle", [
    (["missing.json"], "no such file"),
    (["{path}", "--style", "xml"], "invalid choice"),
    (["{path}", "--functions", "nope"], "no function named"),
    (["{path}", "--strict"], "strict mode"),
    (["{path}", "--max-depth", "-1"], "max_depth"),
])
def test_cli_errors_are_one_line_with_exit_code_2(tmp_path, capsys, argv, needle):
    path = tmp_path / "pets.json"
    doc = json.loads(json.dumps(PETSTORE))
    doc["paths"]["/pets"]["get"]["parameters"][0]["schema"]["multipleOf"] = 3
    path.write_text(json.dumps(doc))
    code = grammar_command([a.replace("{path}", str(path)) for a in argv])
    err = capsys.readouterr().err
    assert code == 2
    assert len(err.strip().splitlines()) == 1 and needle in err, err


# ----------------------------------------------------------------------------- user grammars

SHELL_GRAMMAR = r"""
// a shell-like call syntax built on Octogram's common terminals
%import octogram_common (STRING, INT, IDENTIFIER)
start: IDENTIFIER (" " option)*
option: "--" IDENTIFIER " " value
value: STRING | INT
"""


def test_user_grammar_imports_common_terminals():
    parser = lark.Lark(SHELL_GRAMMAR, start="start", parser="earley", lexer="dynamic",
                       import_paths=[COMMON_LARK_DIR])
    parser.parse('send_email --to "a@b.c" --retries 3')
    with pytest.raises(lark.exceptions.LarkError):
        parser.parse("send_email --to 'a@b.c'")


def test_common_terminals_match_the_generated_ones():
    # the file is the single source: generated grammars copy its definitions verbatim
    common = open(f"{COMMON_LARK_DIR}/octogram_common.lark").read()
    grammar = to_lark([FunctionSpec("f", parameters=(Parameter("s", {"type": "string"}),))])
    string_line = next(line for line in grammar.splitlines() if line.startswith("STRING:"))
    assert string_line in common
    parser = lark_parser(grammar)
    for s in ['', 'a"b', "\\", "\n\t\x01", "é😀", "\u2028"]:
        assert accepts(parser, f"f(s={json.dumps(s, ensure_ascii=False)})"), repr(s)
    for raw in ['"\n"', '"\\q"', '"\\u0041"', '"a"b"']:
        assert not accepts(parser, f"f(s={raw})"), raw


def test_no_relevant_function_signature():
    assert NO_RELEVANT_FUNCTION.to_python_stub().startswith("def no_relevant_function(query: str):")
    (call,) = parse_call('no_relevant_function(query="hi")', [])
    assert call.arguments == {"query": "hi"}
    text = sample_call(NO_RELEVANT_FUNCTION, random.Random(0), "json")
    assert json.loads(text)["name"] == "no_relevant_function"


def test_tool_export_round_trips():
    (spec,) = load(PETSTORE, functions=["create-pet"])
    tool = spec.to_tool()
    assert tool["function"]["parameters"]["$defs"]
    (again,) = load(tool)
    grammar_a = _quiet(to_lark, [spec]).splitlines()[1:]
    grammar_b = _quiet(to_lark, [again]).splitlines()[1:]
    parser_b = lark_parser("\n".join(grammar_b))
    rng = random.Random(3)
    for _ in range(20):
        assert accepts(parser_b, sample_call(spec, rng))
    assert len(grammar_a) == len(grammar_b)


def test_readme_grammars_examples_run():
    """The Python examples of the README's grammars section run as written."""
    from pathlib import Path
    import re
    readme = (Path(__file__).resolve().parent.parent / "README.md").read_text()
    section = readme.split("## Grammars:", 1)[1].split("\n## ", 1)[0]
    blocks = re.findall(r"```python\n(.*?)```", section, flags=re.S)
    assert len(blocks) == 2
    for block in blocks:
        exec(compile(block, "<README>", "exec"), {})


def test_yaml_swagger_and_python_file_sources(tmp_path):
    api = tmp_path / "api.yml"
    api.write_text(textwrap.dedent("""\
        swagger: "2.0"
        info: {title: t, version: "1"}
        paths:
          /events:
            get:
              operationId: listEvents
              parameters:
                - {name: since, in: query, type: string, format: date, enum: [2024-01-01, 2024-02-01]}
                - {name: limit, in: query, type: integer, maximum: 10}
        """))
    (spec,) = load(api)
    assert spec.parameter("since").schema["enum"] == ["2024-01-01", "2024-02-01"]  # dates stay strings
    parser = lark_parser(to_lark([spec]))
    assert accepts(parser, 'listEvents(since="2024-02-01", limit=10)')
    assert not accepts(parser, 'listEvents(limit=11)')
    module = tmp_path / "tools.py"
    module.write_text(textwrap.dedent('''\
        def turn_on(device: str, level: int = 100):
            """Turn a device on."""

        def _private():
            pass

        def turn_off(device: str):
            """Turn a device off."""
        '''))
    specs = load(module)
    assert [s.name for s in specs] == ["turn_on", "turn_off"]
    assert specs[0].description == "Turn a device on."
    broken = tmp_path / "broken.py"
    broken.write_text("raise RuntimeError('boom')\n")
    with pytest.raises(GrammarError, match="importing the file failed: RuntimeError: boom"):
        load(broken)


def test_corpus_unavailable_without_npm(tmp_path, monkeypatch):
    from benchmarks import corpus
    monkeypatch.setenv("OCTOGRAM_CACHE_DIR", str(tmp_path))
    monkeypatch.setenv("PATH", str(tmp_path))  # no npm on it
    with pytest.raises(corpus.CorpusUnavailable, match="npm"):
        corpus.openapi_corpus_dir()


def test_many_functions_share_one_grammar_without_mixing_them_up():
    # each function's value types are built and dropped in turn; none may leak into another
    specs = [FunctionSpec(f"f{i}", parameters=(Parameter("x", {"type": "string", "pattern": f"^a{{{i + 1}}}$"}),
                                               Parameter("y", {"enum": [i, -i - 1]})))
             for i in range(40)]
    parser = lark_parser(to_lark(specs))
    for i in range(40):
        assert accepts(parser, f'f{i}(x="{"a" * (i + 1)}", y={i})')
        assert not accepts(parser, f'f{i}(x="{"a" * (i + 2)}", y={i})')
        assert not accepts(parser, f'f{i}(x="{"a" * (i + 1)}", y={i + 1})')
    assert accepts(parser, 'no_relevant_function(query="x")')


def test_writer_never_confuses_a_freed_node_with_a_new_one():
    from octogram.grammars import patterns
    from octogram.grammars.generate import _Emitter
    from octogram.grammars.ir import Str
    emitter = _Emitter("python", 64)
    # each node is dropped right after use; CPython then hands its address to the next one
    names = [emitter.expr(Str(patterns.full_match(patterns.parse(f"^a{{{i + 1}}}$"))), f"h{i}") for i in range(50)]
    assert len(set(names)) == 50
