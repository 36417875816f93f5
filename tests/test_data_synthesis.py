"""Training examples synthesized from API documents (octopus_models/data/synthesis.py).

A hand-written pets document always; about 20 real documents of the OpenAPI corpus when its
cache is already there (the test does not fetch it: run
`python -c "from benchmarks.corpus import openapi_corpus_dir; openapi_corpus_dir()"` once).
"""

from __future__ import annotations

import json
import random
from collections import Counter
from collections.abc import Mapping

import pytest

from octogram.grammars import load
from octogram.octopus_models.data.record import validate
from octogram.octopus_models.data.synthesis import intent_of, openapi_documents, synthesize

PETS = {
    "openapi": "3.0.0",
    "info": {"title": "Pets", "version": "1"},
    "paths": {
        "/pets": {
            "get": {
                "operationId": "listPets", "summary": "List all pets",
                "parameters": [
                    {"name": "limit", "in": "query",
                     "schema": {"type": "integer", "minimum": 1, "maximum": 100}},
                    {"name": "status", "in": "query",
                     "schema": {"type": "string", "enum": ["available", "pending", "sold"]}},
                ],
            },
            "post": {
                "operationId": "createPet", "description": "Creates a new pet in the store.",
                "parameters": [{"name": "kind", "in": "query", "required": True,
                                "schema": {"type": "string", "enum": ["pet"]}}],
                "requestBody": {"required": True, "content": {"application/json": {
                    "schema": {"$ref": "#/components/schemas/NewPet"}}}},
            },
        },
        "/pets/{petId}": {
            "get": {"operationId": "getPet", "summary": "Info for a specific pet",
                    "parameters": [{"name": "petId", "in": "path", "required": True,
                                    "schema": {"type": "string"}}]},
        },
        "/op": {"get": {"operationId": "op12"}},
    },
    "components": {"schemas": {"NewPet": {
        "type": "object", "required": ["name"],
        "properties": {"name": {"type": "string", "example": "Fluffy"}, "tag": {"type": "string"},
                       "birthDate": {"type": "string", "format": "date"},
                       "owner": {"type": "object", "properties": {"email": {"type": "string"}}}}}}},
}


def _schema(spec, name) -> Mapping:
    schema = spec.parameter(name).schema
    for _ in range(10):
        if isinstance(schema, Mapping) and isinstance(schema.get("$ref"), str):
            schema = spec.defs[schema["$ref"]]
    return schema if isinstance(schema, Mapping) else {}


def _constant(spec, name) -> bool:
    schema = _schema(spec, name)
    return "const" in schema or (isinstance(schema.get("enum"), list) and len(schema["enum"]) == 1)


def _texts(value) -> list[str]:
    if isinstance(value, list):
        return [t for v in value for t in _texts(v)]
    if isinstance(value, bool):
        return ["true" if value else "false"]
    return [str(value)]


def _check(examples) -> None:
    """Every gold call validates under its candidates and every value is written in the query."""
    for ex in examples:
        assert validate(ex).calls == ex.calls
        assert ex.source == "synthetic" and ex.meta == {"kind": "synthetic"}
        (call,) = ex.calls
        spec = next(f for f in ex.functions if f.name == call.name)
        for name, value in call.arguments.items():
            if _constant(spec, name):
                continue  # a single allowed value is in the signature, not the query
            for text in _texts(value):
                assert text in ex.query, f"{text!r} missing from {ex.query!r} ({call.to_text()})"


def _phrasings(examples) -> set[str]:
    """The template of each query, roughly: its first two words."""
    return {" ".join(ex.query.split()[:2]) for ex in examples}


@pytest.fixture()
def pets_dir(tmp_path):
    (tmp_path / "pets.json").write_text(json.dumps(PETS))
    return tmp_path


