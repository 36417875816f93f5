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
    """Reuse one loaded model across CLI runs (loading is tested by the first test), on the
    transformers backend (the llama.cpp one has its own tests)."""
    from octogram.octopus_models import backends

    monkeypatch.setattr(base, "load_model", lambda *a, **k: loaded)
    monkeypatch.setattr(backends, "choose_backend", lambda *a, **k: "transformers")


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
    call = {"name": calls[0].name, "arguments": calls[0].arguments}  # API names = identifiers here
    assert json.loads(out) == dict(call, grammar=call)


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
        {"query": "What is the weather in Paris?", "functions": "weather.json"},
        {"query": "Take a selfie with the front camera", "functions": tools},
        {"query": "Turn the volume down to 20", "functions": "phone/../phone_tools.json"},
    ]
    jsonl = tmp_path / "in" / "rows.jsonl"
    jsonl.parent.mkdir()
    apis = tmp_path / "apis"
    (apis / "phone").mkdir(parents=True)
    shutil.copy(EXAMPLES / "phone_tools.json", apis)
    shutil.copy(WEATHER, apis)
    jsonl.write_text("\n".join(json.dumps(r) for r in rows) + "\n")
    out_file = tmp_path / "out.jsonl"
    assert main(["generate", "--input", str(jsonl), "--output", str(out_file),
                 "--batch-size", "2", "--max-new-tokens", "48", "--functions-dir", str(apis)]) == 0
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
    ('{"query": "hi", "functions": "weather.json"}\n{"query": "x"', "rows.jsonl:2: not valid JSON"),
    ('{"query": "hi", "functions": []}', "rows.jsonl:1: no functions found"),
    ('{"query": "hi"}', "rows.jsonl:1: the row has no 'functions'"),
    ('{"query": "", "functions": []}', "rows.jsonl:1: each row needs"),
    ('{"query": "hi", "functions": 3}', "rows.jsonl:1: 'functions' must be"),
    ('{"query": "hi", "functions": [{"type": "function", "function": {"description": "x"}}]}',
     "rows.jsonl:1: #/0/function: a function needs a 'name'"),
])
def test_bad_jsonl_rows_name_the_line(tmp_path, capsys, content, message):
    shutil.copy(WEATHER, tmp_path / "weather.json")
    path = tmp_path / "rows.jsonl"
    path.write_text(content)
    assert main(["generate", "--input", str(path)]) == 2
    _, err = capsys.readouterr()
    assert message in _one_error_line(err)


@pytest.mark.parametrize("functions, extra, message", [
    ("../../../../../../etc/passwd", [], "is outside"),
    ("/etc/passwd", [], "is outside"),
    ("sub/../../rows.jsonl", [], "is outside"),
    ("funcs.py", [], "pass --allow-python"),
    ("../weather.json", ["--functions-dir", "{tmp}/sub"], "is outside"),
])
def test_row_paths_stay_in_their_folder_and_run_no_code(no_model, tmp_path, capsys, functions,
                                                        extra, message):
    (tmp_path / "sub").mkdir()
    marker = tmp_path / "ran"
    (tmp_path / "funcs.py").write_text(f"open({str(marker)!r}, 'w').close()\n"
                                       "def f(x: int) -> int:\n    return x\n")
    shutil.copy(WEATHER, tmp_path / "weather.json")
    rows = tmp_path / "rows.jsonl"
    rows.write_text(json.dumps({"query": "hi", "functions": functions}) + "\n")
    argv = ["generate", "--input", str(rows)] + [a.format(tmp=tmp_path) for a in extra]
    assert main(argv) == 2
    _, err = capsys.readouterr()
    assert message in _one_error_line(err) and "rows.jsonl:1" in err
    assert not marker.exists()  # the module was not imported


def test_allowed_python_rows_and_a_functions_dir(fake_generator, tmp_path, capsys):
    (tmp_path / "apis").mkdir()
    (tmp_path / "apis" / "funcs.py").write_text("def get_current_weather(location: str) -> str:\n"
                                                "    \"\"\"Weather now.\"\"\"\n    return location\n")
    rows = tmp_path / "rows.jsonl"
    rows.write_text(json.dumps({"query": "Weather in Paris?", "functions": "funcs.py"}) + "\n")
    out = tmp_path / "out.jsonl"
    assert main(["generate", "--input", str(rows), "--output", str(out), "--allow-python",
                 "--functions-dir", str(tmp_path / "apis")]) == 0
    assert json.loads(out.read_text())["calls"] == [
        {"name": "get_current_weather", "arguments": {"location": "Paris"}}]


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


