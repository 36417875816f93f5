"""Token FSMs on small vocabularies: soundness against Lark, completeness, the matcher API,
the cache, dead ends, padding and special tokens."""

import random

import lark
import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from octogram.masking import GrammarCompileError, Vocabulary, compile_grammar
from octogram.masking import cache as fsm_cache
from octogram.masking.grammar import compile_lark

from test_masking_grammar import JSON, grammars
from masking_helpers import (bitmask_to_ids, lark_accepts, random_segmentation, random_walk,
                             row_layout_cases, sample_string)

CALLS = r'''
start: call | "[" call (", " call)* "]"
call: get_weather | search | no_relevant_function
get_weather: "get_weather(" "city=" STRING [", units=" UNITS] ")"
UNITS: "\"metric\"" | "\"imperial\""
search: "search(" "query=" STRING ", limit=" INT [", tags=" list] ")"
list: "[" [STRING (", " STRING)*] "]"
no_relevant_function: "no_relevant_function(" "query=" STRING ")"
STRING: "\"" /([^"\\\n]|\\.)*/ "\""
INT: /-?(0|[1-9][0-9]*)/
'''

def toy_vocabulary(seed=0, extra=2000, pad=5):
    """Every single byte, some grammar-shaped chunks, random chunks, multi-byte UTF-8 split
    across tokens, one EOS and one other special token, and padded ids past the tokenizer."""
    rng = random.Random(seed)
    alphabet = 'abcdefghijklmnopqrstuvwxyz_=(), "[]{}:0123456789.-\\\nTFN'
    toks = [bytes([i]) for i in range(256)]
    toks += [b"get_weather(", b"city=", b'city="', b'", ', b'")', b"search", b'query="',
             b"no_relevant_function(", b"[", b"], ", b"\\\"", "é".encode(), "日本".encode(),
             "日".encode()[:2], "日".encode()[2:], b" \"", b"\":", b"true", b"null", b"12"]
    toks += [bytes(rng.choice(alphabet.encode()) for _ in range(rng.randint(2, 7))) for _ in range(extra)]
    toks = list(dict.fromkeys(toks))
    eos, special = len(toks), len(toks) + 1
    tokens = toks + [b"", b""]
    return Vocabulary(tokens, eos_token_ids=[eos], special_token_ids=[special], size=len(tokens) + pad)


@pytest.fixture(scope="module")
def vocab():
    return toy_vocabulary()


@pytest.fixture(autouse=True)
def private_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("OCTOGRAM_CACHE_DIR", str(tmp_path))


@pytest.mark.parametrize("grammar, depth", [(CALLS, 5), (JSON, 3)])
def test_random_walks_parse_with_lark(vocab, grammar, depth):
    fsm = compile_grammar(grammar, vocab, max_recursion_depth=depth)
    parser = lark.Lark(grammar, parser="earley", lexer="dynamic_complete")
    rng = random.Random(1)
    finished = 0
    for _ in range(150):
        tokens = random_walk(fsm, rng)
        if tokens is None:
            continue
        finished += 1
        text = b"".join(vocab.tokens[t] for t in tokens).decode()
        assert lark_accepts(parser, text), text
    assert finished > 50


@pytest.mark.parametrize("grammar, depth", [(CALLS, 5), (JSON, 3)])
def test_grammar_strings_stay_allowed_under_any_tokenization(vocab, grammar, depth):
    fsm = compile_grammar(grammar, vocab, max_recursion_depth=depth)
    dfa = compile_lark(grammar, max_recursion_depth=depth).dfa
    by_bytes = {t: i for i, t in enumerate(vocab.tokens) if t}
    rng = random.Random(2)
    for _ in range(150):
        data = sample_string(dfa, rng)
        for _ in range(3):
            seg = random_segmentation(data, by_bytes, rng)
            assert seg is not None  # every single byte is a token
            m = fsm.matcher()
            for t in seg:
                assert m.advance(t), (data, seg)
            assert m.is_accepting() and m.advance(vocab.eos_token_ids[0])


