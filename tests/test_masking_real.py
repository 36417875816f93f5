"""Token FSMs with real tokenizers (Gemma 3 262k SentencePiece, Llama 3 128k byte-level BPE,
Mistral 32k SentencePiece): soundness against Lark, completeness under canonical and other
tokenizations, and a differential test against xgrammar's masks.

The small form runs by default; OCTOGRAM_SLOW=full runs many more walks.
"""

import os
import random

import lark
import numpy as np
import pytest

from octogram.masking import Vocabulary, compile_grammar
from octogram.masking.grammar import compile_lark

from masking_helpers import fast_walk, lark_accepts, random_segmentation, sample_string
from test_masking_fsm import CALLS, JSON

FULL = os.environ.get("OCTOGRAM_SLOW") == "full"
WALKS = 200 if FULL else 25
TOKENIZERS = ["gemma3", "llama3", "mistral_32k"]

# the same language as a single regex, for xgrammar's regex compiler
CALL_REGEX = (r'(get_weather\(city="([^"\\\n]|\\[^\n])*"(, units="(metric|imperial)")?\)'
              r'|no_relevant_function\(query="([^"\\\n]|\\[^\n])*"\))')


@pytest.fixture(scope="module", params=TOKENIZERS)
def real(request):
    from benchmarks import real_tokenizers
    try:
        tokenizer = getattr(real_tokenizers, request.param)()
    except real_tokenizers.TokenizerUnavailable as exc:
        pytest.skip(f"{request.param}: {exc}")
    return request.param, tokenizer, Vocabulary.from_tokenizer(tokenizer)


@pytest.fixture(autouse=True)
def private_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("OCTOGRAM_CACHE_DIR", str(tmp_path))


@pytest.mark.slow
@pytest.mark.parametrize("grammar, depth", [(CALLS, 5), (JSON, 3)], ids=["calls", "json"])
def test_random_walks_parse_with_lark(real, grammar, depth):
    name, tokenizer, vocab = real
    fsm = compile_grammar(grammar, vocab, max_recursion_depth=depth)
    parser = lark.Lark(grammar, parser="earley", lexer="dynamic_complete")
    rng = random.Random(7)
    done = 0
    for _ in range(WALKS):
        tokens = fast_walk(fsm, rng)
        if tokens is None:
            continue
        done += 1
        text = b"".join(vocab.tokens[t] for t in tokens).decode()
        assert lark_accepts(parser, text), (name, text)
    assert done >= WALKS // 3


@pytest.mark.slow
def test_canonical_and_other_tokenizations_stay_allowed(real):
    name, tokenizer, vocab = real
    fsm = compile_grammar(CALLS, vocab)
    dfa = compile_lark(CALLS).dfa
    by_bytes = {t: i for i, t in enumerate(vocab.tokens) if t}
    rng = random.Random(8)
    canonical_checked = 0
    for _ in range(WALKS * 2):
        data = sample_string(dfa, rng)
        text = data.decode()
        tokenizations = [random_segmentation(data, by_bytes, rng) for _ in range(2)]
        canonical = tokenizer.encode(text, add_special_tokens=False)
        # a SentencePiece tokenizer that prepends a space to a text's start (Mistral's) does not
        # spell exactly these bytes; its other tokenizations are still checked
        if b"".join(vocab.tokens[t] for t in canonical) == data:
            tokenizations.append(canonical)
            canonical_checked += 1
        for seg in tokenizations:
            assert seg is not None
            m = fsm.matcher()
            for i, t in enumerate(seg):
                assert m.advance(t), (name, text, i, vocab.tokens[t])
            assert m.is_accepting()
    assert canonical_checked >= WALKS // 2 or vocab.adds_prefix_space


@pytest.mark.slow
def test_masks_equal_xgrammar_where_both_are_exact(real):
    """Equal on every non-special token, with two explained differences. xgrammar sets the bits
    of some special tokens (it does not treat them as text); Octogram never allows a special token
    inside a grammar. After the byte 0xED, xgrammar also allows continuation bytes A0-BF, which
    spell UTF-16 surrogates (invalid UTF-8 by RFC 3629, refused by Python's decoder and so by
    Lark); Octogram allows only 80-9F there."""
    xgr = pytest.importorskip("xgrammar")
    name, tokenizer, vocab = real
    fsm = compile_grammar(f"start: /{CALL_REGEX}/\n", vocab)
    info = xgr.TokenizerInfo.from_huggingface(tokenizer, vocab_size=vocab.size,
                                              stop_token_ids=vocab.eos_token_ids)
    compiled = xgr.GrammarCompiler(info).compile_regex(CALL_REGEX)
    bitmask = xgr.allocate_token_bitmask(1, vocab.size)
    special = set(vocab.special_token_ids)
    rng = random.Random(9)
    compared = 0
    for _ in range(max(4, WALKS // 4)):
        theirs_m, ours_m = xgr.GrammarMatcher(compiled), fsm.matcher()
        last = b""
        for _ in range(30):
            theirs_m.fill_next_token_bitmask(bitmask)
            bits = np.unpackbits(bitmask[0].numpy().view(np.uint8), bitorder="little")[:vocab.size]
            theirs = set(np.flatnonzero(bits).tolist()) - special
            ours = set(ours_m.allowed_tokens())
            if last.endswith(b"\xed"):
                extra = theirs - ours
                assert ours - special <= theirs
                assert all(0xA0 <= vocab.tokens[t][0] <= 0xBF for t in extra)
            else:
                assert ours - special == theirs, (name, sorted(ours ^ theirs)[:10])
            assert not (ours & special) - set(vocab.eos_token_ids)
            compared += 1
            leaving = [t for t in fsm.state(ours_m.state).exc_tokens.tolist() if t not in special]
            choices = leaving if leaving and rng.random() < 0.5 else sorted(ours - special)
            if not choices or (ours_m.is_accepting() and rng.random() < 0.2):
                break
            t = rng.choice(choices)
            last = vocab.tokens[t]
            assert ours_m.advance(t) and theirs_m.accept_token(t)
    assert compared > 20
