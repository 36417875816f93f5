"""Calls in the API's own names, and the HTTP requests OpenAPI calls stand for, checked against a
real HTTP server on 127.0.0.1 that records what it receives."""

from __future__ import annotations

import json
import threading
import time
import urllib.request
from contextlib import contextmanager
from email.parser import BytesParser
from email.policy import HTTP
from http.cookies import SimpleCookie
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, unquote, urlsplit

import pytest

from octogram.grammars import FunctionCall, GrammarError, HttpRequest, load, parse_call
from octogram.grammars.api_names import argument_keys

TOOLS = [
    {"type": "function", "function": {"name": "math.gcd", "description": "Greatest common divisor.",
     "parameters": {"type": "object", "required": ["a", "b"],
                    "properties": {"a": {"type": "integer"}, "b": {"type": "integer"},
                                   "first-name": {"type": "string"}}}}},
    {"type": "function", "function": {"name": "currency_conversion.convert",
     "parameters": {"type": "object", "required": ["from"],
                    "properties": {"from": {"type": "string"}, "to": {"type": "string"}}}}},
]

PETS = {
    "openapi": "3.0.3",
    "servers": [{"url": "https://{region}.pets.example/v{major}",
                 "variables": {"region": {"default": "eu"}, "major": {"default": "2"}}}],
    "paths": {
        "/stores/{store-id}/pets/{id}": {
            "parameters": [{"name": "store-id", "in": "path", "required": True,
                            "schema": {"type": "string"}}],
            "put": {
                "operationId": "pets.update",
                "parameters": [
                    {"name": "id", "in": "path", "required": True, "schema": {"type": "string"}},
                    {"name": "id", "in": "query", "schema": {"type": "integer"}},
                    {"name": "tags", "in": "query", "schema": {"type": "array", "items": {"type": "string"}}},
                    {"name": "X-Request-Id", "in": "header", "schema": {"type": "string"}},
                    {"name": "session", "in": "cookie", "schema": {"type": "string"}},
                ],
                "requestBody": {"required": True, "content": {"application/json": {"schema": {
                    "type": "object", "required": ["name"],
                    "properties": {"name": {"type": "string"}, "id": {"type": "integer"},
                                   "owner": {"type": "object", "properties": {"email": {"type": "string"}}},
                                   "created": {"type": "string", "readOnly": True}}}}}},
                "responses": {"200": {"description": "ok"}},
            },
        },
        "/search": {"get": {
            "operationId": "search",
            "parameters": [
                {"name": "q", "in": "query", "required": True, "schema": {"type": "string"}},
                {"name": "ids", "in": "query", "style": "pipeDelimited", "explode": False,
                 "schema": {"type": "array", "items": {"type": "integer"}}},
                {"name": "words", "in": "query", "style": "spaceDelimited", "explode": False,
                 "schema": {"type": "array", "items": {"type": "string"}}},
                {"name": "filter", "in": "query", "style": "deepObject", "explode": True,
                 "schema": {"type": "object", "properties": {"color": {"type": "string"},
                                                             "size": {"type": "integer"}}}},
                {"name": "exact", "in": "query", "schema": {"type": "boolean"}},
                {"name": "X-Tags", "in": "header", "schema": {"type": "array", "items": {"type": "string"}}},
            ],
            "responses": {"200": {"description": "ok"}},
        }},
        "/points/{coords}/{kind}": {"get": {
            "operationId": "point",
            "parameters": [
                {"name": "coords", "in": "path", "required": True, "style": "matrix", "explode": True,
                 "schema": {"type": "array", "items": {"type": "number"}}},
                {"name": "kind", "in": "path", "required": True, "style": "label",
                 "schema": {"type": "string"}},
            ],
            "responses": {"200": {"description": "ok"}},
        }},
        "/login": {"post": {
            "operationId": "login",
            "requestBody": {"content": {"application/x-www-form-urlencoded": {"schema": {
                "type": "object", "properties": {"user": {"type": "string"}, "scopes": {
                    "type": "array", "items": {"type": "string"}}, "remember": {"type": "boolean"}}}}}},
            "responses": {"200": {"description": "ok"}},
        }},
        "/upload": {"post": {
            "operationId": "upload",
            "requestBody": {"content": {"multipart/form-data": {"schema": {
                "type": "object", "properties": {"title": {"type": "string"},
                                                 "notes": {"type": "string"}}}}}},
            "responses": {"200": {"description": "ok"}},
        }},
        "/batch": {"post": {
            "operationId": "batch",
            "requestBody": {"content": {"application/json": {"schema": {
                "type": "array", "items": {"type": "integer"}}}}},
            "responses": {"200": {"description": "ok"}},
        }},
    },
}