@pytest.fixture
def no_model(monkeypatch):
    """Loading a model fails the test: these errors must come before it."""
    def refuse(*args, **kwargs):
        raise AssertionError("the model was loaded before the bad input was reported")

    from octogram.octopus_models import backends
    from octogram.octopus_models.contrib import llamacpp

    monkeypatch.setattr(base, "load_model", refuse)
    monkeypatch.setattr(backends, "load_runner", refuse)
    monkeypatch.setattr(llamacpp, "LlamaCppRunner", refuse)


def _rows_file(tmp_path, queries=("What is the weather in Paris?",)) -> Path:
    path = tmp_path / "rows.jsonl"
    shutil.copy(WEATHER, tmp_path / WEATHER.name)
    path.write_text("".join(json.dumps({"query": q, "functions": WEATHER.name}) + "\n"
                            for q in queries))
    return path


@pytest.mark.parametrize("argv, message", [
    (["call", "", "--apis", str(WEATHER)], "the query is empty"),
    (["call", "   ", "--apis", str(WEATHER)], "the query is empty"),
    (["call", "caf\udce9", "--apis", str(WEATHER)], "the query is not valid UTF-8"),
    (["call", "q", "--apis", str(WEATHER), "--temperature", "nan"], "--temperature"),
    (["call", "q", "--apis", str(WEATHER), "--temperature", "inf"], "--temperature"),
    (["call", "q", "--apis", str(WEATHER), "--top-p", "nan"], "--top-p"),
    (["call", "q", "--apis", str(WEATHER), "--top-k", str(2 ** 64)], "--top-k"),
    (["call", "q", "--apis", str(WEATHER), "--seed", str(2 ** 64)], "--seed"),
    (["call", "q", "--apis", str(WEATHER), "--seed", str(-2 ** 63 - 1)], "--seed"),
    (["generate", "--input", "{rows}", "--output", "{rows}"], "is the input file"),
    (["generate", "--input", "{rows}", "--output", "{tmp}"], "is a folder"),
    (["generate", "--input", "{rows}", "--output", "{tmp}/missing/out.jsonl"], "does not exist"),
    (["generate", "--input", "{rows}", "--batch-size", "0"], "--batch-size"),
    (["generate", "--input", "{tmp}"], "is not a file"),
    (["generate", "--input", "{rows}", "--functions-dir", "{rows}"], "is not a folder"),
    (["call", "q", "--apis", "{tmp}"], "is a folder, not an API file"),
])
def test_bad_input_is_one_line_before_the_model_loads(no_model, tmp_path, capsys, argv, message):
    rows = _rows_file(tmp_path)
    argv = [a.format(rows=rows, tmp=tmp_path) if "{" in a else a for a in argv]
    before = rows.read_text()
    assert main(argv) == 2
    out, err = capsys.readouterr()
    assert message in _one_error_line(err) and out == ""
    assert rows.read_text() == before  # the input is never touched


@pytest.mark.parametrize("row, message", [
    (b'{"query": "caf\xe9", "functions": "weather.json"}', "is not UTF-8 text (byte 15"),
    (b'{"query": "q", "functions": "weather.json", "n": ' + b"9" * 5000 + b"}", "rows.jsonl:1: not usable JSON"),
    (b'{"query": "q", "functions": ' + b"[" * 100_000 + b"]" * 100_000 + b"}", "rows.jsonl:1: not usable JSON"),
])
def test_bad_rows_are_one_line_before_the_model_loads(no_model, tmp_path, capsys, row, message):
    rows = _rows_file(tmp_path)
    rows.write_bytes(row + b"\n")
    assert main(["generate", "--input", str(rows)]) == 2
    out, err = capsys.readouterr()
    assert message in _one_error_line(err) and out == ""