def test_pets_examples(pets_dir):
    dropped = Counter()
    ((api, specs),) = list(openapi_documents(pets_dir, dropped=dropped))
    assert api == "openapi/pets"
    assert [s.name for s in specs] == ["listPets", "createPet", "getPet"]
    assert dropped["no description and non-descriptive name"] == 1  # op12
    out = synthesize(specs, api, random.Random(0), per_function=8)
    assert len(out.examples) >= 18, out.dropped
    _check(out.examples)
    assert len(_phrasings(out.examples)) >= 3
    by_name = {}
    for ex in out.examples:
        by_name.setdefault(ex.calls[0].name, []).append(ex.calls[0].arguments)
    assert set(by_name) == {"listPets", "createPet", "getPet"}
    for args in by_name["listPets"]:
        assert 1 <= args.get("limit", 1) <= 100
        assert args.get("status", "sold") in ("available", "pending", "sold")
    assert all(isinstance(a["petId"], str) and a["petId"] for a in by_name["getPet"])
    for args in by_name["createPet"]:
        assert args["kind"] == "pet" and args["name"] and "owner" not in args
    assert any("limit" in a or "status" in a for a in by_name["listPets"])
    # the function is offered among the others of its document
    assert all(len(ex.functions) == 3 for ex in out.examples)


def test_complex_required_argument_is_dropped():
    doc = json.loads(json.dumps(PETS))
    doc["components"]["schemas"]["NewPet"]["required"] = ["name", "owner"]
    specs = load(doc)
    out = synthesize(specs, "openapi/pets", random.Random(0), per_function=3)
    assert out.dropped["complex required argument"] == 3
    assert "createPet" not in {ex.calls[0].name for ex in out.examples}
    assert out.dropped["no description and non-descriptive name"] == 3  # op12, offered directly


def test_intents():
    specs = {s.name: s for s in load(PETS)}
    assert intent_of(specs["listPets"]) == "list all pets"
    assert intent_of(specs["createPet"]) == "create a new pet in the store"
    assert intent_of(specs["getPet"]) == "get the info for a specific pet"
    assert intent_of(specs["op12"]) is None
    from dataclasses import replace
    pets = specs["listPets"]
    assert intent_of(replace(pets, description="Returns a list of pets. More text here.")) == "get a list of pets"
    assert intent_of(replace(pets, description="")) == "list pets"
    assert intent_of(replace(pets, description="<p>This endpoint **retrieves** the pets.</p>")) == "retrieve the pets"


def test_deterministic(pets_dir):
    specs = load(PETS)
    a = synthesize(specs, "openapi/pets", random.Random(7), per_function=5)
    b = synthesize(specs, "openapi/pets", random.Random(7), per_function=5)
    assert [(e.query, e.calls[0].to_text(), [f.name for f in e.functions]) for e in a.examples] == \
           [(e.query, e.calls[0].to_text(), [f.name for f in e.functions]) for e in b.examples]
    c = synthesize(specs, "openapi/pets", random.Random(8), per_function=5)
    assert [e.query for e in a.examples] != [e.query for e in c.examples]


# optional parameters, enums (a string enum, an array whose items are an enum, an enum on the
# array itself), name words the word bank keys on, and a shared schema of the document
SHOP = {
    "openapi": "3.0.0",
    "info": {"title": "Shop", "version": "1"},
    "paths": {
        "/orders": {"get": {
            "operationId": "listOrders", "summary": "Retrieve a list of orders for the specified customer",
            "parameters": [
                {"name": "X-Customer-Id", "in": "header", "schema": {"type": "string"}},
                {"name": "status", "in": "query", "schema": {"type": "string", "enum": ["open", "closed", "void"]}},
                {"name": "tags", "in": "query", "schema": {"type": "array", "items": {
                    "type": "string", "enum": ["gift", "express", "bulk"]}}},
                {"name": "includes", "in": "query", "schema": {"type": "array", "enum": ["addons", "relations"],
                                                               "items": {"type": "string"}}},
                {"name": "city", "in": "query", "schema": {"type": "string"}},
                {"name": "sort", "in": "query", "schema": {"type": "string", "default": "-createdAt",
                                                           "enum": ["createdAt", "-createdAt"]}},
                {"name": "offset", "in": "query", "schema": {"type": "integer", "default": 0}},
                {"name": "limit", "in": "query", "schema": {"type": "integer", "minimum": 1, "maximum": 500}},
                {"name": "since", "in": "query", "schema": {"type": "string", "format": "date"}},
            ]}},
        "/orders/{orderId}": {"get": {
            "operationId": "getOrder", "description": "Returns one order.",
            "parameters": [
                {"name": "orderId", "in": "path", "required": True, "schema": {"type": "string"}},
                {"name": "currency", "in": "query", "schema": {"$ref": "#/components/schemas/Currency"}},
                {"name": "verbose", "in": "query", "schema": {"type": "boolean"}},
            ]}},
        "/customers": {"post": {
            "operationId": "createCustomer", "summary": "Create a customer",
            "parameters": [
                {"name": "email", "in": "query", "required": True, "schema": {"type": "string", "format": "email"}},
                {"name": "language", "in": "query", "schema": {"type": "string", "enum": ["en", "fr", "de"]}},
                {"name": "currency", "in": "query", "schema": {"$ref": "#/components/schemas/Currency"}},
                {"name": "phone", "in": "query", "schema": {"type": "string", "pattern": "^\\+[0-9]{8,14}$"}},
            ]}},
    },
    "components": {"schemas": {"Currency": {"type": "string", "enum": ["USD", "EUR", "GBP", "JPY"]}}},
}