SWAGGER = {
    "swagger": "2.0", "host": "api.example.com", "basePath": "/v1", "schemes": ["http"],
    "paths": {"/items": {"post": {
        "operationId": "add_item",
        "consumes": ["application/x-www-form-urlencoded"],
        "parameters": [
            {"name": "ids", "in": "query", "type": "array", "items": {"type": "integer"}},
            {"name": "all", "in": "query", "type": "array", "items": {"type": "integer"},
             "collectionFormat": "multi"},
            {"name": "label", "in": "formData", "type": "string", "required": True},
        ],
        "responses": {"200": {"description": "ok"}},
    }}},
}


def _spec(specs, api_name):
    return next(s for s in specs if (s.api_name or s.name) == api_name)


# ----------------------------------------------------------------------------- API names

def test_calls_come_back_in_the_apis_own_names():
    specs = load(TOOLS)
    assert [s.name for s in specs] == ["math_gcd", "currency_conversion_convert"]
    (call,) = parse_call('math_gcd(a=12, b=18, first_name="Ann")', specs)
    api = call.to_api(specs)
    assert api == FunctionCall("math.gcd", {"a": 12, "b": 18, "first-name": "Ann"})
    assert api.to_text() == 'math.gcd(a=12, b=18, first-name="Ann")'
    (call,) = parse_call('currency_conversion_convert(from_="USD", to="EUR")', specs)
    assert call.to_api(specs) == FunctionCall("currency_conversion.convert", {"from": "USD", "to": "EUR"})
    assert call.to_api(specs).to_api(specs) == call.to_api(specs)  # already API-named: unchanged
    (none,) = parse_call('no_relevant_function(query="hi")', specs)
    assert none.to_api(specs) == none


def test_parameters_sharing_an_api_name_are_keyed_by_location():
    spec = _spec(load(PETS), "pets.update")
    assert argument_keys(spec) == {"store_id": "store-id", "id": "path:id", "id_2": "query:id",
                                   "tags": "tags", "X_Request_Id": "X-Request-Id",
                                   "session": "session", "name": "name", "id_3": "body:id",
                                   "owner": "owner"}
    call = FunctionCall("pets_update", {"store_id": "s1", "id": "p/1", "id_2": 3, "name": "Rex", "id_3": 9})
    api = call.to_api([spec])
    assert api == FunctionCall("pets.update", {"store-id": "s1", "path:id": "p/1", "query:id": 3,
                                               "name": "Rex", "body:id": 9})
    assert api.to_request(spec) == call.to_request(spec)


def test_a_call_whose_keys_read_two_ways_is_refused():
    # "x_y" is the grammar's name of "x-y" and the API's name of the second parameter
    (spec,) = load([{"name": "f", "parameters": {"type": "object", "properties": {
        "x-y": {"type": "string"}, "x_y": {"type": "string"}}}}])
    assert [(p.name, p.api_name) for p in spec.parameters] == [("x_y", "x-y"), ("x_y_2", "x_y")]
    assert FunctionCall("f", {"x_y": "a", "x_y_2": "b"}).to_api(spec).arguments == {"x-y": "a", "x_y": "b"}
    with pytest.raises(GrammarError, match="read differently"):
        FunctionCall("f", {"x_y": "a"}).to_api(spec)
    with pytest.raises(GrammarError, match="unknown argument 'z'"):
        FunctionCall("f", {"z": 1}).to_api(spec)
    with pytest.raises(GrammarError, match="unknown function 'g'"):
        FunctionCall("g", {}).to_api(spec)