def test_rows_with_a_byte_order_mark_are_read(tmp_path):
    from octogram.octopus_models import cli

    rows = _rows_file(tmp_path)
    rows.write_bytes(b"\xef\xbb\xbf" + rows.read_bytes())
    assert [q for q, _ in cli._read_jsonl(rows)] == ["What is the weather in Paris?"]


class _FakeGenerator:
    """Stands in for OctopusGenerator: a call per query, closed at the limit for queries with
    "long", a ValueError for a query with "fails", and an interrupt for the query "stop"."""

    mask, compile_seconds = True, 0.0

    def __init__(self):
        self.batches = []

    def candidates(self, query, functions):
        return list(functions)[:1]

    def call(self, query, functions, **options):
        return self.call_batch([(query, functions)], **options)[0]

    def call_batch(self, requests, batch_size=8, **options):
        from octogram.grammars import FunctionCall
        from octogram.octopus_models.generator import CallResult

        self.batches.append([q for q, _ in requests])
        results = []
        for query, functions in requests:
            if query == "stop":
                raise KeyboardInterrupt
            if "fails" in query:  # as the tokenizer fails on a text it cannot take
                raise ValueError("cannot tokenize this query")
            closed = "long" in query
            call = FunctionCall("get_current_weather", {"location": "" if closed else "Paris"})
            text = f'get_current_weather(location="{call.arguments["location"]}")'
            results.append(CallResult(query, text, [call], None, [],
                                      "closed" if closed else "end", 5, 0))
        return results


@pytest.fixture
def fake_generator(monkeypatch):
    from octogram.octopus_models import cli

    gen = _FakeGenerator()
    monkeypatch.setattr(cli, "_generator", lambda args: gen)
    return gen


def test_generate_bad_row_is_an_error_row_and_output_is_replaced_when_done(
        fake_generator, tmp_path, capsys):
    rows = _rows_file(tmp_path, ["Weather in Paris?", "this query fails", "a long answer",
                                 "Weather in Rome?"])
    out_file = tmp_path / "out.jsonl"
    out_file.write_text("old results\n")
    out_file.chmod(0o640)
    assert main(["generate", "--input", str(rows), "--output", str(out_file),
                 "--batch-size", "2", "--max-new-tokens", "16"]) == 0
    _, err = capsys.readouterr()
    assert "Traceback" not in err
    results = [json.loads(line) for line in out_file.read_text().splitlines()]
    assert [r["query"] for r in results] == ["Weather in Paris?", "this query fails",
                                             "a long answer", "Weather in Rome?"]
    bad = results[1]
    assert bad["stop_reason"] == "error" and bad["calls"] == [] and "Error" in bad["error"]
    assert results[0]["error"] is None and results[0]["stop_reason"] == "end"  # its batch mate
    assert results[2]["closed_at_limit"] is True and "--max-new-tokens=16" in results[2]["warning"]
    assert results[0]["closed_at_limit"] is False and results[0]["warning"] is None
    assert "1 of 4 rows failed" in err and "1 of 4 rows reached --max-new-tokens=16" in err
    assert (out_file.stat().st_mode & 0o777) == 0o640  # the old output's mode is kept
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out.jsonl", "rows.jsonl", "weather.json"]  # no temp


