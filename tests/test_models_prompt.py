"""The Octopus prompt format and BM25 candidate retrieval."""

from __future__ import annotations

import ast
import math
import random
import re

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from octogram.grammars import NO_RELEVANT_FUNCTION, FunctionSpec, Parameter
from octogram.octopus_models.prompt import (MAX_DESCRIPTION, PROMPT_FORMAT_VERSION, render_prompt,
                                            render_target)
from octogram.octopus_models.retrieval import bm25_scores, select_candidates, words


def _spec(name: str, description: str, *params: str) -> FunctionSpec:
    return FunctionSpec(name, description,
                        tuple(Parameter(p, {"type": "string"}, description=f"The {p}.")
                              for p in params))


PHONE = [
    _spec("send_text_message", "Send an SMS text message to a phone number.", "phone_number",
          "message"),
    _spec("set_alarm", "Set an alarm clock for a time of day.", "time"),
    _spec("take_photo", "Take a photo with the front or back camera.", "camera"),
    _spec("get_current_weather", "Current weather conditions for a city.", "city"),
    _spec("get_forecast", "Daily weather forecast for a city.", "city", "days"),
    _spec("play_music", "Play a song or an artist.", "query"),
    _spec("create_calendar_event", "Add an event to the calendar.", "title", "date"),
]


def test_prompt_lists_candidates_as_python_then_the_query():
    prompt = render_prompt("What is the weather in Paris?", PHONE[3:5])
    assert PROMPT_FORMAT_VERSION >= 1
    assert prompt.endswith("\nQuery: What is the weather in Paris?\nCall:\n")
    stubs = prompt.split("\n\n", 1)[1].rsplit("\n\nQuery:", 1)[0]
    tree = ast.parse(stubs)  # the candidates are valid Python definitions, in order
    assert [f.name for f in tree.body] == ["get_current_weather", "get_forecast",
                                           "no_relevant_function"]
    assert all(ast.get_docstring(f) for f in tree.body)


def test_no_relevant_function_is_offered_once_even_if_passed_in():
    prompt = render_prompt("hello", [PHONE[0], NO_RELEVANT_FUNCTION])
    assert prompt.count("def no_relevant_function(") == 1
    assert prompt.index("def send_text_message(") < prompt.index("def no_relevant_function(")


def test_long_descriptions_are_clipped():
    long = _spec("describe", "word " * 500, "x")
    prompt = render_prompt("q", [long])
    assert len(prompt) < 2 * MAX_DESCRIPTION + 800


@pytest.mark.parametrize("query, functions, message", [
    ("caf\udce9", PHONE[:1], "the query is not valid UTF-8 text (character 4 is '\\udce9'"),
    ("q", [_spec("f", "bad \ud800")], "function f: its description is not valid UTF-8"),
    ("q", [FunctionSpec("f", "", (Parameter("x", {"enum": ["a", "\ud800"]}),))],
     "function f, parameter x: its schema is not valid UTF-8"),
    ("q", [FunctionSpec("f", "", (Parameter("x", {}, required=False, default="\udfff"),))],
     "function f, parameter x: its default is not valid UTF-8"),
])
def test_text_a_tokenizer_cannot_take_is_a_value_error_naming_it(query, functions, message):
    with pytest.raises(ValueError, match=re.escape(message)):
        render_prompt(query, functions)


def test_target_is_the_call_then_the_end_token():
    assert render_target(' f(x="a") \n') == 'f(x="a")<eos>'
    assert render_target("f()", end_token="</s>") == "f()</s>"
    with pytest.raises(ValueError):
        render_target("  ")
    with pytest.raises(ValueError):
        render_prompt(" ", PHONE)


def test_words_split_identifiers_and_plurals():
    assert words("getWeatherByCity") == ["get", "weather", "city"]  # "by" is a stop word
    assert words("send_text_messages") == ["send", "text", "message"]
    assert words("HTTPServer cities") == ["http", "server", "city"]


@pytest.mark.parametrize("query, expected", [
    ("What is the weather in Paris?", "get_current_weather"),
    ("Will it rain in the next 5 days? I need the forecast", "get_forecast"),
    ("Text my mom that I am late", "send_text_message"),
    ("Wake me up at 7 with an alarm", "set_alarm"),
    ("Take a selfie with the front camera", "take_photo"),
])
def test_the_right_function_is_among_the_four_candidates(query, expected):
    offered = select_candidates(query, PHONE, k=4)
    assert len(offered) == 4 and len({f.name for f in offered}) == 4
    assert expected in [f.name for f in offered]
    assert offered[0].name == expected  # these queries share a distinctive word with it


def test_small_documents_are_offered_whole_and_in_order():
    assert select_candidates("anything", PHONE[:3], k=4) == PHONE[:3]
    with pytest.raises(ValueError):
        select_candidates("q", PHONE, k=0)


def _bm25_reference(query: list[str], docs: list[list[str]], k1=1.2, b=0.75) -> list[float]:
    n, avg = len(docs), sum(map(len, docs)) / len(docs)
    out = []
    for d in docs:
        s = 0.0
        for w in set(query):
            f = d.count(w)
            df = sum(w in e for e in docs)
            if f:
                s += math.log((n - df + 0.5) / (df + 0.5) + 1) * f * (k1 + 1) / (
                    f + k1 * (1 - b + b * len(d) / avg))
        out.append(s)
    return out


@settings(max_examples=60, deadline=None)
@given(st.lists(st.lists(st.sampled_from("bcdefgh"), min_size=1, max_size=12), min_size=1,
                max_size=8), st.lists(st.sampled_from("bcdefghj"), min_size=1, max_size=5))
def test_bm25_matches_the_textbook_formula(docs, query):
    got = bm25_scores(" ".join(query), docs)
    assert got == pytest.approx(_bm25_reference(query, docs))


def test_ranking_ignores_document_order_except_for_ties():
    rng = random.Random(0)
    query = "weather forecast for Berlin"
    best = [f.name for f in select_candidates(query, PHONE, k=4)]
    for _ in range(5):
        shuffled = PHONE[:]
        rng.shuffle(shuffled)
        got = [f.name for f in select_candidates(query, shuffled, k=4)]
        assert got[:2] == best[:2]  # the two weather functions lead, whatever the order
