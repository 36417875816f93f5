"""OctopusGenerator and decode with unusual inputs: an empty batch, an API file path instead of
FunctionSpecs, and arguments of the wrong type (TypeError naming what is expected)."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from octogram.grammars import GrammarError, load
from octogram.octopus_models import base
from octogram.octopus_models import OctopusGenerator, decode
from test_models_base import _tiny_model_dir

WEATHER = Path(base.__file__).with_name("examples") / "weather.json"


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    """A random 2-layer Llama and its word-level tokenizer (no real model loads)."""
    return base.load_model(_tiny_model_dir(tmp_path_factory.mktemp("tiny")), quiet=True)


def test_an_empty_batch_is_an_empty_list(tiny):
    model, tok = tiny
    assert decode(model, tok, []) == []
    assert decode(model, tok, [], []) == []
    with pytest.raises(ValueError, match="max_new_tokens"):  # the options are still checked
        decode(model, tok, [], max_new_tokens=0)
    assert OctopusGenerator(model, tok).call_batch([]) == []


@pytest.mark.parametrize("as_path", [str, Path])
def test_call_reads_an_api_file_given_by_its_path(tiny, as_path):
    model, tok = tiny
    gen = OctopusGenerator(model, tok, mask=False)
    query = "What is the weather in Paris?"
    from_path = gen.call(query, as_path(WEATHER), max_new_tokens=3)
    from_specs = gen.call(query, load(WEATHER), max_new_tokens=3)
    assert [f.name for f in from_path.candidates] == [f.name for f in from_specs.candidates]
    assert from_path.text == from_specs.text


def test_call_with_a_missing_api_file_is_a_grammar_error(tiny, tmp_path):
    with pytest.raises(GrammarError, match="no such file"):
        OctopusGenerator(*tiny).call("q", str(tmp_path / "missing.json"))


@pytest.mark.parametrize("functions, got", [
    (42, "got int"),
    (b"weather.json", "got bytes"),
    ([{"name": "f"}], "got a sequence holding dict"),
    ({"name": "f"}, "got dict"),
])
def test_call_with_functions_of_another_type_is_a_type_error(functions, got):
    gen = OctopusGenerator(torch.nn.Linear(1, 1), None)  # refused before the model is used
    with pytest.raises(TypeError, match=f"FunctionSpecs .* or the path of an API file, {got}"):
        gen.call("q", functions)


@pytest.mark.parametrize("requests, message", [
    ("q", "requests must be a sequence of \\(query, functions\\) pairs, got str"),
    ([("q",)], "request 0 must be a \\(query, functions\\) pair"),
])
def test_call_batch_with_malformed_requests_is_a_type_error(requests, message):
    with pytest.raises(TypeError, match=message):
        OctopusGenerator(torch.nn.Linear(1, 1), None).call_batch(requests)