# ----------------------------------------------------------------------------- requests

def test_request_places_every_argument():
    specs = load(PETS)
    spec = _spec(specs, "pets.update")
    assert spec.server == "https://eu.pets.example/v2" and spec.media_type == "application/json"
    (call,) = parse_call('pets_update(store_id="north side", id="a/b?c", id_2=7, tags=["x y", "z&w"], '
                         'X_Request_Id="r-1", session="s=1; 2", name="Rex é", owner={"email": "a@b.c"}, '
                         'id_3=9)', specs)
    request = call.to_request(spec)
    assert request == HttpRequest(
        "PUT", "https://eu.pets.example/v2/stores/north%20side/pets/a%2Fb%3Fc?id=7&tags=x%20y&tags=z%26w",
        {"X-Request-Id": "r-1", "Cookie": "session=s=1%3B%202",
         "Content-Type": "application/json"},
        '{"name":"Rex é","id":9,"owner":{"email":"a@b.c"}}'.encode(), {"session": "s=1; 2"})
    assert request.to_dict()["body"] == '{"name":"Rex é","id":9,"owner":{"email":"a@b.c"}}'
    assert request.to_text().splitlines()[0].startswith("PUT https://eu.pets.example/v2/stores/")
    # base_url replaces the document's server
    assert call.to_request(spec, base_url="http://127.0.0.1:9/api/").url.startswith(
        "http://127.0.0.1:9/api/stores/north%20side/")


def test_request_styles():
    specs = load(PETS)
    search = _spec(specs, "search")
    call = FunctionCall("search", {"q": "a+b c", "ids": [1, 2], "words": ["x", "y"],
                                   "filter": {"color": "red", "size": 3}, "exact": True,
                                   "X_Tags": ["a", "b"]})
    request = call.to_request(search)
    assert request.url == ("https://eu.pets.example/v2/search?q=a%2Bb%20c&ids=1|2&words=x%20y"
                           "&filter[color]=red&filter[size]=3&exact=true")
    assert request.headers == {"X-Tags": "a,b"} and request.body is None
    point = FunctionCall("point", {"coords": [1.5, -2.0], "kind": "city"}).to_request(_spec(specs, "point"))
    assert point.url == "https://eu.pets.example/v2/points/;coords=1.5;coords=-2.0/.city"
    batch = FunctionCall("batch", {"body": [1, 2]}).to_request(_spec(specs, "batch"))
    assert batch.body == b"[1,2]" and batch.headers["Content-Type"] == "application/json"
    login = FunctionCall("login", {"user": "ann b", "scopes": ["r", "w"], "remember": False})
    form = login.to_request(_spec(specs, "login"))
    assert form.body == b"user=ann+b&scopes=r&scopes=w&remember=false"
    assert form.headers == {"Content-Type": "application/x-www-form-urlencoded"}
    (swagger,) = load(SWAGGER)
    assert swagger.server == "http://api.example.com/v1"
    sent = FunctionCall("add_item", {"ids": [1, 2], "all": [3, 4], "label": "x"}).to_request(swagger)
    assert sent.url == "http://api.example.com/v1/items?ids=1,2&all=3&all=4"  # csv, multi
    assert sent.body == b"label=x" and sent.method == "POST"


def test_request_refuses_what_cannot_be_sent():
    specs = load(PETS)
    spec = _spec(specs, "pets.update")
    with pytest.raises(GrammarError, match="line break"):
        FunctionCall("pets_update", {"store_id": "s", "id": "1", "name": "n",
                                     "X_Request_Id": "a\r\nEvil: 1"}).to_request(spec)
    with pytest.raises(GrammarError, match="path parameter 'id' has no value"):
        FunctionCall("pets_update", {"store_id": "s", "name": "n"}).to_request(spec)
    with pytest.raises(GrammarError, match="not an HTTP operation"):
        FunctionCall("math_gcd", {"a": 1, "b": 2}).to_request(load(TOOLS)[0])
    relative = dict(PETS, servers=[{"url": "/v2"}])
    with pytest.raises(GrammarError, match="pass base_url"):
        FunctionCall("search", {"q": "x"}).to_request(_spec(load(relative), "search"))
    assert FunctionCall("search", {"q": "x"}).to_request(
        _spec(load(relative), "search"), base_url="http://127.0.0.1:1").url == "http://127.0.0.1:1/search?q=x"


