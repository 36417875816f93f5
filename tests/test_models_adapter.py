"""The shipped adapter: found by default, refused when trained for another prompt format, and
answering the README's queries with the right calls (the bundled examples were never trained on).

The model tests are `slow`: CI runs them as they are (three greedy calls on the 270M model)."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from octogram.grammars import load
from octogram.octopus_models import AdapterError, OctopusGenerator, load_model
from octogram.octopus_models.base import check_adapter, default_adapter_dir
from octogram.octopus_models.prompt import PROMPT_FORMAT_VERSION

EXAMPLES = Path(__file__).resolve().parents[1] / "octopus_models" / "examples"
GCD = [{"type": "function", "function": {
    "name": "math.gcd", "description": "Greatest common divisor of two integers.",
    "parameters": {"type": "object", "required": ["num1", "num2"], "properties": {
        "num1": {"type": "integer", "description": "The first number."},
        "num2": {"type": "integer", "description": "The second number."}}}}}]


def test_shipped_adapter_is_present_with_its_card():
    folder = default_adapter_dir()
    assert (folder / "adapter_model.safetensors").is_file()
    card = check_adapter(folder)
    assert card["prompt_format"] == PROMPT_FORMAT_VERSION
    assert card["steps"] > 0 and card["data"]["trained_rows"] > 0
    assert (folder / "adapter_model.safetensors").stat().st_size < 20 * 2**20


def test_adapter_for_another_prompt_format_is_refused_before_loading(tmp_path):
    copy = tmp_path / "adapter"
    shutil.copytree(default_adapter_dir(), copy)
    card = json.loads((copy / "octogram-adapter.json").read_text())
    card["prompt_format"] = PROMPT_FORMAT_VERSION - 1
    (copy / "octogram-adapter.json").write_text(json.dumps(card))
    with pytest.raises(AdapterError, match="prompt format"):
        load_model(tmp_path / "no-such-model", adapter=copy)  # refused before the folder is read


@pytest.fixture(scope="module")
def generator():
    model, tokenizer = load_model(quiet=True)
    return OctopusGenerator(model, tokenizer)


@pytest.mark.slow
@pytest.mark.parametrize("query, functions, expected", [
    pytest.param("What is the weather in Paris?", EXAMPLES / "weather.json",
                 ("get_current_weather", {"city": "Paris"}),
                 marks=pytest.mark.xfail(strict=True, reason="the shipped adapter answers "
                                         "get_historical_weather(city=\"Paris\", ...)")),
    ("What is the GCD of 18 and 12?", GCD, ("math.gcd", {"num1": 18, "num2": 12})),
    ("Lock the front door", EXAMPLES / "smart_home.py", None),
])
def test_shipped_model_answers_the_readme_queries(generator, query, functions, expected):
    specs = load(functions)
    result = generator.call(query, specs)
    assert result.error is None
    if expected is None:  # the smart-home module: the right function, arguments as documented
        assert [c.name for c in result.calls] == ["lock_door"], result.call_text
    else:
        assert [(c.name, c.arguments) for c in result.calls] == [expected], result.call_text