_SUBPROCESS = """
import json, random, sys
from octogram.grammars import load
from octogram.octopus_models.data.synthesis import synthesize
docs = json.loads(sys.stdin.read())
out = {}
for name in sys.argv[1:]:  # in the order given, one rng for each document
    part = synthesize(load(docs[name]), name, random.Random(3), per_function=6)
    out[name] = [(e.query, e.calls[0].to_text(), [f.name for f in e.functions]) for e in part.examples]
print(json.dumps(out))
"""


def _synthesized_in_subprocess(hash_seed: str, names: list[str], docs: dict) -> dict:
    import os
    import subprocess
    import sys
    env = {**os.environ, "PYTHONHASHSEED": hash_seed}
    done = subprocess.run([sys.executable, "-c", _SUBPROCESS, *names], input=json.dumps(docs), env=env,
                          capture_output=True, text=True, timeout=300, check=True)
    return json.loads(done.stdout)


def test_deterministic_across_processes():
    """The same seed gives the same examples whatever the process's hash seed, and a document's
    examples do not depend on which documents the process synthesized before it."""
    docs = {"shop": SHOP, "pets": PETS}
    a = _synthesized_in_subprocess("0", ["shop", "pets"], docs)
    b = _synthesized_in_subprocess("12345", ["pets", "shop"], docs)
    assert a["shop"] and a["pets"]
    assert a == b
    names = {ex[1].split("(")[0] for ex in a["shop"]}
    assert {"listOrders", "getOrder", "createCustomer"} <= names


@pytest.fixture(scope="module")
def corpus_dir():
    from benchmarks.corpus import PACKAGE, VERSION, cache_dir
    folder = cache_dir() / f"{PACKAGE}-{VERSION}"
    if not (folder / ".complete").exists():
        pytest.skip(f"the OpenAPI corpus is not in the cache ({folder}); fetch it with "
                    "benchmarks.corpus.openapi_corpus_dir()")
    return folder


def test_corpus_documents(corpus_dir):
    dropped = Counter()
    docs = list(openapi_documents(corpus_dir, limit=20, rng=random.Random(0), dropped=dropped))
    assert len(docs) == 20
    assert all(api.startswith("openapi/") for api, _ in docs)
    again = [api for api, _ in openapi_documents(corpus_dir, limit=20, rng=random.Random(0))]
    assert again == [api for api, _ in docs]
    total = 0
    for api, specs in docs:
        out = synthesize(specs[:40], api, random.Random(api), per_function=2)
        _check(out.examples)
        total += len(out.examples)
        assert all(ex.api == api for ex in out.examples)
        if len(out.examples) >= 10:
            assert len(_phrasings(out.examples)) >= 3, [ex.query for ex in out.examples]
        if api == docs[0][0]:
            twice = synthesize(specs[:40], api, random.Random(api), per_function=2)
            assert [e.query for e in twice.examples] == [e.query for e in out.examples]
    assert total >= 200