# ----------------------------------------------------------------------------- a real server

@contextmanager
def recording_server(limit_s: float = 30.0):
    """An HTTP server on 127.0.0.1 (a free port) that records each request it receives and
    answers 204; it serves until the block ends or `limit_s` passes, whichever is first."""
    seen: list[dict] = []

    class Recorder(BaseHTTPRequestHandler):
        def _record(self):
            length = int(self.headers.get("Content-Length") or 0)
            seen.append({"method": self.command, "target": self.path,
                         "headers": self.headers, "body": self.rfile.read(length)})
            self.send_response(204)
            self.end_headers()

        do_GET = do_POST = do_PUT = do_DELETE = do_PATCH = _record

        def log_message(self, *args):  # keep the test output quiet
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Recorder)
    server.timeout = 0.1
    stop = threading.Event()
    deadline = time.monotonic() + limit_s

    def serve():
        while not stop.is_set() and time.monotonic() < deadline:
            server.handle_request()

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}", seen
    finally:
        stop.set()
        thread.join(timeout=5)
        server.server_close()


def _send(request: HttpRequest) -> int:
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))  # never a proxy
    with opener.open(request.to_urllib(), timeout=10) as response:
        return response.status


def test_the_server_receives_the_request_the_call_describes():
    specs = load(PETS)
    calls = [
        ("pets.update", 'pets_update(store_id="north side", id="a/b?c", id_2=7, tags=["x y", "z&w"], '
                        'X_Request_Id="r-1", session="s=1; 2", name="Rex é", id_3=9)'),
        ("search", 'search(q="a+b c", ids=[1, 2], filter={"color": "red", "size": 3}, exact=False)'),
        ("login", 'login(user="ann b", scopes=["r", "w"], remember=True)'),
        ("upload", 'upload(title="T\\"1", notes="line 1\\nline 2")'),
    ]
    with recording_server() as (base, seen):
        requests = []
        for api_name, text in calls:
            (call,) = parse_call(text, specs)
            request = call.to_api(specs).to_request(_spec(specs, api_name), base_url=base + "/api")
            assert _send(request) == 204
            requests.append(request)
    assert len(seen) == len(requests)
    for request, got in zip(requests, seen):
        url = urlsplit(request.url)
        assert got["method"] == request.method
        assert got["target"] == url.path + (f"?{url.query}" if url.query else "")
        for name, value in request.headers.items():
            assert got["headers"][name] == value, name
        assert got["body"] == (request.body or b"")
    # and what the server reads from it is what the calls said
    update, search, login, upload = seen
    assert [unquote(s) for s in urlsplit(update["target"]).path.split("/")] == \
        ["", "api", "stores", "north side", "pets", "a/b?c"]
    assert parse_qs(urlsplit(update["target"]).query) == {"id": ["7"], "tags": ["x y", "z&w"]}
    assert update["headers"]["X-Request-Id"] == "r-1"
    assert unquote(SimpleCookie(update["headers"]["Cookie"])["session"].value) == "s=1; 2"
    assert json.loads(update["body"]) == {"name": "Rex é", "id": 9}
    assert parse_qs(urlsplit(search["target"]).query) == {
        "q": ["a+b c"], "ids": ["1|2"], "filter[color]": ["red"], "filter[size]": ["3"], "exact": ["false"]}
    assert parse_qs(login["body"].decode()) == {"user": ["ann b"], "scopes": ["r", "w"], "remember": ["true"]}
    message = BytesParser(policy=HTTP).parsebytes(
        b"Content-Type: " + upload["headers"]["Content-Type"].encode() + b"\r\n\r\n" + upload["body"])
    fields = {part.get_param("name", header="content-disposition"): part.get_content()
              for part in message.iter_parts()}
    assert fields == {"title": 'T"1', "notes": "line 1\nline 2"}
