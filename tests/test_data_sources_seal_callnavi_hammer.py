"""The Seal-Tools, CallNavi and HammerBench importers, on the shared upstream files and on tiny
hand-written slices in their formats."""

from __future__ import annotations

import json
import os
from collections import Counter
from pathlib import Path

import pytest

from octogram.octopus_models.data.record import answer_text, validate
from octogram.octopus_models.data.sources import callnavi, hammerbench, seal_tools

DATA = Path(os.environ.get("OCTOGRAM_DATA_DIR")
            or Path(__file__).resolve().parents[1].parent / "shared" / "data" / "function-calling")


def _shared(folder: str) -> Path:
    path = DATA / folder
    if not path.is_dir():
        pytest.skip(f"upstream data folder {path} is absent (set OCTOGRAM_DATA_DIR)")
    return path


def _check(imported, source: str) -> None:
    assert imported.examples
    for example in imported.examples:
        assert example.source == source and example.api.startswith(source + "/") and example.origin
        again = validate(example)  # the canonical answer parses back to the same calls
        assert answer_text(again.calls, again.query) == answer_text(example.calls, example.query)
    assert all(isinstance(cause, str) and cause and n > 0 for cause, n in imported.dropped.items())


def _write(path: Path, data) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    if path.suffix == ".jsonl":
        path.write_text("".join(json.dumps(row) + "\n" for row in data), encoding="utf-8")
    else:
        path.write_text(json.dumps(data), encoding="utf-8")


# ----------------------------------------------------------------------------- real files

@pytest.fixture(scope="module")
def seal():
    return seal_tools.read(_shared("seal-tools"))


@pytest.fixture(scope="module")
def navi():
    return callnavi.read(_shared("callnavi"))


@pytest.fixture(scope="module")
def hammer():
    return hammerbench.read(_shared("hammerbench"))


def test_seal_tools_real(seal):
    _check(seal, "seal-tools")
    calls = Counter(min(e.meta["calls"], 2) for e in seal.examples)
    assert 1700 <= len(seal.examples) <= 2054 and 400 <= calls[1] <= 494 and calls[2] > 1000
    assert seal.dropped["argument refers to an earlier call's output"] > 0
    assert all(len(e.functions) >= len({c.name for c in e.calls}) for e in seal.examples)
    assert sum(len(e.functions) == 5 for e in seal.examples) > 1500  # the finetune candidates
    assert 50 < len({e.api for e in seal.examples}) < 200


def test_callnavi_real(navi):
    _check(navi, "callnavi")
    assert 300 <= len(navi.examples) <= 729
    assert sum(e.meta["calls"] == 1 for e in navi.examples) >= 250
    assert navi.dropped["wildcard value ($$$) in gold"] > 0
    assert len({e.api for e in navi.examples}) == 10  # telecommunications repaired from Dataset/APIs
    assert all(len(e.functions) >= 20 for e in navi.examples)


def test_hammerbench_real(hammer):
    _check(hammer, "hammerbench")
    positives = [e for e in hammer.examples if not e.is_negative]
    negatives = [e for e in hammer.examples if e.is_negative]
    assert 180 <= len(positives) <= 200 and 270 <= len(negatives) <= 300
    assert not any("ST_Imperfect.json" in e.origin and not e.is_negative for e in hammer.examples)
    assert {e.api for e in negatives} <= {e.api for e in positives}


# ----------------------------------------------------------------------------- tiny slices

def test_seal_tools_slice(tmp_path):
    data = tmp_path / "Seal-Tools_Dataset"
    _write(data / "tool.jsonl", [
        {"api_name": "getWeather", "api_description": "Weather", "field": "Science/Meteorology",
         "parameters": {"city": {"type": "str", "description": "City"},
                        "days": {"type": "int", "description": "Days"}},
         "required": ["city"], "responses": {"w": {"type": "str", "description": "w"}}},
        {"api_name": "classifyRock", "api_description": "Rock type", "field": "Science/Geology",
         "parameters": {"type": {"type": "str", "description": "Kind"}}, "required": ["type"],
         "responses": {}},
        {"api_name": "getNews", "api_description": "News", "field": "Media/News",
         "parameters": {}, "required": [], "responses": {}},
    ])
    _write(data / "dev.jsonl", [
        {"id": "dev-easy-0", "query": "Weather in Oslo for 3 days?",
         "calling": [{"api": "getWeather", "parameters": {"city": "Oslo", "days": "3"}, "responses": ["API_call_0"]}]},
        {"id": "dev-hard-1", "query": "Classify granite, then the weather in Rome.",
         "calling": [{"api": "classifyRock", "parameters": {"type": "granite"}, "responses": ["API_call_0"]},
                     {"api": "getWeather", "parameters": {"city": "Rome"}, "responses": ["API_call_1"]}]},
        {"id": "dev-hard-2", "query": "Weather where that rock is.",
         "calling": [{"api": "classifyRock", "parameters": {"type": "basalt"}, "responses": ["API_call_0"]},
                     {"api": "getWeather", "parameters": {"city": "API_call_0"}, "responses": ["API_call_1"]}]},
        {"id": "dev-easy-3", "query": "Stock price?", "calling": [{"api": "getStock", "parameters": {}}]},
        {"id": "dev-easy-4", "query": "Weather, in Celsius.",
         "calling": [{"api": "getWeather", "parameters": {"city": "Oslo", "unit": "C"}}]},
    ])
    prompt = ("Input:\napi_list = [{'api_name': 'getNews', 'parameters': {}}, {'api_name': 'getWeather'},"
              " {'api_name': 'notInToolJsonl'}]\ntask_instruction = \"Weather in Oslo for 3 days?\"\nOutput:\n")
    _write(data / "dataset_for_finetune" / "dev.json",
           [{"id": "dev-easy-0", "conversations": [{"from": "human", "value": prompt}, {"from": "gpt", "value": ""}]}])
    got = seal_tools.read(tmp_path)
    _check(got, "seal-tools")
    assert got.dropped == Counter({"argument refers to an earlier call's output": 1,
                                   "gold function not offered": 1, "unknown argument": 1})
    first, second = got.examples
    assert [f.name for f in first.functions] == ["getWeather", "getNews"]
    assert first.calls[0].arguments == {"city": "Oslo", "days": 3} and first.api == "seal-tools/Science"
    assert [c.name for c in second.calls] == ["classifyRock", "getWeather"] and second.meta == {"calls": 2}
    assert first.origin == "Seal-Tools_Dataset/dev.jsonl:0"


