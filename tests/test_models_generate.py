"""The batched decode engine on the embedded Gemma 3 270M, differential against HF `generate`.

Grammars here are hand-written Lark, so these tests exercise the engine and the masks alone.
The first test run converts the embedded model into the cache (about a minute and a half).
"""

from __future__ import annotations

import pytest

from octogram.masking import Vocabulary, compile_grammar
from octogram.octopus_models.base import load_model
from octogram.octopus_models.decode import decode, eos_token_ids, logits_width
from octogram.octopus_models.hf import hf_decode

pytestmark = pytest.mark.slow

WEATHER = r'''
start: call
call: "get_current_weather(" "city=" STRING (", " "units=" UNITS)? ")"
    | "get_forecast(" "city=" STRING ", " "days=" INT ")"
    | "no_relevant_function(" "user_query=" STRING ")"
UNITS: "\"metric\"" | "\"imperial\""
STRING: /"([^"\\\n]|\\.)*"/
INT: /-?(0|[1-9][0-9]*)/
'''

DIGITS = r'''
start: "answer: " NUMBER
NUMBER: /[1-9][0-9]{0,5}/
'''

STUBS = '''def get_current_weather(city: str, units: str = "metric"):
    """Current weather conditions for a city."""

def get_forecast(city: str, days: int):
    """Daily weather forecast for a city."""

def no_relevant_function(user_query: str):
    """Call this when no other function fits the query."""
'''

QUERIES = ["What is the weather in Paris?", "Will it rain in Tokyo in the next 3 days?",
           "Play some jazz music"]


def _prompt(query: str) -> str:
    return f"Call one of these functions.\n\n{STUBS}\nQuery: {query}\nCall:\n"


@pytest.fixture(scope="module")
def model_and_tokenizer():
    return load_model(adapter=None, quiet=True)  # the engine's contracts, on the base model they were written for


@pytest.fixture(scope="module")
def fsms(model_and_tokenizer):
    model, tok = model_and_tokenizer
    vocab = Vocabulary.from_tokenizer(tok, logits_width(model),
                                      eos_token_ids=eos_token_ids(model, tok))
    return {"weather": compile_grammar(WEATHER, vocab), "digits": compile_grammar(DIGITS, vocab)}


def _accepted(fsm, ids, eos) -> bool:
    m = fsm.matcher()
    return all(m.advance(t) for t in ids) and m.advance(eos)


@pytest.fixture(scope="module")
def greedy_rows(model_and_tokenizer, fsms):
    """Masked greedy rows from the host engine without jump-forward, shared by the comparisons."""
    model, tok = model_and_tokenizer
    prompts = [_prompt(q) for q in QUERIES[:2]]
    grammars = [fsms["weather"]] * len(prompts)
    return prompts, grammars, decode(model, tok, prompts, grammars, max_new_tokens=20,
                                     jump_forward=False)


def test_masked_greedy_equals_hf_generate_with_the_processor(model_and_tokenizer, fsms,
                                                             greedy_rows):
    model, tok = model_and_tokenizer
    prompts, grammars, ours = greedy_rows
    theirs = hf_decode(model, tok, prompts, grammars, max_new_tokens=20)
    assert [o.token_ids for o in ours] == [t.token_ids for t in theirs]
    assert all(o.stop_reason == "end" for o in ours)
    eos = eos_token_ids(model, tok)[0]
    assert all(_accepted(fsms["weather"], o.token_ids, eos) for o in ours)


def test_jump_forward_does_not_change_greedy_output(model_and_tokenizer, greedy_rows):
    model, tok = model_and_tokenizer
    prompts, grammars, plain = greedy_rows
    jumped = decode(model, tok, prompts, grammars, max_new_tokens=20, jump_forward=True)
    assert [o.token_ids for o in jumped] == [o.token_ids for o in plain]
    assert sum(o.forced_tokens for o in jumped) > 0  # the rule did force tokens here
    assert all(o.forced_tokens == 0 for o in plain)


def test_device_engine_matches_the_host_engine(model_and_tokenizer, fsms, greedy_rows):
    """The device-resident loop (torch reference of DeviceFSM.step on CPU) against matchers."""
    model, tok = model_and_tokenizer
    prompts, grammars, host = greedy_rows
    device = decode(model, tok, prompts, grammars, max_new_tokens=20, engine="device")
    assert [o.token_ids for o in device] == [o.token_ids for o in host]
    assert [o.stop_reason for o in device] == [o.stop_reason for o in host]