def test_masks_agree_with_advance_and_the_bitmask_layout(vocab):
    fsm = compile_grammar(CALLS, vocab)
    m = fsm.matcher()
    row = torch.zeros(fsm.words, dtype=torch.int32)
    rng = random.Random(3)
    for _ in range(25):
        m.fill_bitmask(row)
        allowed = set(bitmask_to_ids(row, vocab.size))
        assert allowed == set(m.allowed_tokens())
        probe = rng.sample(range(vocab.size), 60) + sorted(allowed)[:20]
        for t in probe:
            assert fsm.is_allowed(m.state, t) == (t in allowed)
            # bit t % 32 of word t // 32, little-endian within the int32
            assert bool((int(row[t // 32]) >> (t % 32)) & 1) == (t in allowed)
        if m.is_finished():
            break
        choice = rng.choice(sorted(allowed))
        assert m.advance(choice)


def test_fill_bitmask_into_any_target(vocab):
    """The numpy fast path and the torch fallback write the same words, into 1-D rows, rows of a
    2-D bitmask (switching targets between calls) and non-contiguous targets; a target of
    another dtype or width is an error, not a conversion."""
    fsm = compile_grammar(CALLS, vocab)
    m = fsm.matcher()
    rng = random.Random(11)
    for step in range(30):
        expected = fsm.mask_row(m.state) if not m.is_finished() else fsm.finished_row()
        flat = torch.zeros(fsm.words, dtype=torch.int32)
        m.fill_bitmask(flat)
        assert torch.equal(flat, expected)
        grid = torch.full((3, fsm.words), 7, dtype=torch.int32)
        m.fill_bitmask(grid, step % 3)
        assert torch.equal(grid[step % 3], expected)
        assert (grid[(step + 1) % 3] == 7).all()           # the other rows are untouched
        strided = torch.zeros(fsm.words, 2, dtype=torch.int32)[:, 1]
        m.fill_bitmask(strided)
        assert torch.equal(strided, expected)
        if m.is_finished():
            break
        allowed = m.allowed_tokens()
        assert m.advance(rng.choice(allowed))
    with pytest.raises(ValueError, match=r"shape \(%d,\)" % fsm.words):
        m.fill_bitmask(torch.zeros(fsm.words + 1, dtype=torch.int32))  # wrong width: an error
    with pytest.raises(ValueError, match="row 1"):
        m.fill_bitmask(torch.zeros(2, fsm.words - 1, dtype=torch.int32), 1)
    for dtype in (torch.uint8, torch.int64, torch.float32, torch.bool):
        with pytest.raises(ValueError, match=f"must be int32.*{dtype}"):
            m.fill_bitmask(torch.zeros(fsm.words, dtype=dtype))  # no silent conversion
    with pytest.raises(ValueError, match="torch.Tensor"):
        m.fill_bitmask([0] * fsm.words)


def test_row_store_fill_writes_every_word_whatever_was_there():
    """Sparse rows are written as a memset plus the words that differ from it; rows at, just
    past and far past the sparse limit, on either background, overwrite garbage exactly."""
    from octogram.masking.state_table import _SPARSE_FILL_WORDS, RowStore

    rng = np.random.default_rng(5)
    words = 2 * _SPARSE_FILL_WORDS + 37
    store = RowStore(words)
    cases = row_layout_cases(store, rng, _SPARSE_FILL_WORDS)
    planned = [store.fill_plans[i] is not None for i, _ in cases]
    assert any(planned) and not all(planned)  # both paths are exercised
    loaded = RowStore.from_compact(words, store.compact())  # the on-disk cache's form
    for i, row in cases:
        for source in (store, loaded):
            dst = rng.integers(-2**31, 2**31 - 1, words, dtype=np.int32)
            source.fill(dst, i)
            np.testing.assert_array_equal(dst, row)
            np.testing.assert_array_equal(source.dense(i), row)
            assert source.bits(i) == row.tobytes()
    assert torch.equal(loaded.tensor(), store.tensor())


def test_disallowed_token_changes_nothing(vocab):
    fsm = compile_grammar(CALLS, vocab)
    m = fsm.matcher()
    state = m.state
    bad = vocab.tokens.index(b")")
    assert not m.advance(bad)
    assert m.state == state
    assert not m.advance(vocab.size + 3)       # out of range
    assert not m.advance(vocab.special_token_ids[-1])


def test_special_padding_and_eos(vocab):
    fsm = compile_grammar(CALLS, vocab)
    eos = vocab.eos_token_ids[0]
    other_special = [s for s in vocab.special_token_ids if s != eos][0]
    padded = list(range(vocab.tokenizer_size, vocab.size))
    assert padded
    rng = random.Random(4)
    for _ in range(40):
        m = fsm.matcher()
        for _ in range(60):
            allowed = set(m.allowed_tokens())
            assert other_special not in allowed and not allowed & set(padded)
            assert (eos in allowed) == m.is_accepting()
            if allowed == {eos} or (m.is_accepting() and rng.random() < 0.3):
                break
            assert m.advance(rng.choice(sorted(allowed - {eos})))


def test_rollback_and_forced_tokens(vocab):
    fsm = compile_grammar(CALLS, vocab)
    m = fsm.matcher()
    ids = {t: i for i, t in enumerate(vocab.tokens) if t}
    for piece in [b"no_relevant_function(", b'query="']:
        assert m.advance(ids[piece])
    after_quote = m.state
    assert m.advance(ids[b"a"]) and m.advance(ids[b'"'])
    forced = m.forced_tokens()
    # after the closing quote only ")" then EOS can follow
    assert [vocab.tokens[t] for t in forced[:1]] == [b")"] and forced[-1] == vocab.eos_token_ids[0]
    m.rollback(2)
    assert m.state == after_quote
    with pytest.raises(ValueError):
        m.rollback(99)
    m.reset()
    assert m.state == fsm.start_state and m.forced_tokens() == []  # a choice of function first


def test_lazy_and_eager_masks_are_identical(vocab):
    eager = compile_grammar(JSON, vocab, cache=False, max_recursion_depth=2)
    lazy = compile_grammar(JSON, vocab, cache=False, lazy=True, max_recursion_depth=2)
    rng = random.Random(5)
    for _ in range(30):
        tokens = random_walk(eager, rng, max_tokens=40)
        m_e, m_l = eager.matcher(), lazy.matcher()
        for t in tokens or []:
            assert torch.equal(eager.mask_row(m_e.state), lazy.mask_row(m_l.state))
            assert m_e.advance(t) and m_l.advance(t)


def test_tables_describe_the_same_fsm(vocab):
    fsm = compile_grammar(CALLS, vocab)
    t = fsm.tables()
    S = fsm.num_states
    assert t["state_row"].shape == (S,) and t["mask_rows"].shape[1] == fsm.words
    off, toks, nxt = t["trans_offsets"], t["trans_tokens"], t["trans_next"]
    rng = random.Random(6)
    for s in rng.sample(range(S), min(S, 40)):
        row = t["mask_rows"][t["state_row"][s]]
        for tok in bitmask_to_ids(row, vocab.size)[:50]:
            seg = toks[off[s]:off[s + 1]].tolist()
            expect = nxt[off[s] + seg.index(tok)].item() if tok in seg else t["default_next"][s].item()
            assert expect == fsm.next_state(s, tok)
        assert all(a < b for a, b in zip(seg, seg[1:]))


def test_second_compile_is_a_load_and_corruption_is_rebuilt(vocab, monkeypatch, caplog):
    first = compile_grammar(CALLS, vocab)
    files = list(fsm_cache.cache_dir().glob("*.safetensors"))
    assert len(files) == 1
    import octogram.masking.compile as compile_module
    calls = []
    real = compile_module.compile_parsed
    monkeypatch.setattr(compile_module, "compile_parsed", lambda *a, **k: calls.append(1) or real(*a, **k))
    parses = []
    real_parse = compile_module.parse_lark
    monkeypatch.setattr(compile_module, "parse_lark", lambda *a, **k: parses.append(1) or real_parse(*a, **k))
    second = compile_grammar(CALLS, vocab)
    assert calls == [] and parses == []  # no %import: the key needs no parse, and a hit no compile
    expected, loaded = first.tables(), second.tables()
    for name, value in expected.items():
        assert (torch.equal(value, loaded[name]) if isinstance(value, torch.Tensor)
                else value == loaded[name]), name
    for s in range(first.num_states):
        a, b = first.state(s), second.state(s)
        assert (a.single, a.default) == (b.single, b.default)
        assert first.allowed_count(s) == second.allowed_count(s) == len(first.allowed_tokens(s))
    data = bytearray(files[0].read_bytes())
    data[-100] ^= 0xFF  # flip a byte inside the tensor data
    files[0].write_bytes(bytes(data))
    third = compile_grammar(CALLS, vocab)
    assert calls == [1] and "corrupted" in caplog.text
    assert torch.equal(first.tables()["mask_rows"], third.tables()["mask_rows"])
    compile_grammar(CALLS, vocab, cache=False)
    assert calls == [1, 1]


def test_edited_cache_metadata_is_corruption_not_another_fsm(vocab, caplog):
    """The CRC covers the header too: a changed start state must not load as another language."""
    from safetensors import safe_open
    from safetensors.torch import save_file

    first = compile_grammar(CALLS, vocab)
    (path,) = fsm_cache.cache_dir().glob("*.safetensors")
    with safe_open(str(path), "pt") as f:
        meta = dict(f.metadata())
        tensors = {k: f.get_tensor(k) for k in f.keys()}
    meta["start_state"] = str((int(meta["start_state"]) + 1) % first.num_states)
    save_file(tensors, str(path), metadata=meta)
    assert fsm_cache.load(path, meta["key"]) is None and "corrupted" in caplog.text
    again = compile_grammar(CALLS, vocab)
    assert again.start_state == first.start_state


def test_grammar_with_imports_is_cached_under_its_imported_files(vocab, monkeypatch, tmp_path):
    import octogram.masking.compile as compile_module
    (tmp_path / "lib.lark").write_text('NUM: /[0-9]+/\n')
    text = '%import lib.NUM\nstart: "n=" NUM\n'
    first = compile_grammar(text, vocab, import_paths=[str(tmp_path)])
    calls = []
    real = compile_module.compile_parsed
    monkeypatch.setattr(compile_module, "compile_parsed", lambda *a, **k: calls.append(1) or real(*a, **k))
    second = compile_grammar(text, vocab, import_paths=[str(tmp_path)])
    assert calls == [] and torch.equal(first.tables()["mask_rows"], second.tables()["mask_rows"])
    (tmp_path / "lib.lark").write_text('NUM: /[0-7]+/\n')  # an imported file changed: recompile
    third = compile_grammar(text, vocab, import_paths=[str(tmp_path)])
    assert calls == [1] and not torch.equal(first.tables()["mask_rows"], third.tables()["mask_rows"])


def test_lazy_compile_is_not_saved_but_loads_a_full_compile(vocab, monkeypatch):
    import octogram.masking.compile as compile_module
    lazy = compile_grammar(CALLS, vocab, lazy=True)
    assert list(fsm_cache.cache_dir().glob("*.safetensors")) == []  # incomplete: never saved
    full = compile_grammar(CALLS, vocab)
    calls = []
    real = compile_module.compile_parsed
    monkeypatch.setattr(compile_module, "compile_parsed", lambda *a, **k: calls.append(1) or real(*a, **k))
    loaded = compile_grammar(CALLS, vocab, lazy=True)
    assert calls == []
    assert torch.equal(full.tables()["mask_rows"], loaded.tables()["mask_rows"])
    # a lazy DFA is not minimized, so its states are numbered differently: compare masks
    assert torch.equal(lazy.mask_row(lazy.matcher().state), loaded.mask_row(loaded.matcher().state))


@pytest.mark.parametrize("grammar, depth", [(CALLS, 4), (JSON, 3)])
@pytest.mark.parametrize("lazy", [False, True])
def test_shortest_completion_finishes_in_the_fewest_bytes(vocab, grammar, depth, lazy):
    from octogram.masking import shortest_completion

    fsm = compile_grammar(grammar, vocab, cache=False, lazy=lazy, max_recursion_depth=depth)
    # the oracle: fewest bytes to an accepting state, by a backward sweep over the full DFA
    full = compile_grammar(grammar, vocab, cache=False, max_recursion_depth=depth).dfa
    dist = np.where(full.accepting, 0, np.iinfo(np.int64).max)
    for _ in range(full.num_states):
        succ = np.where(full.trans >= 0, dist[np.maximum(full.trans, 0)], np.iinfo(np.int64).max)
        best = np.minimum(dist, np.where(succ.min(axis=1) < np.iinfo(np.int64).max,
                                         succ.min(axis=1) + 1, np.iinfo(np.int64).max))
        if (best == dist).all():
            break
        dist = best
    rng = random.Random(3)
    for _ in range(30):
        m, walked = fsm.matcher(), b""
        for _ in range(rng.randrange(12)):
            allowed = [t for t in m.allowed_tokens() if t not in fsm.eos_token_ids]
            if not allowed:
                break
            t = rng.choice(allowed)
            m.advance(t)
            walked += vocab.tokens[t]
        tokens = shortest_completion(fsm, m.state)
        assert tokens is not None and tokens[-1] in fsm.eos_token_ids
        assert m.consume(tokens) == len(tokens) and m.is_finished()
        s = 0
        for b in walked:
            s = int(full.trans[s, b])
        finish = b"".join(vocab.tokens[t] for t in tokens[:-1])
        assert len(finish) == dist[s], (walked, finish)


def test_bytes_the_vocabulary_cannot_spell_leave_no_dead_end():
    # no token spells "c": the "ac" branch must disappear, not strand a matcher after "a"
    tokens = [b"a", b"b", b"x", b""]
    vocab = Vocabulary(tokens, eos_token_ids=[3])
    fsm = compile_grammar('start: "a" "b" | "a" "c" | "x"\n', vocab, cache=False)
    m = fsm.matcher()
    assert m.advance(0) and m.allowed_tokens() == [1]
    with pytest.raises(GrammarCompileError, match="cannot spell"):
        compile_grammar('start: "c"\n', vocab, cache=False)


def test_multibyte_characters_split_across_tokens(vocab):
    fsm = compile_grammar('start: "日本" | "é"\n', vocab, cache=False)
    ids = {t: i for i, t in enumerate(vocab.tokens) if t}
    m = fsm.matcher()
    first, rest = "日".encode()[:2], "日".encode()[2:]
    assert m.advance(ids[first]) and m.advance(ids[rest]) and m.advance(ids["本".encode()[0:1]])
    assert not m.is_accepting()
    assert m.consume([ids[bytes([b])] for b in "本".encode()[1:]]) == 2 and m.is_accepting()


@settings(max_examples=25, deadline=None)
@given(grammars(), st.integers(0, 2**32 - 1))
def test_random_grammars_and_vocabularies(text, seed):
    """Hypothesis: for random small grammars and random vocabularies, every finished random
    walk parses with Lark, and every sampled string is accepted under a random tokenization."""
    rng = random.Random(seed)
    vocab = toy_vocabulary(seed=seed % 1000, extra=rng.randint(0, 400), pad=rng.randint(0, 40))
    fsm = compile_grammar(text, vocab, cache=False, lazy=rng.random() < 0.5)
    parser = lark.Lark(text, parser="earley", lexer="dynamic_complete")
    for _ in range(8):
        tokens = random_walk(fsm, rng, max_tokens=60)
        if tokens is not None:
            assert lark_accepts(parser, b"".join(vocab.tokens[t] for t in tokens).decode())
    dfa = compile_lark(text).dfa
    by_bytes = {t: i for i, t in enumerate(vocab.tokens) if t}
    for _ in range(8):
        data = sample_string(dfa, rng)
        m = fsm.matcher()
        seg = random_segmentation(data, by_bytes, rng)
        assert m.consume(seg) == len(seg) and m.is_accepting()


RUNS = r'''
start: "id=" ID ", tok=" TOKEN ", pin=" PIN ", name=" NAME
ID: /[a-z0-9_-]{1,12}/
TOKEN: /"[A-Za-z0-9]{2,9}"/
PIN: /[0-9]{4}[a-f]{0,3}/
NAME: /[a-z]{3,}/
'''


@pytest.mark.parametrize("text", [RUNS, CALLS])
def test_runs_of_alike_states_cross_like_a_plain_walk(vocab, text):
    """Every state that starts a run (a bounded repeat, one state per position) gets exactly the
    tokens and next states of the plain trie descent, from the shared exit walk."""
    from octogram.masking import crossing as tf
    from octogram.masking.vocab_index import vocab_index

    dfa = compile_lark(text).dfa
    index = vocab_index(vocab)
    runs = 0
    for s in range(dfa.num_states):
        chain = tf.chain_of(dfa, s, index.max_length + 1)
        if chain is None:
            continue
        runs += 1
        ids, nxt, _ = tf.cross_chain(dfa, index, chain)
        first = np.flatnonzero(dfa.row(s) != -1)
        ids2, nxt2, _ = tf._descend(index, dfa, s, first)
        assert sorted(zip(ids.tolist(), nxt.tolist())) == sorted(zip(ids2.tolist(), nxt2.tolist()))
    assert runs >= (10 if text is RUNS else 5)


def _transitions(fsm):
    return [[(t, fsm.next_state(s, t)) for t in fsm.allowed_tokens(s)] for s in range(fsm.num_states)]


def test_whole_compiles_through_runs_and_loops_match_the_plain_walk(vocab, monkeypatch):
    """With the size thresholds lowered, every large-fanout state of a small vocabulary takes the
    loop-component or the run path inside `compile_grammar`: the FSM is the same as the plain one."""
    from octogram.masking import crossing as tf

    for text in (RUNS, CALLS):
        plain = compile_grammar(text, vocab, cache=False)
        monkeypatch.setattr(tf, "_COMPONENT_MIN_CANDIDATES", 0)
        calls = []
        real = tf.cross_chain
        monkeypatch.setattr(tf, "cross_chain", lambda *a: calls.append(1) or real(*a))
        shared = compile_grammar(text, vocab, cache=False)
        monkeypatch.undo()
        assert calls or text is not RUNS, "no state took the run path"
        assert shared.num_states == plain.num_states
        assert _transitions(shared) == _transitions(plain)


def test_next_state_by_token_length_is_the_same_fsm(vocab, monkeypatch):
    """States of a bounded repeat may keep a next state per token length instead of one default
    (past 1024 exceptions; the limit is lowered here so a small vocabulary takes that path): every
    allowed token goes where it went before, the device tables are identical, and so is a load
    of the compact form the cache writes."""
    from octogram.masking import state_table as tf
    from octogram.masking.fsm import TokenFSM

    plain = compile_grammar(RUNS, vocab, cache=False)
    monkeypatch.setattr(tf, "_LENGTH_MIN_EXCEPTIONS", 0)
    by_length = compile_grammar(RUNS, vocab, cache=False)
    assert any(by_length.state(s).length_next is not None for s in range(by_length.num_states))
    assert by_length.num_states == plain.num_states
    loaded = TokenFSM.from_tables(by_length.tables(compact=True), by_length.dfa, by_length.index,
                                  by_length.eos_token_ids)
    for s in range(plain.num_states):
        allowed = plain.allowed_tokens(s)
        assert by_length.allowed_tokens(s) == allowed == loaded.allowed_tokens(s)
        expected = [plain.next_state(s, t) for t in allowed]
        assert [by_length.step(s, t) for t in allowed] == expected
        assert [loaded.step(s, t) for t in allowed] == expected
        ids = np.asarray(allowed, np.int64)
        assert by_length.state(s).next_states(ids, by_length.index.id_length).tolist() == expected
    a, b = plain.tables(), by_length.tables()
    for name, value in a.items():
        assert (torch.equal(value, b[name]) if isinstance(value, torch.Tensor) else value == b[name]), name
    assert by_length.memory_bytes() < plain.memory_bytes()


def test_per_length_states_survive_the_cache_file(vocab, monkeypatch):
    from octogram.masking import state_table as tf
    import octogram.masking.compile as compile_module

    monkeypatch.setattr(tf, "_LENGTH_MIN_EXCEPTIONS", 0)
    first = compile_grammar(RUNS, vocab)
    assert any(first.state(s).length_next is not None for s in range(first.num_states))
    calls = []
    real = compile_module.compile_parsed
    monkeypatch.setattr(compile_module, "compile_parsed", lambda *a, **k: calls.append(1) or real(*a, **k))
    loaded = compile_grammar(RUNS, vocab)
    assert calls == []
    assert any(loaded.state(s).length_next is not None for s in range(loaded.num_states))
    assert _transitions(loaded) == _transitions(first)
    a, b = first.tables(), loaded.tables()
    for name, value in a.items():
        assert (torch.equal(value, b[name]) if isinstance(value, torch.Tensor) else value == b[name]), name
    with pytest.raises(IndexError, match="does not exist"):
        loaded.state(loaded.num_states)


def test_exception_sorting_and_per_length_defaults_match_plain_references():
    from collections import Counter

    from octogram.masking.state_table import _next_by_length, _sorted_by_token

    rng = np.random.default_rng(9)
    for n in (0, 5, 4096, 4097, 30_000):
        size = 50_000
        tokens = rng.choice(size, n, replace=False).astype(np.int64)
        nxt = rng.integers(0, 40, n).astype(np.int64)
        ids, states = _sorted_by_token(tokens, nxt, size)
        order = np.argsort(tokens)
        assert ids.dtype == states.dtype == np.int32
        np.testing.assert_array_equal(ids, tokens[order])
        np.testing.assert_array_equal(states, nxt[order])
        if n == 0:
            continue
        lengths = rng.integers(1, 12, n)
        table = _next_by_length(lengths, nxt, default=-7)
        for length in range(table.size):
            seen = Counter(nxt[lengths == length].tolist())
            if not seen:
                assert table[length] == -7
            else:  # the most common next state, the lowest on a tie
                top = max(seen.values())
                assert table[length] == min(k for k, v in seen.items() if v == top)
