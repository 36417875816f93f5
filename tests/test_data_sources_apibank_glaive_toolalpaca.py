"""Importers for API-Bank, Glaive (LLaMA-Factory demo) and ToolAlpaca: on the real upstream files
(when present) and on tiny hand-written slices in their formats."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from octogram.octopus_models.data.record import validate
from octogram.octopus_models.data.sources import api_bank, glaive, toolalpaca

DATA = Path(os.environ.get("OCTOGRAM_DATA_DIR")
            or Path(__file__).parents[1].parent / "shared" / "data" / "function-calling")


def _folder(name: str) -> Path:
    path = DATA / name
    if not path.is_dir():
        pytest.skip(f"upstream data folder {path} is absent")
    return path


def _check(imported, source: str) -> None:
    for example in imported.examples:
        assert example.source == source
        assert example.api.startswith(source + "/")
        assert validate(example).calls == example.calls  # idempotent
        names = {f.name for f in example.functions}
        assert all(c.name in names for c in example.calls)
        if example.is_negative:
            assert example.calls == ()


# ----------------------------------------------------------------------------- real files

def test_api_bank_real():
    imported = api_bank.read(_folder("api-bank"))
    _check(imported, "api-bank")
    # README: about 930 real calls once the ToolSearcher rows are dropped
    assert 700 <= len(imported.examples) <= 940
    assert 450 <= imported.dropped["ToolSearcher meta-tool"] <= 510
    assert imported.dropped["unparsable answer"] > 0
    assert all(c.name != "ToolSearcher" for e in imported.examples for c in e.calls)
    assert all(f.name != "ToolSearcher" for e in imported.examples for f in e.functions)
    assert len({e.api for e in imported.examples}) > 100


def test_glaive_real():
    imported = glaive.read(_folder("llamafactory-glaive-demo"))
    _check(imported, "glaive")
    positives = [e for e in imported.examples if e.calls]
    negatives = [e for e in imported.examples if not e.calls]
    # README: about 150 with calls, 38 negatives, out of 300 conversations
    assert 135 <= len(positives) <= 155
    assert 30 <= len(negatives) <= 38
    assert imported.dropped["no tools offered"] > 0
    assert len(imported.examples) + sum(imported.dropped.values()) == 300


def test_toolalpaca_real():
    imported = toolalpaca.read(_folder("toolalpaca"))
    _check(imported, "toolalpaca")
    # README: 214 instructions over 21 APIs, 151 single-step
    assert imported.dropped["multi-step"] == 214 - 151
    assert 120 <= len(imported.examples) <= 151
    assert len(imported.examples) + sum(imported.dropped.values()) == 214
    assert len({e.api for e in imported.examples}) >= 18
    assert all(len(e.calls) == 1 for e in imported.examples)


# ----------------------------------------------------------------------------- tiny slices

_INSTRUCTION = ("\nGenerate an API request in the format of [ApiName(key1='value1', key2='value2', ...)] "
                "based on the previous dialogue context.\nAPI descriptions:\n")
_SEARCHER = {"name": "ToolSearcher", "description": "Searches for relevant tools.",
             "input_parameters": {"keywords": {"type": "str", "description": "The keyword."}},
             "output_parameters": {}}
_ALARM = {"name": "AddAlarm", "description": "Add an alarm.",
          "input_parameters": {"time": {"type": "datetime", "description": "Alarm time."},
                               "repeat": {"type": "int", "description": "Times."}},
          "output_parameters": {"status": {"type": "str", "description": "ok"}}}


def test_api_bank_slice(tmp_path):
    level1 = [
        {"file": "a.jsonl", "id": 0, "instruction": _INSTRUCTION + json.dumps(_ALARM),
         "input": "User: Wake me up.\nAI: When?\nUser: At 2023-03-01 07:00:00, twice.\nGenerate API Request:\n",
         "expected_output": "API-Request: [AddAlarm(time='2023-03-01 07:00:00', repeat='2')]"},
        {"file": "a.jsonl", "id": 1, "instruction": _INSTRUCTION + json.dumps(_ALARM),  # nested quotes
         "input": "User: Alarm 'x'.\nGenerate API Request:\n",
         "expected_output": "API-Request: [AddAlarm(time='['07:00']', repeat='1')]"},
    ]
    found = repr({**_ALARM, "description": "The user's alarm."})
    level2 = [
        {"file": "b.jsonl", "id": 0, "instruction": _INSTRUCTION + json.dumps(_SEARCHER),
         "input": "User: Set an alarm.\nGenerate API Request:\n",
         "expected_output": "API-Request: [ToolSearcher(keywords='alarm')]"},
        {"file": "b.jsonl", "id": 1, "instruction": _INSTRUCTION + json.dumps(_SEARCHER),
         "input": "User: Set an alarm at 2023-03-02 08:00:00.\n"
                  f"API-Request: [ToolSearcher(keywords='alarm')]->{found}\nGenerate API Request:\n",
         "expected_output": "API-Request: [AddAlarm(time='2023-03-02 08:00:00', repeat=1)]"},
    ]
    (tmp_path / "test-data").mkdir()
    (tmp_path / "test-data" / "level-1-api.json").write_text(json.dumps(level1))
    (tmp_path / "test-data" / "level-2-api.json").write_text(json.dumps(level2))
    imported = api_bank.read(tmp_path)
    _check(imported, "api-bank")
    assert imported.dropped == {"ToolSearcher meta-tool": 1, "unparsable answer": 1}
    first, second = imported.examples
    assert first.calls[0].arguments == {"time": "2023-03-01 07:00:00", "repeat": 2}
    assert "Wake me up" not in first.query  # the last utterance holds every argument
    assert second.api == "api-bank/AddAlarm"
    assert [f.name for f in second.functions] == ["AddAlarm"]
    assert second.functions[0].description == "The user's alarm."


_TOOLS = json.dumps([{"name": "get_weather", "description": "Weather in a city",
                      "parameters": {"type": "object", "properties": {
                          "city": {"type": "string"}, "days": {"type": "integer"}}, "required": ["city"]}}])


def test_glaive_slice(tmp_path):
    rows = [
        {"tools": _TOOLS, "conversations": [
            {"from": "human", "value": "Can you help with the weather?"},
            {"from": "gpt", "value": "Which city?"},
            {"from": "human", "value": "Paris, for 3 days."},
            {"from": "function_call", "value": json.dumps({"name": "get_weather", "arguments": {"city": "Paris", "days": "3"}})},
            {"from": "observation", "value": "{}"},
            {"from": "function_call", "value": json.dumps({"name": "get_weather", "arguments": json.dumps({"city": "Lyon"})})},
            {"from": "gpt", "value": "Sunny."}]},
        {"tools": _TOOLS, "conversations": [
            {"from": "human", "value": "Order me a pizza."},
            {"from": "gpt", "value": "I cannot do that."}]},
        {"tools": "[]", "conversations": [{"from": "human", "value": "Hi"}, {"from": "gpt", "value": "Hello"}]},
        {"tools": _TOOLS, "conversations": [  # wrong argument type: must be dropped
            {"from": "human", "value": "Weather for 2 days"},
            {"from": "function_call", "value": json.dumps({"name": "get_weather", "arguments": {"city": ["a"]}})}]},
    ]
    (tmp_path / "data").mkdir()
    (tmp_path / glaive.FILE).write_text(json.dumps(rows))
    imported = glaive.read(tmp_path)
    _check(imported, "glaive")
    assert imported.dropped == {"no tools offered": 1, "gold call does not validate": 1}
    positive, negative = imported.examples
    assert positive.query == "Can you help with the weather?\nParis, for 3 days."
    assert [c.arguments for c in positive.calls] == [{"city": "Paris", "days": 3}, {"city": "Lyon"}]
    assert positive.api == "glaive/get_weather"
    assert negative.calls == () and negative.query == "Order me a pizza."


_DOC = {"openapi": "3.0.0", "info": {"title": "Cats", "version": "1"}, "paths": {
    "/cat/{tag}": {"get": {"parameters": [
        {"name": "tag", "in": "path", "required": True, "schema": {"type": "string"}},
        {"name": "size", "in": "query", "schema": {"type": "string", "enum": ["small", "large"]}}],
        "responses": {"200": {"description": "ok"}}}},
    "/facts": {"get": {"operationId": "getFacts", "parameters": [
        {"name": "limit", "in": "query", "schema": {"type": "integer"}}],
        "responses": {"200": {"description": "ok"}}}}}}


def test_toolalpaca_slice(tmp_path):
    api = {"Name": "Cats", "Documentation": json.dumps(_DOC), "Function_Projection": {},
           "Instructions": ["Show me a cute cat.", "Two cat facts, then a cat picture.", "Give me 2 facts.",
                            "A cat like the last one."],
           "Golden_Answers": [
               [{"Action": "cat_tag_get", "Action_Input": '{"tag": "cute", "size": ""}'}],
               [{"Action": "getFacts", "Action_Input": '{"limit": 2}'},
                {"Action": "cat_tag_get", "Action_Input": '{"tag": "cute"}'}],
               [{"Action": "getFacts", "Action_Input": '{"limit": "2"}'}],
               [{"Action": "cat_tag_get", "Action_Input": '{"tag": ${tag from getFacts}}'}]]}
    (tmp_path / "data").mkdir()
    (tmp_path / "data" / "eval_real.json").write_text(json.dumps([api]))
    imported = toolalpaca.read(tmp_path)
    _check(imported, "toolalpaca")
    assert imported.dropped == {"multi-step": 1, "unparsable Action_Input": 1}
    cat, facts = imported.examples
    assert cat.calls[0].name == "get_cat_by_tag" and cat.calls[0].arguments == {"tag": "cute"}
    assert facts.calls[0].arguments == {"limit": 2}
    assert cat.api == "toolalpaca/Cats" and len(cat.functions) == 2