def test_generate_interrupted_keeps_complete_rows_or_the_old_output(fake_generator, tmp_path,
                                                                    capsys):
    out_file = tmp_path / "out.jsonl"
    out_file.write_text("old results\n")
    rows = _rows_file(tmp_path, ["stop"])
    assert main(["generate", "--input", str(rows), "--output", str(out_file)]) == 130
    assert out_file.read_text() == "old results\n"  # nothing complete: the old file stays
    rows = _rows_file(tmp_path, ["Weather in Paris?", "stop"])
    assert main(["generate", "--input", str(rows), "--output", str(out_file),
                 "--batch-size", "1"]) == 130
    _, err = capsys.readouterr()
    assert "1 complete rows are in" in err
    assert [json.loads(line)["query"] for line in out_file.read_text().splitlines()] == \
        ["Weather in Paris?"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out.jsonl", "rows.jsonl", "weather.json"]


@pytest.mark.parametrize("as_json", [False, True])
def test_call_closed_at_the_limit_says_so(fake_generator, capsys, as_json):
    argv = ["call", "a long answer", "--apis", str(WEATHER), "--max-new-tokens", "16"]
    assert main(argv + ["--json"] * as_json) == 0
    out, err = capsys.readouterr()
    warning = [line for line in err.splitlines() if line.startswith("octogram: warning:")]
    assert len(warning) == 1 and "--max-new-tokens=16" in warning[0] and "closed" in warning[0]
    if as_json:
        call = {"name": "get_current_weather", "arguments": {"location": ""}}
        assert json.loads(out) == dict(call, grammar=call, closed_at_limit=True)
    else:
        assert out.strip() == 'get_current_weather(location="")'
    assert main(["call", "Weather in Paris?", "--apis", str(WEATHER), "--json"]) == 0
    out, err = capsys.readouterr()
    assert "warning" not in err and "closed_at_limit" not in json.loads(out)


@pytest.mark.parametrize("argv", [
    ["call", "What is the weather in Paris?", "--apis", str(WEATHER)],
    ["finetune", "--data", "rows.jsonl", "--out", "adapter"],
    ["dataset", "build", "--out", "ds"],
])
def test_a_cache_dir_that_is_a_file_is_one_line(argv, tmp_path, monkeypatch, capsys):
    afile = tmp_path / "cache"
    afile.write_text("")
    monkeypatch.setenv("OCTOGRAM_CACHE_DIR", str(afile))
    monkeypatch.chdir(tmp_path)
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "is a file, not a folder" in err, err


# ----------------------------------------------------------------------------- the API's names

API_TOOLS = [
    {"type": "function", "function": {"name": "math.gcd", "description": "Greatest common divisor.",
     "parameters": {"type": "object", "required": ["a", "b"],
                    "properties": {"a": {"type": "integer"}, "b": {"type": "integer"}}}}},
]
API_DOC = {
    "openapi": "3.0.3", "servers": [{"url": "https://pets.example/v1"}],
    "paths": {"/pets/{pet-id}": {"patch": {
        "operationId": "pets.rename",
        "parameters": [{"name": "pet-id", "in": "path", "required": True, "schema": {"type": "string"}},
                       {"name": "X-Request-Id", "in": "header", "schema": {"type": "string"}}],
        "requestBody": {"content": {"application/json": {"schema": {
            "type": "object", "properties": {"name": {"type": "string"}}}}}},
        "responses": {"200": {"description": "ok"}}}}},
}
ANSWERS = {  # query -> what the (stand-in) model writes, in the grammar's identifiers
    "gcd of 12 and 18": "math_gcd(a=12, b=18)",
    "rename pet 7 to Rex": 'pets_rename(pet_id="7", X_Request_Id="r1", name="Rex")',
    "tell me a joke": 'no_relevant_function(query="tell me a joke")',
}


@pytest.fixture
def scripted_generator(monkeypatch):
    """The real OctopusGenerator (candidates, parsing, naming) around a stand-in for `decode`
    that writes ANSWERS, so these tests need no model."""
    from octogram.octopus_models import cli, Decoded, Runner
    from octogram.octopus_models import generator as gen_module

    def fake_decode(model, tokenizer, prompts, grammars=None, **options):
        texts = [next(t for q, t in ANSWERS.items() if f"Query: {q}" in p) for p in prompts]
        return [Decoded([1, 2], t, "end") for t in texts]

    class NoModel(Runner):
        logits_width, eos_token_ids, pad_token_id = 8, [1], 0

    monkeypatch.setattr(gen_module, "decode", fake_decode)
    gen = gen_module.OctopusGenerator(NoModel(), None, mask=False)
    monkeypatch.setattr(cli, "_generator", lambda args: gen)
    return gen


@pytest.fixture
def api_files(tmp_path):
    tools, doc = tmp_path / "tools.json", tmp_path / "pets.json"
    tools.write_text(json.dumps(API_TOOLS))
    doc.write_text(json.dumps(API_DOC))
    return tools, doc


def test_every_output_carries_the_apis_names(scripted_generator, api_files, tmp_path, capsys):
    tools, doc = api_files
    (result,) = scripted_generator.call_batch([("gcd of 12 and 18", load(tools))])
    assert [(c.name, c.arguments) for c in result.calls] == [("math.gcd", {"a": 12, "b": 18})]
    assert [c.name for c in result.grammar_calls] == ["math_gcd"]
    assert result.call_text == "math.gcd(a=12, b=18)" and result.text == ANSWERS["gcd of 12 and 18"]

    assert main(["call", "gcd of 12 and 18", "--apis", str(tools)]) == 0
    assert capsys.readouterr().out == "math.gcd(a=12, b=18)\n"
    assert main(["call", "rename pet 7 to Rex", "--apis", str(doc), "--json"]) == 0
    assert json.loads(capsys.readouterr().out) == {
        "name": "pets.rename", "arguments": {"pet-id": "7", "X-Request-Id": "r1", "name": "Rex"},
        "grammar": {"name": "pets_rename", "arguments": {"pet_id": "7", "X_Request_Id": "r1", "name": "Rex"}}}

    rows = tmp_path / "rows.jsonl"
    rows.write_text(json.dumps({"query": "gcd of 12 and 18", "functions": "tools.json"}) + "\n"
                    + json.dumps({"query": "rename pet 7 to Rex", "functions": API_DOC}) + "\n")
    out_file = tmp_path / "out.jsonl"
    assert main(["generate", "--input", str(rows), "--output", str(out_file)]) == 0
    got = [json.loads(line) for line in out_file.read_text().splitlines()]
    assert [r["calls"] for r in got] == [
        [{"name": "math.gcd", "arguments": {"a": 12, "b": 18}}],
        [{"name": "pets.rename", "arguments": {"pet-id": "7", "X-Request-Id": "r1", "name": "Rex"}}]]


def test_call_request_prints_the_http_request(scripted_generator, api_files, capsys):
    _, doc = api_files
    assert main(["call", "rename pet 7 to Rex", "--apis", str(doc), "--request"]) == 0
    assert capsys.readouterr().out == ("PATCH https://pets.example/v1/pets/7\nX-Request-Id: r1\n"
                                       'Content-Type: application/json\n\n{"name":"Rex"}\n')
    assert main(["call", "rename pet 7 to Rex", "--apis", str(doc), "--request", "--json",
                 "--base-url", "http://127.0.0.1:8080/api"]) == 0
    assert json.loads(capsys.readouterr().out) == {
        "method": "PATCH", "url": "http://127.0.0.1:8080/api/pets/7",
        "headers": {"X-Request-Id": "r1", "Content-Type": "application/json"},
        "body": '{"name":"Rex"}',
        "call": {"name": "pets.rename", "arguments": {"pet-id": "7", "X-Request-Id": "r1", "name": "Rex"}}}
    # the model declined: there is no request to print
    assert main(["call", "tell me a joke", "--apis", str(doc), "--request"]) == 1
    assert "no request to make" in _one_error_line(capsys.readouterr().err)


def test_call_request_bad_options_are_one_line(scripted_generator, api_files, tmp_path, capsys):
    tools, doc = api_files
    relative = tmp_path / "relative.json"
    relative.write_text(json.dumps(dict(API_DOC, servers=[{"url": "/v1"}])))
    for argv, message in [
        (["--apis", str(tools), "--request"], "holds no HTTP operations"),
        (["--apis", str(relative), "--request"], "pass --base-url"),
        (["--apis", str(doc), "--base-url", "http://127.0.0.1:1"], "only used with --request"),
        (["--apis", str(doc), "--request", "--base-url", "127.0.0.1:1"], "absolute http(s) URL"),
    ]:
        assert main(["call", "rename pet 7 to Rex"] + argv) == 2
        out, err = capsys.readouterr()
        assert message in _one_error_line(err) and out == ""
    assert main(["call", "rename pet 7 to Rex", "--apis", str(relative), "--request",
                 "--base-url", "http://127.0.0.1:1"]) == 0
    assert capsys.readouterr().out.startswith("PATCH http://127.0.0.1:1/pets/7\n")


class _FullDisk:
    """A file object whose writes fail as on a full disk."""

    def __init__(self, real):
        self.real = real

    def write(self, text):
        import errno
        import os

        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    def __getattr__(self, name):
        return getattr(self.real, name)


def test_generate_full_disk_is_one_line_and_keeps_the_old_output(fake_generator, tmp_path,
                                                                 capsys, monkeypatch):
    import os

    from octogram.octopus_models import cli

    real_fdopen = os.fdopen
    monkeypatch.setattr(cli.os, "fdopen", lambda *a, **k: _FullDisk(real_fdopen(*a, **k)))
    rows = _rows_file(tmp_path, ["Weather in Paris?", "Weather in Rome?"])
    out_file = tmp_path / "out.jsonl"
    out_file.write_text("old results\n")
    assert main(["generate", "--input", str(rows), "--output", str(out_file)]) == 2
    out, err = capsys.readouterr()
    assert "cannot write" in _one_error_line(err) and "No space left on device" in err
    assert out_file.read_text() == "old results\n"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out.jsonl", "rows.jsonl", "weather.json"]


def test_generate_writes_into_a_pipe_or_device_without_replacing_it(fake_generator, tmp_path):
    """Renaming the finished file over a FIFO or a device (/dev/null, /dev/stdout) would replace
    the node itself: such outputs are written to directly."""
    import os
    import stat
    import threading

    fifo = tmp_path / "fifo"
    os.mkfifo(fifo)
    received = []
    reader = threading.Thread(target=lambda: received.append(fifo.read_text()), daemon=True)
    reader.start()
    rows = _rows_file(tmp_path, ["Weather in Paris?", "Weather in Rome?"])
    assert main(["generate", "--input", str(rows), "--output", str(fifo)]) == 0
    reader.join(timeout=30)
    assert [json.loads(line)["query"] for line in received[0].splitlines()] == \
        ["Weather in Paris?", "Weather in Rome?"]
    assert stat.S_ISFIFO(os.stat(fifo).st_mode)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["fifo", "rows.jsonl", "weather.json"]


def test_generate_through_a_symlink_replaces_the_file_it_names(fake_generator, tmp_path):
    rows = _rows_file(tmp_path)
    real = tmp_path / "real.jsonl"
    real.write_text("old results\n")
    (tmp_path / "link.jsonl").symlink_to(real)
    assert main(["generate", "--input", str(rows), "--output", str(tmp_path / "link.jsonl")]) == 0
    assert (tmp_path / "link.jsonl").is_symlink()
    assert json.loads(real.read_text())["query"] == "What is the weather in Paris?"


def test_generate_unwritable_output_folder_is_reported_before_the_model_loads(
        no_model, tmp_path, capsys, monkeypatch):
    import errno
    import os
    import tempfile

    def refuse(*args, **kwargs):  # as in a read-only folder (root may write in any)
        raise PermissionError(errno.EACCES, os.strerror(errno.EACCES))

    monkeypatch.setattr(tempfile, "mkstemp", refuse)
    rows = _rows_file(tmp_path)
    assert main(["generate", "--input", str(rows), "--output", str(tmp_path / "out.jsonl")]) == 2
    line = _one_error_line(capsys.readouterr().err)
    assert f"cannot write in {tmp_path}" in line and "Permission denied" in line


@pytest.mark.parametrize("argv", [
    ["generate", "--input", "{rows}"],
    ["generate", "--input", "{rows}", "--output", "/dev/stdout"],
    ["call", "Weather in Paris?", "--apis", "{rows_dir}/weather.json"],
])
def test_a_closed_pipe_ends_quietly_with_the_sigpipe_status(tmp_path, argv):
    """`octogram generate | head -1`: once the reader has gone, the command stops with no
    message and no traceback, and exits 141 (128 + SIGPIPE) as a shell reports `yes | head`."""
    rows = _rows_file(tmp_path, [f"Weather in city {i}?" for i in range(20_000)])
    runner = tmp_path / "runner.py"
    runner.write_text(
        "import sys\n"
        f"sys.path.insert(0, {str(Path(__file__).parent)!r})\n"
        "from test_cli import _FakeGenerator\n"
        "from octogram.octopus_models import cli\n"
        "cli._generator = lambda args: _FakeGenerator()\n"
        "sys.exit(cli.main(sys.argv[1:]))\n")
    argv = [a.format(rows=rows, rows_dir=tmp_path) for a in argv]
    proc = subprocess.Popen([sys.executable, str(runner), *argv], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE)
    proc.stdout.close()  # the reader goes away before reading anything (`| head -0`)
    err = proc.stderr.read().decode()
    assert proc.wait(timeout=300) == 141, err
    assert "Traceback" not in err and "Exception ignored" not in err and "error:" not in err


def _api_with_lone_surrogate(tmp_path) -> Path:
    """weather.json with a "\\ud800" JSON escape in a parameter's description: valid JSON, but
    not text a tokenizer can take."""
    document = json.loads(WEATHER.read_text())
    operation = document["paths"]["/weather/current"]["get"]
    operation["parameters"][0]["description"] = "City name \ud800."
    path = tmp_path / "weather.json"
    path.write_text(json.dumps(document))  # json.dumps writes it as the escape \\ud800
    return path


def test_lone_surrogate_in_an_api_description_is_one_line_before_the_model_loads(
        no_model, tmp_path, capsys):
    api = _api_with_lone_surrogate(tmp_path)
    assert main(["call", "Weather in Paris?", "--apis", str(api)]) == 2
    line = _one_error_line(capsys.readouterr().err)
    assert "function get_current_weather, parameter city" in line
    assert "its description is not valid UTF-8 text" in line and str(api) in line
    rows = tmp_path / "rows.jsonl"
    rows.write_text(json.dumps({"query": "Weather in Paris?", "functions": "weather.json"}) + "\n")
    assert main(["generate", "--input", str(rows)]) == 2
    line = _one_error_line(capsys.readouterr().err)
    assert f"{rows}:1: " in line and "parameter city" in line
    tool = {"name": "f", "description": "x \ud800", "parameters": {"type": "object"}}
    rows.write_text(json.dumps({"query": "q", "functions": [tool]}) + "\n")
    assert main(["generate", "--input", str(rows)]) == 2
    assert "function f: its description is not valid" in _one_error_line(capsys.readouterr().err)


def test_lone_surrogate_in_a_jsonl_query_is_one_line_before_the_model_loads(no_model, tmp_path,
                                                                          capsys):
    rows = _rows_file(tmp_path, ["Weather in Paris?", "caf\udce9"])
    assert main(["generate", "--input", str(rows)]) == 2
    out, err = capsys.readouterr()
    assert f"{rows}:2: the query is not valid UTF-8 text" in _one_error_line(err) and out == ""


@pytest.mark.parametrize("damage, message", [
    (lambda d: (d / "adapter_config.json").write_text("[1]"), "expected a JSON object"),
    (lambda d: (d / "adapter_config.json").write_text('{"r": "8", "lora_alpha": 16}'),
     "'r' must be an integer"),
    (lambda d: (d / "adapter_model.safetensors").write_bytes(b"\xff" * 16),
     "runs past the end"),
])
def test_corrupt_adapter_is_one_line_before_the_model_loads(tmp_path, capsys, monkeypatch,
                                                            damage, message):
    import transformers

    def refuse(*args, **kwargs):
        raise AssertionError("the model was loaded before the bad adapter was reported")

    monkeypatch.setattr(transformers.AutoModelForCausalLM, "from_pretrained", refuse)
    monkeypatch.setattr(transformers.AutoTokenizer, "from_pretrained", refuse)
    adapter = tmp_path / "adapter"
    shutil.copytree(base.default_adapter_dir(), adapter)
    damage(adapter)
    assert main(["call", "Weather in Paris?", "--apis", str(WEATHER), "--adapter",
                 str(adapter)]) == 2
    assert message in _one_error_line(capsys.readouterr().err)


def test_model_folder_without_tokenizer_is_one_line(tmp_path, capsys, monkeypatch):
    folder = tmp_path / "model"
    folder.mkdir()
    (folder / "config.json").write_text(json.dumps({"model_type": "gemma3_text"}))
    assert main(["call", "Weather in Paris?", "--apis", str(WEATHER), "--model",
                 str(folder)]) == 2
    assert "has no tokenizer files" in _one_error_line(capsys.readouterr().err)
    (folder / "config.json").write_text("[]")
    assert main(["call", "Weather in Paris?", "--apis", str(WEATHER), "--model",
                 str(folder)]) == 2
    assert "holds a JSON list, not an object" in _one_error_line(capsys.readouterr().err)