def test_mixed_batch_rows_follow_their_own_grammar_or_none(model_and_tokenizer, fsms):
    model, tok = model_and_tokenizer
    prompts = [_prompt(QUERIES[0]), "The number of the beast is", _prompt(QUERIES[1])]
    grammars = [fsms["weather"], None, fsms["digits"]]
    batch = decode(model, tok, prompts, grammars, max_new_tokens=8)
    alone = [decode(model, tok, [p], [g], max_new_tokens=8)[0] for p, g in zip(prompts, grammars)]
    assert [o.token_ids for o in batch] == [o.token_ids for o in alone]
    unmasked = hf_decode(model, tok, [prompts[1]], None, max_new_tokens=8)[0]
    assert batch[1].token_ids == unmasked.token_ids
    assert batch[2].text.startswith("answer: ") and batch[2].text[8:].isdigit()


@pytest.mark.parametrize("engine", ["host", "device"])
def test_seeded_sampling_is_reproducible_and_stays_in_the_grammar(model_and_tokenizer, fsms,
                                                                  engine):
    model, tok = model_and_tokenizer
    prompts = [_prompt(QUERIES[2]), "The number of the beast is"]
    grammars = [fsms["weather"], fsms["digits"]]
    opts = dict(max_new_tokens=10, temperature=1.5, top_k=50, top_p=0.95, engine=engine)
    first = decode(model, tok, prompts, grammars, seed=7, **opts)
    again = decode(model, tok, prompts, grammars, seed=7, **opts)
    assert [o.token_ids for o in first] == [o.token_ids for o in again]
    eos = eos_token_ids(model, tok)[0]
    for o, g in zip(first, grammars):
        m = g.matcher()
        assert all(m.advance(t) for t in o.token_ids), o.text  # a prefix the grammar allows
        assert o.stop_reason == "length" or m.advance(eos)  # and complete where it ended


def test_max_new_tokens_cuts_rows_short(model_and_tokenizer, fsms):
    model, tok = model_and_tokenizer
    out = decode(model, tok, [_prompt(QUERIES[0])], [fsms["weather"]], max_new_tokens=3)[0]
    assert out.stop_reason == "length" and len(out.token_ids) == 3


@pytest.mark.parametrize("limit", [10, 14, 24])
def test_close_at_limit_finishes_rows_and_leaves_the_others_alone(model_and_tokenizer, fsms, limit):
    from octogram.masking import shortest_completion

    model, tok = model_and_tokenizer
    fsm, eos = fsms["weather"], eos_token_ids(model, tok)[0]
    assert len(shortest_completion(fsm, fsm.start_state)) - 1 <= limit  # it can always finish
    prompts = [_prompt(q) for q in QUERIES]
    plain = decode(model, tok, prompts, [fsm] * 3, max_new_tokens=limit)
    closed = decode(model, tok, prompts, [fsm] * 3, max_new_tokens=limit, close_at_limit=True)
    for p, c in zip(plain, closed):
        assert c.stop_reason in ("end", "closed") and len(c.token_ids) <= limit
        assert _accepted(fsm, c.token_ids, eos), c.text
        if c.stop_reason == "end":  # the model finished in time on its own: nothing changed
            assert c.token_ids == p.token_ids
        else:  # the model's tokens up to some point, then the shortest completion from there
            same = next((k for k, (a, b) in enumerate(zip(c.token_ids, p.token_ids)) if a != b),
                        min(len(c.token_ids), len(p.token_ids)))
            states = [fsm.start_state]
            for t in c.token_ids:
                states.append(fsm.step(states[-1], t))
            assert any(c.token_ids[k:] + [eos] == shortest_completion(fsm, states[k])
                       for k in range(same + 1)), (c.text, p.text)
    if limit == 10:
        assert [c.stop_reason for c in closed].count("closed") >= 1


def test_grammar_for_another_vocabulary_width_is_refused(model_and_tokenizer):
    model, tok = model_and_tokenizer
    vocab = Vocabulary.from_tokenizer(tok, logits_width(model) + 64,
                                      eos_token_ids=eos_token_ids(model, tok))
    fsm = compile_grammar(DIGITS, vocab)
    with pytest.raises(ValueError, match="compiled for"):
        decode(model, tok, ["x"], [fsm], max_new_tokens=2)



