"""The `octogram` command: call, generate, grammar, and its handling of bad input."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from octogram.grammars import load, parse_call
from octogram.octopus_models import base
from octogram.octopus_models.cli import main
from octogram.octopus_models.prompt import with_no_relevant_function

EXAMPLES = Path(base.__file__).with_name("examples")
WEATHER = EXAMPLES / "weather.json"


@pytest.fixture(scope="module")
def loaded():
    return base.load_model(quiet=True)


@pytest.fixture
def shared_model(loaded, monkeypatch):
    """Reuse one loaded model across CLI runs (loading is tested by the first test)."""
    monkeypatch.setattr(base, "load_model", lambda *a, **k: loaded)


def _one_error_line(err: str) -> str:
    lines = [line for line in err.splitlines() if line.startswith("octogram: error:")]
    assert len(lines) == 1, err
    assert "Traceback" not in err
    return lines[0]


@pytest.mark.slow
def test_call_prints_one_valid_call_and_json_agrees(capsys):
    assert main(["call", "What is the weather in Paris?", "--apis", str(WEATHER)]) == 0
    out, err = capsys.readouterr()
    assert len(out.splitlines()) == 1
    assert "loading model from" in err
    functions = with_no_relevant_function(load(WEATHER))
    calls = parse_call(out.strip(), functions)
    assert len(calls) == 1

    assert main(["call", "What is the weather in Paris?", "--apis", str(WEATHER), "--json"]) == 0
    out, _ = capsys.readouterr()
    assert json.loads(out) == {"name": calls[0].name, "arguments": calls[0].arguments}


@pytest.mark.slow
@pytest.mark.parametrize("example, query", [
    ("phone_tools.json", "Set an alarm for 6:30 called gym"),
    ("smart_home.py", "Lock the front door"),
])
def test_call_works_on_every_bundled_example(shared_model, capsys, example, query):
    assert main(["call", query, "--apis", str(EXAMPLES / example)]) == 0
    out, _ = capsys.readouterr()
    functions = with_no_relevant_function(load(EXAMPLES / example))
    assert len(parse_call(out.strip(), functions)) == 1


@pytest.mark.slow
def test_unmasked_output_that_is_not_a_call_exits_1(shared_model, capsys):
    code = main(["call", "What is the weather in Paris?", "--apis", str(WEATHER), "--no-mask",
                 "--max-new-tokens", "3"])
    out, err = capsys.readouterr()
    assert code == 1
    assert "not a valid call" in _one_error_line(err)
    assert len(out.splitlines()) == 1


@pytest.mark.slow
def test_generate_writes_one_row_per_query_and_reports_throughput(shared_model, tmp_path,
                                                                    capsys):
    tools = json.loads((EXAMPLES / "phone_tools.json").read_text())
    rows = [
        {"query": "What is the weather in Paris?", "functions": str(WEATHER)},
        {"query": "Take a selfie with the front camera", "functions": tools},
        {"query": "Turn the volume down to 20", "functions": "../examples/phone_tools.json"},
    ]
    jsonl = tmp_path / "in" / "rows.jsonl"
    jsonl.parent.mkdir()
    (tmp_path / "examples").mkdir()
    shutil.copy(EXAMPLES / "phone_tools.json", tmp_path / "examples")
    jsonl.write_text("\n".join(json.dumps(r) for r in rows) + "\n")
    out_file = tmp_path / "out.jsonl"
    assert main(["generate", "--input", str(jsonl), "--output", str(out_file),
                 "--batch-size", "2", "--max-new-tokens", "48"]) == 0
    _, err = capsys.readouterr()
    assert "tokens/s" in err and "3 rows" in err
    results = [json.loads(line) for line in out_file.read_text().splitlines()]
    assert [r["query"] for r in results] == [r["query"] for r in rows]
    for r in results:
        assert r["num_tokens"] > 0
        # masked: every row is a valid call; one that would outlast --max-new-tokens is closed
        assert r["stop_reason"] in ("end", "closed") and r["error"] is None, r
        assert len(r["calls"]) == 1
    assert any(r["stop_reason"] == "end" for r in results)


@pytest.mark.parametrize("argv, message", [
    (["call", "q", "--apis", "missing.json"], "does not exist"),
    (["call", "q", "--apis", str(WEATHER), "--max-new-tokens", "0"], "--max-new-tokens"),
    (["call", "q", "--apis", str(WEATHER), "--top-p", "1.5"], "--top-p"),
    (["generate", "--input", "missing.jsonl"], "does not exist"),
])
def test_bad_options_and_files_are_one_line_and_exit_2(capsys, argv, message):
    assert main(argv) == 2
    _, err = capsys.readouterr()
    assert message in _one_error_line(err)


@pytest.mark.parametrize("content, message", [
    ('{"query": "hi", "functions": "%s"}\n{"query": "x"' % WEATHER, "rows.jsonl:2: not valid JSON"),
    ('{"query": "hi", "functions": []}', "rows.jsonl:1: no functions found"),
    ('{"query": "hi"}', "rows.jsonl:1: the row has no 'functions'"),
    ('{"query": "", "functions": []}', "rows.jsonl:1: each row needs"),
    ('{"query": "hi", "functions": 3}', "rows.jsonl:1: 'functions' must be"),
    ('{"query": "hi", "functions": [{"type": "function", "function": {"description": "x"}}]}',
     "rows.jsonl:1: #/0/function: a function needs a 'name'"),
])
def test_bad_jsonl_rows_name_the_line(tmp_path, capsys, content, message):
    path = tmp_path / "rows.jsonl"
    path.write_text(content)
    assert main(["generate", "--input", str(path)]) == 2
    _, err = capsys.readouterr()
    assert message in _one_error_line(err)


def test_unreadable_api_document_is_one_line(tmp_path, capsys):
    bad = tmp_path / "api.json"
    bad.write_text('{"openapi": "3.0.0", "paths": ')
    assert main(["call", "q", "--apis", str(bad)]) == 2
    _, err = capsys.readouterr()
    assert str(bad) in _one_error_line(err)


def test_grammar_subcommand_prints_the_lark_grammar(capsys):
    assert main(["grammar", str(WEATHER), "--functions", "get_forecast"]) == 0
    out, _ = capsys.readouterr()
    assert '"get_forecast("' in out


def test_console_script_reports_bad_input_with_exit_2(tmp_path):
    exe = shutil.which("octogram") or pytest.skip("the octogram console script is not installed")
    proc = subprocess.run([exe, "call", "q", "--apis", str(tmp_path / "none.json")],
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2 and proc.stdout == ""
    assert proc.stderr.strip().count("\n") == 0 and "does not exist" in proc.stderr
    proc = subprocess.run([sys.executable, "-m", "octogram.octopus_models.cli", "nope"],
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2  # argparse usage error