def test_callnavi_slice(tmp_path):
    data = tmp_path / "Dataset"
    schema = {"$schema": "http://json-schema.org/schema#", "type": "object",
              "properties": {"bookingId": {"type": "string"}}, "required": ["bookingId"]}
    _write(data / "APISchema" / "air.json", [
        {"name": "cancelBooking", "description": "Cancel.", "parameters": schema, "returnParameter": {}},
        {"name": "getPassengerName", "description": "Name.", "parameters": schema, "returnParameter": {}},
        {"name": "getNameFromNumber", "description": "Who.", "returnParameter": {},
         "parameters": {"$schema": "http://json-schema.org/schema#", "type": "array", "items": {"type": "string"}}},
    ])
    _write(data / "APIs" / "air.json", {"api_ports": [{"name": "getNameFromNumber", "parameters": ["phoneNumber"]}]})

    def q(text, apis, params):
        return {"id": "air", "question": [{"role": "user", "content": text}],
                "ground_truth": {"API": apis, "parameters": params}, "difficulty": "easy"}

    _write(data / "Questions" / "air.json", [
        q("Cancel booking BNR321.", ["cancelBooking"], [{"bookingId": "BNR321"}]),
        q("Who booked BNR321 and who owns 555-1234?", ["getpassengerName", "getNameFromNumber"],
          [{"bookingId": "BNR321"}, {"phoneNumber": "555-1234"}]),
        q("Cancel my booking.", ["cancelBooking"], [{"bookingId": "$$$"}]),
        q("Cancel BNR321 by mail.", ["cancelBooking"], [{"bookingId": "BNR321", "channel": "mail"}]),
        q("Cancel two bookings.", ["cancelBooking", "cancelBooking"], [{"bookingId": "A"}]),
    ])
    got = callnavi.read(tmp_path)
    _check(got, "callnavi")
    assert got.dropped == Counter({"wildcard value ($$$) in gold": 1, "unknown argument": 1,
                                   "gold API and parameter lists differ in length": 1})
    assert len(got.examples) == 2 and all(len(e.functions) == 3 and e.api == "callnavi/air" for e in got.examples)
    assert [c.name for c in got.examples[1].calls] == ["getPassengerName", "getNameFromNumber"]


def _tool(name, *params):
    return {"name": name, "description": name.split(".")[-1],
            "parameters": {"type": "object", "properties": {p: {"type": "string"} for p in params},
                           "required": list(params)}}


def test_hammerbench_slice(tmp_path):
    folder = tmp_path / "data" / "en" / "single-turn"
    route, taxi, news = (_tool("Navigation.Map.route", "destination"), _tool("Navigation.Taxi.book", "place"),
                         _tool("News.Feed.latest"))

    def row(text, name, args, tools):
        return {"messages": [{"role": "user", "content": text},
                             {"role": "function call", "content": {"name": name, "arguments": args}}],
                "multiple_tools": tools}

    _write(folder / "ST_Perfect.json", [
        row("Route to Bondi Beach.", "Navigation.Map.route", {"destination": "Bondi Beach"}, [route, taxi, news]),
        row("Route to Bondi by car.", "Navigation.Map.route", {"destination": "Bondi", "mode": "car"}, [route, taxi]),
    ])
    _write(folder / "ST_Imperfect.json", [row("Route.", "Navigation.Map.route", {}, [route, taxi])])
    _write(folder / "ir_ST_Perfect.json", [
        row("Route to Bondi Beach.", "Navigation.Map.route", {"destination": "Bondi Beach"}, [taxi, news]),
        row("Route to Manly.", "Navigation.Map.route", {"destination": "Manly"}, [route, news]),
    ])
    got = hammerbench.read(tmp_path)
    _check(got, "hammerbench")
    assert got.dropped == Counter({"unknown argument": 1, "negative still offers the gold function": 1})
    positive, negative = got.examples
    assert positive.calls[0].name == "Navigation_Map_route" and positive.meta == {"calls": 1}
    assert negative.is_negative and negative.api == positive.api == "hammerbench/Navigation.Map"
    assert [f.api_name for f in negative.functions] == ["Navigation.Taxi.book", "News.Feed.latest"]