def test_generator_compiles_lazily_and_closes_calls_at_the_limit(model_and_tokenizer, tmp_path,
                                                                 monkeypatch):
    """`OctopusGenerator` on CPU: grammars compiled lazily (the masks along each answer equal a
    full compile's), and answers that would not fit in the limit closed into valid calls."""
    import warnings
    from pathlib import Path

    from octogram.grammars import load
    from octogram.octopus_models import OctopusGenerator

    model, tok = model_and_tokenizer
    monkeypatch.setattr("octogram.masking.cache.cache_dir", lambda: tmp_path)  # nothing cached
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the example's latitude bounds are not expressible
        functions = load(Path(__file__).resolve().parent.parent / "octopus_models" / "examples"
                         / "weather.json")
        gen = OctopusGenerator(model, tok)
        results = gen.call_batch([(q, functions) for q in QUERIES], max_new_tokens=12)
        full = compile_grammar(gen.grammar_text(results[0].candidates), gen.vocabulary, cache=False)
    assert all(r.error is None and r.stop_reason in ("end", "closed") for r in results)
    assert "closed" in [r.stop_reason for r in results]
    lazy = gen.fsm(results[0].candidates)
    assert full.complete and not lazy.complete
    ids = tok(results[0].text, add_special_tokens=False)["input_ids"]
    a, b = lazy.matcher(), full.matcher()
    for t in ids:
        assert a.allowed_tokens() == b.allowed_tokens()
        assert a.advance(t) and b.advance(t)


class _TinyTokenizer:
    """Just what `decode` reads from a tokenizer, for prompts given as token ids."""

    eos_token_id = 1
    pad_token_id = 0

    def decode(self, ids, skip_special_tokens=False):
        return " ".join(map(str, ids))


@pytest.fixture(scope="module")
def tiny_model():
    """A tiny random Llama (no weights to convert or download)."""
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    torch.manual_seed(0)
    config = LlamaConfig(vocab_size=64, hidden_size=16, intermediate_size=32, num_hidden_layers=2,
                         num_attention_heads=2, num_key_value_heads=1, max_position_embeddings=64,
                         eos_token_id=1, pad_token_id=0, bos_token_id=2)
    return LlamaForCausalLM(config).eval()


def test_decoding_emits_no_future_warning(tiny_model):
    """The KV cache goes by the keyword the model's forward takes (`cache` in transformers 5,
    `past_key_values` before): no deprecation warning from decoding, nor from `hf_decode`."""
    import warnings

    from octogram.octopus_models.transformers_runner import cache_keyword

    assert cache_keyword(tiny_model) in ("cache", "past_key_values")
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        out = decode(tiny_model, _TinyTokenizer(), [[2, 5, 9], [2, 7]], max_new_tokens=4)
        decode(tiny_model, _TinyTokenizer(), [[2, 5, 9]], max_new_tokens=4, temperature=1.0,
               seed=3)
    assert len(out) == 2 and all(o.token_ids for o in out)
    # the cache is used, not dropped: greedy tokens equal transformers' own generate
    import torch

    prompt = torch.tensor([[2, 5, 9]])
    theirs = tiny_model.generate(prompt, attention_mask=torch.ones_like(prompt), max_new_tokens=4,
                                 do_sample=False, eos_token_id=1, pad_token_id=0)[0, 3:].tolist()
    theirs = theirs[:theirs.index(1)] if 1 in theirs else theirs
    assert out[0].token_ids == theirs
    future = [w for w in caught if issubclass(w.category, (FutureWarning, DeprecationWarning))]
    assert not future, [str(w.message) for w in future]


def test_cache_keyword_follows_the_forward_signature():
    from octogram.octopus_models.transformers_runner import cache_keyword

    class New:
        def forward(self, input_ids=None, cache=None, use_cache=None, **kwargs): ...

    class Old:
        def forward(self, input_ids=None, past_key_values=None, use_cache=None, **kwargs): ...

    class Wrapper:  # PEFT-style: **kwargs only, the real forward on the base model
        def __init__(self, base):
            self.base = base

        def forward(self, input_ids=None, **kwargs): ...

        def get_base_model(self):
            return self.base

    assert cache_keyword(New()) == "cache"
    assert cache_keyword(Old()) == "past_key_values"
    assert cache_keyword(Wrapper(New())) == "cache"
    assert cache_keyword(Wrapper(Old())) == "past_key_values"
    assert cache_keyword(Wrapper(None)) == "past_key_values"
