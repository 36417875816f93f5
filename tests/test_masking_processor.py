"""GrammarLogitsProcessor inside transformers' generate: greedy, sampling, beam search, one
grammar per prompt, reuse across calls — with a tiny random Llama so no weights are needed."""

import lark
import pytest
import torch
from transformers import LlamaConfig, LlamaForCausalLM

from octogram.masking import GrammarLogitsProcessor, GrammarViolation, compile_grammar

from masking_helpers import lark_accepts
from test_masking_fsm import CALLS, toy_vocabulary

OTHER = 'start: "yes" | "no" | "maybe(" /[0-9]+/ ")"\n'


@pytest.fixture(scope="module")
def setup():
    vocab = toy_vocabulary(seed=3, extra=600, pad=3)
    torch.manual_seed(0)
    config = LlamaConfig(vocab_size=vocab.size, hidden_size=32, intermediate_size=64,
                         num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=2,
                         max_position_embeddings=256, eos_token_id=vocab.eos_token_ids[0],
                         pad_token_id=vocab.eos_token_ids[0], bos_token_id=0)
    model = LlamaForCausalLM(config).eval()
    calls = compile_grammar(CALLS, vocab, cache=False)
    other = compile_grammar(OTHER, vocab, cache=False)
    return vocab, model, calls, other


def check_rows(sequences, prompt_len, fsm, vocab, grammar):
    parser = lark.Lark(grammar, parser="earley", lexer="dynamic_complete")
    eos = vocab.eos_token_ids[0]
    for row in sequences.tolist():
        generated = row[prompt_len:]
        m = fsm.matcher()
        for t in generated:
            if m.is_finished():
                assert t == eos  # padding after the end
                continue
            assert m.advance(t), (generated, t)
        if m.is_finished():
            text = b"".join(vocab.tokens[t] for t in generated if t != eos).decode()
            assert lark_accepts(parser, text), text


@pytest.mark.parametrize("kwargs", [
    dict(do_sample=False),
    dict(do_sample=True, temperature=1.5, top_k=0),
    dict(do_sample=True, top_p=0.9, num_return_sequences=3),
    dict(num_beams=3, do_sample=False, num_return_sequences=2),
], ids=["greedy", "sample", "top_p", "beams"])
def test_generate_output_follows_the_grammar(setup, kwargs):
    vocab, model, calls, _ = setup
    proc = GrammarLogitsProcessor(calls)
    prompt = torch.tensor([[0, 5, 9, 13], [0, 7, 7, 2]])
    torch.manual_seed(1)
    out = model.generate(prompt, attention_mask=torch.ones_like(prompt), logits_processor=[proc],
                         max_new_tokens=40, **kwargs)
    check_rows(out, prompt.shape[1], calls, vocab, CALLS)


def test_one_grammar_per_prompt_and_reuse(setup):
    vocab, model, calls, other = setup
    proc = GrammarLogitsProcessor([calls, other])
    prompt = torch.tensor([[0, 5, 9, 13], [0, 7, 7, 2]])
    for seed in range(2):  # the same processor, two generate calls
        torch.manual_seed(seed)
        out = model.generate(prompt, attention_mask=torch.ones_like(prompt), logits_processor=[proc],
                             max_new_tokens=30, do_sample=True, num_return_sequences=2)
        # rows 0-1 belong to the first prompt, rows 2-3 to the second
        check_rows(out[:2], prompt.shape[1], calls, vocab, CALLS)
        check_rows(out[2:], prompt.shape[1], other, vocab, OTHER)


def test_reuse_with_longer_prompts_at_the_same_batch_size(setup):
    """A second generate whose prompt is longer than the first one's output, and one whose prompt
    continues the first one's output (a next chat turn), each start a new generation."""
    vocab, model, calls, _ = setup
    proc = GrammarLogitsProcessor(calls)
    first = torch.tensor([[0, 5, 9, 13], [0, 7, 7, 2]])
    longer = torch.tensor([[0] + [5, 9, 13] * 4, [0] + [7, 7, 2] * 4])
    out = model.generate(first, attention_mask=torch.ones_like(first), logits_processor=[proc],
                         max_new_tokens=3, do_sample=False)
    for prompt in (longer, torch.cat([out, torch.tensor([[9, 9], [5, 5]])], dim=1)):
        got = model.generate(prompt, attention_mask=torch.ones_like(prompt),
                             logits_processor=[proc], max_new_tokens=20, do_sample=False)
        check_rows(got, prompt.shape[1], calls, vocab, CALLS)


def test_masks_only_what_the_grammar_forbids(setup):
    vocab, _, calls, _ = setup
    proc = GrammarLogitsProcessor(calls)
    scores = torch.randn(1, vocab.size + 5)  # logits wider than the vocabulary
    out = proc(torch.tensor([[0, 1]]), scores.clone())
    allowed = set(calls.allowed_tokens(calls.start_state))
    finite = set(torch.isfinite(out[0]).nonzero().flatten().tolist())
    assert finite == allowed
    assert torch.equal(out[0, sorted(allowed)], scores[0, sorted(allowed)])


def test_a_token_the_grammar_forbids_is_reported(setup):
    vocab, _, calls, _ = setup
    proc = GrammarLogitsProcessor(calls)
    proc(torch.tensor([[0, 1]]), torch.zeros(1, vocab.size))
    bad = vocab.tokens.index(b")")
    with pytest.raises(GrammarViolation, match="row 0: token"):
        proc(torch.tensor([[0, 1, bad]]), torch.zeros(1, vocab.size))


def test_bad_configuration_is_a_clear_error(setup):
    vocab, _, calls, other = setup
    proc = GrammarLogitsProcessor([calls, other])
    with pytest.raises(ValueError, match="multiple of the number of grammars"):
        proc(torch.zeros(3, 2, dtype=torch.long), torch.zeros(3, vocab.size))
    with pytest.raises(ValueError, match="logits have"):
        GrammarLogitsProcessor(calls)(torch.zeros(1, 2, dtype=torch.long), torch.zeros(1, 10))
